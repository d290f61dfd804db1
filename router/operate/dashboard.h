// The operations dashboard (issue 5): one self-contained HTML page (inline
// style and script, no external resources) served by the admin API at
// `GET /` (docs/admin-api.md, "Dashboard"). The page asks for a token once
// (kept in sessionStorage; `/#token=...` is also accepted and then removed
// from the address bar) and polls the JSON API every 5 s.
//
// The page's source is router/operate/dashboard.html; the build turns it into a
// byte array in a generated source file (router/CMakeLists.txt), so the
// binary needs no file at run time.
#ifndef RELAIS_ROUTER_OPERATE_DASHBOARD_H_
#define RELAIS_ROUTER_OPERATE_DASHBOARD_H_

#include <string_view>

namespace relais::router {

// The bytes of router/operate/dashboard.html as of the build (UTF-8, text/html).
// The view points to static storage: valid for the life of the program.
// Thread-safe.
std::string_view DashboardHtml();

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_DASHBOARD_H_
