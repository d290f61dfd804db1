// Routing records and queue rows: written in the object's commit, ordered by
// destination then priority, replaced with the object, robust to corruption.
#include <gtest/gtest.h>

#include "store/meta_codec.h"
#include "store/queue_codec.h"
#include "store/store.h"
#include "store_test_util.h"

namespace relais::store {
namespace {

using testing::MakeMeta;
using testing::PutObject;
using testing::RandomBytes;
using testing::TempDir;
using testing::TestOptions;

ObjectMeta RoutedMeta(const std::string& uid) {
  ObjectMeta m = MakeMeta(uid);
  m.routing = "routed";
  m.matched_rules = {"stat-to-telerad", "all-to-archive"};
  m.routes = {Route{"telerad", 10, "stat-to-telerad", "remove (0009,1010)"}, Route{"archive", 0, "all-to-archive", ""}};
  return m;
}

std::vector<QueueRow> AllRows(const Store& store) {
  std::vector<QueueRow> rows;
  EXPECT_TRUE(store
                  .ListQueue([&](const QueueRow& r) {
                    rows.push_back(r);
                    return true;
                  })
                  .ok());
  return rows;
}

TEST(QueueTest, RoutesBecomeQueueRowsInTheObjectsCommit) {
  TempDir dir;
  auto store = Store::Open(TestOptions(dir.path()));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto put = PutObject(**store, RoutedMeta("1.2.3.1"), RandomBytes(1000, 1));
  ASSERT_TRUE(put.status.ok()) << put.status.ToString();

  std::vector<QueueRow> rows = AllRows(**store);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].destination, "archive");
  EXPECT_EQ(rows[0].object_id, put.meta.id);
  EXPECT_EQ(rows[0].rule, "all-to-archive");
  EXPECT_EQ(rows[1].destination, "telerad");
  EXPECT_EQ(rows[1].priority, 10);
  EXPECT_EQ(rows[1].edits, "remove (0009,1010)");
  EXPECT_EQ(rows[1].attempts, 0u);

  auto found = (*store)->Find("1.2.3.1");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->routing, "routed");
  EXPECT_EQ(found->matched_rules, RoutedMeta("x").matched_rules);
  ASSERT_EQ(found->routes.size(), 2u);
  EXPECT_EQ(found->routes[0].destination, "telerad");
}

TEST(QueueTest, HigherPriorityComesFirstWithinADestination) {
  TempDir dir;
  auto store = Store::Open(TestOptions(dir.path()));
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 6; ++i) {
    ObjectMeta m = MakeMeta("1.2.3." + std::to_string(i));
    int prio = (i % 3 == 0) ? 100 : (i % 3 == 1 ? -5 : 0);
    m.routing = "routed";
    m.routes = {Route{"archive", prio, "r", ""}};
    ASSERT_TRUE(PutObject(**store, m, RandomBytes(100, i)).status.ok());
  }
  std::vector<QueueRow> rows = AllRows(**store);
  ASSERT_EQ(rows.size(), 6u);
  for (size_t i = 1; i < rows.size(); ++i) {
    EXPECT_GE(rows[i - 1].priority, rows[i].priority);
    if (rows[i - 1].priority == rows[i].priority) {
      EXPECT_LT(rows[i - 1].object_id, rows[i].object_id);
    }
  }
  EXPECT_EQ(rows.front().priority, 100);
  EXPECT_EQ(rows.back().priority, -5);
}

TEST(QueueTest, ReplacedObjectTakesItsQueueRowsWithIt) {
  TempDir dir;
  auto store = Store::Open(TestOptions(dir.path()));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(PutObject(**store, RoutedMeta("1.2.3.9"), RandomBytes(100, 1)).status.ok());
  ObjectMeta again = MakeMeta("1.2.3.9");
  again.routing = "routed";
  again.routes = {Route{"archive", 0, "all-to-archive", ""}};
  auto put = PutObject(**store, again, RandomBytes(100, 2));
  ASSERT_TRUE(put.status.ok());
  std::vector<QueueRow> rows = AllRows(**store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].destination, "archive");
  EXPECT_EQ(rows[0].object_id, put.meta.id);
}

TEST(QueueTest, ObjectsWithoutRoutingKeepTheOriginalRecordBytes) {
  ObjectMeta m = MakeMeta("1.2.3");
  std::vector<uint8_t> plain = EncodeMeta(m);
  m.routing = "unrouted";
  std::vector<uint8_t> routed = EncodeMeta(m);
  EXPECT_GT(routed.size(), plain.size());
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), routed.begin()));
  ObjectMeta back;
  ASSERT_TRUE(DecodeMeta(routed, &back).ok());
  EXPECT_EQ(back.routing, "unrouted");
}

TEST(QueueTest, TruncatedRoutingSectionIsCorruptionNeverACrash) {
  std::vector<uint8_t> rec = EncodeMeta(RoutedMeta("1.2.3"));
  std::vector<uint8_t> plain = EncodeMeta(MakeMeta("1.2.3"));
  for (size_t n = plain.size() + 1; n < rec.size(); ++n) {
    ObjectMeta back;
    Status s = DecodeMeta(std::span<const uint8_t>(rec.data(), n), &back);
    EXPECT_FALSE(s.ok()) << "truncated at " << n;
  }
  // A huge count must be refused before anything is allocated.
  std::vector<uint8_t> evil = plain;
  evil.push_back(kRoutingSectionMarker);
  evil.insert(evil.end(), {0, 0, 0, 0});              // routing ""
  evil.insert(evil.end(), {0xFF, 0xFF, 0xFF, 0x7F});  // 2^31 matched rules
  ObjectMeta back;
  EXPECT_FALSE(DecodeMeta(evil, &back).ok());
}

TEST(QueueTest, QueueCodecRoundTripsAndRefusesGarbage) {
  std::vector<uint8_t> k = EncodeQueueKey("telerad", -7, 42);
  QueueRow row;
  ASSERT_TRUE(DecodeQueueKey(k, &row).ok());
  EXPECT_EQ(row.destination, "telerad");
  EXPECT_EQ(row.priority, -7);
  EXPECT_EQ(row.object_id, 42u);
  QueueRow v;
  v.attempts = 3;
  v.next_attempt_unix_ms = 1234567;
  v.rule = "r";
  v.edits = "set (0010,0010) X";
  std::vector<uint8_t> enc = EncodeQueueValue(v);
  QueueRow back;
  ASSERT_TRUE(DecodeQueueValue(enc, &back).ok());
  EXPECT_EQ(back.attempts, 3u);
  EXPECT_EQ(back.next_attempt_unix_ms, 1234567);
  EXPECT_EQ(back.edits, v.edits);
  // 1 + 4 + 8 + (4 + 1) + (4 + 17): where records written before
  // last_status / last_error existed end; they still decode.
  const size_t old_end = 39;
  for (size_t n = 0; n < enc.size(); ++n) {
    QueueRow t;
    Status s = DecodeQueueValue(std::span<const uint8_t>(enc.data(), n), &t);
    if (n == old_end) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(t.edits, v.edits);
      EXPECT_EQ(t.last_status, 0);
      EXPECT_EQ(t.last_error, "");
    } else {
      EXPECT_FALSE(s.ok()) << n;
    }
  }
  for (size_t n = 0; n < 13; ++n) {
    QueueRow t;
    EXPECT_FALSE(DecodeQueueKey(std::span<const uint8_t>(k.data(), n), &t).ok()) << n;
  }
}

}  // namespace
}  // namespace relais::store

namespace relais::store {
namespace {

TEST(ObjectReaderTest, ReadsChunkByChunkAndVerifiesAtTheEnd) {
  testing::TempDir dir;
  auto store = Store::Open(testing::TestOptions(dir.path()));  // 64 KiB chunks
  ASSERT_TRUE(store.ok());
  std::vector<uint8_t> data = testing::RandomBytes(300 * 1024 + 17, 7);
  auto put = testing::PutObject(**store, testing::MakeMeta("1.2.3.77"), data);
  ASSERT_TRUE(put.status.ok());
  auto reader = (*store)->OpenObject(put.meta.id);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->meta().sop_instance_uid, "1.2.3.77");
  std::vector<uint8_t> chunk, all;
  bool done = false;
  int calls = 0;
  while (!done) {
    ASSERT_TRUE((*reader)->Next(&chunk, &done).ok());
    all.insert(all.end(), chunk.begin(), chunk.end());
    ++calls;
  }
  EXPECT_EQ(all, data);
  EXPECT_EQ(calls, 5);  // 4 full chunks and a short one
  EXPECT_TRUE((*store)->OpenObject(987654).status().IsNotFound());
}

}  // namespace
}  // namespace relais::store
