// The object writer and reader of a Store (object_io.h): an object's bytes
// cut into chunks, compressed in the pool and committed by the writer
// thread; read back chunk by chunk and checked against the XXH3 checksum of
// its meta record (FORMAT.md `chunks`, "Write protocol").
#include "store/object_io.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "base/clock.h"
#include "store/chunk_codec.h"
#include "store/meta_codec.h"

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

}  // namespace

std::unique_ptr<ObjectWriter> NewObjectWriter(Writer* writer, CompressionPool* pool, size_t chunk_size,
                                              bool allow_shuffle) {
  return std::make_unique<ObjectWriterImpl>(writer, pool, chunk_size, allow_shuffle);
}

std::unique_ptr<ObjectWriter> NewRefusingObjectWriter(Status why) {
  return std::make_unique<RefusingObjectWriter>(std::move(why));
}

std::unique_ptr<ObjectReader> NewObjectReader(const LmdbEnv* env, ObjectMeta meta) {
  return std::unique_ptr<ObjectReader>(new ObjectReaderImpl(env, std::move(meta)));
}

}  // namespace relais::store
