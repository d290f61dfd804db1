// Reloading the rules off the loop thread (router/receive/server.h): requests made
// while a reload runs are coalesced into one more, a failure (including one
// over the compile budget) keeps the old rules, and a shutdown drops a
// reload still running. A Server that does not listen, on its own loop.
#include <uv.h>

#include <fstream>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "router/receive/server.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using store::testing::TempDir;

std::string RulesTo(const std::string& to, const std::string& match = "") {
  return "[[destination]]\nname = \"" + to +
         "\"\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\n"
         "[[rule]]\nname = \"to-" +
         to + "\"\nforward = [\"" + to + "\"]\n" + match;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

class ServerRulesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    if (server_) server_->Shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    server_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void Start(ScpSettings settings = {}) {
    Write(path_, RulesTo("first"));
    settings.rules_path = path_;
    server_ = std::make_unique<Server>(&loop_, nullptr, settings);
    Status s = server_->InitRules();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Runs the loop until `done` reloads have finished, one way or the other.
  void RunUntilFinished(uint64_t done) {
    while (server_->rule_reloads() + server_->rule_reload_failures() < done) uv_run(&loop_, UV_RUN_ONCE);
  }
  std::string InForce() const { return server_->rules()->destinations().at(0).name; }

  TempDir dir_;
  const std::string path_ = dir_.Sub("rules.toml");
  uv_loop_t loop_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerRulesTest, ReloadsAskedWhileOneRunsAreCoalescedIntoOneMore) {
  Start();
  Write(path_, RulesTo("second"));
  // The loop does not run in between: the first is still on the pool (or
  // not yet reported back) when the others come.
  server_->RequestRulesReload("test 1");
  Write(path_, RulesTo("third"));
  server_->RequestRulesReload("test 2");
  server_->RequestRulesReload("test 3");
  RunUntilFinished(2);
  EXPECT_EQ(server_->rule_reloads(), 2u);
  EXPECT_EQ(server_->rule_reload_failures(), 0u);
  EXPECT_EQ(InForce(), "third");
}

TEST_F(ServerRulesTest, FailedReloadKeepsTheOldRules) {
  Start();
  Write(path_, RulesTo("second", "[rule.match]\nModalty = \"CT\"\n"));
  server_->RequestRulesReload("test");
  RunUntilFinished(1);
  EXPECT_EQ(server_->rule_reload_failures(), 1u);
  EXPECT_EQ(InForce(), "first");
}

// 1 MiB takes two \pL{50} (~480 KB each), not three.
TEST_F(ServerRulesTest, ReloadOverTheCompileBudgetKeepsTheOldRules) {
  ScpSettings settings;
  settings.rules_budget.max_regex_memory = 1 << 20;
  Start(settings);
  std::string heavy = RulesTo("second", "match = { StudyDescription = { regex = \"\\\\pL{50}\" } }\n");
  for (int i = 0; i < 3; ++i) {
    heavy += "[[rule]]\nname = \"heavy-" + std::to_string(i) +
             "\"\nforward = [\"second\"]\nmatch = { StudyDescription = { regex = \"\\\\pL{50}\" } }\n";
  }
  Write(path_, heavy);
  server_->RequestRulesReload("test");
  RunUntilFinished(1);
  EXPECT_EQ(server_->rule_reload_failures(), 1u);
  EXPECT_EQ(InForce(), "first");
  // The synchronous reload (the admin API) obeys the same budget.
  Status s = server_->ReloadRules("synchronous");
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("rules.toml:13:1: the regexes of the rules up to this one need about"), std::string::npos)
      << s.message();
}

// The first load (synchronous, before anything is served) has the same
// budget: serve does not start on such a file.
TEST_F(ServerRulesTest, StartupLoadObeysTheCompileBudget) {
  std::string heavy = RulesTo("first");
  for (int i = 0; i < 3; ++i) {
    heavy += "[[rule]]\nname = \"heavy-" + std::to_string(i) +
             "\"\nforward = [\"first\"]\nmatch = { StudyDescription = { regex = \"\\\\pL{50}\" } }\n";
  }
  Write(path_, heavy);
  ScpSettings settings;
  settings.rules_path = path_;
  settings.rules_budget.max_regex_memory = 1 << 20;
  server_ = std::make_unique<Server>(&loop_, nullptr, settings);
  Status s = server_->InitRules();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("rules.toml:16:1: the regexes of the rules up to this one need about"), std::string::npos)
      << s.message();
  EXPECT_EQ(server_->rules(), nullptr);
}

TEST_F(ServerRulesTest, ShutdownDropsAReloadStillRunning) {
  Start();
  Write(path_, RulesTo("second"));
  server_->RequestRulesReload("test");
  server_->Shutdown();
  uv_run(&loop_, UV_RUN_DEFAULT);  // returns once the reload is reported back and dropped
  EXPECT_EQ(server_->rule_reloads(), 0u);
  EXPECT_EQ(InForce(), "first");
}

}  // namespace
}  // namespace relais::router
