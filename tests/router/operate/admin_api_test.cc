// AdminApi without HTTP: the role matrix, every handler's JSON shape, and
// malformed requests (not JSON, wrong types, unknown fields, huge numbers,
// deep nesting, bad query parameters), on a real store in a temp dir.
#include "router/operate/admin_api.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/sha256.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"
#include "rules/routing.h"
#include "tests/router/operate/admin_api_fixture.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using nlohmann::json;
using store::testing::TempDir;

using admintest::Bearer;
using admintest::kAdmin;
using admintest::kOperator;
using admintest::kViewer;

class AdminApiTest : public admintest::AdminApiFixture {
 protected:
  // Stores an object routed to "archive" (priority 0) and "telerad" (10).
  uint64_t PutRouted(const std::string& uid) {
    store::testing::PutResult r =
        store::testing::PutObject(*store_, store::testing::RoutedMeta2(uid), store::testing::RandomBytes(1000, 7));
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return r.meta.id;
  }

  // Rules with the destinations archive, telerad and pacs2.
  void SetRules() {
    auto rs = rules::RuleSet::Parse(
        "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = 104\n"
        "[[destination]]\nname = \"telerad\"\nae_title = \"TELERAD\"\nhost = \"127.0.0.1\"\nport = 105\n"
        "[[destination]]\nname = \"pacs2\"\nae_title = \"PACS2\"\nhost = \"127.0.0.1\"\nport = 106\n"
        "[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n",
        "rules.toml");
    ASSERT_TRUE(rs.ok()) << rs.status().ToString();
    rules_ = *rs;
  }

  std::vector<std::string> AuditLines() {
    std::ifstream in(dir_.Sub("audit.jsonl"));
    std::vector<std::string> out;
    std::string l;
    while (std::getline(in, l)) out.push_back(l);
    return out;
  }
};

TEST(AdminSha256Test, MatchesFips180Vectors) {
  // FIPS 180-2 appendix B.1: SHA-256("abc").
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // SHA-256 of the empty string.
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(AdminRoleTest, ParsesTheThreeRolesOnly) {
  EXPECT_EQ(ParseAdminRole("viewer"), AdminRole::kViewer);
  EXPECT_EQ(ParseAdminRole("operator"), AdminRole::kOperator);
  EXPECT_EQ(ParseAdminRole("admin"), AdminRole::kAdmin);
  EXPECT_EQ(ParseAdminRole("Admin"), AdminRole::kNone);
  EXPECT_EQ(ParseAdminRole(""), AdminRole::kNone);
}

TEST_F(AdminApiTest, ProbesAndDashboardNeedNoToken) {
  AdminResponse r = Call("GET", "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"status", "ok"}}));
  r = Call("GET", "/readyz");
  EXPECT_EQ(r.status, 200) << r.body;
  json j = Body(r);
  EXPECT_EQ(j["ready"], true);
  EXPECT_EQ(j["checks"]["store"], "ok");
  EXPECT_EQ(j["checks"]["rules"], "ok");
  r = Call("GET", "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(r.body.find("<html"), std::string::npos);
}

TEST_F(AdminApiTest, FaviconNeedsNoTokenAndWritesNoAuditRecord) {
  const size_t before = AuditLines().size();
  AdminResponse r = Call("GET", "/favicon.ico");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "image/svg+xml");
  EXPECT_NE(r.body.find("<svg"), std::string::npos);
  EXPECT_EQ(AuditLines().size(), before);
}

TEST_F(AdminApiTest, RoleMatrix) {
  struct Case {
    const char* method;
    const char* path;
    AdminRole needs;
    const char* body;
  };
  const Case cases[] = {
      {"GET", "/api/status", AdminRole::kViewer, ""},
      {"GET", "/api/destinations", AdminRole::kViewer, ""},
      {"GET", "/api/queue", AdminRole::kViewer, ""},
      {"GET", "/api/dead", AdminRole::kViewer, ""},
      {"GET", "/api/failures", AdminRole::kViewer, ""},
      {"GET", "/api/throughput", AdminRole::kViewer, ""},
      {"GET", "/metrics", AdminRole::kViewer, ""},
      {"GET", "/api/objects/1.2.3", AdminRole::kViewer, ""},
      {"POST", "/api/queue/retry", AdminRole::kOperator, R"({"dead":true})"},
      {"POST", "/api/destinations/X/pause", AdminRole::kOperator, ""},
      {"POST", "/api/destinations/X/resume", AdminRole::kOperator, ""},
      {"POST", "/api/rules/reload", AdminRole::kOperator, ""},
      {"POST", "/api/queue/purge", AdminRole::kAdmin, R"({"dead":true})"},
  };
  const std::pair<const char*, AdminRole> tokens[] = {{"", AdminRole::kNone},
                                                      {"not-a-token", AdminRole::kNone},
                                                      {kViewer, AdminRole::kViewer},
                                                      {kOperator, AdminRole::kOperator},
                                                      {kAdmin, AdminRole::kAdmin}};
  for (const Case& c : cases) {
    for (const auto& [token, role] : tokens) {
      AdminResponse r = Call(c.method, c.path, token, c.body);
      SCOPED_TRACE(std::string(c.method) + " " + c.path + " token=" + token);
      if (role == AdminRole::kNone) {
        EXPECT_EQ(r.status, 401) << r.body;
        bool has = false;
        for (const auto& [k, v] : r.headers) has = has || (k == "WWW-Authenticate" && v.rfind("Bearer", 0) == 0);
        EXPECT_TRUE(has);
        EXPECT_TRUE(Body(r).contains("error"));
      } else if (role < c.needs) {
        EXPECT_EQ(r.status, 403) << r.body;
        EXPECT_TRUE(Body(r).contains("error"));
      } else {
        EXPECT_NE(r.status, 401) << r.body;
        EXPECT_NE(r.status, 403) << r.body;
        EXPECT_LT(r.status, 500) << r.body;
      }
    }
  }
}

TEST_F(AdminApiTest, SendNowAndRouteNeedAnOperator) {
  // The role table (docs/admin-api.md): both are operator actions.
  struct ByRole {
    const char* token;
    int refused;  // 0: allowed
    const char* uid;
  };
  const ByRole by_role[] = {{kViewer, 403, "1.2.3.60"}, {kOperator, 0, "1.2.3.61"}, {kAdmin, 0, "1.2.3.62"}};
  SetRules();
  for (const ByRole& b : by_role) {
    const std::string token = b.token;
    const int refused = b.refused;
    PutRouted(b.uid);
    AdminResponse r = Call("POST", "/api/queue/retry", token, R"({"destination":"telerad"})");
    SCOPED_TRACE(token);
    if (refused != 0) {
      EXPECT_EQ(r.status, refused) << r.body;
      EXPECT_NE(Body(r).value("error", "").find("operator"), std::string::npos) << r.body;
    } else {
      EXPECT_EQ(r.status, 200) << r.body;
    }
    r = Call("POST", "/api/route", token, R"({"sop_instance_uid":")" + std::string(b.uid) + R"(","to":"pacs2"})");
    if (refused != 0) {
      EXPECT_EQ(r.status, refused) << r.body;
    } else {
      EXPECT_EQ(r.status, 200) << r.body;
    }
  }
  // The viewer's refusals changed nothing: only the operator's and the
  // admin's objects have a pacs2 row.
  size_t pacs2 = 0;
  ASSERT_TRUE(store_->ListQueue("pacs2", [&](const store::QueueRow&) { return ++pacs2, true; }).ok());
  EXPECT_EQ(pacs2, 2u);
}

TEST_F(AdminApiTest, SendNowMakesTheDestinationsWaitingRowsDueAndIsAudited) {
  SetRules();
  const uint64_t a = PutRouted("1.2.3.70"), b = PutRouted("1.2.3.71");
  // Both telerad rows wait out a long backoff; archive's rows are untouched.
  const int64_t later = 1700000000000 + 3600 * 1000;
  std::vector<store::QueueUpdate> waits;
  for (uint64_t id : {a, b}) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kRetryLater;
    u.destination = "telerad";
    u.priority = 10;
    u.object_id = id;
    u.attempts = 4;
    u.next_attempt_unix_ms = later;
    u.error = "connect failed";
    waits.push_back(u);
  }
  ASSERT_TRUE(store::testing::ApplyUpdates(*store_, waits).ok());
  DeadLetter(PutRouted("1.2.3.72"), "telerad", 10);  // a dead row stays dead on send now
  api_->SetClock([] { return int64_t{1700000000000}; });

  // The name matches without case, as the CLI's does.
  AdminResponse r = Call("POST", "/api/queue/retry", kOperator, R"({"destination":"TELERAD"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"requeued", 2}}));
  std::map<uint64_t, store::QueueRow> telerad;
  ASSERT_TRUE(store_
                  ->ListQueue("telerad",
                              [&](const store::QueueRow& q) {
                                telerad[q.object_id] = q;
                                return true;
                              })
                  .ok());
  ASSERT_EQ(telerad.size(), 2u);
  for (uint64_t id : {a, b}) {
    EXPECT_LE(telerad[id].next_attempt_unix_ms, 1700000000000) << "due now, not after the backoff";
  }
  size_t archive = 0;
  ASSERT_TRUE(store_->ListQueue("archive", [&](const store::QueueRow&) { return ++archive, true; }).ok());
  EXPECT_EQ(archive, 3u);
  EXPECT_EQ(Body(Call("GET", "/api/dead", kViewer))["rows"].size(), 1u) << "send now leaves dead letters";

  // Audited with the token, the selector and the objects touched.
  bool audited = false;
  for (const std::string& l : AuditLines()) {
    json j = json::parse(l, nullptr, false);
    if (j.is_discarded() || j.value("kind", "") != "admin" || j.value("result", "") != "ok") continue;
    EXPECT_EQ(j.value("token", ""), "tech") << l;
    const std::string detail = j.value("detail", "");
    EXPECT_EQ(detail.rfind("requeued 2 rows; selector dest=telerad dead=0 uids=-; objects: ", 0), 0u) << l;
    EXPECT_NE(detail.find("1.2.3.70"), std::string::npos) << l;
    EXPECT_NE(detail.find("1.2.3.71"), std::string::npos) << l;
    EXPECT_EQ(detail.find("1.2.3.72"), std::string::npos) << l;
    audited = true;
  }
  EXPECT_TRUE(audited);
}

TEST_F(AdminApiTest, SendNowToAnUnknownDestinationIsRefusedNamingTheKnownOnes) {
  SetRules();
  PutRouted("1.2.3.73");
  AdminResponse r = Call("POST", "/api/queue/retry", kOperator, R"({"destination":"nowhere"})");
  EXPECT_EQ(r.status, 404) << r.body;
  const std::string why = Body(r).value("error", "");
  EXPECT_NE(why.find("no destination 'nowhere'"), std::string::npos) << why;
  EXPECT_NE(why.find("telerad"), std::string::npos) << "names the known ones: " << why;
  // A destination that left the rules but still has rows can be acted on.
  rules_ = nullptr;
  r = Call("POST", "/api/queue/retry", kOperator, R"({"destination":"archive"})");
  EXPECT_EQ(r.status, 200) << r.body;
  // The refusal is audited.
  bool refused = false;
  for (const std::string& l : AuditLines()) {
    json j = json::parse(l, nullptr, false);
    refused = refused || (!j.is_discarded() && j.value("result", "") == "refused" &&
                          j.value("detail", "").find("nowhere") != std::string::npos);
  }
  EXPECT_TRUE(refused);
}

TEST_F(AdminApiTest, RouteSendsAStoredObjectOrStudyToADestinationAndIsAudited) {
  SetRules();
  PutRouted("1.2.3.80");
  const std::string study = store_->Find("1.2.3.80")->study_instance_uid;
  AdminResponse r = Call("POST", "/api/route", kOperator, R"({"sop_instance_uid":"1.2.3.80","to":"Pacs2"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"routed", 1}, {"to", "pacs2"}}));
  std::vector<store::QueueRow> rows;
  ASSERT_TRUE(store_->ListQueue("pacs2", [&](const store::QueueRow& q) { return rows.push_back(q), true; }).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].object_id, store_->Find("1.2.3.80")->id);
  // The object now has a route to pacs2, recorded as manual.
  bool manual = false;
  Result<store::ObjectMeta> routed = store_->Find("1.2.3.80");
  ASSERT_TRUE(routed.ok()) << routed.status().ToString();
  for (const store::Route& rt : routed->routes) {
    manual = manual || (rt.destination == "pacs2" && rt.rule == store::kManualRule);
  }
  EXPECT_TRUE(manual);
  // By study: every stored object of it.
  r = Call("POST", "/api/route", kAdmin, R"({"study_instance_uid":")" + study + R"(","to":"archive"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["routed"], 1);

  bool audited = false;
  for (const std::string& l : AuditLines()) {
    json j = json::parse(l, nullptr, false);
    if (j.is_discarded() || j.value("kind", "") != "admin" || j.value("result", "") != "ok") continue;
    if (j.value("detail", "") == "routed 1 to pacs2") {
      audited = true;
      EXPECT_EQ(j.value("token", ""), "tech") << l;
    }
  }
  EXPECT_TRUE(audited);
}

TEST_F(AdminApiTest, RouteRefusesBadBodiesUnknownDestinationsAndUnknownUids) {
  SetRules();
  PutRouted("1.2.3.81");
  struct Case {
    std::string body;
    int status;
    const char* says;  // in the error message
  };
  const Case cases[] = {
      {"not json", 400, ""},
      {"{", 400, ""},
      {"[]", 400, ""},
      {R"({"sop_instance_uid":"1.2.3.81"})", 400, "\"to\""},
      {R"({"sop_instance_uid":"1.2.3.81","to":""})", 400, "\"to\""},
      {R"({"sop_instance_uid":"1.2.3.81","to":7})", 400, "\"to\""},
      {R"({"to":"pacs2"})", 400, "exactly one"},
      {R"({"sop_instance_uid":"1.2.3.81","study_instance_uid":"1.2","to":"pacs2"})", 400, "exactly one"},
      {R"({"sop_instance_uid":"1.2.3.81","to":"pacs2","colour":"red"})", 400, "colour"},
      {R"({"sop_instance_uid":")" + std::string(65, '1') + R"(","to":"pacs2"})", 400, "64"},
      {R"({"sop_instance_uid":"1.2.3.81","to":"nowhere"})", 400, "no destination 'nowhere'"},
      {R"({"sop_instance_uid":"9.9.9","to":"pacs2"})", 404, "9.9.9"},
      {R"({"study_instance_uid":"9.9.8","to":"pacs2"})", 404, "9.9.8"},
  };
  for (const Case& c : cases) {
    AdminResponse r = Call("POST", "/api/route", kOperator, c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    const std::string why = Body(r).value("error", "");
    EXPECT_FALSE(why.empty()) << c.body;
    EXPECT_NE(why.find(c.says), std::string::npos) << c.body << " -> " << why;
  }
  // Nothing was routed, and each refusal is audited.
  size_t pacs2 = 0;
  ASSERT_TRUE(store_->ListQueue("pacs2", [&](const store::QueueRow&) { return ++pacs2, true; }).ok());
  EXPECT_EQ(pacs2, 0u);
  size_t refused = 0;
  for (const std::string& l : AuditLines()) {
    json j = json::parse(l, nullptr, false);
    if (!j.is_discarded() && j.value("result", "") == "refused" && j.value("path", "") == "/api/route") ++refused;
  }
  EXPECT_EQ(refused, std::size(cases));
}

TEST_F(AdminApiTest, MalformedAuthorizationIsUnauthorized) {
  for (const char* h : {"Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Token viewer-token-0123456789",
                        "Bearer viewer-token-012345678", "Bearer viewer-token-0123456789x"}) {
    AdminRequest req;
    req.method = "GET";
    req.path = "/api/status";
    req.authorization = h;
    AdminResponse out;
    api_->Handle(req, [&](AdminResponse r) { out = std::move(r); });
    EXPECT_EQ(out.status, 401) << h;
  }
  // The scheme is case-insensitive (RFC 7235 2.1).
  AdminRequest req;
  req.method = "GET";
  req.path = "/api/status";
  req.authorization = std::string("bearer ") + kViewer;
  AdminResponse out;
  api_->Handle(req, [&](AdminResponse r) { out = std::move(r); });
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(out.token_name, "nurse");
}

TEST_F(AdminApiTest, UnknownPathAndWrongMethod) {
  EXPECT_EQ(Call("GET", "/api/nothing").status, 401);
  AdminResponse r = Call("GET", "/api/nothing", kViewer);
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(Body(r).contains("error"));
  r = Call("DELETE", "/api/status", kAdmin);
  EXPECT_EQ(r.status, 405);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], std::make_pair(std::string("Allow"), std::string("GET")));
  r = Call("GET", "/api/queue/retry", kAdmin);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers[0].second, "POST");
  EXPECT_EQ(Call("POST", "/healthz").status, 405);
}

TEST_F(AdminApiTest, RefusedRequestsAreAudited) {
  Call("GET", "/api/status", "wrong-token");
  Call("POST", "/api/queue/purge", kOperator, R"({"dead":true})");
  std::vector<std::string> lines = AuditLines();
  int refused = 0;
  bool saw_403 = false;
  for (const std::string& l : lines) {
    json j = json::parse(l, nullptr, false);
    if (j.is_discarded() || j.value("kind", "") != "admin") continue;
    if (j.value("result", "") != "refused") continue;
    ++refused;
    EXPECT_EQ(j.value("client", ""), "127.0.0.1:5555");
    if (j.value("status", "") == "403") {
      saw_403 = true;
      EXPECT_EQ(j.value("token", ""), "tech");
      EXPECT_EQ(j.value("role", ""), "operator");
      EXPECT_EQ(j.value("path", ""), "/api/queue/purge");
      EXPECT_EQ(j.value("method", ""), "POST");
    }
  }
  EXPECT_EQ(refused, 2);
  EXPECT_TRUE(saw_403);
  EXPECT_EQ(metrics_.admin_requests().at("unauthorized"), 1u);
  EXPECT_EQ(metrics_.admin_requests().at("forbidden"), 1u);
}

TEST_F(AdminApiTest, HugeNamesAndRepeatedRefusalsKeepTheAuditTrailSmallAndVerifiable) {
  const std::string name(1536 * 1024, 'n');  // 1.5 MB
  // No delivery source: 409, recorded with the path and the operator's name.
  EXPECT_EQ(Call("POST", "/api/destinations/" + name + "/pause", kOperator).status, 409);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Call("GET", "/api/" + std::string(400 * 1024, 'x')).status, 401);
  audit_.reset();  // closing writes the summary of the repeats
  std::vector<std::string> lines = AuditLines();
  size_t bytes = 0;
  for (const std::string& l : lines) bytes += l.size() + 1;
  EXPECT_LT(bytes, 16u * 1024);
  std::vector<json> admin;
  for (const std::string& l : lines) {
    EXPECT_LE(l.size(), kAuditMaxRecordBytes);
    json j = json::parse(l, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << l.substr(0, 200);
    if (j.value("kind", "") == "admin") admin.push_back(j);
  }
  ASSERT_EQ(admin.size(), 3u);
  EXPECT_EQ(admin[0].value("token", ""), "tech");
  EXPECT_EQ(admin[0].value("status", ""), "409");
  const std::string path = admin[0].value("path", "");
  EXPECT_LE(path.size(), kAuditMaxFieldBytes);
  EXPECT_NE(path.find("...[cut, " + std::to_string(name.size() + 24) + " bytes]"), std::string::npos) << path;
  EXPECT_EQ(admin[1].value("status", ""), "401");
  EXPECT_EQ(admin[2].value("address", ""), "127.0.0.1");
  EXPECT_EQ(admin[2].value("repeated", ""), "19");
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(dir_.Sub("audit.jsonl"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bad_line, 0u) << r->error;
  EXPECT_EQ(r->records, lines.size());
}

TEST_F(AdminApiTest, StatusShape) {
  PutRouted("1.2.3.100");
  AdminResponse r = Call("GET", "/api/status", kViewer);
  ASSERT_EQ(r.status, 200);
  json j = Body(r);
  for (const char* k : {"version", "revision", "started", "uptime_s", "ae_title", "listener", "associations_open",
                        "objects_received", "bytes_received", "intake", "intake_reason", "store", "rules", "alerts"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j["ae_title"], "RELAIS");
  EXPECT_EQ(j["intake"], "open");
  EXPECT_EQ(j["started"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(j["store"]["objects"], 1);
  EXPECT_EQ(j["store"]["queue_rows"], 2);
  EXPECT_EQ(j["rules"]["loaded"], false);
  EXPECT_TRUE(j["alerts"].is_array());
}

TEST_F(AdminApiTest, DestinationsFromTheStore) {
  uint64_t id = PutRouted("1.2.3.1");
  PutRouted("1.2.3.2");
  DeadLetter(id, "telerad", 10);
  AdminResponse r = Call("GET", "/api/destinations", kViewer);
  ASSERT_EQ(r.status, 200);
  json j = Body(r);
  ASSERT_EQ(j["destinations"].size(), 2u) << r.body;
  json a = j["destinations"][0], t = j["destinations"][1];
  EXPECT_EQ(a["name"], "archive");
  EXPECT_EQ(a["queued"], 2);
  EXPECT_EQ(a["dead"], 0);
  EXPECT_EQ(a["configured"], false);
  EXPECT_EQ(t["queued"], 1);
  EXPECT_EQ(t["dead"], 1);
  for (const char* k : {"state", "paused", "associations", "in_flight", "oldest_queued", "oldest_queued_age_s", "sent",
                        "failed", "retries", "bytes_sent", "bytes_per_s", "failures_by_class", "last_error"}) {
    EXPECT_TRUE(a.contains(k)) << k;
  }
  r = Call("GET", "/api/destinations/telerad", kViewer);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["name"], "telerad");
  EXPECT_EQ(Call("GET", "/api/destinations/nowhere", kViewer).status, 404);
}

TEST_F(AdminApiTest, QueuePagesWithCursorAndFilters) {
  for (int i = 0; i < 5; ++i) PutRouted("1.2.3." + std::to_string(10 + i));
  // 10 live rows: 5 archive, 5 telerad.
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    std::string q = "limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor);
    AdminResponse r = Call("GET", "/api/queue", kViewer, "", q);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = Body(r);
    for (const json& row : j["rows"]) {
      seen.push_back(row["destination"].get<std::string>() + "/" + row["sop_instance_uid"].get<std::string>());
      EXPECT_FALSE(row.contains("dead_at"));
      EXPECT_EQ(row["modality"], "CT");
      EXPECT_EQ(row["raw_size"], 1000);
    }
    cursor = j.value("next_cursor", "");
    ASSERT_LT(++pages, 10);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 4);
  ASSERT_EQ(seen.size(), 10u);
  std::set<std::string> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), 10u);
  EXPECT_EQ(seen.front(), "archive/1.2.3.10");

  json j = Body(Call("GET", "/api/queue", kViewer, "", "destination=telerad&sop_instance_uid=1.2.3.12"));
  ASSERT_EQ(j["rows"].size(), 1u);
  EXPECT_EQ(j["rows"][0]["priority"], 10);
  EXPECT_FALSE(j.contains("next_cursor"));
  j = Body(Call("GET", "/api/queue", kViewer, "", "patient_id=PAT001&limit=1000"));
  EXPECT_EQ(j["rows"].size(), 10u);
  j = Body(Call("GET", "/api/queue", kViewer, "", "patient_id=nobody"));
  EXPECT_EQ(j["rows"].size(), 0u);
}

TEST_F(AdminApiTest, BadQueryParametersAreRefused) {
  for (const char* q : {"limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=99999999999999999999999999",
                        "limit=", "limit=1.5", "cursor=zz", "cursor=00", "colour=red", "destination=%zz"}) {
    AdminResponse r = Call("GET", "/api/queue", kViewer, "", q);
    EXPECT_EQ(r.status, 400) << q << " " << r.body;
    EXPECT_TRUE(Body(r).contains("error")) << q;
  }
}

TEST_F(AdminApiTest, ObjectShowsASuppressedDestinationWithTheReason) {
  uint64_t id = PutRouted("1.2.3.60");
  store::QueueUpdate u;
  u.kind = store::QueueUpdate::Kind::kDelivered;
  u.destination = "archive";
  u.object_id = id;
  ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  u.destination = "telerad";
  u.priority = 10;
  ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());  // delivered everywhere: removed
  // Sent again: archive says "never", telerad always takes it.
  store::ObjectMeta again = store::testing::RoutedMeta2("1.2.3.60");
  again.routes[0].resend = store::Resend::kNever;
  again.routes[0].resend_window_ms = 86400000;
  ASSERT_TRUE(store::testing::PutObject(*store_, again, store::testing::RandomBytes(1000, 7)).status.ok());

  AdminResponse r = Call("GET", "/api/objects/1.2.3.60", kViewer);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Body(r);
  ASSERT_EQ(j["object"]["routes"].size(), 2u);
  const json& archive = j["object"]["routes"][0];
  EXPECT_EQ(archive["state"], "suppressed");
  EXPECT_TRUE(archive["reason"].get<std::string>().starts_with("already delivered to archive at ")) << archive;
  EXPECT_EQ(j["object"]["routes"][1]["state"], "queued");
  EXPECT_FALSE(j["object"]["routes"][1].contains("reason"));
  ASSERT_EQ(j["attempts"].size(), 1u);
  EXPECT_EQ(j["attempts"][0]["result"], "suppressed");
}

TEST_F(AdminApiTest, DeadListAndRetryAndPurgeAct) {
  uint64_t id = PutRouted("1.2.3.50");
  DeadLetter(id, "telerad", 10);
  json j = Body(Call("GET", "/api/dead", kViewer));
  ASSERT_EQ(j["rows"].size(), 1u);
  EXPECT_EQ(j["rows"][0]["last_status"], "0xA900");
  EXPECT_TRUE(j["rows"][0].contains("dead_at"));

  AdminResponse r = Call("POST", "/api/queue/retry", kOperator, R"({"dead":true})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"requeued", 1}}));
  EXPECT_EQ(Body(Call("GET", "/api/dead", kViewer))["rows"].size(), 0u);
  EXPECT_EQ(store_->GetStats().queue_rows, 2u);

  r = Call("POST", "/api/queue/purge", kAdmin, R"({"destination":"telerad"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"purged", 1}}));
  EXPECT_EQ(store_->GetStats().queue_rows, 1u);

  r = Call("POST", "/api/queue/retry", kOperator, R"({"uids":["1.2.3.50","9.9.9"]})");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["unknown_uids"], json::array({"9.9.9"}));

  // The object's history shows the admin actions.
  r = Call("GET", "/api/objects/1.2.3.50", kViewer);
  ASSERT_EQ(r.status, 200);
  j = Body(r);
  EXPECT_EQ(j["object"]["sop_instance_uid"], "1.2.3.50");
  EXPECT_EQ(j["queued"].size(), 1u);
  EXPECT_EQ(j["dead"].size(), 0u);
  bool requeued = false, purged = false;
  for (const json& a : j["attempts"]) {
    requeued = requeued || a["result"] == "requeued";
    purged = purged || a["result"] == "purged";
    EXPECT_TRUE(a.contains("at"));
  }
  EXPECT_TRUE(requeued);
  EXPECT_TRUE(purged);
  EXPECT_EQ(Call("GET", "/api/objects/1.2.3.404", kViewer).status, 404);

  // Every action is audited with the token name.
  int ok = 0;
  bool purge_audited = false;
  for (const std::string& l : AuditLines()) {
    json a = json::parse(l, nullptr, false);
    if (!a.is_discarded() && a.value("kind", "") == "admin" && a.value("result", "") == "ok") {
      ++ok;
      EXPECT_TRUE(a.value("token", "") == "tech" || a.value("token", "") == "boss") << l;
      // The purge names its selection and what it touched, not only a count.
      if (a.value("detail", "").starts_with("purged")) {
        purge_audited = true;
        EXPECT_EQ(a.value("detail", ""),
                  "purged 1 rows; selector dest=telerad dead=0 uids=-; objects: 1.2.3.50; patients: " +
                      store_->Find("1.2.3.50")->patient_id)
            << l;
      }
    }
  }
  EXPECT_TRUE(purge_audited);
  EXPECT_EQ(ok, 2);
}

TEST_F(AdminApiTest, MalformedBodiesAreRefusedWithJsonErrors) {
  std::string deep(10000, '[');
  std::string deep_obj;
  for (int i = 0; i < 100; ++i) deep_obj += "{\"a\":";
  const std::string bodies[] = {
      "not json",
      "{",
      "[]",
      "\"dead\"",
      "17",
      "null",
      R"({"dead":"yes"})",
      R"({"dead":1})",
      R"({"dead":1e999})",
      R"({"dead":true,"colour":"red"})",
      R"({"uids":"1.2.3"})",
      R"({"uids":[1,2]})",
      R"({"uids":[123456789012345678901234567890123456789]})",
      R"({"uids":[]})",
      R"({"uids":[""]})",
      R"({"uids":[null]})",
      R"({"destination":42,"dead":true})",
      R"({"destination":""})",
      R"({})",
      R"({"dead":false})",
      deep,
      deep_obj,
      std::string("{\"dead\":true}\0garbage", 21),
      "\xff\xfe{}",
  };
  for (const std::string& b : bodies) {
    AdminResponse r = Call("POST", "/api/queue/retry", kAdmin, b);
    EXPECT_EQ(r.status, 400) << b.substr(0, 60) << " -> " << r.body;
    json j = Body(r);
    EXPECT_TRUE(j.contains("error")) << b.substr(0, 60);
  }
  // Pause/resume/reload take no fields.
  EXPECT_EQ(Call("POST", "/api/rules/reload", kAdmin, R"({"force":true})").status, 400);
  EXPECT_EQ(Call("POST", "/api/destinations/x/pause", kAdmin, "[1]").status, 400);
  // Purge needs a selector.
  EXPECT_EQ(Call("POST", "/api/queue/purge", kAdmin, "{}").status, 400);
  EXPECT_EQ(Call("POST", "/api/queue/purge", kAdmin, "").status, 400);
}

TEST_F(AdminApiTest, ActionsWithoutTheirSourceAnswer409) {
  AdminResponse r = Call("POST", "/api/rules/reload", kOperator);
  EXPECT_EQ(r.status, 409) << r.body;
  r = Call("POST", "/api/destinations/archive/pause", kOperator, "{}");
  EXPECT_EQ(r.status, 409) << r.body;
}

TEST_F(AdminApiTest, FailuresThroughputAndMetricsShapes) {
  json j = Body(Call("GET", "/api/failures", kViewer));
  EXPECT_TRUE(j["failures"].is_array());
  metrics_.ObjectReceived(5000, 0.01, 1700000000000);
  api_->SetClock([] { return int64_t{1700000030000}; });
  j = Body(Call("GET", "/api/throughput", kViewer));
  ASSERT_EQ(j["minutes"].size(), 60u);
  uint64_t received = 0, bytes = 0;
  for (const json& m : j["minutes"]) {
    received += m["received"].get<uint64_t>();
    bytes += m["received_bytes"].get<uint64_t>();
    EXPECT_TRUE(m.contains("start"));
    EXPECT_TRUE(m.contains("sent_bytes"));
  }
  EXPECT_EQ(received, 1u);
  EXPECT_EQ(bytes, 5000u);
  AdminResponse r = Call("GET", "/metrics", kViewer);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("version=0.0.4"), std::string::npos);
  EXPECT_NE(r.body.find("relais_"), std::string::npos);
}

TEST_F(AdminApiTest, LateAnswerAfterDestructionIsDropped) {
  uint64_t id = PutRouted("1.2.3.77");
  DeadLetter(id, "archive", 0);
  AdminRequest req;
  req.method = "POST";
  req.path = "/api/queue/retry";
  req.authorization = Bearer(kOperator);
  req.body = R"({"dead":true})";
  bool answered = false;
  api_->Handle(req, [&](AdminResponse) { answered = true; });
  api_.reset();
  // Wait for the store's commit to post its completion; running it must do nothing.
  for (int i = 0; i < 100; ++i) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return !posted_.empty(); });
      if (posted_.empty()) continue;
      fn = std::move(posted_.front());
      posted_.pop_front();
    }
    fn();
    break;
  }
  EXPECT_FALSE(answered);
}

}  // namespace
}  // namespace relais::router
