// Helpers shared by the store's kill -9 tests (store_crash_test.cc,
// store_crash_sweep_test.cc): forking a child that reports on a pipe,
// reading its lines, the check that a recovered store verifies clean, and
// (with store_history_test.cc) making a store look older than its history.
#ifndef RELAIS_TESTS_STORE_STORE_CRASH_UTIL_H_
#define RELAIS_TESTS_STORE_STORE_CRASH_UTIL_H_

#include <lmdb.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "store/lmdb_env.h"
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

// Forks a child that runs `child(write_fd)`, which must end with _exit and
// never return. Returns the child's pid (<= 0: the fork failed, a test
// failure added) and sets *read_fd to the read end of its pipe, which the
// caller closes.
template <typename Child>
pid_t ForkWithPipe(Child child, int* read_fd) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child(fds[1]);
  }
  EXPECT_GT(pid, 0);
  close(fds[1]);
  *read_fd = fds[0];
  return pid;
}

// Makes the store at `path` (closed) look written before the history
// existed: no `history` rows, no marker.
inline void ForgetHistory(const std::string& path) {
  LmdbEnv env;
  ASSERT_TRUE(env.Open(path, 0, false).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, true).ok());
  ASSERT_EQ(mdb_drop(txn.get(), env.dbis().history, 0), 0);
  ASSERT_TRUE(txn.Del(env.dbis().meta, ToVal(std::string_view(kMetaHistory))).ok());
  ASSERT_TRUE(txn.Commit().ok());
}

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
