// AuditLog (router/record/audit.h): the hash-chained JSON-lines audit
// trail's writer: opening a file and continuing its chain, one write(2) a
// record, the syncer thread, rotation and the ATNA hand-off. The record
// format is audit_format.h's; refusal windows are audit_refusals.cc's;
// verification is audit_verify.cc's.
#include "router/record/audit.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "router/record/atna.h"
#include "router/record/audit_format.h"

namespace relais::router {

using audit::BaseName;
using audit::Bound;
using audit::BoundedRecord;
using audit::kHashKey;
using audit::kTailBytes;
using audit::kZeroHash;
using audit::ParsedRecord;
using audit::ParseRecord;

// Holds flock(2) LOCK_EX on one descriptor for a scope: the writers of one
// file (`relais serve` and a CLI command) append one at a time. Lock() moves
// it to another descriptor (the file now at the path, after a rotation).
class FileLock {
 public:
  explicit FileLock(int fd) { Lock(fd); }
  ~FileLock() { Unlock(); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  void Lock(int fd) {
    Unlock();
    fd_ = fd;
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }

 private:
  void Unlock() {
    if (fd_ >= 0) ::flock(fd_, LOCK_UN);
    fd_ = -1;
  }
  int fd_ = -1;
};

namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// "<path>.20261128T140312Z", or with "-01".."-99" when taken; "" if all are.
std::string RotatedName(const std::string& path) {
  time_t t = static_cast<time_t>(std::time(nullptr));
  struct tm tm;
  gmtime_r(&t, &tm);
  char stamp[80];
  std::snprintf(stamp, sizeof(stamp), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  const std::string base = path + "." + stamp;
  struct stat st;
  if (::lstat(base.c_str(), &st) != 0) return base;
  for (int i = 1; i <= 99; ++i) {
    char suffix[16];
    std::snprintf(suffix, sizeof(suffix), "-%02d", i);
    if (::lstat((base + suffix).c_str(), &st) != 0) return base + suffix;
  }
  return "";
}

// The file a rotation prepares before it takes the path: next to it, hidden
// so that `relais audit verify audit.jsonl.* audit.jsonl` never takes it.
std::string RotatingName(const std::string& path) {
  const std::string dir = DirName(path);
  return (dir == "/" ? "" : dir) + "/." + BaseName(path) + ".rotating";
}

}  // namespace

AuditLog::AuditLog(int fd, std::string path, Options options)
    : fd_(fd), path_(std::move(path)), options_(std::move(options)) {
  rotate_at_ = options_.rotate_size;
}

int64_t AuditLog::Now() const { return options_.clock ? options_.clock() : NowUnixMs(); }

Status AuditLog::LoadTailLocked(std::string* reason) {
  struct stat st;
  if (fstat(fd_, &st) != 0) return Status::IOError("cannot stat audit file '" + path_ + "': " + std::strerror(errno));
  // The last complete line and whatever follows it (a torn record, no
  // longer than a whole one) are in the last 2 records' worth of bytes.
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t tail_len = std::min<uint64_t>(size, 2 * (kAuditMaxRecordBytes + 1) + 1);
  std::string tail(tail_len, '\0');
  if (tail_len > 0 &&
      pread(fd_, tail.data(), tail_len, static_cast<off_t>(size - tail_len)) != static_cast<ssize_t>(tail_len)) {
    return Status::IOError("cannot read audit file '" + path_ + "': " + std::strerror(errno));
  }
  *reason = size == 0 ? "new_file" : "open";
  size_ = size;
  prev_hash_ = kZeroHash;
  seq_ = 0;
  torn_bytes_ = 0;
  if (size == 0) return Status::OK();
  size_t end = tail.rfind('\n');  // end of the last complete line
  if (end != tail.size() - 1) {
    *reason = "torn_tail";
    torn_bytes_ = end == std::string::npos ? tail.size() : tail.size() - end - 1;
  }
  if (end == std::string::npos) return Status::OK();
  size_t begin = end == 0 ? std::string::npos : tail.rfind('\n', end - 1);
  begin = begin == std::string::npos ? 0 : begin + 1;
  ParsedRecord last = ParseRecord(std::string_view(tail).substr(begin, end - begin));
  if (last.ok) {
    prev_hash_ = last.hash;
    seq_ = last.seq;
  } else {
    RLOG_ERROR("event=audit-chain-restart path=%s reason=\"last record unreadable: %s\"", path_.c_str(),
               last.error.c_str());
    *reason = "chain_restart";
  }
  return Status::OK();
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) { return Open(path, Options{}); }

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path, const Options& options) {
  AtnaExporter::Options atna;
  if (!options.syslog.empty()) {
    Result<SyslogTarget> target = ParseSyslogTarget(options.syslog);
    if (!target.ok()) return target.status();
    atna.target = *target;
    atna.source.ae_title = options.ae_title;
    atna.source.calling_ae_title = options.calling_ae_title;
    char host[256] = {0};
    if (gethostname(host, sizeof(host) - 1) == 0) atna.source.hostname = host;
  }
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Status::IOError("cannot open audit file '" + path + "': " + std::strerror(errno));
  std::unique_ptr<AuditLog> log(new AuditLog(fd, path, options));  // closes fd from here on
  if (!options.syslog.empty()) log->atna_ = std::make_unique<AtnaExporter>(std::move(atna));
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(log->mu_);
    Status s = log->LoadTailLocked(&reason);
    if (!s.ok()) return s;
    const std::string torn = std::to_string(log->torn_bytes_);
    const uint64_t seq = log->seq_ + 1;
    const int64_t ms = log->Now();
    bool ok = log->torn_bytes_ > 0 ? log->WriteLocked("segment", {{"reason", reason}, {"torn_bytes", torn}},
                                                      /*lead_newline=*/true, ms)
                                   : log->WriteLocked("segment", {{"reason", reason}}, false, ms);
    if (!ok) return Status::IOError("cannot write audit file '" + path + "': " + std::strerror(errno));
    log->ExportLocked("segment", {{"reason", reason}}, seq, ms);
  }
  log->syncer_ = std::thread([l = log.get()] { l->SyncLoop(); });
  RLOG_INFO("event=audit-open path=%s seq=%llu reason=%s rotate_size=%llu syslog=%s", path.c_str(),
            static_cast<unsigned long long>(log->seq_), reason.c_str(),
            static_cast<unsigned long long>(options.rotate_size),
            options.syslog.empty() ? "-" : options.syslog.c_str());
  return log;
}

AuditLog::~AuditLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (syncer_.joinable()) syncer_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    FlushRefusalsLocked(Now(), /*all=*/true);  // nothing counted is lost
  }
  atna_.reset();  // sends what waits, for at most its drain time
  for (int fd : retired_fds_) {
    fdatasync(fd);
    ::close(fd);
  }
  fdatasync(fd_);
  ::close(fd_);
}

void AuditLog::SyncLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (!refusals_.empty() && !stop_) FlushRefusalsLocked(Now(), /*all=*/false);  // windows that have ended
    if (!dirty_ && retired_fds_.empty() && !dir_dirty_) continue;
    dirty_ = false;
    // Only this thread closes retired descriptors, and fd_ is retired (not
    // closed) by a rotation, so `fd` stays valid while unlocked.
    const int fd = fd_;
    std::vector<int> retired = std::move(retired_fds_);
    retired_fds_.clear();
    const bool dir = dir_dirty_;
    dir_dirty_ = false;
    lock.unlock();
    for (int r : retired) {  // never on a caller's thread
      fdatasync(r);
      ::close(r);
    }
    fdatasync(fd);
    if (dir) {  // make the rename and the new file's entry durable
      int dfd = ::open(DirName(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        ::close(dfd);
      }
    }
    lock.lock();
  }
}

void AuditLog::ExportLocked(std::string_view kind, const Fields& fields, uint64_t seq, int64_t unix_ms) {
  if (!atna_) return;
  AtnaEvent e;
  e.kind = std::string(kind);
  e.seq = seq;
  e.unix_ms = unix_ms;
  e.fields = fields;  // bounded as in the file
  atna_->Submit(std::move(e));
}

void AuditLog::RotateLocked() {
  // Called from WriteLocked, under the file lock of the full file: no other
  // writer appends to it from here on. The next file is made whole (its
  // "rotated" segment written) under another name first, and only then
  // takes the path, so that whoever opens the path finds the chain's next
  // link there (see "Several writers" in audit.h).
  rotating_ = true;
  const std::string name = RotatedName(path_);
  const std::string next = RotatingName(path_);
  const int old_fd = fd_;
  const uint64_t old_size = size_, old_seq = seq_, old_written = written_;
  const std::string old_prev = prev_hash_;
  std::string why;
  int nfd = -1;
  if (name.empty()) {
    why = "every rotated name for this second is taken";
  } else {
    ::unlink(next.c_str());  // left by a crash mid-rotation: never part of the chain
    nfd = ::open(next.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (nfd < 0) why = std::string("cannot create ") + next + ": " + std::strerror(errno);
  }
  bool rotated = false;
  if (nfd >= 0) {
    fd_ = nfd;
    size_ = 0;
    if (!WriteLocked("segment", {{"reason", "rotated"}, {"prev_file", BaseName(name)}}, false, 0,
                     /*follow_path=*/false)) {
      why = std::string("cannot write ") + next + ": " + std::strerror(errno);
    } else if (::link(path_.c_str(), name.c_str()) != 0 && ::rename(path_.c_str(), name.c_str()) != 0) {
      // The full file gets its rotated name as a second link first, so that
      // the path never goes missing: another process opening it (O_CREAT)
      // between two renames would write to a file the next rename throws
      // away. Where hard links are not supported, a rename does (with that
      // window).
      why = std::string("cannot link or rename to ") + name + ": " + std::strerror(errno);
    } else if (::rename(next.c_str(), path_.c_str()) != 0) {  // replaces the path's link at once
      why = std::string("cannot rename ") + next + ": " + std::strerror(errno);
      struct stat at_path;
      if (::stat(path_.c_str(), &at_path) == 0) {
        ::unlink(name.c_str());  // linked: the path still names the full file
      } else if (::rename(name.c_str(), path_.c_str()) != 0) {
        RLOG_ERROR("event=audit-rotate-failed path=%s rotated=%s reason=\"cannot rename back: %s\"", path_.c_str(),
                   name.c_str(), std::strerror(errno));
      }
    } else {
      rotated = true;
    }
  }
  if (!rotated) {
    if (nfd >= 0) {
      ::close(nfd);
      ::unlink(next.c_str());
    }
    fd_ = old_fd;
    size_ = old_size;
    seq_ = old_seq;
    prev_hash_ = old_prev;
    written_ = old_written;
    resync_ = false;
    RLOG_ERROR("event=audit-rotate-failed path=%s size=%llu reason=\"%s\": the log stays in this file", path_.c_str(),
               static_cast<unsigned long long>(size_), why.c_str());
    rotate_at_ = size_ + options_.rotate_size;  // try again later, not at every record
    rotating_ = false;
    return;
  }
  retired_fds_.push_back(old_fd);  // its lock goes with WriteLocked's scope
  rotate_at_ = options_.rotate_size;
  dir_dirty_ = true;
  ++rotations_;
  RLOG_INFO("event=audit-rotated path=%s rotated=%s seq=%llu", path_.c_str(), name.c_str(),
            static_cast<unsigned long long>(seq_));
  rotating_ = false;
}

bool AuditLog::Record(std::string_view kind, std::initializer_list<Field> fields) {
  return Record(kind, std::span<const Field>(fields.begin(), fields.size()));
}

bool AuditLog::Record(std::string_view kind, std::span<const Field> fields) {
  BoundedRecord b = Bound(kind, fields);  // outside the lock: cutting a long value takes a while
  std::lock_guard<std::mutex> lock(mu_);
  RecordLocked(b.kind, b.fields);
  return !failing_;
}

bool AuditLog::failing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failing_;
}

uint64_t AuditLog::RecordLocked(std::string_view kind, const Fields& fields, int64_t unix_ms) {
  if (resync_) {
    // A write of ours was cut short: learn from the file where the chain
    // stands, end the torn line and say so, then carry on.
    std::string reason;
    if (!LoadTailLocked(&reason).ok()) {
      ++failures_;
      failing_ = true;
      return 0;
    }
    if (torn_bytes_ > 0 &&
        !WriteLocked("segment", {{"reason", "torn_tail"}, {"torn_bytes", std::to_string(torn_bytes_)}}, true, 0)) {
      // The torn line is still unterminated (a full disk takes nothing):
      // look again at the next record, never append behind it.
      resync_ = true;
      ExportLocked(kind, fields, seq_ + 1, unix_ms != 0 ? unix_ms : Now());  // the collector may still hear of it
      return 0;
    }
    resync_ = false;
  }
  // Taken before the write: a rotation after it moves seq_ on.
  const uint64_t seq = seq_ + 1;
  const int64_t ms = unix_ms != 0 ? unix_ms : Now();
  WriteLocked(kind, fields, false, ms);
  ExportLocked(kind, fields, seq, ms);
  return seq;
}

void AuditLog::FollowOthersLocked(bool* lead_newline) {
  // Another process may have appended since our last write (see "Several
  // writers" in audit.h): continue its chain, not ours.
  struct stat st;
  if (fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) == size_) return;
  std::string reason;
  if (!LoadTailLocked(&reason).ok()) return;
  // The other writer died in the middle of a line: end it; our record then
  // says so as the torn_tail segment Open() would write. What the tail
  // shows now, under the lock, decides: Open() read it without the lock and
  // may have seen a line another writer was still writing.
  *lead_newline = torn_bytes_ > 0;
}

void AuditLog::FollowPathLocked(FileLock* file_lock) {
  // Another process (`relais serve`) may have rotated the file since we
  // opened it: the file at the path is where the chain goes on. Checked
  // under the lock, which the rotating process holds on the old file until
  // the new one is in place with its first record.
  for (int tries = 0; tries < 8; ++tries) {
    struct stat by_fd, by_path;
    if (fstat(fd_, &by_fd) != 0) return;
    if (::stat(path_.c_str(), &by_path) == 0 && by_path.st_ino == by_fd.st_ino && by_path.st_dev == by_fd.st_dev)
      return;
    int nfd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (nfd < 0) return;          // stay where we are: Verify will tell
    retired_fds_.push_back(fd_);  // the syncer syncs and closes it
    fd_ = nfd;
    file_lock->Lock(fd_);
    size_ = UINT64_MAX;  // read its tail: FollowOthersLocked
    RLOG_INFO("event=audit-reopened path=%s: the file was rotated by another process; the chain goes on there",
              path_.c_str());
  }
}

bool AuditLog::WriteLocked(std::string_view kind, const Fields& fields, bool lead_newline, int64_t unix_ms,
                           bool follow_path) {
  FileLock file_lock(fd_);
  if (follow_path) FollowPathLocked(&file_lock);
  FollowOthersLocked(&lead_newline);
  std::string line = lead_newline ? "\n" : "";
  const size_t start = line.size();
  line += "{\"seq\":" + std::to_string(seq_ + 1) + ",\"time\":\"" + IsoTime(unix_ms == 0 ? Now() : unix_ms) +
          "\",\"kind\":\"" + JsonEscape(std::string(kind)) + "\"";
  const size_t fields_at = line.size();
  for (const auto& f : fields) line += ",\"" + JsonEscape(f.first) + "\":\"" + JsonEscape(f.second) + "\"";
  if (line.size() - start + kTailBytes > kAuditMaxRecordBytes) {
    // Bound() keeps records under the limit; should escaping ever disagree
    // with it, the record still fits, without its fields.
    RLOG_ERROR("event=audit-record-cut path=%s kind=%s bytes=%zu", path_.c_str(), JsonEscape(std::string(kind)).c_str(),
               line.size() - start);
    line.resize(fields_at);
    line += ",\"cut_fields\":\"" + std::to_string(fields.size()) + "\"";
  }
  line += ",\"prev\":\"" + prev_hash_ + "\"";
  std::string hash = Sha256Hex(std::string_view(line).substr(start));
  line += std::string(kHashKey) + hash + "\"}\n";

  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  size_ += done;
  if (done == line.size()) {
    seq_ += 1;
    prev_hash_ = std::move(hash);
    ++written_;
    dirty_ = true;
    failing_ = false;
    if (rotate_at_ > 0 && size_ >= rotate_at_ && !rotating_) RotateLocked();
    return true;
  }
  int err = errno;
  ++failures_;
  if (done > 0) resync_ = true;  // part of the line is in the file
  if (!failing_) {
    RLOG_ERROR("event=audit-write-failed path=%s reason=\"%s\": records are lost until the disk recovers",
               path_.c_str(), std::strerror(err));
  }
  failing_ = true;
  errno = err;
  return false;
}

uint64_t AuditLog::records_written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return written_;
}

uint64_t AuditLog::write_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

uint64_t AuditLog::rotations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rotations_;
}

uint64_t AuditLog::atna_sent() const { return atna_ ? atna_->sent() : 0; }
uint64_t AuditLog::atna_dropped() const { return atna_ ? atna_->dropped() : 0; }

}  // namespace relais::router
