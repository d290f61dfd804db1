// Store::Open and the read-write / read-only Store implementation.
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "base/clock.h"
#include "store/backup.h"
#include "store/chunk_codec.h"
#include "store/compression_pool.h"
#include "store/delivery.h"
#include "store/history.h"
#include "store/lmdb_env.h"
#include "store/meta_codec.h"
#include "store/part10.h"
#include "store/queue_codec.h"
#include "store/store.h"
#include "store/verify.h"
#include "store/writer.h"

namespace relais::store {
namespace {

// An object whose chunks are in the compression pool. Shared by its
// ObjectWriter and the pool jobs; the terminal operation (commit or drop) is
// queued to the writer after the last chunk, so the writer applies them in
// that order.
struct ObjectState {
  explicit ObjectState(uint64_t id_in) : id(id_in), uncommitted(std::make_shared<std::atomic<uint64_t>>(0)) {}
  const uint64_t id;
  const std::shared_ptr<std::atomic<uint64_t>> uncommitted;

  std::mutex mu;
  uint32_t outstanding = 0;   // chunks in the pool; guarded by mu
  uint64_t stored_size = 0;   // guarded by mu
  bool aborted = false;       // guarded by mu
  bool has_terminal = false;  // guarded by mu
  WriteOp terminal;           // guarded by mu
};

class StoreImpl;

// The ObjectWriter of a store that cannot write objects (read-only or admin
// mode): drops the bytes and fails Finish with `why`.
class RefusingObjectWriter final : public ObjectWriter {
 public:
  explicit RefusingObjectWriter(Status why) : why_(std::move(why)) {}
  void Append(std::span<const uint8_t>) override {}
  uint64_t UncommittedBytes() const override { return 0; }
  void Finish(ObjectMeta meta, DoneCallback done) override {
    if (done) done(why_, meta);
  }
  void Abort() override {}

 private:
  const Status why_;
};

class ObjectWriterImpl final : public ObjectWriter {
 public:
  ObjectWriterImpl(Writer* writer, CompressionPool* pool, size_t chunk_size, bool allow_shuffle)
      : writer_(writer),
        pool_(pool),
        chunk_size_(chunk_size == 0 ? 1 : chunk_size),
        allow_shuffle_(allow_shuffle),
        state_(std::make_shared<ObjectState>(writer->NewId())),
        hash_(XXH3_createState()) {
    XXH3_64bits_reset(hash_);
  }
  ~ObjectWriterImpl() override {
    if (!finished_) Abort();
    XXH3_freeState(hash_);
  }

  void Append(std::span<const uint8_t> data) override {
    if (finished_) return;
    XXH3_64bits_update(hash_, data.data(), data.size());
    raw_size_ += data.size();
    while (!data.empty()) {
      if (buffer_.capacity() < chunk_size_) buffer_.reserve(chunk_size_);
      size_t n = std::min(data.size(), chunk_size_ - buffer_.size());
      buffer_.insert(buffer_.end(), data.begin(), data.begin() + n);
      data = data.subspan(n);
      if (buffer_.size() == chunk_size_) SubmitChunk();
    }
  }

  uint64_t UncommittedBytes() const override { return state_->uncommitted->load(); }

  void SetPixelLayout(uint64_t offset, uint32_t sample_bytes) override {
    pixel_offset_ = offset;
    sample_bytes_ = ValidSampleBytes(sample_bytes) ? sample_bytes : 0;
  }

  void Finish(ObjectMeta meta, DoneCallback done) override {
    if (finished_) return;
    finished_ = true;
    if (!buffer_.empty()) SubmitChunk();
    meta.id = state_->id;
    meta.raw_size = raw_size_;
    meta.chunk_count = next_index_;
    meta.checksum = XXH3_64bits_digest(hash_);
    if (meta.received_unix_ms == 0) meta.received_unix_ms = NowUnixMs();
    WriteOp op;
    op.type = WriteOp::Type::kCommit;
    op.id = state_->id;
    op.meta = std::move(meta);
    op.done = std::move(done);
    SetTerminal(std::move(op), /*abort=*/false);
  }

  void Abort() override {
    if (finished_) return;
    finished_ = true;
    buffer_.clear();
    WriteOp op;
    op.type = WriteOp::Type::kDrop;
    op.id = state_->id;
    SetTerminal(std::move(op), /*abort=*/true);
  }

 private:
  void SubmitChunk() {
    uint32_t index = next_index_++;
    // Chunk i holds raw bytes [i * chunk_size, ...) of the object (FORMAT.md).
    ChunkFilter filter;
    if (allow_shuffle_ && sample_bytes_ != 0) {
      filter = ChunkFilter::ForChunk(uint64_t{index} * chunk_size_, buffer_.size(), pixel_offset_, sample_bytes_);
    }
    state_->uncommitted->fetch_add(buffer_.size());
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      ++state_->outstanding;
    }
    Writer* writer = writer_;
    pool_->Submit([writer, state = state_, index, filter, raw = std::move(buffer_)](ChunkCompressor& c) {
      bool skip;
      {
        std::lock_guard<std::mutex> lock(state->mu);
        skip = state->aborted;
      }
      WriteOp op;
      op.type = WriteOp::Type::kChunk;
      op.id = state->id;
      op.index = index;
      op.raw_bytes = raw.size();
      op.uncommitted = state->uncommitted;
      if (!skip) op.value = c.Encode(raw, filter);
      std::lock_guard<std::mutex> lock(state->mu);
      --state->outstanding;
      if (state->aborted) {
        state->uncommitted->fetch_sub(op.raw_bytes);
      } else {
        state->stored_size += op.value.size();
        writer->Enqueue(std::move(op));
      }
      if (state->outstanding == 0 && state->has_terminal) {
        state->has_terminal = false;
        state->terminal.meta.stored_size = state->stored_size;
        writer->Enqueue(std::move(state->terminal));
      }
    });
    buffer_ = std::vector<uint8_t>();
  }

  void SetTerminal(WriteOp op, bool abort) {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (abort) state_->aborted = true;
    if (state_->outstanding == 0) {
      op.meta.stored_size = state_->stored_size;
      writer_->Enqueue(std::move(op));
    } else {
      state_->terminal = std::move(op);
      state_->has_terminal = true;
    }
  }

  Writer* const writer_;
  CompressionPool* const pool_;
  const size_t chunk_size_;
  const bool allow_shuffle_;  // the store's format version has shuffled chunks
  uint64_t pixel_offset_ = 0;
  uint32_t sample_bytes_ = 0;  // 0: no pixel layout known
  const std::shared_ptr<ObjectState> state_;
  XXH3_state_t* const hash_;
  std::vector<uint8_t> buffer_;
  uint32_t next_index_ = 0;
  uint64_t raw_size_ = 0;
  bool finished_ = false;
};

// Chunk-by-chunk reader of one object (Store::OpenObject).
class ObjectReaderImpl final : public ObjectReader {
 public:
  ObjectReaderImpl(const LmdbEnv* env, ObjectMeta meta) : env_(env), meta_(std::move(meta)), hash_(XXH3_createState()) {
    XXH3_64bits_reset(hash_);
  }
  ~ObjectReaderImpl() override { XXH3_freeState(hash_); }
  const ObjectMeta& meta() const override { return meta_; }

  Status Next(std::vector<uint8_t>* out, bool* done) override {
    *done = false;
    const uint64_t id = meta_.id;
    // *out is not cleared before decoding: DecodeChunk sets its size, and a
    // buffer the caller reuses then keeps its bytes instead of being
    // zero-filled again for every chunk.
    if (next_ >= meta_.chunk_count) out->clear();
    if (next_ < meta_.chunk_count) {
      // One short read transaction per chunk: a slow sink (a WAN peer) must
      // not pin old pages and make the file grow while it reads.
      Txn txn;
      RELAIS_RETURN_IF_ERROR(txn.Begin(*env_, false));
      ChunkKey key(id, next_);
      std::span<const uint8_t> value;
      Status s = txn.Get(env_->dbis().chunks, key.val(), &value);
      if (s.IsNotFound()) {
        IdKey ik(id);
        std::span<const uint8_t> unused;
        if (txn.Get(env_->dbis().objects, ik.val(), &unused).IsNotFound()) {
          return Status::NotFound("object " + std::to_string(id) + " was replaced or removed while being read");
        }
        return Status::Corruption("object " + std::to_string(id) + ": chunk " + std::to_string(next_) + " missing");
      }
      RELAIS_RETURN_IF_ERROR(s);
      s = DecodeChunk(value, meta_.raw_size - total_, out);
      if (!s.ok()) {
        return Status::Corruption("object " + std::to_string(id) + " chunk " + std::to_string(next_) + ": " +
                                  s.message());
      }
      txn.Abort();
      ++next_;
      total_ += out->size();
      XXH3_64bits_update(hash_, out->data(), out->size());
    }
    if (next_ < meta_.chunk_count) return Status::OK();
    *done = true;
    if (total_ != meta_.raw_size) {
      return Status::Corruption("object " + std::to_string(id) + ": chunks hold " + std::to_string(total_) +
                                " bytes, record says " + std::to_string(meta_.raw_size));
    }
    if (XXH3_64bits_digest(hash_) != meta_.checksum) {
      return Status::Corruption("object " + std::to_string(id) + " (" + meta_.sop_instance_uid +
                                "): checksum mismatch");
    }
    return Status::OK();
  }

 private:
  const LmdbEnv* env_;
  const ObjectMeta meta_;
  XXH3_state_t* const hash_;
  uint32_t next_ = 0;
  uint64_t total_ = 0;
};

class StoreImpl final : public Store {
 public:
  explicit StoreImpl(const Options& options) : options_(options), retentions_(Retentions::From(options)) {}

  ~StoreImpl() override {
    // Order matters: the pool feeds the writer, the writer uses the env.
    if (pool_) pool_->Stop();
    if (writer_) writer_->Stop();
  }

  Status Init() {
    // Admin mode adopts the map size recorded in the store, so as not to
    // change the one `relais serve` chose.
    const bool admin = options_.admin && !options_.read_only;
    const bool exists = std::filesystem::exists(options_.path + "/data.mdb");
    RELAIS_RETURN_IF_ERROR(env_.Open(options_.path, admin && exists ? 0 : options_.max_size, options_.read_only));
    // No writer thread and, above all, no recovery in admin mode: a running
    // `relais serve` may have objects pending, which recovery would delete.
    if (options_.read_only || admin) return Status::OK();
    writer_ = std::make_unique<Writer>(&env_, options_.max_batch, Retentions::From(options_), options_.clock);
    // Serving writes shuffled chunks, which only format version 2 has: an
    // older store's marker is raised first (FORMAT.md "Compatibility").
    RELAIS_RETURN_IF_ERROR(env_.UpgradeFormatVersion());
    RELAIS_RETURN_IF_ERROR(writer_->Init());
    CompressionPool::Levels levels;
    levels.level = options_.compression_level;
    levels.adaptive = options_.compression_auto;
    levels.min = options_.compression_level_min;
    levels.max = options_.compression_level_max;
    pool_ = std::make_unique<CompressionPool>(options_.compression_threads, levels);
    writer_->Start();
    return Status::OK();
  }

  std::unique_ptr<ObjectWriter> NewObject() override {
    if (!writer_) {
      return std::make_unique<RefusingObjectWriter>(Status::InvalidArgument(
          std::string("store at ") + options_.path + " is open " +
          (options_.read_only ? "read-only" : "in admin mode") + ": it cannot receive objects"));
    }
    return std::make_unique<ObjectWriterImpl>(writer_.get(), pool_.get(), options_.chunk_size,
                                              env_.format_version() >= 2);
  }

  void SetProgressCallback(std::function<void()> cb) override {
    if (writer_) writer_->SetProgressCallback(std::move(cb));
  }

  void SetExpiryCallback(std::function<void(const std::vector<ExpiredObject>&)> cb) override {
    if (writer_) writer_->SetExpiryCallback(std::move(cb));
  }

  void SetQueueCallback(std::function<void(const std::vector<std::string>&)> cb) override {
    if (writer_) {
      writer_->SetQueueCallback(std::move(cb));
    } else {
      queue_cb_ = std::move(cb);
    }
  }

  Status List(const std::function<bool(const ObjectMeta&)>& fn) const override {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    return ForEachRow(txn, env_.dbis().objects, {}, [&](const MDB_val&, const MDB_val& v, bool* more) {
      ObjectMeta m;
      RELAIS_RETURN_IF_ERROR(DecodeMeta(FromVal(v), &m));
      *more = fn(m);
      return Status::OK();
    });
  }

  Status ListQueue(const std::function<bool(const QueueRow&)>& fn) const override { return ListQueueFrom("", fn); }

  Result<ObjectMeta> Find(const std::string& sop_instance_uid) const override {
    if (sop_instance_uid.empty()) return Status::NotFound("empty SOP Instance UID");
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    std::span<const uint8_t> id;
    Status s = txn.Get(env_.dbis().uid, ToVal(std::string_view(sop_instance_uid)), &id);
    if (s.IsNotFound()) return Status::NotFound("no object with SOP Instance UID " + sop_instance_uid);
    RELAIS_RETURN_IF_ERROR(s);
    if (id.size() != 8) return Status::Corruption("uid row of " + sop_instance_uid + " is not 8 bytes");
    return GetMeta(txn, GetBe64(id.data()));
  }

  Status ListStudies(const std::function<bool(const StudyHistory&)>& fn) const override {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    return ForEachStudy(txn, env_.dbis(), fn);
  }

  Result<StudyHistory> FindStudy(const std::string& study_instance_uid) const override {
    if (!env_.dbis().has_history || study_instance_uid.empty()) {
      return Status::NotFound("no history of study '" + study_instance_uid + "'");
    }
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    std::span<const uint8_t> v;
    Status s = txn.Get(env_.dbis().history, ToVal(std::string_view(study_instance_uid)), &v);
    if (s.IsNotFound()) return Status::NotFound("no history of study '" + study_instance_uid + "'");
    RELAIS_RETURN_IF_ERROR(s);
    StudyHistory h;
    RELAIS_RETURN_IF_ERROR(DecodeStudyRecord(v, &h));
    h.study_instance_uid = study_instance_uid;
    return h;
  }

  Status ReadObject(uint64_t id, const std::function<Status(std::span<const uint8_t>)>& sink) const override {
    Result<std::unique_ptr<ObjectReader>> reader = OpenObject(id);
    if (!reader.ok()) return reader.status();
    std::vector<uint8_t> chunk;
    bool done = false;
    while (!done) {
      RELAIS_RETURN_IF_ERROR((*reader)->Next(&chunk, &done));
      if (!chunk.empty()) RELAIS_RETURN_IF_ERROR(sink(std::span<const uint8_t>(chunk)));
    }
    return Status::OK();
  }

  Result<std::unique_ptr<ObjectReader>> OpenObject(uint64_t id) const override {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    Result<ObjectMeta> m = GetMeta(txn, id);
    if (!m.ok()) return m.status();
    return std::unique_ptr<ObjectReader>(new ObjectReaderImpl(&env_, std::move(m.value())));
  }

  Status ExportPart10(const std::string& sop_instance_uid, const std::string& out_path) const override {
    Result<ObjectMeta> meta = Find(sop_instance_uid);
    if (!meta.ok()) return meta.status();
    uint64_t id = meta->id;
    return WritePart10(
        *meta, [this, id](const std::function<Status(std::span<const uint8_t>)>& sink) { return ReadObject(id, sink); },
        out_path);
  }

  Status ListQueue(const std::string& destination, const std::function<bool(const QueueRow&)>& fn) const override {
    // The destination's rows are the keys that start with its name + 0x00.
    std::string prefix = destination;
    prefix.push_back('\0');
    return ListQueueFrom(prefix, fn);
  }

  Status ListDead(const std::function<bool(const QueueRow&)>& fn) const override {
    if (!env_.dbis().has_delivery) return Status::OK();  // an older store: none yet
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    return ForEachRow(txn, env_.dbis().dead, {}, [&](const MDB_val& k, const MDB_val& v, bool* more) {
      QueueRow row;
      RELAIS_RETURN_IF_ERROR(DecodeQueueKey(FromVal(k), &row));
      RELAIS_RETURN_IF_ERROR(DecodeDeadValue(FromVal(v), &row));
      *more = fn(row);
      return Status::OK();
    });
  }

  Status ListAttempts(uint64_t object_id, const std::function<bool(const Attempt&)>& fn) const override {
    if (!env_.dbis().has_delivery) return Status::OK();
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    AttemptKey first(object_id, 0);
    return ForEachRow(txn, env_.dbis().attempts, first.bytes, [&](const MDB_val& k, const MDB_val& v, bool* more) {
      uint64_t id;
      uint32_t seq;
      RELAIS_RETURN_IF_ERROR(DecodeAttemptKey(FromVal(k), &id, &seq));
      if (id != object_id) {
        *more = false;
        return Status::OK();
      }
      Attempt a;
      a.object_id = id;
      RELAIS_RETURN_IF_ERROR(DecodeAttempt(FromVal(v), &a));
      *more = fn(a);
      return Status::OK();
    });
  }

  Result<ObjectMeta> Get(uint64_t id) const override {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    return GetMeta(txn, id);
  }

  void UpdateQueue(std::vector<QueueUpdate> updates, std::function<void(Status)> done) override {
    if (writer_) {
      WriteOp op;
      op.type = WriteOp::Type::kQueueUpdate;
      op.updates = std::move(updates);
      op.status_done = std::move(done);
      writer_->Enqueue(std::move(op));
      return;
    }
    if (options_.read_only) {
      if (done) done(Status::InvalidArgument("store at " + options_.path + " is open read-only"));
      return;
    }
    // Admin mode: one synchronous write transaction. LMDB serializes it
    // with the serving writer's transactions, across processes.
    std::set<std::string> woken;
    Status s = AdminUpdate(updates, &woken);
    if (s.ok() && !woken.empty() && queue_cb_) queue_cb_(std::vector<std::string>(woken.begin(), woken.end()));
    if (done) done(s);
  }

  void SetRetentions(const Retentions& retentions, std::function<void(Status)> done) override {
    {
      std::lock_guard<std::mutex> lock(retentions_mu_);
      retentions_ = retentions;
    }
    if (!writer_) {
      if (done) done(Status::OK());
      return;
    }
    WriteOp op;
    op.type = WriteOp::Type::kRetentions;
    op.retentions = retentions;
    op.status_done = std::move(done);
    writer_->Enqueue(std::move(op));
  }

  Retentions GetRetentions() const override {
    std::lock_guard<std::mutex> lock(retentions_mu_);
    return retentions_;
  }

  void Sweep(int64_t now_unix_ms, std::function<void(Status)> done) override {
    if (!writer_) {
      if (done) {
        done(Status::InvalidArgument("store at " + options_.path + " is open " +
                                     (options_.read_only ? "read-only" : "in admin mode") +
                                     ": Sweep runs in the serving process"));
      }
      return;
    }
    WriteOp op;
    op.type = WriteOp::Type::kSweep;
    op.now_unix_ms = now_unix_ms;
    op.status_done = std::move(done);
    writer_->Enqueue(std::move(op));
  }

  Result<VerifyReport> Verify(const std::function<void(const VerifyProgress&)>& progress) const override {
    return VerifyEnv(env_, progress);
  }

  Result<ScrubBatch> Scrub(uint64_t from_id, size_t max_objects, uint64_t max_bytes) const override {
    ScrubBatch batch;
    RELAIS_RETURN_IF_ERROR(ScrubEnv(env_, from_id, max_objects == 0 ? 1 : max_objects, max_bytes, &batch));
    return batch;
  }

  Result<RepairReport> Repair(const std::function<void(const VerifyProgress&)>& progress) override {
    if (options_.read_only || writer_) {
      return Status::InvalidArgument("store at " + options_.path +
                                     " must be open in admin mode to repair (relais store verify --repair)");
    }
    std::lock_guard<std::mutex> lock(admin_mu_);
    RepairReport report;
    RepairTargets targets;
    Result<VerifyReport> before = VerifyEnv(env_, progress, &targets);
    if (!before.ok()) return before.status();
    report.before = std::move(*before);
    RELAIS_RETURN_IF_ERROR(RepairEnv(env_, targets, NowUnixMs(), &report));
    // A second round for what the first one uncovered: the rows of an
    // object whose record did not decode are orphans once it is gone.
    for (int round = 0;; ++round) {
      RepairTargets more;
      Result<VerifyReport> after = VerifyEnv(env_, progress, &more);
      if (!after.ok()) return after.status();
      report.after = std::move(*after);
      if (report.after.ok() || more.empty() || round == 1) break;
      RELAIS_RETURN_IF_ERROR(RepairEnv(env_, more, NowUnixMs(), &report));
    }
    return report;
  }

  Status ListQuarantine(const std::function<bool(const QuarantineEntry&)>& fn) const override {
    if (!env_.dbis().has_quarantine) return Status::OK();  // an older store, read-only: none yet
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    return ForEachRow(txn, env_.dbis().quarantine, {}, [&](const MDB_val& k, const MDB_val& v, bool* more) {
      if (k.mv_size != 8) return Status::Corruption("a quarantine key is not 8 bytes");
      QuarantineEntry e;
      RELAIS_RETURN_IF_ERROR(DecodeQuarantine(GetBe64(static_cast<const uint8_t*>(k.mv_data)), FromVal(v), &e));
      *more = fn(e);
      return Status::OK();
    });
  }

  Result<ObjectLife> GetLife(uint64_t id) const override {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    IdKey key(id);
    std::span<const uint8_t> v;
    Status s = txn.Get(env_.dbis().objects, key.val(), &v);
    if (s.IsNotFound()) return Status::NotFound("no object with id " + std::to_string(id));
    RELAIS_RETURN_IF_ERROR(s);
    ObjectLife life;
    if (!env_.dbis().has_lifecycle) return life;
    s = txn.Get(env_.dbis().life, key.val(), &v);
    if (s.IsNotFound()) return life;
    RELAIS_RETURN_IF_ERROR(s);
    LifeRow row;
    RELAIS_RETURN_IF_ERROR(DecodeLife(v, &row));
    life.object_class = row.object_class;
    life.since_unix_ms = row.since_unix_ms;
    const int64_t retention = RetentionMs(row.object_class);
    if (retention >= 0) life.expires_unix_ms = row.since_unix_ms + retention;
    return life;
  }

  Status ListClass(ObjectClass c, int64_t since_up_to,
                   const std::function<bool(uint64_t, int64_t)>& fn) const override {
    if (!env_.dbis().has_lifecycle) return Status::OK();
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    std::vector<uint8_t> from = EncodeExpiryKey(c, 0, 0);
    return ForEachRow(txn, env_.dbis().expiry, from, [&](const MDB_val& k, const MDB_val&, bool* more) {
      const auto* p = static_cast<const uint8_t*>(k.mv_data);
      const int64_t since = k.mv_size == 17 ? static_cast<int64_t>(GetBe64(p + 1)) : 0;
      if (k.mv_size != 17 || p[0] != static_cast<uint8_t>(c) || since > since_up_to) {
        *more = false;
        return Status::OK();
      }
      *more = fn(GetBe64(p + 9), since);
      return Status::OK();
    });
  }

  int64_t RetentionMs(ObjectClass c) const override { return GetRetentions().For(c); }

  Result<uint64_t> RemoveObjects(const std::vector<uint64_t>& ids,
                                 const std::function<void(uint64_t)>& progress) override {
    if (options_.read_only) return Status::InvalidArgument("store at " + options_.path + " is open read-only");
    std::lock_guard<std::mutex> lock(admin_mu_);
    constexpr size_t kBatch = 256;
    uint64_t removed = 0;
    const Dbis& d = env_.dbis();
    for (size_t i = 0; i < ids.size(); i += kBatch) {
      // A short transaction of its own: LMDB serializes it with the serving
      // writer's (in this process or another one).
      Txn txn;
      RELAIS_RETURN_IF_ERROR(txn.Begin(env_, /*write=*/true));
      Totals totals;
      RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &totals));
      DeliveryTxn dt(&txn, d, GetRetentions(), &totals);
      uint64_t n = 0;
      for (size_t j = i; j < std::min(ids.size(), i + kBatch); ++j) {
        IdKey key(ids[j]);
        std::span<const uint8_t> unused;
        Status s = txn.Get(d.objects, key.val(), &unused);
        if (s.IsNotFound()) continue;  // removed meanwhile
        RELAIS_RETURN_IF_ERROR(s);
        RELAIS_RETURN_IF_ERROR(dt.RemoveObject(ids[j]));
        ++n;
      }
      RELAIS_RETURN_IF_ERROR(WriteTotals(txn, d, totals));
      RELAIS_RETURN_IF_ERROR(txn.Commit());
      removed += n;
      if (progress) progress(removed);
    }
    return removed;
  }

  Status Backup(const std::string& dir, const std::function<void(uint64_t)>& progress) const override {
    return BackupEnv(env_, options_.path, dir, progress);
  }

  Stats GetStats() const override {
    Stats st;
    if (writer_) st.commits = writer_->commits();
    MDB_envinfo info;
    MDB_stat env_stat;
    if (mdb_env_info(env_.env(), &info) == MDB_SUCCESS && mdb_env_stat(env_.env(), &env_stat) == MDB_SUCCESS) {
      st.map_size = info.me_mapsize;
      st.map_used_bytes = (static_cast<uint64_t>(info.me_last_pgno) + 1) * env_stat.ms_psize;
    }
    Txn txn;
    if (!txn.Begin(env_, false).ok()) return st;
    MDB_stat db_stat;
    if (mdb_stat(txn.get(), env_.dbis().objects, &db_stat) == MDB_SUCCESS) st.objects = db_stat.ms_entries;
    std::span<const uint8_t> v;
    if (txn.Get(env_.dbis().meta, ToVal(std::string_view(kMetaRawBytes)), &v).ok() && v.size() == 8) {
      st.raw_bytes = GetLe64(v.data());
    }
    if (txn.Get(env_.dbis().meta, ToVal(std::string_view(kMetaStoredBytes)), &v).ok() && v.size() == 8) {
      st.stored_bytes = GetLe64(v.data());
    }
    if (mdb_stat(txn.get(), env_.dbis().queue, &db_stat) == MDB_SUCCESS) st.queue_rows = db_stat.ms_entries;
    if (env_.dbis().has_delivery && mdb_stat(txn.get(), env_.dbis().dead, &db_stat) == MDB_SUCCESS) {
      st.dead_rows = db_stat.ms_entries;
    }
    // Free pages: LMDB's free list is database 0, one record per freeing
    // transaction, each value a count followed by that many page numbers.
    uint64_t free_pages = 0;
    MDB_cursor* fc = nullptr;
    if (mdb_cursor_open(txn.get(), 0, &fc) == MDB_SUCCESS) {
      MDB_val k, v;
      for (int rc = mdb_cursor_get(fc, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
           rc = mdb_cursor_get(fc, &k, &v, MDB_NEXT)) {
        if (v.mv_size >= sizeof(size_t)) {
          size_t n = 0;
          std::memcpy(&n, v.mv_data, sizeof(n));
          free_pages += n;
        }
      }
      mdb_cursor_close(fc);
    }
    const uint64_t free_bytes = free_pages * env_stat.ms_psize;
    st.used_bytes = st.map_used_bytes > free_bytes ? st.map_used_bytes - free_bytes : 0;
    std::error_code ec;
    uint64_t fsize = std::filesystem::file_size(options_.path + "/data.mdb", ec);
    if (!ec) st.file_bytes = fsize;
    if (env_.dbis().has_lifecycle) {
      Totals totals;
      if (ReadTotals(txn, env_.dbis(), &totals).ok()) {
        for (size_t c = 0; c < kObjectClassCount; ++c) {
          st.class_objects[c] = totals.class_objects[c];
          st.class_stored_bytes[c] = totals.class_bytes[c];
        }
      }
    }
    if (writer_) {
      for (size_t c = 0; c < kObjectClassCount; ++c) st.expired[c] = writer_->expired(c);
      st.fsyncs = 2 * st.commits;
      st.compression_level = pool_ ? pool_->level() : 0;
      writer_->BatchStats(st.batch_count, std::size(st.batch_count), &st.batch_ops);
    }
    return st;
  }

  Result<std::vector<QueueSummary>> SummarizeQueues() const override {
    std::vector<QueueSummary> out;
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    std::vector<uint64_t> oldest_id;  // per entry of `out`
    auto entry = [&](const std::string& dest) -> size_t {
      if (out.empty() || out.back().destination != dest) {
        // Queue and dead keys are both sorted by destination first; merge.
        for (size_t i = 0; i < out.size(); ++i) {
          if (out[i].destination == dest) return i;
        }
        out.push_back(QueueSummary{dest, 0, 0, 0});
        oldest_id.push_back(0);
      }
      return out.size() - 1;
    };
    // Rows queued at their object's commit: the oldest is the smallest id
    // (ids increase with time); rows an admin queued later carry their time.
    std::vector<uint64_t> oldest_committed;
    RELAIS_RETURN_IF_ERROR(ForEachRow(txn, env_.dbis().queue, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      QueueRow row;
      RELAIS_RETURN_IF_ERROR(DecodeQueueKey(FromVal(k), &row));
      size_t i = entry(row.destination);
      oldest_committed.resize(out.size(), 0);
      ++out[i].rows;
      if (oldest_id[i] == 0 || row.object_id < oldest_id[i]) oldest_id[i] = row.object_id;
      if (DecodeQueueValue(FromVal(v), &row).ok() && row.queued_unix_ms > 0) {
        int64_t& q = out[i].oldest_queued_unix_ms;
        if (q == 0 || row.queued_unix_ms < q) q = row.queued_unix_ms;
      } else if (oldest_committed[i] == 0 || row.object_id < oldest_committed[i]) {
        oldest_committed[i] = row.object_id;
      }
      return Status::OK();
    }));
    if (env_.dbis().has_delivery) {
      RELAIS_RETURN_IF_ERROR(ForEachRow(txn, env_.dbis().dead, {}, [&](const MDB_val& k, const MDB_val&, bool*) {
        QueueRow row;
        RELAIS_RETURN_IF_ERROR(DecodeQueueKey(FromVal(k), &row));
        ++out[entry(row.destination)].dead_rows;
        return Status::OK();
      }));
    }
    for (size_t i = 0; i < out.size(); ++i) {
      if (oldest_id[i] == 0) continue;
      Result<ObjectMeta> m = GetMeta(txn, oldest_id[i]);
      if (m.ok()) out[i].oldest_received_unix_ms = m->received_unix_ms;
    }
    oldest_committed.resize(out.size(), 0);
    for (size_t i = 0; i < out.size(); ++i) {
      if (oldest_committed[i] == 0) continue;
      Result<ObjectMeta> m = GetMeta(txn, oldest_committed[i]);
      int64_t& q = out[i].oldest_queued_unix_ms;
      if (m.ok() && (q == 0 || m->received_unix_ms < q)) q = m->received_unix_ms;
    }
    std::sort(out.begin(), out.end(),
              [](const QueueSummary& a, const QueueSummary& b) { return a.destination < b.destination; });
    return out;
  }

 private:
  // The queue rows whose key starts with `prefix` (all of them when it is
  // empty), in key order.
  Status ListQueueFrom(std::string_view prefix, const std::function<bool(const QueueRow&)>& fn) const {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, false));
    std::span<const uint8_t> from(reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size());
    return ForEachRow(txn, env_.dbis().queue, from, [&](const MDB_val& k, const MDB_val& v, bool* more) {
      if (!prefix.empty() &&
          (k.mv_size != prefix.size() + 12 || std::memcmp(k.mv_data, prefix.data(), prefix.size()) != 0)) {
        *more = false;
        return Status::OK();
      }
      QueueRow row;
      RELAIS_RETURN_IF_ERROR(DecodeQueueKey(FromVal(k), &row));
      RELAIS_RETURN_IF_ERROR(DecodeQueueValue(FromVal(v), &row));
      *more = fn(row);
      return Status::OK();
    });
  }

  Result<ObjectMeta> GetMeta(const Txn& txn, uint64_t id) const {
    IdKey key(id);
    std::span<const uint8_t> record;
    Status s = txn.Get(env_.dbis().objects, key.val(), &record);
    if (s.IsNotFound()) return Status::NotFound("no object with id " + std::to_string(id));
    RELAIS_RETURN_IF_ERROR(s);
    ObjectMeta m;
    RELAIS_RETURN_IF_ERROR(DecodeMeta(record, &m));
    return m;
  }

  Status AdminUpdate(const std::vector<QueueUpdate>& updates, std::set<std::string>* woken) {
    std::lock_guard<std::mutex> lock(admin_mu_);
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env_, /*write=*/true));
    const Dbis& d = env_.dbis();
    Totals totals;
    RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &totals));
    DeliveryTxn dt(&txn, d, GetRetentions(), &totals);
    RELAIS_RETURN_IF_ERROR(dt.Apply(updates, Now(), woken));
    RELAIS_RETURN_IF_ERROR(WriteTotals(txn, d, totals));
    return txn.Commit();
  }

  int64_t Now() const { return options_.clock ? options_.clock() : NowUnixMs(); }

  const Options options_;
  mutable std::mutex retentions_mu_;
  Retentions retentions_;  // guarded by retentions_mu_: Options', then SetRetentions'
  std::mutex admin_mu_;    // one admin write transaction at a time
  std::function<void(const std::vector<std::string>&)> queue_cb_;  // admin mode
  LmdbEnv env_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<CompressionPool> pool_;
};

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const Options& options) {
  if (options.path.empty()) return Status::InvalidArgument("store path is empty");
  auto store = std::make_unique<StoreImpl>(options);
  RELAIS_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace relais::store
