// ScpAssociation: one accepted connection and the DICOM association on it,
// from transport indication to close: negotiation, access control, DIMSE
// (C-ECHO, C-STORE into the store, routing decisions), release and abort.
// Below DIMSE (transport, TLS, PDUs, the PS3.8 state machine, ARTIM) it is
// an UlConnection's user (router/net/ul_connection.h).
//
// Ownership: created and owned by Server; destroyed by Server (from
// Server::OnAssociationClosed) once its connection and idle timer have
// closed. Thread: the loop thread only; store completions reach it through
// Server::Post and the association id (the association may be gone by
// then).
#ifndef RELAIS_ROUTER_RECEIVE_ASSOCIATION_H_
#define RELAIS_ROUTER_RECEIVE_ASSOCIATION_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "router/net/ul_connection.h"
#include "router/protocol/dimse.h"
#include "router/protocol/fsm.h"
#include "router/protocol/pdu.h"
#include "router/receive/access.h"
#include "router/receive/dataset_header.h"
#include "router/record/audit.h"
#include "rules/routing.h"
#include "store/store.h"

namespace relais::router {

class Server;
class TlsContext;
class Transport;

class ScpAssociation : private UlConnection::User {
 public:
  ScpAssociation(Server* server, uint64_t id);
  ~ScpAssociation() override;

  // Accepts the pending connection from `listener` and starts reading;
  // with `tls`, the connection speaks DICOM TLS (router/net/tls.h). Returns
  // false (and closes) if the accept fails.
  bool Start(uv_stream_t* listener, std::shared_ptr<TlsContext> tls = nullptr);
  // The same over a connected `transport` (router/net/transport.h; tests:
  // a scripted fake peer).
  void Start(std::unique_ptr<Transport> transport, std::shared_ptr<TlsContext> tls = nullptr);
  // Sends an A-ABORT (service user) and closes. Used at shutdown.
  void AbortNow(const char* why);

  uint64_t id() const { return id_; }
  // Has an A-ASSOCIATE-AC been sent (and no release or abort since)?
  // Connections that have not are the ones Server may evict.
  bool established() const { return established_; }
  // Closing (aborted, released or evicted): it no longer counts as a connection.
  bool closing() const { return closing_; }
  // The peer's address without the port ("10.0.0.5"); "" before Start.
  std::string peer_ip() const;

  // Store callbacks, delivered on the loop thread by Server.
  void OnStoreCommitted(uint16_t message_id, Status status, const store::ObjectMeta& meta);
  // Store progress: resume reading if back-pressure paused us.
  void MaybeResumeReading();

 private:
  // An accepted presentation context.
  struct Context {
    std::string abstract_syntax;
    std::string transfer_syntax;
  };
  // The C-STORE (or other command) whose data set is arriving.
  struct Incoming {
    dimse::Command command;
    uint8_t context_id = 0;
    bool store = false;   // a C-STORE we keep; false: discard data set
    bool failed = false;  // header or data error: respond failure at the end
    uint16_t fail_status = 0;
    std::string fail_reason;
    std::unique_ptr<store::ObjectWriter> writer;
    std::unique_ptr<dicom::HeaderParser> header;
    uint64_t bytes = 0;
    // When its command arrived (steady seconds), for the C-STORE latency
    // histogram; -1 without metrics.
    double arrived = -1;
  };

  static void OnClose(uv_handle_t* h) noexcept;
  static void OnIdle(uv_timer_t* t) noexcept;

  // UlConnection::User
  std::string LogPrefix() const override { return Prefix(); }
  void OnAssociateRequest(const ul::AssociateRq& rq) override;
  void OnAssociateAccepted(const ul::AssociateAc&) override {}  // we never request
  void OnAssociateRejected(const ul::AssociateRj&) override {}
  void OnTransportConnected() override {}
  void OnPData(const ul::PData& pdata) override;
  void OnReleaseRequest() override;
  void OnReleaseConfirm() override {}
  void OnAbort(const std::optional<ul::Abort>& abort) override;
  void OnCloseNeeded() override { StartClose(); }
  void OnTransportFailed(const TransportFailure& failure) override;
  void OnInvalidPdu(ul::AbortReason reason, const std::string& why) override { ProtocolError(reason, why); }
  void OnConnectionClosed() override { HandleClosed(); }
  void OnBytesReceived(size_t n) override;
  void OnPduHandled() override;
  void OnTlsEstablished() override;

  // Takes the transport and initialises the idle timer.
  void Attach(std::unique_ptr<Transport> transport, std::shared_ptr<TlsContext> tls);
  // Transport indication (Evt5), reading, the idle timer.
  void Begin();
  void ConnectionLost(const TransportFailure& failure);
  // Association negotiation (OnAssociateRequest's steps).
  struct Rejection {
    ul::RejectResult result;
    ul::RejectSource source;
    uint8_t reason;
    std::string label;  // metrics
    std::string why;    // log and audit trail
  };
  std::optional<Rejection> CheckAssociateRq(const ul::AssociateRq& rq, AccessPolicy::Decision* access);
  void Reject(const Rejection& r);
  ul::AssociateAc NegotiateAssociateAc(const ul::AssociateRq& rq, const AccessPolicy::Decision& access,
                                       size_t* accepted);
  void Accept(const ul::AssociateRq& rq, const AccessPolicy::Decision& access, size_t accepted,
              std::vector<uint8_t> bytes);
  std::string PeerIp() const;
  void FlushResponses();
  // Writes the "object" audit record of a C-STORE's outcome (with one or two
  // more fields; an empty extra2 is left out). False when the audit trail
  // could not take it; true without an audit log.
  bool AuditObject(const store::ObjectMeta& meta, std::string_view result, std::string_view status,
                   AuditLog::Field extra1, AuditLog::Field extra2);
  // [audit] on_failure = "refuse": turns the Success of a stored object whose
  // audit record failed into 0xA700, and logs it. Does nothing otherwise.
  void RefuseUnaudited(uint16_t message_id, const store::ObjectMeta& meta);
  // Checks a SOP Instance UID a peer sent (`where` names the attribute);
  // false when it is refused.
  bool AcceptSopInstanceUid(uint16_t msg, const char* where, const std::string& uid) const;
  void DropIncoming();
  void ProtocolError(ul::AbortReason reason, const std::string& why);
  void HandleCommand(uint8_t context_id);
  void HandleData(const ul::Pdv& pdv);
  void FinishIncoming();
  // A C-STORE's data set is complete: described (false: refused), then
  // committed or refused.
  bool Describe(Incoming& in, store::ObjectMeta* meta);
  void Commit(Incoming& in, store::ObjectMeta meta);
  void Refuse(Incoming& in);
  // Fills meta's routing fields from the rules. Returns false (with status
  // and reason) when the object must be refused (unmatched = reject).
  bool Route(dicom::HeaderParser& header, store::ObjectMeta* meta, uint16_t* status, std::string* reason);
  void SendCommand(uint8_t context_id, const dimse::Command& cmd);
  void SendReleaseResponseIfIdle();
  void StartClose();
  void HandleClosed();  // the connection or the idle timer closed; may destroy this
  void ResetIdleTimer();
  std::string Prefix() const;  // "assoc=12 peer=10.0.0.5:4711 calling=CTSCAN1"

  // The Error Comment of a C-STORE refused because the audit trail cannot be
  // written ([audit] on_failure = "refuse"); the first 64 characters reach the
  // sender (PS3.7 C.4.1.1.4).
  // The asynchronous operations window we grant a requestor that proposes
  // one (PS3.7 D.3.3.3; docs/conformance.md says why 16).
  static constexpr uint16_t kMaxOperationsInvoked = 16;
  // A C-STORE is outstanding: counts it (pending_) for the log and metrics.
  void NoteOutstanding();
  static constexpr const char* kAuditFailingReason =
      "Relais audit trail cannot be written: retry later (refused, not stored unaudited)";

  Server* server_;
  uint64_t id_;
  UlConnection conn_;  // transport, TLS, PDUs, state machine, ARTIM
  uv_timer_t idle_;
  int handles_open_ = 0;  // the connection and idle_, once started
  bool closing_ = false;
  std::string peer_;
  std::string calling_ae_;
  std::string called_ae_;
  uint32_t peer_max_pdu_ = 0;
  std::unordered_map<uint8_t, Context> contexts_;
  // The rules in force when the association was accepted (a reload does
  // not change them mid-association); null when no rules are configured.
  std::shared_ptr<const rules::RuleSet> rules_;
  rules::AssociationFacts facts_;
  rules::Decision decision_;  // reused: no allocation per object once warm

  // Command being reassembled from command PDVs.
  std::vector<uint8_t> command_bytes_;
  uint8_t command_context_ = 0;
  std::optional<Incoming> incoming_;
  // C-STOREs handed to the store and not yet answered, by message id, with
  // their context, in arrival order.
  struct Pending {
    uint16_t message_id;
    uint8_t context_id;
    dimse::Command rq;
    double arrived = -1;  // Incoming::arrived
    bool done = false;
    uint16_t status = 0;
    std::string comment;
  };
  std::deque<Pending> pending_;
  // PS3.7 D.3.3.3: how many C-STOREs the peer may have outstanding (sent,
  // not yet answered): the asynchronous operations window we answered, 1
  // when it proposed none. One more is a protocol error (A-ABORT).
  uint16_t window_ = 1;
  uint32_t max_outstanding_ = 0;  // the most outstanding at once, for the log
  bool release_requested_ = false;
  bool established_ = false;  // counted in Server::established_count()
  // A protocol error found inside an indication: handled after it.
  std::optional<std::pair<ul::AbortReason, std::string>> pending_protocol_error_;

  uint64_t objects_ok_ = 0;
  uint64_t objects_failed_ = 0;
  uint64_t bytes_received_ = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECEIVE_ASSOCIATION_H_
