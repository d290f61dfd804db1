// Group commit, duplicate SOP Instance UIDs, Abort, a full map and recovery
// of objects left pending by a crash.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "store/lmdb_env.h"
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

std::unique_ptr<Store> OpenOrDie(const Options& o) {
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s.value()) : nullptr;
}

// Counts the rows of one named database, straight from LMDB.
size_t CountRows(const std::string& path, MDB_dbi LmdbEnv::*unused, MDB_dbi Dbis::*dbi) {
  LmdbEnv env;
  EXPECT_TRUE(env.Open(path, 0, true).ok());
  Txn txn;
  EXPECT_TRUE(txn.Begin(env, false).ok());
  MDB_stat st;
  EXPECT_EQ(mdb_stat(txn.get(), env.dbis().*dbi, &st), MDB_SUCCESS);
  return st.ms_entries;
}
size_t CountRows(const std::string& path, MDB_dbi Dbis::*dbi) { return CountRows(path, nullptr, dbi); }

TEST(GroupCommitTest, ConcurrentWritersShareCommits) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  std::atomic<int> progress_calls{0};
  store->SetProgressCallback([&] { progress_calls++; });
  constexpr int kThreads = 6;
  constexpr int kPerThread = 40;
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::future<void>> waits;
      std::vector<std::promise<void>> promises(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        auto w = store->NewObject();
        auto data = RandomBytes(2000 + i * 37, t * 1000 + i);
        w->Append(data);
        waits.push_back(promises[i].get_future());
        w->Finish(MakeMeta("1.2." + std::to_string(t) + "." + std::to_string(i)),
                  [&, p = &promises[i]](Status s, const ObjectMeta&) {
                    (s.ok() ? ok : failed)++;
                    p->set_value();
                  });
      }
      for (auto& f : waits) f.wait();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(failed.load(), 0);
  Store::Stats st = store->GetStats();
  EXPECT_EQ(st.objects, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(st.commits, st.objects) << "group commit should put several objects in one commit";
  EXPECT_GE(progress_calls.load(), 1);
  // Every one reads back.
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; i += 13) {
      auto m = store->Find("1.2." + std::to_string(t) + "." + std::to_string(i));
      ASSERT_TRUE(m.ok());
      std::vector<uint8_t> out;
      ASSERT_TRUE(ReadAll(*store, m->id, &out).ok());
      EXPECT_EQ(out, RandomBytes(2000 + i * 37, t * 1000 + i));
    }
  }
}

// A row marked delivered with can_wait needs no commit of its own: it waits
// (at most the writer's hold time) for the next object's commit and shares
// it, as a sender streaming one object after another would have it. The update is
// enqueued first, then an object is written and finished at once, well
// within the hold.
TEST(GroupCommitTest, DeliveredRowsShareTheNextObjectsCommit) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  testing::PutResult first = PutObject(*store, testing::RoutedMeta2("1.2.9.1"), RandomBytes(3000, 1));
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();
  const uint64_t commits_before = store->GetStats().commits;

  std::promise<Status> delivered;
  QueueUpdate u;
  u.kind = QueueUpdate::Kind::kDelivered;
  u.destination = "archive";
  u.priority = 0;
  u.object_id = first.meta.id;
  u.can_wait = true;
  store->UpdateQueue({u}, [&delivered](Status s) { delivered.set_value(s); });
  testing::PutResult second = PutObject(*store, MakeMeta("1.2.9.2"), RandomBytes(200 * 1024, 2));
  ASSERT_TRUE(second.status.ok()) << second.status.ToString();
  ASSERT_TRUE(delivered.get_future().get().ok());

  EXPECT_EQ(store->GetStats().commits, commits_before + 1) << "the delivered row and the object share one commit";
  Store::Stats st = store->GetStats();
  EXPECT_EQ(st.queue_rows, 1u) << "telerad's row is left, archive's is gone";
  EXPECT_EQ(st.objects, 2u);
}

TEST(GroupCommitTest, DestructorDrainsQueuedObjects) {
  TempDir dir;
  std::atomic<int> ok{0};
  {
    auto store = OpenOrDie(TestOptions(dir.path()));
    for (int i = 0; i < 20; ++i) {
      auto w = store->NewObject();
      w->Append(RandomBytes(150000, i));  // several chunks in the pool
      w->Finish(MakeMeta("1.5." + std::to_string(i)), [&](Status s, const ObjectMeta&) {
        if (s.ok()) ok++;
      });
    }
  }
  EXPECT_EQ(ok.load(), 20);
  auto store = OpenOrDie(TestOptions(dir.path()));
  EXPECT_EQ(store->GetStats().objects, 20u);
}

TEST(DuplicateUidTest, LastReceivedWins) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  auto first = PutObject(*store, MakeMeta("1.2.3"), RandomBytes(300000, 1));
  ASSERT_TRUE(first.status.ok());
  ObjectMeta corrected = MakeMeta("1.2.3");
  corrected.patient_id = "PAT002";
  auto second = PutObject(*store, corrected, RandomBytes(1000, 2));
  ASSERT_TRUE(second.status.ok());
  EXPECT_GT(second.meta.id, first.meta.id);

  auto found = store->Find("1.2.3");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->id, second.meta.id);
  EXPECT_EQ(found->patient_id, "PAT002");
  std::vector<uint8_t> out;
  EXPECT_TRUE(ReadAll(*store, first.meta.id, &out).IsNotFound());
  ASSERT_TRUE(ReadAll(*store, second.meta.id, &out).ok());
  EXPECT_EQ(out, RandomBytes(1000, 2));
  Store::Stats st = store->GetStats();
  EXPECT_EQ(st.objects, 1u);
  EXPECT_EQ(st.raw_bytes, 1000u);
  store.reset();
  // The old object's chunks are gone too: only the new one's single chunk.
  EXPECT_EQ(CountRows(dir.path(), &Dbis::chunks), 1u);
  EXPECT_EQ(CountRows(dir.path(), &Dbis::uid), 1u);
}

TEST(DuplicateUidTest, SameUidTwiceInOneBatch) {
  TempDir dir;
  auto store = OpenOrDie(TestOptions(dir.path()));
  std::promise<void> p1, p2;
  auto w1 = store->NewObject();
  auto w2 = store->NewObject();
  w1->Append(RandomBytes(100, 1));
  w2->Append(RandomBytes(200, 2));
  w1->Finish(MakeMeta("7.7"), [&](Status s, const ObjectMeta&) {
    EXPECT_TRUE(s.ok());
    p1.set_value();
  });
  w2->Finish(MakeMeta("7.7"), [&](Status s, const ObjectMeta&) {
    EXPECT_TRUE(s.ok());
    p2.set_value();
  });
  p1.get_future().wait();
  p2.get_future().wait();
  auto found = store->Find("7.7");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->raw_size, 200u);
  EXPECT_EQ(store->GetStats().objects, 1u);
}

TEST(AbortTest, AbortedObjectLeavesNothing) {
  TempDir dir;
  {
    auto store = OpenOrDie(TestOptions(dir.path()));
    auto w = store->NewObject();
    w->Append(RandomBytes(500000, 1));                             // chunks reach the writer
    while (w->UncommittedBytes() != 0) std::this_thread::yield();  // they are durable as pending
    w->Append(RandomBytes(1000, 2));
    w->Abort();
    auto w2 = store->NewObject();  // destroyed without Finish: aborted too
    w2->Append(RandomBytes(100000, 3));
    w2.reset();
    // A committed object after them proves the writer went past the drops.
    ASSERT_TRUE(PutObject(*store, MakeMeta("1.1"), RandomBytes(10, 4)).status.ok());
    EXPECT_EQ(store->GetStats().objects, 1u);
  }
  EXPECT_EQ(CountRows(dir.path(), &Dbis::chunks), 1u);
  EXPECT_EQ(CountRows(dir.path(), &Dbis::pending), 0u);
}

TEST(MapFullTest, TooBigObjectIsRefusedAndStoreStaysUsable) {
  TempDir dir;
  Options o = TestOptions(dir.path());
  o.max_size = 2 << 20;
  auto store = OpenOrDie(o);
  auto kept = PutObject(*store, MakeMeta("1.1"), RandomBytes(600000, 1));
  ASSERT_TRUE(kept.status.ok()) << kept.status.ToString();

  auto big = PutObject(*store, MakeMeta("1.2"), RandomBytes(3 << 20, 2));
  EXPECT_TRUE(big.status.IsResourceExhausted()) << big.status.ToString();
  EXPECT_TRUE(store->Find("1.2").status().IsNotFound());

  // Several writers at once, one too big: the batch is retried op by op, so
  // only the big one fails.
  std::vector<std::future<testing::PutResult>> futures;
  for (int i = 0; i < 4; ++i) {
    futures.push_back(std::async(std::launch::async, [&, i] {
      return PutObject(*store, MakeMeta("2." + std::to_string(i)), RandomBytes(i == 0 ? (3 << 20) : 20000, 10 + i));
    }));
  }
  for (int i = 0; i < 4; ++i) {
    Status s = futures[i].get().status;
    if (i == 0) {
      EXPECT_TRUE(s.IsResourceExhausted()) << s.ToString();
    } else {
      EXPECT_TRUE(s.ok()) << i << ": " << s.ToString();
    }
  }
  // Still usable, and what was acknowledged is intact.
  auto small = PutObject(*store, MakeMeta("1.3"), RandomBytes(20000, 3));
  EXPECT_TRUE(small.status.ok()) << small.status.ToString();
  std::vector<uint8_t> out;
  ASSERT_TRUE(ReadAll(*store, kept.meta.id, &out).ok());
  EXPECT_EQ(out, RandomBytes(600000, 1));
  store.reset();
  EXPECT_EQ(CountRows(dir.path(), &Dbis::pending), 0u);
}

TEST(RecoveryTest, PendingObjectsAreRemovedOnOpen) {
  TempDir dir;
  {
    auto store = OpenOrDie(TestOptions(dir.path()));
    ASSERT_TRUE(PutObject(*store, MakeMeta("1.1"), RandomBytes(100000, 1)).status.ok());
  }
  // What a crash mid-object leaves: chunks and a pending row, no meta.
  {
    LmdbEnv env;
    ASSERT_TRUE(env.Open(dir.path(), 256 << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    std::vector<uint8_t> value = {0, 1, 2, 3};
    for (uint32_t i = 0; i < 3; ++i) {
      ChunkKey key(1000, i);
      ASSERT_TRUE(txn.Put(env.dbis().chunks, key.val(), ToVal(value)).ok());
    }
    IdKey id(1000);
    uint8_t start[8] = {};
    ASSERT_TRUE(txn.Put(env.dbis().pending, id.val(), ToVal(std::span<const uint8_t>(start))).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  EXPECT_EQ(CountRows(dir.path(), &Dbis::chunks), 5u);
  {
    auto store = OpenOrDie(TestOptions(dir.path()));
    EXPECT_EQ(store->GetStats().objects, 1u);
    // Ids go on past anything seen on disk.
    auto r = PutObject(*store, MakeMeta("1.2"), RandomBytes(10, 2));
    EXPECT_GT(r.meta.id, 1000u);
  }
  EXPECT_EQ(CountRows(dir.path(), &Dbis::chunks), 3u);
  EXPECT_EQ(CountRows(dir.path(), &Dbis::pending), 0u);
}

}  // namespace
}  // namespace relais::store
