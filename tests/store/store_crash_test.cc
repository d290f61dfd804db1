// Another process: a writer killed with SIGKILL loses nothing it
// acknowledged, and a read-only Store sees a live writer's commits.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>

#include "store/lmdb_env.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::MakeMeta;
using testing::RandomBytes;
using testing::ReadAll;
using testing::TempDir;
using testing::TestOptions;

std::string UidFor(int cycle, int n) { return "1.2.826.0.1." + std::to_string(cycle) + "." + std::to_string(n); }

// Object n of a cycle: sizes from tiny to several chunks (64 KiB each).
std::vector<uint8_t> ContentFor(int cycle, int n) {
  size_t size = (n % 5 == 0) ? 300000 + n : 500 + (n * 7919) % 70000;
  return RandomBytes(size, cycle * 100000 + n);
}

// Child body: writes `count` objects (forever when count < 0), at most 8 in
// flight, and writes each UID + '\n' to `fd` once its done(OK) came.
[[noreturn]] void WriterChild(const std::string& path, int fd, int cycle, int count) {
  auto opened = Store::Open(TestOptions(path));
  if (!opened.ok()) _exit(2);
  std::unique_ptr<Store> store = std::move(opened.value());
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  bool failed = false;
  for (int n = 0; count < 0 || n < count; ++n) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < 8; });
      if (failed) _exit(3);
      ++in_flight;
    }
    auto w = store->NewObject();
    w->Append(ContentFor(cycle, n));
    w->Finish(MakeMeta(UidFor(cycle, n)), [&, fd](Status s, const ObjectMeta& m) {
      bool ok = s.ok();
      if (ok) {
        std::string line = m.sop_instance_uid + "\n";
        ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
      }
      std::lock_guard<std::mutex> lock(mu);
      if (!ok) failed = true;
      --in_flight;
      cv.notify_all();
    });
  }
  store.reset();  // drains
  _exit(failed ? 3 : 0);
}

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

pid_t SpawnWriter(const std::string& path, int cycle, int count, int* read_fd) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    WriterChild(path, fds[1], cycle, count);
  }
  close(fds[1]);
  *read_fd = fds[0];
  return pid;
}

void ExpectIntact(const Store& store, const std::string& uid) {
  // UIDs are 1.2.826.0.1.<cycle>.<n>.
  size_t last = uid.rfind('.');
  size_t prev = uid.rfind('.', last - 1);
  int cycle = std::stoi(uid.substr(prev + 1, last - prev - 1));
  int n = std::stoi(uid.substr(last + 1));
  auto meta = store.Find(uid);
  ASSERT_TRUE(meta.ok()) << uid << ": " << meta.status().ToString();
  std::vector<uint8_t> out;
  Status s = ReadAll(store, meta->id, &out);
  ASSERT_TRUE(s.ok()) << uid << ": " << s.ToString();
  EXPECT_EQ(out, ContentFor(cycle, n)) << uid;
}

TEST(CrashTest, KillNineLosesNothingAcknowledged) {
  TempDir dir;
  std::string path = dir.Sub("db");
  std::mt19937 rng(std::random_device{}());
  std::set<std::string> acked;
  constexpr int kCycles = 10;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    int fd;
    pid_t pid = SpawnWriter(path, cycle, -1, &fd);
    ASSERT_GT(pid, 0);
    LineReader reader(fd);
    std::vector<std::string> lines;
    // Wait for a first acknowledgement (the child opens/recovers the store
    // first), then let it run a random while and kill it mid-stream.
    auto start = std::chrono::steady_clock::now();
    while (lines.empty() && std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
      ASSERT_TRUE(reader.ReadFor(std::chrono::milliseconds(50), &lines)) << "writer exited early";
    }
    auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(rng() % 400);
    while (std::chrono::steady_clock::now() < kill_at) reader.ReadFor(std::chrono::milliseconds(10), &lines);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: " << status;
    while (reader.ReadFor(std::chrono::milliseconds(1000), &lines)) {
    }
    close(fd);
    ASSERT_FALSE(lines.empty());
    acked.insert(lines.begin(), lines.end());

    auto opened = Store::Open(TestOptions(path));  // runs recovery
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto& store = *opened.value();
    for (const auto& uid : acked) ExpectIntact(store, uid);
    opened.value().reset();
    LmdbEnv env;
    ASSERT_TRUE(env.Open(path, 0, true).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, false).ok());
    MDB_stat st;
    ASSERT_EQ(mdb_stat(txn.get(), env.dbis().pending, &st), MDB_SUCCESS);
    EXPECT_EQ(st.ms_entries, 0u) << "recovery left pending objects";
  }
  EXPECT_GT(acked.size(), static_cast<size_t>(kCycles));
}

TEST(ReadOnlyTest, SecondProcessReadsWhileWriterCommits) {
  TempDir dir;
  std::string path = dir.Sub("db");
  constexpr int kCount = 40;
  int fd;
  pid_t pid = SpawnWriter(path, 0, kCount, &fd);
  ASSERT_GT(pid, 0);
  LineReader reader(fd);
  std::vector<std::string> lines;
  std::unique_ptr<Store> ro;
  size_t checked = 0;
  while (reader.ReadFor(std::chrono::milliseconds(100), &lines)) {
    if (!ro && !lines.empty()) {
      Options o = TestOptions(path);
      o.read_only = true;
      auto opened = Store::Open(o);
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      ro = std::move(opened.value());
    }
    // Each acknowledged object is visible at once to the reader's next txn.
    for (; checked < lines.size(); ++checked) ExpectIntact(*ro, lines[checked]);
  }
  close(fd);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(ro);
  EXPECT_EQ(lines.size(), static_cast<size_t>(kCount));
  size_t listed = 0;
  ASSERT_TRUE(ro->List([&](const ObjectMeta&) { return ++listed > 0; }).ok());
  EXPECT_EQ(listed, static_cast<size_t>(kCount));
  Store::Stats st = ro->GetStats();
  EXPECT_EQ(st.objects, static_cast<uint64_t>(kCount));
  EXPECT_EQ(st.commits, 0u);  // a read-only store commits nothing
}

}  // namespace
}  // namespace relais::store
