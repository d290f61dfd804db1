// AdminApi's read views (router/operate/admin_api.h): the probes, the
// dashboard, /metrics and every GET of /api/. They change nothing but the
// throughput samples (rates_) and the queue summary cache.
#include <cstdio>
#include <map>
#include <set>

#include "base/hex.h"
#include "base/json_safe.h"
#include "base/text.h"
#include "router/deliver/delivery.h"
#include "router/operate/admin_api.h"
#include "router/operate/admin_request.h"
#include "router/operate/alerts.h"
#include "router/operate/dashboard.h"
#include "router/operate/prometheus.h"
#include "router/operate/queue_ops.h"
#include "router/operate/storage_watch.h"
#include "router/receive/server.h"
#include "router/record/metrics.h"

namespace relais::router {

using admin::json;

namespace {

std::string g_version = "unknown";
std::string g_revision = "unknown";

json RowJson(const store::QueueRow& r, const store::ObjectMeta* m, bool dead) {
  json j = {
      {"destination", r.destination},
      {"priority", r.priority},
      {"object_id", r.object_id},
      {"sop_instance_uid", m ? m->sop_instance_uid : ""},
      {"study_instance_uid", m ? m->study_instance_uid : ""},
      {"patient_id", m ? m->patient_id : ""},
      {"modality", m ? m->modality : ""},
      {"raw_size", m ? m->raw_size : 0},
      {"received", m ? admin::IsoOrNull(m->received_unix_ms) : json(nullptr)},
      {"attempts", r.attempts},
      {"next_attempt", dead ? json(nullptr) : json(IsoTime(r.next_attempt_unix_ms == 0 ? 1 : r.next_attempt_unix_ms))},
      {"rule", r.rule},
      {"last_status", Hex4(r.last_status)},
      {"last_error", r.last_error}};
  if (dead) {
    j["dead_at"] = admin::IsoOrNull(r.dead_unix_ms);
    j["dead_at_unix_ms"] = r.dead_unix_ms;
  }
  return j;
}

// A destination's entry of /api/destinations before any source adds its
// figures: what the rules say of it (or nothing, for one only the queue
// knows), idle, nothing sent.
json BlankDestination(const std::string& name, const std::string& ae_title, const std::string& host, uint16_t port,
                      bool configured) {
  return {{"name", name},
          {"ae_title", ae_title},
          {"host", host},
          {"port", port},
          {"configured", configured},
          {"state", "idle"},
          {"paused", false},
          {"associations", 0},
          {"concurrency", nullptr},
          {"bandwidth", nullptr},
          {"in_flight", 0},
          {"sent", 0},
          {"failed", 0},
          {"retries", 0},
          {"bytes_sent", 0},
          {"bytes_per_s", 0},
          {"failures_by_class", json::object()},
          {"last_error", ""},
          {"last_error_at", nullptr},
          {"failing_since", nullptr},
          {"next_try", nullptr}};
}

// The scheduler's figures of one destination into its entry.
void AddDeliveryFigures(const DeliveryScheduler::DestinationStats& s, bool configured, double bytes_per_s, json* out) {
  json& j = *out;
  j["name"] = s.name;
  if (!s.ae_title.empty() || !j.contains("ae_title")) j["ae_title"] = s.ae_title;
  if (!s.host.empty() || !j.contains("host")) j["host"] = s.host;
  if (s.port != 0 || !j.contains("port")) j["port"] = s.port;
  j["configured"] = configured;
  j["state"] = s.state.empty() ? (s.down ? "down" : "idle") : s.state;
  j["paused"] = s.paused;
  j["associations"] = s.associations;
  j["concurrency"] = {{"mode", s.concurrency},
                      {"target", s.concurrency_target},
                      {"reason", s.concurrency_reason},
                      {"ceiling", s.concurrency_ceiling},
                      {"max_associations", s.max_associations}};
  j["bandwidth"] = {{"limit_bps", s.bandwidth_limit_bps}, {"windows", s.bandwidth_windows}};
  j["in_flight"] = s.in_flight;
  j["sent"] = s.sent;
  j["failed"] = s.failed;
  j["retries"] = s.retries;
  j["bytes_sent"] = s.bytes_sent;
  j["bytes_per_s"] = static_cast<uint64_t>(bytes_per_s);
  j["failures_by_class"] = s.failures_by_class;
  j["last_error"] = s.last_error;
  j["last_error_at"] = admin::IsoOrNull(s.last_error_unix_ms);
  j["failing_since"] = admin::IsoOrNull(s.failing_since_unix_ms);
  j["failing_since_unix_ms"] = s.failing_since_unix_ms;
  j["next_try"] = admin::IsoOrNull(s.next_try_unix_ms);
  j["consecutive_failures"] = s.consecutive_failures;
  j["misconfigured"] = s.misconfigured_reason.empty() ? json(nullptr) : json(s.misconfigured_reason);
  j["misconfigured_since"] = admin::IsoOrNull(s.misconfigured_since_unix_ms);
}

// The queue's figures of one destination into its entry.
void AddQueueFigures(const store::Store::QueueSummary& q, int64_t now, json* out) {
  json& j = *out;
  j["queued"] = q.rows;
  j["dead"] = q.dead_rows;
  j["oldest_queued"] = admin::IsoOrNull(q.oldest_received_unix_ms);
  j["oldest_queued_age_s"] =
      q.oldest_received_unix_ms > 0 && now > q.oldest_received_unix_ms ? (now - q.oldest_received_unix_ms) / 1000 : 0;
}

// One page of GET /api/queue or /api/dead: the rows that pass the query's
// filters, after `cursor` (null: from the start), at most query.limit of
// them, with next_cursor when more follow. `sop_id` (0: any) is the object
// that query.sop_instance_uid names.
Status ListQueuePage(store::Store& store, const admin::QueueQuery& query, const admin::QueueCursor* cursor,
                     uint64_t sop_id, bool dead, json* page) {
  json rows = json::array();
  store::QueueRow last;
  uint64_t taken = 0;
  bool more = false;
  auto visit = [&](const store::QueueRow& r) {
    if (!query.destination.empty() && r.destination != query.destination) return true;
    if (sop_id != 0 && r.object_id != sop_id) return true;
    if (cursor != nullptr && !cursor->Before(r)) return true;
    Result<store::ObjectMeta> m = store.Get(r.object_id);
    const store::ObjectMeta* mp = m.ok() ? &*m : nullptr;
    if (!query.patient_id.empty() && (!mp || mp->patient_id != query.patient_id)) return true;
    if (!query.study_instance_uid.empty() && (!mp || mp->study_instance_uid != query.study_instance_uid)) return true;
    if (taken == query.limit) {
      more = true;
      return false;
    }
    rows.push_back(RowJson(r, mp, dead));
    last = r;
    ++taken;
    return true;
  };
  Status st;
  if (dead) {
    st = store.ListDead(visit);
  } else if (!query.destination.empty()) {
    st = store.ListQueue(query.destination, visit);
  } else {
    st = store.ListQueue(visit);
  }
  if (!st.ok()) return st;
  *page = {{"rows", std::move(rows)}};
  if (more && taken > 0) (*page)["next_cursor"] = admin::EncodeQueueCursor(last);
  return Status::OK();
}

// GET /api/status's "store": the store's figures, and the storage watch's
// view of used and capacity (which wins over the store's used_bytes).
json StoreStatus(const std::string& path, const store::Store* store, const StorageWatch* storage) {
  json st = {{"path", path}};
  if (store != nullptr) {
    const store::Store::Stats s = store->GetStats();
    st.update(json{{"objects", s.objects},
                   {"queue_rows", s.queue_rows},
                   {"dead_rows", s.dead_rows},
                   {"used_bytes", s.used_bytes},
                   {"raw_bytes", s.raw_bytes},
                   {"stored_bytes", s.stored_bytes},
                   {"file_bytes", s.file_bytes}});
  }
  if (storage != nullptr) {
    const StorageWatch::Usage& u = storage->usage();
    st.update(json{{"used_bytes", u.used_bytes},
                   {"capacity_bytes", u.capacity_bytes},
                   {"fraction", u.fraction},
                   {"high_water", storage->high_water()},
                   {"low_water", storage->low_water()}});
  }
  return st;
}

// GET /api/status's "rules": what is loaded, and the reload counts.
json RulesStatus(const std::string& path, const Server* server) {
  std::shared_ptr<const rules::RuleSet> rs = server ? server->rules() : nullptr;
  return {{"path", path},
          {"loaded", rs != nullptr},
          {"rules", rs ? rs->rule_count() : 0},
          {"destinations", rs ? rs->destinations().size() : 0},
          {"reloads", server ? server->rule_reloads() : 0},
          {"reload_failures", server ? server->rule_reload_failures() : 0},
          {"loaded_at", server && server->rules_loaded_unix_ms() ? IsoTime(server->rules_loaded_unix_ms()) : ""},
          {"reload_error", server ? server->rules_reload_error() : ""},
          {"reload_failed_at",
           server && server->rules_reload_failed_unix_ms() ? IsoTime(server->rules_reload_failed_unix_ms()) : ""}};
}

// GET /api/status's "alerts": the active ones.
json AlertsStatus(const Alerts* alerts) {
  json out = json::array();
  if (alerts != nullptr) {
    for (const Alerts::Active& a : alerts->active()) {
      out.push_back({{"kind", a.kind},
                     {"subject", a.subject},
                     {"since", admin::IsoOrNull(a.since_unix_ms)},
                     {"since_unix_ms", a.since_unix_ms},
                     {"message", a.message}});
    }
  }
  return out;
}

}  // namespace

void SetAdminBuildInfo(std::string version, std::string revision) {
  g_version = std::move(version);
  g_revision = std::move(revision);
}

// --- probes and pages ---

void AdminApi::Healthz(Ctx& c) { c.respond({200, "application/json", R"({"status":"ok"})", {}, ""}); }

void AdminApi::Readyz(Ctx& c) {
  json checks = json::object();
  bool ready = true;
  std::string degraded;
  if (src_.store == nullptr) {
    checks["store"] = "no store";
    ready = false;
  } else {
    checks["store"] = "ok";
  }
  if (src_.server != nullptr && !src_.rules_path.empty() && src_.server->rules() == nullptr) {
    checks["rules"] = "rules not loaded from " + src_.rules_path + ": fix them and reload (see the log)";
    ready = false;
  } else if (src_.server != nullptr && !src_.server->rules_reload_error().empty()) {
    // Degraded, still ready: the box routes with the rules it has (200, so a
    // load balancer keeps it); monitoring reads "degraded" in the body.
    degraded = "degraded: running rules from " + IsoTime(src_.server->rules_loaded_unix_ms()) +
               ", file on disk differs: " + src_.server->rules_reload_error();
    checks["rules"] = degraded;
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
  json body{{"ready", ready}, {"checks", checks}};
  if (!degraded.empty()) body["degraded"] = degraded;
  c.respond({ready ? 200 : 503, "application/json", JsonDump(body), {}, ""});
}

void AdminApi::Dashboard(Ctx& c) {
  AdminResponse r{200, "text/html; charset=utf-8", std::string(DashboardHtml()), {}, ""};
  r.headers.push_back({"Cache-Control", "no-store"});
  c.respond(std::move(r));
}

void AdminApi::Favicon(Ctx& c) {
  // A relay: two squares joined by an arrow, in the dashboard's colours.
  static constexpr char kIcon[] =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">"
      "<rect x=\"1\" y=\"5\" width=\"5\" height=\"6\" fill=\"#1f6feb\"/>"
      "<rect x=\"10\" y=\"5\" width=\"5\" height=\"6\" fill=\"#1f6feb\"/>"
      "<path d=\"M6 8h4\" stroke=\"#57606a\" stroke-width=\"1.5\"/></svg>";
  AdminResponse r{200, "image/svg+xml", std::string(kIcon), {}, ""};
  r.headers.push_back({"Cache-Control", "max-age=86400"});
  c.respond(std::move(r));
}

void AdminApi::MetricsPage(Ctx& c) {
  MetricsSources ms;
  ms.metrics = src_.metrics;
  ms.server = src_.server;
  ms.delivery = src_.delivery;
  ms.store = src_.store;
  ms.storage = src_.storage;
  ms.audit = src_.audit;
  ms.queues = Queues();
  ms.now_unix_ms = now_();
  c.respond({200, "text/plain; version=0.0.4; charset=utf-8", RenderPrometheus(ms), {}, ""});
}

void AdminApi::StatusPage(Ctx& c) {
  const int64_t now = now_();
  json j;
  j["version"] = g_version;
  j["revision"] = g_revision;
  j["started"] = admin::IsoOrNull(src_.started_unix_ms);
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
  j["store"] = StoreStatus(src_.store_path, src_.store, src_.storage);
  j["rules"] = RulesStatus(src_.rules_path, src_.server);
  j["alerts"] = AlertsStatus(src_.alerts);
  c.respond({200, "application/json", JsonDump(j), {}, ""});
}

// --- destinations ---

double AdminApi::BytesPerSecond(const std::string& destination, uint64_t bytes_sent, int64_t now) {
  Rate& rate = rates_[destination];
  if (rate.at_ms == 0 || bytes_sent < rate.bytes) {
    rate = Rate{bytes_sent, now, 0};
  } else if (now - rate.at_ms >= 1000) {
    rate.per_s = static_cast<double>(bytes_sent - rate.bytes) * 1000.0 / static_cast<double>(now - rate.at_ms);
    rate.bytes = bytes_sent;
    rate.at_ms = now;
  }
  return rate.per_s;
}

void AdminApi::Destinations(Ctx& c, const std::string& name) {
  const int64_t now = now_();
  // By name: what the rules configure, then what the scheduler and the
  // queue know (a destination may be in the queue only, from older rules).
  std::map<std::string, json> out;
  std::set<std::string> configured;
  std::shared_ptr<const rules::RuleSet> rs = src_.server ? src_.server->rules() : nullptr;
  if (rs) {
    for (const rules::Destination& d : rs->destinations()) {
      configured.insert(d.name);
      out[d.name] = BlankDestination(d.name, d.ae_title, d.host, d.port, /*configured=*/true);
    }
  }
  if (src_.delivery != nullptr) {
    for (const DeliveryScheduler::DestinationStats& s : src_.delivery->Stats()) {
      AddDeliveryFigures(s, configured.count(s.name) > 0, BytesPerSecond(s.name, s.bytes_sent, now), &out[s.name]);
    }
  }
  if (const std::vector<store::Store::QueueSummary>* qs = Queues()) {
    for (const store::Store::QueueSummary& q : *qs) {
      json& j = out[q.destination];
      if (!j.contains("name")) j = BlankDestination(q.destination, "", "", 0, /*configured=*/false);
      AddQueueFigures(q, now, &j);
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
      c.respond({404, "application/json", admin::ErrorBody("no destination named " + name), {}, ""});
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
    c.respond({409, "application/json", admin::ErrorBody("no store"), {}, ""});
    return;
  }
  admin::QueueQuery query;
  std::string error;
  if (!admin::ParseQueueQuery(c.req.query, &query, &error)) {
    c.respond({400, "application/json", admin::ErrorBody(error), {}, ""});
    return;
  }
  admin::QueueCursor cursor;
  const bool have_cursor = !query.cursor.empty();
  if (have_cursor && !admin::DecodeQueueCursor(query.cursor, &cursor)) {
    c.respond(
        {400, "application/json", admin::ErrorBody("bad cursor: use next_cursor from the previous page"), {}, ""});
    return;
  }
  uint64_t sop_id = 0;
  if (!query.sop_instance_uid.empty()) {
    Result<store::ObjectMeta> m = src_.store->Find(query.sop_instance_uid);
    if (!m.ok()) {  // no such object: no rows
      c.respond({200, "application/json", JsonDump(json{{"rows", json::array()}}), {}, ""});
      return;
    }
    sop_id = m->id;
  }
  json page;
  Status st = ListQueuePage(*src_.store, query, have_cursor ? &cursor : nullptr, sop_id, dead, &page);
  if (!st.ok()) {
    c.respond({500, "application/json", admin::ErrorBody("store: " + st.message()), {}, ""});
    return;
  }
  c.respond({200, "application/json", JsonDump(page), {}, ""});
}

void AdminApi::Object(Ctx& c, const std::string& encoded_uid) {
  std::string uid;
  if (!admin::PercentDecode(encoded_uid, &uid)) uid = encoded_uid;
  if (src_.store == nullptr) {
    c.respond({409, "application/json", admin::ErrorBody("no store"), {}, ""});
    return;
  }
  Result<store::ObjectMeta> m = src_.store->Find(uid);
  if (m.status().IsNotFound()) {
    c.respond({404,
               "application/json",
               admin::ErrorBody("no stored object has SOP Instance UID " + uid +
                                " (never received, or delivered and removed: see the log)"),
               {},
               ""});
    return;
  }
  if (!m.ok()) {
    c.respond({500, "application/json", admin::ErrorBody("store: " + m.status().message()), {}, ""});
    return;
  }
  QueueSelection sel;
  sel.uids = {uid};
  std::vector<SelectedRow> rows;
  Status s = SelectRows(*src_.store, sel, {m->id}, /*want_live=*/true, &rows);
  json attempts = json::array();
  if (s.ok()) {
    s = src_.store->ListAttempts(m->id, [&](const store::Attempt& a) {
      attempts.push_back({{"at", admin::IsoOrNull(a.unix_ms)},
                          {"at_unix_ms", a.unix_ms},
                          {"destination", a.destination},
                          {"association", a.association},
                          {"result", a.result},
                          {"status", Hex4(a.status)},
                          {"error", a.error}});
      return true;
    });
  }
  if (!s.ok()) {
    c.respond({500, "application/json", admin::ErrorBody("store: " + s.message()), {}, ""});
    return;
  }
  json routes = json::array();
  for (const store::Route& r : m->routes) {
    std::string state = "done";
    // No row because the resend policy suppressed it at the commit: say why.
    std::string reason;
    for (const json& a : attempts) {
      if (a["destination"] != r.destination) continue;
      const bool suppressed = a["result"] == "suppressed";
      state = suppressed ? "suppressed" : "done";
      reason = suppressed ? a["error"].get<std::string>() : "";
    }
    for (const SelectedRow& sr : rows) {
      if (sr.row.destination == r.destination) state = sr.dead ? "dead" : "queued";
    }
    json route = {{"destination", r.destination},
                  {"priority", r.priority},
                  {"rule", r.rule},
                  {"edits", r.edits},
                  {"state", state}};
    if (state == "suppressed") route["reason"] = reason;
    routes.push_back(std::move(route));
  }
  json obj = {{"sop_instance_uid", m->sop_instance_uid},
              {"id", m->id},
              {"sop_class_uid", m->sop_class_uid},
              {"modality", m->modality},
              {"patient_id", m->patient_id},
              {"study_instance_uid", m->study_instance_uid},
              {"series_instance_uid", m->series_instance_uid},
              {"transfer_syntax_uid", m->transfer_syntax_uid},
              {"raw_size", m->raw_size},
              {"stored_size", m->stored_size},
              {"received", admin::IsoOrNull(m->received_unix_ms)},
              {"received_unix_ms", m->received_unix_ms},
              {"calling_ae", m->calling_ae},
              {"called_ae", m->called_ae},
              {"peer", m->peer_address},
              {"routing", m->routing},
              {"matched_rules", m->matched_rules},
              {"routes", routes}};
  // Its lifecycle class and when it goes (store/FORMAT.md "Lifecycle").
  Result<store::ObjectLife> life = src_.store->GetLife(m->id);
  if (life.ok()) {
    const store::ObjectLife& l = *life;
    obj["class"] = store::ObjectClassName(l.object_class);
    obj["class_since"] = admin::IsoOrNull(l.since_unix_ms);
    obj["goes"] = l.object_class == store::ObjectClass::kQueued ? json("with its queue rows")
                  : l.expires_unix_ms < 0                       ? json("kept")
                                                                : json(IsoTime(l.expires_unix_ms));
    obj["goes_unix_ms"] = l.expires_unix_ms < 0 ? json(nullptr) : json(l.expires_unix_ms);
  }
  json queued = json::array(), deadrows = json::array();
  for (const SelectedRow& sr : rows) (sr.dead ? deadrows : queued).push_back(RowJson(sr.row, &*m, sr.dead));
  c.respond({200,
             "application/json",
             JsonDump(json{{"object", obj}, {"queued", queued}, {"dead", deadrows}, {"attempts", attempts}}),
             {},
             ""});
}

void AdminApi::Failures(Ctx& c) {
  json arr = json::array();
  if (src_.delivery != nullptr) {
    for (const DeliveryScheduler::FailureEvent& f : src_.delivery->RecentFailures()) {
      arr.push_back({{"at", admin::IsoOrNull(f.unix_ms)},
                     {"at_unix_ms", f.unix_ms},
                     {"destination", f.destination},
                     {"sop_instance_uid", f.sop_instance_uid},
                     {"association", f.association},
                     {"result", f.result},
                     {"status", Hex4(f.status)},
                     {"error", f.error}});
      if (arr.size() == 100) break;
    }
  }
  c.respond({200, "application/json", JsonDump(json{{"failures", arr}}), {}, ""});
}

void AdminApi::Throughput(Ctx& c) {
  json arr = json::array();
  if (src_.metrics != nullptr) {
    for (const Metrics::Minute& m : src_.metrics->LastHour(now_())) {
      arr.push_back({{"start", admin::IsoOrNull(m.start_unix_ms)},
                     {"start_unix_ms", m.start_unix_ms},
                     {"received", m.received},
                     {"received_bytes", m.received_bytes},
                     {"sent", m.sent},
                     {"sent_bytes", m.sent_bytes}});
    }
  }
  c.respond({200, "application/json", JsonDump(json{{"minutes", arr}}), {}, ""});
}

}  // namespace relais::router
