#include "router/operate/admin_api.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/clock.h"
#include "base/hex.h"
#include "base/json_safe.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/text.h"
#include "router/operate/alerts.h"
#include "router/record/audit.h"
#include "router/operate/dashboard.h"
#include "router/deliver/delivery.h"
#include "router/record/metrics.h"
#include "router/operate/prometheus.h"
#include "router/operate/queue_ops.h"
#include "router/receive/server.h"
#include "router/operate/storage_watch.h"

namespace relais::router {

using nlohmann::json;

namespace {

std::string g_version = "unknown";
std::string g_revision = "unknown";

constexpr size_t kMaxJsonDepth = 16;

// ISO time, or null when 0.
json IsoOrNull(int64_t unix_ms) { return unix_ms == 0 ? json(nullptr) : json(IsoTime(unix_ms)); }

bool PercentDecode(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out->push_back(' ');
    } else if (s[i] == '%') {
      std::string byte;
      if (i + 2 >= s.size()) return false;
      if (!HexDecode(s.substr(i + 1, 2), &byte)) return false;
      out->append(byte);
      i += 2;
    } else {
      out->push_back(s[i]);
    }
  }
  return true;
}

// Nesting depth of a JSON text (brackets outside strings); stops counting
// past `limit`.
size_t JsonDepth(std::string_view text, size_t limit) {
  size_t depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) return max_depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

std::string ErrorBody(const std::string& what) { return JsonDump(json{{"error", what}}); }

const char* OutcomeOf(int status) {
  if (status < 400) return "ok";
  if (status == 401) return "unauthorized";
  if (status == 403) return "forbidden";
  if (status == 404) return "not-found";
  if (status < 500) return "bad-request";
  return "error";
}

const char* RoleName(AdminRole r) {
  switch (r) {
    case AdminRole::kViewer: return "viewer";
    case AdminRole::kOperator: return "operator";
    case AdminRole::kAdmin: return "admin";
    case AdminRole::kNone: break;
  }
  return "none";
}

json RowJson(const store::QueueRow& r, const store::ObjectMeta* m, bool dead) {
  json j = {{"destination", r.destination},
            {"priority", r.priority},
            {"object_id", r.object_id},
            {"sop_instance_uid", m ? m->sop_instance_uid : ""},
            {"study_instance_uid", m ? m->study_instance_uid : ""},
            {"patient_id", m ? m->patient_id : ""},
            {"modality", m ? m->modality : ""},
            {"raw_size", m ? m->raw_size : 0},
            {"received", m ? IsoOrNull(m->received_unix_ms) : json(nullptr)},
            {"attempts", r.attempts},
            {"next_attempt", dead ? json(nullptr) : json(IsoTime(r.next_attempt_unix_ms == 0 ? 1 : r.next_attempt_unix_ms))},
            {"rule", r.rule},
            {"last_status", Hex4(r.last_status)},
            {"last_error", r.last_error}};
  if (dead) {
    j["dead_at"] = IsoOrNull(r.dead_unix_ms);
    j["dead_at_unix_ms"] = r.dead_unix_ms;
  }
  return j;
}

}  // namespace

AdminRole ParseAdminRole(std::string_view role) {
  if (role == "viewer") return AdminRole::kViewer;
  if (role == "operator") return AdminRole::kOperator;
  if (role == "admin") return AdminRole::kAdmin;
  return AdminRole::kNone;
}

void SetAdminBuildInfo(std::string version, std::string revision) {
  g_version = std::move(version);
  g_revision = std::move(revision);
}

// One request in progress.
struct AdminApi::Ctx : std::enable_shared_from_this<AdminApi::Ctx> {
  AdminRequest req;
  Respond respond;
  const Token* token = nullptr;
  int64_t started_ms = 0;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  bool answered = false;
};

AdminApi::AdminApi(std::vector<rules::AdminToken> tokens, Sources sources)
    : src_(std::move(sources)), now_(&NowUnixMs), alive_(std::make_shared<bool>(true)) {
  for (const rules::AdminToken& t : tokens) {
    Token tok;
    tok.name = t.name;
    tok.role = ParseAdminRole(t.role);
    std::string raw;
    if (tok.role == AdminRole::kNone || t.sha256.size() != 64 || !HexDecode(t.sha256, &raw)) {
      RLOG_WARN("event=admin-token-ignored name=\"%s\" reason=\"invalid role or sha256\"", t.name.c_str());
      continue;
    }
    std::copy(raw.begin(), raw.end(), tok.hash);
    tokens_.push_back(std::move(tok));
  }
}

AdminApi::~AdminApi() { *alive_ = false; }

const AdminApi::Token* AdminApi::Authenticate(const std::string& authorization) const {
  static constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size()) return nullptr;
  std::string_view scheme(authorization.data(), kBearer.size());
  bool bearer = true;
  for (size_t i = 0; i < kBearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(scheme[i])) != std::tolower(static_cast<unsigned char>(kBearer[i])))
      bearer = false;
  }
  if (!bearer) return nullptr;
  std::string_view token = std::string_view(authorization).substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty()) return nullptr;
  std::array<uint8_t, 32> md;
  if (!Sha256(token, &md)) return nullptr;
  // Compare with every token (no early exit) in constant time.
  const Token* found = nullptr;
  for (const Token& t : tokens_) {
    if (CRYPTO_memcmp(md.data(), t.hash, 32) == 0) found = &t;
  }
  return found;
}

void AdminApi::Audit(const Ctx& c, std::string_view result, int status, std::string_view detail) {
  if (src_.audit == nullptr) return;
  std::string st = std::to_string(status);
  const std::initializer_list<AuditLog::Field> fields = {
      {"token", c.token ? std::string_view(c.token->name) : std::string_view()},
      {"role", c.token ? RoleName(c.token->role) : ""},
      {"client", c.req.client},
      {"method", c.req.method},
      {"path", c.req.path},
      {"result", result},
      {"status", st},
      {"detail", detail}};
  if (result == "refused" && (status == 401 || status == 403)) {
    // Anyone can send these as fast as they like: the first of a window is
    // recorded, the rest counted into one summary record (router/record/audit.h).
    src_.audit->RecordRefusal("admin", AuditAddressOf(c.req.client), fields,
                              {"token", "role", "result", "status", "detail"});
  } else {
    src_.audit->Record("admin", fields);
  }
}

const std::vector<store::Store::QueueSummary>* AdminApi::Queues() {
  if (src_.store == nullptr) return nullptr;
  const int64_t now = now_();
  if (!queues_ok_ || now - queues_at_ms_ >= 1000 || now < queues_at_ms_) {
    Result<std::vector<store::Store::QueueSummary>> q = src_.store->SummarizeQueues();
    queues_ok_ = q.ok();
    queues_at_ms_ = now;
    if (q.ok()) queues_ = std::move(*q);
  }
  return queues_ok_ ? &queues_ : nullptr;
}

// --- the route table ---

struct AdminApi::Route {
  const char* method;
  AdminRole role;  // kNone: no token needed
};

void AdminApi::Handle(const AdminRequest& request, Respond respond) {
  auto c = std::make_shared<Ctx>();
  c->req = request;
  c->started_ms = now_();
  // Every answer goes through here: one log line, one count.
  std::shared_ptr<bool> alive = alive_;
  c->respond = [this, alive, c_raw = c.get(), respond = std::move(respond)](AdminResponse r) {
    if (!*alive) return;
    if (c_raw->answered) return;
    c_raw->answered = true;
    r.token_name = c_raw->token ? c_raw->token->name : "";
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c_raw->t0).count();
    RLOG_INFO("event=admin-request method=%s path=\"%s\" status=%d token=\"%s\" client=%s ms=%.1f",
              c_raw->req.method.c_str(), JsonEscape(c_raw->req.path).c_str(), r.status, r.token_name.c_str(),
              c_raw->req.client.c_str(), ms);
    if (src_.metrics != nullptr) src_.metrics->AdminRequest(OutcomeOf(r.status));
    respond(std::move(r));
  };
  try {
    const std::string& p = c->req.path;
    const std::string& m = c->req.method;
    // Path -> (allowed method, role, handler).
    std::string allow;
    AdminRole role = AdminRole::kViewer;
    std::function<void()> run;
    auto match = [&](const char* method, AdminRole r, std::function<void()> fn) {
      allow = method;
      role = r;
      if (m == method) run = std::move(fn);
    };
    static constexpr std::string_view kDest = "/api/destinations/";
    static constexpr std::string_view kObj = "/api/objects/";
    if (p == "/" || p == "/index.html") {
      match("GET", AdminRole::kNone, [&] { Dashboard(*c); });
    } else if (p == "/healthz") {
      match("GET", AdminRole::kNone, [&] { Healthz(*c); });
    } else if (p == "/readyz") {
      match("GET", AdminRole::kNone, [&] { Readyz(*c); });
    } else if (p == "/metrics") {
      match("GET", AdminRole::kViewer, [&] { MetricsPage(*c); });
    } else if (p == "/api/status") {
      match("GET", AdminRole::kViewer, [&] { StatusPage(*c); });
    } else if (p == "/api/destinations") {
      match("GET", AdminRole::kViewer, [&] { Destinations(*c, ""); });
    } else if (p.size() > kDest.size() && p.compare(0, kDest.size(), kDest) == 0) {
      std::string rest = p.substr(kDest.size());
      size_t slash = rest.find('/');
      if (slash == std::string::npos) {
        match("GET", AdminRole::kViewer, [&, rest] { Destinations(*c, rest); });
      } else {
        std::string name = rest.substr(0, slash), verb = rest.substr(slash + 1);
        if (!name.empty() && (verb == "pause" || verb == "resume")) {
          match("POST", AdminRole::kOperator, [&, name, verb] { PauseResume(*c, name, verb == "pause"); });
        }
      }
    } else if (p == "/api/queue") {
      match("GET", AdminRole::kViewer, [&] { QueueList(*c, false); });
    } else if (p == "/api/dead") {
      match("GET", AdminRole::kViewer, [&] { QueueList(*c, true); });
    } else if (p.size() > kObj.size() && p.compare(0, kObj.size(), kObj) == 0 &&
               p.find('/', kObj.size()) == std::string::npos) {
      std::string uid = p.substr(kObj.size());
      match("GET", AdminRole::kViewer, [&, uid] { Object(*c, uid); });
    } else if (p == "/api/failures") {
      match("GET", AdminRole::kViewer, [&] { Failures(*c); });
    } else if (p == "/api/throughput") {
      match("GET", AdminRole::kViewer, [&] { Throughput(*c); });
    } else if (p == "/api/queue/retry") {
      match("POST", AdminRole::kOperator, [&] { QueueAction(*c, false); });
    } else if (p == "/api/queue/purge") {
      match("POST", AdminRole::kAdmin, [&] { QueueAction(*c, true); });
    } else if (p == "/api/rules/reload") {
      match("POST", AdminRole::kOperator, [&] { RulesReload(*c); });
    }
    const bool is_public = !allow.empty() && role == AdminRole::kNone;
    if (!is_public) {
      c->token = Authenticate(c->req.authorization);
      if (c->token == nullptr) {
        Refuse(*c, 401,
               c->req.authorization.empty()
                   ? "this needs a token: send \"Authorization: Bearer TOKEN\" (relais admin token NAME makes one)"
                   : "unknown token: check it, or make one with relais admin token NAME and add it to [admin]");
        return;
      }
    }
    if (allow.empty()) {
      c->respond({404, "application/json", ErrorBody("no such path: " + p + " (see docs/admin-api.md)"), {}, ""});
      return;
    }
    if (!run) {
      AdminResponse r{405, "application/json",
                      ErrorBody("method " + m + " is not allowed on " + p + "; use " + allow), {}, ""};
      r.headers.push_back({"Allow", allow});
      c->respond(std::move(r));
      return;
    }
    if (!is_public && c->token->role < role) {
      Refuse(*c, 403,
             std::string("token \"") + c->token->name + "\" has role " + RoleName(c->token->role) + "; this needs " +
                 RoleName(role));
      return;
    }
    run();
  } catch (const std::exception& e) {
    RLOG_ERROR("event=admin-error path=\"%s\" reason=\"%s\"", JsonEscape(c->req.path).c_str(), e.what());
    c->respond({500, "application/json", ErrorBody(std::string("internal error: ") + e.what()), {}, ""});
  } catch (...) {
    c->respond({500, "application/json", ErrorBody("internal error"), {}, ""});
  }
  // `c` may still be referenced by a pending answer (retry/purge keep a copy).
}

void AdminApi::Refuse(Ctx& c, int status, const std::string& why) {
  RLOG_WARN("event=admin-refused status=%d client=%s token=\"%s\" method=%s path=\"%s\" reason=\"%s\"", status,
            c.req.client.c_str(), c.token ? c.token->name.c_str() : "", c.req.method.c_str(),
            JsonEscape(c.req.path).c_str(), JsonEscape(why).c_str());
  Audit(c, "refused", status, why);
  AdminResponse r{status, "application/json", ErrorBody(why), {}, ""};
  if (status == 401) r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"relais\""});
  c.respond(std::move(r));
}

// --- probes and pages ---

void AdminApi::Healthz(Ctx& c) { c.respond({200, "application/json", R"({"status":"ok"})", {}, ""}); }

void AdminApi::Readyz(Ctx& c) {
  json checks = json::object();
  bool ready = true;
  if (src_.store == nullptr) {
    checks["store"] = "no store";
    ready = false;
  } else {
    checks["store"] = "ok";
  }
  if (src_.server != nullptr && !src_.rules_path.empty() && src_.server->rules() == nullptr) {
    checks["rules"] = "rules not loaded from " + src_.rules_path + ": fix them and reload (see the log)";
    ready = false;
  } else {
    checks["rules"] = "ok";
  }
  if (src_.storage != nullptr) {
    const StorageWatch::Usage& u = src_.storage->usage();
    if (u.intake_closed || (u.capacity_bytes > 0 && u.fraction >= src_.storage->high_water())) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), "above high-water mark: %.1f%% used (high %.0f%%)", u.fraction * 100,
                    src_.storage->high_water() * 100);
      checks["storage"] = buf;
      ready = false;
    } else {
      checks["storage"] = "ok";
    }
  }
  c.respond({ready ? 200 : 503, "application/json", JsonDump(json{{"ready", ready}, {"checks", checks}}), {}, ""});
}

void AdminApi::Dashboard(Ctx& c) {
  AdminResponse r{200, "text/html; charset=utf-8", std::string(DashboardHtml()), {}, ""};
  r.headers.push_back({"Cache-Control", "no-store"});
  c.respond(std::move(r));
}

void AdminApi::MetricsPage(Ctx& c) {
  MetricsSources ms;
  ms.metrics = src_.metrics;
  ms.server = src_.server;
  ms.delivery = src_.delivery;
  ms.store = src_.store;
  ms.storage = src_.storage;
  ms.queues = Queues();
  ms.now_unix_ms = now_();
  c.respond({200, "text/plain; version=0.0.4; charset=utf-8", RenderPrometheus(ms), {}, ""});
}

void AdminApi::StatusPage(Ctx& c) {
  const int64_t now = now_();
  json j;
  j["version"] = g_version;
  j["revision"] = g_revision;
  j["started"] = IsoOrNull(src_.started_unix_ms);
  j["started_unix_ms"] = src_.started_unix_ms;
  j["uptime_s"] = src_.started_unix_ms > 0 && now > src_.started_unix_ms ? (now - src_.started_unix_ms) / 1000 : 0;
  j["ae_title"] = src_.ae_title;
  j["listener"] = src_.listener;
  j["associations_open"] = src_.server ? src_.server->established_count() : 0;
  j["objects_received"] = src_.metrics ? src_.metrics->objects_received() : 0;
  j["bytes_received"] = src_.metrics ? src_.metrics->bytes_received() : 0;
  const std::string reason = src_.server ? src_.server->intake_closed() : std::string();
  j["intake"] = reason.empty() ? "open" : "closed";
  j["intake_reason"] = reason;
  json st = {{"path", src_.store_path}};
  if (src_.store != nullptr) {
    store::Store::Stats s = src_.store->GetStats();
    st["objects"] = s.objects;
    st["queue_rows"] = s.queue_rows;
    st["dead_rows"] = s.dead_rows;
    st["used_bytes"] = s.used_bytes;
    st["raw_bytes"] = s.raw_bytes;
    st["stored_bytes"] = s.stored_bytes;
    st["file_bytes"] = s.file_bytes;
  }
  if (src_.storage != nullptr) {
    const StorageWatch::Usage& u = src_.storage->usage();
    st["used_bytes"] = u.used_bytes;
    st["capacity_bytes"] = u.capacity_bytes;
    st["fraction"] = u.fraction;
    st["high_water"] = src_.storage->high_water();
    st["low_water"] = src_.storage->low_water();
  }
  j["store"] = st;
  json rules = {{"path", src_.rules_path}};
  std::shared_ptr<const rules::RuleSet> rs = src_.server ? src_.server->rules() : nullptr;
  rules["loaded"] = rs != nullptr;
  rules["rules"] = rs ? rs->rule_count() : 0;
  rules["destinations"] = rs ? rs->destinations().size() : 0;
  rules["reloads"] = src_.server ? src_.server->rule_reloads() : 0;
  rules["reload_failures"] = src_.server ? src_.server->rule_reload_failures() : 0;
  j["rules"] = rules;
  json alerts = json::array();
  if (src_.alerts != nullptr) {
    for (const Alerts::Active& a : src_.alerts->active()) {
      alerts.push_back({{"kind", a.kind},
                        {"subject", a.subject},
                        {"since", IsoOrNull(a.since_unix_ms)},
                        {"since_unix_ms", a.since_unix_ms},
                        {"message", a.message}});
    }
  }
  j["alerts"] = alerts;
  c.respond({200, "application/json", JsonDump(j), {}, ""});
}

// --- destinations ---

void AdminApi::Destinations(Ctx& c, const std::string& name) {
  const int64_t now = now_();
  std::map<std::string, json> out;
  std::set<std::string> configured;
  std::shared_ptr<const rules::RuleSet> rs = src_.server ? src_.server->rules() : nullptr;
  if (rs) {
    for (const rules::Destination& d : rs->destinations()) {
      configured.insert(d.name);
      out[d.name] = {{"name", d.name}, {"ae_title", d.ae_title}, {"host", d.host}, {"port", d.port},
                     {"configured", true}, {"state", "idle"}, {"paused", false}, {"associations", 0},
                     {"in_flight", 0}, {"sent", 0}, {"failed", 0}, {"retries", 0}, {"bytes_sent", 0},
                     {"bytes_per_s", 0}, {"failures_by_class", json::object()}, {"last_error", ""},
                     {"last_error_at", nullptr}, {"failing_since", nullptr}, {"next_try", nullptr}};
    }
  }
  if (src_.delivery != nullptr) {
    for (const DeliveryScheduler::DestinationStats& s : src_.delivery->Stats()) {
      json& j = out[s.name];
      j["name"] = s.name;
      if (!s.ae_title.empty() || !j.contains("ae_title")) j["ae_title"] = s.ae_title;
      if (!s.host.empty() || !j.contains("host")) j["host"] = s.host;
      if (s.port != 0 || !j.contains("port")) j["port"] = s.port;
      j["configured"] = configured.count(s.name) > 0;
      j["state"] = s.state.empty() ? (s.down ? "down" : "idle") : s.state;
      j["paused"] = s.paused;
      j["associations"] = s.associations;
      j["in_flight"] = s.in_flight;
      j["sent"] = s.sent;
      j["failed"] = s.failed;
      j["retries"] = s.retries;
      j["bytes_sent"] = s.bytes_sent;
      Rate& rate = rates_[s.name];
      if (rate.at_ms == 0 || s.bytes_sent < rate.bytes) {
        rate = Rate{s.bytes_sent, now, 0};
      } else if (now - rate.at_ms >= 1000) {
        rate.per_s = static_cast<double>(s.bytes_sent - rate.bytes) * 1000.0 / static_cast<double>(now - rate.at_ms);
        rate.bytes = s.bytes_sent;
        rate.at_ms = now;
      }
      j["bytes_per_s"] = static_cast<uint64_t>(rate.per_s);
      j["failures_by_class"] = s.failures_by_class;
      j["last_error"] = s.last_error;
      j["last_error_at"] = IsoOrNull(s.last_error_unix_ms);
      j["failing_since"] = IsoOrNull(s.failing_since_unix_ms);
      j["failing_since_unix_ms"] = s.failing_since_unix_ms;
      j["next_try"] = IsoOrNull(s.next_try_unix_ms);
      j["consecutive_failures"] = s.consecutive_failures;
    }
  }
  if (const std::vector<store::Store::QueueSummary>* qs = Queues()) {
    for (const store::Store::QueueSummary& q : *qs) {
      json& j = out[q.destination];
      if (!j.contains("name")) {
        j = {{"name", q.destination}, {"ae_title", ""}, {"host", ""}, {"port", 0}, {"configured", false},
             {"state", "idle"}, {"paused", false}, {"associations", 0}, {"in_flight", 0}, {"sent", 0},
             {"failed", 0}, {"retries", 0}, {"bytes_sent", 0}, {"bytes_per_s", 0},
             {"failures_by_class", json::object()}, {"last_error", ""}, {"last_error_at", nullptr},
             {"failing_since", nullptr}, {"next_try", nullptr}};
      }
      j["queued"] = q.rows;
      j["dead"] = q.dead_rows;
      j["oldest_queued"] = IsoOrNull(q.oldest_received_unix_ms);
      j["oldest_queued_age_s"] =
          q.oldest_received_unix_ms > 0 && now > q.oldest_received_unix_ms ? (now - q.oldest_received_unix_ms) / 1000 : 0;
    }
  }
  for (auto& [n, j] : out) {
    if (!j.contains("queued")) {
      j["queued"] = 0;
      j["dead"] = 0;
      j["oldest_queued"] = nullptr;
      j["oldest_queued_age_s"] = 0;
    }
    if (!j.contains("bytes_per_s")) j["bytes_per_s"] = 0;
    if (!j.contains("configured")) j["configured"] = configured.count(n) > 0;
  }
  if (!name.empty()) {
    auto it = out.find(name);
    if (it == out.end()) {
      c.respond({404, "application/json", ErrorBody("no destination named " + name), {}, ""});
      return;
    }
    c.respond({200, "application/json", JsonDump(it->second), {}, ""});
    return;
  }
  json arr = json::array();
  for (auto& [n, j] : out) arr.push_back(std::move(j));
  c.respond({200, "application/json", JsonDump(json{{"destinations", std::move(arr)}}), {}, ""});
}

// --- queue and dead-letter listing ---

void AdminApi::QueueList(Ctx& c, bool dead) {
  if (src_.store == nullptr) {
    c.respond({409, "application/json", ErrorBody("no store"), {}, ""});
    return;
  }
  std::string destination, patient_id, study, sop, cursor;
  uint64_t limit = 100;
  // Parse the query: name=value&...
  std::string_view q = c.req.query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string key, value;
    if (!PercentDecode(part.substr(0, eq), &key) ||
        !PercentDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), &value)) {
      c.respond({400, "application/json", ErrorBody("bad percent-encoding in the query"), {}, ""});
      return;
    }
    if (key == "destination") {
      destination = value;
    } else if (key == "patient_id") {
      patient_id = value;
    } else if (key == "study_instance_uid") {
      study = value;
    } else if (key == "sop_instance_uid") {
      sop = value;
    } else if (key == "cursor") {
      cursor = value;
    } else if (key == "limit") {
      char* end = nullptr;
      errno = 0;
      unsigned long long v = value.empty() || value[0] == '-' ? 0 : std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || end == nullptr || *end != '\0' || errno != 0 || v < 1 || v > 1000) {
        c.respond({400, "application/json", ErrorBody("limit must be an integer from 1 to 1000"), {}, ""});
        return;
      }
      limit = v;
    } else {
      c.respond({400, "application/json",
                 ErrorBody("unknown parameter \"" + key +
                           "\": use destination, patient_id, study_instance_uid, sop_instance_uid, limit, cursor"),
                 {}, ""});
      return;
    }
  }
  // The cursor: hex of "destination\0priority\0object_id" of the last row
  // returned; rows sort by (destination, priority descending, object id).
  bool have_cursor = false;
  std::string cur_dest;
  int64_t cur_prio = 0;
  uint64_t cur_id = 0;
  if (!cursor.empty()) {
    std::string raw;
    size_t z1 = std::string::npos, z2 = std::string::npos;
    if (HexDecode(cursor, &raw)) {
      z1 = raw.find('\0');
      if (z1 != std::string::npos) z2 = raw.find('\0', z1 + 1);
    }
    char* e1 = nullptr;
    char* e2 = nullptr;
    if (z2 != std::string::npos) {
      std::string p = raw.substr(z1 + 1, z2 - z1 - 1), id = raw.substr(z2 + 1);
      errno = 0;
      cur_prio = std::strtoll(p.c_str(), &e1, 10);
      cur_id = std::strtoull(id.c_str(), &e2, 10);
      have_cursor = !p.empty() && !id.empty() && *e1 == '\0' && *e2 == '\0' && errno == 0;
      cur_dest = raw.substr(0, z1);
    }
    if (!have_cursor) {
      c.respond({400, "application/json", ErrorBody("bad cursor: use next_cursor from the previous page"), {}, ""});
      return;
    }
  }
  auto after_cursor = [&](const store::QueueRow& r) {
    if (!have_cursor) return true;
    if (r.destination != cur_dest) return r.destination > cur_dest;
    if (r.priority != cur_prio) return r.priority < cur_prio;
    return r.object_id > cur_id;
  };
  uint64_t sop_id = 0;
  if (!sop.empty()) {
    Result<store::ObjectMeta> m = src_.store->Find(sop);
    if (!m.ok()) {
      c.respond({200, "application/json", JsonDump(json{{"rows", json::array()}}), {}, ""});
      return;
    }
    sop_id = m->id;
  }
  json rows = json::array();
  std::string next;
  const store::QueueRow* last = nullptr;
  store::QueueRow last_row;
  uint64_t taken = 0;
  bool more = false;
  Status st;
  auto visit = [&](const store::QueueRow& r) {
    if (!destination.empty() && r.destination != destination) return true;
    if (sop_id != 0 && r.object_id != sop_id) return true;
    if (!after_cursor(r)) return true;
    Result<store::ObjectMeta> m = src_.store->Get(r.object_id);
    const store::ObjectMeta* mp = m.ok() ? &*m : nullptr;
    if (!patient_id.empty() && (!mp || mp->patient_id != patient_id)) return true;
    if (!study.empty() && (!mp || mp->study_instance_uid != study)) return true;
    if (taken == limit) {
      more = true;
      return false;
    }
    rows.push_back(RowJson(r, mp, dead));
    last_row = r;
    last = &last_row;
    ++taken;
    return true;
  };
  if (dead) {
    st = src_.store->ListDead(visit);
  } else if (!destination.empty()) {
    st = src_.store->ListQueue(destination, visit);
  } else {
    st = src_.store->ListQueue(visit);
  }
  if (!st.ok()) {
    c.respond({500, "application/json", ErrorBody("store: " + st.message()), {}, ""});
    return;
  }
  json j = {{"rows", std::move(rows)}};
  if (more && last != nullptr) {
    std::string raw = last->destination;
    raw.push_back('\0');
    raw += std::to_string(last->priority);
    raw.push_back('\0');
    raw += std::to_string(last->object_id);
    j["next_cursor"] = HexEncode(raw);
  }
  c.respond({200, "application/json", JsonDump(j), {}, ""});
}

void AdminApi::Object(Ctx& c, const std::string& encoded_uid) {
  std::string uid;
  if (!PercentDecode(encoded_uid, &uid)) uid = encoded_uid;
  if (src_.store == nullptr) {
    c.respond({409, "application/json", ErrorBody("no store"), {}, ""});
    return;
  }
  Result<store::ObjectMeta> m = src_.store->Find(uid);
  if (m.status().IsNotFound()) {
    c.respond({404, "application/json",
               ErrorBody("no stored object has SOP Instance UID " + uid +
                         " (never received, or delivered and removed: see the log)"),
               {}, ""});
    return;
  }
  if (!m.ok()) {
    c.respond({500, "application/json", ErrorBody("store: " + m.status().message()), {}, ""});
    return;
  }
  QueueSelection sel;
  sel.uids = {uid};
  std::vector<SelectedRow> rows;
  Status s = SelectRows(*src_.store, sel, {m->id}, /*want_live=*/true, &rows);
  json attempts = json::array();
  if (s.ok()) {
    s = src_.store->ListAttempts(m->id, [&](const store::Attempt& a) {
      attempts.push_back({{"at", IsoOrNull(a.unix_ms)}, {"at_unix_ms", a.unix_ms}, {"destination", a.destination},
                          {"association", a.association}, {"result", a.result}, {"status", Hex4(a.status)},
                          {"error", a.error}});
      return true;
    });
  }
  if (!s.ok()) {
    c.respond({500, "application/json", ErrorBody("store: " + s.message()), {}, ""});
    return;
  }
  json routes = json::array();
  for (const store::Route& r : m->routes) {
    std::string state = "done";
    for (const SelectedRow& sr : rows) {
      if (sr.row.destination == r.destination) state = sr.dead ? "dead" : "queued";
    }
    routes.push_back({{"destination", r.destination}, {"priority", r.priority}, {"rule", r.rule},
                      {"edits", r.edits}, {"state", state}});
  }
  json obj = {{"sop_instance_uid", m->sop_instance_uid}, {"id", m->id}, {"sop_class_uid", m->sop_class_uid},
              {"modality", m->modality}, {"patient_id", m->patient_id},
              {"study_instance_uid", m->study_instance_uid}, {"series_instance_uid", m->series_instance_uid},
              {"transfer_syntax_uid", m->transfer_syntax_uid}, {"raw_size", m->raw_size},
              {"stored_size", m->stored_size}, {"received", IsoOrNull(m->received_unix_ms)},
              {"received_unix_ms", m->received_unix_ms}, {"calling_ae", m->calling_ae},
              {"called_ae", m->called_ae}, {"peer", m->peer_address}, {"routing", m->routing},
              {"matched_rules", m->matched_rules}, {"routes", routes}};
  json queued = json::array(), deadrows = json::array();
  for (const SelectedRow& sr : rows) (sr.dead ? deadrows : queued).push_back(RowJson(sr.row, &*m, sr.dead));
  c.respond({200, "application/json",
             JsonDump(json{{"object", obj}, {"queued", queued}, {"dead", deadrows}, {"attempts", attempts}}), {}, ""});
}

void AdminApi::Failures(Ctx& c) {
  json arr = json::array();
  if (src_.delivery != nullptr) {
    for (const DeliveryScheduler::FailureEvent& f : src_.delivery->RecentFailures()) {
      arr.push_back({{"at", IsoOrNull(f.unix_ms)}, {"at_unix_ms", f.unix_ms}, {"destination", f.destination},
                     {"sop_instance_uid", f.sop_instance_uid}, {"association", f.association},
                     {"result", f.result}, {"status", Hex4(f.status)}, {"error", f.error}});
      if (arr.size() == 100) break;
    }
  }
  c.respond({200, "application/json", JsonDump(json{{"failures", arr}}), {}, ""});
}

void AdminApi::Throughput(Ctx& c) {
  json arr = json::array();
  if (src_.metrics != nullptr) {
    for (const Metrics::Minute& m : src_.metrics->LastHour(now_())) {
      arr.push_back({{"start", IsoOrNull(m.start_unix_ms)}, {"start_unix_ms", m.start_unix_ms},
                     {"received", m.received}, {"received_bytes", m.received_bytes}, {"sent", m.sent},
                     {"sent_bytes", m.sent_bytes}});
    }
  }
  c.respond({200, "application/json", JsonDump(json{{"minutes", arr}}), {}, ""});
}

// --- actions ---

namespace {

// Parses a request body that must be empty or a JSON object whose keys are
// all in `allowed`. On failure returns false with *error set.
bool ParseBody(const std::string& body, std::initializer_list<std::string_view> allowed, json* out,
               std::string* error) {
  size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) {
    *out = json::object();
    return true;
  }
  // nlohmann's lexer ends its input at a NUL byte: refuse them first.
  if (body.find('\0') != std::string::npos) {
    *error = "the body is not valid JSON (it holds a NUL byte); send a JSON object";
    return false;
  }
  if (JsonDepth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    *error = "the body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  *out = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    *error = "the body is not valid JSON (RFC 8259); send a JSON object";
    return false;
  }
  if (!out->is_object()) {
    *error = "the body must be a JSON object";
    return false;
  }
  for (auto it = out->begin(); it != out->end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      *error = "unknown field \"" + it.key() + "\"" + (names.empty() ? ": this takes no fields" : "; allowed: " + names);
      return false;
    }
  }
  return true;
}

}  // namespace

void AdminApi::QueueAction(Ctx& c, bool purge) {
  const char* verb = purge ? "purge" : "retry";
  auto fail = [&](int status, const std::string& why) {
    Audit(c, status >= 500 ? "failed" : "refused", status, why);
    c.respond({status, "application/json", ErrorBody(why), {}, ""});
  };
  json body;
  std::string error;
  if (!ParseBody(c.req.body, {"dead", "uids", "destination"}, &body, &error)) return fail(400, error);
  QueueSelection sel;
  if (body.contains("dead")) {
    if (!body["dead"].is_boolean()) return fail(400, "\"dead\" must be true or false");
    sel.dead = body["dead"].get<bool>();
  }
  if (body.contains("destination")) {
    if (!body["destination"].is_string() || body["destination"].get<std::string>().empty())
      return fail(400, "\"destination\" must be a non-empty string (a destination name)");
    sel.destination = body["destination"].get<std::string>();
  }
  if (body.contains("uids")) {
    const json& u = body["uids"];
    if (!u.is_array()) return fail(400, "\"uids\" must be an array of SOP Instance UID strings");
    if (u.size() > 10000) return fail(400, "at most 10000 uids per request");
    for (const json& x : u) {
      if (!x.is_string() || x.get<std::string>().empty() || x.get<std::string>().size() > 64)
        return fail(400, "\"uids\" must be an array of SOP Instance UID strings (1-64 characters)");
      sel.uids.push_back(x.get<std::string>());
    }
    if (sel.uids.empty()) return fail(400, "\"uids\" is empty: name at least one SOP Instance UID");
  }
  if (purge ? (!sel.dead && sel.uids.empty() && sel.destination.empty()) : (!sel.dead && sel.uids.empty())) {
    return fail(400, purge ? "say what to purge: {\"dead\":true}, {\"uids\":[...]} or {\"destination\":\"NAME\"}"
                           : "say what to retry: {\"dead\":true} or {\"uids\":[...]} (optionally \"destination\")");
  }
  if (src_.store == nullptr || !src_.post) return fail(409, "no store to act on");
  std::string who = "admin API " + std::string(verb) + " (token " + (c.token ? c.token->name : "") + ")";
  Result<QueuePlan> planned =
      PlanQueueAction(*src_.store, sel, purge ? QueueAction::kPurge : QueueAction::kRetry, who, now_());
  if (!planned.ok()) return fail(500, "store: " + planned.status().message());
  if (!planned->unknown_uids.empty()) {
    std::string list;
    for (const std::string& u : planned->unknown_uids) list += (list.empty() ? "" : ", ") + u;
    Audit(c, "refused", 404, "unknown uids: " + list);
    c.respond({404, "application/json",
               JsonDump(json{{"error", "no stored object has these SOP Instance UIDs (nothing was done): " + list},
                             {"unknown_uids", planned->unknown_uids}}),
               {}, ""});
    return;
  }
  const size_t n = planned->updates.size();
  const char* key = purge ? "purged" : "requeued";
  if (n == 0) {
    Audit(c, "ok", 200, std::string(key) + " 0");
    c.respond({200, "application/json", JsonDump(json{{key, 0}}), {}, ""});
    return;
  }
  std::shared_ptr<Ctx> keep = c.shared_from_this();
  std::shared_ptr<bool> alive = alive_;
  auto post = src_.post;
  std::vector<std::string> dests(planned->destinations.begin(), planned->destinations.end());
  src_.store->UpdateQueue(std::move(planned->updates), [this, keep, alive, post, n, key, purge,
                                                        dests = std::move(dests)](relais::Status st) {
    post([this, keep, alive, n, key, purge, dests, st] {
      if (!*alive) return;
      if (!st.ok()) {
        std::string why = "store: " + st.message();
        Audit(*keep, "failed", 500, why);
        keep->respond({500, "application/json", ErrorBody(why), {}, ""});
        return;
      }
      if (!purge && src_.delivery != nullptr) src_.delivery->Wake(dests);
      RLOG_INFO("event=admin-%s rows=%zu token=\"%s\" client=%s", key, n,
                keep->token ? keep->token->name.c_str() : "", keep->req.client.c_str());
      Audit(*keep, "ok", 200, std::string(key) + " " + std::to_string(n));
      keep->respond({200, "application/json", JsonDump(json{{key, n}}), {}, ""});
    });
  });
}

void AdminApi::PauseResume(Ctx& c, const std::string& name, bool pause) {
  json body;
  std::string error;
  auto fail = [&](int status, const std::string& why) {
    Audit(c, status >= 500 ? "failed" : "refused", status, why);
    c.respond({status, "application/json", ErrorBody(why), {}, ""});
  };
  if (!ParseBody(c.req.body, {}, &body, &error)) return fail(400, error);
  if (src_.delivery == nullptr) return fail(409, "delivery is not running");
  relais::Status st = pause ? src_.delivery->Pause(name) : src_.delivery->Resume(name);
  if (st.IsNotFound()) return fail(404, "no destination named " + name + " in the current rules");
  if (!st.ok()) return fail(500, st.message());
  RLOG_INFO("event=admin-%s destination=%s token=\"%s\"", pause ? "pause" : "resume", name.c_str(),
            c.token ? c.token->name.c_str() : "");
  Audit(c, "ok", 200, std::string(pause ? "paused " : "resumed ") + name);
  c.respond({200, "application/json", JsonDump(json{{"destination", name}, {"paused", pause}}), {}, ""});
}

void AdminApi::RulesReload(Ctx& c) {
  json body;
  std::string error;
  auto fail = [this](Ctx& ctx, int status, const std::string& why, json extra) {
    Audit(ctx, status >= 500 ? "failed" : "refused", status, why);
    json j = {{"error", why}};
    if (!extra.is_null()) j["errors"] = extra;
    ctx.respond({status, "application/json", JsonDump(j), {}, ""});
  };
  if (!ParseBody(c.req.body, {}, &body, &error)) return fail(c, 400, error, nullptr);
  if (src_.server == nullptr || src_.rules_path.empty())
    return fail(c, 409, "no rules are configured ([rules] path in the config)", nullptr);
  std::string why = "admin API (token " + (c.token ? c.token->name : std::string()) + ")";
  // Compiled on the libuv pool (Server::RequestRulesReload): the loop keeps
  // serving; the answer waits for the outcome.
  std::shared_ptr<Ctx> keep = c.shared_from_this();
  std::shared_ptr<bool> alive = alive_;
  src_.server->RequestRulesReload(why.c_str(), [this, keep, alive, fail](relais::Status st) {
    if (!*alive) return;
    Ctx& c = *keep;
    if (st.code() == relais::Status::Code::kInvalidArgument) {
      json errors = json::array();
      std::string_view m = st.message();
      while (!m.empty()) {
        size_t nl = m.find('\n');
        std::string_view line = m.substr(0, nl);
        if (!line.empty()) errors.push_back(std::string(line));
        m = nl == std::string_view::npos ? std::string_view() : m.substr(nl + 1);
      }
      return fail(c, 400, "the new rules are invalid; the old ones stay in force", errors);
    }
    if (st.code() == relais::Status::Code::kUnavailable) return fail(c, 409, st.message(), nullptr);
    if (!st.ok()) return fail(c, 500, st.message(), nullptr);
    std::shared_ptr<const rules::RuleSet> rs = src_.server->rules();
    Audit(c, "ok", 200, "reloaded");
    c.respond({200, "application/json",
               JsonDump(json{{"reloaded", true}, {"rules", rs ? rs->rule_count() : 0},
                             {"destinations", rs ? rs->destinations().size() : 0}}),
               {}, ""});
  });
}

}  // namespace relais::router
