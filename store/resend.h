// The resend memory of the store: the `delivered` database (FORMAT.md),
// what was last delivered where, and the suppression of queue rows that a
// destination's resend policy says not to send again. Internal to store/;
// used inside the writer's (and admin mode's) write transactions and by
// Verify.
#ifndef RELAIS_STORE_RESEND_H_
#define RELAIS_STORE_RESEND_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

// Key: destination bytes, 0x00, SOP Instance UID bytes.
std::vector<uint8_t> EncodeDeliveredKey(const std::string& destination, const std::string& sop_instance_uid);
// Corruption when the key has no 0x00, or an empty destination or UID.
Status DecodeDeliveredKey(std::span<const uint8_t> key, std::string* destination, std::string* sop_instance_uid);

// Value: delivered_unix_ms i64 LE, checksum u64 LE (16 bytes; readers
// ignore bytes after them).
struct Delivered {
  int64_t unix_ms = 0;
  uint64_t checksum = 0;
};
std::vector<uint8_t> EncodeDelivered(const Delivered& d);
Status DecodeDelivered(std::span<const uint8_t> value, Delivered* d);

// After object `id` was delivered to `destination` (kDelivered): remembers
// its SOP Instance UID and checksum there, at `now_unix_ms`. Nothing when
// the store has no `delivered` database or the record is gone or does not
// decode.
Status RecordDelivered(Txn& txn, const Dbis& d, uint64_t id, const std::string& destination, int64_t now_unix_ms);

// Whether `route` of object `meta` (about to be committed) is suppressed by
// its resend policy; when it is, *why says so in words for the attempt log
// ("already delivered to ARCHIVE at 2026-12-07T10:00:00Z with the same
// content; resend = \"if-changed\"").
Status CheckSuppressed(const Txn& txn, const Dbis& d, const ObjectMeta& meta, const Route& route, bool* suppressed,
                       std::string* why);

// Appends the attempt record "suppressed" with `why` to the log of object
// `id` (a new object, so the caller numbers the records: `seq`).
Status LogSuppressed(Txn& txn, const Dbis& d, uint64_t id, uint32_t seq, const std::string& destination,
                     const std::string& why, int64_t unix_ms);

// Whether stored object `old_id` holds the same bytes as `meta` (same
// raw_size and checksum) and is routed to every destination `meta` is: an
// identical resend. False when its record is missing or does not decode.
Status IsIdenticalObject(const Txn& txn, const Dbis& d, uint64_t old_id, const ObjectMeta& meta, bool* identical);

// Raises meta `resend_window_ms` (the longest window any route has asked
// for) to `window_ms` when it is longer.
Status NoteResendWindow(Txn& txn, const Dbis& d, int64_t window_ms);

// Deletes `delivered` rows older than now_unix_ms - meta `resend_window_ms`:
// reads at most `max_scan` rows from key *scan_from (the start when empty)
// and deletes at most `max_rows` of them; *scan_from becomes the key to go
// on from next time (empty after the end of the table: the next call starts
// again). *more when it stopped because `max_rows` were deleted (call again
// at once); a scan cut by `max_scan` goes on at the next call.
Status PruneDelivered(Txn& txn, const Dbis& d, int64_t now_unix_ms, size_t max_rows, size_t max_scan,
                      std::vector<uint8_t>* scan_from, bool* more);

// "2026-12-07T10:00:00Z".
std::string FormatUtc(int64_t unix_ms);

}  // namespace relais::store

#endif  // RELAIS_STORE_RESEND_H_
