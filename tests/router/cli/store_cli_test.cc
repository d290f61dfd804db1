// `relais store purge` (router/cli/store_cli.h): objects removed by each
// selector and by selectors together (AND), --dry-run removing nothing, and
// the store verifying clean after.
#include "router/cli/store_cli.h"

#include <gtest/gtest.h>

#include <set>

#include "base/clock.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using store::ObjectClass;
using store::testing::TempDir;

constexpr int64_t kDay = 86400'000;

class StorePurgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = store::testing::TestOptions(dir_.Sub("store"));
    options_.retention_ms = 7 * kDay;
    options_.unrouted_retention_ms = 7 * kDay;
    options_.dead_retention_ms = 30 * kDay;
    options_.dropped_retention_ms = kDay;
    auto opened = store::Store::Open(options_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store::Store& st = **opened;
    const int64_t now = NowUnixMs();
    // uid, study, received days ago, routing
    struct Spec {
      const char* uid;
      const char* study;
      int days_ago;
      const char* routing;
    } const specs[] = {
        {"1.9.1", "S1", 0, "routed"},  {"1.9.2", "S1", 10, "unrouted"}, {"1.9.3", "S2", 10, "unrouted"},
        {"1.9.4", "S2", 0, "dropped"}, {"1.9.5", "S2", 20, "routed"},   {"1.9.6", "S3", 3, "unrouted"},
    };
    for (const Spec& s : specs) {
      store::ObjectMeta m = store::testing::MakeMeta(s.uid);
      m.study_instance_uid = s.study;
      m.received_unix_ms = now - s.days_ago * kDay;
      m.routing = s.routing;
      if (m.routing == "routed") m.routes = {store::Route{"ARCHIVE", 0, "r", ""}};
      ASSERT_TRUE(store::testing::PutObject(st, m, store::testing::RandomBytes(300, 1)).status.ok());
    }
    // 1.9.5 becomes a dead letter.
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDeadLetter;
    u.destination = "ARCHIVE";
    u.object_id = st.Find("1.9.5")->id;
    ASSERT_TRUE(store::testing::ApplyUpdates(st, {u}).ok());
  }

  // The UIDs left, after the command (the store is opened afresh).
  std::set<std::string> Left() {
    store::Options o = options_;
    o.read_only = true;
    auto opened = store::Store::Open(o);
    EXPECT_TRUE(opened.ok());
    std::set<std::string> out;
    EXPECT_TRUE((*opened)
                    ->List([&](const store::ObjectMeta& m) {
                      out.insert(m.sop_instance_uid);
                      return true;
                    })
                    .ok());
    Result<store::VerifyReport> v = (*opened)->Verify(nullptr);
    EXPECT_TRUE(v.ok() && v->ok()) << (v.ok() && !v->problems.empty() ? v->problems[0].what : "");
    return out;
  }

  TempDir dir_;
  store::Options options_;
};

TEST_F(StorePurgeTest, DryRunListsAndRemovesNothing) {
  ObjectSelection sel;
  sel.cls = ObjectClass::kUnrouted;
  EXPECT_EQ(StorePurge(options_, sel, /*dry_run=*/true), 0);
  EXPECT_EQ(Left().size(), 6u);
}

TEST_F(StorePurgeTest, ByUid) {
  ObjectSelection sel;
  sel.uids = {"1.9.1", "1.9.4"};
  EXPECT_EQ(StorePurge(options_, sel, false), 0);
  EXPECT_EQ(Left(), (std::set<std::string>{"1.9.2", "1.9.3", "1.9.5", "1.9.6"}));
}

TEST_F(StorePurgeTest, AnUnknownUidAloneIsExitCode2) {
  ObjectSelection sel;
  sel.uids = {"9.9.9"};
  EXPECT_EQ(StorePurge(options_, sel, false), 2);
  EXPECT_EQ(Left().size(), 6u);
}

TEST_F(StorePurgeTest, ByStudy) {
  ObjectSelection sel;
  sel.study = "S2";
  EXPECT_EQ(StorePurge(options_, sel, false), 0);
  EXPECT_EQ(Left(), (std::set<std::string>{"1.9.1", "1.9.2", "1.9.6"}));
}

TEST_F(StorePurgeTest, ByAge) {
  ObjectSelection sel;
  sel.older_than_ms = ParseCliDuration("5d");
  EXPECT_EQ(StorePurge(options_, sel, false), 0);
  EXPECT_EQ(Left(), (std::set<std::string>{"1.9.1", "1.9.4", "1.9.6"}));
}

TEST_F(StorePurgeTest, ByClassTakesDeadLettersWithTheirRows) {
  ObjectSelection sel;
  sel.cls = ObjectClass::kDead;
  EXPECT_EQ(StorePurge(options_, sel, false), 0);
  EXPECT_EQ(Left(), (std::set<std::string>{"1.9.1", "1.9.2", "1.9.3", "1.9.4", "1.9.6"}));
}

TEST_F(StorePurgeTest, SelectorsCombineWithAnd) {
  ObjectSelection sel;
  sel.cls = ObjectClass::kUnrouted;
  sel.study = "S2";
  sel.older_than_ms = ParseCliDuration("1d");
  EXPECT_EQ(StorePurge(options_, sel, false), 0);
  EXPECT_EQ(Left(), (std::set<std::string>{"1.9.1", "1.9.2", "1.9.4", "1.9.5", "1.9.6"}));
}

TEST(StoreCliTest, DurationsAndGoesText) {
  EXPECT_EQ(ParseCliDuration("90"), 90'000);
  EXPECT_EQ(ParseCliDuration("90s"), 90'000);
  EXPECT_EQ(ParseCliDuration("30m"), 1'800'000);
  EXPECT_EQ(ParseCliDuration("12h"), 43'200'000);
  EXPECT_EQ(ParseCliDuration("7d"), 7 * kDay);
  EXPECT_FALSE(ParseCliDuration(""));
  EXPECT_FALSE(ParseCliDuration("d"));
  EXPECT_FALSE(ParseCliDuration("7w"));
  EXPECT_FALSE(ParseCliDuration("99999999999999999999d"));
  store::ObjectLife life;
  life.object_class = ObjectClass::kQueued;
  EXPECT_EQ(GoesText(life), "with its queue rows");
  life.object_class = ObjectClass::kUnrouted;
  life.expires_unix_ms = kDay;
  EXPECT_EQ(GoesText(life), "1970-01-02T00:00:00.000Z");
  life.expires_unix_ms = -1;
  EXPECT_EQ(GoesText(life), "kept");
}

}  // namespace
}  // namespace relais::router
