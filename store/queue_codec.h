// Keys and values of the delivery databases: `queue`, `dead`, `attempts`
// and `done` (FORMAT.md). Internal to store/.
//
// Queue key:   destination name bytes, 0x00, u32 BE (0xFFFFFFFF - (priority
//              XOR 0x80000000): highest priority sorts first), u64 BE id.
// Queue value: u8 record version (1), u32 LE attempts, i64 LE next attempt
//              (Unix ms, 0 = now), u32 LE + rule name, u32 LE + edits text,
//              then (appended later; absent in older records, read as 0 / "")
//              u16 LE last_status, u32 LE + last_error.
// Dead key:    the queue key. Dead value: i64 LE dead_unix_ms, then a queue
//              value.
// Attempt key: u64 BE object id, u32 BE sequence. Value: attempt record v1.
// Done key:    u64 BE object id. Value: i64 LE Unix ms.
//
// Decoders return Corruption on truncated input, strings running past the
// end and unknown versions; they never allocate more than the input holds.
#ifndef RELAIS_STORE_QUEUE_CODEC_H_
#define RELAIS_STORE_QUEUE_CODEC_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::store {

inline constexpr uint8_t kQueueRecordVersion = 1;
inline constexpr uint8_t kAttemptRecordVersion = 1;

std::vector<uint8_t> EncodeQueueKey(const std::string& destination, int32_t priority, uint64_t object_id);
// Fills destination, priority and object_id.
Status DecodeQueueKey(std::span<const uint8_t> key, QueueRow* row);
// Encodes attempts, next_attempt_unix_ms, rule, edits, last_status and
// last_error.
std::vector<uint8_t> EncodeQueueValue(const QueueRow& row);
// Fills attempts, next_attempt_unix_ms, rule, edits, last_status and
// last_error (0 / "" in records written before these fields existed).
Status DecodeQueueValue(std::span<const uint8_t> value, QueueRow* row);

// The `dead` value: dead_unix_ms, then the queue value of the row.
std::vector<uint8_t> EncodeDeadValue(const QueueRow& row);
// Fills what DecodeQueueValue fills, plus dead_unix_ms.
Status DecodeDeadValue(std::span<const uint8_t> value, QueueRow* row);

// The `attempts` key: object id, then the attempt's sequence number within
// the object (0, 1, ...), both big-endian so that a cursor reads an
// object's attempts in order.
struct AttemptKey {
  AttemptKey(uint64_t id, uint32_t seq);
  uint8_t bytes[12];
};
Status DecodeAttemptKey(std::span<const uint8_t> key, uint64_t* object_id, uint32_t* seq);
// Encodes everything but object_id (which is in the key).
std::vector<uint8_t> EncodeAttempt(const Attempt& attempt);
// Fills everything but object_id.
Status DecodeAttempt(std::span<const uint8_t> value, Attempt* attempt);

}  // namespace relais::store

#endif  // RELAIS_STORE_QUEUE_CODEC_H_
