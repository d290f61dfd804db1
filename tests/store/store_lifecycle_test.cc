// The lifecycle of stored objects (FORMAT.md "Lifecycle"): every object in
// one class, each class removed by Sweep at its retention with a fake clock,
// requeue of an expiring dead letter, retention changes applying to stored
// objects, an older store getting its classes on open, RemoveObjects, and
// ninety simulated days under the shipped defaults.
#include <gtest/gtest.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include "store/lmdb_env.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::MakeMeta;
using testing::PutObject;
using testing::RandomBytes;
using testing::TempDir;
using testing::TestOptions;
using Kind = QueueUpdate::Kind;

constexpr int64_t kHour = 3600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kT0 = 1'800'000'000'000;  // 2027-01-15, the fake clock's start

// A fake wall clock shared by a store's Options and the test.
struct FakeClock {
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(kT0);
  std::function<int64_t()> fn() const {
    return [n = now] { return n->load(); };
  }
  void Set(int64_t t) { now->store(t); }
  int64_t Get() const { return now->load(); }
};

Options LifeOptions(const std::string& path, const FakeClock& clock) {
  Options o = TestOptions(path);
  o.clock = clock.fn();
  o.retention_ms = 7 * kDay;
  o.unrouted_retention_ms = 7 * kDay;
  o.dead_retention_ms = 30 * kDay;
  o.dropped_retention_ms = 1 * kHour;
  return o;
}

ObjectMeta Routed(const std::string& uid) {
  ObjectMeta m = MakeMeta(uid);
  m.routing = "routed";
  m.matched_rules = {"r1"};
  m.routes = {Route{"archive", 0, "r1", ""}};
  return m;
}
ObjectMeta WithRouting(const std::string& uid, const char* routing) {
  ObjectMeta m = MakeMeta(uid);
  m.routing = routing;
  return m;
}

QueueUpdate Update(Kind kind, uint64_t id) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = "archive";
  u.object_id = id;
  return u;
}

Status SweepAt(Store& store, int64_t now) {
  std::promise<Status> p;
  auto f = p.get_future();
  store.Sweep(now, [&p](Status s) { p.set_value(s); });
  return f.get();
}

uint64_t Put(Store& store, const ObjectMeta& m, size_t size = 100) {
  testing::PutResult r = PutObject(store, m, RandomBytes(size, static_cast<uint32_t>(m.sop_instance_uid.size())));
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  return r.meta.id;
}

ObjectClass ClassOf(const Store& store, uint64_t id) {
  Result<ObjectLife> life = store.GetLife(id);
  if (!life.ok()) return ObjectClass::kNone;
  return life->object_class;
}

void ExpectVerifiesClean(const Store& store) {
  Result<VerifyReport> r = store.Verify(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const VerifyProblem& p : r->problems)
    ADD_FAILURE() << p.object_id << " " << p.sop_instance_uid << ": " << p.what;
}

uint64_t ClassObjects(const Store& store, ObjectClass c) {
  return store.GetStats().class_objects[static_cast<size_t>(c)];
}

TEST(LifecycleTest, EveryObjectIsInOneClassAndEachClassGoesAtItsRetention) {
  TempDir dir;
  FakeClock clock;
  auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  uint64_t queued = Put(store, Routed("1.2.1.1"));
  uint64_t delivered = Put(store, Routed("1.2.1.2"));
  uint64_t dead = Put(store, Routed("1.2.1.3"));
  uint64_t unrouted = Put(store, WithRouting("1.2.1.4", "unrouted"));
  uint64_t dropped = Put(store, WithRouting("1.2.1.5", "dropped"));
  uint64_t plain = Put(store, MakeMeta("1.2.1.6"));  // stored without rules: unrouted
  ASSERT_TRUE(
      testing::ApplyUpdates(store, {Update(Kind::kDelivered, delivered), Update(Kind::kDeadLetter, dead)}).ok());

  EXPECT_EQ(ClassOf(store, queued), ObjectClass::kQueued);
  EXPECT_EQ(ClassOf(store, delivered), ObjectClass::kDelivered);
  EXPECT_EQ(ClassOf(store, dead), ObjectClass::kDead);
  EXPECT_EQ(ClassOf(store, unrouted), ObjectClass::kUnrouted);
  EXPECT_EQ(ClassOf(store, dropped), ObjectClass::kDropped);
  EXPECT_EQ(ClassOf(store, plain), ObjectClass::kUnrouted);
  Result<ObjectLife> life = store.GetLife(dead);
  ASSERT_TRUE(life.ok());
  EXPECT_EQ(life->since_unix_ms, kT0);
  EXPECT_EQ(life->expires_unix_ms, kT0 + 30 * kDay);
  EXPECT_EQ(store.GetLife(queued)->expires_unix_ms, -1) << "queued: goes with its rows";
  Store::Stats st = store.GetStats();
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kQueued)], 1u);
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kUnrouted)], 2u);
  EXPECT_GT(st.class_stored_bytes[static_cast<size_t>(ObjectClass::kUnrouted)], 0u);
  ExpectVerifiesClean(store);

  // Each class at its time, not a millisecond before.
  ASSERT_TRUE(SweepAt(store, kT0 + kHour - 1).ok());
  EXPECT_TRUE(store.Get(dropped).ok());
  ASSERT_TRUE(SweepAt(store, kT0 + kHour).ok());
  EXPECT_TRUE(store.Get(dropped).status().IsNotFound());
  ASSERT_TRUE(SweepAt(store, kT0 + 7 * kDay - 1).ok());
  EXPECT_TRUE(store.Get(delivered).ok());
  EXPECT_TRUE(store.Get(unrouted).ok());
  ASSERT_TRUE(SweepAt(store, kT0 + 7 * kDay).ok());
  EXPECT_TRUE(store.Get(delivered).status().IsNotFound());
  EXPECT_TRUE(store.Get(unrouted).status().IsNotFound());
  EXPECT_TRUE(store.Get(plain).status().IsNotFound());
  EXPECT_TRUE(store.Get(dead).ok());
  ASSERT_TRUE(SweepAt(store, kT0 + 30 * kDay).ok());
  EXPECT_TRUE(store.Get(dead).status().IsNotFound());
  EXPECT_TRUE(store.Find("1.2.1.3").status().IsNotFound());
  size_t dead_rows = 0;
  ASSERT_TRUE(store.ListDead([&](const QueueRow&) { return ++dead_rows > 0; }).ok());
  EXPECT_EQ(dead_rows, 0u) << "its dead letters were purged with it";
  // Queued objects never expire by time.
  ASSERT_TRUE(SweepAt(store, kT0 + 3650 * kDay).ok());
  EXPECT_TRUE(store.Get(queued).ok());
  st = store.GetStats();
  EXPECT_EQ(st.objects, 1u);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kDropped)], 1u);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kUnrouted)], 2u);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kDelivered)], 1u);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kDead)], 1u);
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kUnrouted)], 0u);
  EXPECT_EQ(st.class_stored_bytes[static_cast<size_t>(ObjectClass::kDead)], 0u);
  ExpectVerifiesClean(store);
}

// SIGHUP with new retentions: Store::SetRetentions. The writer takes them
// in queue order, so a Sweep queued right after (without waiting) already
// removes by them; readers (GetLife, RetentionMs) see them at once.
TEST(LifecycleTest, SetRetentionsAppliesToTheNextSweep) {
  TempDir dir;
  FakeClock clock;
  auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  uint64_t delivered = Put(store, Routed("1.2.7.1"));
  uint64_t unrouted = Put(store, WithRouting("1.2.7.2", "unrouted"));
  uint64_t dead = Put(store, Routed("1.2.7.3"));
  ASSERT_TRUE(
      testing::ApplyUpdates(store, {Update(Kind::kDelivered, delivered), Update(Kind::kDeadLetter, dead)}).ok());
  ASSERT_TRUE(SweepAt(store, kT0 + kDay).ok());
  EXPECT_TRUE(store.Get(delivered).ok()) << "7 days of retention";

  Retentions r = store.GetRetentions();
  EXPECT_EQ(r.delivered_ms, 7 * kDay);
  r.delivered_ms = kHour;  // shorter: already over for `delivered`
  r.dead_ms = -1;          // kept until an admin removes it
  std::promise<Status> applied;
  store.SetRetentions(r, [&applied](Status s) { applied.set_value(s); });
  // Not waited for: the sweep is queued behind the change.
  ASSERT_TRUE(SweepAt(store, kT0 + kDay).ok());
  ASSERT_TRUE(applied.get_future().get().ok());
  EXPECT_TRUE(store.Get(delivered).status().IsNotFound()) << "removed by the new retention";
  EXPECT_TRUE(store.Get(unrouted).ok());
  EXPECT_EQ(store.RetentionMs(ObjectClass::kDelivered), kHour);
  EXPECT_EQ(store.GetLife(dead)->expires_unix_ms, -1);
  EXPECT_EQ(store.GetStats().expired[static_cast<size_t>(ObjectClass::kDelivered)], 1u);

  // Longer again: an object the old one would have removed stays.
  r.unrouted_ms = 60 * kDay;
  std::promise<Status> again;
  store.SetRetentions(r, [&again](Status s) { again.set_value(s); });
  ASSERT_TRUE(again.get_future().get().ok());
  EXPECT_EQ(store.GetLife(unrouted)->expires_unix_ms, kT0 + 60 * kDay);
  ASSERT_TRUE(SweepAt(store, kT0 + 59 * kDay).ok());
  EXPECT_TRUE(store.Get(unrouted).ok());
  EXPECT_TRUE(store.Get(dead).ok()) << "dead letters kept (-1)";
  ASSERT_TRUE(SweepAt(store, kT0 + 60 * kDay).ok());
  EXPECT_TRUE(store.Get(unrouted).status().IsNotFound());
  ExpectVerifiesClean(store);
}

TEST(LifecycleTest, TheExpiryCallbackTellsWhatWentAndWhy) {
  TempDir dir;
  FakeClock clock;
  auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  std::mutex mu;
  std::vector<ExpiredObject> gone;
  store.SetExpiryCallback([&](const std::vector<ExpiredObject>& g) {
    std::lock_guard<std::mutex> lock(mu);
    gone.insert(gone.end(), g.begin(), g.end());
  });
  uint64_t dead = Put(store, testing::RoutedMeta2("1.2.1.30"));
  QueueUpdate a = Update(Kind::kDeadLetter, dead);
  QueueUpdate b = a;
  b.destination = "telerad";
  b.priority = 10;
  ASSERT_TRUE(testing::ApplyUpdates(store, {a, b}).ok());
  Put(store, WithRouting("1.2.1.31", "unrouted"));
  ASSERT_TRUE(SweepAt(store, kT0 + 30 * kDay).ok());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone[0].sop_instance_uid, "1.2.1.31");
  EXPECT_EQ(gone[0].object_class, ObjectClass::kUnrouted);
  EXPECT_EQ(gone[0].since_unix_ms, kT0);
  EXPECT_EQ(gone[1].sop_instance_uid, "1.2.1.30");
  EXPECT_EQ(gone[1].object_class, ObjectClass::kDead);
  EXPECT_EQ(gone[1].dead_destinations, (std::vector<std::string>{"archive", "telerad"}));
}

TEST(LifecycleTest, DroppedObjectsWithoutRetentionAreNotKeptPastTheirCommit) {
  TempDir dir;
  FakeClock clock;
  Options o = LifeOptions(dir.Sub("db"), clock);
  o.dropped_retention_ms = 0;
  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  testing::PutResult r = PutObject(store, WithRouting("1.2.2.1", "dropped"), RandomBytes(200'000, 3));
  ASSERT_TRUE(r.status.ok()) << "acknowledged";
  EXPECT_TRUE(store.Find("1.2.2.1").status().IsNotFound());
  Store::Stats st = store.GetStats();
  EXPECT_EQ(st.objects, 0u);
  EXPECT_EQ(st.stored_bytes, 0u);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kDropped)], 1u);
  ExpectVerifiesClean(store);
}

TEST(LifecycleTest, ADeadLetterRequeuedBeforeItExpiresIsQueuedAgainAndDiesAfresh) {
  TempDir dir;
  FakeClock clock;
  auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  uint64_t id = Put(store, Routed("1.2.3.1"));
  ASSERT_TRUE(testing::ApplyUpdates(store, {Update(Kind::kDeadLetter, id)}).ok());
  EXPECT_EQ(ClassOf(store, id), ObjectClass::kDead);
  // A day before it would expire, the admin requeues it.
  clock.Set(kT0 + 29 * kDay);
  int64_t first_expiry = store.GetLife(id)->expires_unix_ms;
  EXPECT_EQ(first_expiry, kT0 + 30 * kDay);
  ASSERT_TRUE(testing::ApplyUpdates(store, {Update(Kind::kRequeue, id)}).ok());
  EXPECT_EQ(ClassOf(store, id), ObjectClass::kQueued);
  ASSERT_TRUE(SweepAt(store, kT0 + 31 * kDay).ok());
  EXPECT_TRUE(store.Get(id).ok()) << "queued: its old dead time no longer counts";
  // It dies again: a new 30 days from then.
  clock.Set(kT0 + 32 * kDay);
  ASSERT_TRUE(testing::ApplyUpdates(store, {Update(Kind::kDeadLetter, id)}).ok());
  EXPECT_EQ(store.GetLife(id)->expires_unix_ms, kT0 + 62 * kDay);
  ASSERT_TRUE(SweepAt(store, kT0 + 62 * kDay - 1).ok());
  EXPECT_TRUE(store.Get(id).ok());
  ASSERT_TRUE(SweepAt(store, kT0 + 62 * kDay).ok());
  EXPECT_TRUE(store.Get(id).status().IsNotFound());
  ExpectVerifiesClean(store);
}

TEST(LifecycleTest, AnObjectWithLiveAndDeadRowsIsQueuedUntilItsLastLiveRowEnds) {
  TempDir dir;
  FakeClock clock;
  auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  uint64_t id = Put(store, testing::RoutedMeta2("1.2.3.9"));
  QueueUpdate dead_a = Update(Kind::kDeadLetter, id);
  ASSERT_TRUE(testing::ApplyUpdates(store, {dead_a}).ok());
  EXPECT_EQ(ClassOf(store, id), ObjectClass::kQueued) << "telerad still has a live row";
  clock.Set(kT0 + 5 * kDay);
  QueueUpdate delivered_b = Update(Kind::kDelivered, id);
  delivered_b.destination = "telerad";
  delivered_b.priority = 10;
  ASSERT_TRUE(testing::ApplyUpdates(store, {delivered_b}).ok());
  Result<ObjectLife> life = store.GetLife(id);
  EXPECT_EQ(life->object_class, ObjectClass::kDead);
  EXPECT_EQ(life->since_unix_ms, kT0 + 5 * kDay) << "dead from when its last live row ended";
  ExpectVerifiesClean(store);
}

TEST(LifecycleTest, ARetentionChangeAppliesToObjectsAlreadyStored) {
  TempDir dir;
  FakeClock clock;
  uint64_t unrouted = 0, dead = 0;
  {
    auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
    ASSERT_TRUE(opened.ok());
    unrouted = Put(**opened, WithRouting("1.2.4.1", "unrouted"));
    dead = Put(**opened, Routed("1.2.4.2"));
    ASSERT_TRUE(testing::ApplyUpdates(**opened, {Update(Kind::kDeadLetter, dead)}).ok());
    ASSERT_TRUE(SweepAt(**opened, kT0 + 2 * kDay).ok());
    EXPECT_TRUE((*opened)->Get(unrouted).ok());
  }
  // Restarted with shorter retentions: the stored objects go by the new ones.
  Options o = LifeOptions(dir.Sub("db"), clock);
  o.unrouted_retention_ms = 1 * kDay;
  o.dead_retention_ms = 2 * kDay;
  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ((*opened)->GetLife(unrouted)->expires_unix_ms, kT0 + 1 * kDay);
  ASSERT_TRUE(SweepAt(**opened, kT0 + 2 * kDay).ok());
  EXPECT_TRUE((*opened)->Get(unrouted).status().IsNotFound());
  EXPECT_TRUE((*opened)->Get(dead).status().IsNotFound());
  ExpectVerifiesClean(**opened);
}

TEST(LifecycleTest, ANegativeRetentionKeepsTheClassForever) {
  TempDir dir;
  FakeClock clock;
  Options o = LifeOptions(dir.Sub("db"), clock);
  o.unrouted_retention_ms = -1;
  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok());
  uint64_t id = Put(**opened, WithRouting("1.2.4.9", "unrouted"));
  EXPECT_EQ((*opened)->GetLife(id)->expires_unix_ms, -1);
  ASSERT_TRUE(SweepAt(**opened, INT64_MAX / 2).ok());
  EXPECT_TRUE((*opened)->Get(id).ok());
}

TEST(LifecycleTest, AStoreWrittenBeforeTheLifecycleGetsClassesOnItsFirstOpen) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.Sub("db");
  uint64_t queued = 0, dead = 0, unrouted = 0, delivered = 0;
  {
    auto opened = Store::Open(LifeOptions(path, clock));
    ASSERT_TRUE(opened.ok());
    queued = Put(**opened, Routed("1.2.5.1"));
    dead = Put(**opened, Routed("1.2.5.2"));
    unrouted = Put(**opened, WithRouting("1.2.5.3", "unrouted"));
    delivered = Put(**opened, Routed("1.2.5.4"));
    clock.Set(kT0 + kDay);
    ASSERT_TRUE(
        testing::ApplyUpdates(**opened, {Update(Kind::kDeadLetter, dead), Update(Kind::kDelivered, delivered)}).ok());
  }
  {
    // What an older Relais wrote: no `life`, no `expiry`, no counts.
    LmdbEnv env;
    ASSERT_TRUE(env.Open(path, 256ull << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    ASSERT_EQ(mdb_drop(txn.get(), env.dbis().life, 1), MDB_SUCCESS);
    ASSERT_EQ(mdb_drop(txn.get(), env.dbis().expiry, 1), MDB_SUCCESS);
    for (const char* k :
         {"lifecycle", "class_objects.queued", "class_bytes.queued", "class_objects.dead", "class_bytes.dead",
          "class_objects.delivered", "class_bytes.delivered", "class_objects.unrouted", "class_bytes.unrouted",
          "class_objects.dropped", "class_bytes.dropped"}) {
      ASSERT_TRUE(txn.Del(env.dbis().meta, ToVal(std::string_view(k))).ok());
    }
    ASSERT_TRUE(txn.Commit().ok());
  }
  {
    // A read-only open does not change it: objects are unclassified.
    Options ro = LifeOptions(path, clock);
    ro.read_only = true;
    auto opened = Store::Open(ro);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(ClassOf(**opened, queued), ObjectClass::kNone);
    ExpectVerifiesClean(**opened);
  }
  clock.Set(kT0 + 3 * kDay);
  auto opened = Store::Open(LifeOptions(path, clock));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  EXPECT_EQ(ClassOf(store, queued), ObjectClass::kQueued);
  EXPECT_EQ(ClassOf(store, dead), ObjectClass::kDead);
  EXPECT_EQ(store.GetLife(dead)->since_unix_ms, kT0 + kDay) << "from its dead row's time";
  EXPECT_EQ(ClassOf(store, unrouted), ObjectClass::kUnrouted);
  EXPECT_EQ(store.GetLife(unrouted)->since_unix_ms, store.Get(unrouted)->received_unix_ms);
  EXPECT_EQ(ClassOf(store, delivered), ObjectClass::kDelivered);
  EXPECT_EQ(store.GetLife(delivered)->since_unix_ms, kT0 + kDay) << "from its done row";
  EXPECT_EQ(ClassObjects(store, ObjectClass::kQueued), 1u);
  ExpectVerifiesClean(store);
}

TEST(LifecycleTest, VerifyFindsAWrongClassAndRepairRebuildsTheIndex) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.Sub("db");
  uint64_t id = 0;
  {
    auto opened = Store::Open(LifeOptions(path, clock));
    ASSERT_TRUE(opened.ok());
    id = Put(**opened, WithRouting("1.2.6.1", "unrouted"));
  }
  {
    LmdbEnv env;
    ASSERT_TRUE(env.Open(path, 256ull << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    IdKey key(id);
    ASSERT_TRUE(txn.Del(env.dbis().life, key.val()).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  Options admin = LifeOptions(path, clock);
  admin.admin = true;
  auto opened = Store::Open(admin);
  ASSERT_TRUE(opened.ok());
  Result<VerifyReport> v = (*opened)->Verify(nullptr);
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  Result<RepairReport> r = (*opened)->Repair(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->after.ok()) << (r->after.problems.empty() ? "" : r->after.problems[0].what);
  EXPECT_EQ(ClassOf(**opened, id), ObjectClass::kUnrouted);
}

TEST(LifecycleTest, ListClassWalksOneClassOldestFirstUpToATime) {
  TempDir dir;
  FakeClock clock;
  auto opened = Store::Open(LifeOptions(dir.Sub("db"), clock));
  ASSERT_TRUE(opened.ok());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    clock.Set(kT0 + (5 - i) * kHour);  // stored newest first
    ids.push_back(Put(**opened, WithRouting("1.2.7." + std::to_string(i), "unrouted")));
  }
  Put(**opened, Routed("1.2.7.9"));
  std::vector<uint64_t> seen;
  ASSERT_TRUE((*opened)
                  ->ListClass(ObjectClass::kUnrouted, kT0 + 3 * kHour,
                              [&](uint64_t id, int64_t) {
                                seen.push_back(id);
                                return true;
                              })
                  .ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{ids[4], ids[3], ids[2]}));
}

TEST(LifecycleTest, RemoveObjectsTakesEverythingOfTheObjectsInAdminMode) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.Sub("db");
  std::vector<uint64_t> ids;
  {
    auto opened = Store::Open(LifeOptions(path, clock));
    ASSERT_TRUE(opened.ok());
    for (int i = 0; i < 300; ++i) ids.push_back(Put(**opened, Routed("1.2.8." + std::to_string(i))));
    ids.push_back(Put(**opened, WithRouting("1.2.8.u", "unrouted")));
    QueueUpdate dead = Update(Kind::kDeadLetter, ids[0]);
    dead.log_attempt = true;
    ASSERT_TRUE(testing::ApplyUpdates(**opened, {dead}).ok());
  }
  Options admin = LifeOptions(path, clock);
  admin.admin = true;
  auto opened = Store::Open(admin);
  ASSERT_TRUE(opened.ok());
  std::vector<uint64_t> progress;
  std::vector<uint64_t> gone(ids.begin(), ids.begin() + 290);
  gone.push_back(ids.back());
  gone.push_back(999'999);  // never existed: skipped
  Result<uint64_t> removed = (*opened)->RemoveObjects(gone, [&](uint64_t n) { progress.push_back(n); });
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(*removed, 291u);
  EXPECT_EQ(progress, (std::vector<uint64_t>{256, 291}));
  Store::Stats st = (*opened)->GetStats();
  EXPECT_EQ(st.objects, 10u);
  EXPECT_EQ(st.queue_rows, 10u);
  EXPECT_EQ(st.dead_rows, 0u);
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kQueued)], 10u);
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kUnrouted)], 0u);
  ExpectVerifiesClean(**opened);
}

// Ninety days of a small site with the shipped defaults (appliance/relais.toml
// and README: delivered 7 d, unrouted 7 d, dead letters 30 d, dropped 0): the
// store stays under a bound and every class leaves at its time.
TEST(LifecycleTest, NinetySimulatedDaysStayBoundedWithTheShippedDefaults) {
  TempDir dir;
  FakeClock clock;
  Options o = TestOptions(dir.Sub("db"));
  o.clock = clock.fn();
  o.retention_ms = 7 * kDay;
  o.unrouted_retention_ms = 7 * kDay;
  o.dead_retention_ms = 30 * kDay;
  o.dropped_retention_ms = 0;
  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  constexpr int kDays = 90;
  constexpr int kRouted = 200, kUnrouted = 40, kDropped = 30, kDead = 10;  // per day
  constexpr size_t kPayload = 512;
  uint64_t high_water_objects = 0, high_water_bytes = 0;
  auto put_many = [&](int day, const char* kind, int n, bool routed) {
    std::vector<std::unique_ptr<ObjectWriter>> writers;
    std::vector<std::promise<uint64_t>> done(n);
    std::vector<uint64_t> ids;
    for (int i = 0; i < n; ++i) {
      std::string uid = "1.2.99." + std::to_string(day) + "." + kind + "." + std::to_string(i);
      ObjectMeta m = routed ? Routed(uid) : WithRouting(uid, kind);
      auto w = store.NewObject();
      std::vector<uint8_t> bytes = RandomBytes(kPayload, static_cast<uint32_t>(day * 1000 + i));
      w->Append(bytes);
      w->Finish(m, [&done, i](Status s, const ObjectMeta& meta) { done[i].set_value(s.ok() ? meta.id : 0); });
      writers.push_back(std::move(w));
    }
    for (auto& p : done) ids.push_back(p.get_future().get());
    return ids;
  };
  std::printf("day  queued  dead  delivered  unrouted  dropped  objects  stored_bytes\n");
  for (int day = 0; day < kDays; ++day) {
    const int64_t morning = kT0 + day * kDay + 8 * kHour;
    clock.Set(morning);
    std::vector<uint64_t> routed = put_many(day, "routed", kRouted + kDead, true);
    put_many(day, "unrouted", kUnrouted, false);
    put_many(day, "dropped", kDropped, false);
    clock.Set(morning + kHour);
    std::vector<QueueUpdate> updates;
    for (size_t i = 0; i < routed.size(); ++i) {
      ASSERT_NE(routed[i], 0u);
      updates.push_back(Update(i < kDead ? Kind::kDeadLetter : Kind::kDelivered, routed[i]));
    }
    ASSERT_TRUE(testing::ApplyUpdates(store, std::move(updates)).ok());
    // The serving process sweeps every few minutes; once a day is enough here.
    const int64_t evening = kT0 + day * kDay + 20 * kHour;
    ASSERT_TRUE(SweepAt(store, evening).ok());
    Store::Stats st = store.GetStats();
    high_water_objects = std::max(high_water_objects, st.objects);
    high_water_bytes = std::max(high_water_bytes, st.stored_bytes);
    // No object of an expiring class is past its time after a sweep.
    for (ObjectClass c : {ObjectClass::kDead, ObjectClass::kDelivered, ObjectClass::kUnrouted, ObjectClass::kDropped}) {
      size_t overdue = 0;
      ASSERT_TRUE(
          store.ListClass(c, evening - store.RetentionMs(c), [&](uint64_t, int64_t) { return ++overdue > 0; }).ok());
      EXPECT_EQ(overdue, 0u) << ObjectClassName(c) << " on day " << day;
    }
    EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kDropped)], 0u);
    if (day % 10 == 9 || day < 2 || day == 30 || day == 31) {
      std::printf("%3d  %6" PRIu64 "  %4" PRIu64 "  %9" PRIu64 "  %8" PRIu64 "  %7" PRIu64 "  %7" PRIu64 "  %12" PRIu64
                  "\n",
                  day + 1, st.class_objects[1], st.class_objects[2], st.class_objects[3], st.class_objects[4],
                  st.class_objects[5], st.objects, st.stored_bytes);
    }
  }
  // The bound: what the retentions allow, a day's worth more for the day in
  // progress (7 days of delivered and unrouted, 30 of dead letters).
  const uint64_t bound = 8 * (kRouted + kUnrouted) + 31 * kDead;
  std::printf("high water: %" PRIu64 " objects (bound %" PRIu64 "), %" PRIu64 " stored bytes\n", high_water_objects,
              bound, high_water_bytes);
  EXPECT_LE(high_water_objects, bound);
  Store::Stats st = store.GetStats();
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kDelivered)], 7u * kRouted);
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kUnrouted)], 7u * kUnrouted);
  EXPECT_EQ(st.class_objects[static_cast<size_t>(ObjectClass::kDead)], 30u * kDead);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kDropped)], static_cast<uint64_t>(kDays) * kDropped);
  EXPECT_EQ(st.expired[static_cast<size_t>(ObjectClass::kDead)], static_cast<uint64_t>(kDays - 30) * kDead);
  ExpectVerifiesClean(store);
}

}  // namespace
}  // namespace relais::store
