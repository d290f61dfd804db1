// The Relais object store: DICOM objects kept durably in LMDB as
// zstd-compressed chunks plus one metadata row each. The on-disk format is
// specified in store/FORMAT.md.
//
// Threads. A Store owns one writer thread (the only LMDB writer; it batches
// many operations into one commit: group commit) and a small pool of
// compression threads. Public methods may be called from any thread unless a
// comment says otherwise. Completion callbacks run on the store's writer
// thread: they must be quick and must not call back into the Store's
// blocking methods (post to your own loop instead).
//
// Readers (List, Find, ReadObject) use LMDB read transactions and work from
// another process while `relais serve` runs (open with read_only = true).
#ifndef RELAIS_STORE_STORE_H_
#define RELAIS_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace relais::store {

struct Options {
  // Directory that holds the LMDB environment; created if missing.
  std::string path;
  // Upper bound of the store size in bytes (the LMDB map size). When a commit
  // does not fit, the object is refused with ResourceExhausted. The same
  // holds when the disk under the store fills first (ENOSPC, EDQUOT, or EIO
  // while LMDB writes its pages): the objects of the failed commit get
  // ResourceExhausted, everything committed before stays intact, and the
  // next commit that fits succeeds (no reopen needed). Default: 64 GiB.
  uint64_t max_size = 64ull << 30;
  // Open without the writer thread, for the CLI and other processes.
  // Default: false.
  bool read_only = false;
  // zstd level for chunks; 0 stores chunks uncompressed. Negative levels are
  // zstd's fast modes. With compression_auto, the level the adaptive policy
  // starts from. Default: 1.
  int compression_level = 1;
  // Adaptive level (store/compression_level.h): one step faster while
  // chunks wait for the compression threads, one step stronger while they
  // keep up with room to spare, within [compression_level_min,
  // compression_level_max] (0 skipped). Ignored when compression_level is 0.
  // Default: false (a fixed level); `relais serve` defaults to true.
  bool compression_auto = false;
  int compression_level_min = -1;  // Default: -1
  int compression_level_max = 1;   // Default: 1
  // Number of compression threads. Default: 2.
  int compression_threads = 2;
  // Raw bytes per chunk. Smaller chunks compress in parallel, and while the
  // rest of the object arrives. Default: 256 KiB.
  size_t chunk_size = 256 << 10;
  // Most operations batched into one commit. Default: 256.
  size_t max_batch = 256;
  // Open read-write WITHOUT the writer thread and without crash recovery,
  // for admin commands (`relais queue retry/purge`) that change queue rows
  // while `relais serve` may be running on the same store: LMDB serializes
  // the two processes' write transactions. NewObject is not available;
  // UpdateQueue applies its updates in one synchronous write transaction
  // (and calls `done` before returning). Ignored when read_only is set.
  // Default: false.
  bool admin = false;
  // How long an object whose queue rows are all finished (delivered, or
  // purged) is kept for re-sends before it is removed; 0 removes it in the
  // transaction that finishes its last row. Objects with dead-letter rows are
  // always kept. Removal of retained objects happens in Sweep(). Default: 0.
  int64_t retention_ms = 0;
  // How long the other classes of objects are kept (FORMAT.md "Lifecycle"),
  // counted from the moment an object entered its class; Sweep() removes
  // them. A negative value keeps them until an admin removes them. The
  // store's defaults keep everything; `relais serve` passes the [delivery]
  // retentions of its config (README: 7 days, 30 days, 0).
  //
  // Objects no rule matched (routing "unrouted", or stored without rules
  // and without routes). Default: -1.
  int64_t unrouted_retention_ms = -1;
  // Objects whose every remaining row is a dead letter, from the moment the
  // last live row died. At expiry their dead rows are purged and the object
  // removed. Default: -1.
  int64_t dead_retention_ms = -1;
  // Objects a drop rule caught (routing "dropped"). 0 stores nothing: the
  // object is acknowledged and its chunks removed in its own commit.
  // Default: -1.
  int64_t dropped_retention_ms = -1;
  // How long a study's delivery history (FORMAT.md `history`) is kept after
  // its last change; Sweep() removes older studies. Negative keeps it.
  // Default: 365 days.
  int64_t history_retention_ms = 365LL * 24 * 3600 * 1000;
  // The wall clock used to stamp class changes, dead letters and `done`
  // rows (tests pass a fake one). Default: NowUnixMs.
  std::function<int64_t()> clock;
};

// Which owner keeps a stored object (FORMAT.md "Lifecycle"). Every object is
// in exactly one class; the numbers are the class byte on disk.
enum class ObjectClass : uint8_t {
  kNone = 0,       // not classified (a store written before the lifecycle, opened read-only)
  kQueued = 1,     // has live queue rows: goes with them
  kDead = 2,       // only dead-letter rows left: kept for dead_retention_ms
  kDelivered = 3,  // all rows finished: kept for retention_ms
  kUnrouted = 4,   // no rule matched: kept for unrouted_retention_ms
  kDropped = 5,    // a drop rule matched: kept for dropped_retention_ms
};
inline constexpr size_t kObjectClassCount = 6;  // including kNone
// "queued", "dead", "delivered", "unrouted", "dropped" ("unknown" for kNone).
const char* ObjectClassName(ObjectClass c);
// The inverse of ObjectClassName for the five real classes; false otherwise.
bool ParseObjectClass(std::string_view name, ObjectClass* out);

// The retentions of Options, in ms (negative: never expires), as one value:
// what Store::SetRetentions changes while the store runs.
struct Retentions {
  int64_t delivered_ms = 0;  // Options::retention_ms
  int64_t unrouted_ms = -1;  // Options::unrouted_retention_ms
  int64_t dead_ms = -1;      // Options::dead_retention_ms
  int64_t dropped_ms = -1;   // Options::dropped_retention_ms
  int64_t history_ms = -1;   // Options::history_retention_ms: a study's history, from its last change
  static Retentions From(const Options& o) {
    return Retentions{o.retention_ms, o.unrouted_retention_ms, o.dead_retention_ms, o.dropped_retention_ms,
                      o.history_retention_ms};
  }
  bool operator==(const Retentions&) const = default;
  // The retention of class `c`; -1 for kQueued and kNone.
  int64_t For(ObjectClass c) const;
};

// An object Sweep removed because its class's retention ran out.
struct ExpiredObject {
  uint64_t id = 0;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  ObjectClass object_class = ObjectClass::kNone;
  int64_t since_unix_ms = 0;                   // when it entered its class
  std::vector<std::string> dead_destinations;  // kDead: the destinations that gave up
};

// An object's class, since when, and when Sweep will remove it.
struct ObjectLife {
  ObjectClass object_class = ObjectClass::kNone;
  int64_t since_unix_ms = 0;
  // since + the class's current retention; -1 when it does not expire by
  // time (queued: it goes with its queue rows; or a negative retention).
  int64_t expires_unix_ms = -1;
};

// A destination's policy for an object received again (same SOP Instance
// UID) after it was delivered there (FORMAT.md `delivered`).
enum class Resend : uint8_t {
  kAlways,     // queue it again
  kNever,      // not again within the window
  kIfChanged,  // again only when its checksum differs from what was delivered
};

// One destination an object must reach, decided by the rules when it was
// received. Becomes a queue row (see FORMAT.md) in the object's commit,
// unless its resend policy suppresses it.
struct Route {
  std::string destination;  // destination name
  int32_t priority = 0;     // higher is delivered first
  std::string rule;         // the rule that asked for it
  std::string edits;        // tag edits to apply when sending (rules::EncodeEdits text)
  // Used at the object's commit only, not kept in its record: a delivery of
  // this SOP Instance UID to this destination at or after
  // received_unix_ms - resend_window_ms suppresses the row (kNever), or does
  // so when it had the same checksum (kIfChanged). Default: kAlways.
  Resend resend = Resend::kAlways;
  int64_t resend_window_ms = 0;
};

// One stored object. Strings are as received, padding removed.
struct ObjectMeta {
  uint64_t id = 0;  // assigned by the store, increasing
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string patient_id;
  std::string modality;
  // Not in the object record: kept only in the study's delivery history
  // (FORMAT.md `history`). Patient Name decoded to UTF-8 (DICOM PN, with
  // its ^ separators), Accession Number, Study Date (YYYYMMDD).
  std::string patient_name;
  std::string accession_number;
  std::string study_date;
  std::string transfer_syntax_uid;  // of the stored data set bytes
  uint64_t raw_size = 0;            // data set bytes as received
  uint64_t stored_size = 0;         // bytes of all chunks on disk
  uint32_t chunk_count = 0;
  int64_t received_unix_ms = 0;
  std::string calling_ae;
  std::string called_ae;
  std::string peer_address;  // "ip:port"
  uint64_t checksum = 0;     // XXH3-64 of the raw data set bytes
  // Routing decision, made before the commit: "routed", "unrouted" (no rule
  // matched; kept) or "dropped" (a drop rule matched; kept, not queued).
  // Empty for objects stored without rules.
  std::string routing;
  std::vector<std::string> matched_rules;
  std::vector<Route> routes;  // one queue row each
  // Not stored: set by the store for the commit callback when this object
  // was identical (same size and checksum) to the stored object with this
  // id and was not kept (FORMAT.md `uid`). 0 otherwise.
  uint64_t duplicate_of = 0;
  // Not stored: set by the store for the commit callback: the destinations
  // whose rows its resend policy suppressed (see Route), in route order.
  std::vector<std::string> suppressed;
};

// What happened to one study at one destination (FORMAT.md `history`).
struct StudyDestination {
  std::string destination;
  uint32_t queued = 0;    // rows waiting now
  uint32_t sent = 0;      // objects delivered
  uint32_t dead = 0;      // dead-letter rows now
  uint32_t attempts = 0;  // attempts of the delivered and dead-lettered rows
  int64_t last_sent_unix_ms = 0;
  int64_t last_dead_unix_ms = 0;
  std::string last_dead_reason;
};

// The delivery history of one study: outlives its objects' retention.
struct StudyHistory {
  std::string study_instance_uid;
  std::string patient_id;
  std::string patient_name;  // UTF-8
  std::string accession_number;
  std::string study_date;  // YYYYMMDD as received
  std::vector<std::string> modalities;
  std::vector<std::string> calling_aes;
  int64_t first_received_unix_ms = 0;
  int64_t last_received_unix_ms = 0;
  int64_t last_change_unix_ms = 0;  // retention counts from here
  uint32_t objects = 0;             // objects committed
  std::vector<StudyDestination> destinations;
};

// A row of a destination's delivery queue, or of its dead-letter list.
struct QueueRow {
  std::string destination;
  int32_t priority = 0;
  uint64_t object_id = 0;
  uint32_t attempts = 0;
  int64_t next_attempt_unix_ms = 0;
  std::string rule;
  std::string edits;
  // Result of the last failed attempt (0 / empty before any failure).
  uint16_t last_status = 0;
  std::string last_error;
  // Dead-letter rows only: when delivery gave up (0 for live rows).
  int64_t dead_unix_ms = 0;
  // When the row entered the queue, if not at its object's commit: set when
  // an admin creates it (kResend, kRoute) or moves it back from the dead
  // letters. 0: at the commit (use the object's received_unix_ms).
  int64_t queued_unix_ms = 0;
};

// One delivery attempt of one object to one destination (the attempt log).
struct Attempt {
  uint64_t object_id = 0;
  int64_t unix_ms = 0;  // when the attempt ended
  std::string destination;
  std::string association;  // the association's log name, e.g. "S12 ARCHIVE@10.0.0.5:104"
  // "success", "warning", "retry" (transient failure, will try again),
  // "dead" (permanent failure or retry limit: moved to dead letter),
  // "requeued" (admin retry of a dead letter), "purged", "suppressed" (not
  // queued at the object's commit: the destination's resend policy; the
  // error says why).
  std::string result;
  uint16_t status = 0;  // DIMSE status when there was a response, else 0
  std::string error;    // human-readable reason ("" on success)
};

// The rule name of a route an admin added (QueueUpdate::kRoute).
inline constexpr char kManualRule[] = "(manual)";

// A change to one queue row, applied by Store::UpdateQueue. The row is
// identified by (destination, priority, object_id).
struct QueueUpdate {
  enum class Kind {
    // Delivered: delete the live row. If no live or dead row of the object
    // remains, the object is removed (or retained, see Options::retention_ms).
    kDelivered,
    // Transient failure: set attempts, next_attempt_unix_ms, last_status and
    // last_error of the live row.
    kRetryLater,
    // Give up: move the live row to the dead-letter list with attempts,
    // last_status, last_error and dead_unix_ms = now.
    kDeadLetter,
    // Admin retry: move a dead row back to the live queue (attempts kept,
    // next_attempt 0), or make a live row due now (next_attempt 0).
    kRequeue,
    // Admin purge: delete the row, live or dead; the object is removed like
    // after kDelivered when nothing refers to it any more.
    kPurge,
    // Admin re-send: like kRequeue, and when the row no longer exists (the
    // object was delivered and is kept for retention) a live row is created
    // again from the object's route to that destination (its rule and
    // edits). Skipped when the object or that route does not exist.
    kResend,
    // Admin re-route (`relais route`): send the object to `destination`
    // whether or not a rule asked for it. When the object's record has no
    // route to (destination, priority) one is appended (rule "(manual)", no
    // edits); then the row is made live and due now as by kResend (a live
    // row is only made due, a dead one requeued). The object goes back to
    // the queued class. Skipped when the object does not exist.
    kRoute,
  };
  Kind kind = Kind::kDelivered;
  std::string destination;
  int32_t priority = 0;
  uint64_t object_id = 0;
  uint32_t attempts = 0;             // kRetryLater, kDeadLetter
  int64_t next_attempt_unix_ms = 0;  // kRetryLater
  uint16_t status = 0;               // kRetryLater, kDeadLetter: last_status
  std::string error;                 // kRetryLater, kDeadLetter: last_error
  // Appended to the attempt log in the same transaction when set
  // (object_id and destination are taken from the update).
  bool log_attempt = false;
  Attempt attempt;
  // The caller can wait for durability: the store may hold the update (at
  // most 100 ms, the writer's hold of chunks) so that it shares a later
  // commit instead of costing one (two fsyncs) of its own; `done` is called
  // after that commit as always. Delivery sets it on kDelivered, whose
  // sender has already moved on: a crash before the commit sends the object
  // again, never loses it. Default: false (committed as soon as possible).
  bool can_wait = false;
};

// Called when an operation is durable (or failed). Runs on the writer thread.
using DoneCallback = std::function<void(Status status, const ObjectMeta& meta)>;

class Store;

// Receives one object's data set bytes in order, then commits or aborts it.
// Created by Store::NewObject(); used from one thread at a time. Chunks are
// compressed and written (as a pending object) while the object streams in,
// so memory stays bounded whatever the object size.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  // Appends data set bytes. Full chunks are handed to the store at once.
  virtual void Append(std::span<const uint8_t> data) = 0;
  // Bytes handed to the store and not yet committed. A producer should stop
  // reading its input while this is above its budget (back-pressure); see
  // Store::SetProgressCallback.
  virtual uint64_t UncommittedBytes() const = 0;
  // Tells the store where the object's pixel samples start: `offset`, the
  // data set byte where the Pixel Data value begins, and `sample_bytes`
  // (Bits Allocated / 8 of native pixel data: 2, 4 or 8; anything else, or
  // encapsulated pixel data, means none). Chunks holding bytes from
  // `offset` on are byte-shuffled by sample before compression (FORMAT.md
  // "chunks"), which compresses 16-bit images much better and faster.
  // Optional; call before appending the pixel bytes (chunks already handed
  // to the store stay unshuffled, which is equally exact).
  virtual void SetPixelLayout(uint64_t /*offset*/, uint32_t /*sample_bytes*/) {}
  // Flushes the last chunk and commits the object: its metadata, all its
  // chunks and the SOP Instance UID index become durable in one commit
  // (fsync'd) before `done` is called with OK. `meta.id`, sizes, chunk_count
  // and checksum are filled in by the store. A previous object with the same
  // SOP Instance UID is replaced in the same commit (see FORMAT.md).
  // After Finish the writer must not be used again (it may be destroyed).
  virtual void Finish(ObjectMeta meta, DoneCallback done) = 0;
  // Drops the object and whatever of it was written. Safe to call instead
  // of Finish at any time; the writer must not be used afterwards.
  virtual void Abort() = 0;
};

// Reads one stored object chunk by chunk (for senders that stream at the
// pace of their peer). Each Next uses its own short read transaction, so a
// slow reader does not pin old pages. Used from one thread at a time; must
// not outlive its Store.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  virtual const ObjectMeta& meta() const = 0;
  // Replaces *out with the next chunk's raw bytes. After the last chunk
  // (*done set) the total size and checksum have been verified: Corruption
  // if they differ; NotFound if the object was replaced meanwhile.
  virtual Status Next(std::vector<uint8_t>* out, bool* done) = 0;
};

// What Store::Verify found. A problem names the object (id and SOP Instance
// UID when known) and what is wrong, in words an admin can act on.
struct VerifyProblem {
  uint64_t object_id = 0;        // 0 when the problem is not one object's
  std::string sop_instance_uid;  // "" when unknown
  std::string what;
  // The object's bytes cannot be read back as they were received (a chunk
  // missing or damaged, a size or checksum mismatch, a record that does not
  // decode): `--repair` quarantines such objects.
  bool unreadable = false;
};
struct VerifyReport {
  uint64_t objects = 0;    // object records read
  uint64_t chunks = 0;     // chunk rows read
  uint64_t raw_bytes = 0;  // data set bytes read back and checksummed
  uint64_t uid_rows = 0;
  uint64_t queue_rows = 0;
  uint64_t dead_rows = 0;
  uint64_t done_rows = 0;
  uint64_t attempt_rows = 0;
  uint64_t life_rows = 0;  // lifecycle rows (FORMAT.md "Lifecycle")
  uint64_t delivered_rows = 0;
  uint64_t pending_objects = 0;  // partial objects (removed at the next start); not a problem
  uint64_t problem_count = 0;    // all problems found
  // The first kMaxListed of them.
  static constexpr size_t kMaxListed = 1000;
  std::vector<VerifyProblem> problems;
  bool ok() const { return problem_count == 0; }
};
// What Store::Repair did.
struct RepairReport {
  VerifyReport before;        // what verify found first
  uint64_t quarantined = 0;   // unreadable objects moved to the quarantine list
  uint64_t rows_removed = 0;  // orphan chunks, index rows and attempt rows removed
  bool totals_fixed = false;  // meta raw_bytes / stored_bytes were recomputed
  VerifyReport after;         // verify again, after the repair
};
// What one Store::Scrub call checked.
struct ScrubBatch {
  uint64_t objects = 0;    // objects checked
  uint64_t raw_bytes = 0;  // data set bytes read back and checksummed
  // Objects that cannot be read back as received (unreadable = true).
  std::vector<VerifyProblem> damaged;
  // Where the next call starts: the id after the last object checked, or 0
  // when this batch reached the last object (the next starts from the first).
  uint64_t next_id = 0;
  bool wrapped = false;  // this batch reached the end of the store
};
// An object that could not be read back, taken out of the store by Repair.
struct QuarantineEntry {
  uint64_t object_id = 0;
  int64_t quarantined_unix_ms = 0;
  std::string reason;  // what verify found
  ObjectMeta meta;     // its record, when it still decodes (else only id)
};
// How far Verify is: objects checked of the total, and bytes read.
struct VerifyProgress {
  uint64_t objects_done = 0;
  uint64_t objects_total = 0;
  uint64_t raw_bytes = 0;
};

// What a backup directory holds, from its manifest DIR/relais-backup.json
// (written by Store::Backup; see FORMAT.md "Backups").
struct BackupInfo {
  uint32_t manifest_version = 0;  // version of the manifest itself (1)
  uint32_t format_version = 0;    // store format version of data.mdb
  uint64_t objects = 0;           // objects in the copy
  uint64_t raw_bytes = 0;         // sum of their raw sizes
  uint64_t stored_bytes = 0;      // sum of their stored sizes
  uint64_t file_bytes = 0;        // size of DIR/data.mdb
  uint64_t file_xxh3 = 0;         // XXH3-64 (seed 0) of DIR/data.mdb
  int64_t created_unix_ms = 0;    // when the copy was taken
  std::string source_path;        // the store it was taken from
};

class Store {
 public:
  // Opens (creating if needed) the store at options.path. Checks the format
  // version; removes partial objects left by a crash (read-write only).
  static Result<std::unique_ptr<Store>> Open(const Options& options);

  virtual ~Store() = default;  // drains pending operations, stops threads

  // REQUIRES: opened read-write.
  virtual std::unique_ptr<ObjectWriter> NewObject() = 0;

  // Called (on the writer thread) after every commit; lets a producer that
  // stopped for back-pressure resume. Set once, before use.
  virtual void SetProgressCallback(std::function<void()> cb) = 0;

  // Lists objects in id order; stop early by returning false.
  virtual Status List(const std::function<bool(const ObjectMeta&)>& fn) const = 0;
  // Lists queue rows: by destination name, then priority (highest first),
  // then arrival. Stop early by returning false.
  virtual Status ListQueue(const std::function<bool(const QueueRow&)>& fn) const = 0;
  // Lists one destination's live rows, priority (highest first) then
  // arrival, in one read transaction. Stop early by returning false.
  virtual Status ListQueue(const std::string& destination, const std::function<bool(const QueueRow&)>& fn) const = 0;
  // Lists dead-letter rows, ordered like ListQueue.
  virtual Status ListDead(const std::function<bool(const QueueRow&)>& fn) const = 0;
  // Lists the attempt log of one object, oldest first.
  virtual Status ListAttempts(uint64_t object_id, const std::function<bool(const Attempt&)>& fn) const = 0;
  // The object with this id, or NotFound.
  virtual Result<ObjectMeta> Get(uint64_t id) const = 0;

  // Applies queue updates in one transaction (group-committed with whatever
  // else the writer has queued; durable before `done` runs, on the writer
  // thread; synchronously in admin mode). An update whose row does not exist
  // (already delivered, purged, or its object replaced) is skipped, not an
  // error: delivery is at-least-once and rows may vanish under a sender.
  // REQUIRES: opened read-write or admin.
  virtual void UpdateQueue(std::vector<QueueUpdate> updates, std::function<void(Status)> done) = 0;
  // Removes the objects whose class's retention ran out at now_unix_ms
  // (FORMAT.md "Lifecycle": delivered, unrouted, dropped and dead objects,
  // each class with its Options retention, counted from when the object
  // entered it), and their attempt logs; dead letters have their dead rows
  // purged. Costs the objects removed, not a scan of the store. Runs in
  // transactions of at most 1000 objects. Asynchronous like UpdateQueue.
  // REQUIRES: opened read-write.
  virtual void Sweep(int64_t now_unix_ms, std::function<void(Status)> done) = 0;
  // Replaces the retentions of Options while the store runs (SIGHUP). The
  // writer applies them as a write operation, between two transactions in
  // the order of everything queued: the next Sweep removes by the new ones
  // (an object whose new retention already ran out goes at once). `done`
  // runs on the writer thread once they are in force (at once in admin or
  // read-only mode, where only this Store's readers use them).
  virtual void SetRetentions(const Retentions& retentions, std::function<void(Status)> done) = 0;
  // The retentions in force (Options, or the last SetRetentions).
  virtual Retentions GetRetentions() const = 0;
  // Called on the writer thread after each commit of a Sweep that removed
  // objects, with those objects (their records and attempt logs are gone:
  // this is what tells of them, e.g. to the audit trail). Dropped objects
  // that were never kept (dropped_retention_ms 0) are not reported. Set
  // once, before use; must be quick.
  virtual void SetExpiryCallback(std::function<void(const std::vector<ExpiredObject>&)> cb) = 0;
  // Called on the writer thread after each commit that added queue rows
  // (new objects routed to destinations), with the destinations concerned.
  // Lets the delivery scheduler wake up. Set once, before use.
  virtual void SetQueueCallback(std::function<void(const std::vector<std::string>&)> cb) = 0;
  // The object with this SOP Instance UID, or NotFound.
  virtual Result<ObjectMeta> Find(const std::string& sop_instance_uid) const = 0;
  // Calls fn for each study of the delivery history, in study UID order,
  // until it returns false (a scan: one row per study and destination).
  // Nothing on a store without the `history` database (read-only, older).
  virtual Status ListStudies(const std::function<bool(const StudyHistory&)>& fn) const = 0;
  // The delivery history record of one study (without its destinations:
  // `destinations` is empty), or NotFound: no such study, no study UID kept
  // (longer than 64 characters), or a store without the `history` database.
  // One lookup; the delivery scheduler reads last_received_unix_ms for
  // hold_study.
  virtual Result<StudyHistory> FindStudy(const std::string& study_instance_uid) const = 0;
  // Streams the raw data set bytes of object `id` to `sink`, chunk by chunk,
  // verifying the checksum at the end (Corruption if it differs).
  virtual Status ReadObject(uint64_t id, const std::function<Status(std::span<const uint8_t>)>& sink) const = 0;
  // Opens object `id` for chunk-by-chunk reading, or NotFound.
  virtual Result<std::unique_ptr<ObjectReader>> OpenObject(uint64_t id) const = 0;
  // Writes the object as a DICOM Part 10 file: preamble, "DICM", File Meta
  // Information (transfer syntax, SOP class/instance, implementation UID),
  // then the data set bytes exactly as received.
  virtual Status ExportPart10(const std::string& sop_instance_uid, const std::string& out_path) const = 0;

  struct Stats {
    uint64_t objects = 0;
    uint64_t raw_bytes = 0;
    uint64_t stored_bytes = 0;
    uint64_t commits = 0;  // since open
    uint64_t map_used_bytes = 0;
    uint64_t map_size = 0;
    uint64_t queue_rows = 0;  // live rows, all destinations
    uint64_t dead_rows = 0;
    // Bytes of LMDB pages holding data: map_used_bytes minus the pages on
    // LMDB's free list (reused before the file grows). Falls as delivered
    // objects are removed, unlike map_used_bytes (the file's high-water).
    uint64_t used_bytes = 0;
    uint64_t file_bytes = 0;  // size of data.mdb on disk
    // LMDB syncs the data pages, then the meta page: 2 fsyncs per commit.
    uint64_t fsyncs = 0;  // since open
    // Group commit: operations per commit, counted in buckets of at most
    // kBatchBuckets[i] operations (the last bucket takes the rest).
    static constexpr uint32_t kBatchBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    uint64_t batch_count[std::size(kBatchBuckets) + 1] = {};
    uint64_t batch_ops = 0;  // sum of operations over all commits
    // Per ObjectClass (index = class byte; kNone counts nothing): objects
    // and their stored bytes, from `meta` (maintained by every commit).
    uint64_t class_objects[kObjectClassCount] = {};
    uint64_t class_stored_bytes[kObjectClassCount] = {};
    // Objects removed because their class's retention ran out, since open
    // (dropped objects not kept at all count here too).
    uint64_t expired[kObjectClassCount] = {};
    // zstd level of the latest chunk compressed (the adaptive level), or the
    // configured level; 0 when chunks are stored uncompressed.
    int compression_level = 0;
  };
  virtual Stats GetStats() const = 0;

  // Per destination: live rows, dead rows and the oldest live row's
  // received time, in destination order, from one read transaction.
  // Reads every queue key (about 100 ns each): callers cache it.
  struct QueueSummary {
    std::string destination;
    uint64_t rows = 0;
    uint64_t dead_rows = 0;
    int64_t oldest_received_unix_ms = 0;  // of the live rows; 0: none
    // The longest a live row has been in the queue: its QueueRow::
    // queued_unix_ms, or its object's received time. 0: none.
    int64_t oldest_queued_unix_ms = 0;
  };
  virtual Result<std::vector<QueueSummary>> SummarizeQueues() const = 0;

  // Checks the whole store (FORMAT.md "Verification"): reads every object
  // back and checks its chunks, sizes and checksum; checks that every index
  // and row agrees with the objects (uid, queue, dead, done, attempts,
  // chunks, the byte totals). Works on a read-only open, while `relais serve`
  // runs: it reads one consistent snapshot (one read transaction, so the
  // file may grow while it runs on a busy store). `progress`, when set, is
  // called from the calling thread about once a second and at the end.
  // Returns the report (problems are in it, not in the Status); a non-OK
  // Status only when the walk itself could not run.
  virtual Result<VerifyReport> Verify(const std::function<void(const VerifyProgress&)>& progress) const = 0;

  // Verify, then repair what it found, then verify again. An unreadable
  // object is moved to the quarantine list (its record and the reason are
  // kept there; its chunks, index rows, queue rows and attempt log are
  // removed: nothing will try to send it). Orphan chunks, uid, queue, dead,
  // done and attempt rows are removed, and the byte totals recomputed. Each
  // change is its own short write transaction that checks again what it
  // changes, so it is safe while `relais serve` runs.
  // REQUIRES: opened in admin mode (Options::admin).
  virtual Result<RepairReport> Repair(const std::function<void(const VerifyProgress&)>& progress) = 0;

  // Background scrub: finds bit rot before a re-send needs the object.
  // Checks the objects with id >= from_id, in id order, each like Verify
  // does (chunks, sizes, checksum), until max_objects are checked or at
  // least max_bytes (0: no bound) data set bytes were read; one short read
  // transaction per call, so it runs beside `relais serve`'s writer and any
  // other process. Changes nothing (`relais store verify --repair` does).
  // Pass the batch's next_id to the next call to go on; it wraps to the
  // first object after the last. Works on a read-only open. Non-OK only
  // when LMDB fails. REQUIRES: max_objects > 0.
  virtual Result<ScrubBatch> Scrub(uint64_t from_id, size_t max_objects, uint64_t max_bytes) const = 0;

  // Lists the quarantine list, oldest id first.
  virtual Status ListQuarantine(const std::function<bool(const QuarantineEntry&)>& fn) const = 0;

  // Lifecycle (FORMAT.md "Lifecycle").
  //
  // The class of object `id`: NotFound when there is no such object;
  // kNone when the store has no lifecycle index yet (read-only open of an
  // older store).
  virtual Result<ObjectLife> GetLife(uint64_t id) const = 0;
  // Lists the objects of class `c` that entered it at or before
  // `since_up_to_unix_ms`, oldest first, from the time index (costs the rows
  // visited, not the store's size). Stop early by returning false.
  virtual Status ListClass(ObjectClass c, int64_t since_up_to_unix_ms,
                           const std::function<bool(uint64_t id, int64_t since_unix_ms)>& fn) const = 0;
  // The retention this store applies to class `c` (Options); -1 for kQueued.
  virtual int64_t RetentionMs(ObjectClass c) const = 0;
  // Removes the objects `ids` like a finished object (record, chunks, uid
  // row, queue and dead rows, attempt log, done and lifecycle rows; the
  // totals lose their sizes), in short write transactions of at most 256
  // objects, safe next to a serving writer. Ids that no longer exist are
  // skipped. `progress`, when set, is called after each transaction with the
  // objects removed so far. Returns how many were removed.
  // REQUIRES: opened read-write or admin.
  virtual Result<uint64_t> RemoveObjects(const std::vector<uint64_t>& ids,
                                         const std::function<void(uint64_t removed)>& progress) = 0;

  // Backups (FORMAT.md "Backups").
  //
  // Writes a consistent copy of the whole store into directory `dir`
  // (created if missing) while the store stays in use, here or in another
  // process (`relais serve`): LMDB copies from one read transaction, so the
  // copy holds exactly the objects committed when it started, compacted
  // (free pages left out). Works on a read-only open. Writes
  // dir/data.mdb.partial, fsyncs it, checks it opens, renames it to
  // dir/data.mdb, then writes the manifest dir/relais-backup.json the same
  // way (a directory with a manifest holds a complete backup), fsyncing the
  // directory after each rename. `progress`, when set, is called about once
  // a second from a helper thread with the bytes written so far, and once at
  // the end from the calling thread. AlreadyExists when `dir` already holds
  // a backup or a store; IOError / ResourceExhausted on write failures (the
  // partial file is removed).
  virtual Status Backup(const std::string& dir, const std::function<void(uint64_t bytes_done)>& progress) const = 0;

  // Reads and checks the manifest of backup directory `dir`: NotFound when
  // there is none, Corruption when it does not parse or lacks a field.
  static Result<BackupInfo> ReadBackupManifest(const std::string& dir);

  // Puts the backup in `backup_dir` back as the store at `store_path`
  // (created if missing). Checks the manifest, the size, the format version
  // and the object count of the copy before anything is written, then
  // copies data.mdb to store_path/data.mdb.partial verifying the manifest's
  // XXH3-64, fsyncs it and renames it to store_path/data.mdb (and fsyncs the
  // directory). Never overwrites a store: AlreadyExists when
  // store_path/data.mdb exists (the admin stops `relais serve` and moves the
  // old store away first). Corruption when the backup is damaged
  // (truncated, altered, unreadable); nothing is left at store_path then.
  // `progress` as for Backup (bytes copied).
  static Status RestoreBackup(const std::string& backup_dir, const std::string& store_path,
                              const std::function<void(uint64_t bytes_done)>& progress = nullptr);
};

}  // namespace relais::store

#endif  // RELAIS_STORE_STORE_H_
