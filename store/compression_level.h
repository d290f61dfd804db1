// The adaptive compression level (Options::compression_auto): a pure
// policy, applied by the compression pool each time a thread takes a chunk.
// Internal to store/.
#ifndef RELAIS_STORE_COMPRESSION_LEVEL_H_
#define RELAIS_STORE_COMPRESSION_LEVEL_H_

#include <cstddef>
#include <cstdint>

namespace relais::store {

struct LevelState {
  int level = 1;      // zstd level of the next chunk; never 0 (0 is "off")
  uint32_t idle = 0;  // consecutive chunks taken with nothing queued behind
};

// Idle chunks in a row before the level goes one step up.
inline constexpr uint32_t kIdleStepsUp = 16;

// One step of the policy. `waiting`: chunks still queued after the one just
// taken; `threads`: the pool's threads; [min, max]: the configured bounds
// (min <= max; 0 inside them is skipped: -1 and 1 are neighbours).
//  - more than 2 chunks per thread waiting: the compressor is behind intake,
//    one step faster (down), at once;
//  - nothing waiting for kIdleStepsUp chunks in a row: the compressor keeps
//    up with room to spare, one step stronger (up);
//  - otherwise the level stays.
// The result is always within [min, max] and not 0 (unless min = max = 0).
LevelState NextLevel(LevelState s, size_t waiting, int threads, int min, int max);

}  // namespace relais::store

#endif  // RELAIS_STORE_COMPRESSION_LEVEL_H_
