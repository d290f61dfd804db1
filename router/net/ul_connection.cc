// The upper-layer connection: see the header.
//
// Handles: the ARTIM timer (initialised by Attach) and the transport; both
// are closed by Close() and the user hears OnConnectionClosed when the last
// of them reports closed.
#include "router/net/ul_connection.h"

#include <cstring>
#include <utility>

#include "base/log.h"
#include "router/net/tls.h"

namespace relais::router {
namespace {

using ul::Event;

// Bytes asked of the input buffer (or the TLS buffer) for each read.
constexpr size_t kReadChunk = 64 * 1024;

}  // namespace

UlConnection::UlConnection(uv_loop_t* loop, User* user, uint32_t max_pdu, uint64_t artim_ms)
    : loop_(loop), user_(user), artim_ms_(artim_ms), fsm_(this, ul::State::kSta1) {
  limits_.max_pdata_length = max_pdu;
  artim_.data = this;
}

UlConnection::~UlConnection() = default;

void UlConnection::Attach(std::unique_ptr<Transport> transport, std::shared_ptr<TlsContext> tls,
                          const std::string& tls_peer_host) {
  transport_ = std::move(transport);
  transport_->SetSink(this);
  uv_timer_init(loop_, &artim_);
  handles_open_ = 2;
  tls_context_ = std::move(tls);
  tls_peer_host_ = tls_peer_host;
  // A server's channel waits for the ClientHello; a client's starts once connected.
  if (tls_context_ && tls_context_->is_server()) tls_ = std::make_unique<TlsChannel>(tls_context_);
}

std::string UlConnection::peer_address() const { return transport_ ? transport_->PeerAddress() : "?"; }

void UlConnection::StartReading() {
  if (closing_) return;
  transport_->StartReading();
}

// ---- the state machine -----------------------------------------------------------

void UlConnection::Fsm(Event event, const ul::Pdu* pdu, std::vector<uint8_t> bytes) {
  if (closing_) return;
  if (in_fsm_) {
    // A local primitive issued from inside an indication: run it after the
    // current transition has completed.
    deferred_.push_back(Deferred{event, std::move(bytes)});
    return;
  }
  in_fsm_ = true;
  ul::State before = fsm_.state();
  ul::Action action = fsm_.Handle(event, pdu, std::move(bytes));
  RLOG_DEBUG("%s fsm %s %s %s -> %s", user_->LogPrefix().c_str(), ul::StateName(before), ul::EventName(event),
             ul::ActionName(action), ul::StateName(fsm_.state()));
  in_fsm_ = false;
  while (!deferred_.empty() && !closing_) {
    Deferred d = std::move(deferred_.front());
    deferred_.pop_front();
    Fsm(d.event, nullptr, std::move(d.bytes));
  }
  deferred_.clear();
  if (close_after_writes_ && writes_in_flight_ == 0 && !in_fsm_ && !closing_) user_->OnCloseNeeded();
}

void UlConnection::ConnectTransport() {
  if (Status s = transport_->Connect(); !s.ok()) {
    user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kConnect, s.message(), {}});
  }
}

void UlConnection::CloseTransport() { user_->OnCloseNeeded(); }

void UlConnection::StartArtim() {
  if (closing_) return;
  uv_timer_start(&artim_, &UlConnection::OnArtim, artim_ms_, 0);
}

void UlConnection::StopArtim() {
  if (closing_) return;
  uv_timer_stop(&artim_);
}

void UlConnection::OnArtim(uv_timer_t* t) noexcept {
  auto* self = static_cast<UlConnection*>(t->data);
  RLOG_WARN("%s ARTIM timer expired in %s", self->user_->LogPrefix().c_str(), ul::StateName(self->fsm_.state()));
  self->Fsm(Event::kEvt18);
  if (!self->closing_) self->user_->OnCloseNeeded();
}

// ---- connecting (requestor) --------------------------------------------------------

void UlConnection::OnConnected(Status status) {
  if (closing_) return;
  if (!status.ok()) {
    user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kConnect, status.message(), {}});
    return;
  }
  transport_->StartReading();
  if (tls_context_) {
    // The A-ASSOCIATE-RQ waits inside the channel until the handshake is done.
    tls_ = std::make_unique<TlsChannel>(tls_context_, tls_peer_host_);
    if (Status s = tls_->Start(); !s.ok()) {
      user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kTlsSend, s.message(), tls_->failure()});
      return;
    }
    FlushTls();
  }
  Fsm(Event::kEvt2);  // AE-2: send the A-ASSOCIATE-RQ
}

// ---- writing -------------------------------------------------------------------

void UlConnection::SendPdu(std::vector<uint8_t> bytes) {
  if (closing_ || bytes.empty()) return;
  if (tls_) {
    if (Status s = tls_->Send(bytes); !s.ok()) {
      user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kTlsSend, s.message(), tls_->failure()});
      return;
    }
    FlushTls();
    return;
  }
  WriteRaw(std::move(bytes));
}

void UlConnection::FlushTls() {
  std::vector<uint8_t> out;
  tls_->TakeOutput(&out);
  if (!out.empty()) WriteRaw(std::move(out));
}

void UlConnection::WriteRaw(std::vector<uint8_t> bytes) {
  if (closing_ || bytes.empty()) return;
  const size_t n = bytes.size();
  if (Status s = transport_->Write(std::move(bytes)); !s.ok()) {
    user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kWrite, s.message(), {}});
    return;
  }
  ++writes_in_flight_;
  write_bytes_pending_ += n;
}

void UlConnection::OnWritten(size_t bytes, Status status) {
  --writes_in_flight_;
  write_bytes_pending_ -= bytes;
  if (closing_) return;  // cancelled by Close(), or no longer of interest
  if (!status.ok()) {
    user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kWrite, status.message(), {}});
    return;
  }
  if (close_after_writes_) {
    if (writes_in_flight_ == 0) user_->OnCloseNeeded();
    return;
  }
  user_->OnWriteDone();
}

// ---- reading -------------------------------------------------------------------

std::span<uint8_t> UlConnection::ReadBuffer(size_t) {
  if (tls_) {
    tls_buf_.resize(kReadChunk);
    return std::span<uint8_t>(tls_buf_);
  }
  return in_.WritableTail(kReadChunk);
}

void UlConnection::OnRead(size_t n) {
  if (closing_) return;
  if (tls_) {
    if (!DecryptRead(n)) return;
  } else {
    in_.Commit(n);
  }
  user_->OnBytesReceived(n);
  ProcessInput();
}

bool UlConnection::DecryptRead(size_t n) {
  tls_plain_.clear();
  Status s = tls_->Receive(std::span<const uint8_t>(tls_buf_.data(), n), &tls_plain_);
  FlushTls();  // handshake messages, alerts, and what waited for the handshake
  if (!s.ok() && s.code() != Status::Code::kUnavailable) {
    user_->OnTransportFailed(TransportFailure{TransportFailure::Kind::kTlsReceive, s.message(), tls_->failure()});
    return false;
  }
  if (!tls_reported_ && tls_->handshake_done()) {
    tls_reported_ = true;
    user_->OnTlsEstablished();
  }
  if (!tls_plain_.empty()) {
    std::span<uint8_t> tail = in_.WritableTail(tls_plain_.size());
    std::memcpy(tail.data(), tls_plain_.data(), tls_plain_.size());
    in_.Commit(tls_plain_.size());
  }
  return true;
}

void UlConnection::OnReadEnd(bool eof, const std::string& error) {
  if (closing_) return;
  user_->OnTransportFailed(
      TransportFailure{eof ? TransportFailure::Kind::kPeerClosed : TransportFailure::Kind::kRead, error, {}});
}

// The decode loop: one PDU at a time from the front of in_, each run
// through the state machine, until the buffer holds only part of a PDU.
void UlConnection::ProcessInput() {
  while (!closing_ && !input_stopped_ && !in_.empty()) {
    ul::DecodeResult r = ul::DecodePdu(in_.Unread(), limits_);
    if (r.kind == ul::DecodeResult::Kind::kNeedMore) break;
    if (r.kind == ul::DecodeResult::Kind::kInvalid) {
      user_->OnInvalidPdu(r.abort_reason, r.error);
      break;
    }
    in_.Consume(r.consumed);
    Fsm(ul::StateMachine::EventFor(r.pdu), &r.pdu);
    user_->OnPduHandled();
  }
}

void UlConnection::PauseReading() {
  if (paused_ || closing_) return;
  paused_ = true;
  transport_->StopReading();
}

void UlConnection::ResumeReading() {
  if (!paused_ || closing_) return;
  paused_ = false;
  transport_->StartReading();
}

// ---- closing ---------------------------------------------------------------------

void UlConnection::Close() {
  if (closing_) return;
  closing_ = true;
  deferred_.clear();
  uv_timer_stop(&artim_);
  uv_close(reinterpret_cast<uv_handle_t*>(&artim_), &UlConnection::OnArtimClosed);
  transport_->Close();
}

void UlConnection::OnArtimClosed(uv_handle_t* h) noexcept {
  static_cast<UlConnection*>(h->data)->HandleOneClosed();  // may destroy the connection
}

void UlConnection::OnTransportClosed() { HandleOneClosed(); }

void UlConnection::HandleOneClosed() {
  if (--handles_open_ == 0) user_->OnConnectionClosed();  // may destroy this: nothing after
}

}  // namespace relais::router
