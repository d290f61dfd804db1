// Room router/operate/ (DESIGN.md, "The rooms of router/"): running the
// box. The admin API (admin_api.h: the route table in admin_api.cc, its
// request helpers in admin_request.h, the GET views in admin_views.cc, the
// POST actions in admin_actions.cc) and its HTTP side (admin_http.h), the
// dashboard (dashboard.h, dashboard.html), the /metrics page
// (prometheus.h), alerts (alerts.h), the storage watch (storage_watch.h),
// systemd notification (service_notify.h) and queue actions shared with the
// command line (queue_ops.h).
// May include: everything below it (record/, deliver/, receive/, net/,
// protocol/, rules/, the store, base/) and h2o, libsystemd. Nothing below
// includes operate/.
//
// AdminApi: the admin HTTP API of docs/admin-api.md, without the HTTP: it
// takes a parsed request (method, path, query, Authorization header, client
// address, body) and answers with a status, headers and a JSON body. The
// HTTP side (h2o on the server's loop) is router/operate/admin_http.h; keeping it
// apart lets tests drive every route, role and malformed body directly.
//
// Authentication: "Authorization: Bearer TOKEN"; SHA-256 of TOKEN compared in
// constant time with every configured [[admin.token]] sha256. Roles are
// ordered viewer < operator < admin. Refused requests are logged and audited
// ("kind":"admin","result":"refused"; repeats from one address within a
// window are counted into one summary record: AuditLog::RecordRefusal);
// every action (POST) is audited with the token name whatever its result.
//
// Every source is optional (null: the figures it gives are left out, or the
// action answers 409). Nothing here throws: JSON parsing and building run
// under a catch-all that answers 500.
//
// Thread: loop thread only. Handle() may answer later (actions that commit
// to the store answer when the commit is durable, through `post`).
#ifndef RELAIS_ROUTER_OPERATE_ADMIN_API_H_
#define RELAIS_ROUTER_OPERATE_ADMIN_API_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/operate/queue_summaries.h"
#include "rules/rules.h"
#include "store/store.h"

namespace relais::rules {
class RuleSet;
}  // namespace relais::rules

namespace relais::router {

class Alerts;
class AuditLog;
class DeliveryScheduler;
class Metrics;
class Server;
class StorageWatch;

struct AdminRequest {
  std::string method;         // "GET", "POST", ...
  std::string path;           // normalized, without the query ("/api/queue")
  std::string query;          // after '?', percent-encoded; "" when none
  std::string authorization;  // the Authorization header's value, "" when none
  std::string client;         // "ip:port" of the peer
  std::string body;           // request entity ("" when none); at most 64 KiB (HTTP layer)
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string token_name;  // the authenticated token ("" when none), for the request log
};

enum class AdminRole { kNone = 0, kViewer = 1, kOperator = 2, kAdmin = 3 };

// "viewer" / "operator" / "admin" -> role; anything else kNone.
AdminRole ParseAdminRole(std::string_view role);
// `relais --version` figures for GET /api/status (set once by main before
// Serve; "unknown" until then).
void SetAdminBuildInfo(std::string version, std::string revision);

class AdminApi {
 public:
  struct Sources {
    Server* server = nullptr;               // rules reload, intake gate, associations
    DeliveryScheduler* delivery = nullptr;  // destination stats, pause/resume, failures
    store::Store* store = nullptr;          // queue, objects, retry/purge
    // The queue summary of `store`, read off the loop thread (serve).
    // Null: one is made that reads on the caller's thread when a second old.
    std::shared_ptr<QueueSummaries> queue_summaries;
    Metrics* metrics = nullptr;             // counters, throughput; admin requests are counted there
    const StorageWatch* storage = nullptr;  // water marks
    const Alerts* alerts = nullptr;         // active alerts
    AuditLog* audit = nullptr;              // the audit trail
    // The running rules, for the destinations that route and send now may
    // name. Empty: Server::rules() of `server` (null without a server).
    std::function<std::shared_ptr<const rules::RuleSet>()> rules;
    // Runs a function on the loop thread soon (Server::Post); any thread.
    // Needed by retry/purge (the store's commit callback runs on its writer
    // thread). Null: those actions answer 409.
    std::function<void(std::function<void()>)> post;
    std::string store_path;
    std::string rules_path;  // "" when no rules are configured
    std::string ae_title;
    std::string listener;  // "host:port" of the DICOM listener
    int64_t started_unix_ms = 0;
  };
  using Respond = std::function<void(AdminResponse)>;

  // Tokens whose role or sha256 is invalid are ignored (the config parser
  // refuses them already).
  AdminApi(std::vector<rules::AdminToken> tokens, Sources sources);
  ~AdminApi();
  AdminApi(const AdminApi&) = delete;
  // Replaces the tokens (SIGHUP reloading relais.toml): the next request is
  // checked against the new list. Same rules as the constructor. Loop thread.
  void SetTokens(const std::vector<rules::AdminToken>& tokens);
  AdminApi& operator=(const AdminApi&) = delete;

  // Answers `req`: `respond` runs exactly once, on the loop thread, either
  // before Handle returns or later (retry/purge). After the AdminApi is
  // destroyed a late answer is dropped.
  void Handle(const AdminRequest& req, Respond respond);

  // Test hook: the clock (Unix ms). Default: system clock.
  void SetClock(std::function<int64_t()> now) { now_ = std::move(now); }

 private:
  struct Token {
    std::string name;
    AdminRole role = AdminRole::kNone;
    uint8_t hash[32] = {};
  };
  struct Ctx;                                  // one request in progress (admin_request.h)
  struct Route;                                // one row of the route table (admin_api.cc)
  struct RouteMatch;                           // what the table says about a path
  using RouteArgs = std::vector<std::string>;  // the path segments a route's "{}" matched

  // Handle's steps: the request in progress with its answer hook (the log
  // line and the count); then the route table, authentication, 404, 405 and
  // the role check; then the route's handler.
  std::shared_ptr<Ctx> Start(const AdminRequest& req, Respond respond);
  void Dispatch(Ctx& c);
  static RouteMatch FindRoute(const std::string& method, const std::string& path);
  static const std::vector<Route>& Routes();  // the route table

  const Token* Authenticate(const std::string& authorization) const;
  void Refuse(Ctx& c, int status, const std::string& why);
  void Audit(const Ctx& c, std::string_view result, int status, std::string_view detail);
  const std::vector<store::Store::QueueSummary>* Queues();
  // Bytes per second delivered to `destination`, from its bytes_sent now
  // and at the last sample at least a second before (rates_).
  double BytesPerSecond(const std::string& destination, uint64_t bytes_sent, int64_t now_ms);

  // Read views, GET (admin_views.cc).
  void Healthz(Ctx& c);
  void Readyz(Ctx& c);
  void Dashboard(Ctx& c);
  // The dashboard's icon (an SVG), without a token: a browser asks for it
  // on every load, and a refusal would be an audit record each time.
  void Favicon(Ctx& c);
  void MetricsPage(Ctx& c);
  void StatusPage(Ctx& c);
  void Destinations(Ctx& c, const std::string& name);
  void QueueList(Ctx& c, bool dead);
  void Object(Ctx& c, const std::string& uid);
  void Failures(Ctx& c);
  void Throughput(Ctx& c);
  // GET /api/whoami: the token's name, role and the actions it may take.
  void WhoAmI(Ctx& c);
  // The delivery history per study (admin_studies.cc).
  void Studies(Ctx& c);
  void Study(Ctx& c, const std::string& uid);
  // Actions, POST; audited whatever their result (admin_actions.cc).
  void QueueAction(Ctx& c, bool purge);
  void RouteAction(Ctx& c);  // POST /api/route (admin_route.cc)
  void PauseResume(Ctx& c, const std::string& name, bool pause);
  void RulesReload(Ctx& c);

  std::vector<Token> tokens_;
  std::vector<std::vector<Token>> retired_tokens_;  // replaced by SetTokens, kept for requests in flight
  Sources src_;
  std::function<int64_t()> now_;
  std::shared_ptr<bool> alive_;
  // Store::SummarizeQueues (queue_summaries.h); queues_ holds the
  // snapshot Queues() returned last, alive while a request uses it.
  std::shared_ptr<const QueueSummaries::Snapshot> queues_;
  // bytes_per_s of each destination: bytes_sent between two samples at
  // least a second apart (the dashboard polls every few seconds).
  struct Rate {
    uint64_t bytes = 0;
    int64_t at_ms = 0;
    double per_s = 0;
  };
  std::map<std::string, Rate> rates_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_ADMIN_API_H_
