// AuditLog (router/audit.h): the hash-chained JSON-lines audit trail.
#include "router/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/text.h"

namespace relais::router {
namespace {

constexpr char kZeroHash[] = "0000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view kHashKey = ",\"hash\":\"";
// A record is a few hundred bytes; anything past this is not ours.
constexpr size_t kMaxLineBytes = 1 << 20;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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
  if (AuditLog::Sha256Hex(line.substr(0, at)) != p.hash) {
    p.error = "hash does not match the record (the line was changed)";
    return p;
  }
  p.ok = true;
  return p;
}

}  // namespace

std::string AuditLog::Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    return std::string(kZeroHash);  // cannot happen with OpenSSL's built-in SHA-256
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned i = 0; i < 32; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 15];
  }
  return out;
}

AuditLog::AuditLog(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

Status AuditLog::LoadTailLocked(std::string* reason) {
  struct stat st;
  if (fstat(fd_, &st) != 0) return Status::IOError("cannot stat audit file '" + path_ + "': " + std::strerror(errno));
  // The last complete line and whatever follows it are in the last 2 MiB.
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t tail_len = std::min<uint64_t>(size, 2 * kMaxLineBytes);
  std::string tail(tail_len, '\0');
  if (tail_len > 0 &&
      pread(fd_, tail.data(), tail_len, static_cast<off_t>(size - tail_len)) != static_cast<ssize_t>(tail_len)) {
    return Status::IOError("cannot read audit file '" + path_ + "': " + std::strerror(errno));
  }
  *reason = size == 0 ? "new_file" : "open";
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

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Status::IOError("cannot open audit file '" + path + "': " + std::strerror(errno));
  std::unique_ptr<AuditLog> log(new AuditLog(fd, path));  // closes fd from here on
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(log->mu_);
    Status s = log->LoadTailLocked(&reason);
    if (!s.ok()) return s;
    bool ok = log->torn_bytes_ > 0 ? log->WriteLocked("segment", {{"reason", reason}, {"torn_bytes",
                                                       std::to_string(log->torn_bytes_)}}, /*lead_newline=*/true)
                                   : log->WriteLocked("segment", {{"reason", reason}}, false);
    if (!ok) return Status::IOError("cannot write audit file '" + path + "': " + std::strerror(errno));
  }
  log->syncer_ = std::thread([l = log.get()] { l->SyncLoop(); });
  RLOG_INFO("event=audit-open path=%s seq=%llu reason=%s", path.c_str(), static_cast<unsigned long long>(log->seq_),
            reason.c_str());
  return log;
}

AuditLog::~AuditLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (syncer_.joinable()) syncer_.join();
  fdatasync(fd_);
  ::close(fd_);
}

void AuditLog::SyncLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (!dirty_) continue;
    dirty_ = false;
    lock.unlock();
    fdatasync(fd_);  // never on a caller's thread
    lock.lock();
  }
}

void AuditLog::Record(std::string_view kind, std::initializer_list<Field> fields) {
  std::lock_guard<std::mutex> lock(mu_);
  if (resync_) {
    // A write of ours was cut short: learn from the file where the chain
    // stands, end the torn line and say so, then carry on.
    std::string reason;
    if (!LoadTailLocked(&reason).ok()) {
      ++failures_;
      return;
    }
    resync_ = false;
    if (torn_bytes_ > 0 &&
        !WriteLocked("segment", {{"reason", "torn_tail"}, {"torn_bytes", std::to_string(torn_bytes_)}}, true)) {
      return;
    }
  }
  WriteLocked(kind, fields, false);
}

bool AuditLog::WriteLocked(std::string_view kind, std::initializer_list<Field> fields, bool lead_newline) {
  std::string line = lead_newline ? "\n" : "";
  const size_t start = line.size();
  line += "{\"seq\":" + std::to_string(seq_ + 1) + ",\"time\":\"" + IsoTime(NowMs()) + "\",\"kind\":\"" +
          JsonEscape(std::string(kind)) + "\"";
  for (const Field& f : fields) {
    line += ",\"" + JsonEscape(std::string(f.first)) + "\":\"" + JsonEscape(std::string(f.second)) + "\"";
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
  if (done == line.size()) {
    seq_ += 1;
    prev_hash_ = std::move(hash);
    ++written_;
    dirty_ = true;
    failing_ = false;
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

Result<AuditLog::VerifyReport> AuditLog::Verify(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::string msg = "cannot open audit file '" + path + "': " + std::strerror(errno);
    return errno == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  VerifyReport report;
  std::string prev = kZeroHash;
  uint64_t seq = 0;
  uint64_t line_no = 0;
  // A malformed line waiting to be excused by a torn_tail segment record.
  uint64_t bad_line = 0;
  std::string bad_error;
  uint64_t bad_len = 0;
  bool bad_unterminated = false;

  std::string line;
  bool too_long = false;
  bool eof = false;
  auto check = [&](bool terminated) -> bool {  // false: stop, report is final
    ++line_no;
    Parsed p;
    if (too_long) {
      p.error = "line longer than " + std::to_string(kMaxLineBytes) + " bytes";
    } else {
      p = ParseRecord(line);
    }
    if (bad_line != 0) {
      bool excused = p.ok && p.kind == "segment" && p.reason == "torn_tail" && p.torn_bytes == std::to_string(bad_len);
      if (!excused) {
        report.bad_line = bad_line;
        report.error = bad_error;
        return false;
      }
      bad_line = 0;
    }
    if (!p.ok) {
      bad_line = line_no;
      bad_error = p.error;
      bad_len = line.size();
      bad_unterminated = !terminated;
      return true;
    }
    if (p.prev != prev) {
      report.bad_line = line_no;
      report.error = line_no == 1 ? "\"prev\" of the first record is not zero (lines before it were removed)"
                                  : "\"prev\" does not match the previous record (a record was removed, "
                                    "inserted or reordered before this line)";
      return false;
    }
    if (p.seq != seq + 1) {
      report.bad_line = line_no;
      report.error = "\"seq\" is " + std::to_string(p.seq) + ", expected " + std::to_string(seq + 1);
      return false;
    }
    prev = p.hash;
    seq = p.seq;
    ++report.records;
    return true;
  };

  char buf[64 * 1024];
  bool go = true;
  while (go && !eof) {
    size_t n = std::fread(buf, 1, sizeof(buf), f);
    if (n == 0) {
      eof = true;
      break;
    }
    for (size_t i = 0; i < n && go; ++i) {
      if (buf[i] == '\n') {
        go = check(/*terminated=*/true);
        line.clear();
        too_long = false;
      } else if (line.size() < kMaxLineBytes) {
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
    report.bad_line = bad_line;
    report.error = bad_unterminated ? bad_error + " (torn last line: the writer stopped mid-record)" : bad_error;
  }
  if (report.bad_line != 0) report.records = 0;
  return report;
}

int AuditVerifyCommand(const std::string& path) {
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(path);
  if (!r.ok()) {
    std::fprintf(stderr, "relais audit verify: %s\n", r.status().message().c_str());
    return 2;
  }
  if (r->bad_line != 0) {
    std::printf("%s:%llu: %s\n", path.c_str(), static_cast<unsigned long long>(r->bad_line), r->error.c_str());
    return 1;
  }
  std::printf("OK: %llu records\n", static_cast<unsigned long long>(r->records));
  return 0;
}

}  // namespace relais::router
