// The delivery history per study (FORMAT.md `history`): filled at commit,
// followed by every queue update, kept when the objects go, and removed by
// Sweep after `history_retention_ms` of no change.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>

#include "store/history.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

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
  EXPECT_EQ(Dest(f.Studies()[0], "cloud")->queued, 2u);

  // A dead row re-routed to its own destination comes back as queued.
  QueueUpdate rd;
  rd.kind = Kind::kRoute;
  rd.destination = "archive";
  rd.object_id = f.store->Find("1.3")->id;
  ASSERT_TRUE(testing::ApplyUpdates(*f.store, {rd}).ok());
  const StudyDestination* archive = Dest(f.Studies()[0], "archive");
  EXPECT_EQ(archive->dead, 0u);
  EXPECT_EQ(archive->queued, 1u);
  EXPECT_EQ(archive->sent, 2u);

  // Delivered there: sent, no longer queued.
  ASSERT_TRUE(f.Update(Kind::kDelivered, "cloud", a, 1).ok());
  cloud = Dest(f.Studies()[0], "cloud");
  EXPECT_EQ(cloud->queued, 1u);
  EXPECT_EQ(cloud->sent, 1u);
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
