// AdminApi's actions (router/operate/admin_api.h): retry and purge of queue
// rows, pause and resume of a destination, rules reload. Each is audited
// with its token whatever its result; those that wait for a store commit or
// a reload answer later, on the loop thread.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/json_safe.h"
#include "base/log.h"
#include "router/deliver/delivery.h"
#include "router/operate/admin_api.h"
#include "router/operate/admin_request.h"
#include "router/operate/queue_ops.h"
#include "router/operate/route_ops.h"
#include "router/receive/server.h"

namespace relais::router {

using admin::json;

namespace {

// A retry or purge body: the rows it names, {"dead":true}, {"uids":[...]},
// {"destination":"NAME"}, {"study":"UID"}, combined as an intersection, and
// the options {"dry_run":true} (only say what would be done) and
// {"expect_rows":N} (act only if the selection still has N rows: what a
// confirmation showed). docs/admin-api.md.
struct QueueBody {
  QueueSelection sel;
  bool dry_run = false;
  int64_t expect_rows = -1;  // -1: not given
};

// False with *error for a 400.
bool ParseQueueBody(const std::string& text, bool purge, QueueBody* out, std::string* error) {
  QueueSelection* sel = &out->sel;
  json body;
  if (!admin::ParseBody(text, {"dead", "uids", "destination", "study", "dry_run", "expect_rows"}, &body, error)) {
    return false;
  }
  auto fail = [&](const char* why) {
    *error = why;
    return false;
  };
  if (body.contains("dead")) {
    if (!body["dead"].is_boolean()) return fail("\"dead\" must be true or false");
    sel->dead = body["dead"].get<bool>();
  }
  if (body.contains("dry_run")) {
    if (!body["dry_run"].is_boolean()) return fail("\"dry_run\" must be true or false");
    out->dry_run = body["dry_run"].get<bool>();
  }
  if (body.contains("expect_rows")) {
    const json& e = body["expect_rows"];
    if (!e.is_number_unsigned() || e.get<uint64_t>() > 10000000)
      return fail("\"expect_rows\" must be a whole number from 0 to 10000000 (the rows a dry run showed)");
    out->expect_rows = static_cast<int64_t>(e.get<uint64_t>());
  }
  if (body.contains("destination")) {
    if (!body["destination"].is_string() || body["destination"].get<std::string>().empty())
      return fail("\"destination\" must be a non-empty string (a destination name)");
    sel->destination = body["destination"].get<std::string>();
  }
  if (body.contains("study")) {
    if (!body["study"].is_string() || body["study"].get<std::string>().empty() ||
        body["study"].get<std::string>().size() > 64)
      return fail("\"study\" must be a Study Instance UID string (1-64 characters)");
    sel->study = body["study"].get<std::string>();
  }
  if (body.contains("uids")) {
    const json& u = body["uids"];
    if (!u.is_array()) return fail("\"uids\" must be an array of SOP Instance UID strings");
    if (u.size() > 10000) return fail("at most 10000 uids per request");
    for (const json& x : u) {
      if (!x.is_string() || x.get<std::string>().empty() || x.get<std::string>().size() > 64)
        return fail("\"uids\" must be an array of SOP Instance UID strings (1-64 characters)");
      sel->uids.push_back(x.get<std::string>());
    }
    if (sel->uids.empty()) return fail("\"uids\" is empty: name at least one SOP Instance UID");
  }
  if (!sel->dead && sel->uids.empty() && sel->destination.empty() && sel->study.empty()) {
    return fail(purge ? "say what to purge: {\"dead\":true}, {\"uids\":[...]}, {\"study\":\"UID\"} or "
                        "{\"destination\":\"NAME\"}"
                      : "say what to retry: {\"dead\":true}, {\"uids\":[...]} (optionally \"destination\"), or "
                        "{\"destination\":\"NAME\"} or {\"study\":\"UID\"} alone (send now)");
  }
  return true;
}

}  // namespace

namespace {

// "dest=TELERAD dead=0 uids=-; objects: UID,... (N more); patients: P,..."
// for the audit record of an admin API retry or purge (first 10 of each).
std::string QueueActionAuditText(const store::Store& st, const QueueSelection& sel,
                                 const std::vector<store::QueueUpdate>& updates) {
  constexpr size_t kListed = 10;  // the record bounds the field to 1 KiB
  auto list = [](const std::vector<std::string>& v) {
    std::string out;
    for (size_t i = 0; i < v.size() && i < kListed; ++i) out += (i ? "," : "") + v[i];
    if (v.size() > kListed) out += ",... (" + std::to_string(v.size() - kListed) + " more)";
    return out.empty() ? std::string("-") : out;
  };
  std::vector<std::string> uids, pids;
  std::set<uint64_t> seen;
  std::set<std::string> seen_pids;
  for (const store::QueueUpdate& u : updates) {
    if (!seen.insert(u.object_id).second) continue;
    Result<store::ObjectMeta> m = st.Get(u.object_id);
    if (!m.ok()) continue;
    uids.push_back(m->sop_instance_uid);
    if (seen_pids.insert(m->patient_id).second) pids.push_back(m->patient_id);
  }
  return "selector dest=" + (sel.destination.empty() ? std::string("*") : sel.destination) +
         " dead=" + (sel.dead ? "1" : "0") + " uids=" + list(sel.uids) +
         (sel.study.empty() ? std::string() : " study=" + sel.study) + "; objects: " + list(uids) +
         "; patients: " + list(pids);
}

// The answer to a dry run: {"dry_run":true,"would_purge"|"would_requeue":N,
// "rows":[{"sop_instance_uid","destination","dead"}]} (at most 10000 rows
// listed; "rows_truncated" then).
std::string DryRunJson(const store::Store& st, const QueuePlan& plan, const char* key) {
  constexpr size_t kListed = 10000;
  json rows = json::array();
  std::map<uint64_t, std::string> uid_of;
  for (size_t i = 0; i < plan.updates.size() && i < kListed; ++i) {
    const store::QueueUpdate& u = plan.updates[i];
    auto it = uid_of.find(u.object_id);
    if (it == uid_of.end()) {
      Result<store::ObjectMeta> m = st.Get(u.object_id);
      it = uid_of.emplace(u.object_id, m.ok() ? m->sop_instance_uid : std::string()).first;
    }
    rows.push_back({{"sop_instance_uid", it->second},
                    {"destination", u.destination},
                    {"dead", i < plan.update_from_dead.size() && plan.update_from_dead[i]}});
  }
  json j = {{"dry_run", true},
            {std::string(key) == "purged" ? "would_purge" : "would_requeue", plan.updates.size()},
            {"rows", std::move(rows)}};
  if (plan.updates.size() > kListed) j["rows_truncated"] = true;
  return JsonDump(j);
}

}  // namespace

void AdminApi::QueueAction(Ctx& c, bool purge) {
  const char* verb = purge ? "purge" : "retry";
  auto fail = [&](int status, const std::string& why) {
    Audit(c, status >= 500 ? "failed" : "refused", status, why);
    c.respond({status, "application/json", admin::ErrorBody(why), {}, ""});
  };
  QueueBody qb;
  std::string error;
  if (!ParseQueueBody(c.req.body, purge, &qb, &error)) return fail(400, error);
  QueueSelection& sel = qb.sel;
  if (src_.store == nullptr || !src_.post) return fail(409, "no store to act on");
  if (!sel.destination.empty()) {
    // A destination of the running rules, or one that still has rows (a
    // destination removed from the rules keeps its dead letters); exact,
    // else ignoring case. Otherwise 404 naming the known ones.
    std::vector<std::string> known;
    std::shared_ptr<const rules::RuleSet> rs = src_.rules ? src_.rules() : nullptr;
    if (rs) {
      for (const rules::Destination& d : rs->destinations()) known.push_back(d.name);
    }
    if (std::find(known.begin(), known.end(), sel.destination) == known.end()) {
      Result<std::vector<store::Store::QueueSummary>> q = src_.store->SummarizeQueues();
      if (!q.ok()) return fail(500, "store: " + q.status().message());
      for (const store::Store::QueueSummary& s : *q) {
        if (std::find(known.begin(), known.end(), s.destination) == known.end()) known.push_back(s.destination);
      }
    }
    Result<std::string> name = MatchDestination(known, sel.destination);
    if (!name.ok()) return fail(404, name.status().message());
    sel.destination = *name;
  }
  std::string who = "admin API " + std::string(verb) + " (token " + (c.token ? c.token->name : "") + ")";
  Result<QueuePlan> planned =
      PlanQueueAction(*src_.store, sel, purge ? QueueAction::kPurge : QueueAction::kRetry, who, now_());
  if (!planned.ok()) return fail(500, "store: " + planned.status().message());
  if (!planned->unknown_uids.empty()) {
    std::string list;
    for (const std::string& u : planned->unknown_uids) list += (list.empty() ? "" : ", ") + u;
    Audit(c, "refused", 404, "unknown uids: " + list);
    c.respond({404,
               "application/json",
               JsonDump(json{{"error", "no stored object has these SOP Instance UIDs (nothing was done): " + list},
                             {"unknown_uids", planned->unknown_uids}}),
               {},
               ""});
    return;
  }
  if (planned->unknown_study && sel.uids.empty()) {
    return fail(404, "no stored object of study " + sel.study + " (nothing was done)");
  }
  const size_t n = planned->updates.size();
  const char* key = purge ? "purged" : "requeued";
  if (qb.dry_run) {
    Audit(c, "ok", 200, std::string("dry run: would ") + verb + " " + std::to_string(n) + " rows");
    c.respond({200, "application/json", DryRunJson(*src_.store, *planned, key), {}, ""});
    return;
  }
  if (qb.expect_rows >= 0 && static_cast<size_t>(qb.expect_rows) != n) {
    return fail(409, std::string("the selection changed: it has ") + std::to_string(n) + " rows now, " +
                         std::to_string(qb.expect_rows) + " were confirmed; nothing was done, look again");
  }
  if (n == 0) {
    Audit(c, "ok", 200, std::string(key) + " 0");
    c.respond({200, "application/json", JsonDump(json{{key, 0}}), {}, ""});
    return;
  }
  // The audit record names the selection and what it touched (issue 14).
  const std::string touched =
      std::string(key) + " " + std::to_string(n) + " rows; " + QueueActionAuditText(*src_.store, sel, planned->updates);
  std::shared_ptr<Ctx> keep = c.shared_from_this();
  std::shared_ptr<bool> alive = alive_;
  auto post = src_.post;
  std::vector<std::string> dests(planned->destinations.begin(), planned->destinations.end());
  src_.store->UpdateQueue(std::move(planned->updates), [this, keep, alive, post, n, key, purge, touched,
                                                        dests = std::move(dests)](relais::Status st) {
    post([this, keep, alive, n, key, purge, touched, dests, st] {
      if (!*alive) return;
      if (!st.ok()) {
        std::string why = "store: " + st.message();
        Audit(*keep, "failed", 500, why);
        keep->respond({500, "application/json", admin::ErrorBody(why), {}, ""});
        return;
      }
      if (!purge && src_.delivery != nullptr) src_.delivery->Wake(dests);
      RLOG_INFO("event=admin-%s rows=%zu token=\"%s\" client=%s", key, n, keep->token ? keep->token->name.c_str() : "",
                keep->req.client.c_str());
      Audit(*keep, "ok", 200, touched);
      keep->respond({200, "application/json", JsonDump(json{{key, n}}), {}, ""});
    });
  });
}

void AdminApi::PauseResume(Ctx& c, const std::string& name, bool pause) {
  json body;
  std::string error;
  auto fail = [&](int status, const std::string& why) {
    Audit(c, status >= 500 ? "failed" : "refused", status, why);
    c.respond({status, "application/json", admin::ErrorBody(why), {}, ""});
  };
  if (!admin::ParseBody(c.req.body, {}, &body, &error)) return fail(400, error);
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
  if (!admin::ParseBody(c.req.body, {}, &body, &error)) return fail(c, 400, error, nullptr);
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
    c.respond({200,
               "application/json",
               JsonDump(json{{"reloaded", true},
                             {"rules", rs ? rs->rule_count() : 0},
                             {"destinations", rs ? rs->destinations().size() : 0}}),
               {},
               ""});
  });
}

}  // namespace relais::router
