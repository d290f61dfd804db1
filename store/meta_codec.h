// Encoding of an ObjectMeta record, the value of the `objects` database.
// The layout (record version 1) is specified in FORMAT.md. Internal to store/.
#ifndef RELAIS_STORE_META_CODEC_H_
#define RELAIS_STORE_META_CODEC_H_

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::store {

inline constexpr uint8_t kMetaRecordVersion = 1;
// Starts the optional routing section after the strings (FORMAT.md).
inline constexpr uint8_t kRoutingSectionMarker = 'R';

std::vector<uint8_t> EncodeMeta(const ObjectMeta& meta);

// Corruption on a truncated record, a string running past the end, or an
// unknown record version. Bytes after the last known field are ignored (room
// for fields appended by a later minor change).
Status DecodeMeta(std::span<const uint8_t> bytes, ObjectMeta* meta);

}  // namespace relais::store

#endif  // RELAIS_STORE_META_CODEC_H_
