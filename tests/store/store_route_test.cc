// QueueUpdate::kRoute (`relais route`): an admin sends a stored object to a
// destination no rule asked for; the route joins the object's record and a
// live row due now is made in the same transaction.
#include <gtest/gtest.h>

#include <future>

#include "store/queue_codec.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::PutObject;
using testing::RandomBytes;
using testing::TempDir;
using testing::TestOptions;
using Kind = QueueUpdate::Kind;

QueueUpdate Update(Kind kind, const std::string& dest, int32_t priority, uint64_t id) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = dest;
  u.priority = priority;
  u.object_id = id;
  return u;
}

QueueUpdate RouteTo(const std::string& dest, uint64_t id) {
  QueueUpdate u = Update(Kind::kRoute, dest, 0, id);
  u.log_attempt = true;
  u.attempt.association = "relais route (user alice)";
  u.attempt.result = "routed";
  return u;
}

std::vector<QueueRow> Live(const Store& store, const std::string& dest) {
  std::vector<QueueRow> rows;
  EXPECT_TRUE(store
                  .ListQueue(dest,
                             [&](const QueueRow& r) {
                               rows.push_back(r);
                               return true;
                             })
                  .ok());
  return rows;
}

struct Fixture {
  Fixture() {
    Options o = TestOptions(dir.path());
    o.retention_ms = 3'600'000;
    auto opened = Store::Open(o);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    store = std::move(opened.value());
  }
  uint64_t Put(const std::string& uid) {
    auto r = PutObject(*store, testing::RoutedMeta2(uid), RandomBytes(50000, 7));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }
  void ExpectVerifyClean() {
    Result<VerifyReport> v = store->Verify([](const VerifyProgress&) {});
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    for (const VerifyProblem& p : v->problems) ADD_FAILURE() << p.what;
  }
  TempDir dir;
  std::unique_ptr<Store> store;
};

TEST(RouteTest, RouteOfADeliveredObjectAddsItsRouteAndADueRowAndQueuesItAgain) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.50");
  ASSERT_TRUE(testing::ApplyUpdates(
                  *f.store, {Update(Kind::kDelivered, "archive", 0, id), Update(Kind::kDelivered, "telerad", 10, id)})
                  .ok());
  ASSERT_EQ(f.store->GetLife(id)->object_class, ObjectClass::kDelivered);

  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {RouteTo("cloud", id)}).ok());
  std::vector<QueueRow> rows = Live(*f.store, "cloud");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].object_id, id);
  EXPECT_EQ(rows[0].rule, kManualRule);
  EXPECT_EQ(rows[0].next_attempt_unix_ms, 0);
  EXPECT_GT(rows[0].queued_unix_ms, 0) << "its time in the queue starts now";
  Result<ObjectMeta> m = f.store->Get(id);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->routes.size(), 3u);
  EXPECT_EQ(m->routes[2].destination, "cloud");
  EXPECT_EQ(m->routes[2].rule, kManualRule);
  EXPECT_EQ(f.store->GetLife(id)->object_class, ObjectClass::kQueued);
  std::vector<Attempt> attempts;
  ASSERT_TRUE(f.store
                  ->ListAttempts(id,
                                 [&](const Attempt& a) {
                                   attempts.push_back(a);
                                   return true;
                                 })
                  .ok());
  ASSERT_FALSE(attempts.empty());
  EXPECT_EQ(attempts.back().result, "routed");
  EXPECT_EQ(attempts.back().destination, "cloud");
  EXPECT_EQ(attempts.back().association, "relais route (user alice)");
  f.ExpectVerifyClean();

  // Delivered there too: delivered again, the record keeps the manual route.
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {Update(Kind::kDelivered, "cloud", 0, id)}).ok());
  EXPECT_EQ(f.store->GetLife(id)->object_class, ObjectClass::kDelivered);
  f.ExpectVerifyClean();
}

TEST(RouteTest, RouteIsIdempotentWhenTheRowExists) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.51");
  QueueUpdate later = Update(Kind::kRetryLater, "archive", 0, id);
  later.attempts = 3;
  later.next_attempt_unix_ms = INT64_MAX / 4;
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {later}).ok());
  // A route the rules already asked for: the row is made due now, no new route.
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {RouteTo("archive", id), RouteTo("archive", id)}).ok());
  std::vector<QueueRow> rows = Live(*f.store, "archive");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].next_attempt_unix_ms, 0);
  EXPECT_EQ(rows[0].attempts, 3u);
  EXPECT_EQ(rows[0].rule, "r1");
  EXPECT_EQ(rows[0].queued_unix_ms, 0) << "a live row keeps its time in the queue (since the commit)";
  EXPECT_EQ(f.store->Get(id)->routes.size(), 2u);
  // A new destination twice: one route, one row.
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {RouteTo("cloud", id)}).ok());
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {RouteTo("cloud", id)}).ok());
  EXPECT_EQ(Live(*f.store, "cloud").size(), 1u);
  EXPECT_EQ(f.store->Get(id)->routes.size(), 3u);
  f.ExpectVerifyClean();
}

TEST(RouteTest, QueuedTimeIsAppendedToTheQueueRecordOnlyWhenSet) {
  QueueRow row;
  row.rule = "r";
  const size_t plain = EncodeQueueValue(row).size();
  row.queued_unix_ms = 0x0102030405;
  std::vector<uint8_t> v = EncodeQueueValue(row);
  ASSERT_EQ(v.size(), plain + 8);
  QueueRow back;
  ASSERT_TRUE(DecodeQueueValue(v, &back).ok());
  EXPECT_EQ(back.queued_unix_ms, 0x0102030405);
  ASSERT_TRUE(DecodeQueueValue(std::span<const uint8_t>(v.data(), plain), &back).ok());
  EXPECT_EQ(back.queued_unix_ms, 0) << "a record written before the field";
}

TEST(RouteTest, RouteOfAMissingObjectIsSkipped) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.52");
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {RouteTo("cloud", id + 100)}).ok());
  EXPECT_TRUE(Live(*f.store, "cloud").empty());
  f.ExpectVerifyClean();
}

}  // namespace
}  // namespace relais::store
