// `relais route UID...|--study UID --to DEST`: sends stored objects to a
// destination of the rules, as a manual action (router/operate/route_ops.h).
// Opens the store in admin mode, like `relais queue retry`: LMDB serializes
// it with a running `relais serve`, which notices the new rows within its
// rescan interval (about 2 s).
#ifndef RELAIS_ROUTER_CLI_ROUTE_CLI_H_
#define RELAIS_ROUTER_CLI_ROUTE_CLI_H_

#include <string>
#include <vector>

#include "router/operate/route_ops.h"
#include "store/store.h"

namespace relais::router {

// `destinations` are the names the rules know (sel.to is checked against
// them). Returns 0; 1 on a store error; 2 when the destination is unknown
// (the known names on stderr) or a UID or the study is unknown.
int RouteTo(const store::Options& options, const std::vector<std::string>& destinations, RouteSelection sel);
// RouteTo with the destinations of the rule files at `rules_path` (1 when
// they do not load).
int RouteCommand(const store::Options& options, const std::string& rules_path, const RouteSelection& sel);

// "user NAME" for the attempt log of CLI actions: the OS user running it.
std::string OsUser();

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_ROUTE_CLI_H_
