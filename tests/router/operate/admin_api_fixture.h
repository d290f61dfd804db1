// The AdminApi test fixture shared by admin_api_test.cc and
// admin_study_actions_test.cc: AdminApi without HTTP on a real store and
// audit trail in a temp dir, three tokens (viewer, operator, admin), and a
// Call() that runs what the API posts, as the loop would, until it answers.
#ifndef RELAIS_TESTS_ROUTER_OPERATE_ADMIN_API_FIXTURE_H_
#define RELAIS_TESTS_ROUTER_OPERATE_ADMIN_API_FIXTURE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "base/sha256.h"
#include "router/operate/admin_api.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"
#include "rules/routing.h"
#include "tests/store/store_test_util.h"

namespace relais::router::admintest {

inline constexpr char kViewer[] = "viewer-token-0123456789";
inline constexpr char kOperator[] = "operator-token-0123456789";
inline constexpr char kAdmin[] = "admin-token-0123456789";

inline std::string Bearer(const std::string& t) { return "Bearer " + t; }

class AdminApiFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto st = store::Store::Open(store::testing::TestOptions(dir_.Sub("store")));
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    store_ = std::move(*st);
    auto audit = AuditLog::Open(dir_.Sub("audit.jsonl"));
    ASSERT_TRUE(audit.ok()) << audit.status().ToString();
    audit_ = std::move(*audit);
    MakeApi();
  }

  void MakeApi() {
    std::vector<rules::AdminToken> tokens = {{"nurse", "viewer", Sha256Hex(kViewer)},
                                             {"tech", "operator", Sha256Hex(kOperator)},
                                             {"boss", "admin", Sha256Hex(kAdmin)}};
    AdminApi::Sources src;
    src.store = store_.get();
    src.metrics = &metrics_;
    src.audit = audit_.get();
    src.post = [this](std::function<void()> fn) {
      std::lock_guard<std::mutex> lock(mu_);
      posted_.push_back(std::move(fn));
      cv_.notify_all();
    };
    src.store_path = dir_.Sub("store");
    src.ae_title = "RELAIS";
    src.listener = "127.0.0.1:11112";
    src.started_unix_ms = 1700000000000;
    src.rules = [this] { return rules_; };
    api_ = std::make_unique<AdminApi>(tokens, std::move(src));
  }

  // Handles `req` and waits (running posted functions, as the loop would)
  // until it is answered.
  AdminResponse Call(const std::string& method, const std::string& path, const std::string& token = "",
                     const std::string& body = "", const std::string& query = "") {
    AdminRequest req;
    req.method = method;
    req.path = path;
    req.query = query;
    req.authorization = token.empty() ? "" : Bearer(token);
    req.client = "127.0.0.1:5555";
    req.body = body;
    bool answered = false;
    AdminResponse out;
    api_->Handle(req, [&](AdminResponse r) {
      EXPECT_FALSE(answered) << "answered twice";
      answered = true;
      out = std::move(r);
    });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!answered && std::chrono::steady_clock::now() < deadline) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return !posted_.empty(); });
        if (posted_.empty()) continue;
        fn = std::move(posted_.front());
        posted_.pop_front();
      }
      fn();
    }
    EXPECT_TRUE(answered) << method << " " << path << " never answered";
    return out;
  }

  nlohmann::json Body(const AdminResponse& r) {
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }

  void DeadLetter(uint64_t id, const std::string& dest, int32_t prio) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDeadLetter;
    u.destination = dest;
    u.priority = prio;
    u.object_id = id;
    u.attempts = 3;
    u.status = 0xA900;
    u.error = "refused";
    ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  }

  store::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<AuditLog> audit_;
  Metrics metrics_;
  std::unique_ptr<AdminApi> api_;
  std::shared_ptr<const rules::RuleSet> rules_;  // what Sources::rules answers (null: no rules)
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> posted_;
};

}  // namespace relais::router::admintest

#endif  // RELAIS_TESTS_ROUTER_OPERATE_ADMIN_API_FIXTURE_H_
