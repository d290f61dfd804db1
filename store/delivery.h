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
// With the lifecycle databases, also the per-class counts of FORMAT.md
// "Lifecycle" (meta `class_objects.NAME` / `class_bytes.NAME`).
struct Totals {
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  uint64_t class_objects[kObjectClassCount] = {};
  uint64_t class_bytes[kObjectClassCount] = {};
};
Status ReadTotals(const Txn& txn, const Dbis& d, Totals* totals);
Status WriteTotals(Txn& txn, const Dbis& d, const Totals& totals);

// Deletes every chunk of `id` and its `pending` row.
Status DropChunks(Txn& txn, const Dbis& d, uint64_t id);

// The `life` value and `expiry` key of FORMAT.md "Lifecycle".
struct LifeRow {
  ObjectClass object_class = ObjectClass::kNone;
  int64_t since_unix_ms = 0;
  uint64_t stored_size = 0;
};
Status DecodeLife(std::span<const uint8_t> v, LifeRow* out);
std::vector<uint8_t> EncodeExpiryKey(ObjectClass c, int64_t since_unix_ms, uint64_t id);

// The class an object should be in, from its rows (FORMAT.md "Lifecycle"),
// and the time it entered it as far as the rows tell (dead: the latest
// dead_unix_ms; delivered: the `done` time; unrouted/dropped: received;
// queued: received). `now` when the rows do not tell.
Status ExpectedClass(const Txn& txn, const Dbis& d, const ObjectMeta& m, int64_t now, ObjectClass* c, int64_t* since);

// Gives every object of the store its lifecycle rows, in transactions of
// `batch` objects (FORMAT.md "Compatibility"), then sets meta `lifecycle`.
// With `rebuild`, first empties `life`, `expiry` and the class counts.
// Counts the objects classified into *count when set.
Status BuildLifecycle(const LmdbEnv& env, int64_t now, bool rebuild, uint64_t* count);

// Delivery changes applied to one write transaction. `txn` and `totals`
// must outlive it; `totals` is updated as objects are removed.
class DeliveryTxn {
 public:
  DeliveryTxn(Txn* txn, const Dbis& dbis, const Retentions& retentions, Totals* totals)
      : txn_(txn), d_(dbis), retentions_(retentions), totals_(totals) {}
  // Only the delivered retention (others never expire): for removals.
  DeliveryTxn(Txn* txn, const Dbis& dbis, int64_t retention_ms, Totals* totals)
      : DeliveryTxn(txn, dbis, Retentions{retention_ms, -1, -1, -1}, totals) {}

  // Applies `updates` in order (see QueueUpdate). Updates whose row does not
  // exist are skipped. `now_unix_ms` stamps dead letters, `done` rows and
  // attempts that have no time. Destinations that got a row made due
  // (kRequeue) are added to *woken. Corruption when a row to rewrite cannot
  // be decoded; LMDB errors as Status.
  Status Apply(const std::vector<QueueUpdate>& updates, int64_t now_unix_ms, std::set<std::string>* woken);

  // Removes at most `max_objects` objects whose class's retention ran out
  // (FORMAT.md "Lifecycle"); *more is set when some are left. Adds the
  // objects removed per class to expired[class], and describes them in
  // *gone when it is set.
  Status Sweep(int64_t now_unix_ms, size_t max_objects, bool* more, uint64_t* expired,
               std::vector<ExpiredObject>* gone = nullptr);

  // Puts object `id` (of `stored_size` bytes) in class `c` since
  // `since_unix_ms`: its `life` row, its `expiry` row and the class counts.
  // An object already in class `c` keeps its time.
  Status SetClass(uint64_t id, ObjectClass c, int64_t since_unix_ms, uint64_t stored_size);
  // Removes the lifecycle rows of `id` (if any) from the index and counts.
  Status ClearClass(uint64_t id);

  // Removes object `id` and everything that refers to it: record, chunks,
  // pending row, `uid` row (when it maps to `id`), its live and dead rows,
  // attempt log and `done` row; the totals lose its sizes. A missing record
  // still gets its chunks and other rows removed.
  Status RemoveObject(uint64_t id);

 private:
  // After a row of `id` changed: its class from its remaining rows. When no
  // live or dead row of it remains, removes it (retention 0) or writes its
  // `done` row and makes it delivered.
  Status Reclassify(uint64_t id, int64_t now_unix_ms);
  Status LogAttempt(const QueueUpdate& u, int64_t now_unix_ms);
  // kRoute: the route of `u` in its object's record, appended (rule
  // kManualRule) when missing; its rule and edits go to *row. *exists is
  // false (and nothing is written) when the object does not exist.
  Status AddManualRoute(const QueueUpdate& u, QueueRow* row, bool* exists);
  Status DeleteAttempts(uint64_t id);

  Txn* const txn_;
  const Dbis& d_;
  const Retentions retentions_;
  Totals* const totals_;
};

}  // namespace relais::store

#endif  // RELAIS_STORE_DELIVERY_H_
