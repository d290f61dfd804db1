// Tests for the scheduler's queue scan (router/deliver/queue_scan.h) on a
// real store: due rows in queue order, hold_study from the studies' history
// records, and a cost bounded by the rows wanted, not by the backlog.
#include "router/deliver/queue_scan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/clock.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using store::testing::PutObject;
using store::testing::TempDir;
using store::testing::TestOptions;

constexpr int64_t kHoldMs = 60000;

class QueueScanTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = std::move(store::Store::Open(TestOptions(dir_.path())).value()); }

  // An object of `study` received at `received`, queued for "dest".
  uint64_t Put(const std::string& study, int64_t received) {
    store::ObjectMeta m = store::testing::MakeMeta("1.2.826.0.1.3680043.9.9." + std::to_string(++n_));
    m.study_instance_uid = study;
    m.received_unix_ms = received;
    m.routing = "routed";
    m.routes = {store::Route{"dest", 0, "r", ""}};
    store::testing::PutResult r = PutObject(*store_, m, store::testing::RandomBytes(100, n_));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }

  ScanResult Scan(int64_t hold_ms, size_t want, const std::set<uint64_t>& known = {}) {
    ScanRequest req;
    req.destination = "dest";
    req.now = now_;
    req.hold_ms = hold_ms;
    req.want = want;
    ScanResult out;
    Status s = ScanQueue(
        *store_, req, [&](int32_t, uint64_t id) { return known.count(id) != 0; }, &seen_, &out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  static std::vector<uint64_t> Ids(const ScanResult& r) {
    std::vector<uint64_t> ids;
    for (const ScannedRow& row : r.found) ids.push_back(row.q.object_id);
    return ids;
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::set<std::tuple<int32_t, uint64_t, uint32_t>> seen_;
  int64_t now_ = NowUnixMs();
  int n_ = 0;
};

TEST_F(QueueScanTest, ReadsOnlyTheRowsWantedWhateverTheBacklog) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 300; ++i) ids.push_back(Put("1.2.3." + std::to_string(i / 10), now_ - 3600000));
  for (int64_t hold : {int64_t{0}, kHoldMs}) {
    ScanResult r = Scan(hold, 16);
    EXPECT_EQ(r.examined, 16u) << "hold " << hold;
    EXPECT_TRUE(r.more);
    EXPECT_EQ(Ids(r), std::vector<uint64_t>(ids.begin(), ids.begin() + 16));
  }
  // The rows the scheduler holds are skipped, the next ones read.
  ScanResult r = Scan(kHoldMs, 4, std::set<uint64_t>(ids.begin(), ids.begin() + 16));
  EXPECT_EQ(r.examined, 20u);
  EXPECT_EQ(Ids(r), std::vector<uint64_t>(ids.begin() + 16, ids.begin() + 20));
}

TEST_F(QueueScanTest, HeldStudyWaitsForItsLastArrivalEvenWhenItsFirstRowsAreOld) {
  uint64_t quiet = Put("1.2.3.1", now_ - 3600000);
  uint64_t early = Put("1.2.3.2", now_ - 3600000);  // an old object of a study...
  uint64_t other = Put("1.2.3.3", now_ - 120000);
  uint64_t late = Put("1.2.3.2", now_ - 1000);  // ...that just received another one
  ScanResult r = Scan(kHoldMs, 16);
  EXPECT_EQ(Ids(r), (std::vector<uint64_t>{quiet, other}));
  EXPECT_FALSE(r.more);
  EXPECT_EQ(r.next_due, now_ - 1000 + kHoldMs);  // study 1.2.3.2 goes quiet then
  // Without hold, everything is due.
  EXPECT_EQ(Ids(Scan(0, 16)), (std::vector<uint64_t>{quiet, early, other, late}));
  // Once quiet, the whole study goes, in queue order.
  now_ += kHoldMs;
  EXPECT_EQ(Ids(Scan(kHoldMs, 16)), (std::vector<uint64_t>{quiet, early, other, late}));
}

TEST_F(QueueScanTest, FindStudyGivesTheLastArrival) {
  Put("1.2.3.9", now_ - 5000);
  Put("1.2.3.9", now_ - 7000);
  Result<store::StudyHistory> h = store_->FindStudy("1.2.3.9");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->last_received_unix_ms, now_ - 5000);
  EXPECT_EQ(h->first_received_unix_ms, now_ - 7000);
  EXPECT_EQ(h->objects, 2u);
  EXPECT_TRUE(store_->FindStudy("1.2.3.404").status().IsNotFound());
  EXPECT_TRUE(store_->FindStudy("").status().IsNotFound());
}

TEST_F(QueueScanTest, AnObjectWithoutStudyHistoryIsHeldFromItsOwnArrival) {
  uint64_t old_one = Put("", now_ - 3600000);
  Put("", now_ - 1000);
  ScanResult r = Scan(kHoldMs, 16);
  EXPECT_EQ(Ids(r), std::vector<uint64_t>{old_one});
  EXPECT_EQ(r.next_due, now_ - 1000 + kHoldMs);
}

}  // namespace
}  // namespace relais::router
