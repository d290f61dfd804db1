// Destination names as typed on the command line (issue 14): `relais queue
// ls|retry|purge --dest telerad` finds TELERAD (names compare without
// regard to ASCII case) or says which names exist.
#ifndef RELAIS_ROUTER_CLI_DEST_NAME_H_
#define RELAIS_ROUTER_CLI_DEST_NAME_H_

#include <set>
#include <string>

#include "base/status.h"
#include "store/store.h"

namespace relais::router {

// The destination of `known` that `typed` names: the exact name, else the
// one name equal to it without regard to ASCII case. Errors:
// InvalidArgument "no destination 'telerad' (known: A, B)" when none (or
// more than one, differing only in case) matches.
Result<std::string> MatchDestinationName(const std::string& typed, const std::set<std::string>& known);

// The names a command may use: the destinations of the rule files of the
// configuration (`rules_path`, when set and loadable) and `with_rows`.
std::set<std::string> KnownDestinationNames(const std::string& rules_path, const std::set<std::string>& with_rows);

// Replaces a non-empty *name by the destination it names (see
// MatchDestinationName), the known ones being those of the rule files at
// `rules_path` and of the rows of the store (opened read-only with
// `options`). Errors: InvalidArgument as MatchDestinationName; the store's.
Status ResolveDestinationName(const std::string& rules_path, const store::Options& options, std::string* name);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_DEST_NAME_H_
