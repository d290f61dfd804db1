// AdminApi's study-level actions for the dashboard's study page (issue 14):
// GET /api/whoami (the token's role and the actions it may take), the
// "study" selector of POST /api/queue/retry and /api/queue/purge, a purge's
// dry run and its "expect_rows" confirmation. On a real store in a temp dir,
// without HTTP (the HTTP side is tests/integration/dashboard_actions_test.cc).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "base/sha256.h"
#include "router/operate/admin_api.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"
#include "tests/router/operate/admin_api_fixture.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using nlohmann::json;
using store::testing::TempDir;

using admintest::kAdmin;
using admintest::kOperator;
using admintest::kViewer;
constexpr char kStudyA[] = "1.2.3.100";
constexpr char kStudyB[] = "1.2.3.200";

class AdminStudyActionsTest : public admintest::AdminApiFixture {
 protected:
  // Stores an object of `study` routed to "archive" and "telerad" (one
  // queued row at each).
  uint64_t Put(const std::string& uid, const std::string& study) {
    store::ObjectMeta m = store::testing::RoutedMeta2(uid);
    m.study_instance_uid = study;
    store::testing::PutResult r = store::testing::PutObject(*store_, m, store::testing::RandomBytes(500, 3));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }

  // (uid, destination) of every live row, and of every dead row.
  std::set<std::pair<std::string, std::string>> Rows(bool dead) {
    std::set<std::pair<std::string, std::string>> out;
    auto add = [&](const store::QueueRow& r) {
      out.insert({store_->Get(r.object_id)->sop_instance_uid, r.destination});
      return true;
    };
    EXPECT_TRUE((dead ? store_->ListDead(add) : store_->ListQueue(add)).ok());
    return out;
  }

  std::vector<json> AuditRecords() {
    std::ifstream in(dir_.Sub("audit.jsonl"));
    std::vector<json> out;
    std::string l;
    while (std::getline(in, l)) out.push_back(json::parse(l, nullptr, false));
    return out;
  }
};

TEST_F(AdminStudyActionsTest, WhoAmINamesTheRoleAndOnlyTheActionsItMayTake) {
  EXPECT_EQ(Call("GET", "/api/whoami", "").status, 401);
  json v = Body(Call("GET", "/api/whoami", kViewer));
  EXPECT_EQ(v["token"], "nurse");
  EXPECT_EQ(v["role"], "viewer");
  EXPECT_EQ(v["actions"], json::array());

  json o = Body(Call("GET", "/api/whoami", kOperator));
  EXPECT_EQ(o["role"], "operator");
  EXPECT_EQ(o["actions"], json({"POST /api/destinations/{}/pause", "POST /api/destinations/{}/resume",
                                "POST /api/queue/retry", "POST /api/route", "POST /api/rules/reload"}));

  json a = Body(Call("GET", "/api/whoami", kAdmin));
  EXPECT_EQ(a["role"], "admin");
  EXPECT_EQ(a["actions"],
            json({"POST /api/destinations/{}/pause", "POST /api/destinations/{}/resume", "POST /api/queue/retry",
                  "POST /api/route", "POST /api/queue/purge", "POST /api/rules/reload"}));
  // Every action it lists is one the token is allowed (not 401 or 403).
  for (const json& x : o["actions"]) {
    std::string s = x.get<std::string>();
    std::string path = s.substr(s.find(' ') + 1);
    if (size_t p = path.find("{}"); p != std::string::npos) path.replace(p, 2, "X");
    int status = Call("POST", path, kOperator, "{}").status;
    EXPECT_NE(status, 403) << s;
    EXPECT_NE(status, 401) << s;
  }
}

TEST_F(AdminStudyActionsTest, RetryOfAStudySendsNowOnlyThatStudysLiveRows) {
  uint64_t a1 = Put("1.2.3.100.1", kStudyA);
  Put("1.2.3.100.2", kStudyA);
  uint64_t b1 = Put("1.2.3.200.1", kStudyB);
  DeadLetter(a1, "telerad", 10);
  DeadLetter(b1, "telerad", 10);

  // One destination of the study: its live rows only (a1's telerad row is dead).
  AdminResponse r =
      Call("POST", "/api/queue/retry", kOperator, json({{"study", kStudyA}, {"destination", "telerad"}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"requeued", 1}}));
  // The whole study: every live row of it.
  r = Call("POST", "/api/queue/retry", kOperator, json({{"study", kStudyA}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"requeued", 3}}));
  // Dead letters of the study back to the queue; study B's stay dead.
  r = Call("POST", "/api/queue/retry", kOperator, json({{"study", kStudyA}, {"dead", true}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"requeued", 1}}));
  EXPECT_EQ(Rows(/*dead=*/true), (std::set<std::pair<std::string, std::string>>{{"1.2.3.200.1", "telerad"}}));
  EXPECT_EQ(Rows(/*dead=*/false).size(), 5u);

  r = Call("POST", "/api/queue/retry", kOperator, json({{"study", "9.9.9"}}).dump());
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(Body(r)["error"].get<std::string>().find("no stored object of study 9.9.9"), std::string::npos);
}

TEST_F(AdminStudyActionsTest, PurgeDryRunShowsTheRowsAndTheConfirmedPurgeRemovesOnlyThose) {
  uint64_t a1 = Put("1.2.3.100.1", kStudyA);
  Put("1.2.3.100.2", kStudyA);
  Put("1.2.3.200.1", kStudyB);
  DeadLetter(a1, "telerad", 10);
  const auto live_before = Rows(false);
  const auto dead_before = Rows(true);

  // Operators may not purge, even as a dry run.
  EXPECT_EQ(Call("POST", "/api/queue/purge", kOperator, json({{"study", kStudyA}, {"dry_run", true}}).dump()).status,
            403);

  AdminResponse r = Call("POST", "/api/queue/purge", kAdmin,
                         json({{"study", kStudyA}, {"destination", "telerad"}, {"dry_run", true}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json dry = Body(r);
  EXPECT_EQ(dry["dry_run"], true);
  EXPECT_EQ(dry["would_purge"], 2);
  std::set<std::tuple<std::string, std::string, bool>> shown;
  for (const json& row : dry["rows"]) {
    shown.insert(
        {row["sop_instance_uid"].get<std::string>(), row["destination"].get<std::string>(), row["dead"].get<bool>()});
  }
  EXPECT_EQ(shown, (std::set<std::tuple<std::string, std::string, bool>>{{"1.2.3.100.1", "telerad", true},
                                                                         {"1.2.3.100.2", "telerad", false}}));
  EXPECT_EQ(Rows(false), live_before);  // a dry run changes nothing
  EXPECT_EQ(Rows(true), dead_before);

  // A confirmation that no longer matches the selection does nothing.
  r = Call("POST", "/api/queue/purge", kAdmin,
           json({{"study", kStudyA}, {"destination", "telerad"}, {"expect_rows", 3}}).dump());
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(Body(r)["error"].get<std::string>().find("nothing was done"), std::string::npos);
  EXPECT_EQ(Rows(false), live_before);

  // The confirmed purge: exactly the rows shown.
  r = Call("POST", "/api/queue/purge", kAdmin,
           json({{"study", kStudyA},
                 {"destination", "telerad"},
                 {"uids", {"1.2.3.100.1", "1.2.3.100.2"}},
                 {"expect_rows", 2}})
               .dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"purged", 2}}));
  EXPECT_EQ(Rows(true).size(), 0u);
  EXPECT_EQ(Rows(false), (std::set<std::pair<std::string, std::string>>{{"1.2.3.100.1", "archive"},
                                                                        {"1.2.3.100.2", "archive"},
                                                                        {"1.2.3.200.1", "archive"},
                                                                        {"1.2.3.200.1", "telerad"}}));

  // The audit trail has the dry run and the purge with its study.
  bool dry_audited = false, purge_audited = false;
  for (const json& a : AuditRecords()) {
    if (a.is_discarded() || a.value("kind", "") != "admin" || a.value("token", "") != "boss") continue;
    const std::string d = a.value("detail", "");
    dry_audited = dry_audited || d == "dry run: would purge 2 rows";
    purge_audited = purge_audited || (d.starts_with("purged 2 rows; selector dest=telerad dead=0 uids=1.2.3.100.1,"
                                                    "1.2.3.100.2 study=1.2.3.100; objects: ") &&
                                      a.value("result", "") == "ok");
  }
  EXPECT_TRUE(dry_audited);
  EXPECT_TRUE(purge_audited);
}

TEST_F(AdminStudyActionsTest, MalformedStudySelectorsAreRefused) {
  Put("1.2.3.100.1", kStudyA);
  for (const char* body : {R"({"study":7})", R"({"study":""})", R"({"study":"1.2","dry_run":"yes"})",
                           R"({"study":"1.2","expect_rows":-1})", R"({"study":"1.2","expect_rows":1.5})"}) {
    AdminResponse r = Call("POST", "/api/queue/purge", kAdmin, body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_TRUE(Body(r).contains("error")) << body;
  }
  EXPECT_EQ(Rows(false).size(), 2u);
}

}  // namespace
}  // namespace relais::router
