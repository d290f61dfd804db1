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
#include <thread>
#include <vector>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

struct WriteOp {
  enum class Type {
    kChunk,   // put chunk (id, index) and the `pending` row of id
    kCommit,  // put the meta record + uid row, replace an older object with the same UID, delete pending
    kDrop,    // delete every chunk of id and its pending row (Abort, failed objects)
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
};

class Writer {
 public:
  // `env` must outlive the Writer.
  Writer(const LmdbEnv* env, size_t max_batch);
  ~Writer();  // Stop()

  // Loads the id counter and totals, then removes the objects left pending by
  // a crash (logged). Call once, before Start().
  Status Init();
  void Start();
  // Applies everything queued, then joins the thread. Idempotent.
  void Stop();

  // Thread-safe. After Stop(), a kCommit's callback is called at once with
  // Unavailable and other operations are dropped (recovery cleans up).
  void Enqueue(WriteOp op);

  // Ids are unique and increasing; ids of objects never committed are lost.
  uint64_t NewId() { return next_id_.fetch_add(1); }
  void SetProgressCallback(std::function<void()> cb) { progress_ = std::move(cb); }
  uint64_t commits() const { return commits_.load(); }

 private:
  struct Totals {
    uint64_t raw_bytes = 0;
    uint64_t stored_bytes = 0;
  };
  struct Completion {
    WriteOp* op;  // a kCommit of the batch being applied
    Status status;
  };
  // What a transaction will do to in-memory state once it commits.
  struct Effects {
    Totals totals;
    std::vector<Completion> completions;
    std::vector<uint64_t> resolved_failures;  // ids to erase from failed_
  };

  // Chunk-only batches wait up to this long, or until this many raw bytes
  // are queued, for a commit to share (see Run). The byte bound stays below
  // any producer's back-pressure budget, so holding can never stall one.
  static constexpr std::chrono::milliseconds kChunkHoldTime{100};
  static constexpr uint64_t kChunkHoldBytes = 4ull << 20;
  // REQUIRES: mu_ held.
  bool OnlyChunksHeld() const;
  void Run();
  // Applies `ops` in one transaction; on failure, retries each op alone (a
  // single failing op is failed, the rest go through).
  void ApplyBatch(std::vector<WriteOp>& ops);
  // Tries `ops` in one transaction; runs its effects when it committed.
  Status TryCommit(std::vector<WriteOp>& ops);
  Status ApplyOp(Txn& txn, WriteOp& op, Effects* fx);
  Status DropObject(Txn& txn, uint64_t id);
  Status Recover();
  void FailOne(WriteOp& op, const Status& s);
  static void Release(WriteOp& op);

  const LmdbEnv* env_;
  const size_t max_batch_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> commits_{0};
  std::function<void()> progress_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteOp> queue_;  // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  bool stopped_ = false;       // guarded by mu_
  std::thread thread_;

  // Writer thread only.
  Totals totals_;
  std::map<uint64_t, Status> failed_;  // objects a chunk of which could not be written
  std::vector<WriteOp> deferred_;      // drops to retry with the next batch
};

}  // namespace relais::store

#endif  // RELAIS_STORE_WRITER_H_
