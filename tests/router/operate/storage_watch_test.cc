// Tests for the store's water marks (router/operate/storage_watch.h): a real Store in
// a temp dir, a Server (not listening) whose intake gate is driven, an audit
// trail, and a uv loop for the timer.
#include "router/operate/storage_watch.h"

#include <uv.h>

#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "router/receive/server.h"
#include "router/record/audit.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using store::testing::ApplyUpdates;
using store::testing::PutObject;
using store::testing::RandomBytes;
using store::testing::TempDir;
using ::testing::HasSubstr;

constexpr uint64_t kMapSize = 4ull << 20;  // 4 MiB
constexpr size_t kObjectBytes = 96 << 10;  // random: does not compress

class StorageWatchTest : public ::testing::Test {
 public:  // the loop callbacks of TimerSamplesUntilShutdown reach in
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    store::Options o = store::testing::TestOptions(dir_.Sub("store"));
    o.max_size = kMapSize;
    Result<std::unique_ptr<store::Store>> s = store::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    Result<std::unique_ptr<AuditLog>> a = AuditLog::Open(dir_.Sub("audit.jsonl"));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    audit_ = std::move(*a);
    server_ = std::make_unique<Server>(&loop_, store_.get(), ScpSettings{});
  }
  void TearDown() override {
    if (watch_) watch_->Shutdown();
    if (server_) server_->Shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    watch_.reset();
    server_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    store_.reset();
  }

  void MakeWatch(double high, double low) {
    watch_ =
        std::make_unique<StorageWatch>(&loop_, store_.get(), server_.get(), audit_.get(), dir_.Sub("store"), high, low);
    watch_->SetOnChange([this](const StorageWatch::Usage& u) { changes_.push_back(u); });
  }

  // Stores one object routed to "archive"; returns its id.
  uint64_t Put() {
    store::ObjectMeta m = store::testing::MakeMeta("1.2.826.0.1.9." + std::to_string(++seq_));
    m.routing = "routed";
    m.routes = {store::Route{"archive", 0, "r1", ""}};
    store::testing::PutResult r = PutObject(*store_, m, RandomBytes(kObjectBytes, seq_));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }
  void Deliver(uint64_t id) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDelivered;
    u.destination = "archive";
    u.object_id = id;
    ASSERT_TRUE(ApplyUpdates(*store_, {u}).ok());
  }
  std::vector<std::string> StorageRecords() {
    std::ifstream in(dir_.Sub("audit.jsonl"));
    std::vector<std::string> out;
    std::string l;
    while (std::getline(in, l)) {
      if (l.find("\"kind\":\"storage\"") != std::string::npos) out.push_back(l);
    }
    return out;
  }

  TempDir dir_;
  uv_loop_t loop_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<StorageWatch> watch_;
  std::vector<StorageWatch::Usage> changes_;
  int seq_ = 0;
};

TEST_F(StorageWatchTest, EmptyStoreIsOpenAndCapacityIsTheMapSize) {
  MakeWatch(0.9, 0.8);
  watch_->SampleNow();
  const StorageWatch::Usage& u = watch_->usage();
  EXPECT_FALSE(u.intake_closed);
  EXPECT_EQ(u.map_size, kMapSize);
  EXPECT_GT(u.used_bytes, 0u);  // LMDB's meta and root pages
  EXPECT_LT(u.used_bytes, kMapSize / 4);
  EXPECT_GT(u.fs_total_bytes, 0u);
  EXPECT_GT(u.fs_available_bytes, 0u);
  // The temp filesystem has far more than 4 MiB free: the map bounds capacity.
  EXPECT_EQ(u.capacity_bytes, kMapSize);
  EXPECT_DOUBLE_EQ(u.fraction, static_cast<double>(u.used_bytes) / static_cast<double>(kMapSize));
  EXPECT_EQ(u.closings, 0u);
  EXPECT_EQ(u.closed_since_unix_ms, 0);
  EXPECT_GT(u.sampled_unix_ms, 0);
  EXPECT_TRUE(server_->intake_closed().empty());
  EXPECT_TRUE(changes_.empty());
  EXPECT_TRUE(StorageRecords().empty());
}

// Fill past high, then drain one object at a time: intake is closed exactly
// while (it was closed and) usage stays at or above low (hysteresis).
TEST_F(StorageWatchTest, ClosesAtHighWaterAndReopensOnlyBelowLowWater) {
  MakeWatch(0.5, 0.25);
  std::vector<uint64_t> ids;
  watch_->SampleNow();
  while (!watch_->usage().intake_closed) {
    ASSERT_LT(ids.size(), 40u) << "never reached the high-water mark; fraction " << watch_->usage().fraction;
    EXPECT_LT(watch_->usage().fraction, 0.5);
    EXPECT_TRUE(server_->intake_closed().empty());
    ids.push_back(Put());
    watch_->SampleNow();
  }
  ASSERT_GE(ids.size(), 5u) << "the store filled too fast for a meaningful test";
  const StorageWatch::Usage closed = watch_->usage();
  EXPECT_GE(closed.fraction, 0.5);
  EXPECT_EQ(closed.closings, 1u);
  EXPECT_GT(closed.closed_since_unix_ms, 0);
  ASSERT_EQ(changes_.size(), 1u);
  EXPECT_TRUE(changes_[0].intake_closed);

  // The 0xA700 Error Comment (LO, 64 characters reach the sender) says what
  // and what to do within those 64 characters.
  const std::string& reason = server_->intake_closed();
  EXPECT_TRUE(std::regex_search(reason.substr(0, 64),
                                std::regex(R"(^Relais store \d+% full \(high-water 50% of 4\.0 MiB\): retry later)")))
      << reason;
  EXPECT_THAT(reason, HasSubstr("delivery is draining it"));

  // Sampling again while full changes nothing and reports nothing.
  watch_->SampleNow();
  EXPECT_TRUE(watch_->usage().intake_closed);
  EXPECT_EQ(watch_->usage().closed_since_unix_ms, closed.closed_since_unix_ms);
  EXPECT_EQ(changes_.size(), 1u);

  bool reopened = false;
  for (uint64_t id : ids) {
    Deliver(id);
    watch_->SampleNow();
    const StorageWatch::Usage& u = watch_->usage();
    if (!reopened) {
      EXPECT_EQ(u.intake_closed, u.fraction >= 0.25) << "fraction " << u.fraction;
      if (!u.intake_closed) {
        reopened = true;
        EXPECT_TRUE(server_->intake_closed().empty());
        ASSERT_EQ(changes_.size(), 2u);
        EXPECT_FALSE(changes_[1].intake_closed);
        EXPECT_EQ(changes_[1].closed_since_unix_ms, 0);
      } else {
        EXPECT_FALSE(server_->intake_closed().empty());
        EXPECT_EQ(changes_.size(), 1u);
      }
    } else {
      EXPECT_FALSE(u.intake_closed);
    }
  }
  EXPECT_TRUE(reopened) << "delivering everything did not reopen intake; fraction " << watch_->usage().fraction;
  EXPECT_EQ(watch_->usage().closings, 1u);
  EXPECT_EQ(changes_.size(), 2u);

  // One audit record per crossing, and the chain still verifies.
  std::vector<std::string> recs = StorageRecords();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_THAT(recs[0], HasSubstr("\"event\":\"intake-closed\""));
  EXPECT_THAT(recs[0], HasSubstr("\"high_water\":\"50%\""));
  EXPECT_THAT(recs[0], HasSubstr("\"capacity_bytes\":\"4194304\""));
  EXPECT_THAT(recs[1], HasSubstr("\"event\":\"intake-reopened\""));
  audit_.reset();
  Result<AuditLog::VerifyReport> v = AuditLog::Verify(dir_.Sub("audit.jsonl"));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->bad_line, 0u) << v->error;
}

TEST_F(StorageWatchTest, ClosesAgainAfterReopeningAndCountsClosings) {
  MakeWatch(0.4, 0.2);
  for (int round = 1; round <= 2; ++round) {
    std::vector<uint64_t> ids;
    for (watch_->SampleNow(); !watch_->usage().intake_closed; watch_->SampleNow()) {
      ASSERT_LT(ids.size(), 40u);
      ids.push_back(Put());
    }
    EXPECT_EQ(watch_->usage().closings, static_cast<uint64_t>(round));
    for (uint64_t id : ids) Deliver(id);
    watch_->SampleNow();
    EXPECT_FALSE(watch_->usage().intake_closed) << "fraction " << watch_->usage().fraction;
  }
  EXPECT_EQ(changes_.size(), 4u);
  EXPECT_EQ(StorageRecords().size(), 4u);
}

TEST_F(StorageWatchTest, NullServerAndAuditAreAllowed) {
  StorageWatch w(&loop_, store_.get(), nullptr, nullptr, dir_.Sub("store"), 0.3, 0.1);
  int calls = 0;
  w.SetOnChange([&calls](const StorageWatch::Usage&) { ++calls; });
  std::vector<uint64_t> ids;
  for (w.SampleNow(); !w.usage().intake_closed; w.SampleNow()) {
    ASSERT_LT(ids.size(), 40u);
    ids.push_back(Put());
  }
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(server_->intake_closed().empty()) << "not wired to this server";
}

// The timer samples on its own; Shutdown closes it and the loop runs out.
TEST_F(StorageWatchTest, TimerSamplesUntilShutdown) {
  MakeWatch(0.5, 0.25);
  watch_->Start(5);
  const int64_t first = watch_->usage().sampled_unix_ms;
  EXPECT_GT(first, 0) << "Start samples at once";
  uv_timer_t stop;
  uv_timer_init(&loop_, &stop);
  stop.data = this;
  // Fill the store from the loop; the watch must close intake by itself.
  uv_timer_start(
      &stop,
      [](uv_timer_t* t) noexcept {
        auto* self = static_cast<StorageWatchTest*>(t->data);
        if (self->watch_->usage().intake_closed || self->seq_ >= 40) {
          uv_timer_stop(t);
          uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
          self->watch_->Shutdown();
          self->server_->Shutdown();
          return;
        }
        self->Put();
      },
      2, 2);
  uv_run(&loop_, UV_RUN_DEFAULT);  // returns only once every handle is closed
  EXPECT_TRUE(watch_->usage().intake_closed);
  EXPECT_GT(watch_->usage().sampled_unix_ms, first);
  EXPECT_FALSE(server_->intake_closed().empty());
  ASSERT_EQ(changes_.size(), 1u);
}

}  // namespace
}  // namespace relais::router
