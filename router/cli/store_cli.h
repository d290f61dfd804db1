// `relais store purge` and the selection behind it and `relais store ls`:
// stored objects by UID, study, age and class (store/FORMAT.md "Lifecycle"),
// removed by hand. purge opens the store in admin mode (LMDB serializes it
// with a running `relais serve`, like `relais queue purge`).
#ifndef RELAIS_ROUTER_CLI_STORE_CLI_H_
#define RELAIS_ROUTER_CLI_STORE_CLI_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace relais::router {

// Which objects `relais store purge` (and `ls`) takes: every given selector
// must hold (AND). An empty selection selects everything.
struct ObjectSelection {
  std::vector<std::string> uids;          // SOP Instance UIDs (any of them)
  std::string study;                      // Study Instance UID
  std::optional<int64_t> older_than_ms;   // received more than this long ago
  std::optional<store::ObjectClass> cls;  // in this class
  bool empty() const { return uids.empty() && study.empty() && !older_than_ms && !cls; }
};

// "90s", "30m", "12h", "7d" or plain seconds, in ms; nullopt otherwise.
std::optional<int64_t> ParseCliDuration(const std::string& text);

// When the object goes, for people: "with its queue rows" (queued), "kept"
// (no expiry), or the ISO time.
std::string GoesText(const store::ObjectLife& life);

// The ids of the selected objects, in id order. `now_unix_ms` for
// older_than.
Result<std::vector<uint64_t>> SelectObjects(const store::Store& st, const ObjectSelection& sel, int64_t now_unix_ms);

// Removes the selected objects (record, chunks, rows, attempt log) in short
// transactions, with progress on stderr; with `dry_run` only lists them.
// REQUIRES: !sel.empty(). Returns 0, 1 on a store error, 2 when nothing
// matched a given UID.
int StorePurge(const store::Options& options, const ObjectSelection& sel, bool dry_run);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_STORE_CLI_H_
