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

// Calls fn per study, with its destinations, in key order.
Status ForEachStudy(const Txn& txn, const Dbis& d, const std::function<bool(const StudyHistory&)>& fn);

}  // namespace relais::store

#endif  // RELAIS_STORE_HISTORY_H_
