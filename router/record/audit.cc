// AuditLog (router/record/audit.h): the hash-chained JSON-lines audit trail.
#include "router/record/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/text.h"
#include "router/record/atna.h"

namespace relais::router {
namespace {

constexpr char kZeroHash[] = "0000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view kHashKey = ",\"hash\":\"";
// The most a record's frame takes besides its kind and fields:
// {"seq":<20 digits>,"time":"<at most 32>","kind":"" ,"prev":"<64>","hash":"<64>"}
constexpr size_t kFrameBytes = 7 + 20 + 9 + 32 + 10 + 1 + 9 + 64 + 1 + 9 + 64 + 2;
// What follows the fields: ,"prev":"<64>","hash":"<64>"}
constexpr size_t kTailBytes = 9 + 64 + 1 + 9 + 64 + 2;
// Room kept for a ,"cut_fields":"<20 digits>" field.
constexpr size_t kCutFieldsBytes = 16 + 20 + 1;
static_assert(kFrameBytes + kAuditMaxKeyBytes + kCutFieldsBytes + 6 + kAuditMaxKeyBytes + kAuditMaxFieldBytes <=
                  kAuditMaxRecordBytes,
              "a record must hold at least one field of each maximum");

bool IsHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A flat JSON object (RFC 8259): string keys; string, number, true, false
// or null values. Values are kept as their decoded string (numbers and
// literals as written). Nested objects and arrays are not audit records.
class FlatJson {
 public:
  explicit FlatJson(std::string_view s) : s_(s) {}

  // Parses the whole input; on failure returns false and sets error().
  bool Parse() {
    Ws();
    if (!Eat('{')) return Fail("expected '{'");
    Ws();
    if (Eat('}')) return End();
    for (;;) {
      std::string key, value;
      Ws();
      if (!String(&key)) return false;
      Ws();
      if (!Eat(':')) return Fail("expected ':' after a key");
      Ws();
      if (!Value(&value)) return false;
      fields_.emplace_back(std::move(key), std::move(value));
      Ws();
      if (Eat(',')) continue;
      if (Eat('}')) return End();
      return Fail("expected ',' or '}'");
    }
  }
  const std::string& error() const { return error_; }
  const std::string* Get(std::string_view key) const {
    for (const auto& [k, v] : fields_) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  bool End() {
    Ws();
    return i_ == s_.size() ? true : Fail("trailing bytes after the object");
  }
  bool Fail(const char* why) {
    error_ = std::string(why) + " at byte " + std::to_string(i_ + 1);
    return false;
  }
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
  }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return Fail("expected a string");
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return Fail("control character in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': out->push_back(e); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (s_.size() - i_ < 4) return Fail("truncated \\u escape");
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            char h = s_[i_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
            else return Fail("bad \\u escape");
          }
          // Our writer only escapes control characters; keep others as UTF-8.
          if (v < 0x80) {
            out->push_back(static_cast<char>(v));
          } else if (v < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (v >> 6)));
            out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (v >> 12)));
            out->push_back(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
          }
          break;
        }
        default: return Fail("bad escape in a string");
      }
    }
    return Fail("unterminated string");
  }
  bool Value(std::string* out) {
    if (i_ >= s_.size()) return Fail("expected a value");
    char c = s_[i_];
    if (c == '"') return String(out);
    if (c == '{' || c == '[') return Fail("nested values are not audit record fields");
    for (std::string_view lit : {"true", "false", "null"}) {
      if (s_.substr(i_, lit.size()) == lit) {
        i_ += lit.size();
        *out = std::string(lit);
        return true;
      }
    }
    size_t start = i_;
    Eat('-');
    size_t digits = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    if (i_ == digits) return Fail("expected a value");
    if (Eat('.')) {
      size_t frac = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == frac) return Fail("bad number");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!Eat('+')) Eat('-');
      size_t exp = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == exp) return Fail("bad number");
    }
    *out = std::string(s_.substr(start, i_ - start));
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
  std::string error_;
  std::vector<std::pair<std::string, std::string>> fields_;
};

// What a line says about itself: its record, or why it is not one.
struct Parsed {
  bool ok = false;
  std::string error;
  std::string hash;
  std::string prev;
  uint64_t seq = 0;
  std::string kind;
  std::string reason;      // segment records
  std::string torn_bytes;  // segment records
  std::string prev_file;   // "rotated" segment records
};

Parsed ParseRecord(std::string_view line) {
  Parsed p;
  FlatJson json(line);
  if (!json.Parse()) {
    p.error = "malformed JSON: " + json.error();
    return p;
  }
  // The hash must be the last field, written exactly as the writer does.
  size_t at = line.rfind(kHashKey);
  if (at == std::string_view::npos || line.size() != at + kHashKey.size() + 64 + 2 ||
      line.substr(line.size() - 2) != "\"}" || !IsHex64(line.substr(at + kHashKey.size(), 64))) {
    p.error = "no \"hash\" as the last field";
    return p;
  }
  p.hash = std::string(line.substr(at + kHashKey.size(), 64));
  const std::string* prev = json.Get("prev");
  const std::string* seq = json.Get("seq");
  const std::string* kind = json.Get("kind");
  if (prev == nullptr || !IsHex64(*prev)) {
    p.error = "no valid \"prev\" field";
    return p;
  }
  if (seq == nullptr || seq->empty() || seq->size() > 19 ||
      seq->find_first_not_of("0123456789") != std::string::npos) {
    p.error = "no valid \"seq\" field";
    return p;
  }
  if (kind == nullptr) {
    p.error = "no \"kind\" field";
    return p;
  }
  p.prev = *prev;
  p.seq = std::stoull(*seq);
  p.kind = *kind;
  if (const std::string* r = json.Get("reason")) p.reason = *r;
  if (const std::string* t = json.Get("torn_bytes")) p.torn_bytes = *t;
  if (const std::string* f = json.Get("prev_file")) p.prev_file = *f;
  if (AuditLog::Sha256Hex(line.substr(0, at)) != p.hash) {
    p.error = "hash does not match the record (the line was changed)";
    return p;
  }
  p.ok = true;
  return p;
}

// Length of the character at s[i]: a whole valid UTF-8 sequence (RFC 3629:
// no overlong forms, no surrogates, at most U+10FFFF), else 1 (one byte
// that is not valid UTF-8 there).
size_t Utf8UnitLen(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 1;
  const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
  unsigned char lo = 0x80, hi = 0xBF;  // RFC 3629 section 4 for the second byte
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  if (c1 < lo || c1 > hi) return 1;
  for (size_t k = 2; k < len; ++k) {
    const unsigned char ck = static_cast<unsigned char>(s[i + k]);
    if (ck < 0x80 || ck > 0xBF) return 1;
  }
  return len;
}

size_t EscapedSize(std::string_view s) { return JsonEscape(std::string(s)).size(); }

// The bounded form of a record (see Bounds in audit.h).
struct BoundedRecord {
  std::string kind;
  std::vector<std::pair<std::string, std::string>> fields;
};

template <typename Range>
BoundedRecord Bound(std::string_view kind, const Range& fields) {
  BoundedRecord b;
  b.kind = AuditCut(kind, kAuditMaxKeyBytes);
  size_t used = kFrameBytes + EscapedSize(b.kind) + kCutFieldsBytes;
  size_t left_out = 0;
  b.fields.reserve(fields.size());
  for (const auto& f : fields) {
    if (left_out > 0) {
      ++left_out;
      continue;
    }
    std::string k = AuditCut(f.first, kAuditMaxKeyBytes);
    std::string v = AuditCut(f.second, kAuditMaxFieldBytes);
    const size_t cost = 6 + EscapedSize(k) + EscapedSize(v);  // ,"k":"v"
    if (used + cost > kAuditMaxRecordBytes) {
      left_out = 1;
      continue;
    }
    used += cost;
    b.fields.emplace_back(std::move(k), std::move(v));
  }
  if (left_out > 0) b.fields.emplace_back("cut_fields", std::to_string(left_out));
  return b;
}

}  // namespace

std::string AuditCut(std::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes && EscapedSize(value) <= max_bytes) return std::string(value);
  const std::string marker = "...[cut, " + std::to_string(value.size()) + " bytes]";
  const size_t room = max_bytes > marker.size() ? max_bytes - marker.size() : 0;
  size_t i = 0, used = 0;
  while (i < value.size()) {
    const size_t n = Utf8UnitLen(value, i);
    const size_t e = EscapedSize(value.substr(i, n));
    if (used + e > room) break;
    used += e;
    i += n;
  }
  return std::string(value.substr(0, i)) + marker;
}

std::string_view AuditAddressOf(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    const size_t close = peer.find(']');
    if (close != std::string_view::npos && close + 1 < peer.size() && peer[close + 1] == ':') {
      return peer.substr(1, close - 1);
    }
    return peer;
  }
  const size_t colon = peer.find(':');
  if (colon != std::string_view::npos && peer.find(':', colon + 1) == std::string_view::npos) {
    return peer.substr(0, colon);  // IPv4 or a name with a port; a bare IPv6 address stays whole
  }
  return peer;
}

std::string AuditLog::Sha256Hex(std::string_view bytes) {
  std::string hex = ::relais::Sha256Hex(bytes);
  if (hex.empty()) return std::string(kZeroHash);  // cannot happen with OpenSSL's built-in SHA-256
  return hex;
}

namespace {

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

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
  Parsed last = ParseRecord(std::string_view(tail).substr(begin, end - begin));
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
            static_cast<unsigned long long>(options.rotate_size), options.syslog.empty() ? "-" : options.syslog.c_str());
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
  rotating_ = true;
  const std::string name = RotatedName(path_);
  int nfd = -1;
  if (!name.empty() && ::rename(path_.c_str(), name.c_str()) == 0) {
    nfd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (nfd < 0) {
      int err = errno;
      if (::rename(name.c_str(), path_.c_str()) != 0) {
        RLOG_ERROR("event=audit-rotate-failed path=%s rotated=%s reason=\"cannot rename back: %s\"", path_.c_str(),
                   name.c_str(), std::strerror(errno));
      }
      errno = err;
    }
  }
  if (nfd < 0) {
    RLOG_ERROR("event=audit-rotate-failed path=%s size=%llu reason=\"%s\": the log stays in this file",
               path_.c_str(), static_cast<unsigned long long>(size_),
               name.empty() ? "every rotated name for this second is taken" : std::strerror(errno));
    rotate_at_ = size_ + options_.rotate_size;  // try again later, not at every record
    rotating_ = false;
    return;
  }
  retired_fds_.push_back(fd_);
  fd_ = nfd;
  size_ = 0;
  rotate_at_ = options_.rotate_size;
  dir_dirty_ = true;
  ++rotations_;
  const std::string prev_file = BaseName(name);
  if (WriteLocked("segment", {{"reason", "rotated"}, {"prev_file", prev_file}}, false, 0)) {
    RLOG_INFO("event=audit-rotated path=%s rotated=%s seq=%llu", path_.c_str(), name.c_str(),
              static_cast<unsigned long long>(seq_));
  }
  rotating_ = false;
}

void AuditLog::Record(std::string_view kind, std::initializer_list<Field> fields) {
  BoundedRecord b = Bound(kind, fields);  // outside the lock: cutting a long value takes a while
  std::lock_guard<std::mutex> lock(mu_);
  RecordLocked(b.kind, b.fields);
}

void AuditLog::RecordRefusal(std::string_view kind, std::string_view address, std::initializer_list<Field> fields,
                             std::initializer_list<std::string_view> key) {
  BoundedRecord b = Bound(kind, fields);
  Fields summary;
  summary.emplace_back("address", AuditCut(address));
  std::string id = b.kind;
  id.push_back('\0');
  id += summary.front().second;
  for (std::string_view name : key) {
    for (const auto& [k, v] : b.fields) {
      if (k != name) continue;
      summary.emplace_back(k, v);
      id.push_back('\0');
      id += v;
      break;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  FlushRefusalsLocked(now, /*all=*/false);  // this key's window may have ended
  auto it = refusals_.find(id);
  if (it != refusals_.end()) {
    ++it->second.count;
    it->second.until_ms = now;
    return;
  }
  if (refusals_.size() >= kAuditMaxRefusalWindows) {  // end the oldest window early
    auto oldest = refusals_.begin();
    for (auto w = refusals_.begin(); w != refusals_.end(); ++w) {
      if (w->second.since_ms < oldest->second.since_ms) oldest = w;
    }
    if (oldest->second.count > 0) WriteSummaryLocked(oldest->second);
    refusals_.erase(oldest);
  }
  RefusalWindow w;
  w.kind = b.kind;
  w.summary = std::move(summary);
  w.since_ms = now;
  w.until_ms = now;
  w.first_seq = RecordLocked(b.kind, b.fields);
  refusals_.emplace(std::move(id), std::move(w));
}

void AuditLog::FlushRefusalsLocked(int64_t now_ms, bool all) {
  for (auto it = refusals_.begin(); it != refusals_.end();) {
    const RefusalWindow& w = it->second;
    if (!all && now_ms - w.since_ms < options_.refusal_window_ms && now_ms >= w.since_ms) {
      ++it;
      continue;
    }
    if (w.count > 0) WriteSummaryLocked(w);
    it = refusals_.erase(it);
  }
}

void AuditLog::WriteSummaryLocked(const RefusalWindow& w) {
  Fields f = w.summary;
  f.emplace_back("repeated", std::to_string(w.count));
  f.emplace_back("since", IsoTime(w.since_ms));
  f.emplace_back("until", IsoTime(w.until_ms));
  f.emplace_back("first_seq", std::to_string(w.first_seq));
  BoundedRecord b = Bound(w.kind, f);
  RecordLocked(b.kind, b.fields);
}

uint64_t AuditLog::RecordLocked(std::string_view kind, const Fields& fields) {
  if (resync_) {
    // A write of ours was cut short: learn from the file where the chain
    // stands, end the torn line and say so, then carry on.
    std::string reason;
    if (!LoadTailLocked(&reason).ok()) {
      ++failures_;
      return 0;
    }
    resync_ = false;
    if (torn_bytes_ > 0 &&
        !WriteLocked("segment", {{"reason", "torn_tail"}, {"torn_bytes", std::to_string(torn_bytes_)}}, true, 0)) {
      ExportLocked(kind, fields, seq_ + 1, Now());  // the disk failed; the collector may still hear of it
      return 0;
    }
  }
  // Taken before the write: a rotation after it moves seq_ on.
  const uint64_t seq = seq_ + 1;
  const int64_t ms = Now();
  WriteLocked(kind, fields, false, ms);
  ExportLocked(kind, fields, seq, ms);
  return seq;
}

bool AuditLog::WriteLocked(std::string_view kind, const Fields& fields, bool lead_newline, int64_t unix_ms) {
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

namespace {

// Where the chain stands between lines and between files.
struct ChainState {
  std::string prev = kZeroHash;
  uint64_t seq = 0;
  bool any = false;           // a record was accepted (in any file)
  std::string last_file;      // the previous file given (its path)
};

// Checks one file, continuing `chain`. Returns false with *report final
// (bad_line, bad_file, error) at the first broken link.
Result<bool> VerifyFile(const std::string& path, bool first_file, ChainState* chain,
                        AuditLog::VerifyReport* report) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::string msg = "cannot open audit file '" + path + "': " + std::strerror(errno);
    return errno == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  uint64_t line_no = 0;
  // A malformed line waiting to be excused by a torn_tail segment record.
  uint64_t bad_line = 0;
  std::string bad_error;
  uint64_t bad_len = 0;
  bool bad_unterminated = false;
  auto fail = [&](uint64_t line, std::string why) {
    report->bad_line = line;
    report->bad_file = path;
    report->error = std::move(why);
    return false;
  };

  std::string line;
  bool too_long = false;
  auto check = [&](bool terminated) -> bool {  // false: stop, report is final
    ++line_no;
    Parsed p;
    if (too_long) {
      p.error = "line longer than " + std::to_string(kAuditMaxRecordBytes) + " bytes";
    } else {
      p = ParseRecord(line);
    }
    if (bad_line != 0) {
      bool excused = p.ok && p.kind == "segment" && p.reason == "torn_tail" && p.torn_bytes == std::to_string(bad_len);
      if (!excused) return fail(bad_line, bad_error);
      bad_line = 0;
    }
    if (!p.ok) {
      bad_line = line_no;
      bad_error = p.error;
      bad_len = line.size();
      bad_unterminated = !terminated;
      return true;
    }
    const bool rotated = p.kind == "segment" && p.reason == "rotated";
    if (line_no == 1 && !first_file) {
      // The link between files: this file must continue the one before.
      const std::string before = chain->last_file;
      if (!rotated) {
        return fail(1, "does not continue " + before + ": its first record is not a \"rotated\" segment (" +
                           (p.reason.empty() ? "kind " + p.kind : "reason " + p.reason) +
                           "), so it starts a new chain or lost its first lines");
      }
      if (p.prev != chain->prev) {
        if (!p.prev_file.empty() && p.prev_file != BaseName(before)) {
          return fail(1, "continues '" + p.prev_file + "', not " + before +
                             " (a file is missing between them, or the files are out of order)");
        }
        return fail(1, "\"prev\" does not match the last record of " + before + " (" + before +
                           " was cut short, extended or replaced)");
      }
      if (p.seq != chain->seq + 1) {
        return fail(1, "\"seq\" is " + std::to_string(p.seq) + ", expected " + std::to_string(chain->seq + 1) +
                           " after the last record of " + before);
      }
    } else if (line_no == 1 && rotated && p.prev != kZeroHash) {
      // The first file given continues one that was not: accept the link
      // unchecked (the record's own hash still is) and say so.
      report->note = path + " continues '" + p.prev_file + "', which was not given: that link was not checked";
    } else if (p.prev != chain->prev) {
      return fail(line_no, line_no == 1 ? "\"prev\" of the first record is not zero (lines before it were removed)"
                                        : "\"prev\" does not match the previous record (a record was removed, "
                                          "inserted or reordered before this line)");
    } else if (p.seq != chain->seq + 1) {
      return fail(line_no, "\"seq\" is " + std::to_string(p.seq) + ", expected " + std::to_string(chain->seq + 1));
    }
    chain->prev = p.hash;
    chain->seq = p.seq;
    chain->any = true;
    ++report->records;
    return true;
  };

  char buf[64 * 1024];
  bool go = true;
  while (go) {
    size_t n = std::fread(buf, 1, sizeof(buf), f);
    if (n == 0) break;
    for (size_t i = 0; i < n && go; ++i) {
      if (buf[i] == '\n') {
        go = check(/*terminated=*/true);
        line.clear();
        too_long = false;
      } else if (line.size() < kAuditMaxRecordBytes) {
        line.push_back(buf[i]);
      } else {
        too_long = true;
      }
    }
  }
  bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  if (read_error) return Status::IOError("cannot read audit file '" + path + "'");
  if (go && (!line.empty() || too_long)) go = check(/*terminated=*/false);
  if (go && bad_line != 0) {
    go = fail(bad_line, bad_unterminated ? bad_error + " (torn last line: the writer stopped mid-record)" : bad_error);
  }
  chain->last_file = path;
  return go;
}

}  // namespace

Result<AuditLog::VerifyReport> AuditLog::Verify(const std::string& path) {
  return Verify(std::vector<std::string>{path});
}

Result<AuditLog::VerifyReport> AuditLog::Verify(const std::vector<std::string>& paths) {
  if (paths.empty()) return Status::InvalidArgument("no audit file to verify");
  VerifyReport report;
  ChainState chain;
  for (size_t i = 0; i < paths.size(); ++i) {
    Result<bool> ok = VerifyFile(paths[i], i == 0, &chain, &report);
    if (!ok.ok()) return ok.status();
    ++report.files;
    if (!*ok) break;
  }
  if (report.bad_line != 0) report.records = 0;
  return report;
}

int AuditVerifyCommand(const std::string& path) { return AuditVerifyCommand(std::vector<std::string>{path}); }

int AuditVerifyCommand(const std::vector<std::string>& paths) {
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(paths);
  if (!r.ok()) {
    std::fprintf(stderr, "relais audit verify: %s\n", r.status().message().c_str());
    return 2;
  }
  if (r->bad_line != 0) {
    std::printf("%s:%llu: %s\n", r->bad_file.c_str(), static_cast<unsigned long long>(r->bad_line),
                r->error.c_str());
    return 1;
  }
  if (paths.size() == 1) {
    std::printf("OK: %llu records\n", static_cast<unsigned long long>(r->records));
  } else {
    std::printf("OK: %llu records in %zu files\n", static_cast<unsigned long long>(r->records), paths.size());
  }
  if (!r->note.empty()) std::printf("note: %s\n", r->note.c_str());
  return 0;
}

}  // namespace relais::router
