#include "store/writer.h"

#include "base/clock.h"
#include "store/queue_codec.h"

#include <chrono>
#include <string>
#include <string_view>

#include "base/log.h"
#include "store/history.h"
#include "store/meta_codec.h"
#include "store/resend.h"

namespace relais::store {
namespace {

// PS3.5 9.1: a UID is at most 64 characters.
constexpr size_t kMaxUidLength = 64;

// What the producer is told when a write fails. ResourceExhausted stays (the
// map or the disk is full: ENOSPC, EDQUOT); an IOError of a write (EIO from
// the disk while LMDB writes or grows its file) becomes ResourceExhausted
// too: the sender should keep the object and send it again later (0xA700),
// and the objects already committed are untouched (LMDB never overwrites a
// committed page). Anything else (corruption, an internal error) is an I/O
// error as far as the producer is concerned.
Status ForClient(const Status& s) {
  if (s.ok() || s.IsResourceExhausted()) return s;
  if (s.code() == Status::Code::kIOError) return Status::ResourceExhausted("store cannot write: " + s.message());
  return Status::IOError(s.message());
}

}  // namespace

Writer::Writer(const LmdbEnv* env, size_t max_batch, Retentions retentions, std::function<int64_t()> clock)
    : env_(env),
      max_batch_(max_batch == 0 ? 1 : max_batch),
      retentions_(retentions),
      clock_(clock ? std::move(clock) : std::function<int64_t()>(NowUnixMs)) {}

Writer::~Writer() { Stop(); }

Status Writer::Init() {
  {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(*env_, /*write=*/false));
    const Dbis& d = env_->dbis();
    uint64_t next = 0;
    RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaNextId, &next));
    // Never reuse an id that is on disk, whatever `next_id` says.
    for (MDB_dbi dbi : {d.objects, d.chunks, d.pending}) {
      Cursor c;
      RELAIS_RETURN_IF_ERROR(c.Open(txn, dbi));
      MDB_val k, v;
      Status s = c.Get(&k, &v, MDB_LAST);
      if (s.ok() && k.mv_size >= 8) next = std::max(next, GetBe64(static_cast<const uint8_t*>(k.mv_data)) + 1);
      if (!s.ok() && !s.IsNotFound()) return s;
    }
    next_id_ = std::max<uint64_t>(next, 1);
  }
  RELAIS_RETURN_IF_ERROR(Recover());
  RELAIS_RETURN_IF_ERROR(BuildLifecycleIfMissing());
  // Nothing is in flight yet: the ids below next_id are every object the
  // history may lack.
  RELAIS_RETURN_IF_ERROR(PrepareHistoryBackfill(*env_, next_id_.load(), &backfill_pending_, &backfill_total_));
  if (backfill_pending_) {
    RLOG_INFO(
        "event=history-backfill state=started ids=%llu: studies stored before the delivery history get one, "
        "in slices of %zu objects beside the traffic",
        static_cast<unsigned long long>(backfill_total_), kBackfillBatch);
  }
  return Status::OK();
}

Status Writer::BuildLifecycleIfMissing() {
  uint64_t done = 0;
  {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(*env_, /*write=*/false));
    RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, env_->dbis().meta, kMetaLifecycle, &done));
  }
  if (done == 1) return Status::OK();
  uint64_t count = 0;
  RELAIS_RETURN_IF_ERROR(BuildLifecycle(*env_, clock_(), /*rebuild=*/false, &count));
  if (count != 0)
    RLOG_INFO("store: classified %llu object(s) of an older store", static_cast<unsigned long long>(count));
  return Status::OK();
}

Status Writer::Recover() {
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(*env_, /*write=*/true));
  std::vector<uint64_t> ids;
  {
    RELAIS_RETURN_IF_ERROR(ForEachRow(txn, env_->dbis().pending, {}, [&](const MDB_val& k, const MDB_val&, bool*) {
      if (k.mv_size != 8) return Status::Corruption("pending key is not 8 bytes");
      ids.push_back(GetBe64(static_cast<const uint8_t*>(k.mv_data)));
      return Status::OK();
    }));
  }
  if (ids.empty()) return Status::OK();
  Status s;
  for (uint64_t id : ids) {
    s = DropObject(txn, id);
    if (!s.ok()) break;
  }
  if (s.ok()) s = txn.Commit();
  if (s.IsResourceExhausted() || s.code() == Status::Code::kIOError) {
    // The disk is full (LMDB reports a short write as EIO) (removing needs new pages first: LMDB copies on
    // write). Partial objects are invisible and harmless: the writer thread
    // removes them with its first batches, once space allows.
    txn.Abort();
    RLOG_WARN("store: %zu partial object(s) left by an interrupted run are removed later (%s)", ids.size(),
              s.ToString().c_str());
    for (uint64_t id : ids) {
      WriteOp drop;
      drop.type = WriteOp::Type::kDrop;
      drop.id = id;
      deferred_.push_back(std::move(drop));
    }
    return Status::OK();
  }
  RELAIS_RETURN_IF_ERROR(s);
  RLOG_INFO("store: removed %zu partial object(s) left by an interrupted run", ids.size());
  return Status::OK();
}

void Writer::Start() {
  if (backfill_pending_) {
    WriteOp op;
    op.type = WriteOp::Type::kHistoryBackfill;
    backfill_logged_ = std::chrono::steady_clock::now();
    Enqueue(std::move(op));
  }
  thread_ = std::thread([this] { Run(); });
}

void Writer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
}

void Writer::Enqueue(WriteOp op) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!stopped_) {
      queue_.push_back(std::move(op));
      // The writer waits for a first operation, then holds chunks and
      // queue updates that can wait alone (Run): one that leaves only such operations
      // queued changes nothing for it, so it is not woken for every chunk
      // (three per CT image), only for the first operation and for one
      // that ends the hold.
      const bool wake = queue_.size() == 1 || !OnlyHoldableQueued();
      lock.unlock();  // the woken writer takes the lock at once: let it
      if (wake) cv_.notify_one();
      return;
    }
  }
  Release(op);
  if (op.type == WriteOp::Type::kCommit && op.done) op.done(Status::Unavailable("store is closed"), op.meta);
  if (op.status_done) op.status_done(Status::Unavailable("store is closed"));
}

bool Writer::Stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

bool Writer::OnlyHoldableQueued() const {
  uint64_t bytes = 0;
  for (const WriteOp& op : queue_) {
    if (op.type == WriteOp::Type::kChunk) {
      bytes += op.raw_bytes;
      continue;
    }
    if (op.type != WriteOp::Type::kQueueUpdate) return false;
    for (const QueueUpdate& u : op.updates) {
      if (!u.can_wait) return false;
    }
  }
  return bytes < kChunkHoldBytes && queue_.size() < max_batch_;
}

void Writer::Run() {
  std::vector<WriteOp> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping and drained
      // Chunks alone need not be durable yet: nobody waits for them. Hold
      // them briefly so that they share the commit (and its fsyncs) of
      // their object's final operation, instead of costing a commit each.
      // Bounded in bytes and time so that a big or slow object still
      // streams to disk and its producer's back-pressure is released.
      // Queue updates whose caller can wait (QueueUpdate::can_wait: rows
      // delivery marks delivered) are held the same way. One association
      // delivering CT then costs a commit per hold, not one (two fsyncs)
      // per object.
      auto deadline = std::chrono::steady_clock::now() + kChunkHoldTime;
      while (!stopping_ && OnlyHoldableQueued() && std::chrono::steady_clock::now() < deadline) {
        cv_.wait_until(lock, deadline);
      }
      batch.clear();
      for (auto& op : deferred_) batch.push_back(std::move(op));
      deferred_.clear();
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    ApplyBatch(batch);
    if (progress_) progress_();
  }
}

void Writer::ApplyBatch(std::vector<WriteOp>& ops) {
  Status s = TryCommit(ops);
  if (s.ok()) return;
  if (ops.size() == 1) {
    FailOne(ops[0], s);
    return;
  }
  // One op made the whole transaction fail (typically MDB_MAP_FULL): nothing
  // of it was written. Retry the operations one by one so that only the ones
  // that do not fit are refused.
  RLOG_WARN("store: batch of %zu operations failed (%s); retrying them one by one", ops.size(), s.ToString().c_str());
  for (auto& op : ops) {
    std::vector<WriteOp> one;
    one.push_back(std::move(op));
    Status s1 = TryCommit(one);
    if (!s1.ok()) FailOne(one[0], s1);
  }
}

void Writer::FailOne(WriteOp& op, const Status& s) {
  Status client = ForClient(s);
  switch (op.type) {
    case WriteOp::Type::kChunk:
      // Its other chunks may be on disk: the object's Finish/Abort drops them.
      failed_.emplace(op.id, client);
      Release(op);
      break;
    case WriteOp::Type::kCommit: {
      RLOG_WARN("store: object %s not stored: %s", op.meta.sop_instance_uid.c_str(), client.ToString().c_str());
      WriteOp drop;
      drop.type = WriteOp::Type::kDrop;
      drop.id = op.id;
      deferred_.push_back(std::move(drop));
      if (op.done) op.done(client, op.meta);
      break;
    }
    case WriteOp::Type::kDrop:
      // Keep trying with later batches; a restart's recovery also removes it.
      deferred_.push_back(std::move(op));
      break;
    case WriteOp::Type::kQueueUpdate:
    case WriteOp::Type::kSweep:
    case WriteOp::Type::kHistoryBackfill:
      // It goes on at the next start, where it stopped (meta).
      RLOG_WARN("event=history-backfill state=failed error=\"%s\": it goes on at the next start",
                client.ToString().c_str());
      break;
    case WriteOp::Type::kRetentions:
      RLOG_WARN("store: %s failed: %s",
                op.type == WriteOp::Type::kSweep        ? "sweep"
                : op.type == WriteOp::Type::kRetentions ? "retention change"
                                                        : "queue update",
                client.ToString().c_str());
      if (op.status_done) op.status_done(client);
      break;
  }
}

void Writer::Release(WriteOp& op) {
  if (op.uncommitted && op.raw_bytes != 0) op.uncommitted->fetch_sub(op.raw_bytes);
  op.raw_bytes = 0;
}

Status Writer::TryCommit(std::vector<WriteOp>& ops) {
  // A kRetentions op of a transaction that does not commit must not stay in
  // force: the ops are applied again (one by one) after a failure.
  const Retentions started_with = retentions_;
  Status s = TryCommitOnce(ops);
  if (!s.ok()) retentions_ = started_with;
  return s;
}

Status Writer::TryCommitOnce(std::vector<WriteOp>& ops) {
  Effects fx;
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(*env_, /*write=*/true));
  const Dbis& d = env_->dbis();
  // Never trust a cached value: an admin process may have removed objects
  // since our last commit (LMDB serializes the two processes' writes).
  RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &fx.totals));
  for (auto& op : ops) RELAIS_RETURN_IF_ERROR(ApplyOp(txn, op, &fx));
  RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaNextId, next_id_.load()));
  RELAIS_RETURN_IF_ERROR(WriteTotals(txn, d, fx.totals));
  RELAIS_RETURN_IF_ERROR(txn.Commit());  // fsync: from here on it is durable
  commits_.fetch_add(1);
  batch_ops_.fetch_add(ops.size());
  {
    size_t b = 0;
    while (b < std::size(Store::Stats::kBatchBuckets) && ops.size() > Store::Stats::kBatchBuckets[b]) ++b;
    batch_count_[b].fetch_add(1);
  }
  for (uint64_t id : fx.resolved_failures) failed_.erase(id);
  for (size_t c = 0; c < kObjectClassCount; ++c) {
    if (fx.expired[c] == 0) continue;
    expired_[c].fetch_add(fx.expired[c]);
    // The objects are gone with their attempt logs: this line (and the
    // expired counter) is what tells of them. Dropped objects not kept at
    // all are only counted.
    const auto cls = static_cast<ObjectClass>(c);
    if (cls != ObjectClass::kDropped || retentions_.dropped_ms != 0) {
      RLOG_INFO("event=expired class=%s objects=%llu retention_ms=%lld", ObjectClassName(cls),
                static_cast<unsigned long long>(fx.expired[c]), static_cast<long long>(retentions_.For(cls)));
    }
  }
  if (fx.backfill_ran) {
    backfilled_ += fx.backfilled;
    const auto now = std::chrono::steady_clock::now();
    if (fx.backfill_left == 0) {
      RLOG_INFO("event=history-backfill state=done objects=%llu", static_cast<unsigned long long>(backfilled_));
    } else if (now - backfill_logged_ >= std::chrono::seconds(10)) {
      backfill_logged_ = now;
      RLOG_INFO("event=history-backfill state=running objects=%llu ids_left=%llu",
                static_cast<unsigned long long>(backfilled_), static_cast<unsigned long long>(fx.backfill_left));
    }
  }
  for (auto& op : ops) Release(op);
  // Wake the scheduler before anyone learns of the commit, so that a caller
  // that waits for `done` finds the wake-up already delivered.
  if (!fx.woken.empty() && queue_cb_) queue_cb_(std::vector<std::string>(fx.woken.begin(), fx.woken.end()));
  if (!fx.gone.empty() && expiry_cb_) expiry_cb_(fx.gone);
  for (auto& c : fx.completions) {
    WriteOp& op = *c.op;
    if (op.type == WriteOp::Type::kCommit) {
      if (op.done) op.done(c.status, op.meta);
    } else if (c.sweep_more && op.type == WriteOp::Type::kHistoryBackfill && Stopping()) {
      // Not worth delaying a stop for: it goes on at the next start.
    } else if (c.sweep_more) {
      // More retained objects are due: another transaction, same callback.
      WriteOp again;
      again.type = op.type;
      again.now_unix_ms = op.now_unix_ms;
      again.status_done = std::move(op.status_done);
      Enqueue(std::move(again));
    } else if (op.status_done) {
      op.status_done(c.status);
    }
  }
  return Status::OK();
}

Status Writer::ApplyOp(Txn& txn, WriteOp& op, Effects* fx) {
  const Dbis& d = env_->dbis();
  IdKey id_key(op.id);
  switch (op.type) {
    case WriteOp::Type::kChunk: {
      if (failed_.count(op.id) != 0) return Status::OK();  // the object is lost anyway
      std::span<const uint8_t> unused;
      Status s = txn.Get(d.pending, id_key.val(), &unused);
      if (s.IsNotFound()) {
        uint8_t start[8];
        PutLe64(start, static_cast<uint64_t>(NowUnixMs()));
        RELAIS_RETURN_IF_ERROR(txn.Put(d.pending, id_key.val(), ToVal(std::span<const uint8_t>(start))));
      } else {
        RELAIS_RETURN_IF_ERROR(s);
      }
      ChunkKey key(op.id, op.index);
      return txn.Put(d.chunks, key.val(), ToVal(op.value));
    }
    case WriteOp::Type::kDrop: {
      if (failed_.count(op.id) != 0) fx->resolved_failures.push_back(op.id);
      return DropObject(txn, op.id);
    }
    case WriteOp::Type::kQueueUpdate: {
      DeliveryTxn dt(&txn, d, retentions_, &fx->totals);
      RELAIS_RETURN_IF_ERROR(dt.Apply(op.updates, clock_(), &fx->woken));
      fx->completions.push_back({&op, Status::OK()});
      return Status::OK();
    }
    case WriteOp::Type::kSweep: {
      DeliveryTxn dt(&txn, d, retentions_, &fx->totals);
      bool more = false;
      RELAIS_RETURN_IF_ERROR(dt.Sweep(op.now_unix_ms, kSweepBatch, &more, fx->expired, &fx->gone));
      // The resend memory is bounded the same way (FORMAT.md `delivered`).
      bool more_delivered = false;
      RELAIS_RETURN_IF_ERROR(
          PruneDelivered(txn, d, op.now_unix_ms, kSweepBatch, kDeliveredScan, &delivered_scan_from_, &more_delivered));
      more = more || more_delivered;
      // And the delivery history, a bounded slice per sweep (FORMAT.md `history`).
      RELAIS_RETURN_IF_ERROR(
          PruneHistory(txn, d, op.now_unix_ms, retentions_.history_ms, kDeliveredScan, &history_scan_from_));
      fx->completions.push_back({&op, Status::OK(), more});
      return Status::OK();
    }
    case WriteOp::Type::kHistoryBackfill: {
      fx->backfill_ran = true;
      RELAIS_RETURN_IF_ERROR(BackfillHistorySlice(txn, d, kBackfillBatch, &fx->backfilled, &fx->backfill_left));
      fx->completions.push_back({&op, Status::OK(), fx->backfill_left != 0});
      return Status::OK();
    }
    case WriteOp::Type::kRetentions:
      // The ops after it in this batch, and every later one, use them.
      retentions_ = op.retentions;
      fx->completions.push_back({&op, Status::OK()});
      return Status::OK();
    case WriteOp::Type::kCommit: break;
  }

  ObjectMeta& m = op.meta;
  // Set below; cleared first because a failed batch applies its ops again.
  m.duplicate_of = 0;
  m.suppressed.clear();
  auto failed = failed_.find(op.id);
  Status refusal;
  if (failed != failed_.end()) {
    refusal = failed->second;
    fx->resolved_failures.push_back(op.id);
  } else if (m.sop_instance_uid.empty() || m.sop_instance_uid.size() > kMaxUidLength) {
    refusal = Status::InvalidArgument("SOP Instance UID must have 1 to 64 characters, got " +
                                      std::to_string(m.sop_instance_uid.size()));
  }
  if (!refusal.ok()) {
    RELAIS_RETURN_IF_ERROR(DropObject(txn, op.id));
    fx->completions.push_back({&op, refusal});
    return Status::OK();
  }

  // Last received wins (FORMAT.md): an older object with this UID goes.
  MDB_val uid_key = ToVal(std::string_view(m.sop_instance_uid));
  std::span<const uint8_t> old_id_bytes;
  Status s = txn.Get(d.uid, uid_key, &old_id_bytes);
  if (s.ok()) {
    if (old_id_bytes.size() != 8) return Status::Corruption("uid row is not 8 bytes");
    uint64_t old_id = GetBe64(old_id_bytes.data());
    if (old_id == op.id) return Status::Internal("object committed twice");
    if (old_id > op.id) {
      // The stored object started arriving after this one (two associations
      // sent the same UID at once): it is the later one and it stays. This
      // one is acknowledged, being superseded, and not kept.
      RELAIS_RETURN_IF_ERROR(DropObject(txn, op.id));
      fx->completions.push_back({&op, Status::OK()});
      return Status::OK();
    }
    // The same bytes again (a modality resending a study): acknowledged,
    // not kept; the stored object and its rows stay as they are.
    bool identical = false;
    RELAIS_RETURN_IF_ERROR(IsIdenticalObject(txn, d, old_id, m, &identical));
    if (identical) {
      RELAIS_RETURN_IF_ERROR(DropObject(txn, op.id));
      m.duplicate_of = old_id;
      fx->completions.push_back({&op, Status::OK()});
      return Status::OK();
    }
    // Its record, chunks, live and dead rows, attempt log and done row go:
    // its deliveries are superseded by the new object's own routes.
    DeliveryTxn dt(&txn, d, retentions_, &fx->totals);
    RELAIS_RETURN_IF_ERROR(dt.RemoveObject(old_id));
  } else if (!s.IsNotFound()) {
    return s;
  }

  // Its class (FORMAT.md "Lifecycle"). A dropped object with no retention
  // is acknowledged and not kept: nothing of it outlives this commit.
  const ObjectClass cls = !m.routes.empty()        ? ObjectClass::kQueued
                          : m.routing == "dropped" ? ObjectClass::kDropped
                                                   : ObjectClass::kUnrouted;
  if (cls == ObjectClass::kDropped && retentions_.dropped_ms == 0) {
    RELAIS_RETURN_IF_ERROR(DropObject(txn, op.id));
    ++fx->expired[static_cast<size_t>(cls)];
    fx->completions.push_back({&op, Status::OK()});
    return Status::OK();
  }

  std::vector<uint8_t> record = EncodeMeta(m);
  RELAIS_RETURN_IF_ERROR(txn.Put(d.objects, id_key.val(), ToVal(record)));
  RELAIS_RETURN_IF_ERROR(txn.Put(d.uid, uid_key, id_key.val()));
  RELAIS_RETURN_IF_ERROR(txn.Del(d.pending, id_key.val()));
  // The object's queue rows become durable in the same commit as the object,
  // but for those its destinations' resend policies suppress.
  size_t queued = 0;
  std::vector<std::string> queued_to;  // for the study's history
  uint32_t seq = 0;                    // the new object has no attempt log yet
  for (const Route& r : m.routes) {
    if (r.resend != Resend::kAlways) RELAIS_RETURN_IF_ERROR(NoteResendWindow(txn, d, r.resend_window_ms));
    bool suppressed = false;
    std::string why;
    RELAIS_RETURN_IF_ERROR(CheckSuppressed(txn, d, m, r, &suppressed, &why));
    if (suppressed) {
      RELAIS_RETURN_IF_ERROR(LogSuppressed(txn, d, op.id, seq++, r.destination, why, m.received_unix_ms));
      m.suppressed.push_back(r.destination);
      continue;
    }
    ++queued;
    queued_to.push_back(r.destination);
    fx->woken.insert(r.destination);
    QueueRow row;
    row.rule = r.rule;
    row.edits = r.edits;
    std::vector<uint8_t> qk = EncodeQueueKey(r.destination, r.priority, op.id);
    std::vector<uint8_t> qv = EncodeQueueValue(row);
    RELAIS_RETURN_IF_ERROR(txn.Put(d.queue, ToVal(std::span<const uint8_t>(qk)), ToVal(std::span<const uint8_t>(qv))));
  }
  fx->totals.raw_bytes += m.raw_size;
  fx->totals.stored_bytes += m.stored_size;
  RELAIS_RETURN_IF_ERROR(HistoryOnCommit(txn, d, m, queued_to, clock_()));
  ObjectClass final_cls = cls;
  if (!m.routes.empty() && queued == 0) {
    // Every route suppressed: finished at once, delivered class. The done row
    // keeps the object (and its attempt log, which says why) visible until
    // the Sweep after its retention (the next one when retention is 0).
    uint8_t b[8];
    PutLe64(b, static_cast<uint64_t>(clock_()));
    RELAIS_RETURN_IF_ERROR(txn.Put(d.done, id_key.val(), ToVal(std::span<const uint8_t>(b))));
    final_cls = ObjectClass::kDelivered;
  }
  DeliveryTxn dt(&txn, d, retentions_, &fx->totals);
  RELAIS_RETURN_IF_ERROR(dt.SetClass(op.id, final_cls, clock_(), m.stored_size));
  fx->completions.push_back({&op, Status::OK()});
  return Status::OK();
}

Status Writer::DropObject(Txn& txn, uint64_t id) { return DropChunks(txn, env_->dbis(), id); }

void Writer::BatchStats(uint64_t* buckets, size_t n, uint64_t* ops) const {
  for (size_t i = 0; i < n && i < std::size(batch_count_); ++i) buckets[i] = batch_count_[i].load();
  *ops = batch_ops_.load();
}

}  // namespace relais::store
