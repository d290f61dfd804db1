// Store::Verify: a healthy store (objects queued, delivered and kept,
// dead-lettered, unrouted) verifies clean; each kind of damage a disk or a
// bug can do is found and named, with the object's id and UID.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "store/lmdb_env.h"
#include "store/queue_codec.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::ApplyUpdates;
using testing::CtLikeBytes;
using testing::MakeMeta;
using testing::PutObject;
using testing::RoutedMeta2;
using testing::TempDir;
using testing::TestOptions;

QueueUpdate Update(QueueUpdate::Kind kind, const std::string& dest, int32_t priority, uint64_t id) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = dest;
  u.priority = priority;
  u.object_id = id;
  return u;
}

// A store with each kind of object the box keeps: queued to two
// destinations, delivered and kept for retention, dead-lettered, unrouted.
struct Fixture {
  TempDir dir;
  uint64_t queued = 0, kept = 0, dead = 0, unrouted = 0;

  Fixture() {
    Options o = TestOptions(dir.path());
    o.retention_ms = 3600 * 1000;
    auto store = Store::Open(o);
    EXPECT_TRUE(store.ok());
    queued = Put(**store, RoutedMeta2("1.2.826.1.1"), 1);
    kept = Put(**store, RoutedMeta2("1.2.826.1.2"), 2);
    dead = Put(**store, RoutedMeta2("1.2.826.1.3"), 3);
    ObjectMeta u = MakeMeta("1.2.826.1.4");
    u.routing = "unrouted";
    unrouted = Put(**store, u, 4);
    EXPECT_TRUE(ApplyUpdates(**store, {Update(QueueUpdate::Kind::kDelivered, "archive", 0, kept),
                                       Update(QueueUpdate::Kind::kDelivered, "telerad", 10, kept),
                                       Update(QueueUpdate::Kind::kDeadLetter, "telerad", 10, dead)})
                    .ok());
  }

  static uint64_t Put(Store& store, const ObjectMeta& meta, uint32_t seed) {
    // Three chunks of 64 KiB and a short one.
    testing::PutResult r = PutObject(store, meta, CtLikeBytes(200 << 10, seed));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }

  VerifyReport Verify() {
    Options o = TestOptions(dir.path());
    o.read_only = true;
    auto store = Store::Open(o);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    Result<VerifyReport> r = (*store)->Verify(nullptr);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : VerifyReport{};
  }

  // Changes the environment directly, as a damaged disk or a bug would.
  void Damage(const std::function<void(const LmdbEnv&, Txn&)>& fn) {
    LmdbEnv env;
    ASSERT_TRUE(env.Open(dir.path(), 256ull << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    fn(env, txn);
    ASSERT_TRUE(txn.Commit().ok());
  }
};

std::string Problems(const VerifyReport& r) {
  std::string s;
  for (const VerifyProblem& p : r.problems) {
    s += std::to_string(p.object_id) + " " + p.sop_instance_uid + ": " + p.what +
         (p.unreadable ? " [unreadable]" : "") + "\n";
  }
  return s;
}

TEST(StoreVerifyTest, HealthyStoreWithEveryKindOfObjectIsClean) {
  Fixture f;
  std::vector<VerifyProgress> seen;
  {
    Options o = TestOptions(f.dir.path());
    o.read_only = true;
    auto store = Store::Open(o);
    ASSERT_TRUE(store.ok());
    Result<VerifyReport> r = (*store)->Verify([&](const VerifyProgress& p) { seen.push_back(p); });
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->ok()) << Problems(*r);
    EXPECT_EQ(r->objects, 4u);
    EXPECT_EQ(r->chunks, 16u);
    EXPECT_EQ(r->raw_bytes, 4u * (200 << 10));
    EXPECT_EQ(r->uid_rows, 4u);
    EXPECT_EQ(r->queue_rows, 3u);  // queued: archive and telerad; dead: archive
    EXPECT_EQ(r->dead_rows, 1u);   // dead: telerad
    EXPECT_EQ(r->done_rows, 1u);   // kept
    EXPECT_EQ(r->pending_objects, 0u);
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().objects_done, 4u);
  EXPECT_EQ(seen.back().objects_total, 4u);
}

TEST(StoreVerifyTest, DamagedChunkIsUnreadableWithItsIdAndUid) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    ChunkKey key(f.kept, 1);
    std::vector<uint8_t> garbage = {0, 1, 2, 3};  // a raw chunk of the wrong bytes
    ASSERT_TRUE(txn.Put(env.dbis().chunks, key.val(), ToVal(std::span<const uint8_t>(garbage))).ok());
  });
  VerifyReport r = f.Verify();
  ASSERT_FALSE(r.ok());
  ASSERT_FALSE(r.problems.empty());
  const VerifyProblem& p = r.problems[0];
  EXPECT_EQ(p.object_id, f.kept);
  EXPECT_EQ(p.sop_instance_uid, "1.2.826.1.2");
  EXPECT_TRUE(p.unreadable);
  EXPECT_NE(Problems(r).find("bytes"), std::string::npos) << Problems(r);
}

TEST(StoreVerifyTest, BadZstdFrameAndMissingChunkAreUnreadable) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    ChunkKey key(f.queued, 0);
    std::vector<uint8_t> bad = {1, 0x28, 0xB5, 0x2F, 0xFD, 0xFF, 0xFF};  // flag zstd, broken frame
    ASSERT_TRUE(txn.Put(env.dbis().chunks, key.val(), ToVal(std::span<const uint8_t>(bad))).ok());
    ChunkKey gone(f.dead, 2);
    ASSERT_TRUE(txn.Del(env.dbis().chunks, gone.val()).ok());
  });
  VerifyReport r = f.Verify();
  EXPECT_EQ(r.problem_count, 2u) << Problems(r);
  std::string all = Problems(r);
  EXPECT_NE(all.find(std::to_string(f.queued) + " 1.2.826.1.1: chunk 0 does not decode"), std::string::npos) << all;
  EXPECT_NE(all.find(std::to_string(f.dead) + " 1.2.826.1.3: chunk 2 of 4 is missing"), std::string::npos) << all;
  for (const VerifyProblem& p : r.problems) EXPECT_TRUE(p.unreadable);
}

TEST(StoreVerifyTest, IndexesAndRowsThatDisagreeWithTheObjectsAreFound) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    // The uid row of `unrouted` is gone; a uid row names no object.
    ASSERT_TRUE(txn.Del(env.dbis().uid, ToVal(std::string_view("1.2.826.1.4"))).ok());
    uint8_t ghost[8];
    PutBe64(ghost, 999);
    ASSERT_TRUE(
        txn.Put(env.dbis().uid, ToVal(std::string_view("1.2.826.9.9")), ToVal(std::span<const uint8_t>(ghost, 8)))
            .ok());
    // A queue row for an object that does not exist, and one for a
    // destination the object was never routed to.
    std::vector<uint8_t> value = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    std::vector<uint8_t> k1 = EncodeQueueKey("archive", 0, 999);
    std::vector<uint8_t> k2 = EncodeQueueKey("elsewhere", 0, f.queued);
    ASSERT_TRUE(
        txn.Put(env.dbis().queue, ToVal(std::span<const uint8_t>(k1)), ToVal(std::span<const uint8_t>(value))).ok());
    ASSERT_TRUE(
        txn.Put(env.dbis().queue, ToVal(std::span<const uint8_t>(k2)), ToVal(std::span<const uint8_t>(value))).ok());
    // The queued object loses both its rows: routed, but nothing will send it.
    std::vector<uint8_t> a = EncodeQueueKey("archive", 0, f.queued);
    std::vector<uint8_t> t = EncodeQueueKey("telerad", 10, f.queued);
    ASSERT_TRUE(txn.Del(env.dbis().queue, ToVal(std::span<const uint8_t>(a))).ok());
    ASSERT_TRUE(txn.Del(env.dbis().queue, ToVal(std::span<const uint8_t>(t))).ok());
    // Orphan chunks, and a total that no longer adds up.
    ChunkKey orphan(777, 0);
    std::vector<uint8_t> raw = {0, 9, 9};
    ASSERT_TRUE(txn.Put(env.dbis().chunks, orphan.val(), ToVal(std::span<const uint8_t>(raw))).ok());
    ASSERT_TRUE(PutMetaU64(txn, env.dbis().meta, kMetaRawBytes, 12345).ok());
  });
  VerifyReport r = f.Verify();
  std::string all = Problems(r);
  EXPECT_EQ(r.problem_count, 7u) << all;
  EXPECT_NE(all.find("1.2.826.1.4: no uid index row"), std::string::npos) << all;
  EXPECT_NE(all.find("999 1.2.826.9.9: the uid index names an object that does not exist"), std::string::npos) << all;
  EXPECT_NE(all.find("999 : a queue row for archive names an object that does not exist"), std::string::npos) << all;
  EXPECT_NE(all.find("a queue row for elsewhere is not among the object's routes"), std::string::npos) << all;
  EXPECT_NE(all.find("1.2.826.1.1: routed, but it has no queue, dead or done row"), std::string::npos) << all;
  EXPECT_NE(all.find("777 : chunks of an object that has no record"), std::string::npos) << all;
  EXPECT_NE(all.find("meta raw_bytes is 12345"), std::string::npos) << all;
  for (const VerifyProblem& p : r.problems) EXPECT_FALSE(p.unreadable) << p.what;
}

TEST(StoreVerifyTest, RecordThatDoesNotDecodeIsUnreadableAndItsRowsAreNotOrphans) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    IdKey key(f.queued);
    std::vector<uint8_t> junk = {9, 9, 9};
    ASSERT_TRUE(txn.Put(env.dbis().objects, key.val(), ToVal(std::span<const uint8_t>(junk))).ok());
  });
  VerifyReport r = f.Verify();
  std::string all = Problems(r);
  // The record, and the totals it no longer adds up to; not its chunks, not
  // its queue rows, not its uid row.
  ASSERT_GE(r.problems.size(), 1u) << all;
  EXPECT_EQ(r.problems[0].object_id, f.queued);
  EXPECT_TRUE(r.problems[0].unreadable);
  EXPECT_NE(r.problems[0].what.find("its record does not decode"), std::string::npos) << all;
  EXPECT_EQ(all.find("orphan"), std::string::npos) << all;
  EXPECT_EQ(all.find("does not exist"), std::string::npos) << all;
}

TEST(StoreVerifyTest, ManyProblemsAreCountedButListedUpToTheCap) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    std::vector<uint8_t> raw = {0, 1};
    for (uint64_t id = 100000; id < 100000 + VerifyReport::kMaxListed + 50; ++id) {
      ChunkKey k(id, 0);
      ASSERT_TRUE(txn.Put(env.dbis().chunks, k.val(), ToVal(std::span<const uint8_t>(raw))).ok());
    }
  });
  VerifyReport r = f.Verify();
  EXPECT_EQ(r.problem_count, VerifyReport::kMaxListed + 50);
  EXPECT_EQ(r.problems.size(), VerifyReport::kMaxListed);
}

}  // namespace
}  // namespace relais::store

namespace relais::store {
namespace {

Result<std::unique_ptr<Store>> OpenAdmin(const std::string& path) {
  Options o = TestOptions(path);
  o.admin = true;
  return Store::Open(o);
}

TEST(StoreVerifyTest, HistoryRowsThatDoNotDecodeAreReportedAndRepairRemovesThem) {
  Fixture f;
  EXPECT_TRUE(f.Verify().ok()) << Problems(f.Verify());  // the fixture's studies are clean
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    std::vector<uint8_t> short_value = {1, 2, 3};
    ASSERT_TRUE(
        txn.Put(env.dbis().history, ToVal(std::string_view("1.2.3.999")), ToVal(std::span<const uint8_t>(short_value)))
            .ok());
  });
  VerifyReport v = f.Verify();
  EXPECT_FALSE(v.ok());
  EXPECT_NE(Problems(v).find("history row does not decode"), std::string::npos) << Problems(v);
  {
    Options o = TestOptions(f.dir.path());
    o.admin = true;
    auto store = Store::Open(o);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Repair(nullptr).ok());
  }
  EXPECT_TRUE(f.Verify().ok()) << Problems(f.Verify());
}

TEST(StoreRepairTest, NeedsAdminMode) {
  Fixture f;
  Options o = TestOptions(f.dir.path());
  o.read_only = true;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok());
  Result<RepairReport> r = (*store)->Repair(nullptr);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("admin mode"), std::string::npos) << r.status().ToString();
}

TEST(StoreRepairTest, UnreadableObjectIsQuarantinedWithItsReasonAndOrphansAreRemoved) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    ChunkKey key(f.queued, 2);
    ASSERT_TRUE(txn.Del(env.dbis().chunks, key.val()).ok());
    ChunkKey orphan(777, 0);
    std::vector<uint8_t> raw = {0, 9, 9};
    ASSERT_TRUE(txn.Put(env.dbis().chunks, orphan.val(), ToVal(std::span<const uint8_t>(raw))).ok());
    std::vector<uint8_t> value(21, 0);
    value[0] = 1;
    std::vector<uint8_t> k = EncodeQueueKey("archive", 0, 999);
    ASSERT_TRUE(
        txn.Put(env.dbis().queue, ToVal(std::span<const uint8_t>(k)), ToVal(std::span<const uint8_t>(value))).ok());
  });
  auto store = OpenAdmin(f.dir.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Result<RepairReport> r = (*store)->Repair(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->before.problem_count, 3u) << Problems(r->before);
  EXPECT_EQ(r->quarantined, 1u);
  EXPECT_EQ(r->rows_removed, 2u);
  EXPECT_TRUE(r->after.ok()) << Problems(r->after);
  EXPECT_EQ(r->after.objects, 3u);

  // The quarantine list has it, with the reason; nothing will send it.
  std::vector<QuarantineEntry> q;
  ASSERT_TRUE((*store)
                  ->ListQuarantine([&](const QuarantineEntry& e) {
                    q.push_back(e);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].object_id, f.queued);
  EXPECT_EQ(q[0].meta.sop_instance_uid, "1.2.826.1.1");
  EXPECT_NE(q[0].reason.find("chunk 2 of 4 is missing"), std::string::npos) << q[0].reason;
  EXPECT_GT(q[0].quarantined_unix_ms, 0);
  EXPECT_TRUE((*store)->Find("1.2.826.1.1").status().IsNotFound());
  size_t rows = 0;
  ASSERT_TRUE((*store)
                  ->ListQueue([&](const QueueRow& row) {
                    EXPECT_NE(row.object_id, f.queued);
                    EXPECT_NE(row.object_id, 999u);
                    ++rows;
                    return true;
                  })
                  .ok());
  EXPECT_EQ(rows, 1u);  // dead's archive row
  // The healthy objects still read back.
  std::vector<uint8_t> bytes;
  EXPECT_TRUE(testing::ReadAll(**store, f.kept, &bytes).ok());
  EXPECT_EQ(bytes, CtLikeBytes(200 << 10, 2));
}

TEST(StoreRepairTest, RecordThatDoesNotDecodeIsQuarantinedAndItsRowsFollowInTheSecondRound) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    IdKey key(f.queued);
    std::vector<uint8_t> junk = {9, 9, 9};
    ASSERT_TRUE(txn.Put(env.dbis().objects, key.val(), ToVal(std::span<const uint8_t>(junk))).ok());
  });
  auto store = OpenAdmin(f.dir.path());
  ASSERT_TRUE(store.ok());
  Result<RepairReport> r = (*store)->Repair(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->quarantined, 1u);
  EXPECT_TRUE(r->totals_fixed);
  EXPECT_TRUE(r->after.ok()) << Problems(r->after);
  // Its two queue rows and its uid row went with it.
  EXPECT_EQ(r->rows_removed, 3u);
  EXPECT_TRUE((*store)->Find("1.2.826.1.1").status().IsNotFound());
  std::vector<QuarantineEntry> q;
  ASSERT_TRUE((*store)
                  ->ListQuarantine([&](const QuarantineEntry& e) {
                    q.push_back(e);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].object_id, f.queued);
  EXPECT_EQ(q[0].meta.sop_instance_uid, "");  // the record did not decode
}

TEST(StoreRepairTest, CleanStoreIsLeftAsItIs) {
  Fixture f;
  auto store = OpenAdmin(f.dir.path());
  ASSERT_TRUE(store.ok());
  Result<RepairReport> r = (*store)->Repair(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->before.ok()) << Problems(r->before);
  EXPECT_EQ(r->quarantined, 0u);
  EXPECT_EQ(r->rows_removed, 0u);
  EXPECT_FALSE(r->totals_fixed);
  EXPECT_EQ(r->after.objects, 4u);
}

// Store::Scrub: the background scrub's batches walk the store from a cursor,
// wrap around, and name the damaged object without changing anything.
TEST(StoreScrubTest, FindsADamagedChunkWithinOnePassAndWraps) {
  Fixture f;
  f.Damage([&](const LmdbEnv& env, Txn& txn) {
    ChunkKey key(f.dead, 2);
    std::vector<uint8_t> garbage = {0, 1, 2, 3};
    ASSERT_TRUE(txn.Put(env.dbis().chunks, key.val(), ToVal(std::span<const uint8_t>(garbage))).ok());
  });
  Options o = TestOptions(f.dir.path());
  o.read_only = true;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();

  // Batches of 3 objects over 4: the damage is found within the first pass
  // (at most ceil(4 / 3) = 2 batches), and the third batch starts over.
  uint64_t cursor = 0, checked = 0;
  std::vector<VerifyProblem> found;
  int batches_to_find = 0, wraps = 0;
  for (int batch = 1; batch <= 4; ++batch) {
    Result<ScrubBatch> b = (*store)->Scrub(cursor, 3, 0);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    checked += b->objects;
    for (const VerifyProblem& p : b->damaged) {
      found.push_back(p);
      if (batches_to_find == 0) batches_to_find = batch;
    }
    if (b->wrapped) {
      ++wraps;
      EXPECT_EQ(b->next_id, 0u);
    }
    cursor = b->next_id;
  }
  EXPECT_GE(batches_to_find, 1);
  EXPECT_LE(batches_to_find, 2);
  EXPECT_EQ(wraps, 2);          // batches 2 and 4 reach the last object
  EXPECT_EQ(checked, 8u);       // two full passes
  EXPECT_EQ(found.size(), 2u);  // found once per pass
  for (const VerifyProblem& p : found) {
    EXPECT_EQ(p.object_id, f.dead);
    EXPECT_EQ(p.sop_instance_uid, "1.2.826.1.3");
    EXPECT_TRUE(p.unreadable);
  }
  // Nothing changed: verify still finds the same one damaged object.
  VerifyReport r = f.Verify();
  EXPECT_EQ(r.problem_count, 1u) << Problems(r);
}

TEST(StoreScrubTest, ByteBoundEndsABatchAndACleanStoreHasNoDamage) {
  Fixture f;
  Options o = TestOptions(f.dir.path());
  o.read_only = true;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok());
  // Each object is 200 KiB: a 1-byte bound checks exactly one per batch;
  // the batch of the last object wraps.
  uint64_t cursor = 0;
  std::vector<uint64_t> next_ids;
  for (int i = 0; i < 4; ++i) {
    Result<ScrubBatch> b = (*store)->Scrub(cursor, 100, 1);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b->objects, 1u);
    EXPECT_EQ(b->raw_bytes, 200u << 10);
    EXPECT_TRUE(b->damaged.empty());
    EXPECT_EQ(b->wrapped, i == 3);
    next_ids.push_back(b->next_id);
    cursor = b->next_id;
  }
  EXPECT_EQ(next_ids, (std::vector<uint64_t>{f.queued + 1, f.kept + 1, f.dead + 1, 0}));
  Result<ScrubBatch> again = (*store)->Scrub(cursor, 100, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->objects, 1u);
  EXPECT_EQ(again->next_id, f.queued + 1);
}

}  // namespace
}  // namespace relais::store
