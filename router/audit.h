// AuditLog: the tamper-evident audit trail (issue 5). Who sent which
// patient's images where, and what became of them.
//
// On-disk format: JSON lines (RFC 8259), one flat object per line, appended
// and never rewritten. Every record is
//
//   {"seq":N,"time":"2026-11-28T08:30:00.123Z","kind":K, ...fields...,
//    "prev":"<64 hex>","hash":"<64 hex>"}\n
//
// with the fields in that order and every field value a JSON string.
//   seq   1, 2, 3... in file order (a reopened file continues the count).
//   kind  "segment" (the writer opened the file), "association", "object",
//         "delivery", "rules" (config change), "admin".
//   prev  the "hash" of the previous record; 64 zeros for the first record.
//   hash  lowercase hex SHA-256 (FIPS 180-4) of the line's bytes from the
//         opening '{' up to, not including, the ',"hash":"' that ends it.
// Because "prev" is inside the hashed bytes, the records form a chain:
// editing a line breaks its own hash; deleting, inserting or reordering a
// line breaks the next line's "prev". What this does not protect against:
// someone who rewrites the whole tail of the file and recomputes every hash
// from the edit on (there is no key); ship the file off the box (or keep the
// last hash elsewhere) to close that gap.
//
// Crash safety: each record is one write(2) on an O_APPEND descriptor, so a
// crash leaves at most one torn last line. Open() notices it (the file does
// not end in '\n'), terminates it with '\n' and writes a "segment" record
// with "reason":"torn_tail" and "torn_bytes" (the torn line's length) that
// chains from the last complete record. Verify() forgives a malformed line
// only when such a segment record follows it. Every Open() writes a segment
// record ("reason":"new_file", "open" or "torn_tail").
//
// Durability: records are written at once (the page cache has them: a
// process crash loses nothing) and a background thread calls fdatasync(2)
// at most once a second when something was written, and when the log is
// closed: a power failure loses at most the last second of records. There
// is no rotation yet (rotate by moving the file away and restarting; the
// new file starts a new chain).
//
// Failure policy: a failed write is logged (once per failure streak) and
// counted; routing goes on (the audit trail never stops the clinic).
#ifndef RELAIS_ROUTER_AUDIT_H_
#define RELAIS_ROUTER_AUDIT_H_

#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "base/status.h"

namespace relais::router {

class AuditLog {
 public:
  using Field = std::pair<std::string_view, std::string_view>;

  // Opens (creating it, mode 0640) the audit file at `path` and continues
  // its chain from the last complete record. Errors: IOError if the file
  // cannot be opened, read or written.
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& path);
  // Flushes (fdatasync) and closes.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record of `kind` with `fields` (keys must not be "seq",
  // "time", "kind", "prev" or "hash"; values are escaped). Any thread; one
  // write(2), never an fsync on the caller's thread.
  void Record(std::string_view kind, std::initializer_list<Field> fields);

  uint64_t records_written() const;
  uint64_t write_failures() const;

  struct VerifyReport {
    uint64_t records = 0;   // records checked and found intact
    uint64_t bad_line = 0;  // 1-based line of the first broken link; 0 = intact
    std::string error;      // why that line is broken
  };
  // Checks every record of the file at `path`: well-formed, its hash, its
  // link to the previous record, its seq. Stops at the first broken link.
  // Errors: IOError/NotFound if the file cannot be read (a broken chain is
  // not an error: see VerifyReport).
  static Result<VerifyReport> Verify(const std::string& path);

  // Lowercase hex SHA-256 of `bytes` (exposed for tests).
  static std::string Sha256Hex(std::string_view bytes);

 private:
  AuditLog(int fd, std::string path);
  // Reads the end of the file: sets prev_hash_, seq_ and torn_bytes_ (the
  // bytes after the last '\n'); `reason` says what was found.
  Status LoadTailLocked(std::string* reason);
  // Writes one record (after a '\n' that ends a torn line if
  // `lead_newline`). False if it did not make it whole.
  bool WriteLocked(std::string_view kind, std::initializer_list<Field> fields, bool lead_newline);
  void SyncLoop();

  const int fd_;
  const std::string path_;
  mutable std::mutex mu_;
  std::string prev_hash_;   // guarded by mu_
  uint64_t seq_ = 0;        // guarded by mu_
  uint64_t torn_bytes_ = 0; // guarded by mu_
  bool resync_ = false;     // guarded by mu_: a write of ours was cut short
  bool failing_ = false;    // guarded by mu_
  uint64_t written_ = 0;    // guarded by mu_
  uint64_t failures_ = 0;   // guarded by mu_
  bool dirty_ = false;      // guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::condition_variable cv_;
  std::thread syncer_;
};

// `relais audit verify FILE`: prints "OK: N records" (returns 0) or
// "FILE:LINE: why" for the first broken link (returns 1).
int AuditVerifyCommand(const std::string& path);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_AUDIT_H_
