// ScuAssociation: one outgoing DICOM association (Relais as association
// requestor, PS3.8 Table 9-10 from Sta1 through Sta4, Sta5 and Sta6 to
// release or abort) on a libuv loop. It connects, negotiates the proposed
// presentation contexts, then sends C-ECHO or C-STORE requests one at a time,
// streaming each object's data set from the store chunk by chunk, and
// classifies every response into an Outcome for the delivery scheduler.
// Below DIMSE (transport, DICOM TLS, PDUs, the state machine, ARTIM) it is
// an UlConnection's user (router/net/ul_connection.h).
//
// Internal header of router/ (includes uv.h).
//
// Ownership: the owner creates the object, calls Start() once, and must keep
// it alive until `on_closed` has been called; it may destroy it from inside
// `on_closed` (nothing touches the object afterwards). Destroying it before
// Start() is fine. Thread: the loop thread only.
//
// Callbacks (`on_established`, each operation's `done`, `on_closed`) are
// never called from inside a method of this class: they run from the loop,
// later. Each is called exactly once: `on_established` with kSuccess or the
// reason the association could not be established; each `done` with the
// outcome of its operation (kAborted etc. if the association went away
// first); `on_closed` last, after every handle has been closed. Callbacks
// may call Store/Echo/Release/Abort; only `on_closed` may destroy the object.
#ifndef RELAIS_ROUTER_DELIVER_SCU_ASSOCIATION_H_
#define RELAIS_ROUTER_DELIVER_SCU_ASSOCIATION_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "router/deliver/outcome.h"
#include "router/net/rate_limiter.h"
#include "router/net/ul_connection.h"
#include "router/protocol/dimse.h"
#include "router/protocol/fsm.h"
#include "router/protocol/pdu.h"
#include "store/store.h"

namespace relais::router {

class TlsContext;

struct ScuConfig {
  std::string calling_ae;  // our AE title (at most 16 characters)
  std::string called_ae;   // the peer's AE title
  // Peer address: an IPv4/IPv6 literal, or a name resolved with
  // uv_getaddrinfo (the first address returned is used).
  std::string host;
  uint16_t port = 104;
  // Largest P-DATA-TF PDU we accept (PS3.8 D.1), sent in the A-ASSOCIATE-RQ.
  // Default: 256 KiB.
  uint32_t max_pdu = 262144;
  // Name resolution plus TCP connect. Default: 10 s.
  uint64_t connect_timeout_ms = 10000;
  // Wait for the A-ASSOCIATE-AC/RJ, for the A-RELEASE-RP, and for the peer
  // to close after our A-ABORT (ARTIM, PS3.8 9.1.5). Default: 30 s.
  uint64_t artim_timeout_ms = 30000;
  // Longest time without progress during an operation: while sending, each
  // completed write restarts it; after the last byte, it bounds the wait for
  // the response. Default: 60 s.
  uint64_t response_timeout_ms = 60000;
  // Paces the data set bytes sent (shared by a destination's associations);
  // null: as fast as the peer takes them.
  std::shared_ptr<RateLimiter> rate_limiter;
  // DICOM TLS (router/net/tls.h): a client context; the server's certificate
  // must name `host`. Null: plain TCP.
  std::shared_ptr<TlsContext> tls;
};

// One presentation context to propose (PS3.8 9.3.2.2). Ids are assigned in
// order: 1, 3, 5, ... (at most 128 contexts).
struct ContextProposal {
  std::string abstract_syntax;
  std::vector<std::string> transfer_syntaxes;
};

class ScuAssociation : private UlConnection::User {
 public:
  // A presentation context the peer accepted (PS3.8 9.3.3.2).
  struct AcceptedContext {
    uint8_t id = 0;
    std::string abstract_syntax;
    std::string transfer_syntax;
  };
  ScuAssociation(uv_loop_t* loop, ScuConfig config, std::vector<ContextProposal> proposals,
                 std::function<void(Outcome)> on_established, std::function<void()> on_closed);
  ~ScuAssociation() override;
  ScuAssociation(const ScuAssociation&) = delete;
  ScuAssociation& operator=(const ScuAssociation&) = delete;

  // Resolves the host, connects (TCP_NODELAY) and sends the A-ASSOCIATE-RQ.
  // REQUIRES: called once.
  void Start();
  // The same over `transport` (router/net/transport.h), which Connect()s to
  // the peer instead of TCP to config.host (tests: a scripted fake peer).
  void Start(std::unique_ptr<Transport> transport);

  // Sends one object with C-STORE on the accepted context whose abstract
  // syntax is the object's SOP class and whose transfer syntax is the
  // object's stored transfer syntax (kNoContext if none: no transcoding
  // here). The data set is read from `reader` one chunk at a time, the next
  // only once the previous chunk's writes have completed. `done` gets the
  // C-STORE-RSP classified. One operation at a time: a second one while one
  // is in flight gets kLocalError; one on an association that is not
  // established gets kAborted.
  void Store(std::unique_ptr<store::ObjectReader> reader, std::function<void(Outcome)> done);
  // C-ECHO on the Verification context (kNoContext if it was not accepted).
  void Echo(std::function<void(Outcome)> done);
  // A-RELEASE-RQ, after the operation in flight (if any) has its response;
  // waits for the A-RELEASE-RP (at most artim_timeout_ms), then closes.
  void Release();
  // A-ABORT (service user) now, then closes once it is written (at most
  // artim_timeout_ms). The operation in flight gets kAborted.
  void Abort();

  // True between the A-ASSOCIATE-AC and a release, abort or failure.
  bool established() const;
  // Peer's maximum P-DATA-TF PDU length from the A-ASSOCIATE-AC (0: none).
  uint32_t peer_max_pdu() const { return peer_max_pdu_; }
  // The accepted presentation contexts (empty before the A-ASSOCIATE-AC).
  const std::vector<AcceptedContext>& accepted_contexts() const { return accepted_; }

 private:
  // The operation in flight.
  struct Op {
    bool store = false;
    uint16_t message_id = 0;
    uint8_t context_id = 0;
    std::string sop_instance_uid;
    std::unique_ptr<store::ObjectReader> reader;  // null once fully read
    bool all_sent = false;                        // last data PDV queued
    std::function<void(Outcome)> done;
  };

  static void OnOpTimer(uv_timer_t* t) noexcept;
  static void OnDispatch(uv_timer_t* t) noexcept;
  static void OnPace(uv_timer_t* t) noexcept;
  static void OnClose(uv_handle_t* h) noexcept;

  // UlConnection::User
  std::string LogPrefix() const override { return Prefix(); }
  void OnAssociateRequest(const ul::AssociateRq& rq) override;
  void OnAssociateAccepted(const ul::AssociateAc& ac) override;
  void OnAssociateRejected(const ul::AssociateRj& rj) override;
  void OnTransportConnected() override;
  void OnPData(const ul::PData& pdata) override;
  void OnReleaseRequest() override;
  void OnReleaseConfirm() override;
  void OnAbort(const std::optional<ul::Abort>& abort) override;
  void OnCloseNeeded() override { StartClose(); }
  void OnTransportFailed(const TransportFailure& failure) override;
  void OnInvalidPdu(ul::AbortReason reason, const std::string& why) override;
  void OnConnectionClosed() override;
  void OnWriteDone() override;

  void BeginAssociate();
  void HandleResponse();
  void PumpData();
  void SendPData(uint8_t context_id, bool is_command, std::span<const uint8_t> data, bool last);
  void StartOp(Op op, const dimse::Command& rq);
  void CompleteOp(Outcome outcome);
  // Reports `outcome` to whoever waits (on_established, or the operation in
  // flight); the first failure wins, later ones are only logged.
  void Fail(Outcome outcome);
  // Sends an A-ABORT (`source`, `reason`) if the state allows, then closes
  // once writes drained.
  void AbortWith(ul::AbortSource source, ul::AbortReason reason, const std::string& why);
  void ArmOpTimer(uint64_t ms);
  void Deliver(std::function<void()> fn);
  void StartClose();
  void HandleClosed();  // one handle (or the connection) closed; may destroy this
  void MaybeFinish();
  uint32_t MaxPdvData() const;
  std::string Prefix() const;

  uv_loop_t* loop_;
  ScuConfig config_;
  std::vector<ContextProposal> proposals_;
  std::function<void(Outcome)> on_established_;  // empty once called
  std::function<void()> on_closed_;

  UlConnection conn_;  // transport, TLS, PDUs, state machine, ARTIM
  uv_timer_t op_timer_;
  uv_timer_t dispatch_;
  uv_timer_t pace_;  // resumes PumpData after a rate-limit pause
  bool started_ = false;
  int handles_open_ = 0;  // the three timers and the connection
  bool closing_ = false;
  bool finished_ = false;
  std::string transport_error_;  // why the transport went away, for Outcomes
  TlsFailure transport_tls_;     // and, when TLS failed, the typed reason

  std::vector<AcceptedContext> accepted_;
  uint32_t peer_max_pdu_ = 0;
  bool established_ = false;
  bool release_wanted_ = false;  // Release() called; runs when idle
  bool releasing_ = false;       // A-RELEASE-RQ sent
  uint16_t next_message_id_ = 1;
  std::optional<Op> op_;
  std::vector<uint8_t> command_bytes_;  // the response command being reassembled
  // The chunk being sent, kept between PumpData calls so that its memory
  // is reused: a fresh 256 KiB buffer per chunk cost more in page faults
  // than decompressing the chunk.
  std::vector<uint8_t> chunk_;
  std::deque<std::function<void()>> callbacks_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_SCU_ASSOCIATION_H_
