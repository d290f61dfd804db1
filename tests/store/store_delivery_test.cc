// The delivery side of the store: queue updates of every kind, dead letters,
// the attempt log, removal of finished objects, retention and Sweep, admin
// mode next to a serving store, and the codecs of the new records.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <set>

#include "store/lmdb_env.h"
#include "store/queue_codec.h"
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

ObjectMeta Routed(const std::string& uid) { return testing::RoutedMeta2(uid); }

QueueUpdate Update(Kind kind, const std::string& dest, uint64_t id) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = dest;
  u.priority = dest == "telerad" ? 10 : 0;
  u.object_id = id;
  return u;
}

Status Apply(Store& store, std::vector<QueueUpdate> updates) {
  return testing::ApplyUpdates(store, std::move(updates));
}

Status Apply(Store& store, QueueUpdate u) { return Apply(store, std::vector<QueueUpdate>{std::move(u)}); }

Status SweepAt(Store& store, int64_t now) {
  std::promise<Status> p;
  auto f = p.get_future();
  store.Sweep(now, [&p](Status s) { p.set_value(s); });
  return f.get();
}

std::vector<QueueRow> Live(const Store& store, const std::string& dest = "") {
  std::vector<QueueRow> rows;
  auto add = [&](const QueueRow& r) {
    rows.push_back(r);
    return true;
  };
  Status s = dest.empty() ? store.ListQueue(add) : store.ListQueue(dest, add);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return rows;
}

std::vector<QueueRow> Dead(const Store& store) {
  std::vector<QueueRow> rows;
  EXPECT_TRUE(store
                  .ListDead([&](const QueueRow& r) {
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

// The meta counters equal the sum over the objects, and the object count.
void ExpectTotalsConsistent(const Store& store) {
  uint64_t raw = 0, stored = 0, n = 0;
  ASSERT_TRUE(store
                  .List([&](const ObjectMeta& m) {
                    raw += m.raw_size;
                    stored += m.stored_size;
                    ++n;
                    return true;
                  })
                  .ok());
  Store::Stats st = store.GetStats();
  EXPECT_EQ(st.raw_bytes, raw);
  EXPECT_EQ(st.stored_bytes, stored);
  EXPECT_EQ(st.objects, n);
}

struct Fixture {
  explicit Fixture(int64_t retention_ms = 0) {
    Options o = TestOptions(dir.path());
    o.retention_ms = retention_ms;
    auto opened = Store::Open(o);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    store = std::move(opened.value());
  }
  uint64_t Put(const std::string& uid, size_t size = 150000) {
    auto r = PutObject(*store, Routed(uid), RandomBytes(size, static_cast<uint32_t>(uid.size() * 31 + size)));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }
  TempDir dir;
  std::unique_ptr<Store> store;
};

TEST(DeliveryTest, LastDeliveredRowRemovesTheObjectAndEverythingOfIt) {
  Fixture f;
  uint64_t keep = f.Put("1.2.9.1");
  uint64_t id = f.Put("1.2.9.2");
  QueueUpdate a = Update(Kind::kDelivered, "archive", id);
  a.log_attempt = true;
  a.attempt.result = "success";
  ASSERT_TRUE(Apply(*f.store, a).ok());
  EXPECT_TRUE(f.store->Get(id).ok()) << "one row is still live";
  EXPECT_EQ(Attempts(*f.store, id).size(), 1u);
  EXPECT_EQ(f.store->GetStats().queue_rows, 3u);

  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDelivered, "telerad", id)).ok());
  EXPECT_TRUE(f.store->Get(id).status().IsNotFound());
  EXPECT_TRUE(f.store->Find("1.2.9.2").status().IsNotFound());
  EXPECT_TRUE(f.store->OpenObject(id).status().IsNotFound());
  EXPECT_TRUE(Attempts(*f.store, id).empty());
  EXPECT_EQ(f.store->GetStats().queue_rows, 2u);
  EXPECT_EQ(f.store->GetStats().objects, 1u);
  ExpectTotalsConsistent(*f.store);
  EXPECT_TRUE(f.store->Get(keep).ok());
  f.store.reset();  // LMDB: one environment handle per process at a time
  // The chunks are gone too (not only the record).
  LmdbEnv env;
  ASSERT_TRUE(env.Open(f.dir.path(), 0, true).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, false).ok());
  ChunkKey first(id, 0);
  std::span<const uint8_t> v;
  EXPECT_TRUE(txn.Get(env.dbis().chunks, first.val(), &v).IsNotFound());
}

TEST(DeliveryTest, SummarizeQueuesCountsRowsPerDestinationAndTheOldest) {
  Fixture f;
  uint64_t a = f.Put("1.2.7.1");
  uint64_t b = f.Put("1.2.7.2");
  uint64_t c = f.Put("1.2.7.3");
  // archive: a, b, c live. telerad: a dead, b delivered, c live.
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDeadLetter, "telerad", a)).ok());
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDelivered, "telerad", b)).ok());
  Result<std::vector<Store::QueueSummary>> s = f.store->SummarizeQueues();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].destination, "archive");
  EXPECT_EQ((*s)[0].rows, 3u);
  EXPECT_EQ((*s)[0].dead_rows, 0u);
  EXPECT_EQ((*s)[0].oldest_received_unix_ms, f.store->Get(a)->received_unix_ms);
  EXPECT_EQ((*s)[1].destination, "telerad");
  EXPECT_EQ((*s)[1].rows, 1u);
  EXPECT_EQ((*s)[1].dead_rows, 1u);
  EXPECT_EQ((*s)[1].oldest_received_unix_ms, f.store->Get(c)->received_unix_ms);
  // Everything delivered or purged: nothing left to summarize.
  std::vector<QueueUpdate> all;
  for (uint64_t id : {a, b, c}) all.push_back(Update(Kind::kPurge, "archive", id));
  all.push_back(Update(Kind::kPurge, "telerad", a));
  all.push_back(Update(Kind::kPurge, "telerad", c));
  ASSERT_TRUE(Apply(*f.store, all).ok());
  s = f.store->SummarizeQueues();
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->empty());
}

TEST(DeliveryTest, UsedBytesFallWhenObjectsAreRemovedAndBatchesAreCounted) {
  Fixture f;
  Store::Stats before = f.store->GetStats();
  std::vector<uint64_t> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(f.Put("1.2.6." + std::to_string(i), 400000));
  Store::Stats full = f.store->GetStats();
  EXPECT_GT(full.used_bytes, before.used_bytes + 20 * 300000);  // random bytes do not compress
  EXPECT_LE(full.used_bytes, full.map_used_bytes);
  EXPECT_GE(full.file_bytes, full.map_used_bytes);
  EXPECT_EQ(full.fsyncs, 2 * full.commits);
  uint64_t counted = 0;
  for (uint64_t n : full.batch_count) counted += n;
  EXPECT_EQ(counted, full.commits);
  EXPECT_GE(full.batch_ops, full.commits);
  std::vector<QueueUpdate> all;
  for (uint64_t id : ids) {
    all.push_back(Update(Kind::kDelivered, "archive", id));
    all.push_back(Update(Kind::kDelivered, "telerad", id));
  }
  ASSERT_TRUE(Apply(*f.store, all).ok());
  // Another commit lets LMDB put the freed pages on its free list for good.
  f.Put("1.2.6.99", 1000);
  Store::Stats after = f.store->GetStats();
  EXPECT_LT(after.used_bytes, full.used_bytes - 20 * 300000);
  EXPECT_GE(after.map_used_bytes, full.map_used_bytes);  // the file's high-water does not fall
}

TEST(DeliveryTest, RetryLaterRewritesTheRowAndListQueueStaysInItsDestination) {
  Fixture f;
  uint64_t id1 = f.Put("1.2.9.1");
  uint64_t id2 = f.Put("1.2.9.2");
  QueueUpdate u = Update(Kind::kRetryLater, "archive", id1);
  u.attempts = 2;
  u.next_attempt_unix_ms = 1'700'000'000'123;
  u.status = 0xA700;
  u.error = "Out of Resources";
  ASSERT_TRUE(Apply(*f.store, u).ok());
  std::vector<QueueRow> rows = Live(*f.store, "archive");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].object_id, id1);
  EXPECT_EQ(rows[0].attempts, 2u);
  EXPECT_EQ(rows[0].next_attempt_unix_ms, 1'700'000'000'123);
  EXPECT_EQ(rows[0].last_status, 0xA700);
  EXPECT_EQ(rows[0].last_error, "Out of Resources");
  EXPECT_EQ(rows[0].rule, "r1");  // untouched fields kept
  EXPECT_EQ(rows[1].object_id, id2);
  EXPECT_EQ(rows[1].attempts, 0u);
  rows = Live(*f.store, "telerad");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].edits, "remove (0010,0010)");
  // A name that is a prefix of another lists nothing of the other.
  EXPECT_TRUE(Live(*f.store, "arch").empty());
  EXPECT_TRUE(Live(*f.store, "zzz").empty());
  int calls = 0;
  ASSERT_TRUE(f.store->ListQueue("archive", [&](const QueueRow&) { return ++calls < 1; }).ok());
  EXPECT_EQ(calls, 1);
}

TEST(DeliveryTest, DeadLetterKeepsTheObjectUntilRequeuedAndDelivered) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.3");
  std::mutex mu;
  std::vector<std::vector<std::string>> woken;
  f.store->SetQueueCallback([&](const std::vector<std::string>& d) {
    std::lock_guard<std::mutex> lock(mu);
    woken.push_back(d);
  });
  QueueUpdate dead = Update(Kind::kDeadLetter, "telerad", id);
  dead.attempts = 5;
  dead.status = 0x0122;
  dead.error = "SOP class not supported";
  ASSERT_TRUE(Apply(*f.store, {dead, Update(Kind::kDelivered, "archive", id)}).ok());
  EXPECT_TRUE(Live(*f.store).empty());
  std::vector<QueueRow> d = Dead(*f.store);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].destination, "telerad");
  EXPECT_EQ(d[0].priority, 10);
  EXPECT_EQ(d[0].attempts, 5u);
  EXPECT_EQ(d[0].last_status, 0x0122);
  EXPECT_EQ(d[0].last_error, "SOP class not supported");
  EXPECT_GT(d[0].dead_unix_ms, 0);
  EXPECT_EQ(d[0].edits, "remove (0010,0010)");
  EXPECT_EQ(f.store->GetStats().dead_rows, 1u);
  ASSERT_TRUE(f.store->Get(id).ok()) << "objects with dead letters are kept";
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(woken.empty());
  }

  ASSERT_TRUE(Apply(*f.store, Update(Kind::kRequeue, "telerad", id)).ok());
  EXPECT_TRUE(Dead(*f.store).empty());
  std::vector<QueueRow> live = Live(*f.store);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].attempts, 5u);
  EXPECT_EQ(live[0].next_attempt_unix_ms, 0);
  EXPECT_EQ(live[0].dead_unix_ms, 0);
  EXPECT_EQ(live[0].last_error, "SOP class not supported");
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(woken.size(), 1u);
    EXPECT_EQ(woken[0], std::vector<std::string>{"telerad"});
  }
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDelivered, "telerad", id)).ok());
  EXPECT_TRUE(f.store->Get(id).status().IsNotFound());
  ExpectTotalsConsistent(*f.store);
}

TEST(DeliveryTest, RequeueOfALiveRowMakesItDueNow) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.4");
  QueueUpdate u = Update(Kind::kRetryLater, "archive", id);
  u.attempts = 1;
  u.next_attempt_unix_ms = 9'000'000'000'000;
  ASSERT_TRUE(Apply(*f.store, {u, Update(Kind::kRequeue, "archive", id)}).ok());
  std::vector<QueueRow> rows = Live(*f.store, "archive");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].next_attempt_unix_ms, 0);
  EXPECT_EQ(rows[0].attempts, 1u);
}

TEST(DeliveryTest, PurgeDeletesLiveAndDeadRowsThenTheObject) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.5");
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDeadLetter, "archive", id)).ok());
  QueueUpdate p1 = Update(Kind::kPurge, "archive", id);  // a dead row
  p1.log_attempt = true;
  p1.attempt.result = "purged";
  ASSERT_TRUE(Apply(*f.store, p1).ok());
  EXPECT_TRUE(Dead(*f.store).empty());
  ASSERT_TRUE(f.store->Get(id).ok());
  std::vector<Attempt> log = Attempts(*f.store, id);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].result, "purged");
  EXPECT_EQ(log[0].destination, "archive");
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kPurge, "telerad", id)).ok());  // a live row
  EXPECT_TRUE(f.store->Get(id).status().IsNotFound());
  EXPECT_EQ(f.store->GetStats().queue_rows, 0u);
  ExpectTotalsConsistent(*f.store);
}

TEST(DeliveryTest, UpdatesOfMissingRowsAreSkippedAndLogNothing) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.6");
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDelivered, "archive", id)).ok());
  std::vector<QueueUpdate> all;
  for (Kind k : {Kind::kDelivered, Kind::kRetryLater, Kind::kDeadLetter, Kind::kRequeue, Kind::kPurge}) {
    for (uint64_t oid : {id, id + 1000}) {
      QueueUpdate u = Update(k, "archive", oid);  // already delivered / never existed
      u.attempts = 9;
      u.log_attempt = true;
      all.push_back(u);
      all.push_back(Update(k, "nowhere", oid));
    }
  }
  ASSERT_TRUE(Apply(*f.store, all).ok());
  std::vector<QueueRow> rows = Live(*f.store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].destination, "telerad");
  EXPECT_EQ(rows[0].attempts, 0u);
  EXPECT_TRUE(Dead(*f.store).empty());
  EXPECT_TRUE(Attempts(*f.store, id).empty());
  EXPECT_TRUE(Attempts(*f.store, id + 1000).empty());
  ASSERT_TRUE(f.store->Get(id).ok());
}

TEST(DeliveryTest, AttemptLogKeepsEveryAttemptInOrder) {
  Fixture f;
  uint64_t id = f.Put("1.2.9.7");
  uint64_t other = f.Put("1.2.9.8");
  for (uint32_t i = 1; i <= 3; ++i) {
    QueueUpdate u = Update(Kind::kRetryLater, "archive", id);
    u.attempts = i;
    u.log_attempt = true;
    u.attempt.unix_ms = 1000 + i;
    u.attempt.association = "S" + std::to_string(i) + " ARCHIVE@10.0.0.5:104";
    u.attempt.result = "retry";
    u.attempt.status = 0xA700;
    u.attempt.error = "busy " + std::to_string(i);
    u.attempt.destination = "ignored: taken from the update";
    QueueUpdate o = Update(Kind::kRetryLater, "telerad", other);
    o.log_attempt = true;
    ASSERT_TRUE(Apply(*f.store, {u, o}).ok());
  }
  std::vector<Attempt> log = Attempts(*f.store, id);
  ASSERT_EQ(log.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(log[i].object_id, id);
    EXPECT_EQ(log[i].unix_ms, 1001 + i);
    EXPECT_EQ(log[i].destination, "archive");
    EXPECT_EQ(log[i].association, "S" + std::to_string(i + 1) + " ARCHIVE@10.0.0.5:104");
    EXPECT_EQ(log[i].status, 0xA700);
    EXPECT_EQ(log[i].error, "busy " + std::to_string(i + 1));
  }
  std::vector<Attempt> olog = Attempts(*f.store, other);
  ASSERT_EQ(olog.size(), 3u);
  EXPECT_GT(olog[0].unix_ms, 0) << "stamped with the commit time";
  EXPECT_TRUE(Attempts(*f.store, other + 1).empty());
  int calls = 0;
  ASSERT_TRUE(f.store->ListAttempts(id, [&](const Attempt&) { return ++calls < 2; }).ok());
  EXPECT_EQ(calls, 2);
}

TEST(DeliveryTest, RetainedObjectsGoAtSweepAfterTheRetention) {
  Fixture f(/*retention_ms=*/60'000);
  uint64_t id = f.Put("1.2.9.9");
  QueueUpdate a = Update(Kind::kDelivered, "archive", id);
  a.log_attempt = true;
  int64_t before =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  ASSERT_TRUE(Apply(*f.store, {a, Update(Kind::kDelivered, "telerad", id)}).ok());
  ASSERT_TRUE(f.store->Get(id).ok()) << "retained for re-sends";
  EXPECT_EQ(Attempts(*f.store, id).size(), 1u);
  ASSERT_TRUE(SweepAt(*f.store, before + 30'000).ok());
  ASSERT_TRUE(f.store->Get(id).ok()) << "not yet";
  ASSERT_TRUE(SweepAt(*f.store, before + 120'000).ok());
  EXPECT_TRUE(f.store->Get(id).status().IsNotFound());
  EXPECT_TRUE(f.store->Find("1.2.9.9").status().IsNotFound());
  EXPECT_TRUE(Attempts(*f.store, id).empty());
  ExpectTotalsConsistent(*f.store);
}

TEST(DeliveryTest, ResendRebuildsTheRowOfARetainedObjectFromItsRoute) {
  Fixture f(/*retention_ms=*/60'000);
  uint64_t id = f.Put("1.2.9.30");
  ASSERT_TRUE(Apply(*f.store, {Update(Kind::kDelivered, "archive", id), Update(Kind::kDelivered, "telerad", id)}).ok());
  ASSERT_TRUE(Live(*f.store).empty());
  // kRequeue does not create rows; kResend does, with the route's rule and edits.
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kRequeue, "telerad", id)).ok());
  EXPECT_TRUE(Live(*f.store).empty());
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kResend, "telerad", id)).ok());
  std::vector<QueueRow> rows = Live(*f.store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].destination, "telerad");
  EXPECT_EQ(rows[0].priority, 10);
  EXPECT_EQ(rows[0].rule, "r2");
  EXPECT_EQ(rows[0].edits, "remove (0010,0010)");
  EXPECT_EQ(rows[0].next_attempt_unix_ms, 0);
  // Queued again: Sweep keeps it however old its done row was.
  ASSERT_TRUE(SweepAt(*f.store, INT64_MAX / 2).ok());
  EXPECT_TRUE(f.store->Get(id).ok());
  // A destination the object was never routed to gets nothing.
  QueueUpdate other = Update(Kind::kResend, "elsewhere", id);
  ASSERT_TRUE(Apply(*f.store, other).ok());
  EXPECT_EQ(Live(*f.store).size(), 1u);
  // An object that is gone is skipped.
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kResend, "archive", id + 1000)).ok());
  ExpectTotalsConsistent(*f.store);
}

TEST(DeliveryTest, SweepKeepsObjectsWithRowsAndRequeueClearsTheDoneRow) {
  Fixture f(/*retention_ms=*/1);
  uint64_t live = f.Put("1.2.9.10");
  uint64_t dead = f.Put("1.2.9.11");
  ASSERT_TRUE(Apply(*f.store, {Update(Kind::kDelivered, "archive", live), Update(Kind::kDeadLetter, "archive", dead),
                               Update(Kind::kDelivered, "telerad", dead)})
                  .ok());
  ASSERT_TRUE(SweepAt(*f.store, INT64_MAX / 2).ok());
  EXPECT_TRUE(f.store->Get(live).ok());
  EXPECT_TRUE(f.store->Get(dead).ok());
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kRequeue, "archive", dead)).ok());
  ASSERT_TRUE(SweepAt(*f.store, INT64_MAX / 2).ok());
  EXPECT_TRUE(f.store->Get(dead).ok()) << "requeued: queued again";
  ASSERT_TRUE(Apply(*f.store, Update(Kind::kDelivered, "archive", dead)).ok());
  ASSERT_TRUE(SweepAt(*f.store, INT64_MAX / 2).ok());
  EXPECT_TRUE(f.store->Get(dead).status().IsNotFound());
  ExpectTotalsConsistent(*f.store);
}

TEST(DeliveryTest, ReplacedObjectTakesItsDeadRowsAttemptsAndDoneRowWithIt) {
  Fixture f(/*retention_ms=*/3'600'000);
  uint64_t old_id = f.Put("1.2.9.12");
  QueueUpdate d = Update(Kind::kDeadLetter, "telerad", old_id);
  d.log_attempt = true;
  ASSERT_TRUE(Apply(*f.store, {d, Update(Kind::kDelivered, "archive", old_id)}).ok());
  // A second object delivered completely: it has a done row.
  uint64_t done_id = f.Put("1.2.9.13");
  ASSERT_TRUE(
      Apply(*f.store, {Update(Kind::kDelivered, "archive", done_id), Update(Kind::kDelivered, "telerad", done_id)})
          .ok());

  uint64_t new_id = f.Put("1.2.9.12", 1000);
  uint64_t new_done = f.Put("1.2.9.13", 1000);
  EXPECT_TRUE(Dead(*f.store).empty());
  EXPECT_TRUE(Attempts(*f.store, old_id).empty());
  EXPECT_TRUE(f.store->Get(old_id).status().IsNotFound());
  EXPECT_TRUE(f.store->Get(done_id).status().IsNotFound());
  // Updates for the replaced object's rows are skipped.
  ASSERT_TRUE(
      Apply(*f.store, {Update(Kind::kRequeue, "telerad", old_id), Update(Kind::kPurge, "archive", old_id)}).ok());
  std::vector<QueueRow> rows = Live(*f.store);
  ASSERT_EQ(rows.size(), 4u);
  for (const QueueRow& r : rows) EXPECT_TRUE(r.object_id == new_id || r.object_id == new_done);
  ExpectTotalsConsistent(*f.store);
  f.store.reset();
  // The replaced object's done row is gone: nothing to sweep.
  LmdbEnv env;
  ASSERT_TRUE(env.Open(f.dir.path(), 0, true).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, false).ok());
  MDB_stat st;
  ASSERT_EQ(mdb_stat(txn.get(), env.dbis().done, &st), MDB_SUCCESS);
  EXPECT_EQ(st.ms_entries, 0u);
}

TEST(DeliveryTest, QueueCallbackNamesTheDestinationsOfCommittedRows) {
  Fixture f;
  std::mutex mu;
  std::vector<std::vector<std::string>> woken;
  f.store->SetQueueCallback([&](const std::vector<std::string>& d) {
    std::lock_guard<std::mutex> lock(mu);
    woken.push_back(d);
  });
  f.Put("1.2.9.14");
  ObjectMeta unrouted = MakeMeta("1.2.9.15");
  unrouted.routing = "unrouted";
  ASSERT_TRUE(PutObject(*f.store, unrouted, RandomBytes(10, 1)).status.ok());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(woken.size(), 1u);
  EXPECT_EQ(woken[0], (std::vector<std::string>{"archive", "telerad"}));
}

// Admin side of AdminPurgeWhileServingKeepsTotalsRight, in its own process
// (LMDB forbids opening one environment twice in a process): reads two
// object ids from `in`, purges their rows in admin mode, exits 0 on success.
[[noreturn]] void AdminChild(const std::string& path, int in) {
  uint64_t ids[2];
  if (read(in, ids, sizeof ids) != static_cast<ssize_t>(sizeof ids)) _exit(2);
  Options ao = TestOptions(path);
  ao.admin = true;
  ao.max_size = 1 << 20;  // ignored: an existing store keeps its map size
  auto opened = Store::Open(ao);
  if (!opened.ok()) _exit(3);
  Store& a = **opened;
  bool called = false;
  Status result;
  std::vector<QueueUpdate> purge;
  for (const char* dest : {"archive", "telerad"}) purge.push_back(Update(Kind::kPurge, dest, ids[0]));
  QueueUpdate retry = Update(Kind::kRetryLater, "archive", ids[1]);  // the other object stays
  retry.attempts = 7;
  purge.push_back(retry);
  a.UpdateQueue(purge, [&](Status st) {
    called = true;
    result = st;
  });
  if (!called) _exit(4);  // admin mode calls done before returning
  if (!result.ok()) _exit(5);
  if (a.GetStats().map_size != (256ull << 20)) _exit(6);
  _exit(a.Get(ids[0]).status().IsNotFound() ? 0 : 7);
}

TEST(AdminTest, AdminPurgeWhileServingKeepsTotalsRight) {
  TempDir dir;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();  // before this process opens anything or starts threads
  if (pid == 0) {
    close(fds[1]);
    AdminChild(dir.path(), fds[0]);
  }
  ASSERT_GT(pid, 0);
  close(fds[0]);
  auto serve = Store::Open(TestOptions(dir.path()));
  ASSERT_TRUE(serve.ok());
  Store& s = **serve;
  auto p1 = PutObject(s, Routed("1.2.8.1"), RandomBytes(200000, 1));
  auto p2 = PutObject(s, Routed("1.2.8.2"), RandomBytes(90000, 2));
  ASSERT_TRUE(p1.status.ok() && p2.status.ok());
  uint64_t ids[2] = {p1.meta.id, p2.meta.id};
  ASSERT_EQ(write(fds[1], ids, sizeof ids), static_cast<ssize_t>(sizeof ids));
  close(fds[1]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0) << "admin child failed at step " << WEXITSTATUS(status);

  EXPECT_TRUE(s.Get(p1.meta.id).status().IsNotFound());
  ExpectTotalsConsistent(s);
  EXPECT_EQ(s.GetStats().raw_bytes, 90000u);
  // The serving writer's next commits start from the counters on disk, not
  // from what it remembered.
  auto p3 = PutObject(s, Routed("1.2.8.3"), RandomBytes(50000, 3));
  ASSERT_TRUE(p3.status.ok());
  ASSERT_TRUE(Apply(s, Update(Kind::kRetryLater, "telerad", p2.meta.id)).ok());
  ExpectTotalsConsistent(s);
  EXPECT_EQ(s.GetStats().raw_bytes, 90000u + 50000u);
  EXPECT_EQ(s.GetStats().objects, 2u);
  std::vector<QueueRow> archive = Live(s, "archive");
  ASSERT_EQ(archive.size(), 2u);
  EXPECT_EQ(archive[0].object_id, p2.meta.id);
  EXPECT_EQ(archive[0].attempts, 7u);  // the admin's kRetryLater
  EXPECT_EQ(s.GetStats().queue_rows, 4u);
}

TEST(AdminTest, AdminAndReadOnlyStoresRefuseWhatTheyCannotDo) {
  TempDir dir;
  uint64_t id;
  {
    auto serve = Store::Open(TestOptions(dir.path()));
    ASSERT_TRUE(serve.ok());
    id = PutObject(**serve, Routed("1.2.8.5"), RandomBytes(100, 5)).meta.id;
  }
  for (bool read_only : {false, true}) {
    Options o = TestOptions(dir.path());
    o.admin = true;
    o.read_only = read_only;
    auto opened = Store::Open(o);
    ASSERT_TRUE(opened.ok());
    Store& a = **opened;
    auto w = a.NewObject();
    w->Append(RandomBytes(100, 4));
    Status fin;
    w->Finish(MakeMeta("1.2.8.4"), [&](Status st, const ObjectMeta&) { fin = st; });
    EXPECT_EQ(fin.code(), Status::Code::kInvalidArgument) << fin.ToString();
    Status swept = Status::OK();
    a.Sweep(0, [&](Status st) { swept = st; });
    EXPECT_EQ(swept.code(), Status::Code::kInvalidArgument) << swept.ToString();
    Status upd = Status::Internal("not called");
    a.UpdateQueue({Update(Kind::kDeadLetter, "archive", id)}, [&](Status st) { upd = st; });
    EXPECT_EQ(upd.ok(), !read_only) << upd.ToString();
  }
  Options o = TestOptions(dir.path());
  o.read_only = true;
  auto r = Store::Open(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->GetStats().dead_rows, 1u);
  EXPECT_EQ((*r)->GetStats().queue_rows, 1u);
}

TEST(AdminTest, AdminOpenDoesNotRecoverPendingObjects) {
  TempDir dir;
  { ASSERT_TRUE(Store::Open(TestOptions(dir.path())).ok()); }
  {
    // What a serving store has on disk while an object streams in.
    LmdbEnv env;
    ASSERT_TRUE(env.Open(dir.path(), 256 << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    IdKey id(77);
    uint8_t start[8] = {};
    ASSERT_TRUE(txn.Put(env.dbis().pending, id.val(), ToVal(std::span<const uint8_t>(start))).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  Options ao = TestOptions(dir.path());
  ao.admin = true;
  ASSERT_TRUE(Store::Open(ao).ok());
  LmdbEnv env;
  ASSERT_TRUE(env.Open(dir.path(), 0, true).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, false).ok());
  IdKey id(77);
  std::span<const uint8_t> v;
  EXPECT_TRUE(txn.Get(env.dbis().pending, id.val(), &v).ok()) << "admin open removed a pending object";
}

TEST(CompatTest, StoreWithoutDeliveryDatabasesOpens) {
  TempDir dir;
  uint64_t id;
  {
    auto s = Store::Open(TestOptions(dir.path()));
    ASSERT_TRUE(s.ok());
    id = PutObject(**s, Routed("1.2.7.1"), RandomBytes(100, 1)).meta.id;
  }
  {
    // Make it look like a store written before the delivery databases.
    LmdbEnv env;
    ASSERT_TRUE(env.Open(dir.path(), 256 << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    for (MDB_dbi dbi : {env.dbis().dead, env.dbis().attempts, env.dbis().done}) {
      ASSERT_EQ(mdb_drop(txn.get(), dbi, 1), MDB_SUCCESS);
    }
    ASSERT_TRUE(txn.Commit().ok());
  }
  Options ro = TestOptions(dir.path());
  ro.read_only = true;
  {
    auto r = Store::Open(ro);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(Dead(**r).empty());
    EXPECT_TRUE(Attempts(**r, id).empty());
    EXPECT_EQ((*r)->GetStats().dead_rows, 0u);
    EXPECT_EQ(Live(**r).size(), 2u);
  }
  {
    Options ao = TestOptions(dir.path());
    ao.admin = true;
    auto a = Store::Open(ao);  // creates them
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    ASSERT_TRUE(Apply(**a, Update(Kind::kDeadLetter, "archive", id)).ok());
  }
  auto r = Store::Open(ro);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Dead(**r).size(), 1u);
}

// ---- codecs ----

TEST(DeliveryCodecTest, QueueRecordGoldenBytes) {
  QueueRow row;
  row.attempts = 2;
  row.next_attempt_unix_ms = 0x0102;
  row.rule = "r";
  row.edits = "";
  row.last_status = 0xA700;
  row.last_error = "no";
  std::vector<uint8_t> expected = {
      0x01,                                            // record version 1
      0x02, 0x00, 0x00, 0x00,                          // attempts 2
      0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // next attempt 0x0102 ms
      0x01, 0x00, 0x00, 0x00, 'r',                     // rule "r"
      0x00, 0x00, 0x00, 0x00,                          // edits ""
      0x00, 0xA7,                                      // last_status 0xA700 (Out of Resources)
      0x02, 0x00, 0x00, 0x00, 'n',  'o',               // last_error "no"
  };
  EXPECT_EQ(EncodeQueueValue(row), expected);
  row.dead_unix_ms = 5;
  std::vector<uint8_t> dead = EncodeDeadValue(row);
  std::vector<uint8_t> dead_expected = {0x05, 0, 0, 0, 0, 0, 0, 0};  // dead_unix_ms 5, then the queue record
  dead_expected.insert(dead_expected.end(), expected.begin(), expected.end());
  EXPECT_EQ(dead, dead_expected);
  QueueRow back;
  ASSERT_TRUE(DecodeDeadValue(dead, &back).ok());
  EXPECT_EQ(back.dead_unix_ms, 5);
  EXPECT_EQ(back.last_status, 0xA700);
  EXPECT_EQ(back.last_error, "no");
  EXPECT_EQ(back.rule, "r");
}

TEST(DeliveryCodecTest, TruncatedDeadRecordIsCorruptionExceptAtTheOldRecordEnd) {
  QueueRow row;
  row.rule = "rule";
  row.edits = "set (0010,0010) X";
  row.last_status = 0x0110;
  row.last_error = "Processing failure";
  row.dead_unix_ms = 123;
  std::vector<uint8_t> v = EncodeDeadValue(row);
  const size_t old_end = 8 + 1 + 4 + 8 + 4 + 4 + 4 + 17;  // before last_status
  for (size_t n = 0; n < v.size(); ++n) {
    QueueRow t;
    Status s = DecodeDeadValue(std::span<const uint8_t>(v.data(), n), &t);
    if (n == old_end) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(t.last_status, 0);
    } else {
      EXPECT_EQ(s.code(), Status::Code::kCorruption) << n << " " << s.ToString();
    }
  }
  // Oversized last_error length: refused without reading past the end.
  std::vector<uint8_t> evil(v.begin(), v.begin() + old_end + 2);
  evil.insert(evil.end(), {0xFF, 0xFF, 0xFF, 0xFF, 'x'});
  QueueRow t;
  EXPECT_TRUE(DecodeDeadValue(evil, &t).code() == Status::Code::kCorruption);
  v[8] = 2;  // unknown queue record version
  EXPECT_TRUE(DecodeDeadValue(v, &t).code() == Status::Code::kCorruption);
}

TEST(DeliveryCodecTest, AttemptRecordGoldenBytesAndTruncation) {
  Attempt a;
  a.unix_ms = 0x10;
  a.destination = "A";
  a.association = "S1";
  a.result = "retry";
  a.status = 0xA702;
  a.error = "";
  std::vector<uint8_t> expected = {
      0x01,                                                 // attempt record version 1
      0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,       // unix_ms 16
      0x02, 0xA7,                                           // status 0xA702
      0x01, 0x00, 0x00, 0x00, 'A',                          // destination "A"
      0x02, 0x00, 0x00, 0x00, 'S',  '1',                    // association "S1"
      0x05, 0x00, 0x00, 0x00, 'r',  'e',  't',  'r',  'y',  // result "retry"
      0x00, 0x00, 0x00, 0x00,                               // error ""
  };
  std::vector<uint8_t> v = EncodeAttempt(a);
  EXPECT_EQ(v, expected);
  Attempt back;
  ASSERT_TRUE(DecodeAttempt(v, &back).ok());
  EXPECT_EQ(back.association, "S1");
  EXPECT_EQ(back.status, 0xA702);
  for (size_t n = 0; n < v.size(); ++n) {
    Attempt t;
    EXPECT_TRUE(DecodeAttempt(std::span<const uint8_t>(v.data(), n), &t).code() == Status::Code::kCorruption) << n;
  }
  std::vector<uint8_t> longer = v;
  longer.push_back(0x99);  // a field appended by a later Relais: ignored
  EXPECT_TRUE(DecodeAttempt(longer, &back).ok());
  std::vector<uint8_t> evil = v;
  evil[11] = 0xFF, evil[12] = 0xFF, evil[13] = 0xFF, evil[14] = 0xFF;  // destination length 4 GiB
  EXPECT_TRUE(DecodeAttempt(evil, &back).code() == Status::Code::kCorruption);
  evil = v;
  evil[0] = 7;
  EXPECT_TRUE(DecodeAttempt(evil, &back).code() == Status::Code::kCorruption);

  AttemptKey k(0x0102030405060708ull, 9);
  EXPECT_EQ(std::vector<uint8_t>(k.bytes, k.bytes + 12),
            (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9}));  // id BE, sequence BE
  uint64_t id;
  uint32_t seq;
  ASSERT_TRUE(DecodeAttemptKey(std::span<const uint8_t>(k.bytes, 12), &id, &seq).ok());
  EXPECT_EQ(id, 0x0102030405060708ull);
  EXPECT_EQ(seq, 9u);
  for (size_t n = 0; n < 12; ++n) {
    EXPECT_TRUE(DecodeAttemptKey(std::span<const uint8_t>(k.bytes, n), &id, &seq).code() == Status::Code::kCorruption);
  }
}

}  // namespace
}  // namespace relais::store
