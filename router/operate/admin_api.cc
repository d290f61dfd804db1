// AdminApi (router/operate/admin_api.h): tokens, the route table and the
// path of every request through it (authentication, 404, 405, role check).
// The handlers are in admin_views.cc (GET) and admin_actions.cc (POST).
#include "router/operate/admin_api.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>

#include "base/clock.h"
#include "base/hex.h"
#include "base/json_safe.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/text.h"
#include "router/operate/admin_request.h"
#include "router/receive/server.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

namespace relais::router {

AdminRole ParseAdminRole(std::string_view role) {
  if (role == "viewer") return AdminRole::kViewer;
  if (role == "operator") return AdminRole::kOperator;
  if (role == "admin") return AdminRole::kAdmin;
  return AdminRole::kNone;
}

AdminApi::AdminApi(std::vector<rules::AdminToken> tokens, Sources sources)
    : src_(std::move(sources)), now_(&NowUnixMs), alive_(std::make_shared<bool>(true)) {
  if (!src_.rules && src_.server != nullptr) {
    Server* server = src_.server;
    src_.rules = [server] { return server->rules(); };
  }
  SetTokens(tokens);
}

void AdminApi::SetTokens(const std::vector<rules::AdminToken>& tokens) {
  // A request still running holds a Token* into the old list: keep its
  // buffer (moving a vector keeps it), a few bytes per token change.
  if (!tokens_.empty()) retired_tokens_.push_back(std::move(tokens_));
  tokens_ = {};
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
      {"role", c.token ? admin::RoleName(c.token->role) : ""},
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
  if (!src_.queue_summaries) src_.queue_summaries = std::make_shared<QueueSummaries>(src_.store);
  queues_ = src_.queue_summaries->Get();
  return queues_->status.ok() ? &queues_->queues : nullptr;
}

// --- the route table ---

// One route: a method and a path pattern, the role it needs and its
// handler. A pattern is literal text and "{}", which matches one non-empty
// path segment (no '/'); the segments it matched are the handler's `args`.
struct AdminApi::Route {
  const char* method;
  const char* pattern;
  AdminRole role;  // kNone: no token needed
  void (*run)(AdminApi& api, Ctx& c, const RouteArgs& args);
};

// What the table says about a request's path.
struct AdminApi::RouteMatch {
  // The path's route for the request's method; else another route of the
  // path (its role decides whether the 405 needs a token); null: no route
  // has this path (404).
  const Route* route = nullptr;
  bool method_allowed = false;
  std::string allow;  // the methods of the path's routes, for a 405's Allow header
  RouteArgs args;
};

namespace {

// True if `path` matches `pattern` (see AdminApi::Route); *args gets what
// each "{}" matched.
bool MatchPattern(std::string_view pattern, std::string_view path, std::vector<std::string>* args) {
  args->clear();
  size_t i = 0, j = 0;
  while (i < pattern.size()) {
    if (pattern.compare(i, 2, "{}") == 0) {
      size_t end = path.find('/', j);
      if (end == std::string_view::npos) end = path.size();
      if (end == j) return false;
      args->emplace_back(path.substr(j, end - j));
      i += 2;
      j = end;
    } else {
      if (j == path.size() || path[j] != pattern[i]) return false;
      ++i;
      ++j;
    }
  }
  return j == path.size();
}

}  // namespace

// docs/admin-api.md lists these; viewer < operator < admin.
const std::vector<AdminApi::Route>& AdminApi::Routes() {
  static const std::vector<Route> kRoutes = {
      {"GET", "/", AdminRole::kNone, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Dashboard(c); }},
      {"GET", "/index.html", AdminRole::kNone, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Dashboard(c); }},
      {"GET", "/healthz", AdminRole::kNone, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Healthz(c); }},
      {"GET", "/favicon.ico", AdminRole::kNone, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Favicon(c); }},
      {"GET", "/readyz", AdminRole::kNone, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Readyz(c); }},
      {"GET", "/metrics", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.MetricsPage(c); }},
      {"GET", "/api/whoami", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.WhoAmI(c); }},
      {"GET", "/api/status", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.StatusPage(c); }},
      {"GET", "/api/destinations", AdminRole::kViewer,
       [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Destinations(c, ""); }},
      {"GET", "/api/destinations/{}", AdminRole::kViewer,
       [](AdminApi& a, Ctx& c, const RouteArgs& x) { a.Destinations(c, x[0]); }},
      {"POST", "/api/destinations/{}/pause", AdminRole::kOperator,
       [](AdminApi& a, Ctx& c, const RouteArgs& x) { a.PauseResume(c, x[0], /*pause=*/true); }},
      {"POST", "/api/destinations/{}/resume", AdminRole::kOperator,
       [](AdminApi& a, Ctx& c, const RouteArgs& x) { a.PauseResume(c, x[0], /*pause=*/false); }},
      {"GET", "/api/queue", AdminRole::kViewer,
       [](AdminApi& a, Ctx& c, const RouteArgs&) { a.QueueList(c, /*dead=*/false); }},
      {"GET", "/api/dead", AdminRole::kViewer,
       [](AdminApi& a, Ctx& c, const RouteArgs&) { a.QueueList(c, /*dead=*/true); }},
      {"GET", "/api/objects/{}", AdminRole::kViewer,
       [](AdminApi& a, Ctx& c, const RouteArgs& x) { a.Object(c, x[0]); }},
      {"GET", "/api/studies", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Studies(c); }},
      {"GET", "/api/studies/{}", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs& x) { a.Study(c, x[0]); }},
      {"GET", "/api/failures", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Failures(c); }},
      {"GET", "/api/throughput", AdminRole::kViewer, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.Throughput(c); }},
      {"POST", "/api/queue/retry", AdminRole::kOperator,
       [](AdminApi& a, Ctx& c, const RouteArgs&) { a.QueueAction(c, /*purge=*/false); }},
      {"POST", "/api/route", AdminRole::kOperator, [](AdminApi& a, Ctx& c, const RouteArgs&) { a.RouteAction(c); }},
      {"POST", "/api/queue/purge", AdminRole::kAdmin,
       [](AdminApi& a, Ctx& c, const RouteArgs&) { a.QueueAction(c, /*purge=*/true); }},
      {"POST", "/api/rules/reload", AdminRole::kOperator,
       [](AdminApi& a, Ctx& c, const RouteArgs&) { a.RulesReload(c); }},
  };
  return kRoutes;
}

AdminApi::RouteMatch AdminApi::FindRoute(const std::string& method, const std::string& path) {
  RouteMatch m;
  RouteArgs args;
  for (const Route& r : Routes()) {
    if (!MatchPattern(r.pattern, path, &args)) continue;
    if (m.allow.find(r.method) == std::string::npos) m.allow += (m.allow.empty() ? "" : ", ") + std::string(r.method);
    if (m.method_allowed) continue;
    if (method == r.method) {
      m.route = &r;
      m.method_allowed = true;
      m.args = std::move(args);
    } else if (m.route == nullptr) {
      m.route = &r;
    }
  }
  return m;
}

void AdminApi::Handle(const AdminRequest& request, Respond respond) {
  std::shared_ptr<Ctx> c = Start(request, std::move(respond));
  try {
    Dispatch(*c);
  } catch (const std::exception& e) {
    RLOG_ERROR("event=admin-error path=\"%s\" reason=\"%s\"", JsonEscape(c->req.path).c_str(), e.what());
    c->respond({500, "application/json", admin::ErrorBody(std::string("internal error: ") + e.what()), {}, ""});
  } catch (...) {
    c->respond({500, "application/json", admin::ErrorBody("internal error"), {}, ""});
  }
  // `c` may still be referenced by a pending answer (retry/purge keep a copy).
}

std::shared_ptr<AdminApi::Ctx> AdminApi::Start(const AdminRequest& request, Respond respond) {
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
    if (src_.metrics != nullptr) src_.metrics->AdminRequest(admin::OutcomeOf(r.status));
    respond(std::move(r));
  };
  return c;
}

void AdminApi::Dispatch(Ctx& c) {
  const std::string& p = c.req.path;
  const std::string& m = c.req.method;
  const RouteMatch match = FindRoute(m, p);
  // Only the public routes answer without a token; a path that is not in
  // the table needs one as much as a private route does.
  const bool is_public = match.route != nullptr && match.route->role == AdminRole::kNone;
  if (!is_public) {
    c.token = Authenticate(c.req.authorization);
    if (c.token == nullptr) {
      Refuse(c, 401,
             c.req.authorization.empty()
                 ? "this needs a token: send \"Authorization: Bearer TOKEN\" (relais admin token NAME makes one)"
                 : "unknown token: check it, or make one with relais admin token NAME and add it to [admin]");
      return;
    }
  }
  if (match.route == nullptr) {
    c.respond({404, "application/json", admin::ErrorBody("no such path: " + p + " (see docs/admin-api.md)"), {}, ""});
    return;
  }
  if (!match.method_allowed) {
    AdminResponse r{405,
                    "application/json",
                    admin::ErrorBody("method " + m + " is not allowed on " + p + "; use " + match.allow),
                    {},
                    ""};
    r.headers.push_back({"Allow", match.allow});
    c.respond(std::move(r));
    return;
  }
  const AdminRole role = match.route->role;
  if (!is_public && c.token->role < role) {
    Refuse(c, 403,
           std::string("token \"") + c.token->name + "\" has role " + admin::RoleName(c.token->role) + "; this needs " +
               admin::RoleName(role));
    return;
  }
  match.route->run(*this, c, match.args);
}

void AdminApi::WhoAmI(Ctx& c) {
  // The actions (every route but GET) this token's role may take, from the
  // route table itself: the dashboard renders only those buttons.
  admin::json actions = admin::json::array();
  for (const Route& r : Routes()) {
    if (std::string_view(r.method) != "GET" && r.role != AdminRole::kNone && c.token->role >= r.role) {
      actions.push_back(std::string(r.method) + " " + r.pattern);
    }
  }
  c.respond({200,
             "application/json",
             JsonDump(admin::json{
                 {"token", c.token->name}, {"role", admin::RoleName(c.token->role)}, {"actions", std::move(actions)}}),
             {},
             ""});
}

void AdminApi::Refuse(Ctx& c, int status, const std::string& why) {
  RLOG_WARN("event=admin-refused status=%d client=%s token=\"%s\" method=%s path=\"%s\" reason=\"%s\"", status,
            c.req.client.c_str(), c.token ? c.token->name.c_str() : "", c.req.method.c_str(),
            JsonEscape(c.req.path).c_str(), JsonEscape(why).c_str());
  Audit(c, "refused", status, why);
  AdminResponse r{status, "application/json", admin::ErrorBody(why), {}, ""};
  if (status == 401) r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"relais\""});
  c.respond(std::move(r));
}

}  // namespace relais::router
