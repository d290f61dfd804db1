// Re-route (`relais route`, POST /api/route): send stored objects to a
// destination of the rules whether or not a rule asked for it, as a manual
// action (store QueueUpdate::kRoute, attempt result "routed"). Shared by the
// CLI (admin mode, next to a running serve) and the admin API (the serving
// store). Only reads the store; the caller applies the planned updates with
// Store::UpdateQueue.
//
// Thread: any (the Store's read methods are thread-safe).
#ifndef RELAIS_ROUTER_OPERATE_ROUTE_OPS_H_
#define RELAIS_ROUTER_OPERATE_ROUTE_OPS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::router {

struct RouteSelection {
  std::vector<std::string> uids;  // SOP Instance UIDs
  std::string study_uid;          // or every stored object of this study
  std::string to;                 // the destination
};

struct RoutePlan {
  std::vector<store::QueueUpdate> updates;  // one kRoute per object, attempt logged
  std::vector<std::string> unknown_uids;    // UIDs no stored object has
};

// The destination of `known` that `name` names: exact, else the only one
// equal ignoring case. InvalidArgument "no destination 'x' in the rules
// (known: A, B)" otherwise.
Result<std::string> MatchDestination(const std::vector<std::string>& known, const std::string& name);

// Plans sending the selected objects to sel.to (already validated). The row
// takes the priority of the object's route to sel.to when it has one, else
// 0. `who` names the actor in the attempt log ("relais route (user alice)").
// A study is looked up by a walk of the objects. REQUIRES: sel.uids or
// sel.study_uid.
Result<RoutePlan> PlanRoute(const store::Store& st, const RouteSelection& sel, std::string_view who,
                            int64_t now_unix_ms);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_ROUTE_OPS_H_
