// ScpAssociation: one accepted TCP connection and the DICOM association on
// it, from transport indication to close. Glues the libuv stream, the PDU
// decoder, the PS3.8 state machine, DIMSE and the store.
//
// Ownership: created and owned by Server; destroyed by Server after its TCP
// handle's close callback ran. Thread: the loop thread only; store
// completions reach it through Server::Post and the association id (the
// association may be gone by then).
#ifndef RELAIS_ROUTER_RECEIVE_ASSOCIATION_H_
#define RELAIS_ROUTER_RECEIVE_ASSOCIATION_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "router/receive/dataset_header.h"
#include "router/protocol/dimse.h"
#include "router/protocol/fsm.h"
#include "router/protocol/pdu.h"
#include "router/protocol/pdu_input.h"
#include "rules/routing.h"
#include "store/store.h"

namespace relais::router {

class Server;
class TlsChannel;
class TlsContext;

class ScpAssociation : public ul::Effects {
 public:
  ScpAssociation(Server* server, uint64_t id);
  ~ScpAssociation() override;

  // Accepts the pending connection from `listener` and starts reading;
  // with `tls`, the connection speaks DICOM TLS (router/net/tls.h). Returns
  // false (and closes) if the accept fails.
  bool Start(uv_stream_t* listener, std::shared_ptr<TlsContext> tls = nullptr);
  // Sends an A-ABORT (service user) and closes. Used at shutdown.
  void AbortNow(const char* why);

  uint64_t id() const { return id_; }
  uv_tcp_t* tcp() { return &tcp_; }

  // Store callbacks, delivered on the loop thread by Server.
  void OnStoreCommitted(uint16_t message_id, Status status, const store::ObjectMeta& meta);
  // Store progress: resume reading if back-pressure paused us.
  void MaybeResumeReading();

  // ul::Effects
  void ConnectTransport() override;
  void SendPdu(std::vector<uint8_t> bytes) override;
  void CloseTransport() override;
  void StartArtim() override;
  void StopArtim() override;
  void OnAssociateRequest(const ul::AssociateRq& rq) override;
  void OnAssociateAccepted(const ul::AssociateAc& ac) override;
  void OnAssociateRejected(const ul::AssociateRj& rj) override;
  void OnTransportConnected() override;
  void OnPData(const ul::PData& pdata) override;
  void OnReleaseRequest() override;
  void OnReleaseConfirm() override;
  void OnAbort(const std::optional<ul::Abort>& abort) override;

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
    bool store = false;      // a C-STORE we keep; false: discard data set
    bool failed = false;     // header or data error: respond failure at the end
    uint16_t fail_status = 0;
    std::string fail_reason;
    std::unique_ptr<store::ObjectWriter> writer;
    std::unique_ptr<dicom::HeaderParser> header;
    uint64_t bytes = 0;
  };

  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void OnWrite(uv_write_t* req, int status) noexcept;
  static void OnClose(uv_handle_t* h) noexcept;
  static void OnArtim(uv_timer_t* t) noexcept;
  static void OnIdle(uv_timer_t* t) noexcept;

  // Runs one state machine event; primitives issued from inside an
  // indication are queued and run after the current transition.
  void Fsm(ul::Event event, const ul::Pdu* pdu, std::vector<uint8_t> bytes);
  void FlushResponses();
  void DropIncoming();
  void HandleRead(ssize_t nread);
  void ProcessInput();
  void ProtocolError(ul::AbortReason reason, const std::string& why);
  void HandleCommand(uint8_t context_id);
  void HandleData(const ul::Pdv& pdv);
  void FinishIncoming();
  // Fills meta's routing fields from the rules. Returns false (with status
  // and reason) when the object must be refused (unmatched = reject).
  bool Route(dicom::HeaderParser& header, store::ObjectMeta* meta, uint16_t* status, std::string* reason);
  void SendCommand(uint8_t context_id, const dimse::Command& cmd);
  void SendReleaseResponseIfIdle();
  void PauseReading();
  void StartClose();
  void ResetIdleTimer();
  std::string Prefix() const;  // "assoc=12 calling=CTSCAN1"

  Server* server_;
  uint64_t id_;
  uv_tcp_t tcp_;
  uv_timer_t artim_;
  uv_timer_t idle_;
  int handles_open_ = 0;
  bool closing_ = false;
  bool reading_ = false;
  bool paused_ = false;
  ul::StateMachine fsm_;
  ul::DecodeLimits limits_;
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

  PduInputBuffer in_;  // received bytes not yet decoded
  // DICOM TLS: ciphertext is read into tls_buf_, decrypted into in_.
  std::unique_ptr<TlsChannel> tls_;
  std::vector<uint8_t> tls_buf_;
  std::vector<uint8_t> tls_plain_;
  bool tls_logged_ = false;
  void WriteRaw(std::vector<uint8_t> bytes);
  void FlushTls();
  // Decrypts what was read; false when the association is closing.
  bool HandleTlsRead(size_t n);

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
    bool done = false;
    uint16_t status = 0;
    std::string comment;
  };
  std::deque<Pending> pending_;
  bool release_requested_ = false;
  bool established_ = false;  // counted in Server::established_count()
  bool input_dead_ = false;   // a protocol error: ignore further input

  struct Deferred {
    ul::Event event;
    std::vector<uint8_t> bytes;
  };
  bool in_fsm_ = false;
  std::deque<Deferred> deferred_;
  std::optional<std::pair<ul::AbortReason, std::string>> pending_protocol_error_;

  uint64_t objects_ok_ = 0;
  uint64_t objects_failed_ = 0;
  uint64_t bytes_received_ = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECEIVE_ASSOCIATION_H_
