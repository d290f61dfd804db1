// Duplicate policy (issue 13): an identical resend is acknowledged without a
// second object; a changed one replaces; the `delivered` table remembers
// what went where, and a destination's resend policy suppresses rows at the
// commit of an object received again; Sweep bounds that memory.
#include <gtest/gtest.h>

#include <future>

#include "base/clock.h"
#include "store/lmdb_env.h"
#include "store/resend.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::MakeMeta;
using testing::PutObject;
using testing::RandomBytes;
using testing::ReadAll;
using testing::TempDir;
using testing::TestOptions;

constexpr int64_t kDay = 86400 * 1000LL;

std::unique_ptr<Store> OpenOrDie(const Options& o) {
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s.value()) : nullptr;
}

size_t CountRows(const std::string& path, MDB_dbi Dbis::*dbi) {
  LmdbEnv env;
  EXPECT_TRUE(env.Open(path, 0, true).ok());
  Txn txn;
  EXPECT_TRUE(txn.Begin(env, false).ok());
  MDB_stat st;
  EXPECT_EQ(mdb_stat(txn.get(), env.dbis().*dbi, &st), MDB_SUCCESS);
  return st.ms_entries;
}

// Routed to "archive" (if-changed) and "telerad" (never), both 30 days.
ObjectMeta WithPolicies(const std::string& uid, int64_t received_unix_ms, Resend archive = Resend::kIfChanged,
                        Resend telerad = Resend::kNever) {
  ObjectMeta m = MakeMeta(uid);
  m.received_unix_ms = received_unix_ms;
  m.routing = "routed";
  m.matched_rules = {"r1"};
  m.routes = {Route{"archive", 0, "r1", "", archive, 30 * kDay}, Route{"telerad", 0, "r1", "", telerad, 30 * kDay}};
  return m;
}

Status Deliver(Store& store, uint64_t id, const std::string& dest) {
  QueueUpdate u;
  u.kind = QueueUpdate::Kind::kDelivered;
  u.destination = dest;
  u.object_id = id;
  return testing::ApplyUpdates(store, {u});
}

Status SweepAt(Store& store, int64_t now) {
  std::promise<Status> p;
  auto f = p.get_future();
  store.Sweep(now, [&p](Status s) { p.set_value(s); });
  return f.get();
}

std::vector<QueueRow> Live(const Store& store) {
  std::vector<QueueRow> rows;
  EXPECT_TRUE(store
                  .ListQueue([&](const QueueRow& r) {
                    rows.push_back(r);
                    return true;
                  })
                  .ok());
  return rows;
}

std::vector<Attempt> Attempts(const Store& store, uint64_t id) {
  std::vector<Attempt> out;
  EXPECT_TRUE(store
                  .ListAttempts(id,
                                [&](const Attempt& a) {
                                  out.push_back(a);
                                  return true;
                                })
                  .ok());
  return out;
}

// Sends `uid` with `bytes` and delivers it to both destinations: the object
// is removed (retention 0) and `delivered` remembers it.
uint64_t StoreAndDeliver(Store& store, const std::string& uid, const std::vector<uint8_t>& bytes, int64_t now) {
  auto r = PutObject(store, WithPolicies(uid, now), bytes);
  EXPECT_TRUE(r.status.ok());
  EXPECT_TRUE(Deliver(store, r.meta.id, "archive").ok());
  EXPECT_TRUE(Deliver(store, r.meta.id, "telerad").ok());
  EXPECT_TRUE(store.Find(uid).status().IsNotFound());
  return r.meta.id;
}

TEST(IdenticalDuplicateTest, IsAcknowledgedWithoutASecondObject) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const std::vector<uint8_t> bytes = RandomBytes(150000, 7);
  auto first = PutObject(*store, testing::RoutedMeta2("1.2.3"), bytes);
  ASSERT_TRUE(first.status.ok());
  EXPECT_EQ(first.meta.duplicate_of, 0u);
  const size_t chunks = CountRows(dir.path(), &Dbis::chunks);

  auto again = PutObject(*store, testing::RoutedMeta2("1.2.3"), bytes);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.meta.duplicate_of, first.meta.id);

  auto found = store->Find("1.2.3");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->id, first.meta.id);
  std::vector<uint8_t> out;
  ASSERT_TRUE(ReadAll(*store, first.meta.id, &out).ok());
  EXPECT_EQ(out, bytes);
  EXPECT_TRUE(ReadAll(*store, again.meta.id, &out).IsNotFound());
  Store::Stats st = store->GetStats();
  EXPECT_EQ(st.objects, 1u);
  EXPECT_EQ(st.raw_bytes, bytes.size());
  std::vector<QueueRow> rows = Live(*store);
  ASSERT_EQ(rows.size(), 2u);
  for (const QueueRow& r : rows) EXPECT_EQ(r.object_id, first.meta.id);
  store.reset();
  EXPECT_EQ(CountRows(dir.path(), &Dbis::chunks), chunks);
  EXPECT_EQ(CountRows(dir.path(), &Dbis::pending), 0u);
}

TEST(IdenticalDuplicateTest, KeepsTheFirstObjectsRetryStateAndAttempts) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const std::vector<uint8_t> bytes = RandomBytes(1000, 3);
  auto first = PutObject(*store, testing::RoutedMeta2("5.5"), bytes);
  ASSERT_TRUE(first.status.ok());
  QueueUpdate u;
  u.kind = QueueUpdate::Kind::kRetryLater;
  u.destination = "archive";
  u.object_id = first.meta.id;
  u.attempts = 3;
  u.next_attempt_unix_ms = 12345;
  u.error = "connection refused";
  u.log_attempt = true;
  u.attempt.result = "retry";
  ASSERT_TRUE(testing::ApplyUpdates(*store, {u}).ok());
  ASSERT_TRUE(PutObject(*store, testing::RoutedMeta2("5.5"), bytes).status.ok());
  for (const QueueRow& r : Live(*store)) {
    if (r.destination == "archive") {
      EXPECT_EQ(r.attempts, 3u);
    }
  }
  EXPECT_EQ(Attempts(*store, first.meta.id).size(), 1u);
}

TEST(IdenticalDuplicateTest, ChangedObjectStillReplaces) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  auto first = PutObject(*store, testing::RoutedMeta2("1.2.4"), RandomBytes(1000, 1));
  // Same size, other bytes: the checksum decides.
  auto second = PutObject(*store, testing::RoutedMeta2("1.2.4"), RandomBytes(1000, 2));
  ASSERT_TRUE(second.status.ok());
  EXPECT_EQ(second.meta.duplicate_of, 0u);
  EXPECT_GT(second.meta.id, first.meta.id);
  EXPECT_EQ(store->Find("1.2.4")->id, second.meta.id);
  std::vector<QueueRow> rows = Live(*store);
  ASSERT_EQ(rows.size(), 2u);
  for (const QueueRow& r : rows) EXPECT_EQ(r.object_id, second.meta.id);
  EXPECT_EQ(store->GetStats().objects, 1u);
}

TEST(ResendPolicyTest, DeliveryIsRememberedPerDestinationAndUid) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  StoreAndDeliver(*store, "9.1", RandomBytes(500, 1), NowUnixMs());
  store.reset();
  EXPECT_EQ(CountRows(dir.path(), &Dbis::delivered), 2u);
}

TEST(ResendPolicyTest, IdenticalResendAfterDeliveryIsSuppressedWithTheReason) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const int64_t now = NowUnixMs();
  const std::vector<uint8_t> bytes = RandomBytes(500, 1);
  StoreAndDeliver(*store, "9.2", bytes, now);

  auto again = PutObject(*store, WithPolicies("9.2", now + kDay), bytes);
  ASSERT_TRUE(again.status.ok());
  EXPECT_TRUE(Live(*store).empty());
  // Kept, finished, until the next Sweep: the admin can see why.
  ASSERT_TRUE(store->Find("9.2").ok());
  std::vector<Attempt> log = Attempts(*store, again.meta.id);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].destination, "archive");
  EXPECT_EQ(log[0].result, "suppressed");
  EXPECT_EQ(log[0].error.find("already delivered to archive at "), 0u) << log[0].error;
  EXPECT_NE(log[0].error.find("with the same content; resend = \"if-changed\""), std::string::npos) << log[0].error;
  EXPECT_EQ(log[1].destination, "telerad");
  EXPECT_NE(log[1].error.find("resend = \"never\""), std::string::npos) << log[1].error;
  // Every route suppressed: the object is in the delivered class (its
  // lifecycle owner is the delivered retention), and the store is consistent.
  auto life = store->GetLife(again.meta.id);
  ASSERT_TRUE(life.ok()) << life.status().ToString();
  EXPECT_EQ(life->object_class, ObjectClass::kDelivered);
  auto report = store->Verify(nullptr);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << (report->problems.empty() ? "" : report->problems[0].what);
  ASSERT_TRUE(SweepAt(*store, NowUnixMs()).ok());
  EXPECT_TRUE(store->Find("9.2").status().IsNotFound());
  EXPECT_EQ(store->GetStats().objects, 0u);
}

TEST(ResendPolicyTest, ChangedResendGoesToIfChangedNotToNever) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const int64_t now = NowUnixMs();
  StoreAndDeliver(*store, "9.3", RandomBytes(500, 1), now);

  auto changed = PutObject(*store, WithPolicies("9.3", now + kDay), RandomBytes(500, 2));
  ASSERT_TRUE(changed.status.ok());
  std::vector<QueueRow> rows = Live(*store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].destination, "archive");
  std::vector<Attempt> log = Attempts(*store, changed.meta.id);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].destination, "telerad");
  EXPECT_EQ(log[0].result, "suppressed");
  EXPECT_NE(log[0].error.find("content changed since"), std::string::npos) << log[0].error;
}

TEST(ResendPolicyTest, AlwaysSendsAgain) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const int64_t now = NowUnixMs();
  const std::vector<uint8_t> bytes = RandomBytes(500, 1);
  StoreAndDeliver(*store, "9.4", bytes, now);
  auto again = PutObject(*store, WithPolicies("9.4", now + kDay, Resend::kAlways, Resend::kAlways), bytes);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(Live(*store).size(), 2u);
  EXPECT_TRUE(Attempts(*store, again.meta.id).empty());
}

TEST(ResendPolicyTest, ADeliveryOlderThanTheWindowNoLongerSuppresses) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const int64_t now = NowUnixMs();
  const std::vector<uint8_t> bytes = RandomBytes(500, 1);
  StoreAndDeliver(*store, "9.5", bytes, now);
  // Received 29 days later: suppressed; 31 days later: sent again.
  auto within = PutObject(*store, WithPolicies("9.5", now + 29 * kDay), bytes);
  ASSERT_TRUE(within.status.ok());
  EXPECT_TRUE(Live(*store).empty());
  ASSERT_TRUE(SweepAt(*store, NowUnixMs()).ok());  // the suppressed object goes
  auto after = PutObject(*store, WithPolicies("9.5", now + 31 * kDay), bytes);
  ASSERT_TRUE(after.status.ok());
  EXPECT_EQ(Live(*store).size(), 2u);
}

TEST(ResendPolicyTest, SweepRemovesDeliveriesOlderThanTheLongestWindow) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const int64_t now = NowUnixMs();
  StoreAndDeliver(*store, "9.6", RandomBytes(500, 1), now);
  StoreAndDeliver(*store, "9.7", RandomBytes(500, 2), now);
  ASSERT_TRUE(SweepAt(*store, now + 29 * kDay).ok());
  store.reset();
  EXPECT_EQ(CountRows(dir.path(), &Dbis::delivered), 4u);
  store = OpenOrDie(TestOptions(dir.path()));
  ASSERT_TRUE(SweepAt(*store, now + 31 * kDay).ok());
  store.reset();
  EXPECT_EQ(CountRows(dir.path(), &Dbis::delivered), 0u);
}

TEST(ResendPolicyTest, DeliveredCodecRoundTripsAndRefusesBadInput) {
  std::vector<uint8_t> k = EncodeDeliveredKey("ARCHIVE", "1.2.3");
  std::string dest, uid;
  ASSERT_TRUE(DecodeDeliveredKey(k, &dest, &uid).ok());
  EXPECT_EQ(dest, "ARCHIVE");
  EXPECT_EQ(uid, "1.2.3");
  const uint8_t no_nul[] = {'A', 'B'};
  EXPECT_TRUE(DecodeDeliveredKey(no_nul, &dest, &uid).code() == Status::Code::kCorruption);
  std::vector<uint8_t> v = EncodeDelivered(Delivered{1234, 0xABCDEFull});
  Delivered d;
  ASSERT_TRUE(DecodeDelivered(v, &d).ok());
  EXPECT_EQ(d.unix_ms, 1234);
  EXPECT_EQ(d.checksum, 0xABCDEFull);
  v.resize(15);
  EXPECT_TRUE(DecodeDelivered(v, &d).code() == Status::Code::kCorruption);
  EXPECT_EQ(FormatUtc(1796637600000), "2026-12-07T10:00:00Z");
}

Result<VerifyReport> VerifyAt(const std::string& path) {
  Options o = TestOptions(path);
  o.read_only = true;
  auto store = Store::Open(o);
  if (!store.ok()) return store.status();
  return (*store)->Verify(nullptr);
}

TEST(ResendPolicyTest, VerifyChecksTheDeliveredTableAndRepairRemovesBadRows) {
  TempDir dir;
  {
    auto store = OpenOrDie(TestOptions(dir.path()));
    const int64_t now = NowUnixMs();
    StoreAndDeliver(*store, "9.8", RandomBytes(500, 1), now);
    ASSERT_TRUE(PutObject(*store, WithPolicies("9.8", now), RandomBytes(500, 1)).status.ok());  // suppressed
  }
  Result<VerifyReport> clean = VerifyAt(dir.path());
  ASSERT_TRUE(clean.ok());
  EXPECT_TRUE(clean->ok()) << (clean->problems.empty() ? "" : clean->problems[0].what);
  EXPECT_EQ(clean->delivered_rows, 2u);
  {
    LmdbEnv env;
    ASSERT_TRUE(env.Open(dir.path(), 0, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    const uint8_t short_value[4] = {1, 2, 3, 4};
    ASSERT_TRUE(txn.Put(env.dbis().delivered, ToVal(std::string_view("NONUL")), ToVal(std::span(short_value))).ok());
    std::vector<uint8_t> k = EncodeDeliveredKey("archive", "9.9");
    ASSERT_TRUE(txn.Put(env.dbis().delivered, ToVal(std::span<const uint8_t>(k)), ToVal(std::span(short_value))).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  Result<VerifyReport> bad = VerifyAt(dir.path());
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->problem_count, 2u);
  ASSERT_FALSE(bad->problems.empty());
  EXPECT_NE(bad->problems[0].what.find("a delivered row does not decode"), std::string::npos);
  Options admin = TestOptions(dir.path());
  admin.admin = true;
  auto store = OpenOrDie(admin);
  Result<RepairReport> r = store->Repair(nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->after.ok());
  EXPECT_EQ(r->after.delivered_rows, 2u);
}

TEST(IdenticalDuplicateTest, ANewDestinationReplacesAndGetsOnlyWhatItLacks) {
  TempDir dir;
  Options o = TestOptions(dir.path());
  o.retention_ms = 3600 * 1000;
  auto store = OpenOrDie(o);
  const int64_t now = NowUnixMs();
  const std::vector<uint8_t> bytes = RandomBytes(800, 4);
  ObjectMeta first = WithPolicies("8.1", now);
  first.routes.pop_back();  // archive only
  auto r1 = PutObject(*store, first, bytes);
  ASSERT_TRUE(r1.status.ok());
  ASSERT_TRUE(Deliver(*store, r1.meta.id, "archive").ok());  // retained, done
  // The rules now also send to telerad: the same bytes are not a duplicate.
  auto r2 = PutObject(*store, WithPolicies("8.1", now), bytes);
  ASSERT_TRUE(r2.status.ok());
  EXPECT_EQ(r2.meta.duplicate_of, 0u);
  EXPECT_EQ(store->Find("8.1")->id, r2.meta.id);
  std::vector<QueueRow> rows = Live(*store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].destination, "telerad");
  EXPECT_EQ(r2.meta.suppressed, std::vector<std::string>{"archive"});
  EXPECT_EQ(store->GetStats().objects, 1u);
}

TEST(ResendPolicyTest, PruneReadsABoundedSliceAndGoesOnWhereItStopped) {
  TempDir dir;
  LmdbEnv env;
  ASSERT_TRUE(env.Open(dir.path(), 64 << 20, false).ok());
  const Dbis& d = env.dbis();
  {
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    ASSERT_TRUE(NoteResendWindow(txn, d, 10 * kDay).ok());
    ASSERT_TRUE(NoteResendWindow(txn, d, 5 * kDay).ok());  // never lowers it
    for (int i = 0; i < 10; ++i) {
      std::vector<uint8_t> k = EncodeDeliveredKey("archive", "1." + std::to_string(i));
      // Even rows are 20 days old, odd rows 1 day.
      std::vector<uint8_t> v = EncodeDelivered(Delivered{(i % 2 == 0 ? 80 : 99) * kDay, 7});
      ASSERT_TRUE(txn.Put(d.delivered, ToVal(std::span<const uint8_t>(k)), ToVal(std::span<const uint8_t>(v))).ok());
    }
    ASSERT_TRUE(txn.Commit().ok());
  }
  std::vector<uint8_t> from;
  auto rows = [&] {
    Txn txn;
    EXPECT_TRUE(txn.Begin(env, false).ok());
    MDB_stat st;
    EXPECT_EQ(mdb_stat(txn.get(), d.delivered, &st), MDB_SUCCESS);
    return st.ms_entries;
  };
  int calls = 0;
  do {
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    bool more = false;
    ASSERT_TRUE(PruneDelivered(txn, d, 100 * kDay, 1000, /*max_scan=*/3, &from, &more).ok());
    EXPECT_FALSE(more);
    ASSERT_TRUE(txn.Commit().ok());
    ++calls;
  } while (!from.empty() && calls < 10);
  EXPECT_EQ(calls, 4);  // 3 + 3 + 3 + 1 rows
  EXPECT_EQ(rows(), 5u);
  // A delete limit stops early and asks to be called again.
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, true).ok());
  bool more = false;
  ASSERT_TRUE(PruneDelivered(txn, d, 200 * kDay, 2, 1000, &from, &more).ok());
  EXPECT_TRUE(more);
  EXPECT_FALSE(from.empty());
  ASSERT_TRUE(txn.Commit().ok());
  EXPECT_EQ(rows(), 3u);
}

TEST(ResendPolicyTest, AlwaysRoutesKeepNoDeliveryMemory) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  const int64_t now = NowUnixMs();
  auto r = PutObject(*store, WithPolicies("9.9", now, Resend::kAlways, Resend::kAlways), RandomBytes(500, 1));
  ASSERT_TRUE(r.status.ok());
  ASSERT_TRUE(Deliver(*store, r.meta.id, "archive").ok());
  ASSERT_TRUE(SweepAt(*store, NowUnixMs() + 1).ok());
  store.reset();
  EXPECT_EQ(CountRows(dir.path(), &Dbis::delivered), 0u);
}

}  // namespace
}  // namespace relais::store
