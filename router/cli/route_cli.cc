#include "router/cli/route_cli.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>

#include "base/clock.h"
#include "rules/routing.h"

namespace relais::router {

std::string OsUser() {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[1024];
  if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &found) == 0 && found != nullptr) return found->pw_name;
  return "uid " + std::to_string(getuid());
}

int RouteTo(const store::Options& options, const std::vector<std::string>& destinations, RouteSelection sel) {
  Result<std::string> to = MatchDestination(destinations, sel.to);
  if (!to.ok()) {
    std::fprintf(stderr, "relais route: %s\n", to.status().message().c_str());
    return 2;
  }
  sel.to = *to;
  store::Options o = options;
  o.read_only = false;
  o.admin = true;
  auto st = store::Store::Open(o);
  if (!st.ok()) {
    std::fprintf(stderr, "relais: %s\n", st.status().message().c_str());
    return 1;
  }
  const std::string who = "relais route (user " + OsUser() + ")";
  Result<RoutePlan> plan = PlanRoute(**st, sel, who, NowUnixMs());
  if (!plan.ok()) {
    std::fprintf(stderr, "relais: %s\n", plan.status().message().c_str());
    return 1;
  }
  for (const std::string& uid : plan->unknown_uids) {
    std::fprintf(stderr, "relais route: no stored object has SOP Instance UID %s\n", uid.c_str());
  }
  if (plan->updates.empty()) {
    if (!sel.study_uid.empty()) {
      std::fprintf(stderr, "relais route: no stored object of study %s (never received, or removed after retention)\n",
                   sel.study_uid.c_str());
    }
    return 2;
  }
  const size_t n = plan->updates.size();
  constexpr size_t kSlice = 1000;
  for (size_t i = 0; i < n; i += kSlice) {
    std::vector<store::QueueUpdate> slice(plan->updates.begin() + i, plan->updates.begin() + std::min(n, i + kSlice));
    Status result;
    (*st)->UpdateQueue(std::move(slice), [&result](Status r) { result = r; });
    if (!result.ok()) {
      std::fprintf(stderr, "relais route: failed after %zu of %zu objects: %s\n", i, n, result.ToString().c_str());
      return 1;
    }
  }
  std::printf("routed %zu objects to %s; a running `relais serve` sends them within seconds\n", n, sel.to.c_str());
  return plan->unknown_uids.empty() ? 0 : 2;
}

int RouteCommand(const store::Options& options, const std::string& rules_path, const RouteSelection& sel) {
  if (rules_path.empty()) {
    std::fprintf(stderr, "relais route: no rules configured ([rules] path): no destination to route to\n");
    return 2;
  }
  auto rs = rules::RuleSet::Load(rules_path);
  if (!rs.ok()) {
    std::fprintf(stderr, "relais route: the rules do not load: %s\n", rs.status().message().c_str());
    return 1;
  }
  std::vector<std::string> names;
  for (const rules::Destination& d : (*rs)->destinations()) names.push_back(d.name);
  return RouteTo(options, names, sel);
}

}  // namespace relais::router
