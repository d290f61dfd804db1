#include "router/net/uv_transport.h"

#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "router/net/tcp_tuning.h"

namespace relais::router {
namespace {

struct WriteReq {
  uv_write_t req;
  std::vector<uint8_t> bytes;
};

// libuv's error as our Status (IOError with libuv's words).
Status UvError(int rc) { return Status::IOError(uv_strerror(rc)); }

}  // namespace

UvTcpTransport::UvTcpTransport(uv_loop_t* loop) : UvTcpTransport(loop, std::string(), 0) {}

UvTcpTransport::UvTcpTransport(uv_loop_t* loop, std::string host, uint16_t port)
    : loop_(loop), host_(std::move(host)), port_(port) {
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  resolve_req_.data = this;
  connect_req_.data = this;
}

std::string UvTcpTransport::Where() const { return host_ + ":" + std::to_string(port_); }

Status UvTcpTransport::Accept(uv_stream_t* listener) {
  if (int rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_)); rc != 0) return UvError(rc);
  uv_tcp_nodelay(&tcp_, 1);
  return Status::OK();
}

// ---- connecting (requestor) ---------------------------------------------------

Status UvTcpTransport::Connect() {
  if (uv_ip4_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in*>(&addr_)) == 0 ||
      uv_ip6_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in6*>(&addr_)) == 0) {
    return ConnectTo();
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(port_);
  resolving_ = true;
  int rc = uv_getaddrinfo(loop_, &resolve_req_, &UvTcpTransport::OnResolved, host_.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    resolving_ = false;
    return Status::IOError("cannot resolve '" + host_ + "': " + uv_strerror(rc));
  }
  return Status::OK();
}

void UvTcpTransport::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
  auto* self = static_cast<UvTcpTransport*>(req->data);
  self->resolving_ = false;
  if (status == 0 && res != nullptr && !self->closing_) {
    std::memcpy(&self->addr_, res->ai_addr, std::min<size_t>(res->ai_addrlen, sizeof(self->addr_)));
  }
  uv_freeaddrinfo(res);
  if (self->closing_) {
    self->MaybeClosed();  // may destroy self
    return;
  }
  if (status != 0) {
    self->sink_->OnConnected(Status::IOError("cannot resolve '" + self->host_ + "': " + uv_strerror(status)));
    return;
  }
  if (Status s = self->ConnectTo(); !s.ok()) self->sink_->OnConnected(std::move(s));
}

Status UvTcpTransport::ConnectTo() {
  int rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&addr_), &UvTcpTransport::OnConnect);
  if (rc != 0) return Status::IOError("connect to " + Where() + " failed: " + uv_strerror(rc));
  return Status::OK();
}

void UvTcpTransport::OnConnect(uv_connect_t* req, int status) noexcept {
  auto* self = static_cast<UvTcpTransport*>(req->data);
  if (self->closing_) return;  // cancelled by uv_close
  if (status != 0) {
    self->sink_->OnConnected(Status::IOError("connect to " + self->Where() + " failed: " + uv_strerror(status)));
    return;
  }
  uv_tcp_nodelay(&self->tcp_, 1);
  self->sink_->OnConnected(Status::OK());
}

// ---- reading and writing ---------------------------------------------------------

void UvTcpTransport::StartReading() {
  if (closing_) return;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &UvTcpTransport::OnAlloc, &UvTcpTransport::OnRead);
}

void UvTcpTransport::StopReading() {
  if (closing_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
}

void UvTcpTransport::OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept {
  auto* self = static_cast<UvTcpTransport*>(h->data);
  std::span<uint8_t> room = self->sink_->ReadBuffer(suggested);
  buf->base = reinterpret_cast<char*>(room.data());
  buf->len = room.size();
}

void UvTcpTransport::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
  auto* self = static_cast<UvTcpTransport*>(s->data);
  if (self->closing_) return;
  if (nread < 0) {
    self->sink_->OnReadEnd(nread == UV_EOF, uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) return;
  RearmQuickAck(&self->tcp_);  // a Nagle-on peer would wait ~40 ms for our ACK
  self->sink_->OnRead(static_cast<size_t>(nread));
}

Status UvTcpTransport::Write(std::vector<uint8_t> bytes) {
  auto* w = new WriteReq;
  w->bytes = std::move(bytes);
  w->req.data = this;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(w->bytes.data()), w->bytes.size());
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, &UvTcpTransport::OnWrite);
  if (rc != 0) {
    delete w;
    return UvError(rc);
  }
  return Status::OK();
}

void UvTcpTransport::OnWrite(uv_write_t* req, int status) noexcept {
  auto* w = reinterpret_cast<WriteReq*>(req);
  auto* self = static_cast<UvTcpTransport*>(req->data);
  const size_t n = w->bytes.size();
  delete w;
  self->sink_->OnWritten(n, status == 0 ? Status::OK() : UvError(status));
}

// ---- closing -------------------------------------------------------------------

void UvTcpTransport::Close() {
  if (closing_) return;
  closing_ = true;
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &UvTcpTransport::OnClose);
}

void UvTcpTransport::OnClose(uv_handle_t* h) noexcept {
  auto* self = static_cast<UvTcpTransport*>(h->data);
  self->closed_ = true;
  self->MaybeClosed();  // may destroy self
}

void UvTcpTransport::MaybeClosed() {
  if (!closed_ || resolving_) return;
  sink_->OnTransportClosed();  // may destroy this: nothing after
}

std::string UvTcpTransport::PeerAddress() const {
  sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char ip[64] = "?";
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    uv_ip4_name(a, ip, sizeof(ip));
    return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    uv_ip6_name(a, ip, sizeof(ip));
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

}  // namespace relais::router
