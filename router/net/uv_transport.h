// UvTcpTransport: a Transport (transport.h) over a libuv TCP handle, for
// both sides: an accepted connection (Accept) or an outgoing one (Connect to
// a host and port, resolved with uv_getaddrinfo when not an IP literal).
// Nagle is off on both (every PDU leaves at once: a C-STORE-RSP or a
// request's last PDU must not wait for an ACK), and TCP_QUICKACK is
// re-armed after every read (tcp_tuning.h).
//
// Handles: the TCP handle is initialised by the constructor and freed only
// through its close callback; a name resolution still running at Close() is
// cancelled and its callback awaited before Sink::OnTransportClosed.
// REQUIRES: once constructed, the transport is Close()d and kept alive
// until OnTransportClosed (also when Accept fails).
// Thread: the loop thread only.
#ifndef RELAIS_ROUTER_NET_UV_TRANSPORT_H_
#define RELAIS_ROUTER_NET_UV_TRANSPORT_H_

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "router/net/transport.h"

namespace relais::router {

class UvTcpTransport final : public Transport {
 public:
  // Acceptor side: call Accept() next.
  explicit UvTcpTransport(uv_loop_t* loop);
  // Requestor side: Connect() goes to host:port. `host` is an IPv4/IPv6
  // literal or a name (the first address uv_getaddrinfo returns is used).
  UvTcpTransport(uv_loop_t* loop, std::string host, uint16_t port);
  ~UvTcpTransport() override = default;
  UvTcpTransport(const UvTcpTransport&) = delete;
  UvTcpTransport& operator=(const UvTcpTransport&) = delete;

  // Takes the pending connection of `listener`. On failure (the message is
  // libuv's) the transport must still be closed.
  Status Accept(uv_stream_t* listener);

  void SetSink(Sink* sink) override { sink_ = sink; }
  Status Connect() override;
  void StartReading() override;
  void StopReading() override;
  Status Write(std::vector<uint8_t> bytes) override;
  void Close() override;
  std::string PeerAddress() const override;

 private:
  static void OnResolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) noexcept;
  static void OnConnect(uv_connect_t* req, int status) noexcept;
  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void OnWrite(uv_write_t* req, int status) noexcept;
  static void OnClose(uv_handle_t* h) noexcept;

  Status ConnectTo();         // uv_tcp_connect to addr_
  std::string Where() const;  // "host:port"
  void MaybeClosed();         // may destroy this

  uv_loop_t* loop_;
  Sink* sink_ = nullptr;
  std::string host_;
  uint16_t port_ = 0;
  uv_tcp_t tcp_;
  uv_getaddrinfo_t resolve_req_;
  uv_connect_t connect_req_;
  sockaddr_storage addr_{};
  bool resolving_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_UV_TRANSPORT_H_
