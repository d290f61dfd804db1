// Keys and values of the `queue` database (FORMAT.md). Internal to store/.
//
// Key:   destination name bytes, 0x00, u32 BE (0x7FFFFFFF - priority, as
//        unsigned: highest priority sorts first), u64 BE object id.
// Value: u8 record version (1), u32 LE attempts, i64 LE next attempt (Unix
//        ms, 0 = now), u32 LE + rule name, u32 LE + edits text.
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

std::vector<uint8_t> EncodeQueueKey(const std::string& destination, int32_t priority, uint64_t object_id);
// Fills destination, priority and object_id.
Status DecodeQueueKey(std::span<const uint8_t> key, QueueRow* row);
std::vector<uint8_t> EncodeQueueValue(const QueueRow& row);
// Fills attempts, next_attempt_unix_ms, rule and edits.
Status DecodeQueueValue(std::span<const uint8_t> value, QueueRow* row);

}  // namespace relais::store

#endif  // RELAIS_STORE_QUEUE_CODEC_H_
