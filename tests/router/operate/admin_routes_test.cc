// AdminApi's route table: which method and role each path takes, and what a
// path that is not in the table, a wrong method or a role too low gets
// (status and Allow header), before any handler runs. The handlers' answers
// are admin_api_test.cc's.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "router/operate/admin_api.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

constexpr char kViewer[] = "viewer-token-0123456789";
constexpr char kOperator[] = "operator-token-0123456789";
constexpr char kAdmin[] = "admin-token-0123456789";

struct Answer {
  int status = 0;
  std::string allow;  // the Allow header of a 405, else ""
};

class AdminRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto st = store::Store::Open(store::testing::TestOptions(dir_.Sub("store")));
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    store_ = std::move(*st);
    std::vector<rules::AdminToken> tokens = {{"nurse", "viewer", Sha256Hex(kViewer)},
                                             {"tech", "operator", Sha256Hex(kOperator)},
                                             {"boss", "admin", Sha256Hex(kAdmin)}};
    AdminApi::Sources src;
    src.store = store_.get();  // no post: retry/purge stop at their body checks or answer 409
    api_ = std::make_unique<AdminApi>(tokens, std::move(src));
  }

  Answer Call(const std::string& method, const std::string& path, const char* token) {
    AdminRequest req;
    req.method = method;
    req.path = path;
    req.authorization = token == nullptr ? "" : std::string("Bearer ") + token;
    req.client = "127.0.0.1:5555";
    Answer a;
    bool answered = false;
    api_->Handle(req, [&](AdminResponse r) {
      answered = true;
      a.status = r.status;
      for (const auto& [name, value] : r.headers) {
        if (name == "Allow") a.allow = value;
      }
    });
    EXPECT_TRUE(answered) << method << " " << path;
    return a;
  }

  store::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<AdminApi> api_;
};

// Each row: a request and its answer for no token, a viewer, an operator and
// an admin token: "STATUS" or, for 405, "405/ALLOW". 409 and 400 are the
// handlers' (no delivery, no rules, an empty body): the route let them run.
struct Row {
  const char* method;
  const char* path;
  const char* answers[4];
};

const Row kMatrix[] = {
    {"GET", "/", {"200", "200", "200", "200"}},
    {"POST", "/", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/index.html", {"200", "200", "200", "200"}},
    {"POST", "/index.html", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/index.html", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/healthz", {"200", "200", "200", "200"}},
    {"POST", "/healthz", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/healthz", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/readyz", {"200", "200", "200", "200"}},
    {"POST", "/readyz", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/readyz", {"405/GET", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/metrics", {"401", "200", "200", "200"}},
    {"POST", "/metrics", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/metrics", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/status", {"401", "200", "200", "200"}},
    {"POST", "/api/status", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/status", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/destinations", {"401", "200", "200", "200"}},
    {"POST", "/api/destinations", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/destinations", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/destinations/", {"401", "404", "404", "404"}},
    {"POST", "/api/destinations/", {"401", "404", "404", "404"}},
    {"DELETE", "/api/destinations/", {"401", "404", "404", "404"}},
    {"GET", "/api/destinations/a", {"401", "404", "404", "404"}},
    {"POST", "/api/destinations/a", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/destinations/a", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/destinations/a/", {"401", "404", "404", "404"}},
    {"POST", "/api/destinations/a/", {"401", "404", "404", "404"}},
    {"DELETE", "/api/destinations/a/", {"401", "404", "404", "404"}},
    {"GET", "/api/destinations/a/pause", {"401", "405/POST", "405/POST", "405/POST"}},
    {"POST", "/api/destinations/a/pause", {"401", "403", "409", "409"}},
    {"DELETE", "/api/destinations/a/pause", {"401", "405/POST", "405/POST", "405/POST"}},
    {"GET", "/api/destinations/a/resume", {"401", "405/POST", "405/POST", "405/POST"}},
    {"POST", "/api/destinations/a/resume", {"401", "403", "409", "409"}},
    {"DELETE", "/api/destinations/a/resume", {"401", "405/POST", "405/POST", "405/POST"}},
    {"GET", "/api/destinations//pause", {"401", "404", "404", "404"}},
    {"POST", "/api/destinations//pause", {"401", "404", "404", "404"}},
    {"DELETE", "/api/destinations//pause", {"401", "404", "404", "404"}},
    {"GET", "/api/destinations/a/b/pause", {"401", "404", "404", "404"}},
    {"POST", "/api/destinations/a/b/pause", {"401", "404", "404", "404"}},
    {"DELETE", "/api/destinations/a/b/pause", {"401", "404", "404", "404"}},
    {"GET", "/api/destinations/a/stop", {"401", "404", "404", "404"}},
    {"POST", "/api/destinations/a/stop", {"401", "404", "404", "404"}},
    {"DELETE", "/api/destinations/a/stop", {"401", "404", "404", "404"}},
    {"GET", "/api/queue", {"401", "200", "200", "200"}},
    {"POST", "/api/queue", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/queue", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/dead", {"401", "200", "200", "200"}},
    {"POST", "/api/dead", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/dead", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/objects", {"401", "404", "404", "404"}},
    {"POST", "/api/objects", {"401", "404", "404", "404"}},
    {"DELETE", "/api/objects", {"401", "404", "404", "404"}},
    {"GET", "/api/objects/", {"401", "404", "404", "404"}},
    {"POST", "/api/objects/", {"401", "404", "404", "404"}},
    {"DELETE", "/api/objects/", {"401", "404", "404", "404"}},
    {"GET", "/api/objects/1.2.3", {"401", "404", "404", "404"}},
    {"POST", "/api/objects/1.2.3", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/objects/1.2.3", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/objects/1.2/3", {"401", "404", "404", "404"}},
    {"POST", "/api/objects/1.2/3", {"401", "404", "404", "404"}},
    {"DELETE", "/api/objects/1.2/3", {"401", "404", "404", "404"}},
    {"GET", "/api/failures", {"401", "200", "200", "200"}},
    {"POST", "/api/failures", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/failures", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/throughput", {"401", "200", "200", "200"}},
    {"POST", "/api/throughput", {"401", "405/GET", "405/GET", "405/GET"}},
    {"DELETE", "/api/throughput", {"401", "405/GET", "405/GET", "405/GET"}},
    {"GET", "/api/queue/retry", {"401", "405/POST", "405/POST", "405/POST"}},
    {"POST", "/api/queue/retry", {"401", "403", "400", "400"}},
    {"DELETE", "/api/queue/retry", {"401", "405/POST", "405/POST", "405/POST"}},
    {"GET", "/api/queue/purge", {"401", "405/POST", "405/POST", "405/POST"}},
    {"POST", "/api/queue/purge", {"401", "403", "403", "400"}},
    {"DELETE", "/api/queue/purge", {"401", "405/POST", "405/POST", "405/POST"}},
    {"GET", "/api/rules/reload", {"401", "405/POST", "405/POST", "405/POST"}},
    {"POST", "/api/rules/reload", {"401", "403", "409", "409"}},
    {"DELETE", "/api/rules/reload", {"401", "405/POST", "405/POST", "405/POST"}},
    {"GET", "/api/nothing", {"401", "404", "404", "404"}},
    {"POST", "/api/nothing", {"401", "404", "404", "404"}},
    {"DELETE", "/api/nothing", {"401", "404", "404", "404"}},
    {"GET", "/healthz/", {"401", "404", "404", "404"}},
    {"POST", "/healthz/", {"401", "404", "404", "404"}},
    {"DELETE", "/healthz/", {"401", "404", "404", "404"}},
    {"GET", "/api/status/x", {"401", "404", "404", "404"}},
    {"POST", "/api/status/x", {"401", "404", "404", "404"}},
    {"DELETE", "/api/status/x", {"401", "404", "404", "404"}},
    {"GET", "//healthz", {"401", "404", "404", "404"}},
    {"POST", "//healthz", {"401", "404", "404", "404"}},
    {"DELETE", "//healthz", {"401", "404", "404", "404"}},
    {"GET", "", {"401", "404", "404", "404"}},
    {"POST", "", {"401", "404", "404", "404"}},
    {"DELETE", "", {"401", "404", "404", "404"}},
};

TEST_F(AdminRoutesTest, EveryPathMethodAndRoleGetsItsStatusAndAllowHeader) {
  const char* tokens[] = {nullptr, kViewer, kOperator, kAdmin};
  for (const Row& row : kMatrix) {
    for (size_t t = 0; t < 4; ++t) {
      Answer a = Call(row.method, row.path, tokens[t]);
      std::string got = std::to_string(a.status) + (a.allow.empty() ? "" : "/" + a.allow);
      EXPECT_EQ(got, row.answers[t]) << row.method << " \"" << row.path << "\" with "
                                     << (tokens[t] == nullptr ? "no token" : tokens[t]);
    }
  }
}

}  // namespace
}  // namespace relais::router
