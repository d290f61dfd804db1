// POST /api/route (docs/admin-api.md): {"sop_instance_uid": UID} or
// {"study_instance_uid": UID}, with {"to": DESTINATION}: sends stored objects
// to a destination of the running rules as a manual action
// (router/operate/route_ops.h). Audited with its token whatever its result.
#include <memory>
#include <string>
#include <vector>

#include "base/json_safe.h"
#include "base/log.h"
#include "router/deliver/delivery.h"
#include "router/operate/admin_api.h"
#include "router/operate/admin_request.h"
#include "router/operate/route_ops.h"
#include "router/receive/server.h"

namespace relais::router {

using admin::json;

void AdminApi::RouteAction(Ctx& c) {
  auto fail = [&](int status, const std::string& why) {
    Audit(c, status >= 500 ? "failed" : "refused", status, why);
    c.respond({status, "application/json", admin::ErrorBody(why), {}, ""});
  };
  json body;
  std::string error;
  if (!admin::ParseBody(c.req.body, {"sop_instance_uid", "study_instance_uid", "to"}, &body, &error)) {
    return fail(400, error);
  }
  auto text = [&](const char* key) {
    return body.contains(key) && body[key].is_string() ? body[key].get<std::string>() : std::string();
  };
  RouteSelection sel;
  sel.to = text("to");
  std::string sop = text("sop_instance_uid");
  sel.study_uid = text("study_instance_uid");
  if (sel.to.empty()) return fail(400, "\"to\" must name a destination of the rules");
  if (sop.empty() == sel.study_uid.empty()) {
    return fail(400, "name exactly one of \"sop_instance_uid\" and \"study_instance_uid\" (strings)");
  }
  if (sop.size() > 64 || sel.study_uid.size() > 64) return fail(400, "a UID has at most 64 characters");
  if (!sop.empty()) sel.uids.push_back(sop);
  if (src_.store == nullptr || !src_.post) return fail(409, "no store to act on");
  std::shared_ptr<const rules::RuleSet> rs = src_.rules ? src_.rules() : nullptr;
  std::vector<std::string> names;
  if (rs) {
    for (const rules::Destination& d : rs->destinations()) names.push_back(d.name);
  }
  Result<std::string> to = MatchDestination(names, sel.to);
  if (!to.ok()) return fail(400, to.status().message());
  sel.to = *to;
  std::string who = "admin API route (token " + (c.token ? c.token->name : std::string()) + ")";
  Result<RoutePlan> plan = PlanRoute(*src_.store, sel, who, now_());
  if (!plan.ok()) return fail(500, "store: " + plan.status().message());
  const size_t n = plan->updates.size();
  if (n == 0)
    return fail(404, sop.empty() ? "no stored object of study " + sel.study_uid
                                 : "no stored object has SOP Instance UID " + sop);
  std::shared_ptr<Ctx> keep = c.shared_from_this();
  std::shared_ptr<bool> alive = alive_;
  auto post = src_.post;
  std::string dest = sel.to;
  src_.store->UpdateQueue(std::move(plan->updates), [this, keep, alive, post, n, dest](relais::Status st) {
    post([this, keep, alive, n, dest, st] {
      if (!*alive) return;
      if (!st.ok()) {
        std::string why = "store: " + st.message();
        Audit(*keep, "failed", 500, why);
        keep->respond({500, "application/json", admin::ErrorBody(why), {}, ""});
        return;
      }
      if (src_.delivery != nullptr) src_.delivery->Wake({dest});
      RLOG_INFO("event=admin-route objects=%zu destination=%s token=\"%s\" client=%s", n, dest.c_str(),
                keep->token ? keep->token->name.c_str() : "", keep->req.client.c_str());
      Audit(*keep, "ok", 200, "routed " + std::to_string(n) + " to " + dest);
      keep->respond({200, "application/json", JsonDump(json{{"routed", n}, {"to", dest}}), {}, ""});
    });
  });
}

}  // namespace relais::router
