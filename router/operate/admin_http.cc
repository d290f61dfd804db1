#include "router/operate/admin_http.h"

#include <arpa/inet.h>
#include <h2o.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <set>
#include <string_view>

#include "base/log.h"
#include "router/operate/admin_api.h"

// picohttpparser, which libh2o (2.2.5) contains and exports but installs no
// header for; declared as in its picohttpparser.h.
extern "C" {
struct phr_header {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
};
int phr_parse_request(const char* buf, size_t len, const char** method, size_t* method_len, const char** path,
                      size_t* path_len, int* minor_version, struct phr_header* headers, size_t* num_headers,
                      size_t last_len);
}

namespace relais::router {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// Adds the elements of one Content-Length field value ("5" or "5, 6") to
// `values`; false when an element is not a plain decimal number.
bool SplitContentLength(std::string_view v, std::vector<std::string_view>* values) {
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    std::string_view e = v.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!e.empty() && (e.front() == ' ' || e.front() == '\t')) e.remove_prefix(1);
    while (!e.empty() && (e.back() == ' ' || e.back() == '\t')) e.remove_suffix(1);
    if (e.empty()) return false;
    for (char c : e) {
      if (c < '0' || c > '9') return false;
    }
    values->push_back(e);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return true;
}

// RFC 9112 6.3: a request with both Transfer-Encoding and Content-Length,
// or with Content-Length values that differ (two fields, or a list such as
// "5, 6"), has no trustworthy framing: a proxy in front of us may have
// framed it the other way (request smuggling). It must be refused and the
// connection closed. Returns why, or nullopt when the framing is sound.
//
// h2o 2.2.5 frames such a request anyway (Transfer-Encoding wins, else the
// first Content-Length) and keeps neither field in req->headers, so the
// head is parsed again from the connection's input buffer: it stays there,
// unconsumed, until the response has been sent (lib/core/http1.c).
std::optional<std::string> AmbiguousFraming(h2o_req_t* req) {
  if (req->version >= 0x200) return std::nullopt;  // HTTP/2 frames by itself (and is off)
  h2o_socket_t* sock =
      req->conn->callbacks->get_socket != nullptr ? req->conn->callbacks->get_socket(req->conn) : nullptr;
  if (sock == nullptr || sock->input == nullptr) return "the request head cannot be checked";
  const char* method = nullptr;
  const char* path = nullptr;
  size_t method_len = 0, path_len = 0, num_headers = 100;  // H2O_MAX_HEADERS
  int minor = 0;
  phr_header headers[100];
  int n = phr_parse_request(sock->input->bytes, sock->input->size, &method, &method_len, &path, &path_len, &minor,
                            headers, &num_headers, 0);
  if (n <= 0) return "the request head cannot be parsed again";
  size_t transfer_encodings = 0, content_lengths = 0;
  std::vector<std::string_view> lengths;
  for (size_t i = 0; i < num_headers; ++i) {
    std::string_view name(headers[i].name != nullptr ? headers[i].name : "", headers[i].name_len);
    std::string_view value(headers[i].value != nullptr ? headers[i].value : "", headers[i].value_len);
    if (EqualsIgnoreCase(name, "transfer-encoding")) {
      ++transfer_encodings;
    } else if (EqualsIgnoreCase(name, "content-length")) {
      ++content_lengths;
      if (!SplitContentLength(value, &lengths)) return "invalid Content-Length";
    }
  }
  if (transfer_encodings > 0 && content_lengths > 0) return "both Transfer-Encoding and Content-Length";
  for (std::string_view l : lengths) {
    std::string_view a = l, b = lengths.front();
    while (a.size() > 1 && a.front() == '0') a.remove_prefix(1);
    while (b.size() > 1 && b.front() == '0') b.remove_prefix(1);
    if (a != b) return "Content-Length values differ";
  }
  return std::nullopt;
}

// The h2o handler: h2o_handler_t first, so h2o's pointer is ours.
struct Handler {
  h2o_handler_t super;
  AdminServer::Impl* impl;
};

// One connection: its uv handle (h2o owns it once the socket is created,
// and takes over its `data`; the close callback finds the Conn from the
// handle's address, `tcp` being the first member).
struct Conn {
  uv_tcp_t tcp;
  AdminServer::Impl* impl;
};

// Lives in the request's pool; its dispose runs when h2o frees the request.
struct Pending;

std::string PeerName(h2o_conn_t* conn) {
  struct sockaddr_storage ss;
  std::memset(&ss, 0, sizeof(ss));
  socklen_t len = conn->callbacks->get_peername(conn, reinterpret_cast<struct sockaddr*>(&ss));
  if (len == 0) return "?";
  char ip[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
    port = ntohs(sin->sin_port);
    return std::string(ip) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
    port = ntohs(sin6->sin6_port);
    return "[" + std::string(ip) + "]:" + std::to_string(port);
  }
  return "?";
}

}  // namespace

struct AdminServer::Impl {
  uv_loop_t* loop;
  AdminApi* api;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  bool context_open = false;
  uv_tcp_t listener;
  bool listener_open = false;
  uint16_t port = 0;
  std::set<Conn*> conns;
  std::set<Pending*> pending;
  bool shutting_down = false;
  bool disposed = false;
  std::function<void()> done;

  static void OnConnection(uv_stream_t* server, int status) noexcept;
  static void OnConnClosed(uv_handle_t* h) noexcept;
  static void OnListenerClosed(uv_handle_t* h) noexcept;
  static int OnRequest(h2o_handler_t* self, h2o_req_t* req) noexcept;
  void MaybeFinish();
};

namespace {

struct Pending {
  h2o_req_t* req;
  AdminServer::Impl* impl;
  bool answered;
};

void DisposePending(void* p) {
  auto* pending = static_cast<Pending*>(p);
  pending->impl->pending.erase(pending);
}

void Send(h2o_req_t* req, const AdminResponse& r) {
  req->res.status = r.status;
  req->res.reason = r.status == 200   ? "OK"
                    : r.status == 400 ? "Bad Request"
                    : r.status == 401 ? "Unauthorized"
                    : r.status == 403 ? "Forbidden"
                    : r.status == 404 ? "Not Found"
                    : r.status == 405 ? "Method Not Allowed"
                    : r.status == 409 ? "Conflict"
                    : r.status == 503 ? "Service Unavailable"
                                      : "Error";
  h2o_iovec_t ct = h2o_strdup(&req->pool, r.content_type.data(), r.content_type.size());
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, ct.base, ct.len);
  for (const auto& [name, value] : r.headers) {
    h2o_iovec_t n = h2o_strdup(&req->pool, name.data(), name.size());
    h2o_iovec_t v = h2o_strdup(&req->pool, value.data(), value.size());
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, nullptr, v.base, v.len);
  }
  req->res.content_length = r.body.size();
  h2o_send_inline(req, r.body.data(), r.body.size());
}

}  // namespace

void AdminServer::Impl::OnConnection(uv_stream_t* server, int status) noexcept {
  auto* impl = static_cast<Impl*>(server->data);
  if (status != 0 || impl->shutting_down) return;
  auto* conn = new Conn;
  conn->impl = impl;
  uv_tcp_init(impl->loop, &conn->tcp);
  conn->tcp.data = conn;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&conn->tcp)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp), [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
    return;
  }
  impl->conns.insert(conn);
  h2o_socket_t* sock = h2o_uv_socket_create(reinterpret_cast<uv_stream_t*>(&conn->tcp), &Impl::OnConnClosed);
  h2o_accept(&impl->accept_ctx, sock);
}

void AdminServer::Impl::OnConnClosed(uv_handle_t* h) noexcept {
  auto* conn = reinterpret_cast<Conn*>(h);
  Impl* impl = conn->impl;
  impl->conns.erase(conn);
  delete conn;
  impl->MaybeFinish();
}

void AdminServer::Impl::OnListenerClosed(uv_handle_t* h) noexcept {
  auto* impl = static_cast<Impl*>(h->data);
  impl->listener_open = false;
  impl->MaybeFinish();
}

void AdminServer::Impl::MaybeFinish() {
  if (!shutting_down || disposed || listener_open || !conns.empty()) return;
  disposed = true;
  if (context_open) {
    h2o_context_dispose(&ctx);  // closes its timers and queue handle
    context_open = false;
  }
  RLOG_INFO("event=admin-stopped");
  if (done) {
    std::function<void()> d = std::move(done);
    d();
  }
}

int AdminServer::Impl::OnRequest(h2o_handler_t* self, h2o_req_t* req) noexcept {
  Impl* impl = reinterpret_cast<Handler*>(self)->impl;
  try {
    if (std::optional<std::string> why = AmbiguousFraming(req)) {
      RLOG_WARN("event=admin-request-refused client=%s reason=\"%s\": 400 and close", PeerName(req->conn).c_str(),
                why->c_str());
      req->http1_is_persistent = 0;  // h2o answers "Connection: close" and closes after the response
      Send(req,
           AdminResponse{400, "application/json", "{\"error\":\"ambiguous request framing: " + *why + "\"}", {}, ""});
      return 0;
    }
    AdminRequest r;
    r.method.assign(req->method.base, req->method.len);
    r.path.assign(req->path_normalized.base, req->path_normalized.len);
    if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
      r.query.assign(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    }
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i != -1) r.authorization.assign(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
    r.client = PeerName(req->conn);
    if (req->entity.base != nullptr) r.body.assign(req->entity.base, req->entity.len);
    auto* pending = static_cast<Pending*>(h2o_mem_alloc_shared(&req->pool, sizeof(Pending), &DisposePending));
    pending->req = req;
    pending->impl = impl;
    pending->answered = false;
    impl->pending.insert(pending);
    impl->api->Handle(r, [impl, pending](AdminResponse resp) {
      // The request may be gone (connection closed, or answered 503 at
      // shutdown): then the answer is dropped.
      if (impl->pending.count(pending) == 0 || pending->answered) return;
      pending->answered = true;
      Send(pending->req, resp);
    });
  } catch (...) {
    static const char kBody[] = "{\"error\":\"internal error\"}";
    req->res.status = 500;
    req->res.reason = "Internal Server Error";
    h2o_send_inline(req, kBody, sizeof(kBody) - 1);
  }
  return 0;
}

AdminServer::AdminServer(uv_loop_t* loop, AdminApi* api) : impl_(std::make_unique<Impl>()) {
  impl_->loop = loop;
  impl_->api = api;
  h2o_config_init(&impl_->config);
  impl_->config.max_request_entity_size = kMaxBodyBytes;
  impl_->config.http1.req_timeout = kRequestTimeoutMs;
  impl_->config.http2.idle_timeout = kRequestTimeoutMs;
  impl_->config.http1.upgrade_to_http2 = 0;
  impl_->config.server_name = h2o_iovec_init(H2O_STRLIT("relais"));
  h2o_hostconf_t* host = h2o_config_register_host(&impl_->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t* path = h2o_config_register_path(host, "/", 0);
  auto* handler = reinterpret_cast<Handler*>(h2o_create_handler(path, sizeof(Handler)));
  handler->super.on_req = &Impl::OnRequest;
  handler->impl = impl_.get();
  std::memset(&impl_->accept_ctx, 0, sizeof(impl_->accept_ctx));
}

AdminServer::~AdminServer() {
  if (impl_->context_open && !impl_->disposed) {
    RLOG_WARN("event=admin-not-shut-down: AdminServer destroyed without Shutdown");
  }
  h2o_config_dispose(&impl_->config);
}

Status AdminServer::Listen(const std::string& host, uint16_t port) {
  struct sockaddr_storage addr;
  std::memset(&addr, 0, sizeof(addr));
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<struct sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<struct sockaddr_in6*>(&addr)) != 0) {
    return Status::InvalidArgument("admin host " + host + " is not an IPv4 or IPv6 address");
  }
  h2o_context_init(&impl_->ctx, impl_->loop, &impl_->config);
  impl_->context_open = true;
  impl_->accept_ctx.ctx = &impl_->ctx;
  impl_->accept_ctx.hosts = impl_->config.hosts;
  uv_tcp_init(impl_->loop, &impl_->listener);
  impl_->listener.data = impl_.get();
  impl_->listener_open = true;
  int rc = uv_tcp_bind(&impl_->listener, reinterpret_cast<struct sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&impl_->listener), 64, &Impl::OnConnection);
  if (rc != 0) {
    return Status::IOError("admin API cannot listen on " + host + ":" + std::to_string(port) + ": " + uv_strerror(rc));
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  if (uv_tcp_getsockname(&impl_->listener, reinterpret_cast<struct sockaddr*>(&bound), &len) == 0) {
    impl_->port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&bound)->sin6_port)
                                              : ntohs(reinterpret_cast<struct sockaddr_in*>(&bound)->sin_port);
  }
  RLOG_INFO("event=admin-listening address=%s:%u tokens=on", host.c_str(), impl_->port);
  return Status::OK();
}

uint16_t AdminServer::port() const { return impl_->port; }

void AdminServer::Shutdown(std::function<void()> done) {
  Impl* impl = impl_.get();
  if (impl->shutting_down) return;
  impl->shutting_down = true;
  impl->done = std::move(done);
  if (impl->listener_open) {
    uv_close(reinterpret_cast<uv_handle_t*>(&impl->listener), &Impl::OnListenerClosed);
  }
  // (Not h2o_context_request_shutdown: that arms HTTP/2's graceful-shutdown
  // timer, which h2o_context_dispose then asserts on; we speak HTTP/1.1 only.)
  // Requests waiting for an action's commit: answer them now.
  std::set<Pending*> waiting = impl->pending;
  for (Pending* p : waiting) {
    if (impl->pending.count(p) == 0 || p->answered) continue;
    p->answered = true;
    AdminResponse r{503,
                    "application/json",
                    "{\"error\":\"relais is shutting down; the action may or may not have "
                    "been applied: check after restart\"}",
                    {},
                    ""};
    Send(p->req, r);
  }
  // Every connection: shut the socket down, so h2o sees EOF (or a write
  // error) and closes it; OnConnClosed counts them down.
  for (Conn* c : impl->conns) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->tcp), &fd) == 0) ::shutdown(fd, SHUT_RDWR);
  }
  impl->MaybeFinish();
}

}  // namespace relais::router
