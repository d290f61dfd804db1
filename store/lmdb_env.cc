#include "store/lmdb_env.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

namespace relais::store {

Status LmdbStatus(int rc, std::string_view what) {
  if (rc == MDB_SUCCESS) return Status::OK();
  std::string msg = std::string(what) + ": " + mdb_strerror(rc);
  switch (rc) {
    case MDB_NOTFOUND: return Status::NotFound(std::move(msg));
    case MDB_MAP_FULL: return Status::ResourceExhausted(std::move(msg));
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return Status::Corruption(std::move(msg));
    case ENOENT: return Status::NotFound(std::move(msg));
    case ENOSPC:  // the disk under the store is full
    case EDQUOT:
    case EFBIG: return Status::ResourceExhausted(std::move(msg));
    default: return Status::IOError(std::move(msg));
  }
}

LmdbEnv::~LmdbEnv() {
  if (env_ != nullptr) mdb_env_close(env_);
}

Status LmdbEnv::Open(const std::string& path, uint64_t map_size, bool read_only) {
  read_only_ = read_only;
  if (!read_only) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return Status::IOError("cannot create store directory " + path + ": " + ec.message());
  } else if (!std::filesystem::exists(path + "/data.mdb")) {
    return Status::NotFound("no store at " + path);
  }
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_create(&env_), "mdb_env_create"));
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_set_maxdbs(env_, 32), "mdb_env_set_maxdbs"));
  if (!read_only && map_size != 0) {
    RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_set_mapsize(env_, static_cast<size_t>(map_size)), "mdb_env_set_mapsize"));
  }
  // Readers of the CLI and admin API may hold a few transactions each.
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_set_maxreaders(env_, 254), "mdb_env_set_maxreaders"));
  unsigned flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0u);
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_open(env_, path.c_str(), flags, 0644), "mdb_env_open " + path));

  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(*this, !read_only));
  unsigned dflags = read_only ? 0u : static_cast<unsigned>(MDB_CREATE);
  struct {
    const char* name;
    MDB_dbi* dbi;
  } const dbs[] = {{"meta", &dbis_.meta}, {"objects", &dbis_.objects}, {"chunks", &dbis_.chunks},
                   {"uid", &dbis_.uid},   {"pending", &dbis_.pending}, {"queue", &dbis_.queue}};
  for (const auto& d : dbs) {
    Status s = LmdbStatus(mdb_dbi_open(txn.get(), d.name, dflags, d.dbi), std::string("mdb_dbi_open ") + d.name);
    if (s.IsNotFound()) return Status::NotFound("store at " + path + " has no '" + d.name + "' database");
    RELAIS_RETURN_IF_ERROR(s);
    // The version is checked before anything else is interpreted, so that a
    // newer layout gets a clear message rather than a missing-database one.
    if (d.dbi == &dbis_.meta) RELAIS_RETURN_IF_ERROR(CheckFormatVersion(txn, path));
  }
  // The delivery databases came later within format version 1: created on a
  // read-write open, optional on a read-only one.
  dbis_.has_delivery = true;
  struct {
    const char* name;
    MDB_dbi* dbi;
  } const delivery_dbs[] = {{"dead", &dbis_.dead}, {"attempts", &dbis_.attempts}, {"done", &dbis_.done}};
  for (const auto& d : delivery_dbs) {
    Status s = LmdbStatus(mdb_dbi_open(txn.get(), d.name, dflags, d.dbi), std::string("mdb_dbi_open ") + d.name);
    if (s.IsNotFound() && read_only) {
      dbis_.has_delivery = false;
      continue;
    }
    RELAIS_RETURN_IF_ERROR(s);
  }
  Status q = LmdbStatus(mdb_dbi_open(txn.get(), "quarantine", dflags, &dbis_.quarantine), "mdb_dbi_open quarantine");
  dbis_.has_quarantine = q.ok();
  if (!q.ok() && !(q.IsNotFound() && read_only)) return q;
  dbis_.has_lifecycle = true;
  for (auto [name, dbi] : {std::pair{"life", &dbis_.life}, std::pair{"expiry", &dbis_.expiry}}) {
    Status s = LmdbStatus(mdb_dbi_open(txn.get(), name, dflags, dbi), std::string("mdb_dbi_open ") + name);
    if (s.IsNotFound() && read_only) {
      dbis_.has_lifecycle = false;
      continue;
    }
    RELAIS_RETURN_IF_ERROR(s);
  }
  Status dl = LmdbStatus(mdb_dbi_open(txn.get(), "delivered", dflags, &dbis_.delivered), "mdb_dbi_open delivered");
  dbis_.has_delivered = dl.ok();
  if (!dl.ok() && !(dl.IsNotFound() && read_only)) return dl;
  Status hi = LmdbStatus(mdb_dbi_open(txn.get(), "history", dflags, &dbis_.history), "mdb_dbi_open history");
  dbis_.has_history = hi.ok();
  if (!hi.ok() && !(hi.IsNotFound() && read_only)) return hi;
  return txn.Commit();
}

std::string FormatVersionRefusal(const std::string& what, uint32_t version) {
  std::string range = kOldestFormatVersion == kFormatVersion
                          ? std::to_string(kFormatVersion) + " only"
                          : std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion);
  return what + " has format version " + std::to_string(version) + "; this build of Relais reads format version " +
         range +
         (version > kFormatVersion ? " (written by a newer Relais): install that version again, or move this "
                                     "store away and restore a backup taken with this version"
                                   : ": no migration from that version exists in this build; run the Relais "
                                     "that wrote it until its queues are empty, then move the store away");
}

Status LmdbEnv::CheckFormatVersion(Txn& txn, const std::string& path) {
  std::span<const uint8_t> v;
  Status s = txn.Get(dbis_.meta, ToVal(std::string_view(kMetaFormatVersion)), &v);
  if (s.IsNotFound()) {
    if (read_only_) return Status::Corruption("store at " + path + " has no format version");
    uint8_t buf[4];
    PutLe32(buf, kFormatVersion);
    format_version_ = kFormatVersion;
    return txn.Put(dbis_.meta, ToVal(std::string_view(kMetaFormatVersion)), ToVal(std::span<const uint8_t>(buf)));
  }
  RELAIS_RETURN_IF_ERROR(s);
  if (v.size() != 4) return Status::Corruption("store at " + path + ": format version record is not 4 bytes");
  uint32_t version = GetLe32(v.data());
  if (version < kOldestFormatVersion || version > kFormatVersion) {
    return Status::InvalidArgument(FormatVersionRefusal("store at " + path, version));
  }
  format_version_ = version;
  return Status::OK();
}

Status LmdbEnv::UpgradeFormatVersion() {
  if (format_version_ >= kFormatVersion) return Status::OK();
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(*this, true));
  uint8_t buf[4];
  PutLe32(buf, kFormatVersion);
  RELAIS_RETURN_IF_ERROR(
      txn.Put(dbis_.meta, ToVal(std::string_view(kMetaFormatVersion)), ToVal(std::span<const uint8_t>(buf))));
  RELAIS_RETURN_IF_ERROR(txn.Commit());
  format_version_ = kFormatVersion;
  return Status::OK();
}

Status LmdbEnv::Begin(bool write, MDB_txn** txn) const {
  unsigned flags = write ? 0u : static_cast<unsigned>(MDB_RDONLY);
  int rc = mdb_txn_begin(env_, nullptr, flags, txn);
  if (rc == MDB_MAP_RESIZED) {
    // Another process grew the map: adopt its size (no transactions of ours
    // are active in the read-only processes that see this) and retry.
    rc = mdb_env_set_mapsize(env_, 0);
    if (rc == MDB_SUCCESS) rc = mdb_txn_begin(env_, nullptr, flags, txn);
  }
  if (rc != MDB_SUCCESS) *txn = nullptr;
  return LmdbStatus(rc, write ? "mdb_txn_begin (write)" : "mdb_txn_begin (read)");
}

Status Txn::Get(MDB_dbi dbi, MDB_val key, std::span<const uint8_t>* value) const {
  MDB_val v{0, nullptr};
  int rc = mdb_get(txn_, dbi, &key, &v);
  if (rc == MDB_NOTFOUND) return Status::NotFound("key not found");
  RELAIS_RETURN_IF_ERROR(LmdbStatus(rc, "mdb_get"));
  *value = FromVal(v);
  return Status::OK();
}

Status Txn::Put(MDB_dbi dbi, MDB_val key, MDB_val value, unsigned flags) {
  return LmdbStatus(mdb_put(txn_, dbi, &key, &value, flags), "mdb_put");
}

Status Txn::Del(MDB_dbi dbi, MDB_val key) {
  int rc = mdb_del(txn_, dbi, &key, nullptr);
  if (rc == MDB_NOTFOUND) return Status::OK();
  return LmdbStatus(rc, "mdb_del");
}

Status GetMetaU64(const Txn& txn, MDB_dbi meta, const char* key, uint64_t* v) {
  std::span<const uint8_t> b;
  Status s = txn.Get(meta, ToVal(std::string_view(key)), &b);
  if (s.IsNotFound()) {
    *v = 0;
    return Status::OK();
  }
  RELAIS_RETURN_IF_ERROR(s);
  if (b.size() != 8) return Status::Corruption(std::string("meta '") + key + "' is not 8 bytes");
  *v = GetLe64(b.data());
  return Status::OK();
}

Status DeleteObjectRows(const Txn& txn, MDB_dbi dbi, uint64_t id) {
  Cursor c;
  RELAIS_RETURN_IF_ERROR(c.Open(txn, dbi));
  ChunkKey first(id, 0);
  MDB_val k = first.val(), v;
  for (Status s = c.Get(&k, &v, MDB_SET_RANGE); !s.IsNotFound(); s = c.Get(&k, &v, MDB_NEXT)) {
    RELAIS_RETURN_IF_ERROR(s);
    if (k.mv_size != 12 || GetBe64(static_cast<const uint8_t*>(k.mv_data)) != id) break;
    // After a delete the cursor sits on the next item; MDB_NEXT returns it.
    RELAIS_RETURN_IF_ERROR(c.DelCurrent());
  }
  return Status::OK();
}

Status PutMetaU64(Txn& txn, MDB_dbi meta, const char* key, uint64_t v) {
  uint8_t b[8];
  PutLe64(b, v);
  return txn.Put(meta, ToVal(std::string_view(key)), ToVal(std::span<const uint8_t>(b)));
}

}  // namespace relais::store
