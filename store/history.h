// The delivery history of the store: the `history` database (FORMAT.md),
// one compact record per study and one per (study, destination), that
// outlives the objects' retention. Internal to store/; updated inside the
// writer's (and admin mode's) write transactions, read by Store::ListStudies.
#ifndef RELAIS_STORE_HISTORY_H_
#define RELAIS_STORE_HISTORY_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

// What a queue update did to one row of a study at a destination.
enum class HistoryEvent {
  kQueued,    // a live row appeared (commit, re-send of a delivered object)
  kSent,      // a live row was delivered
  kDead,      // a live row was dead-lettered
  kRequeued,  // a dead row went back to the queue
  kLiveGone,  // a live row was purged or removed with its object
  kDeadGone,  // a dead row was purged or removed with its object
};

// Codecs of the two records (FORMAT.md `history`). Decoders return
// Corruption on a short value and ignore bytes after the known fields.
std::vector<uint8_t> EncodeStudyRecord(const StudyHistory& h);
Status DecodeStudyRecord(std::span<const uint8_t> value, StudyHistory* h);
std::vector<uint8_t> EncodeStudyDestination(const StudyDestination& s);
Status DecodeStudyDestination(std::span<const uint8_t> value, StudyDestination* s);

// At the commit of object `m` (kept, not a duplicate): creates or updates its
// study's record, and counts a queued row for each of `queued` destinations.
// Nothing when the store has no `history` database or the study UID is empty.
Status HistoryOnCommit(Txn& txn, const Dbis& d, const ObjectMeta& m, const std::vector<std::string>& queued,
                       int64_t now_unix_ms);

// After a row of object `id` at `destination` changed by `event`.
// `attempts` and `reason` count for kSent and kDead. Reads the object record
// for its study; nothing when it is gone or has no study UID.
Status HistoryOnRow(Txn& txn, const Dbis& d, uint64_t id, const std::string& destination, HistoryEvent event,
                    uint32_t attempts, const std::string& reason, int64_t now_unix_ms);
// The same, with the object's study UID known.
Status HistoryOnStudyRow(Txn& txn, const Dbis& d, const std::string& study_uid, const std::string& destination,
                         HistoryEvent event, uint32_t attempts, const std::string& reason, int64_t now_unix_ms);

// Deletes the studies whose last change is before now_unix_ms - retention_ms
// (nothing when retention_ms < 0) with their destination rows, reading at
// most `max_scan` rows from *scan_from (PruneDelivered's contract).
Status PruneHistory(Txn& txn, const Dbis& d, int64_t now_unix_ms, int64_t retention_ms, size_t max_scan,
                    std::vector<uint8_t>* scan_from);

// The backfill (FORMAT.md `history`, "Backfill"): a store whose objects were
// stored before the history existed gets studies built from its objects.
//
// At a read-write open, before the writer starts (nothing in flight):
// decides whether a backfill is needed. Sets meta `history` at once when the
// store has no object or its `history` already holds rows (kept by a build
// that did not set the marker); otherwise records the range of ids to count,
// [1, next_id), unless a backfill interrupted by a stop is already recorded.
// *pending tells whether a backfill is to run; *objects its ids left.
Status PrepareHistoryBackfill(const LmdbEnv& env, uint64_t next_id, bool* pending, uint64_t* objects);
// Counts at most `max_objects` objects of the recorded range in the
// transaction: each one's study record (created or merged) and one queued,
// dead or sent per route from its live row, dead row or `delivered` row.
// Moves the range's start past them; at the end of the range deletes it and
// sets meta `history`. *visited: objects counted; *left: ids of the range
// still to visit (0: done).
Status BackfillHistorySlice(Txn& txn, const Dbis& d, size_t max_objects, uint64_t* visited, uint64_t* left);
// True when the row changes of object `id` are left to the backfill (an
// object it has not counted yet: it will count the rows as they are then).
Status HistoryLeftToBackfill(const Txn& txn, const Dbis& d, uint64_t id, bool* left);

// Calls fn per study, with its destinations, in key order.
Status ForEachStudy(const Txn& txn, const Dbis& d, const std::function<bool(const StudyHistory&)>& fn);

}  // namespace relais::store

#endif  // RELAIS_STORE_HISTORY_H_
