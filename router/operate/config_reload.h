// What a changed relais.toml means for a running box (SIGHUP): which parts
// apply live (admin tokens, [alerts], water marks, retentions) and which
// need a restart (listeners, store path, TLS, ...).
//
// Pure: compares two parsed configurations; the caller (router/serve.cc)
// applies the live parts and logs the rest. Any thread.
#ifndef RELAIS_ROUTER_OPERATE_CONFIG_RELOAD_H_
#define RELAIS_ROUTER_OPERATE_CONFIG_RELOAD_H_

#include <string>
#include <vector>

#include "rules/rules.h"

namespace relais::router {

struct ConfigChanges {
  bool admin_tokens = false;  // [[admin.token]]
  bool alerts = false;        // [alerts]
  bool water_marks = false;   // [store] high_water, low_water
  // The changed retentions ([delivery] retention, unrouted_retention,
  // dead_letter_retention, dropped_retention; [store] history_retention),
  // each as "[table] key OLDs -> NEWs", in file order: the store applies
  // them live (store::Store::SetRetentions).
  std::vector<std::string> retentions;
  // The changed settings that only a restart applies, each as
  // "[table] key" ("[listener] port"), in file order.
  std::vector<std::string> restart_needed;

  bool any_live() const { return admin_tokens || alerts || water_marks || !retentions.empty(); }
};

ConfigChanges DiffConfig(const rules::AppConfig& before, const rules::AppConfig& after);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_CONFIG_RELOAD_H_
