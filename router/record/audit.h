// Room router/record/ (DESIGN.md, "The rooms of router/"): what happened.
// The audit trail (audit.h: records and their bounds in audit_format.h, the
// writer in audit.cc, refusal windows in audit_refusals.cc, Verify in
// audit_verify.cc), its IHE ATNA export (atna.h) and the counters
// (metrics.h).
// May include: base/, the store. The Prometheus page that shows the
// counters is rendered in operate/ (prometheus.h), so that receive/ and
// deliver/, which increment them, include nothing that includes them back.
//
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
//   kind  "segment" (the writer opened the file, or a rotation started it:
//         "reason":"rotated"), "association", "object",
//         "delivery", "rules" (config change), "admin", "cli" (a `relais`
//         command's action: router/cli/cli_audit.h), "expired" (an
//         object the store's sweep removed at the end of its class's
//         retention: uid, study, class, since, dead destinations; not
//         exported as ATNA).
//   prev  the "hash" of the previous record; 64 zeros for the first record
//         of a chain (a rotated file's first record links to the previous
//         file's last record instead: see Rotation).
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
// closed: a power failure loses at most the last second of records.
//
// Several writers: `relais serve` and the `relais` admin commands (one
// record each, then closed) append to the same file. Every record is
// written under flock(2) LOCK_EX on the file; under that lock the writer
// compares the file's size (fstat) with the size after its own last write
// and, when the file grew, reads the last record back and continues the
// chain (seq and prev) from it. Records of both processes thus interleave
// in one intact chain. Rotation is done by `relais serve` only (the
// commands open the log without rotate_size), under the lock of the full
// file, and the new file takes the path only once its first record (the
// "rotated" segment) is in it. Every writer, once it holds the lock,
// checks that the path still names the file it has open (inode and
// device); when it does not (rotated meanwhile), it opens the path, takes
// that file's lock, reads its tail and continues the chain there. A command
// that opened the file before serve rotated it thus appends after the
// rotated segment, never behind the rotated file's last record.
//
// Rotation (Options::rotate_size): once the file holds rotate_size bytes or
// more after a record, it is renamed to "<path>.<UTC time>", e.g.
// "audit.jsonl.20261128T140312Z" ("-01", "-02"... appended if that name is
// taken), and a new file starts at <path> (prepared as ".<name>.rotating"
// in the same directory, then renamed over <path>) whose first record is
//   {"seq":N+1,...,"kind":"segment","reason":"rotated",
//    "prev_file":"audit.jsonl.20261128T140312Z","prev":"<hash of record N>",...}
// so the chain, and the seq count, run on across files. Old files are never
// deleted (that is the administrator's call). The names sort in time order,
// so `relais audit verify audit.jsonl.* audit.jsonl` checks everything.
// If the rename fails the log stays in the current file (logged) and tries
// again after another rotate_size bytes.
// A crash between the rename and the new file's first record, like a
// removed current file, leaves a file that starts a new chain: Verify()
// reports it at its line 1 (on purpose: continuing the chain from the
// rotated file there would also hide a deleted current file).
//
// ATNA (Options::syslog): every record is also sent as an IHE ATNA / DICOM
// audit message over syslog (router/record/atna.h), from a sender thread with a
// bounded queue: a collector that is down or slow never delays or fails a
// Record(); messages are dropped and counted instead.
//
// Bounds: every value may come from outside (a path, a destination name,
// an AE title, a UID, a reason), so no record grows with its input. A value
// whose JSON-escaped form is longer than kAuditMaxFieldBytes is cut, on a
// character boundary (a valid UTF-8 sequence is never split), to a prefix
// followed by the marker "...[cut, N bytes]" (N = the original value's
// length in bytes) so that prefix and marker, escaped, fit in
// kAuditMaxFieldBytes; keys and the kind are cut the same way to
// kAuditMaxKeyBytes. Should a record still not fit in kAuditMaxRecordBytes
// (many fields), its last fields are left out and "cut_fields":"K" says how
// many. Writer and Verify() share kAuditMaxRecordBytes: whatever the writer
// writes, Verify() accepts. The ATNA export gets the same bounded values.
//
// Repeated refusals (RecordRefusal): the first refusal of an address for a
// reason is recorded as any record; further ones within
// Options::refusal_window_ms of it are only counted, and when the window
// ends (the syncer thread looks every second; a later refusal of the same
// key; at the latest when the log is closed) one summary record says how
// many:
//   {...,"kind":K,"address":"10.0.0.5",<the key fields of the first>,
//    "repeated":"19","since":"<time of the first>","until":"<time of the last>",
//    "first_seq":"<seq of the first>",...}
// i.e. "19 more refusals from 10.0.0.5 since <time>". The count is exact:
// every refusal is either a record of its own or counted in one summary.
// At most kAuditMaxRefusalWindows windows are open; a new key beyond that
// ends the oldest window early (its summary is written at once).
//
// Failure policy: a failed write is logged (once per failure streak) and
// counted, and Record() returns false. Whether intake goes on is the
// receiver's decision ([audit] on_failure, rules/rules.h): by default it
// refuses C-STOREs with 0xA700 while the trail is failing (fail closed;
// router/receive/association.cc); with "continue" routing goes on.
#ifndef RELAIS_ROUTER_RECORD_AUDIT_H_
#define RELAIS_ROUTER_RECORD_AUDIT_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"

namespace relais::router {

class AtnaExporter;
class FileLock;  // audit.cc

// The longest value a record holds, as written (JSON-escaped, the cut
// marker included). See Bounds above.
inline constexpr size_t kAuditMaxFieldBytes = 1024;
// The longest key or kind, as written.
inline constexpr size_t kAuditMaxKeyBytes = 64;
// The longest record line (without its '\n'). The writer never writes a
// longer one and Verify() rejects a longer one: one constant for both.
inline constexpr size_t kAuditMaxRecordBytes = 64 * 1024;
// Refusal windows open at once (RecordRefusal).
inline constexpr size_t kAuditMaxRefusalWindows = 256;

// `value` unchanged if its JSON-escaped form fits in `max_bytes`; else its
// longest prefix that ends on a character boundary (bytes that are not
// valid UTF-8 count one by one) followed by "...[cut, N bytes]", the two
// together fitting in `max_bytes` escaped (when even the marker does not
// fit, the marker alone).
std::string AuditCut(std::string_view value, size_t max_bytes = kAuditMaxFieldBytes);

// The address part of a peer name: "10.0.0.5:4711" -> "10.0.0.5",
// "[::1]:4711" -> "::1"; anything else unchanged.
std::string_view AuditAddressOf(std::string_view peer);

class AuditLog {
 public:
  using Field = std::pair<std::string_view, std::string_view>;

  // Opens (creating it, mode 0640) the audit file at `path` and continues
  // its chain from the last complete record. Errors: IOError if the file
  // cannot be opened, read or written.
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& path);

  struct Options {
    // Start a new file once the current one reaches this many bytes (see
    // Rotation above); 0 = never. Default: 0.
    uint64_t rotate_size = 0;
    // "udp://HOST:PORT" (RFC 5426) or "tcp://HOST:PORT" (RFC 6587): send
    // every record as an ATNA message there. Empty = none. Default: empty.
    std::string syslog;
    // Our AE title (listener), named in ATNA messages. Default: "RELAIS".
    std::string ae_title = "RELAIS";
    // Our AE title towards destinations; empty = ae_title. Default: empty.
    std::string calling_ae_title;
    // Repeated refusals of one address for one reason within this many ms
    // of the first are counted into one summary record (RecordRefusal);
    // 0 = every refusal is a record of its own. Default: 60000.
    int64_t refusal_window_ms = 60000;
    // The clock (Unix ms) for record times and refusal windows; empty = the
    // system clock. Tests set a fake one. Default: empty.
    std::function<int64_t()> clock;
  };
  // As Open(path), with rotation and ATNA export. Errors: also
  // InvalidArgument for a syslog value that is not udp:// or tcp://HOST:PORT
  // (an unreachable collector is not an error).
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& path, const Options& options);
  // Flushes (fdatasync) and closes.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record of `kind` with `fields` (keys must not be "seq",
  // "time", "kind", "prev" or "hash"; values are escaped). Any thread; one
  // write(2), never an fsync on the caller's thread. Returns false when the
  // record did not reach the file (see Failure policy); callers that must
  // not go on unaudited ([audit] on_failure = "refuse") check it.
  bool Record(std::string_view kind, std::initializer_list<Field> fields);
  // The same, for fields chosen at run time.
  bool Record(std::string_view kind, std::span<const Field> fields);
  // True while the trail is failing: the last write to the file did not
  // make it whole. Cleared by the next record that is written. Any thread.
  bool failing() const;

  // A refusal that may come again and again (a missing or wrong admin
  // token): recorded as Record(kind, fields) when it is the first of
  // (kind, `address`, the values of the fields named in `key`) within
  // Options::refusal_window_ms, else only counted into that window's
  // summary record (see Repeated refusals above). `address` is who was
  // refused, without a port (AuditAddressOf). Any thread.
  // REQUIRES: every name in `key` is a key of `fields`.
  void RecordRefusal(std::string_view kind, std::string_view address, std::initializer_list<Field> fields,
                     std::initializer_list<std::string_view> key);

  uint64_t records_written() const;
  uint64_t write_failures() const;
  uint64_t rotations() const;     // files started by rotation since Open
  uint64_t atna_sent() const;     // ATNA messages sent; 0 without syslog
  uint64_t atna_dropped() const;  // ATNA messages dropped; 0 without syslog

  struct VerifyReport {
    uint64_t records = 0;   // records checked and found intact
    uint64_t bad_line = 0;  // 1-based line of the first broken link; 0 = intact
    std::string error;      // why that line is broken
    std::string bad_file;   // the file holding bad_line (Verify of several files)
    uint64_t files = 0;     // files checked
    // Set when the first file continues a file that was not given (its
    // first record is a "rotated" segment): that link was not checked.
    std::string note;
  };
  // Checks every record of the file at `path`: well-formed, its hash, its
  // link to the previous record, its seq. Stops at the first broken link.
  // Errors: IOError/NotFound if the file cannot be read (a broken chain is
  // not an error: see VerifyReport).
  static Result<VerifyReport> Verify(const std::string& path);
  // Checks `paths` in order as one chain: each file as above, and each
  // file after the first must start with the "rotated" segment record that
  // links to the last record of the file before it (same hash, next seq).
  // A missing, reordered, replaced or cut file breaks that link, reported
  // at line 1 of the file after the gap (or where the cut file breaks).
  // Errors: IOError/NotFound if a file cannot be read; InvalidArgument
  // for an empty list.
  static Result<VerifyReport> Verify(const std::vector<std::string>& paths);

  // Lowercase hex SHA-256 of `bytes` (exposed for tests).
  static std::string Sha256Hex(std::string_view bytes);

 private:
  // A record's fields, already bounded (see Bounds).
  using Fields = std::vector<std::pair<std::string, std::string>>;
  // One open window of RecordRefusal.
  struct RefusalWindow {
    std::string kind;
    Fields summary;        // "address" and the key fields of the first refusal
    int64_t since_ms = 0;  // the first refusal (recorded)
    int64_t until_ms = 0;  // the last refusal counted
    uint64_t first_seq = 0;
    uint64_t count = 0;  // refusals counted, not recorded
  };

  AuditLog(int fd, std::string path, Options options);
  int64_t Now() const;
  // Reads the end of the file: sets prev_hash_, seq_ and torn_bytes_ (the
  // bytes after the last '\n'); `reason` says what was found.
  Status LoadTailLocked(std::string* reason);
  // Writes one record of bounded fields (after a '\n' that ends a torn
  // line if `lead_newline`). False if it did not make it whole.
  // `unix_ms` is the record's time; 0 = now.
  // With `follow_path` (all but a rotation's own first record), first
  // moves to the file now at the path when it is no longer the one open.
  bool WriteLocked(std::string_view kind, const Fields& fields, bool lead_newline, int64_t unix_ms,
                   bool follow_path = true);
  // Under the file lock: when the path names another file than the one
  // open (rotated by another process), opens it and takes its lock instead.
  void FollowPathLocked(FileLock* file_lock);
  // Record() under mu_, for bounded fields; returns the record's seq (0 if
  // the file could not be read back after a torn write). `unix_ms` is the
  // record's time (0: now).
  uint64_t RecordLocked(std::string_view kind, const Fields& fields, int64_t unix_ms = 0);
  // Writes the summary of every window that has ended by `now_ms` (all of
  // them if `all`) and closes them.
  void FlushRefusalsLocked(int64_t now_ms, bool all);
  void WriteSummaryLocked(const RefusalWindow& w);
  void SyncLoop();
  // Called under the file lock before a record is composed: when the file
  // grew since our last write (another process), reloads the tail (seq_,
  // prev_hash_, size_) and sets *lead_newline if it ends in a torn line.
  void FollowOthersLocked(bool* lead_newline);
  // Renames the full file away and starts the next one (see Rotation).
  void RotateLocked();
  // Hands the record just written (or attempted) to the ATNA exporter.
  void ExportLocked(std::string_view kind, const Fields& fields, uint64_t seq, int64_t unix_ms);

  int fd_;  // guarded by mu_ (changes on rotation)
  const std::string path_;
  const Options options_;
  std::unique_ptr<AtnaExporter> atna_;  // null without syslog
  mutable std::mutex mu_;
  uint64_t size_ = 0;             // guarded by mu_: bytes in the current file
  uint64_t rotate_at_ = 0;        // guarded by mu_: rotate when size_ reaches this; 0 = never
  bool rotating_ = false;         // guarded by mu_
  uint64_t rotations_ = 0;        // guarded by mu_
  std::vector<int> retired_fds_;  // guarded by mu_: rotated-away files, synced and closed by the syncer
  bool dir_dirty_ = false;        // guarded by mu_: a rename to fsync the directory for
  std::string prev_hash_;         // guarded by mu_
  uint64_t seq_ = 0;              // guarded by mu_
  uint64_t torn_bytes_ = 0;       // guarded by mu_
  bool resync_ = false;           // guarded by mu_: a write of ours was cut short
  bool failing_ = false;          // guarded by mu_
  uint64_t written_ = 0;          // guarded by mu_
  uint64_t failures_ = 0;         // guarded by mu_
  bool dirty_ = false;            // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  // Open refusal windows by key (kind, address, key values); guarded by mu_.
  std::map<std::string, RefusalWindow> refusals_;
  std::condition_variable cv_;
  std::thread syncer_;
};

// `relais audit verify FILE`: prints "OK: N records" (returns 0) or
// "FILE:LINE: why" for the first broken link (returns 1).
int AuditVerifyCommand(const std::string& path);
// `relais audit verify FILE...`: the files in order as one chain (see
// Verify(paths)); prints "OK: N records in K files" or "FILE:LINE: why".
// Returns 0 intact, 1 broken, 2 unreadable.
int AuditVerifyCommand(const std::vector<std::string>& paths);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECORD_AUDIT_H_
