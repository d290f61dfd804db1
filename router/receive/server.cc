#include "router/receive/server.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "router/receive/association.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

namespace relais::router {
namespace {
// TCP connections held at once, including ones that have not associated
// yet. Past this, the oldest connection that has not associated is closed
// to make room; when every one has, the new connection is closed.
uint32_t MaxConnections(const ScpSettings& s) { return s.max_associations * 2 + 16; }
// Connections that have not associated, per peer address: one address (a
// broken device, a scanner of ports) cannot take the room of the others.
constexpr size_t kMaxUnassociatedPerPeer = 8;
// While connections that have not associated fill half the cap, new ones
// get at most this long to send their A-ASSOCIATE-RQ (a real SCU sends it
// within milliseconds of connecting).
constexpr uint64_t kArtimUnderPressureMs = 5000;
}  // namespace

uint64_t Server::ArtimForNewConnection() const {
  size_t unassociated = associations_.size() - std::min<size_t>(associations_.size(), established_);
  if (unassociated >= MaxConnections(settings_) / 2) {
    return std::min<uint64_t>(settings_.artim_timeout_ms, kArtimUnderPressureMs);
  }
  return settings_.artim_timeout_ms;
}

ScpAssociation* Server::OldestUnassociated(const ScpAssociation* except, const std::string& peer_ip,
                                           size_t* count) const {
  ScpAssociation* oldest = nullptr;
  *count = 0;
  for (const auto& [id, a] : associations_) {
    if (a.get() == except || a->established() || a->closing()) continue;
    if (!peer_ip.empty() && a->peer_ip() != peer_ip) continue;
    ++*count;
    if (oldest == nullptr || id < oldest->id()) oldest = a.get();
  }
  return oldest;
}

void Server::Evict(ScpAssociation* victim, const char* reason, const ScpAssociation* for_whom) {
  RLOG_WARN(
      "assoc=%llu event=connection-evicted reason=%s peer=%s for=%llu: it had not associated; "
      "closed to make room for a new connection",
      static_cast<unsigned long long>(victim->id()), reason, LogToken(victim->peer_ip()).c_str(),
      static_cast<unsigned long long>(for_whom->id()));
  if (metrics_ != nullptr) metrics_->ConnectionEvicted(reason);
  victim->AbortNow("evicted to make room");
}

Server::Server(uv_loop_t* loop, store::Store* store, ScpSettings settings)
    : loop_(loop), store_(store), settings_(std::move(settings)) {
  listener_.data = this;
  uv_async_init(loop_, &async_, &Server::OnAsync);
  async_.data = this;
}

Server::~Server() = default;

Status Server::Bind(uv_tcp_t* handle, const std::string& host, uint16_t port, const char* what) {
  sockaddr_storage addr;
  std::memset(&addr, 0, sizeof(addr));
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    return Status::InvalidArgument("listener.host '" + host + "' is not an IP address");
  }
  uv_tcp_init(loop_, handle);
  handle->data = this;
  int rc = uv_tcp_bind(handle, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(handle), 128, &Server::OnConnection);
  if (rc != 0) {
    return Status::IOError("cannot listen on " + host + ":" + std::to_string(port) + ": " + uv_strerror(rc) +
                           (rc == UV_EADDRINUSE
                                ? std::string(" (another process uses this port: stop it or change ") + what + ")"
                                : std::string()));
  }
  return Status::OK();
}

Status Server::Listen(const std::string& host, uint16_t port) {
  listening_ = true;  // the handle is initialized by Bind: closed by Shutdown either way
  return Bind(&listener_, host, port, "listener.port");
}

Status Server::ListenTls(const std::string& host, uint16_t port, std::shared_ptr<TlsContext> tls) {
  tls_ = std::move(tls);
  tls_listening_ = true;
  return Bind(&tls_listener_, host, port, "tls.port");
}

void Server::OnConnection(uv_stream_t* s, int status) noexcept {
  auto* self = static_cast<Server*>(s->data);
  if (status != 0) {
    RLOG_WARN("listener: accept error: %s", uv_strerror(status));
    return;
  }
  uv_tcp_t* listener = reinterpret_cast<uv_tcp_t*>(s);
  self->Accept(listener, listener == &self->tls_listener_ ? self->tls_ : nullptr);
}

void Server::Accept(uv_tcp_t* listener, std::shared_ptr<TlsContext> tls) {
  uint64_t id = next_id_++;
  auto assoc = std::make_unique<ScpAssociation>(this, id);
  ScpAssociation* a = assoc.get();
  associations_.emplace(id, std::move(assoc));
  if (!a->Start(reinterpret_cast<uv_stream_t*>(listener), std::move(tls))) return;
  if (shutting_down_) {
    RLOG_WARN("assoc=%llu event=connection-refused reason=\"shutting down\"", static_cast<unsigned long long>(id));
    a->AbortNow("refused");
    return;
  }
  MakeRoomFor(a);
}

// Established associations are never evicted: at the cap, the oldest
// connection that has not associated makes room, else the new one goes.
void Server::MakeRoomFor(ScpAssociation* a) {
  size_t from_peer = 0;
  ScpAssociation* oldest_of_peer = OldestUnassociated(a, a->peer_ip(), &from_peer);
  if (from_peer >= kMaxUnassociatedPerPeer && oldest_of_peer != nullptr) Evict(oldest_of_peer, "peer-cap", a);
  if (LiveConnections() <= MaxConnections(settings_)) return;
  size_t unassociated = 0;
  ScpAssociation* oldest = OldestUnassociated(a, "", &unassociated);
  if (oldest != nullptr) {
    Evict(oldest, "connection-cap", a);
    return;
  }
  RLOG_WARN(
      "assoc=%llu event=connection-refused reason=\"too many open connections\" open=%zu: every one has "
      "associated",
      static_cast<unsigned long long>(a->id()), LiveConnections());
  a->AbortNow("refused");
}

size_t Server::LiveConnections() const {
  size_t n = 0;
  for (const auto& [id, a] : associations_) n += a->closing() ? 0 : 1;
  return n;
}

// The contents of the rule file, or of every *.toml in the rule directory
// (symlinks followed), as one string to compare. Rule files are small
// (the loader refuses big ones).
std::string Server::RulesFingerprint(const std::string& path) {
  std::error_code ec;
  std::vector<std::string> files;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
      std::string name = e.path().filename().string();
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".toml") == 0) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::string out;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    out += f + '\0' + std::to_string(content.str().size()) + '\0' + content.str() + '\0';
  }
  return out;
}

Status Server::InitRules() {
  if (settings_.rules_path.empty()) {
    RLOG_WARN("event=no-rules: no [rules] path in the configuration; objects are stored and not routed");
    return Status::OK();
  }
  Result<std::shared_ptr<const rules::RuleSet>> loaded = rules::RuleSet::Load(settings_.rules_path, RulesBudget());
  rules_applied_seq_ = ++rules_load_seq_;
  if (!loaded.ok()) {
    if (audit_)
      audit_->Record("rules", {{"action", "load"},
                               {"path", settings_.rules_path},
                               {"result", "failed"},
                               {"error", loaded.status().message()}});
    return loaded.status();
  }
  rules_ = *loaded;
  rules_loaded_unix_ms_ = NowUnixMs();
  if (rules_listener_) rules_listener_(rules_);
  rules_fingerprint_ = RulesFingerprint(settings_.rules_path);
  if (audit_)
    audit_->Record("rules", {{"action", "load"},
                             {"path", settings_.rules_path},
                             {"result", "ok"},
                             {"rules", std::to_string(rules_->rule_count())}});
  RLOG_INFO("event=rules-loaded path=%s rules=%zu destinations=%zu", settings_.rules_path.c_str(), rules_->rule_count(),
            rules_->destinations().size());
  // Watch the directory (a file replaced by rename keeps being noticed).
  std::error_code ec;
  std::string dir = settings_.rules_path;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::filesystem::path p(dir);
    dir = p.has_parent_path() ? p.parent_path().string() : ".";
  }
  uv_timer_init(loop_, &rules_debounce_);
  rules_debounce_.data = this;
  rules_debounce_open_ = true;
  uv_fs_event_init(loop_, &rules_watch_);
  rules_watch_.data = this;
  int rc = uv_fs_event_start(&rules_watch_, &Server::OnRulesChanged, dir.c_str(), 0);
  if (rc != 0) {
    RLOG_WARN("event=rules-watch-failed dir=%s reason=\"%s\": reload with SIGHUP", dir.c_str(), uv_strerror(rc));
    uv_close(reinterpret_cast<uv_handle_t*>(&rules_watch_), nullptr);
  } else {
    rules_watching_ = true;
  }
  return Status::OK();
}

void Server::OnRulesChanged(uv_fs_event_t* h, const char*, int, int status) noexcept {
  auto* self = static_cast<Server*>(h->data);
  if (status != 0 || self->shutting_down_) return;
  // Any change in the directory may change the rules: a file written in
  // place, renamed over, or a symlink swapped (Kubernetes ConfigMaps swap a
  // "..data" link, and the event names only that). Reload once things have
  // settled, and only if the rule files' contents changed.
  // Started once, not restarted: a busy neighbour (a log file in the same
  // directory) must not postpone the reload forever.
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&self->rules_debounce_))) {
    uv_timer_start(&self->rules_debounce_, &Server::OnRulesDebounce, 300, 0);
  }
}

void Server::OnRulesDebounce(uv_timer_t* h) noexcept {
  auto* self = static_cast<Server*>(h->data);
  if (RulesFingerprint(self->settings_.rules_path) == self->rules_fingerprint_) return;  // unrelated change
  self->RequestRulesReload("file changed");
}

rules::CompileBudget Server::RulesBudget() const {
  rules::CompileBudget budget = settings_.rules_budget;
  budget.cancel = &rules_cancel_;
  return budget;
}

// One reload on the pool. Owned by its uv_work_t from uv_queue_work until
// OnRulesLoadDone; the work callback touches only this struct (the budget's
// cancel flag is an atomic of the Server, which outlives the loop's run).
struct Server::RulesLoad {
  uv_work_t req;
  Server* server = nullptr;
  uint64_t seq = 0;
  std::string why;
  std::string path;
  rules::CompileBudget budget;
  std::string fingerprint;  // of the files as read, taken just before
  Result<std::shared_ptr<const rules::RuleSet>> loaded = Status::Internal("the rule load did not run");
  std::vector<RulesReloadDone> done;  // told the outcome, on the loop thread
};

void Server::RequestRulesReload(const char* why, RulesReloadDone done) {
  if (shutting_down_) {
    if (done) done(Status::Unavailable("Relais is shutting down"));
    return;
  }
  if (settings_.rules_path.empty()) {
    RLOG_WARN("event=rules-reload-skipped trigger=\"%s\" reason=\"no [rules] path configured\"", why);
    if (done) done(Status::Unavailable("no rules are configured ([rules] path in the config file)"));
    return;
  }
  if (rules_load_ != nullptr) {
    // Coalesced: whatever is asked meanwhile is one more reload after this one.
    if (!rules_reload_pending_) {
      RLOG_INFO("event=rules-reload-queued trigger=\"%s\": a reload is running; another follows it", why);
    }
    // SIGHUP (or the admin) wins over "file changed": it reloads even unchanged files.
    if (!rules_reload_pending_ || rules_reload_pending_why_ == "file changed") rules_reload_pending_why_ = why;
    rules_reload_pending_ = true;
    if (done) rules_reload_pending_done_.push_back(std::move(done));
    return;
  }
  std::vector<RulesReloadDone> dones;
  if (done) dones.push_back(std::move(done));
  StartRulesLoad(why, std::move(dones));
}

void Server::StartRulesLoad(const std::string& why, std::vector<RulesReloadDone> done) {
  auto load = std::make_unique<RulesLoad>();
  load->req.data = load.get();
  load->server = this;
  load->seq = ++rules_load_seq_;
  load->why = why;
  load->path = settings_.rules_path;
  load->budget = RulesBudget();
  load->done = std::move(done);
  int rc = uv_queue_work(loop_, &load->req, &Server::OnRulesLoadWork, &Server::OnRulesLoadDone);
  if (rc != 0) {
    RLOG_ERROR("event=rules-reload-failed trigger=\"%s\" error=\"cannot start the reload: %s\"", why.c_str(),
               uv_strerror(rc));
    for (auto& d : load->done) d(Status::Internal(std::string("cannot start the reload: ") + uv_strerror(rc)));
    return;
  }
  RLOG_INFO(
      "event=rules-reload-started trigger=\"%s\" path=%s: compiling on a worker thread; the current rules "
      "stay in force meanwhile",
      why.c_str(), settings_.rules_path.c_str());
  rules_load_ = load.release();
}

// Pool thread.
void Server::OnRulesLoadWork(uv_work_t* req) noexcept {
  auto* load = static_cast<RulesLoad*>(req->data);
  try {
    load->fingerprint = RulesFingerprint(load->path);
    load->loaded = rules::RuleSet::Load(load->path, load->budget);
  } catch (const std::exception& e) {  // std::bad_alloc: nothing else throws here
    load->loaded = Status::ResourceExhausted(std::string("cannot load the rules: ") + e.what());
  }
}

void Server::OnRulesLoadDone(uv_work_t* req, int status) noexcept {
  std::unique_ptr<RulesLoad> load(static_cast<RulesLoad*>(req->data));
  Server* self = load->server;
  self->rules_load_ = nullptr;
  if (self->shutting_down_ || status == UV_ECANCELED) {
    RLOG_INFO("event=rules-reload-dropped trigger=\"%s\" reason=\"shutting down\"", load->why.c_str());
    for (auto& d : load->done) d(Status::Unavailable("Relais is shutting down"));
    for (auto& d : self->rules_reload_pending_done_) d(Status::Unavailable("Relais is shutting down"));
    self->rules_reload_pending_done_.clear();
    return;
  }
  Status applied = self->ApplyRules(load->seq, load->why, load->fingerprint, std::move(load->loaded));
  if (self->rules_outcome_listener_) self->rules_outcome_listener_();
  for (auto& d : load->done) d(applied);
  if (self->rules_reload_pending_) {
    self->rules_reload_pending_ = false;
    std::string why = std::move(self->rules_reload_pending_why_);
    std::vector<RulesReloadDone> dones = std::move(self->rules_reload_pending_done_);
    self->rules_reload_pending_done_.clear();
    // (Only "file changed" requests can be skipped, and they carry no `done`.)
    if (why == "file changed" && RulesFingerprint(self->settings_.rules_path) == self->rules_fingerprint_) return;
    self->StartRulesLoad(why, std::move(dones));
  }
}

Status Server::ReloadRules(const char* why) {
  if (settings_.rules_path.empty()) {
    RLOG_WARN("event=rules-reload-skipped reason=\"no [rules] path configured\"");
    return Status::Unavailable("no rules are configured ([rules] path in the config file)");
  }
  const uint64_t seq = ++rules_load_seq_;
  std::string fingerprint = RulesFingerprint(settings_.rules_path);
  Status applied = ApplyRules(seq, why, fingerprint, rules::RuleSet::Load(settings_.rules_path, RulesBudget()));
  if (rules_outcome_listener_) rules_outcome_listener_();
  return applied;
}

Status Server::ApplyRules(uint64_t seq, const std::string& why_text, const std::string& fingerprint,
                          Result<std::shared_ptr<const rules::RuleSet>> loaded) {
  const char* why = why_text.c_str();
  if (seq < rules_applied_seq_) {
    // A synchronous reload (admin API) started after this one and finished first.
    RLOG_INFO("event=rules-reload-superseded trigger=\"%s\": a later reload is already in force", why);
    return loaded.ok() ? Status::OK() : loaded.status();
  }
  rules_applied_seq_ = seq;
  if (!loaded.ok()) {
    // Remember the broken contents: they are reported once, not at every
    // unrelated change in the directory.
    rules_fingerprint_ = fingerprint;
    ++rule_reload_failures_;
    {
      const std::string m = loaded.status().message();
      rules_reload_error_ = m.substr(0, m.find('\n'));
      if (rules_reload_error_.empty()) rules_reload_error_ = "the rule files could not be loaded";
      rules_reload_failed_unix_ms_ = NowUnixMs();
    }
    std::istringstream lines(loaded.status().message());
    std::string line;
    while (std::getline(lines, line)) {
      RLOG_ERROR("event=rules-reload-failed trigger=\"%s\" error=\"%s\"", why, line.c_str());
    }
    if (audit_)
      audit_->Record("rules", {{"action", "reload"},
                               {"trigger", why},
                               {"path", settings_.rules_path},
                               {"result", "failed"},
                               {"error", loaded.status().message()}});
    RLOG_ERROR(
        "event=rules-reload-failed trigger=\"%s\" failures=%llu: the previous rules stay in force; "
        "fix the file (relais rules check %s)",
        why, static_cast<unsigned long long>(rule_reload_failures_), settings_.rules_path.c_str());
    return loaded.status();
  }
  rules_ = std::move(*loaded);
  rules_loaded_unix_ms_ = NowUnixMs();
  if (!rules_reload_error_.empty())
    RLOG_INFO("event=rules-reload-recovered trigger=\"%s\": the rules in force are the files on disk again", why);
  rules_reload_error_.clear();
  rules_reload_failed_unix_ms_ = 0;
  if (rules_listener_) rules_listener_(rules_);
  ++rule_reloads_;
  rules_fingerprint_ = fingerprint;
  if (audit_)
    audit_->Record("rules", {{"action", "reload"},
                             {"trigger", why},
                             {"path", settings_.rules_path},
                             {"result", "ok"},
                             {"rules", std::to_string(rules_->rule_count())}});
  RLOG_INFO("event=rules-reloaded trigger=\"%s\" rules=%zu destinations=%zu reloads=%llu", why, rules_->rule_count(),
            rules_->destinations().size(), static_cast<unsigned long long>(rule_reloads_));
  return Status::OK();
}

ScpAssociation* Server::FindAssociation(uint64_t id) {
  auto it = associations_.find(id);
  return it == associations_.end() ? nullptr : it->second.get();
}

void Server::OnAssociationClosed(uint64_t id) {
  associations_.erase(id);
  if (draining_ && !shutting_down_ && associations_.empty()) FinishDrain("every association ended");
}

void Server::CloseListeners() {
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  if (tls_listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tls_listener_), nullptr);
    tls_listening_ = false;
  }
}

void Server::Drain(uint64_t deadline_ms, std::function<void()> done) {
  if (draining_ || shutting_down_) return;
  draining_ = true;
  drain_done_ = std::move(done);
  CloseListeners();
  if (associations_.empty()) return FinishDrain("no association was open");
  RLOG_INFO("event=draining associations=%zu deadline_s=%.1f: no new associations; open ones may finish",
            associations_.size(), static_cast<double>(deadline_ms) / 1000);
  uv_timer_init(loop_, &drain_timer_);
  drain_timer_.data = this;
  drain_timer_open_ = true;
  uv_timer_start(
      &drain_timer_,
      [](uv_timer_t* t) noexcept {
        auto* self = static_cast<Server*>(t->data);
        RLOG_WARN(
            "event=drain-deadline associations=%zu: aborting them; their unacknowledged objects are not kept "
            "(the senders will send them again)",
            self->associations_.size());
        self->FinishDrain("deadline");
      },
      deadline_ms, 0);
}

void Server::FinishDrain(const char* why) {
  if (drain_timer_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
    drain_timer_open_ = false;
  }
  RLOG_INFO("event=drained reason=\"%s\"", why);
  Shutdown();
  if (drain_done_) {
    std::function<void()> done = std::move(drain_done_);
    drain_done_ = nullptr;
    done();
  }
}

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
  if (drain_timer_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
    drain_timer_open_ = false;
  }
  CloseListeners();
  // A reload still queued is cancelled; one running stops at its next rule.
  // Either way OnRulesLoadDone drops it (the loop runs until it is done).
  rules_cancel_ = true;
  if (rules_load_ != nullptr) (void)uv_cancel(reinterpret_cast<uv_req_t*>(&rules_load_->req));
  if (rules_watching_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&rules_watch_), nullptr);
    rules_watching_ = false;
  }
  if (rules_debounce_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&rules_debounce_), nullptr);
    rules_debounce_open_ = false;
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

bool Server::AuditBlocksIntake() const { return audit_ != nullptr && audit_required_ && audit_->failing(); }

}  // namespace relais::router
