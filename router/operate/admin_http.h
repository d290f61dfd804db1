// AdminServer: the HTTP/1.1 side of the admin API (docs/admin-api.md), h2o
// 2.2 built for libuv, on the server's own loop. It accepts connections on a
// uv_tcp_t listener, hands each to h2o (h2o_uv_socket_create, h2o_accept),
// and passes every request to an AdminApi (router/operate/admin_api.h), which
// answers at once or later.
//
// Limits (h2o answers these itself, in plain text): request bodies over
// 64 KiB get 413; a request line or headers over h2o's buffer get 400/431;
// a client that does not finish its request within 10 s is cut off
// (http1.req_timeout).
//
// Thread: loop thread only. No h2o type leaks out of this header.
#ifndef RELAIS_ROUTER_OPERATE_ADMIN_HTTP_H_
#define RELAIS_ROUTER_OPERATE_ADMIN_HTTP_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace relais::router {

class AdminApi;

class AdminServer {
 public:
  static constexpr size_t kMaxBodyBytes = 64 * 1024;
  static constexpr uint64_t kRequestTimeoutMs = 10000;

  // `api` is not owned and must outlive the server (until Shutdown's `done`).
  AdminServer(uv_loop_t* loop, AdminApi* api);
  // REQUIRES: Shutdown() was called and its `done` ran (or Listen never
  // succeeded and Shutdown ran).
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds host:port (IPv4 or IPv6 literal; port 0 picks a free port) and
  // starts accepting. InvalidArgument for a bad address, IOError when it
  // cannot bind.
  Status Listen(const std::string& host, uint16_t port);
  // The bound port (after Listen).
  uint16_t port() const;
  // Stops accepting, answers requests still waiting for an action with 503,
  // shuts every connection down, then disposes of h2o's context: every uv
  // handle it opened is closed once `done` runs (on the loop).
  void Shutdown(std::function<void()> done = nullptr);

  struct Impl;  // h2o state, in the .cc

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_ADMIN_HTTP_H_
