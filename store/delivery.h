// The delivery side of the store inside one LMDB write transaction: queue
// updates (Store::UpdateQueue), the attempt log, removal of finished objects
// and of retained ones (Store::Sweep). Used by the writer thread and, in
// admin mode, by the caller's thread. Internal to store/; FORMAT.md
// ("Delivery write protocol") describes what it writes.
#ifndef RELAIS_STORE_DELIVERY_H_
#define RELAIS_STORE_DELIVERY_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

// The `raw_bytes` / `stored_bytes` counters of `meta`. They are read from
// and written to the transaction that changes them (never cached across
// transactions): an admin process may remove objects between two commits of
// the serving writer.
struct Totals {
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
};
Status ReadTotals(const Txn& txn, const Dbis& d, Totals* totals);
Status WriteTotals(Txn& txn, const Dbis& d, const Totals& totals);

// Deletes every chunk of `id` and its `pending` row.
Status DropChunks(Txn& txn, const Dbis& d, uint64_t id);

// Delivery changes applied to one write transaction. `txn` and `totals`
// must outlive it; `totals` is updated as objects are removed.
class DeliveryTxn {
 public:
  DeliveryTxn(Txn* txn, const Dbis& dbis, int64_t retention_ms, Totals* totals)
      : txn_(txn), d_(dbis), retention_ms_(retention_ms), totals_(totals) {}

  // Applies `updates` in order (see QueueUpdate). Updates whose row does not
  // exist are skipped. `now_unix_ms` stamps dead letters, `done` rows and
  // attempts that have no time. Destinations that got a row made due
  // (kRequeue) are added to *woken. Corruption when a row to rewrite cannot
  // be decoded; LMDB errors as Status.
  Status Apply(const std::vector<QueueUpdate>& updates, int64_t now_unix_ms, std::set<std::string>* woken);

  // Removes at most `max_objects` retained objects whose `done` time is at
  // or before now_unix_ms - retention_ms; *more is set when some are left.
  Status Sweep(int64_t now_unix_ms, size_t max_objects, bool* more);

  // Removes object `id` and everything that refers to it: record, chunks,
  // pending row, `uid` row (when it maps to `id`), its live and dead rows,
  // attempt log and `done` row; the totals lose its sizes. A missing record
  // still gets its chunks and other rows removed.
  Status RemoveObject(uint64_t id);

 private:
  // After a row of `id` finished: when no live or dead row of it remains,
  // removes it (retention 0) or writes its `done` row.
  Status MaybeFinish(uint64_t id, int64_t now_unix_ms);
  Status LogAttempt(const QueueUpdate& u, int64_t now_unix_ms);
  Status DeleteAttempts(uint64_t id);

  Txn* const txn_;
  const Dbis& d_;
  const int64_t retention_ms_;
  Totals* const totals_;
};

}  // namespace relais::store

#endif  // RELAIS_STORE_DELIVERY_H_
