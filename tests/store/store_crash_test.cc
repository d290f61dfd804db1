// Another process: a writer killed with SIGKILL loses nothing it
// acknowledged and leaves every queue row in its old or its new state, and a
// read-only Store sees a live writer's commits. Sweeps, re-routes and the
// history backfill killed midway: store_crash_sweep_test.cc.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "store/lmdb_env.h"
#include "store/store.h"
#include "tests/store/store_crash_util.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::ExpectVerifiesClean;
using testing::ForkWithPipe;
using testing::LineReader;
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

// Child body: writes `count` objects, at most 8 in flight, and writes each
// UID + '\n' to `fd` once its done(OK) came. Then it exits, or, when `park`,
// waits for its SIGKILL with every object acknowledged: what it writes is
// bounded whatever the speed of the disk, so the test's map never fills.
// With `distinct` > 0, object n is object n % distinct again (same UID,
// same bytes): a modality resending its study.
[[noreturn]] void WriterChild(const std::string& path, int fd, int cycle, int count, bool park, int distinct = 0) {
  auto opened = Store::Open(TestOptions(path));
  if (!opened.ok()) _exit(2);
  std::unique_ptr<Store> store = std::move(opened.value());
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  bool failed = false;
  for (int n = 0; n < count; ++n) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < 8; });
      if (failed) _exit(3);
      ++in_flight;
    }
    const int k = distinct > 0 ? n % distinct : n;
    auto w = store->NewObject();
    w->Append(ContentFor(cycle, k));
    w->Finish(MakeMeta(UidFor(cycle, k)), [&, fd](Status s, const ObjectMeta& m) {
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
  if (park) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
    if (failed) _exit(3);
    lock.unlock();
    for (;;) pause();
  }
  store.reset();  // drains
  _exit(failed ? 3 : 0);
}

pid_t SpawnWriter(const std::string& path, int cycle, int count, bool park, int* read_fd, int distinct = 0) {
  return ForkWithPipe([&](int fd) { WriterChild(path, fd, cycle, count, park, distinct); }, read_fd);
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
  // At most 150 objects a cycle (about 88 KB each on average, incompressible):
  // 10 cycles stay near 130 MB in the 256 MB map however fast the disk is.
  constexpr int kPerCycle = 150;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    int fd;
    pid_t pid = SpawnWriter(path, cycle, kPerCycle, /*park=*/true, &fd);
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
    ExpectVerifiesClean(store);
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

// A modality resending a study while the writer is killed: identical
// duplicates committed around the crash leave exactly one object per UID,
// intact, and a store that verifies clean.
TEST(CrashTest, KillNineAmongIdenticalResendsLeavesOneObjectPerUid) {
  TempDir dir;
  std::string path = dir.Sub("db");
  std::mt19937 rng(std::random_device{}());
  std::set<std::string> acked;
  constexpr int kDistinct = 30;
  for (int round = 0; round < 4; ++round) {
    int fd;
    // Cycle 0 every round: the same 30 UIDs and bytes, each sent 5 times.
    pid_t pid = SpawnWriter(path, /*cycle=*/0, 5 * kDistinct, /*park=*/true, &fd, kDistinct);
    ASSERT_GT(pid, 0);
    LineReader reader(fd);
    std::vector<std::string> lines;
    auto start = std::chrono::steady_clock::now();
    while (lines.empty() && std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
      ASSERT_TRUE(reader.ReadFor(std::chrono::milliseconds(50), &lines)) << "writer exited early";
    }
    auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(rng() % 300);
    while (std::chrono::steady_clock::now() < kill_at) reader.ReadFor(std::chrono::milliseconds(10), &lines);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    while (reader.ReadFor(std::chrono::milliseconds(1000), &lines)) {
    }
    close(fd);
    acked.insert(lines.begin(), lines.end());

    auto opened = Store::Open(TestOptions(path));  // runs recovery
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto& store = *opened.value();
    std::map<std::string, int> per_uid;
    ASSERT_TRUE(store
                    .List([&](const ObjectMeta& m) {
                      ++per_uid[m.sop_instance_uid];
                      return true;
                    })
                    .ok());
    for (const auto& [uid, n] : per_uid) EXPECT_EQ(n, 1) << uid;
    for (const auto& uid : acked) {
      EXPECT_EQ(per_uid.count(uid), 1u) << uid;
      ExpectIntact(store, uid);
    }
    EXPECT_LE(per_uid.size(), static_cast<size_t>(kDistinct));
    ExpectVerifiesClean(store);
  }
  EXPECT_FALSE(acked.empty());
}

// ---- queue updates in flight ----
//
// Each object of the delivery child goes through these stages, one
// UpdateQueue (with an attempt logged) each, after its commit (stage 0):
//   1, 2: kRetryLater of row A (attempts 1, 2)   3: kDeadLetter of A
//   4: kRequeue of A                             5: kDelivered of A and B:
//                                                   the object is removed.
constexpr int kLastStage = 5;

std::string DeliveryUid(int cycle, int n) { return "1.2.826.0.2." + std::to_string(cycle) + "." + std::to_string(n); }

QueueUpdate StageUpdate(QueueUpdate::Kind kind, const char* dest, uint64_t id, uint32_t attempts) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = dest;
  u.priority = dest[0] == 'B' ? 5 : 0;
  u.object_id = id;
  u.attempts = attempts;
  u.next_attempt_unix_ms = 1000 + attempts;
  u.status = kind == QueueUpdate::Kind::kDeadLetter ? 0x0122 : 0xA700;
  u.error = (kind == QueueUpdate::Kind::kDeadLetter ? "dead " : "busy ") + std::to_string(attempts);
  u.log_attempt = true;
  u.attempt.result = "retry";
  return u;
}

std::vector<QueueUpdate> StageUpdates(int stage, uint64_t id) {
  using K = QueueUpdate::Kind;
  switch (stage) {
    case 1: return {StageUpdate(K::kRetryLater, "A", id, 1)};
    case 2: return {StageUpdate(K::kRetryLater, "A", id, 2)};
    case 3: return {StageUpdate(K::kDeadLetter, "A", id, 3)};
    case 4: return {StageUpdate(K::kRequeue, "A", id, 0)};
    default: return {StageUpdate(K::kDelivered, "A", id, 0), StageUpdate(K::kDelivered, "B", id, 0)};
  }
}

struct DeliveryChild {
  std::unique_ptr<Store> store;
  int fd;
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  bool failed = false;

  void Line(const std::string& line, bool ok) {
    std::string l = line + "\n";
    if (ok) ok = write(fd, l.data(), l.size()) == static_cast<ssize_t>(l.size());
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu);
      failed = true;
      cv.notify_all();
    }
  }
  // Runs on the writer thread (a done callback): only enqueues.
  void Stage(int n, uint64_t id, int stage) {
    store->UpdateQueue(StageUpdates(stage, id), [this, n, id, stage](Status s) {
      Line("U " + std::to_string(n) + " " + std::to_string(stage), s.ok());
      if (s.ok() && stage < kLastStage) {
        Stage(n, id, stage + 1);
        return;
      }
      std::lock_guard<std::mutex> lock(mu);
      --in_flight;
      cv.notify_all();
    });
  }
};

// Child body: objects routed to A and B, each taken through the stages; at
// most 8 objects in flight. Writes "C n" when object n is acknowledged and
// "U n k" when its stage k is durable.
[[noreturn]] void DeliveryWriterChild(const std::string& path, int fd, int cycle) {
  auto opened = Store::Open(TestOptions(path));
  if (!opened.ok()) _exit(2);
  DeliveryChild c;
  c.store = std::move(opened.value());
  c.fd = fd;
  for (int n = 0;; ++n) {
    {
      std::unique_lock<std::mutex> lock(c.mu);
      c.cv.wait(lock, [&] { return c.in_flight < 8 || c.failed; });
      if (c.failed) _exit(3);
      ++c.in_flight;
    }
    ObjectMeta m = MakeMeta(DeliveryUid(cycle, n));
    m.routing = "routed";
    m.routes = {Route{"A", 0, "ra", ""}, Route{"B", 5, "rb", ""}};
    auto w = c.store->NewObject();
    w->Append(RandomBytes(500 + (n % 3) * 70000, cycle * 1000 + n));
    w->Finish(m, [&c, n](Status s, const ObjectMeta& meta) {
      c.Line("C " + std::to_string(n), s.ok());
      if (s.ok()) c.Stage(n, meta.id, 1);
    });
  }
}

// What the store holds of one object: "absent", or its rows and log size.
struct Observed {
  bool present = false;
  std::vector<QueueRow> live_a, live_b, dead_a;
  size_t attempts = 0;
};

// Whether `o` is exactly stage `stage` (-1: not committed).
bool IsStage(const Observed& o, int stage) {
  if (stage < 0 || stage == kLastStage) return !o.present;
  if (!o.present || o.live_b.size() != 1 || o.attempts != static_cast<size_t>(stage)) return false;
  const QueueRow& b = o.live_b[0];
  if (b.attempts != 0 || b.next_attempt_unix_ms != 0 || b.last_status != 0 || !b.last_error.empty()) return false;
  auto row_is = [](const QueueRow& r, uint32_t attempts, int64_t next, uint16_t status, const std::string& error) {
    return r.attempts == attempts && r.next_attempt_unix_ms == next && r.last_status == status &&
           r.last_error == error && r.rule == "ra";
  };
  switch (stage) {
    case 0: return o.dead_a.empty() && o.live_a.size() == 1 && row_is(o.live_a[0], 0, 0, 0, "");
    case 1:
    case 2:
      return o.dead_a.empty() && o.live_a.size() == 1 &&
             row_is(o.live_a[0], stage, 1000 + stage, 0xA700, "busy " + std::to_string(stage));
    case 3:
      return o.live_a.empty() && o.dead_a.size() == 1 && row_is(o.dead_a[0], 3, 1002, 0x0122, "dead 3") &&
             o.dead_a[0].dead_unix_ms > 0;
    case 4: return o.dead_a.empty() && o.live_a.size() == 1 && row_is(o.live_a[0], 3, 0, 0x0122, "dead 3");
  }
  return false;
}

TEST(CrashTest, KillNineDuringQueueUpdatesLeavesEveryRowOldOrNew) {
  TempDir dir;
  std::string path = dir.Sub("db");
  std::mt19937 rng(std::random_device{}());
  constexpr int kCycles = 6;
  size_t updates_seen = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    int read_fd = -1;
    pid_t pid = ForkWithPipe([&](int fd) { DeliveryWriterChild(path, fd, cycle); }, &read_fd);
    ASSERT_GT(pid, 0);
    LineReader reader(read_fd);
    std::vector<std::string> lines;
    auto start = std::chrono::steady_clock::now();
    while (lines.size() < 5 && std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
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
    close(read_fd);

    // Last acknowledged stage of each object (-1: none).
    std::map<int, int> acked;
    int max_n = -1;
    for (const std::string& l : lines) {
      char kind;
      int n, stage = 0;
      std::istringstream in(l);
      in >> kind >> n;
      if (kind == 'U') in >> stage;
      acked[n] = std::max(acked.count(n) ? acked[n] : -1, stage);
      max_n = std::max(max_n, n);
    }
    ASSERT_GE(max_n, 0);
    for (auto& [n, stage] : acked) {
      if (stage > 0) ++updates_seen;
    }

    auto opened = Store::Open(TestOptions(path));  // runs recovery
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Store& store = *opened.value();
    ExpectVerifiesClean(store);
    std::map<uint64_t, Observed> by_id;
    auto collect = [&](std::vector<QueueRow> Observed::*field) {
      return [&by_id, field](const QueueRow& r) {
        (by_id[r.object_id].*field).push_back(r);
        return true;
      };
    };
    ASSERT_TRUE(store.ListQueue("A", collect(&Observed::live_a)).ok());
    ASSERT_TRUE(store.ListQueue("B", collect(&Observed::live_b)).ok());
    ASSERT_TRUE(store.ListDead(collect(&Observed::dead_a)).ok());
    // Objects past the last line the child wrote may have committed too.
    for (int n = 0; n <= max_n + 16; ++n) {
      Observed o;
      auto meta = store.Find(DeliveryUid(cycle, n));
      if (meta.ok()) {
        o = by_id[meta->id];
        o.present = true;
        ASSERT_TRUE(store.ListAttempts(meta->id, [&](const Attempt&) { return ++o.attempts > 0; }).ok());
      } else {
        ASSERT_TRUE(meta.status().IsNotFound()) << meta.status().ToString();
      }
      int k = acked.count(n) ? acked[n] : -1;
      EXPECT_TRUE(IsStage(o, k) || (k < kLastStage && IsStage(o, k + 1)))
          << "object " << n << " of cycle " << cycle << ": acknowledged stage " << k << ", present " << o.present
          << ", live A " << o.live_a.size() << ", dead A " << o.dead_a.size() << ", live B " << o.live_b.size()
          << ", attempts " << o.attempts;
    }
    // Counters agree with the objects after every kill.
    uint64_t raw = 0, stored = 0, count = 0;
    ASSERT_TRUE(store
                    .List([&](const ObjectMeta& m) {
                      raw += m.raw_size;
                      stored += m.stored_size;
                      ++count;
                      return true;
                    })
                    .ok());
    Store::Stats st = store.GetStats();
    EXPECT_EQ(st.raw_bytes, raw);
    EXPECT_EQ(st.stored_bytes, stored);
    EXPECT_EQ(st.objects, count);
  }
  EXPECT_GT(updates_seen, static_cast<size_t>(kCycles));
}

TEST(ReadOnlyTest, SecondProcessReadsWhileWriterCommits) {
  TempDir dir;
  std::string path = dir.Sub("db");
  constexpr int kCount = 40;
  int fd;
  pid_t pid = SpawnWriter(path, 0, kCount, /*park=*/false, &fd);
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
