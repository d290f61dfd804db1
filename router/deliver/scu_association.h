// ScuAssociation: one outgoing DICOM association (Relais as association
// requestor, PS3.8 Table 9-10 from Sta1 through Sta4, Sta5 and Sta6 to
// release or abort) on a libuv loop. It connects, negotiates the proposed
// presentation contexts, then sends C-ECHO or C-STORE requests, streaming
// each object's data set from the store chunk by chunk, and classifies every
// response into an Outcome for the delivery scheduler. It proposes an
// asynchronous operations window (PS3.7 D.3.3.3, kProposedWindow): with a
// peer that accepts one, up to window() requests are outstanding at once
// (data sets still go one after another on the wire; responses are matched
// by Message ID, in any order); without, one at a time.
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
  // C-STORE-RSP classified. Up to window() operations in flight: one more
  // gets kLocalError; one on an association that is not established gets
  // kAborted. An operation called while an earlier data set is still being
  // sent waits for it (its command follows the earlier data set).
  void Store(std::unique_ptr<store::ObjectReader> reader, std::function<void(Outcome)> done);
  // C-ECHO on the Verification context (kNoContext if it was not accepted).
  void Echo(std::function<void(Outcome)> done);
  // A-RELEASE-RQ, after the operations in flight (if any) have their responses;
  // waits for the A-RELEASE-RP (at most artim_timeout_ms), then closes.
  void Release();
  // A-ABORT (service user) now, then closes once it is written (at most
  // artim_timeout_ms). The operations in flight get kAborted.
  void Abort();

  // True between the A-ASSOCIATE-AC and a release, abort or failure.
  bool established() const;
  // Peer's maximum P-DATA-TF PDU length from the A-ASSOCIATE-AC (0: none).
  uint32_t peer_max_pdu() const { return peer_max_pdu_; }
  // The accepted presentation contexts (empty before the A-ASSOCIATE-AC).
  const std::vector<AcceptedContext>& accepted_contexts() const { return accepted_; }
  // How many operations may be in flight at once: the asynchronous
  // operations window the peer answered (PS3.7 D.3.3.3), at most
  // kProposedWindow; 1 when it answered none (most peers). 1 before the
  // A-ASSOCIATE-AC.
  uint16_t window() const { return window_; }
  // Operations in flight (handed to Store/Echo, no response yet).
  size_t outstanding() const { return ops_.size(); }
  // The most operations that were in flight at once on this association.
  size_t max_outstanding() const { return max_outstanding_; }

  // The Maximum-number-operations-invoked we propose; an answer of 0
  // ("unlimited") or above it is held to it.
  static constexpr uint16_t kProposedWindow = 16;

 private:
  // An operation in flight.
  struct Op {
    bool store = false;
    uint16_t message_id = 0;
    uint8_t context_id = 0;
    std::string sop_instance_uid;
    dimse::Command rq;                            // its command, sent when its turn on the wire comes
    bool command_sent = false;                    // command PDVs queued
    uint64_t sent_at = 0;                         // loop time (ms) its command was queued: its round trip
    std::unique_ptr<store::ObjectReader> reader;  // null once fully read (or none)
    bool all_sent = false;                        // last data PDV queued
    // Paced (a rate limiter): the chunk read last, sent a slice at a time.
    std::vector<uint8_t> chunk;
    size_t chunk_sent = 0;
    bool chunk_last = false;
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
  void StartOp(Op op);
  // The operation whose command or data set goes on the wire now (the first
  // not all sent); null when all are sent.
  Op* Sending();
  Op* FindOp(uint16_t message_id);
  size_t IndexOf(uint16_t message_id) const;  // ops_.size() when not in flight
  // Reports the outcome of ops_[index] and forgets it.
  void CompleteOp(size_t index, Outcome outcome);
  // After the last response: the A-RELEASE-RQ if Release() was called.
  void MaybeRelease();
  // Reports `outcome` to whoever waits (on_established, or every operation
  // in flight); the first failure wins, later ones are only logged.
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
  uint16_t window_ = 1;
  size_t max_outstanding_ = 0;
  std::deque<Op> ops_;                  // in flight, in request order
  std::vector<uint8_t> command_bytes_;  // the response command being reassembled
  uint8_t command_context_ = 0;         // its presentation context
  // A chunk buffer kept between objects so that its memory is reused (the
  // op being sent borrows it: Op::chunk): a fresh 256 KiB buffer per chunk
  // cost more in page faults than decompressing the chunk.
  std::vector<uint8_t> chunk_;
  std::deque<std::function<void()>> callbacks_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_SCU_ASSOCIATION_H_
