// The delivery history per study (FORMAT.md `history`): filled at commit,
// followed by every queue update, kept when the objects go, and removed by
// Sweep after `history_retention_ms` of no change.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "base/clock.h"

#include "store/history.h"
#include "store/lmdb_env.h"
#include "store/store.h"
#include "tests/store/store_crash_util.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::ForgetHistory;
using testing::PutObject;
using testing::RandomBytes;
using testing::TempDir;
using Kind = QueueUpdate::Kind;

constexpr int64_t kT0 = 1'800'000'000'000;
constexpr int64_t kDay = 24LL * 3600 * 1000;

struct Fixture {
  TempDir dir;
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(kT0);
  std::unique_ptr<Store> store;

  explicit Fixture(int64_t history_retention_ms = 30 * kDay, int64_t dead_retention_ms = -1) {
    Options o = testing::TestOptions(dir.Sub("store"));
    o.clock = [n = now] { return n->load(); };
    o.history_retention_ms = history_retention_ms;
    o.dead_retention_ms = dead_retention_ms;
    auto s = Store::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    store = std::move(s).value();
  }

  uint64_t Put(const std::string& uid, const std::string& study = "1.2.3.4") {
    ObjectMeta m = testing::RoutedMeta2(uid);
    m.study_instance_uid = study;
    m.patient_name = "Dupont^Hélène";
    m.accession_number = "ACC42";
    m.study_date = "20261207";
    m.received_unix_ms = now->load();
    auto r = PutObject(*store, m, RandomBytes(1000, 7));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }

  Status Update(Kind kind, const std::string& dest, uint64_t id, uint32_t attempts = 0, std::string error = "") {
    QueueUpdate u;
    u.kind = kind;
    u.destination = dest;
    u.priority = dest == "telerad" ? 10 : 0;
    u.object_id = id;
    u.attempts = attempts;
    u.error = std::move(error);
    return testing::ApplyUpdates(*store, {u});
  }

  Status SweepAt(int64_t t) {
    std::promise<Status> p;
    auto f = p.get_future();
    store->Sweep(t, [&p](Status s) { p.set_value(s); });
    return f.get();
  }

  std::vector<StudyHistory> Studies() {
    std::vector<StudyHistory> out;
    Status s = store->ListStudies([&](const StudyHistory& h) {
      out.push_back(h);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
};

const StudyDestination* Dest(const StudyHistory& h, const std::string& name) {
  for (const auto& d : h.destinations) {
    if (d.destination == name) return &d;
  }
  return nullptr;
}

TEST(StoreHistory, CommitRecordsTheStudyAndItsQueuedRows) {
  Fixture f;
  f.Put("1.1");
  f.Put("1.2");
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  const StudyHistory& h = studies[0];
  EXPECT_EQ(h.study_instance_uid, "1.2.3.4");
  EXPECT_EQ(h.patient_id, "PAT001");
  EXPECT_EQ(h.patient_name, "Dupont^Hélène");
  EXPECT_EQ(h.accession_number, "ACC42");
  EXPECT_EQ(h.study_date, "20261207");
  EXPECT_EQ(h.modalities, std::vector<std::string>{"CT"});
  EXPECT_EQ(h.calling_aes, std::vector<std::string>{"CTSCAN1"});
  EXPECT_EQ(h.objects, 2u);
  EXPECT_EQ(h.first_received_unix_ms, kT0);
  ASSERT_EQ(h.destinations.size(), 2u);
  EXPECT_EQ(Dest(h, "archive")->queued, 2u);
  EXPECT_EQ(Dest(h, "telerad")->queued, 2u);
}

TEST(StoreHistory, DeliveredAndDeadRowsAreCountedWithWhenAndWhy) {
  Fixture f;
  uint64_t a = f.Put("1.1");
  uint64_t b = f.Put("1.2");
  f.now->store(kT0 + 5000);
  ASSERT_TRUE(f.Update(Kind::kDelivered, "archive", a, 1).ok());
  ASSERT_TRUE(f.Update(Kind::kDelivered, "archive", b, 3).ok());
  ASSERT_TRUE(f.Update(Kind::kDeadLetter, "telerad", a, 5, "0xA900 dataset does not match SOP class").ok());
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  const StudyDestination* archive = Dest(studies[0], "archive");
  ASSERT_NE(archive, nullptr);
  EXPECT_EQ(archive->queued, 0u);
  EXPECT_EQ(archive->sent, 2u);
  EXPECT_EQ(archive->attempts, 4u);
  EXPECT_EQ(archive->last_sent_unix_ms, kT0 + 5000);
  const StudyDestination* telerad = Dest(studies[0], "telerad");
  ASSERT_NE(telerad, nullptr);
  EXPECT_EQ(telerad->queued, 1u);
  EXPECT_EQ(telerad->dead, 1u);
  EXPECT_EQ(telerad->last_dead_reason, "0xA900 dataset does not match SOP class");
  // A dead row retried goes back to queued; a purge forgets the live rows.
  ASSERT_TRUE(f.Update(Kind::kRequeue, "telerad", a).ok());
  studies = f.Studies();
  EXPECT_EQ(Dest(studies[0], "telerad")->queued, 2u);
  EXPECT_EQ(Dest(studies[0], "telerad")->dead, 0u);
  ASSERT_TRUE(f.Update(Kind::kPurge, "telerad", a).ok());
  ASSERT_TRUE(f.Update(Kind::kPurge, "telerad", b).ok());
  studies = f.Studies();
  EXPECT_EQ(Dest(studies[0], "telerad")->queued, 0u);
  EXPECT_EQ(Dest(studies[0], "archive")->sent, 2u);
}

TEST(StoreHistory, SurvivesTheRemovalOfItsObjects) {
  Fixture f;  // retention 0: an object goes with its last row
  uint64_t a = f.Put("1.1");
  ASSERT_TRUE(f.Update(Kind::kDelivered, "archive", a, 1).ok());
  ASSERT_TRUE(f.Update(Kind::kDelivered, "telerad", a, 2).ok());
  ASSERT_FALSE(f.store->Get(a).ok());  // the object is gone
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(studies[0].patient_id, "PAT001");
  EXPECT_EQ(Dest(studies[0], "archive")->sent, 1u);
  EXPECT_EQ(Dest(studies[0], "telerad")->sent, 1u);
  EXPECT_EQ(Dest(studies[0], "telerad")->attempts, 2u);
}

TEST(StoreHistory, ReplacedObjectTakesItsRowsWithIt) {
  Fixture f;
  f.Put("1.1");
  ObjectMeta m = testing::RoutedMeta2("1.1");  // same UID, other bytes
  m.received_unix_ms = kT0;
  ASSERT_TRUE(PutObject(*f.store, m, RandomBytes(1000, 8)).status.ok());
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(studies[0].objects, 2u);  // objects committed
  EXPECT_EQ(Dest(studies[0], "archive")->queued, 1u);
}

TEST(StoreHistory, SweepRemovesStudiesPastTheRetentionWithExplicitNow) {
  Fixture f(10 * kDay);
  uint64_t a = f.Put("1.1", "1.2.3.4");
  f.now->store(kT0 + 5 * kDay);
  f.Put("2.1", "1.2.3.40");
  ASSERT_TRUE(f.Update(Kind::kDelivered, "archive", a, 1).ok());  // a change at day 5
  ASSERT_TRUE(f.SweepAt(kT0 + 12 * kDay).ok());
  EXPECT_EQ(f.Studies().size(), 2u);
  f.now->store(kT0 + 6 * kDay);
  ASSERT_TRUE(f.Update(Kind::kDelivered, "archive", f.Put("2.2", "1.2.3.40"), 1).ok());
  ASSERT_TRUE(f.SweepAt(kT0 + 15 * kDay + 1).ok());
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(studies[0].study_instance_uid, "1.2.3.40");
  ASSERT_TRUE(f.SweepAt(kT0 + 17 * kDay).ok());
  EXPECT_TRUE(f.Studies().empty());
  auto report = f.store->Verify(nullptr);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report.value().problem_count, 0u);
}

TEST(StoreHistory, ExpiredDeadLettersStayCountedAsDead) {
  Fixture f(30 * kDay, 2 * kDay);
  uint64_t a = f.Put("1.1");
  ASSERT_TRUE(f.Update(Kind::kDeadLetter, "archive", a, 4, "0x0122 SOP class not supported").ok());
  ASSERT_TRUE(f.Update(Kind::kDeadLetter, "telerad", a, 1, "0x0122 SOP class not supported").ok());
  ASSERT_TRUE(f.SweepAt(kT0 + 3 * kDay).ok());
  ASSERT_FALSE(f.store->Get(a).ok());  // the dead object expired
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(Dest(studies[0], "archive")->dead, 1u);
  EXPECT_EQ(Dest(studies[0], "archive")->last_dead_reason, "0x0122 SOP class not supported");
}

// kRoute (`relais route`) counts in the study's history in its own
// transaction: the new destination shows the queued rows at once (`relais
// find`, /api/studies), before any delivery there.
TEST(StoreHistory, RouteCountsTheNewDestinationInTheSameTransaction) {
  Fixture f;
  uint64_t a = f.Put("1.1");
  uint64_t b = f.Put("1.2");
  // Delivered to the archive; still queued for telerad (so kept: this
  // store's retention of delivered objects is 0).
  for (uint64_t id : {a, b}) ASSERT_TRUE(f.Update(Kind::kDelivered, "archive", id, 1).ok());
  ASSERT_TRUE(f.Update(Kind::kDeadLetter, "archive", f.Put("1.3"), 3, "refused").ok());
  f.now->store(kT0 + 1000);
  // Both objects to a destination no rule named, in one update.
  QueueUpdate ra, rb;
  ra.kind = rb.kind = Kind::kRoute;
  ra.destination = rb.destination = "cloud";
  ra.object_id = a;
  rb.object_id = b;
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {ra, rb}).ok());
  auto studies = f.Studies();
  ASSERT_EQ(studies.size(), 1u);
  const StudyDestination* cloud = Dest(studies[0], "cloud");
  ASSERT_NE(cloud, nullptr) << "the re-route is in the history at once";
  EXPECT_EQ(cloud->queued, 2u);
  EXPECT_EQ(cloud->sent, 0u);
  EXPECT_EQ(studies[0].last_change_unix_ms, kT0 + 1000);

  // Again while the rows are live: made due, not counted twice.
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {ra}).ok());
  studies = f.Studies();  // Dest points into it: keep it alive
  EXPECT_EQ(Dest(studies[0], "cloud")->queued, 2u);

  // A dead row re-routed to its own destination comes back as queued.
  QueueUpdate rd;
  rd.kind = Kind::kRoute;
  rd.destination = "archive";
  rd.object_id = f.store->Find("1.3")->id;
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {rd}).ok());
  studies = f.Studies();
  const StudyDestination* archive = Dest(studies[0], "archive");
  EXPECT_EQ(archive->dead, 0u);
  EXPECT_EQ(archive->queued, 1u);
  EXPECT_EQ(archive->sent, 2u);

  // Delivered there: sent, no longer queued.
  ASSERT_TRUE(f.Update(Kind::kDelivered, "cloud", a, 1).ok());
  studies = f.Studies();
  cloud = Dest(studies[0], "cloud");
  EXPECT_EQ(cloud->queued, 1u);
  EXPECT_EQ(cloud->sent, 1u);
}

uint64_t MetaU64(const std::string& path, const char* key) {
  LmdbEnv env;
  EXPECT_TRUE(env.Open(path, 0, true).ok());
  Txn txn;
  EXPECT_TRUE(txn.Begin(env, false).ok());
  uint64_t v = 0;
  EXPECT_TRUE(GetMetaU64(txn, env.dbis().meta, key, &v).ok());
  return v;
}

QueueUpdate Finished(Kind kind, const std::string& dest, uint64_t id, uint32_t attempts, const std::string& error) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = dest;
  u.priority = dest == "telerad" ? 10 : 0;
  u.object_id = id;
  u.attempts = attempts;
  u.error = error;
  u.status = 0xA700;
  // One attempt record per attempt, as the scheduler writes them.
  u.log_attempt = true;
  u.attempt.result = kind == Kind::kDelivered ? "success" : "dead";
  return u;
}

// What the backfill can know again: all but name, accession and date (not
// in the object record) and when the study last changed.
std::string Summary(const std::vector<StudyHistory>& studies) {
  std::string out;
  for (const StudyHistory& h : studies) {
    out += h.study_instance_uid + " pid=" + h.patient_id + " objects=" + std::to_string(h.objects) +
           " first=" + std::to_string(h.first_received_unix_ms) + " last=" + std::to_string(h.last_received_unix_ms);
    for (const auto& m : h.modalities) out += " mod=" + m;
    for (const auto& a : h.calling_aes) out += " ae=" + a;
    for (const StudyDestination& d : h.destinations) {
      out += "\n  " + d.destination + " queued=" + std::to_string(d.queued) + " sent=" + std::to_string(d.sent) +
             " dead=" + std::to_string(d.dead) + " attempts=" + std::to_string(d.attempts) +
             " last_sent=" + std::to_string(d.last_sent_unix_ms) + " last_dead=" + std::to_string(d.last_dead_unix_ms) +
             " reason=" + d.last_dead_reason;
    }
    out += "\n";
  }
  return out;
}

// A store written before the history existed gets one when opened
// read-write: the backfill counts its objects, live rows, dead rows and
// deliveries, in slices of 500 objects on the writer thread beside new
// traffic, and then sets the marker. It gives the same studies the history
// would have had (but the fields the object record lacks).
TEST(StoreHistory, AStoreWithoutHistoryIsBackfilledFromItsObjectsAndRows) {
  TempDir dir;
  const std::string path = dir.Sub("store");
  auto now = std::make_shared<std::atomic<int64_t>>(kT0);
  Options o = testing::TestOptions(path);
  o.clock = [now] { return now->load(); };
  o.retention_ms = 30 * kDay;  // delivered objects stay, with their rows
  std::string before;
  std::vector<uint64_t> big;
  {
    auto opened = Store::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Store& store = **opened;
    // Study A: delivered to both / dead at telerad / still queued.
    std::vector<uint64_t> a;
    for (int i = 0; i < 3; ++i) {
      ObjectMeta m = testing::RoutedMeta2("1.2.5." + std::to_string(i));
      m.study_instance_uid = "1.2.5";
      m.patient_id = i == 2 ? "PAT-NEW" : "PAT-OLD";
      m.modality = i == 0 ? "CT" : "SR";
      m.received_unix_ms = kT0 + i;
      auto r = PutObject(store, m, RandomBytes(1000, i));
      ASSERT_TRUE(r.status.ok());
      a.push_back(r.meta.id);
    }
    now->store(kT0 + 5000);
    ASSERT_TRUE(testing::ApplyUpdates(store, {Finished(Kind::kDelivered, "archive", a[0], 1, ""),
                                              Finished(Kind::kDelivered, "telerad", a[0], 1, ""),
                                              Finished(Kind::kDelivered, "archive", a[1], 1, ""),
                                              Finished(Kind::kDeadLetter, "telerad", a[1], 1, "refused: 0xA700")})
                    .ok());
    // Study B: unrouted, no destinations. Study C: 1100 objects (three
    // slices), queued at the archive only, sent concurrently.
    ObjectMeta b = testing::MakeMeta("1.2.6.1");
    b.study_instance_uid = "1.2.6";
    b.received_unix_ms = kT0;
    ASSERT_TRUE(PutObject(store, b, RandomBytes(100, 9)).status.ok());
    std::vector<std::future<testing::PutResult>> pending;
    for (int i = 0; i < 1100; ++i) {
      ObjectMeta m = testing::MakeMeta("1.2.7." + std::to_string(i));
      m.study_instance_uid = "1.2.7";
      m.received_unix_ms = kT0 + 100;
      m.routing = "routed";
      m.routes = {Route{"archive", 0, "r1", ""}};
      auto w = store.NewObject();
      std::vector<uint8_t> bytes = RandomBytes(64, i);
      w->Append(bytes);
      auto p = std::make_shared<std::promise<testing::PutResult>>();
      pending.push_back(p->get_future());
      w->Finish(m, [p](Status s, const ObjectMeta& meta) { p->set_value({s, meta}); });
    }
    for (auto& f : pending) {
      testing::PutResult r = f.get();
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      big.push_back(r.meta.id);
    }
    std::vector<StudyHistory> studies;
    ASSERT_TRUE(store
                    .ListStudies([&](const StudyHistory& h) {
                      studies.push_back(h);
                      return true;
                    })
                    .ok());
    ASSERT_EQ(studies.size(), 3u);
    before = Summary(studies);
  }
  EXPECT_EQ(MetaU64(path, kMetaHistory), 1u) << "a store made with the history has the marker";
  ForgetHistory(path);

  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  // New traffic while it runs: deliveries of study C's objects, which the
  // backfill may or may not have counted yet: each counts once.
  std::vector<QueueUpdate> sent;
  for (size_t i = 0; i < 600; i += 2) sent.push_back(Finished(Kind::kDelivered, "archive", big[i], 1, ""));
  ASSERT_TRUE(testing::ApplyUpdates(store, sent).ok());
  const int64_t deadline = NowMs() + 60000;
  std::vector<StudyHistory> after;
  for (;;) {
    after.clear();
    ASSERT_TRUE(store
                    .ListStudies([&](const StudyHistory& h) {
                      after.push_back(h);
                      return true;
                    })
                    .ok());
    if (after.size() == 3 && after[2].objects == 1100) break;
    ASSERT_LT(NowMs(), deadline) << Summary(after);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Study C's delivered rows: once each, whenever they came.
  ASSERT_EQ(after[2].destinations.size(), 1u);
  EXPECT_EQ(after[2].destinations[0].queued, 800u);
  EXPECT_EQ(after[2].destinations[0].sent, 300u);
  EXPECT_EQ(after[2].destinations[0].attempts, 300u);
  // Studies A and B: what the history had, but the times of the change.
  after.pop_back();
  std::string b_before = before.substr(0, before.find("1.2.7 "));
  EXPECT_EQ(Summary(after), b_before);
  EXPECT_EQ(after[0].patient_id, "PAT-NEW") << "the latest object's";
  EXPECT_EQ(after[0].last_change_unix_ms, kT0 + 5000) << "from the rows, not from the backfill";
  // Done: marker set, range gone.
  opened->reset();
  EXPECT_EQ(MetaU64(path, kMetaHistory), 1u);
  EXPECT_EQ(MetaU64(path, kMetaHistoryBackfillEnd), 0u);
}

TEST(StoreHistory, SetRetentionsChangesTheHistoryRetentionOfTheNextSweep) {
  Fixture f(30 * kDay);
  f.Put("1.2.9.1");
  ASSERT_TRUE(f.SweepAt(kT0 + 2 * kDay).ok());
  ASSERT_EQ(f.Studies().size(), 1u);
  Retentions r = f.store->GetRetentions();
  EXPECT_EQ(r.history_ms, 30 * kDay);
  r.history_ms = kDay;
  std::promise<Status> p;
  f.store->SetRetentions(r, [&p](Status s) { p.set_value(s); });
  ASSERT_TRUE(p.get_future().get().ok());
  ASSERT_TRUE(f.SweepAt(kT0 + 2 * kDay).ok());
  EXPECT_TRUE(f.Studies().empty()) << "a day of no change is past the new retention";
}

TEST(StoreHistory, NegativeRetentionKeepsEverything) {
  Fixture f(-1);
  f.Put("1.1");
  ASSERT_TRUE(f.SweepAt(kT0 + 1000 * kDay).ok());
  EXPECT_EQ(f.Studies().size(), 1u);
}

TEST(StoreHistory, RecordsRoundTripAndShortValuesAreCorruption) {
  StudyHistory h;
  h.patient_id = "P";
  h.patient_name = "Çà^Ü";
  h.modalities = {"CT", "SR"};
  h.calling_aes = {"A"};
  h.objects = 7;
  h.last_change_unix_ms = 42;
  StudyHistory back;
  ASSERT_TRUE(DecodeStudyRecord(EncodeStudyRecord(h), &back).ok());
  EXPECT_EQ(back.patient_name, h.patient_name);
  EXPECT_EQ(back.modalities, h.modalities);
  EXPECT_EQ(back.objects, 7u);
  std::vector<uint8_t> v = EncodeStudyRecord(h);
  v.resize(30);
  EXPECT_FALSE(DecodeStudyRecord(v, &back).ok());
  StudyDestination d;
  d.sent = 3;
  d.last_dead_reason = "why";
  StudyDestination db;
  ASSERT_TRUE(DecodeStudyDestination(EncodeStudyDestination(d), &db).ok());
  EXPECT_EQ(db.sent, 3u);
  EXPECT_EQ(db.last_dead_reason, "why");
}

}  // namespace
}  // namespace relais::store
