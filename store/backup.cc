#include "store/backup.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "store/meta_codec.h"

namespace relais::store {
namespace {

namespace fs = std::filesystem;

Status Errno(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::ResourceExhausted(std::move(msg));
  return Status::IOError(std::move(msg));
}

// fsync of a file or directory by path.
Status FsyncPath(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Errno("open " + path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Errno("fsync " + path, err);
  return Status::OK();
}

// Renames `from` to `to` unless `to` exists (then AlreadyExists).
Status RenameNoReplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return Status::OK();
  int err = errno;
  if (err == EINVAL || err == ENOSYS) {
    // File system without RENAME_NOREPLACE: link() refuses an existing name too.
    if (::link(from.c_str(), to.c_str()) != 0) {
      err = errno;
      if (err == EEXIST) return Status::AlreadyExists(to + " appeared meanwhile; not replaced");
      return Errno("link " + from + " " + to, err);
    }
    ::unlink(from.c_str());
    return Status::OK();
  }
  if (err == EEXIST) return Status::AlreadyExists(to + " appeared meanwhile; not replaced");
  return Errno("rename " + from + " " + to, err);
}

Status WriteAll(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("write " + path, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

// The owner of `path`, or of its parent directory when `path` does not
// exist (yet). False when neither can be stat'ed.
bool OwnerOf(const std::string& path, uid_t* uid, gid_t* gid) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const std::string parent = fs::path(path).lexically_normal().parent_path().string();
    if (parent.empty() || ::stat(parent.c_str(), &st) != 0) return false;
  }
  *uid = st.st_uid;
  *gid = st.st_gid;
  return true;
}

// Files holding patient data are written 0600 and, when we run as root
// (`sudo relais backup|restore`), given to the owner of `like` (the store
// directory, or its parent when new), so that the `relais` user can open
// them. Not root: they belong to us already. Best effort.
void OwnLike(int fd, const std::string& like) {
  uid_t uid;
  gid_t gid;
  if (::geteuid() != 0 || !OwnerOf(like, &uid, &gid)) return;
  if (::fchown(fd, uid, gid) != 0) RLOG_WARN("store: cannot give %s its owner: %s", like.c_str(), std::strerror(errno));
}

// Writes `text` to `path` durably: path.partial (0600, owned like
// `owner_like`), fsync, rename, fsync dir.
Status WriteFileDurably(const std::string& dir, const std::string& name, const std::string& text,
                        const std::string& owner_like) {
  const std::string path = dir + "/" + name;
  const std::string partial = path + ".partial";
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("open " + partial, errno);
  OwnLike(fd, owner_like);
  Status s = WriteAll(fd, reinterpret_cast<const uint8_t*>(text.data()), text.size(), partial);
  if (s.ok() && ::fsync(fd) != 0) s = Errno("fsync " + partial, errno);
  ::close(fd);
  if (s.ok()) s = RenameNoReplace(partial, path);
  if (!s.ok()) {
    ::unlink(partial.c_str());
    return s;
  }
  return FsyncPath(dir, true);
}

// Calls progress(size of fd) about once a second on its own thread until
// destroyed.
class SizePoller {
 public:
  SizePoller(int fd, const std::function<void(uint64_t)>& progress) : fd_(fd), progress_(progress) {
    if (progress_) thread_ = std::thread([this] { Run(); });
  }
  ~SizePoller() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
      struct stat st;
      if (::fstat(fd_, &st) == 0) progress_(static_cast<uint64_t>(st.st_size));
    }
  }

  const int fd_;
  const std::function<void(uint64_t)>& progress_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// What a copied data.mdb holds.
struct CopyContents {
  uint32_t format_version = 0;
  uint64_t objects = 0;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
};

// Opens the single file `file` (an LMDB data.mdb, not a directory) read-only
// without a lock file and checks that it is a whole store: the pages its
// meta page names are all in the file (a truncated copy would otherwise
// fault when mapped), the format version, and every object record decodes.
Status InspectCopy(const std::string& file, CopyContents* out) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) return Errno("stat " + file, errno);
  MDB_env* env = nullptr;
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_create(&env), "mdb_env_create"));
  struct EnvCloser {
    MDB_env* env;
    ~EnvCloser() { mdb_env_close(env); }
  } closer{env};
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_set_maxdbs(env, 32), "mdb_env_set_maxdbs"));
  // The header is read with pread (no mapping touched yet): a file shorter
  // than its two meta pages fails here cleanly.
  Status s = LmdbStatus(mdb_env_open(env, file.c_str(), MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0644), "mdb_env_open");
  if (!s.ok()) return Status::Corruption(file + " is not a readable store (" + s.message() + ")");
  MDB_envinfo info;
  MDB_stat est;
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_info(env, &info), "mdb_env_info"));
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_env_stat(env, &est), "mdb_env_stat"));
  const uint64_t needed = (static_cast<uint64_t>(info.me_last_pgno) + 1) * est.ms_psize;
  if (needed > static_cast<uint64_t>(st.st_size)) {
    return Status::Corruption(file + " is truncated: it is " + std::to_string(st.st_size) + " bytes, its pages need " +
                              std::to_string(needed));
  }
  MDB_txn* raw_txn = nullptr;
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_txn_begin(env, nullptr, MDB_RDONLY, &raw_txn), "mdb_txn_begin"));
  struct TxnAborter {
    MDB_txn* txn;
    ~TxnAborter() { mdb_txn_abort(txn); }
  } aborter{raw_txn};
  auto open_db = [&](const char* name, MDB_dbi* dbi) -> Status {
    Status o = LmdbStatus(mdb_dbi_open(raw_txn, name, 0, dbi), std::string("mdb_dbi_open ") + name);
    if (!o.ok()) return Status::Corruption(file + " has no readable '" + name + "' database (" + o.message() + ")");
    return Status::OK();
  };
  MDB_dbi meta = 0, objects = 0, other = 0;
  RELAIS_RETURN_IF_ERROR(open_db("meta", &meta));
  MDB_val key = ToVal(std::string_view(kMetaFormatVersion));
  MDB_val val;
  int rc = mdb_get(raw_txn, meta, &key, &val);
  if (rc != MDB_SUCCESS || val.mv_size != 4) return Status::Corruption(file + " has no format version");
  out->format_version = GetLe32(static_cast<const uint8_t*>(val.mv_data));
  if (out->format_version < kOldestFormatVersion || out->format_version > kFormatVersion) {
    return Status::InvalidArgument(FormatVersionRefusal(file, out->format_version));
  }
  RELAIS_RETURN_IF_ERROR(open_db("objects", &objects));
  RELAIS_RETURN_IF_ERROR(open_db("chunks", &other));
  RELAIS_RETURN_IF_ERROR(open_db("uid", &other));
  RELAIS_RETURN_IF_ERROR(open_db("queue", &other));
  auto meta_u64 = [&](const char* name) -> uint64_t {
    MDB_val k = ToVal(std::string_view(name));
    MDB_val v;
    if (mdb_get(raw_txn, meta, &k, &v) != MDB_SUCCESS || v.mv_size != 8) return 0;
    return GetLe64(static_cast<const uint8_t*>(v.mv_data));
  };
  out->raw_bytes = meta_u64(kMetaRawBytes);
  out->stored_bytes = meta_u64(kMetaStoredBytes);
  MDB_cursor* cursor = nullptr;
  RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_cursor_open(raw_txn, objects, &cursor), "mdb_cursor_open"));
  uint64_t count = 0;
  MDB_val k, v;
  for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    ObjectMeta m;
    Status d = DecodeMeta(FromVal(v), &m);
    if (!d.ok()) {
      mdb_cursor_close(cursor);
      return Status::Corruption(file + ": object record " + std::to_string(count) + " does not decode (" + d.message() +
                                ")");
    }
    ++count;
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) {
    Status e = LmdbStatus(rc, "mdb_cursor_get objects");
    return Status::Corruption(file + " cannot be read through (" + e.message() + ")");
  }
  out->objects = count;
  return Status::OK();
}

// XXH3-64 and size of a file.
Status HashFile(const std::string& path, uint64_t* hash, uint64_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + path, errno);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> buf(1 << 20);
  uint64_t total = 0;
  Status s;
  for (;;) {
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      s = Errno("read " + path, errno);
      break;
    }
    if (r == 0) break;
    XXH3_64bits_update(state, buf.data(), static_cast<size_t>(r));
    total += static_cast<uint64_t>(r);
  }
  ::close(fd);
  *hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  *size = total;
  return s;
}

// Refuses a directory that holds a store or a backup already.
Status CheckBackupDirFree(const std::string& dir) {
  for (const char* name : {kBackupManifest, "data.mdb", "lock.mdb"}) {
    if (fs::exists(dir + "/" + name)) {
      return Status::AlreadyExists(dir + " already holds a " +
                                   (std::string(name) == kBackupManifest ? "backup" : "store or backup") + " (" + name +
                                   "); choose a new or empty directory");
    }
  }
  return Status::OK();
}

// A minimal reader for the manifest: one flat JSON object whose values are
// strings or non-negative integers (what EncodeBackupManifest writes).
class ManifestParser {
 public:
  explicit ManifestParser(const std::string& text) : t_(text) {}

  Status Parse(std::map<std::string, std::string>* fields) {
    Skip();
    if (!Eat('{')) return Err("expected '{'");
    Skip();
    if (Eat('}')) return End();
    for (;;) {
      std::string key, value;
      Skip();
      if (!String(&key)) return Err("expected a field name");
      Skip();
      if (!Eat(':')) return Err("expected ':'");
      Skip();
      if (Peek() == '"') {
        if (!String(&value)) return Err("bad string");
      } else {
        size_t start = i_;
        while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') ++i_;
        if (i_ == start || i_ - start > 64) return Err("expected a number");
        value = t_.substr(start, i_ - start);
      }
      (*fields)[key] = value;
      Skip();
      if (Eat(',')) continue;
      if (Eat('}')) return End();
      return Err("expected ',' or '}'");
    }
  }

 private:
  char Peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  bool Eat(char c) {
    if (Peek() != c || i_ >= t_.size()) return false;
    ++i_;
    return true;
  }
  void Skip() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\r' || t_[i_] == '\t')) ++i_;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (i_ < t_.size()) {
      char c = t_[i_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= t_.size()) return false;
      char e = t_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/': out->push_back(e); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (t_.size() - i_ < 4) return false;
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            char h = t_[i_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
            else return false;
          }
          out->push_back(v < 0x80 ? static_cast<char>(v) : '?');  // only control characters are escaped
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  Status End() {
    Skip();
    if (i_ != t_.size()) return Err("text after the closing '}'");
    return Status::OK();
  }
  Status Err(const std::string& what) const {
    return Status::Corruption("manifest does not parse at byte " + std::to_string(i_) + ": " + what);
  }

  const std::string& t_;
  size_t i_ = 0;
};

}  // namespace

std::string EncodeBackupManifest(const BackupInfo& info) {
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016" PRIx64, info.file_xxh3);
  std::ostringstream o;
  o << "{\n"
    << "  \"relais_backup\": " << info.manifest_version << ",\n"
    << "  \"format_version\": " << info.format_version << ",\n"
    << "  \"objects\": " << info.objects << ",\n"
    << "  \"raw_bytes\": " << info.raw_bytes << ",\n"
    << "  \"stored_bytes\": " << info.stored_bytes << ",\n"
    << "  \"file\": \"data.mdb\",\n"
    << "  \"file_bytes\": " << info.file_bytes << ",\n"
    << "  \"file_xxh3\": \"" << hash << "\",\n"
    << "  \"created_unix_ms\": " << info.created_unix_ms << ",\n"
    << "  \"created\": \"" << IsoTime(info.created_unix_ms) << "\",\n"
    << "  \"source\": \"" << JsonEscape(info.source_path) << "\"\n"
    << "}\n";
  return o.str();
}

Status DecodeBackupManifest(const std::string& text, BackupInfo* info) {
  std::map<std::string, std::string> f;
  RELAIS_RETURN_IF_ERROR(ManifestParser(text).Parse(&f));
  auto number = [&](const char* name, uint64_t max, uint64_t* v) -> Status {
    auto it = f.find(name);
    if (it == f.end()) return Status::Corruption(std::string("manifest has no \"") + name + "\"");
    const std::string& s = it->second;
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
      return Status::Corruption(std::string("manifest field \"") + name + "\" is not a number");
    }
    errno = 0;
    unsigned long long x = s.size() > 20 ? 0 : std::strtoull(s.c_str(), nullptr, 10);
    if (s.size() > 20 || errno == ERANGE || x > max) {
      return Status::Corruption(std::string("manifest field \"") + name + "\" is out of range");
    }
    *v = x;
    return Status::OK();
  };
  uint64_t v = 0;
  RELAIS_RETURN_IF_ERROR(number("relais_backup", UINT32_MAX, &v));
  info->manifest_version = static_cast<uint32_t>(v);
  if (info->manifest_version != kBackupManifestVersion) {
    return Status::InvalidArgument("backup manifest version " + std::to_string(v) +
                                   "; this build of Relais reads manifest version " +
                                   std::to_string(kBackupManifestVersion) + " only");
  }
  RELAIS_RETURN_IF_ERROR(number("format_version", UINT32_MAX, &v));
  info->format_version = static_cast<uint32_t>(v);
  RELAIS_RETURN_IF_ERROR(number("objects", UINT64_MAX, &info->objects));
  RELAIS_RETURN_IF_ERROR(number("raw_bytes", UINT64_MAX, &info->raw_bytes));
  RELAIS_RETURN_IF_ERROR(number("stored_bytes", UINT64_MAX, &info->stored_bytes));
  RELAIS_RETURN_IF_ERROR(number("file_bytes", UINT64_MAX, &info->file_bytes));
  RELAIS_RETURN_IF_ERROR(number("created_unix_ms", INT64_MAX, &v));
  info->created_unix_ms = static_cast<int64_t>(v);
  auto hash = f.find("file_xxh3");
  if (hash == f.end() || hash->second.size() != 16 ||
      hash->second.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Status::Corruption("manifest field \"file_xxh3\" is missing or not 16 hex digits");
  }
  info->file_xxh3 = std::strtoull(hash->second.c_str(), nullptr, 16);
  auto file = f.find("file");
  if (file == f.end() || file->second != "data.mdb") return Status::Corruption("manifest \"file\" is not data.mdb");
  auto source = f.find("source");
  info->source_path = source == f.end() ? "" : source->second;
  return Status::OK();
}

Status BackupEnv(const LmdbEnv& env, const std::string& source_path, const std::string& dir,
                 const std::function<void(uint64_t)>& progress) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create backup directory " + dir + ": " + ec.message());
  RELAIS_RETURN_IF_ERROR(CheckBackupDirFree(dir));
  const std::string final_path = dir + "/data.mdb";
  const std::string partial = final_path + ".partial";
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);  // patient data
  if (fd < 0) return Errno("open " + partial, errno);
  OwnLike(fd, source_path);
  auto fail = [&](Status s) {
    if (fd >= 0) ::close(fd);
    ::unlink(partial.c_str());
    return s;
  };
  const int64_t started = NowUnixMs();
  int rc;
  {
    SizePoller poller(fd, progress);
    // One read transaction: the copy is the store as of its start. Compacted.
    rc = mdb_env_copyfd2(env.env(), fd, MDB_CP_COMPACT);
    if (rc == MDB_MAP_RESIZED) {
      // Another process grew the map: adopt its size (LmdbEnv::Begin does)
      // and copy again from the start.
      Txn t;
      Status b = t.Begin(env, false);
      t.Abort();
      if (!b.ok()) return fail(b);
      if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) return fail(Errno("truncate " + partial, errno));
      rc = mdb_env_copyfd2(env.env(), fd, MDB_CP_COMPACT);
    }
  }
  if (rc != MDB_SUCCESS) return fail(LmdbStatus(rc, "mdb_env_copyfd2 " + partial));
  if (::fsync(fd) != 0) return fail(Errno("fsync " + partial, errno));
  ::close(fd);
  fd = -1;

  CopyContents contents;
  Status s = InspectCopy(partial, &contents);
  if (!s.ok()) return fail(Status::Internal("the copy does not read back: " + s.message()));
  BackupInfo info;
  info.manifest_version = kBackupManifestVersion;
  info.format_version = contents.format_version;
  info.objects = contents.objects;
  info.raw_bytes = contents.raw_bytes;
  info.stored_bytes = contents.stored_bytes;
  info.created_unix_ms = started;
  info.source_path = fs::absolute(source_path, ec).string();
  if (ec) info.source_path = source_path;
  s = HashFile(partial, &info.file_xxh3, &info.file_bytes);
  if (!s.ok()) return fail(s);
  s = RenameNoReplace(partial, final_path);
  if (!s.ok()) return fail(s);
  RELAIS_RETURN_IF_ERROR(FsyncPath(dir, true));
  RELAIS_RETURN_IF_ERROR(WriteFileDurably(dir, kBackupManifest, EncodeBackupManifest(info), source_path));
  if (progress) progress(info.file_bytes);
  return Status::OK();
}

Result<BackupInfo> Store::ReadBackupManifest(const std::string& dir) {
  const std::string path = dir + "/" + kBackupManifest;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("no backup at " + dir + " (" + kBackupManifest + " is missing)");
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > (64 << 10)) return Status::Corruption(path + " is too large to be a backup manifest");
  }
  BackupInfo info;
  Status s = DecodeBackupManifest(text, &info);
  if (s.code() == Status::Code::kInvalidArgument) return s;
  if (!s.ok()) return Status::Corruption(path + ": " + s.message());
  return info;
}

Status Store::RestoreBackup(const std::string& backup_dir, const std::string& store_path,
                            const std::function<void(uint64_t)>& progress) {
  if (store_path.empty()) return Status::InvalidArgument("store path is empty");
  Result<BackupInfo> info = ReadBackupManifest(backup_dir);
  if (!info.ok()) return info.status();
  if (info->format_version < kOldestFormatVersion || info->format_version > kFormatVersion) {
    return Status::InvalidArgument(FormatVersionRefusal("backup at " + backup_dir, info->format_version));
  }
  const std::string src = backup_dir + "/data.mdb";
  struct stat st;
  if (::stat(src.c_str(), &st) != 0) {
    return Status::Corruption("backup at " + backup_dir + " has a manifest but no readable data.mdb (" +
                              std::strerror(errno) + ")");
  }
  if (static_cast<uint64_t>(st.st_size) != info->file_bytes) {
    return Status::Corruption("backup at " + backup_dir + " is damaged: data.mdb is " + std::to_string(st.st_size) +
                              " bytes, the manifest says " + std::to_string(info->file_bytes) +
                              " (truncated or altered); nothing restored");
  }
  const std::string target = store_path + "/data.mdb";
  if (fs::exists(target)) {
    return Status::AlreadyExists("a store already exists at " + store_path +
                                 " (data.mdb); restore never overwrites one: stop relais serve and move that "
                                 "directory away first");
  }
  // Run as root, the restored store is given to the owner of the store
  // directory, or of its parent when it is new (the `relais` user's
  // /var/lib/relais), not left to root.
  uid_t owner_uid = 0;
  gid_t owner_gid = 0;
  const bool chown_store = ::geteuid() == 0 && OwnerOf(store_path, &owner_uid, &owner_gid);
  std::error_code ec;
  const bool store_dir_new = !fs::exists(store_path);
  fs::create_directories(store_path, ec);
  if (ec) return Status::IOError("cannot create store directory " + store_path + ": " + ec.message());
  if (chown_store && store_dir_new && ::chown(store_path.c_str(), owner_uid, owner_gid) != 0) {
    RLOG_WARN("store: cannot give %s its owner: %s", store_path.c_str(), std::strerror(errno));
  }

  // Copy to data.mdb.partial, hashing what is read.
  const std::string partial = target + ".partial";
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Errno("open " + src, errno);
  int out = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return Errno("open " + partial, err);
  }
  if (chown_store && ::fchown(out, owner_uid, owner_gid) != 0) {
    RLOG_WARN("store: cannot give %s its owner: %s", partial.c_str(), std::strerror(errno));
  }
  auto fail = [&](Status s) {
    if (in >= 0) ::close(in);
    if (out >= 0) ::close(out);
    ::unlink(partial.c_str());
    return s;
  };
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> buf(1 << 20);
  uint64_t copied = 0;
  auto last_report = std::chrono::steady_clock::now();
  Status s;
  for (;;) {
    ssize_t r = ::read(in, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      s = Errno("read " + src, errno);
      break;
    }
    if (r == 0) break;
    XXH3_64bits_update(state, buf.data(), static_cast<size_t>(r));
    s = WriteAll(out, buf.data(), static_cast<size_t>(r), partial);
    if (!s.ok()) break;
    copied += static_cast<uint64_t>(r);
    auto now = std::chrono::steady_clock::now();
    if (progress && now - last_report >= std::chrono::seconds(1)) {
      progress(copied);
      last_report = now;
    }
  }
  const uint64_t hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  if (!s.ok()) return fail(s);
  if (copied != info->file_bytes || hash != info->file_xxh3) {
    return fail(Status::Corruption("backup at " + backup_dir +
                                   " is damaged: data.mdb does not match the checksum in its manifest; nothing "
                                   "restored"));
  }
  if (::fsync(out) != 0) return fail(Errno("fsync " + partial, errno));
  ::close(out);
  out = -1;
  ::close(in);
  in = -1;

  CopyContents contents;
  s = InspectCopy(partial, &contents);
  if (!s.ok()) return fail(Status::Corruption("backup at " + backup_dir + " does not open: " + s.message()));
  if (contents.objects != info->objects) {
    return fail(Status::Corruption("backup at " + backup_dir + " holds " + std::to_string(contents.objects) +
                                   " objects, its manifest says " + std::to_string(info->objects)));
  }
  s = RenameNoReplace(partial, target);
  if (!s.ok()) return fail(s);
  RELAIS_RETURN_IF_ERROR(FsyncPath(store_path, true));
  if (progress) progress(copied);
  return Status::OK();
}

}  // namespace relais::store
