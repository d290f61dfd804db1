// QueueSummaries: the queue summary read off the loop thread, at an interval
// that grows with what a read costs.
#include "router/operate/queue_summaries.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

class QueueSummariesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<store::Store>> s = store::Store::Open(store::testing::TestOptions(dir_.Sub("store")));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  void Queue(const std::string& uid, const std::string& dest) {
    store::ObjectMeta m = store::testing::MakeMeta(uid);
    m.routing = "routed";
    m.routes = {store::Route{dest, 0, "r1", ""}};
    ASSERT_TRUE(store::testing::PutObject(*store_, m, store::testing::RandomBytes(100, 1)).status.ok());
  }
  static uint64_t RowsOf(const QueueSummaries::Snapshot& s, const std::string& dest) {
    for (const store::Store::QueueSummary& q : s.queues) {
      if (q.destination == dest) return q.rows;
    }
    return 0;
  }

  store::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
};

TEST(QueueSummariesIntervalTest, GrowsWithTheCostOfARead) {
  QueueSummaries::Options o;  // 1 s at least, 20 x the read
  EXPECT_EQ(QueueSummaries::IntervalAfter(0, o), 1000);
  EXPECT_EQ(QueueSummaries::IntervalAfter(20, o), 1000);
  EXPECT_EQ(QueueSummaries::IntervalAfter(150, o), 3000);  // a million rows
  EXPECT_EQ(QueueSummaries::IntervalAfter(-5, o), 1000);   // a clock step
}

// Not started: the caller reads, at most once per min_interval_ms.
TEST_F(QueueSummariesTest, UnstartedReadsOnTheCallerWhenTheLastReadIsOld) {
  std::atomic<int64_t> now{1000};
  QueueSummaries qs(store_.get(), QueueSummaries::Options{1000, 20}, [&] { return now.load(); });
  Queue("1.2.3.1", "PACS");
  EXPECT_EQ(RowsOf(*qs.Get(), "PACS"), 1u);
  EXPECT_EQ(qs.reads(), 1u);
  Queue("1.2.3.2", "PACS");
  now += 999;
  EXPECT_EQ(RowsOf(*qs.Get(), "PACS"), 1u) << "a read less than a second old is kept";
  EXPECT_EQ(qs.reads(), 1u);
  now += 1;
  EXPECT_EQ(RowsOf(*qs.Get(), "PACS"), 2u);
  EXPECT_EQ(qs.reads(), 2u);
}

// Started: Get never reads; the thread follows the store on its own.
TEST_F(QueueSummariesTest, StartedFollowsTheStoreFromItsOwnThread) {
  Queue("1.2.3.1", "PACS");
  QueueSummaries qs(store_.get(), QueueSummaries::Options{10, 20});
  qs.Start();
  std::shared_ptr<const QueueSummaries::Snapshot> first = qs.Get();
  ASSERT_TRUE(first->status.ok());
  EXPECT_EQ(RowsOf(*first, "PACS"), 1u) << "Start reads before it returns";
  Queue("1.2.3.2", "PACS");
  Queue("1.2.3.3", "ARCHIVE");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::shared_ptr<const QueueSummaries::Snapshot> s = qs.Get();
  while ((RowsOf(*s, "PACS") != 2 || RowsOf(*s, "ARCHIVE") != 1) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    s = qs.Get();
  }
  EXPECT_EQ(RowsOf(*s, "PACS"), 2u);
  EXPECT_EQ(RowsOf(*s, "ARCHIVE"), 1u);
  EXPECT_EQ(RowsOf(*first, "PACS"), 1u) << "a snapshot a caller holds does not change";
}

TEST(QueueSummariesNoStoreTest, AReadWithoutAStoreIsAnErrorNotACrash) {
  QueueSummaries qs(nullptr);
  EXPECT_FALSE(qs.Get()->status.ok());
}

}  // namespace
}  // namespace relais::router
