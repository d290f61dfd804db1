// Room router/net/ (DESIGN.md, "The rooms of router/"): what both sides of
// an association share on the wire. The upper-layer connection (this file)
// over a transport (transport.h; TCP on libuv in uv_transport.h), DICOM TLS
// (tls.h), TCP options (tcp_tuning.h), per-peer rate limits
// (rate_limiter.h).
// May include: base/, protocol/, libuv and OpenSSL. Not receive/, deliver/,
// record/, operate/ or the store.
//
// UlConnection: the DICOM Upper Layer (PS3.8) on one transport connection,
// for the accepting side (ScpAssociation) and the requesting side
// (ScuAssociation) alike. It owns what both need below DIMSE:
//  - the transport (transport.h) and, for DICOM TLS, the TlsChannel
//    (tls.h): ciphertext is read into its own buffer and decrypted into the
//    input buffer; what is sent goes through the channel;
//  - the input buffer (protocol/pdu_input.h) and the decode loop: bytes are
//    read straight into it and decoded in place, one PDU after another,
//    while input is wanted;
//  - the state machine (protocol/fsm.h), whose transport effects (connect,
//    send, close, ARTIM) it carries out, and whose indications it hands to
//    its User;
//  - the write path and its accounting (writes and bytes in flight, for a
//    sender's back-pressure), pause/resume of reading (for a receiver's);
//  - the ARTIM timer (PS3.8 9.1.5) and closing all of the above.
// The User (the association) keeps the DIMSE logic: it gets the
// indications, the transport's failures and a few hooks, and decides.
//
// Re-entrancy: a primitive issued from inside an indication (Fsm() while a
// transition runs) is queued and run after the current transition has
// completed, in order. After Close(), Fsm() does nothing and queued
// primitives are dropped.
//
// Ownership: the User owns the connection. Once Attach()ed, the connection
// must be Close()d and kept alive until User::OnConnectionClosed, which is
// the last thing it does (the User may destroy it from there).
// Thread: the loop thread only.
#ifndef RELAIS_ROUTER_NET_UL_CONNECTION_H_
#define RELAIS_ROUTER_NET_UL_CONNECTION_H_

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "router/net/tls_failure.h"
#include "router/net/transport.h"
#include "router/protocol/fsm.h"
#include "router/protocol/pdu.h"
#include "router/protocol/pdu_input.h"

namespace relais::router {

class TlsChannel;
class TlsContext;

// Why the transport under a connection failed or ended.
struct TransportFailure {
  enum class Kind {
    kConnect,     // requestor: the name did not resolve, or the TCP connect failed
    kPeerClosed,  // the peer closed the connection (end of stream)
    kRead,        // reading failed
    kWrite,       // writing failed
    kTlsSend,     // TLS refused what we send (or could not start the handshake)
    kTlsReceive,  // what the peer sent is not acceptable TLS (record, handshake, certificate)
  };
  Kind kind;
  // libuv's or OpenSSL's reason; for kConnect a sentence naming the peer.
  std::string message;
  // kTlsSend/kTlsReceive: the channel's typed reason (tls_failure.h), so
  // that a certificate that does not fit is told from a link failure
  // without reading `message`. kNone for the other kinds.
  TlsFailure tls;
};

class UlConnection final : private ul::Effects, private Transport::Sink {
 public:
  // What the connection asks of its user. Every call comes from inside a
  // connection method (Fsm, or a transport event from the loop); the user
  // may call back into the connection from any of them.
  class User {
   public:
    virtual ~User() = default;
    // "assoc=12 peer=10.0.0.5:4711": starts the connection's own log lines.
    virtual std::string LogPrefix() const = 0;
    // The state machine's indications to the service user (ul::Effects).
    virtual void OnAssociateRequest(const ul::AssociateRq& rq) = 0;   // AE-6
    virtual void OnAssociateAccepted(const ul::AssociateAc& ac) = 0;  // AE-3
    virtual void OnAssociateRejected(const ul::AssociateRj& rj) = 0;  // AE-4
    virtual void OnTransportConnected() = 0;                          // AE-2
    virtual void OnPData(const ul::PData& pdata) = 0;                 // DT-2, AR-6
    virtual void OnReleaseRequest() = 0;                              // AR-2, AR-8
    virtual void OnReleaseConfirm() = 0;                              // AR-3, AR-10
    virtual void OnAbort(const std::optional<ul::Abort>& abort) = 0;  // AA-2/3/4/8
    // The connection must end: the state machine closed the transport,
    // ARTIM expired (Evt18 has run), or what CloseAfterWrites waited for is
    // written. The user releases what it holds and calls Close().
    virtual void OnCloseNeeded() = 0;
    // The transport failed or the peer closed it; nothing more will be
    // read. The user decides (typically Evt17 and Close()).
    virtual void OnTransportFailed(const TransportFailure& failure) = 0;
    // Received bytes are not a valid PDU (PS3.8 9.3; the decoder's reason
    // and words). Decoding stops for this read; StopInput() ends it for good.
    virtual void OnInvalidPdu(ul::AbortReason reason, const std::string& why) = 0;
    // Close() is done: every handle is closed. The last call.
    virtual void OnConnectionClosed() = 0;
    // Hooks, each optional.
    // `n` bytes arrived (ciphertext with TLS), before they are decoded.
    virtual void OnBytesReceived(size_t n) { (void)n; }
    // A received PDU's transition (and what it queued) has run.
    virtual void OnPduHandled() {}
    // A write completed (not while closing, nor while CloseAfterWrites waits).
    virtual void OnWriteDone() {}
    // The TLS handshake has completed (tls() says with whom). Once.
    virtual void OnTlsEstablished() {}
  };

  // `max_pdu`: the largest P-DATA-TF PDU we accept (PS3.8 D.1), the
  // decoder's limit. `artim_ms`: the ARTIM timeout. The machine starts in
  // Sta1 (an acceptor runs Evt5 once its transport is attached).
  UlConnection(uv_loop_t* loop, User* user, uint32_t max_pdu, uint64_t artim_ms);
  ~UlConnection() override;
  UlConnection(const UlConnection&) = delete;
  UlConnection& operator=(const UlConnection&) = delete;

  // Takes `transport` and initialises the ARTIM timer. With `tls`, the
  // bytes on the transport are DICOM TLS: a server context (acceptor)
  // starts its channel now; a client context (requestor) starts one once
  // connected, and the server's certificate must name `tls_peer_host`.
  // REQUIRES: called once, before the rest (but the accessors).
  void Attach(std::unique_ptr<Transport> transport, std::shared_ptr<TlsContext> tls,
              const std::string& tls_peer_host = "");
  // Acceptor: starts reading (the transport is connected).
  void StartReading();

  // Runs one state machine event (see the re-entrancy rule above). For
  // local primitives `bytes` is the encoded PDU to send (fsm.h).
  void Fsm(ul::Event event, const ul::Pdu* pdu = nullptr, std::vector<uint8_t> bytes = {});
  ul::State state() const { return fsm_.state(); }
  bool in_fsm() const { return in_fsm_; }

  // Back-pressure on input: no reads while paused.
  void PauseReading();
  void ResumeReading();
  bool paused() const { return paused_; }
  // Decodes nothing more (a protocol error was found).
  void StopInput() { input_stopped_ = true; }
  bool input_stopped() const { return input_stopped_; }

  // Asks for User::OnCloseNeeded once every write is out: at the end of the
  // current Fsm() if nothing is in flight, else when the last write
  // completes. For "send this A-ABORT, then go".
  void CloseAfterWrites() { close_after_writes_ = true; }
  bool closing_after_writes() const { return close_after_writes_; }

  // Closes the transport and the timer; User::OnConnectionClosed follows.
  // Idempotent. REQUIRES: Attach()ed.
  void Close();
  bool closing() const { return closing_; }

  // Writes queued and not yet completed, and their bytes (ciphertext with TLS).
  size_t writes_in_flight() const { return writes_in_flight_; }
  uint64_t write_bytes_pending() const { return write_bytes_pending_; }
  // The DICOM TLS channel, null without TLS (or, requestor, before connected).
  const TlsChannel* tls() const { return tls_.get(); }
  std::string peer_address() const;

 private:
  static void OnArtim(uv_timer_t* t) noexcept;
  static void OnArtimClosed(uv_handle_t* h) noexcept;

  // ul::Effects: the transport half is done here, indications go to user_.
  void ConnectTransport() override;
  void SendPdu(std::vector<uint8_t> bytes) override;
  void CloseTransport() override;
  void StartArtim() override;
  void StopArtim() override;
  void OnAssociateRequest(const ul::AssociateRq& rq) override { user_->OnAssociateRequest(rq); }
  void OnAssociateAccepted(const ul::AssociateAc& ac) override { user_->OnAssociateAccepted(ac); }
  void OnAssociateRejected(const ul::AssociateRj& rj) override { user_->OnAssociateRejected(rj); }
  void OnTransportConnected() override { user_->OnTransportConnected(); }
  void OnPData(const ul::PData& pdata) override { user_->OnPData(pdata); }
  void OnReleaseRequest() override { user_->OnReleaseRequest(); }
  void OnReleaseConfirm() override { user_->OnReleaseConfirm(); }
  void OnAbort(const std::optional<ul::Abort>& abort) override { user_->OnAbort(abort); }

  // Transport::Sink
  void OnConnected(Status status) override;
  std::span<uint8_t> ReadBuffer(size_t suggested) override;
  void OnRead(size_t n) override;
  void OnReadEnd(bool eof, const std::string& error) override;
  void OnWritten(size_t bytes, Status status) override;
  void OnTransportClosed() override;

  // Decrypts `n` bytes read into tls_buf_ into in_; false when TLS failed.
  bool DecryptRead(size_t n);
  void FlushTls();
  void WriteRaw(std::vector<uint8_t> bytes);
  void ProcessInput();
  void HandleOneClosed();  // may destroy this

  uv_loop_t* loop_;
  User* user_;
  uint64_t artim_ms_;
  ul::StateMachine fsm_;
  ul::DecodeLimits limits_;
  std::unique_ptr<Transport> transport_;
  uv_timer_t artim_;
  int handles_open_ = 0;  // the transport and the ARTIM timer, once attached
  bool closing_ = false;
  bool paused_ = false;
  bool input_stopped_ = false;
  bool close_after_writes_ = false;

  struct Deferred {
    ul::Event event;
    std::vector<uint8_t> bytes;
  };
  bool in_fsm_ = false;
  std::deque<Deferred> deferred_;

  PduInputBuffer in_;  // received plaintext not yet decoded
  size_t writes_in_flight_ = 0;
  uint64_t write_bytes_pending_ = 0;

  // DICOM TLS: ciphertext is read into tls_buf_ and decrypted into in_.
  std::shared_ptr<TlsContext> tls_context_;
  std::string tls_peer_host_;
  std::unique_ptr<TlsChannel> tls_;
  std::vector<uint8_t> tls_buf_;
  std::vector<uint8_t> tls_plain_;
  bool tls_reported_ = false;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_UL_CONNECTION_H_
