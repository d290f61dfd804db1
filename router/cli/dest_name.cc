#include "router/cli/dest_name.h"

#include <strings.h>

#include <memory>

#include "rules/routing.h"

namespace relais::router {

Result<std::string> MatchDestinationName(const std::string& typed, const std::set<std::string>& known) {
  if (known.count(typed) > 0) return typed;
  std::string found;
  int matches = 0;
  for (const std::string& k : known) {
    if (k.size() == typed.size() && strcasecmp(k.c_str(), typed.c_str()) == 0) {
      found = k;
      ++matches;
    }
  }
  if (matches == 1) return found;
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
  return Status::InvalidArgument("no destination '" + typed + "' (known: " + (list.empty() ? "none" : list) + ")");
}

std::set<std::string> KnownDestinationNames(const std::string& rules_path, const std::set<std::string>& with_rows) {
  std::set<std::string> out = with_rows;
  if (rules_path.empty()) return out;
  auto loaded = rules::RuleSet::Load(rules_path);
  if (!loaded.ok()) return out;  // `relais config check` says why; rows still name destinations
  for (const rules::Destination& d : (*loaded)->destinations()) out.insert(d.name);
  return out;
}

Status ResolveDestinationName(const std::string& rules_path, const store::Options& options, std::string* name) {
  if (name->empty()) return Status::OK();
  store::Options o = options;
  o.read_only = true;
  o.admin = false;
  Result<std::unique_ptr<store::Store>> st = store::Store::Open(o);
  if (!st.ok()) return st.status();
  Result<std::vector<store::Store::QueueSummary>> q = (*st)->SummarizeQueues();
  if (!q.ok()) return q.status();
  std::set<std::string> with_rows;
  for (const store::Store::QueueSummary& s : *q) with_rows.insert(s.destination);
  Result<std::string> found = MatchDestinationName(*name, KnownDestinationNames(rules_path, with_rows));
  if (!found.ok()) return found.status();
  *name = *found;
  return Status::OK();
}

}  // namespace relais::router
