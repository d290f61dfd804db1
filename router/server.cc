#include "router/server.h"

#include <cstring>

#include "base/log.h"
#include "router/association.h"

namespace relais::router {
namespace {
// TCP connections held at once, including ones that have not sent an
// A-ASSOCIATE-RQ yet; past this, new connections are closed at once.
uint32_t MaxConnections(const ScpSettings& s) { return s.max_associations * 2 + 16; }
}  // namespace

Server::Server(uv_loop_t* loop, store::Store* store, ScpSettings settings)
    : loop_(loop), store_(store), settings_(std::move(settings)) {
  listener_.data = this;
  uv_async_init(loop_, &async_, &Server::OnAsync);
  async_.data = this;
}

Server::~Server() = default;

Status Server::Listen(const std::string& host, uint16_t port) {
  sockaddr_storage addr;
  std::memset(&addr, 0, sizeof(addr));
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    return Status::InvalidArgument("listener.host '" + host + "' is not an IP address");
  }
  uv_tcp_init(loop_, &listener_);
  listening_ = true;
  int rc = uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, &Server::OnConnection);
  if (rc != 0) {
    return Status::IOError("cannot listen on " + host + ":" + std::to_string(port) + ": " + uv_strerror(rc) +
                           (rc == UV_EADDRINUSE ? " (another process uses this port: stop it or change listener.port)"
                                                : ""));
  }
  return Status::OK();
}

void Server::OnConnection(uv_stream_t* s, int status) noexcept {
  auto* self = static_cast<Server*>(s->data);
  if (status != 0) {
    RLOG_WARN("listener: accept error: %s", uv_strerror(status));
    return;
  }
  self->Accept();
}

void Server::Accept() {
  uint64_t id = next_id_++;
  auto assoc = std::make_unique<ScpAssociation>(this, id);
  ScpAssociation* a = assoc.get();
  associations_.emplace(id, std::move(assoc));
  if (!a->Start(reinterpret_cast<uv_stream_t*>(&listener_))) return;
  if (shutting_down_ || associations_.size() > MaxConnections(settings_)) {
    RLOG_WARN("assoc=%llu event=connection-refused reason=\"%s\"", static_cast<unsigned long long>(id),
              shutting_down_ ? "shutting down" : "too many open connections");
    a->AbortNow("refused");
  }
}

ScpAssociation* Server::FindAssociation(uint64_t id) {
  auto it = associations_.find(id);
  return it == associations_.end() ? nullptr : it->second.get();
}

void Server::OnAssociationClosed(uint64_t id) { associations_.erase(id); }

void Server::Post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(posted_mu_);
  if (async_closed_) return;
  posted_.push_back(std::move(fn));
  uv_async_send(&async_);
}

void Server::OnAsync(uv_async_t* h) noexcept { static_cast<Server*>(h->data)->RunPosted(); }

void Server::RunPosted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void Server::ResumePaused() {
  for (auto& [id, a] : associations_) a->MaybeResumeReading();
}

void Server::Shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  RunPosted();  // deliver the responses of commits already done
  std::vector<ScpAssociation*> all;
  for (auto& [id, a] : associations_) all.push_back(a.get());
  for (ScpAssociation* a : all) a->AbortNow("shutting down");
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    async_closed_ = true;
    posted_.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

}  // namespace relais::router
