// Helpers shared by the store's kill -9 tests (store_crash_test.cc,
// store_crash_sweep_test.cc): reading a child's lines from a pipe, and the
// check that a recovered store verifies clean.
#ifndef RELAIS_TESTS_STORE_STORE_CRASH_UTIL_H_
#define RELAIS_TESTS_STORE_STORE_CRASH_UTIL_H_

#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "store/store.h"

namespace relais::store::testing {

// Reads complete lines from `fd` until `deadline` (or EOF when `to_eof`).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // Returns false at EOF.
  bool ReadFor(std::chrono::milliseconds timeout, std::vector<std::string>* lines) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return true;
    char buf[4096];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    partial_.append(buf, n);
    size_t pos;
    while ((pos = partial_.find('\n')) != std::string::npos) {
      lines->push_back(partial_.substr(0, pos));
      partial_.erase(0, pos + 1);
    }
    return true;
  }

 private:
  int fd_;
  std::string partial_;
};

// After recovery, `relais store verify` finds nothing wrong: every index,
// row and total agrees with the objects, and every object reads back.
inline void ExpectVerifiesClean(const Store& store) {
  Result<VerifyReport> r = store.Verify(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const VerifyProblem& p : r->problems)
    ADD_FAILURE() << p.object_id << " " << p.sop_instance_uid << ": " << p.what;
  EXPECT_EQ(r->pending_objects, 0u);
}

}  // namespace relais::store::testing

#endif  // RELAIS_TESTS_STORE_STORE_CRASH_UTIL_H_
