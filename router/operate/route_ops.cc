#include "router/operate/route_ops.h"

#include <strings.h>

#include <set>

namespace relais::router {

Result<std::string> MatchDestination(const std::vector<std::string>& known, const std::string& name) {
  const std::string* folded = nullptr;
  size_t folded_count = 0;
  for (const std::string& k : known) {
    if (k == name) return k;
    if (k.size() == name.size() && strcasecmp(k.c_str(), name.c_str()) == 0) {
      folded = &k;
      ++folded_count;
    }
  }
  if (folded_count == 1) return *folded;
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
  return Status::InvalidArgument("no destination '" + name +
                                 "' in the rules (known: " + (list.empty() ? "none" : list) + ")");
}

Result<RoutePlan> PlanRoute(const store::Store& st, const RouteSelection& sel, std::string_view who,
                            int64_t now_unix_ms) {
  RoutePlan plan;
  std::vector<store::ObjectMeta> objects;
  std::set<uint64_t> seen;
  for (const std::string& uid : sel.uids) {
    Result<store::ObjectMeta> m = st.Find(uid);
    if (m.status().IsNotFound()) {
      plan.unknown_uids.push_back(uid);
      continue;
    }
    if (!m.ok()) return m.status();
    if (seen.insert(m->id).second) objects.push_back(std::move(*m));
  }
  if (!sel.study_uid.empty()) {
    RELAIS_RETURN_IF_ERROR(st.List([&](const store::ObjectMeta& m) {
      if (m.study_instance_uid == sel.study_uid && seen.insert(m.id).second) objects.push_back(m);
      return true;
    }));
  }
  for (const store::ObjectMeta& m : objects) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kRoute;
    u.destination = sel.to;
    u.object_id = m.id;
    for (const store::Route& r : m.routes) {
      if (r.destination == sel.to) {
        u.priority = r.priority;
        break;
      }
    }
    u.log_attempt = true;
    u.attempt.association = std::string(who);
    u.attempt.result = "routed";
    u.attempt.unix_ms = now_unix_ms;
    plan.updates.push_back(std::move(u));
  }
  return plan;
}

}  // namespace relais::router
