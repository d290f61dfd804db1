// Another process killed with SIGKILL in the middle of the store's long
// operations: a writer keeps every object of every class through a sweep it
// was killed in; a re-route (kRoute) killed midway leaves each object routed
// fully (route, queue row and study history) or not at all; and a history
// backfill killed midway ends the same as one that was not.
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
using testing::ForgetHistory;
using testing::ForkWithPipe;
using testing::LineReader;
using testing::MakeMeta;
using testing::RandomBytes;
using testing::TempDir;
using testing::TestOptions;

// ---- sweeps in flight ----
//
// The sweep child keeps "keepers" of every class, stored at a time no sweep
// reaches, then stores, finishes and sweeps "victims" of every class, hour
// after simulated hour, until it is killed. Lines: "K id class" per keeper
// once durable, "R" when all are, "S now" when a sweep at `now` is durable.
constexpr int64_t kSweepHour = 3600'000;
constexpr int64_t kSweepT0 = 1'800'000'000'000;
constexpr int64_t kKeeperTime = kSweepT0 + 100'000 * kSweepHour;  // past every sweep of the test

std::atomic<int64_t> sweep_child_now{kSweepT0};

Options SweepOptions(const std::string& path) {
  Options o = TestOptions(path);
  o.clock = [] { return sweep_child_now.load(); };
  o.retention_ms = 2 * kSweepHour;
  o.unrouted_retention_ms = 3 * kSweepHour;
  o.dead_retention_ms = 4 * kSweepHour;
  o.dropped_retention_ms = kSweepHour;
  return o;
}

// Stores one object of class `c` (queued, dead, delivered, unrouted or
// dropped) at the child's clock; returns its id (0 on failure).
uint64_t PutOfClass(Store& store, ObjectClass c, const std::string& uid, uint32_t seed) {
  ObjectMeta m = MakeMeta(uid);
  bool routed = c == ObjectClass::kQueued || c == ObjectClass::kDead || c == ObjectClass::kDelivered;
  m.routing = routed ? "routed" : c == ObjectClass::kDropped ? "dropped" : "unrouted";
  if (routed) m.routes = {Route{"A", 0, "ra", ""}};
  testing::PutResult r = testing::PutObject(store, m, RandomBytes(300 + seed % 90000, seed));
  if (!r.status.ok()) return 0;
  if (c == ObjectClass::kDead || c == ObjectClass::kDelivered) {
    QueueUpdate u;
    u.kind = c == ObjectClass::kDead ? QueueUpdate::Kind::kDeadLetter : QueueUpdate::Kind::kDelivered;
    u.destination = "A";
    u.object_id = r.meta.id;
    if (!testing::ApplyUpdates(store, {u}).ok()) return 0;
  }
  return r.meta.id;
}

constexpr ObjectClass kAllClasses[] = {ObjectClass::kQueued, ObjectClass::kDead, ObjectClass::kDelivered,
                                       ObjectClass::kUnrouted, ObjectClass::kDropped};

[[noreturn]] void SweepChild(const std::string& path, int fd) {
  auto opened = Store::Open(SweepOptions(path));
  if (!opened.ok()) _exit(2);
  Store& store = **opened;
  auto line = [fd](const std::string& l) {
    std::string out = l + "\n";
    if (write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(4);
  };
  sweep_child_now = kKeeperTime;
  for (int i = 0; i < 3; ++i) {
    for (ObjectClass c : kAllClasses) {
      uint64_t id = PutOfClass(store, c, "1.2.826.0.3.k." + std::to_string(i) + "." + ObjectClassName(c), 7 + i);
      if (id == 0) _exit(3);
      line("K " + std::to_string(id) + " " + std::to_string(static_cast<int>(c)));
    }
  }
  line("R");
  for (int hour = 0;; ++hour) {
    sweep_child_now = kSweepT0 + hour * kSweepHour;
    for (int i = 0; i < 4; ++i) {
      for (ObjectClass c : kAllClasses) {
        std::string uid = "1.2.826.0.3.v." + std::to_string(hour) + "." + std::to_string(i) + "." + ObjectClassName(c);
        if (PutOfClass(store, c, uid, static_cast<uint32_t>(hour * 10 + i)) == 0) _exit(3);
      }
    }
    const int64_t now = sweep_child_now.load();
    std::promise<Status> p;
    auto f = p.get_future();
    store.Sweep(now, [&p](Status s) { p.set_value(s); });
    if (!f.get().ok()) _exit(5);
    line("S " + std::to_string(now));
  }
}

TEST(CrashTest, KillNineMidSweepKeepsEveryClassAndVerifiesClean) {
  std::mt19937 rng(std::random_device{}());
  constexpr int kCycles = 4;
  int sweeps_seen = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    TempDir dir;
    std::string path = dir.Sub("db");
    int read_fd = -1;
    pid_t pid = ForkWithPipe([&](int fd) { SweepChild(path, fd); }, &read_fd);
    ASSERT_GT(pid, 0);
    LineReader reader(read_fd);
    std::vector<std::string> lines;
    auto ready = [&] { return std::find(lines.begin(), lines.end(), "R") != lines.end(); };
    auto start = std::chrono::steady_clock::now();
    while (!ready() && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
      ASSERT_TRUE(reader.ReadFor(std::chrono::milliseconds(50), &lines)) << "sweep child exited early";
    }
    ASSERT_TRUE(ready());
    // Let it sweep a while (every class expires within 5 hours), then kill it.
    auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(800 + rng() % 1200);
    while (std::chrono::steady_clock::now() < kill_at) {
      ASSERT_TRUE(reader.ReadFor(std::chrono::milliseconds(10), &lines)) << "sweep child exited early";
    }
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the child stopped by itself: " << status;
    while (reader.ReadFor(std::chrono::milliseconds(500), &lines)) {
    }
    close(read_fd);
    std::map<uint64_t, int> keepers;
    int64_t last_sweep = -1;
    for (const std::string& l : lines) {
      std::istringstream in(l);
      char kind;
      in >> kind;
      if (kind == 'K') {
        uint64_t id;
        int c;
        in >> id >> c;
        keepers[id] = c;
      } else if (kind == 'S') {
        in >> last_sweep;
        ++sweeps_seen;
      }
    }
    ASSERT_EQ(keepers.size(), 15u);

    sweep_child_now = kSweepT0;
    auto opened = Store::Open(SweepOptions(path));  // recovery
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Store& store = **opened;
    ExpectVerifiesClean(store);
    for (auto [id, c] : keepers) {
      Result<ObjectLife> life = store.GetLife(id);
      ASSERT_TRUE(life.ok()) << "keeper " << id << ": " << life.status().ToString();
      EXPECT_EQ(static_cast<int>(life->object_class), c) << "keeper " << id;
      EXPECT_EQ(life->since_unix_ms, kKeeperTime);
    }
    // Every sweep acknowledged took all it was due to take.
    if (last_sweep >= 0) {
      for (ObjectClass c : kAllClasses) {
        if (store.RetentionMs(c) < 0) continue;
        size_t overdue = 0;
        ASSERT_TRUE(
            store.ListClass(c, last_sweep - store.RetentionMs(c), [&](uint64_t, int64_t) { return ++overdue > 0; })
                .ok());
        EXPECT_EQ(overdue, 0u) << ObjectClassName(c) << " after the sweep at " << last_sweep;
      }
    }
    Store::Stats st = store.GetStats();
    uint64_t by_class = 0;
    for (size_t c = 1; c < kObjectClassCount; ++c) by_class += st.class_objects[c];
    EXPECT_EQ(by_class, st.objects);
  }
  EXPECT_GT(sweeps_seen, 5 * kCycles) << "too few sweeps to expire every class";
  std::printf("sweeps acknowledged over %d kills: %d\n", kCycles, sweeps_seen);
}

constexpr int kRouteObjects = 3000;
constexpr char kRouteStudy[] = "1.2.826.0.9";

Options RouteOptions(const std::string& path) {
  Options o = TestOptions(path);
  o.retention_ms = 24LL * 3600 * 1000;  // delivered objects stay for re-routes
  return o;
}

// kRouteObjects objects of one study, routed to "archive" and delivered
// there (kept: retention).
void MakeDeliveredStudy(const std::string& path) {
  auto opened = Store::Open(RouteOptions(path));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  std::vector<std::future<uint64_t>> ids;
  for (int n = 0; n < kRouteObjects; ++n) {
    ObjectMeta m = MakeMeta("1.2.826.0.9." + std::to_string(n));
    m.study_instance_uid = kRouteStudy;
    m.routing = "routed";
    m.routes = {Route{"archive", 0, "r", ""}};
    auto w = store.NewObject();
    w->Append(RandomBytes(200 + n % 500, n));
    auto p = std::make_shared<std::promise<uint64_t>>();
    ids.push_back(p->get_future());
    w->Finish(m, [p](Status s, const ObjectMeta& meta) { p->set_value(s.ok() ? meta.id : 0); });
  }
  std::vector<QueueUpdate> delivered;
  for (auto& f : ids) {
    QueueUpdate u;
    u.kind = QueueUpdate::Kind::kDelivered;
    u.destination = "archive";
    u.object_id = f.get();
    ASSERT_NE(u.object_id, 0u);
    delivered.push_back(u);
  }
  ASSERT_TRUE(testing::ApplyUpdates(store, delivered).ok());
}

// Child body: re-routes every object of the study to `dest`, one
// UpdateQueue each (many transactions, group-committed), and writes
// "R id" when one is durable; then waits for its SIGKILL.
[[noreturn]] void RouteChild(const std::string& path, int fd, const std::string& dest) {
  auto opened = Store::Open(RouteOptions(path));
  if (!opened.ok()) _exit(2);
  std::unique_ptr<Store> store = std::move(opened.value());
  std::vector<uint64_t> ids;
  if (!store
           ->List([&](const ObjectMeta& m) {
             ids.push_back(m.id);
             return true;
           })
           .ok()) {
    _exit(3);
  }
  for (uint64_t id : ids) {
    QueueUpdate u;
    u.kind = QueueUpdate::Kind::kRoute;
    u.destination = dest;
    u.object_id = id;
    u.log_attempt = true;
    u.attempt.result = "routed";
    store->UpdateQueue({u}, [fd, id](Status s) {
      std::string l = (s.ok() ? "R " : "F ") + std::to_string(id) + "\n";
      if (write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) _exit(4);
    });
  }
  for (;;) pause();
}

// kill -9 while an admin re-routes a whole study, four times (a new
// destination each time): after each restart every object is either routed
// to it fully (the manual route in its record, a live row, counted queued in
// the study history) or not at all, every acknowledged route is there, and
// the store verifies clean.
TEST(CrashTest, KillNineDuringARouteLeavesEachObjectRoutedFullyOrNot) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  MakeDeliveredStudy(path);
  std::mt19937 rng(std::random_device{}());
  int partial_cycles = 0;
  for (int cycle = 0; cycle < 4; ++cycle) {
    const std::string dest = "cloud" + std::to_string(cycle);
    int read_fd = -1;
    pid_t pid = ForkWithPipe([&](int fd) { RouteChild(path, fd, dest); }, &read_fd);
    ASSERT_GT(pid, 0);
    LineReader reader(read_fd);
    std::vector<std::string> lines;
    const auto start = std::chrono::steady_clock::now();
    while (lines.empty() && std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
      ASSERT_TRUE(reader.ReadFor(std::chrono::milliseconds(20), &lines)) << "the child exited early";
    }
    const auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(rng() % 8);
    while (std::chrono::steady_clock::now() < kill_at) reader.ReadFor(std::chrono::milliseconds(5), &lines);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    while (reader.ReadFor(std::chrono::milliseconds(200), &lines)) {
    }
    close(read_fd);
    std::set<uint64_t> acked;
    for (const std::string& l : lines) {
      ASSERT_EQ(l[0], 'R') << l;
      acked.insert(std::stoull(l.substr(2)));
    }

    auto opened = Store::Open(RouteOptions(path));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Store& store = **opened;
    ExpectVerifiesClean(store);
    std::set<uint64_t> rows;
    ASSERT_TRUE(store
                    .ListQueue(dest,
                               [&](const QueueRow& r) {
                                 EXPECT_EQ(r.rule, kManualRule);
                                 rows.insert(r.object_id);
                                 return true;
                               })
                    .ok());
    uint64_t routed = 0;
    ASSERT_TRUE(store
                    .List([&](const ObjectMeta& m) {
                      const bool has_route = std::any_of(m.routes.begin(), m.routes.end(),
                                                         [&](const Route& r) { return r.destination == dest; });
                      EXPECT_EQ(has_route, rows.count(m.id) == 1) << "object " << m.id << " half routed";
                      if (acked.count(m.id)) {
                        EXPECT_TRUE(has_route) << "acknowledged route of " << m.id << " lost";
                      }
                      routed += has_route;
                      return true;
                    })
                    .ok());
    uint32_t history_queued = 0;
    ASSERT_TRUE(store
                    .ListStudies([&](const StudyHistory& h) {
                      for (const StudyDestination& d : h.destinations) {
                        if (d.destination == dest) history_queued = d.queued;
                      }
                      return true;
                    })
                    .ok());
    EXPECT_EQ(history_queued, routed) << "the study history counts exactly the rows that are there";
    EXPECT_GE(routed, acked.size());
    partial_cycles += routed < static_cast<uint64_t>(kRouteObjects);
    std::printf("cycle %d: %zu routes acknowledged, %llu routed of %d\n", cycle, acked.size(),
                static_cast<unsigned long long>(routed), kRouteObjects);
  }
  std::printf("%d of 4 cycles killed mid-route\n", partial_cycles);
}

// kill -9 during the history backfill of a store written before the
// history: the next open goes on from where it stopped, and the history
// ends as a backfill that was never interrupted would leave it.
TEST(CrashTest, KillNineDuringTheHistoryBackfillResumesAndCountsOnce) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  MakeDeliveredStudy(path);
  ForgetHistory(path);
  std::mt19937 rng(std::random_device{}());
  for (int cycle = 0; cycle < 3; ++cycle) {
    pid_t pid = fork();
    if (pid == 0) {
      auto opened = Store::Open(RouteOptions(path));
      if (!opened.ok()) _exit(2);
      for (;;) pause();
    }
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 12));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
  }
  auto opened = Store::Open(RouteOptions(path));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  StudyHistory study;
  for (;;) {
    study = StudyHistory{};
    ASSERT_TRUE(store
                    .ListStudies([&](const StudyHistory& h) {
                      study = h;
                      return true;
                    })
                    .ok());
    if (study.objects >= static_cast<uint32_t>(kRouteObjects)) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << study.objects;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(study.study_instance_uid, kRouteStudy);
  EXPECT_EQ(study.objects, static_cast<uint32_t>(kRouteObjects)) << "each object once";
  ASSERT_EQ(study.destinations.size(), 1u);
  EXPECT_EQ(study.destinations[0].sent, static_cast<uint32_t>(kRouteObjects));
  EXPECT_EQ(study.destinations[0].queued, 0u);
  ExpectVerifiesClean(store);
}

}  // namespace
}  // namespace relais::store
