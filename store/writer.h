// The single LMDB writer thread of a read-write Store: group commit.
//
// Operations are queued from any thread. The writer takes everything queued
// (up to max_batch operations), applies it in ONE write transaction, commits
// (fsync) once and only then runs the completion callbacks, so many objects
// share one fsync. Internal to store/.
#ifndef RELAIS_STORE_WRITER_H_
#define RELAIS_STORE_WRITER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "store/delivery.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

struct WriteOp {
  enum class Type {
    kChunk,            // put chunk (id, index) and the `pending` row of id
    kCommit,           // put the meta record + uid row, replace an older object with the same UID, delete pending
    kDrop,             // delete every chunk of id and its pending row (Abort, failed objects)
    kQueueUpdate,      // apply `updates` (Store::UpdateQueue)
    kSweep,            // remove retained objects finished at or before now_unix_ms - retention
    kRetentions,       // replace the writer's retentions (Store::SetRetentions)
    kHistoryBackfill,  // count a slice of older objects into the history (history.h)
  };
  Type type = Type::kChunk;
  uint64_t id = 0;
  // kChunk.
  uint32_t index = 0;
  std::vector<uint8_t> value;  // encoded chunk (chunk_codec.h)
  uint64_t raw_bytes = 0;      // subtracted from *uncommitted once resolved
  std::shared_ptr<std::atomic<uint64_t>> uncommitted;
  // kCommit: a complete meta (id, sizes, chunk count, checksum filled in).
  ObjectMeta meta;
  DoneCallback done;
  // kQueueUpdate.
  std::vector<QueueUpdate> updates;
  // kSweep.
  int64_t now_unix_ms = 0;
  // kRetentions.
  Retentions retentions;
  // kQueueUpdate, kSweep, kRetentions: called once, after the commit (or the failure).
  std::function<void(Status)> status_done;
};

class Writer {
 public:
  // `env` must outlive the Writer. `retentions`: the Options' retentions;
  // `clock`: Options::clock (wall ms).
  Writer(const LmdbEnv* env, size_t max_batch, Retentions retentions, std::function<int64_t()> clock);
  ~Writer();  // Stop()

  // Loads the id counter, then removes the objects left pending by
  // a crash (logged). Call once, before Start().
  Status Init();
  void Start();
  // Applies everything queued, then joins the thread. Idempotent.
  void Stop();

  // Thread-safe. After Stop(), the callback of a kCommit, kQueueUpdate or
  // kSweep is called at once with Unavailable and other operations are
  // dropped (recovery cleans up).
  void Enqueue(WriteOp op);

  // Ids are unique and increasing; ids of objects never committed are lost.
  uint64_t NewId() { return next_id_.fetch_add(1); }
  void SetProgressCallback(std::function<void()> cb) { progress_ = std::move(cb); }
  void SetQueueCallback(std::function<void(const std::vector<std::string>&)> cb) { queue_cb_ = std::move(cb); }
  void SetExpiryCallback(std::function<void(const std::vector<ExpiredObject>&)> cb) { expiry_cb_ = std::move(cb); }
  uint64_t commits() const { return commits_.load(); }
  // Objects removed by expiry since open, per ObjectClass.
  uint64_t expired(size_t object_class) const { return expired_[object_class].load(); }
  // Commits per batch size bucket (Store::Stats::kBatchBuckets) and the
  // operations of all commits.
  void BatchStats(uint64_t* buckets, size_t n, uint64_t* ops) const;

 private:
  struct Completion {
    WriteOp* op;  // a kCommit, kQueueUpdate, kSweep or kRetentions of the batch being applied
    Status status;
    bool sweep_more = false;  // kSweep, kHistoryBackfill: objects are left; run again
  };
  // What a transaction will do to in-memory state once it commits. The
  // totals are read from `meta` in the transaction itself (FORMAT.md:
  // admin processes remove objects too).
  struct Effects {
    Totals totals;
    std::vector<Completion> completions;
    std::vector<uint64_t> resolved_failures;   // ids to erase from failed_
    std::set<std::string> woken;               // destinations that got due rows
    uint64_t expired[kObjectClassCount] = {};  // objects removed by expiry, per class
    std::vector<ExpiredObject> gone;           // the objects a sweep removed
    uint64_t backfilled = 0;                   // objects a kHistoryBackfill counted
    uint64_t backfill_left = 0;                // and the ids it has left (0: done)
    bool backfill_ran = false;
  };
  // Objects one kHistoryBackfill transaction counts at most.
  static constexpr size_t kBackfillBatch = 500;
  // Objects one kSweep transaction removes at most; the rest go in another.
  static constexpr size_t kSweepBatch = 1000;
  // `delivered` rows one kSweep reads at most: a big table is pruned over
  // several sweeps rather than holding the writer for one long scan.
  static constexpr size_t kDeliveredScan = 20000;

  // Batches of chunks and queue updates that can wait alone wait up to this long, or
  // until this many raw bytes are queued, for a commit to share (see Run).
  // The byte bound stays below any producer's back-pressure budget, so
  // holding can never stall one.
  static constexpr std::chrono::milliseconds kChunkHoldTime{100};
  static constexpr uint64_t kChunkHoldBytes = 4ull << 20;
  // True when every queued operation may wait for a later commit: chunks
  // (below kChunkHoldBytes) and queue updates whose every QueueUpdate
  // has can_wait. REQUIRES: mu_ held.
  bool OnlyHoldableQueued() const;
  bool Stopping();
  void Run();
  // Applies `ops` in one transaction; on failure, retries each op alone (a
  // single failing op is failed, the rest go through).
  void ApplyBatch(std::vector<WriteOp>& ops);
  // Tries `ops` in one transaction; runs its effects when it committed.
  Status TryCommit(std::vector<WriteOp>& ops);
  Status TryCommitOnce(std::vector<WriteOp>& ops);
  Status ApplyOp(Txn& txn, WriteOp& op, Effects* fx);
  Status DropObject(Txn& txn, uint64_t id);
  Status Recover();
  // Gives the objects of a store written before the lifecycle their rows.
  Status BuildLifecycleIfMissing();
  void FailOne(WriteOp& op, const Status& s);
  static void Release(WriteOp& op);

  const LmdbEnv* env_;
  const size_t max_batch_;
  // Writer thread only: changed by kRetentions, between transactions (a
  // transaction that fails puts back the ones it started with).
  Retentions retentions_;
  const std::function<int64_t()> clock_;
  std::atomic<uint64_t> expired_[kObjectClassCount] = {};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> batch_ops_{0};
  std::atomic<uint64_t> batch_count_[10] = {};
  std::function<void()> progress_;
  std::function<void(const std::vector<std::string>&)> queue_cb_;
  std::function<void(const std::vector<ExpiredObject>&)> expiry_cb_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteOp> queue_;  // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  bool stopped_ = false;       // guarded by mu_
  std::thread thread_;

  // Writer thread only.
  std::map<uint64_t, Status> failed_;  // objects a chunk of which could not be written
  // Where the next kSweep goes on scanning `delivered` (resend.h
  // PruneDelivered); empty: from the start. Writer thread only.
  std::vector<uint8_t> delivered_scan_from_;
  // Where the next kSweep goes on scanning `history` (history.h). Writer
  // thread only.
  std::vector<uint8_t> history_scan_from_;
  std::vector<WriteOp> deferred_;  // drops to retry with the next batch
  // The history backfill: whether Init found one to run, the objects it
  // counted so far, and when it last logged its progress. Writer thread.
  bool backfill_pending_ = false;
  uint64_t backfill_total_ = 0;
  uint64_t backfilled_ = 0;
  std::chrono::steady_clock::time_point backfill_logged_;
};

}  // namespace relais::store

#endif  // RELAIS_STORE_WRITER_H_
