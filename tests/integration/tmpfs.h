// A tmpfs the test mounts (as root; CI runs as root), for tests of a disk
// that fills up: the store or the audit trail on a small filesystem.
#ifndef RELAIS_TESTS_INTEGRATION_TMPFS_H_
#define RELAIS_TESTS_INTEGRATION_TMPFS_H_

#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace relais::itest {

// A tmpfs of `size` ("16m") mounted at `dir` (created) for the life of this
// object; unmounted (lazily) on destruction, so declare it after the
// TempDir that holds `dir`. When mounting is not permitted, mounted() is
// false and error() says why: the test skips.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
    ::mkdir(dir.c_str(), 0755);
    std::string opts = "size=" + size + ",mode=0755";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// Writes zero bytes to `path` until `bytes` are written or the filesystem
// is full (bytes = SIZE_MAX fills it). Returns the bytes written.
inline size_t WriteFiller(const std::string& path, size_t bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::setvbuf(f, nullptr, _IONBF, 0);
  static const std::string block(64 << 10, '\0');
  size_t done = 0;
  while (done < bytes) {
    size_t n = std::fwrite(block.data(), 1, std::min(bytes - done, block.size()), f);
    done += n;
    if (n == 0) break;
  }
  std::fclose(f);
  return done;
}

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_TMPFS_H_
