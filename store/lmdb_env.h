// A thin wrapper over the LMDB C API. LMDB return codes become Status here,
// once; the rest of store/ never sees an int error code.
//
// Internal to store/ (and its tests); not part of the public API.
#ifndef RELAIS_STORE_LMDB_ENV_H_
#define RELAIS_STORE_LMDB_ENV_H_

#include <lmdb.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace relais::store {

// MDB_SUCCESS -> OK; MDB_NOTFOUND -> NotFound; MDB_MAP_FULL -> ResourceExhausted;
// MDB_CORRUPTED / MDB_PAGE_NOTFOUND / MDB_INVALID -> Corruption; the rest -> IOError.
// `what` names the operation ("mdb_put chunks").
Status LmdbStatus(int rc, std::string_view what);

// Views over LMDB values. The bytes are valid until the transaction ends
// (or, in a write transaction, until the next write).
inline MDB_val ToVal(std::span<const uint8_t> b) { return MDB_val{b.size(), const_cast<uint8_t*>(b.data())}; }
inline MDB_val ToVal(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::span<const uint8_t> FromVal(const MDB_val& v) {
  return {static_cast<const uint8_t*>(v.mv_data), v.mv_size};
}

// On-disk format version, stored in `meta` under kMetaFormatVersion as a
// u32 little-endian. Bump on any incompatible change (FORMAT.md). This build
// reads versions kOldestFormatVersion..kFormatVersion; a serving open
// upgrades an older store's marker (UpgradeFormatVersion) before it writes
// anything only the newer version has (shuffled chunks, version 2).
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestFormatVersion = 1;
// The "format version N; this build reads ..." refusal, shared with backups.
std::string FormatVersionRefusal(const std::string& what, uint32_t version);
inline constexpr char kMetaFormatVersion[] = "format_version";
inline constexpr char kMetaNextId[] = "next_id";
inline constexpr char kMetaRawBytes[] = "raw_bytes";
inline constexpr char kMetaStoredBytes[] = "stored_bytes";
// 1 once every object has its `life` row (FORMAT.md "Lifecycle").
inline constexpr char kMetaLifecycle[] = "lifecycle";
inline constexpr char kMetaResendWindowMs[] = "resend_window_ms";
// 1 once the `history` covers every object (FORMAT.md `history`, "Backfill");
// while a backfill runs, the ids [history_backfill_next, history_backfill_end)
// are the objects it has yet to count.
inline constexpr char kMetaHistory[] = "history";
inline constexpr char kMetaHistoryBackfillNext[] = "history_backfill_next";
inline constexpr char kMetaHistoryBackfillEnd[] = "history_backfill_end";

// The named databases of format version 1 (see FORMAT.md).
struct Dbis {
  MDB_dbi meta = 0;
  MDB_dbi objects = 0;
  MDB_dbi chunks = 0;
  MDB_dbi uid = 0;
  MDB_dbi pending = 0;
  MDB_dbi queue = 0;
  // Delivery databases (FORMAT.md), added to format version 1 later: a
  // read-write open creates them; a read-only open of an older store that
  // lacks them leaves has_delivery false (the lists are then empty).
  MDB_dbi dead = 0;
  MDB_dbi attempts = 0;
  MDB_dbi done = 0;
  bool has_delivery = false;
  // `quarantine` (FORMAT.md), added later still; optional the same way.
  MDB_dbi quarantine = 0;
  bool has_quarantine = false;
  // `life` and `expiry` (FORMAT.md "Lifecycle"), added later still;
  // optional the same way.
  MDB_dbi life = 0;
  MDB_dbi expiry = 0;
  bool has_lifecycle = false;
  // `delivered` (FORMAT.md), the resend memory; optional the same way.
  MDB_dbi delivered = 0;
  bool has_delivered = false;
  // `history` (FORMAT.md), the delivery history per study; optional the
  // same way.
  MDB_dbi history = 0;
  bool has_history = false;
};

// Owns an MDB_env. Opened with MDB_NOTLS so that read transactions may move
// between threads; never with MDB_NOSYNC / MDB_NOMETASYNC: every commit is
// fsync'd.
class Txn;

class LmdbEnv {
 public:
  LmdbEnv() = default;
  ~LmdbEnv();
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;

  // Opens the environment in directory `path` (created, with parents, when
  // !read_only). `map_size` is ignored when read_only, and 0 means "the size
  // recorded in the file" (admin processes, so as not to change the size a
  // running `relais serve` chose). Read-write opens create the named
  // databases when missing; a read-only open of a store never created is
  // NotFound.
  Status Open(const std::string& path, uint64_t map_size, bool read_only);

  MDB_env* env() const { return env_; }
  const Dbis& dbis() const { return dbis_; }
  bool read_only() const { return read_only_; }
  // The format version of the store as opened (or as upgraded).
  uint32_t format_version() const { return format_version_; }

  // Writes kFormatVersion as the store's version when it is older, in its
  // own durable transaction (FORMAT.md "Compatibility"). REQUIRES: read-write.
  Status UpgradeFormatVersion();

  // Begins a transaction; retries once after adopting a map size grown by
  // another process (MDB_MAP_RESIZED).
  Status Begin(bool write, MDB_txn** txn) const;

 private:
  // Reads the format version (writing it on a fresh read-write store);
  // InvalidArgument naming both versions when it differs.
  Status CheckFormatVersion(Txn& txn, const std::string& path);

  MDB_env* env_ = nullptr;
  Dbis dbis_;
  bool read_only_ = false;
  uint32_t format_version_ = 0;
};

// RAII transaction: aborted on destruction unless committed.
class Txn {
 public:
  Txn() = default;
  ~Txn() { Abort(); }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  Status Begin(const LmdbEnv& env, bool write) {
    Abort();
    return env.Begin(write, &txn_);
  }
  Status Commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;  // freed by LMDB whatever the outcome
    return LmdbStatus(rc, "mdb_txn_commit");
  }
  void Abort() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  MDB_txn* get() const { return txn_; }

  // Get: NotFound when absent. The returned bytes live until the txn ends.
  Status Get(MDB_dbi dbi, MDB_val key, std::span<const uint8_t>* value) const;
  Status Put(MDB_dbi dbi, MDB_val key, MDB_val value, unsigned flags = 0);
  // Delete: OK when the key was absent too.
  Status Del(MDB_dbi dbi, MDB_val key);

 private:
  MDB_txn* txn_ = nullptr;
};

// RAII cursor.
class Cursor {
 public:
  Cursor() = default;
  ~Cursor() {
    if (cursor_ != nullptr) mdb_cursor_close(cursor_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  Status Open(const Txn& txn, MDB_dbi dbi) {
    return LmdbStatus(mdb_cursor_open(txn.get(), dbi, &cursor_), "mdb_cursor_open");
  }
  // Positions with `op`; NotFound at the end.
  Status Get(MDB_val* key, MDB_val* value, MDB_cursor_op op) {
    return LmdbStatus(mdb_cursor_get(cursor_, key, value, op), "mdb_cursor_get");
  }
  Status DelCurrent() { return LmdbStatus(mdb_cursor_del(cursor_, 0), "mdb_cursor_del"); }

 private:
  MDB_cursor* cursor_ = nullptr;
};

// Visits the rows of `dbi` in key order: from the first one, or from the
// first key not below `from` when it is not empty. `visit(key, value, &more)`
// returns a Status and sets `more` to false to stop early. The end of the
// table is the end of the walk, not an error; the first error is returned.
template <typename Visit>
Status ForEachRow(const Txn& txn, MDB_dbi dbi, std::span<const uint8_t> from, Visit&& visit) {
  Cursor c;
  RELAIS_RETURN_IF_ERROR(c.Open(txn, dbi));
  MDB_val k{from.size(), const_cast<uint8_t*>(from.data())}, v;
  for (Status s = c.Get(&k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE); !s.IsNotFound();
       s = c.Get(&k, &v, MDB_NEXT)) {
    RELAIS_RETURN_IF_ERROR(s);
    bool more = true;
    RELAIS_RETURN_IF_ERROR(visit(k, v, &more));
    if (!more) break;
  }
  return Status::OK();
}

// Deletes the rows of `dbi` whose 12-byte key is the big-endian object id
// `id` followed by a 4-byte index (an object's chunks, its attempts).
Status DeleteObjectRows(const Txn& txn, MDB_dbi dbi, uint64_t id);

// Big-endian keys sort numerically under LMDB's default memcmp order.
inline void PutBe64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline uint64_t GetBe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
inline uint32_t GetBe32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
  return v;
}
inline void PutLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline uint32_t GetLe32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline uint64_t GetLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A u64 LE value of the `meta` database (FORMAT.md); a missing key reads 0.
Status GetMetaU64(const Txn& txn, MDB_dbi meta, const char* key, uint64_t* v);
Status PutMetaU64(Txn& txn, MDB_dbi meta, const char* key, uint64_t v);

// Keys of format version 1 (FORMAT.md).
struct IdKey {
  explicit IdKey(uint64_t id) { PutBe64(bytes, id); }
  MDB_val val() { return MDB_val{sizeof(bytes), bytes}; }
  uint8_t bytes[8];
};
struct ChunkKey {
  ChunkKey(uint64_t id, uint32_t index) {
    PutBe64(bytes, id);
    PutBe32(bytes + 8, index);
  }
  MDB_val val() { return MDB_val{sizeof(bytes), bytes}; }
  uint8_t bytes[12];
};

}  // namespace relais::store

#endif  // RELAIS_STORE_LMDB_ENV_H_
