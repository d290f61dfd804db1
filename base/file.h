// Small files written whole: the learnt peer limits, the live serve state.
// Thread: any (each call works on its own file descriptor).
#ifndef RELAIS_BASE_FILE_H_
#define RELAIS_BASE_FILE_H_

#include <string>

#include "base/status.h"

namespace relais {

// Writes `text` to `path` through PATH.tmp (mode 0640) renamed over it, so a
// reader sees the old content or the new, never a part. No fsync: a crash may
// leave the old content (or none), which the callers tolerate. On error PATH
// is unchanged, PATH.tmp removed, and the IOError names the file and errno.
Status WriteFileAtomically(const std::string& path, const std::string& text);

}  // namespace relais

#endif  // RELAIS_BASE_FILE_H_
