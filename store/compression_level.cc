#include "store/compression_level.h"

#include <algorithm>

namespace relais::store {
namespace {

// `level` moved by `step` (+1 or -1), skipping 0, then clamped to [min, max].
int Move(int level, int step, int min, int max) {
  int next = level + step;
  if (next == 0) next += step;
  next = std::clamp(next, min, max);
  if (next == 0 && (min != 0 || max != 0)) next = step > 0 ? (max > 0 ? 1 : -1) : (min < 0 ? -1 : 1);
  return next;
}

}  // namespace

LevelState NextLevel(LevelState s, size_t waiting, int threads, int min, int max) {
  if (min > max) std::swap(min, max);
  if (threads < 1) threads = 1;
  if (waiting > 2 * static_cast<size_t>(threads)) {
    s.level = Move(s.level, -1, min, max);
    s.idle = 0;
  } else if (waiting == 0) {
    if (++s.idle >= kIdleStepsUp) {
      s.level = Move(s.level, +1, min, max);
      s.idle = 0;
    }
  } else {
    s.idle = 0;
  }
  // Bounds changed or a start outside them: back inside.
  if (s.level < min || s.level > max || (s.level == 0 && (min != 0 || max != 0))) s.level = Move(s.level, 0, min, max);
  return s;
}

}  // namespace relais::store
