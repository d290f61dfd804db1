// Store verification (FORMAT.md "Verification"): the walk behind
// Store::Verify.
//
// Internal to store/ (and its tests); not part of the public API.
#ifndef RELAIS_STORE_VERIFY_H_
#define RELAIS_STORE_VERIFY_H_

#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

// What a repair would change, as a verify found it (every one, not only the
// first VerifyReport::kMaxListed).
struct RepairTargets {
  std::vector<std::pair<uint64_t, std::string>> unreadable;  // object id, reason
  std::vector<uint64_t> orphan_chunks;                       // object ids
  std::vector<uint64_t> orphan_attempts;                     // object ids
  std::vector<uint64_t> orphan_done;                         // object ids
  std::vector<std::string> orphan_uids;                      // uid keys
  std::vector<std::vector<uint8_t>> orphan_queue_keys;
  std::vector<std::vector<uint8_t>> orphan_dead_keys;
  std::vector<std::vector<uint8_t>> bad_delivered_keys;  // `delivered` rows that do not decode
  std::vector<std::vector<uint8_t>> bad_history_keys;    // `history` rows that do not decode
  bool totals_wrong = false;
  bool lifecycle_wrong = false;  // rebuild the lifecycle index
  bool empty() const {
    return unreadable.empty() && orphan_chunks.empty() && orphan_attempts.empty() && orphan_done.empty() &&
           orphan_uids.empty() && orphan_queue_keys.empty() && orphan_dead_keys.empty() && bad_delivered_keys.empty() &&
           bad_history_keys.empty() && !totals_wrong && !lifecycle_wrong;
  }
};

// Checks `env` as Store::Verify describes, in one read transaction. Fills
// `targets` when given.
Result<VerifyReport> VerifyEnv(const LmdbEnv& env, const std::function<void(const VerifyProgress&)>& progress,
                               RepairTargets* targets = nullptr);

// Reads object `m`'s chunks in `txn` and checks them against its record
// (all chunks there, each decodes, raw size, XXH3-64 checksum). Sets
// `*damage` to what is wrong in words ("" when intact), `*raw_bytes` to the
// bytes read back and `*stored_bytes` to the chunk bytes. Non-OK only when
// LMDB itself fails. Shared by Verify and the scrub.
Status CheckObjectBytes(const Txn& txn, const Dbis& d, const ObjectMeta& m, uint64_t* raw_bytes, uint64_t* stored_bytes,
                        std::string* damage);

// Store::Scrub: checks objects from id `from_id` on, in one read
// transaction, until `max_objects` are checked or `max_bytes` (0: no bound)
// are read.
Status ScrubEnv(const LmdbEnv& env, uint64_t from_id, size_t max_objects, uint64_t max_bytes, ScrubBatch* out);

// Applies `targets` as Store::Repair describes, in short write transactions
// that check each change again. Counts into `report`.
Status RepairEnv(const LmdbEnv& env, const RepairTargets& targets, int64_t now_unix_ms, RepairReport* report);

// The value of a `quarantine` row (FORMAT.md), and back.
std::vector<uint8_t> EncodeQuarantine(int64_t unix_ms, const std::string& reason, std::span<const uint8_t> record);
Status DecodeQuarantine(uint64_t id, std::span<const uint8_t> value, QuarantineEntry* entry);

}  // namespace relais::store

#endif  // RELAIS_STORE_VERIFY_H_
