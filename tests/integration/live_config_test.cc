// "Check what will run" (issue 14), end to end with `relais serve`:
// - a broken rule file dropped in while serving raises the
//   "rules-reload-failed" alert (a real alerts command), makes /readyz say
//   "degraded" (still 200) and /api/status carry the error, and makes
//   `relais config check` exit 1 naming file:line:column; the fixed file
//   clears all of it;
// - SIGHUP re-reads relais.toml: a new admin token works without a restart,
//   new retentions apply at once (the store sweeps by them),
//   a changed DICOM port is logged as needing a restart, and a relais.toml
//   that does not parse keeps everything running and raises
//   "config-reload-failed" until it is fixed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

namespace relais::itest {
namespace {

using nlohmann::json;

constexpr char kToken[] = "live-admin-3c9d1f7a";
constexpr char kNewToken[] = "live-night-8e2b4d60";

void SleepMs(int ms) { ::usleep(static_cast<useconds_t>(ms) * 1000); }

std::string Sha256(const std::string& s, const std::string& dir) {
  WriteFile(dir + "/tok", s);
  RunResult r = RunCommand({"sha256sum", dir + "/tok"}, 30);
  return r.output.substr(0, 64);
}

struct Http {
  int status = 0;
  std::string body;
};

Http Get(uint16_t port, const std::string& path, const std::string& token, const std::string& dir) {
  std::vector<std::string> argv = {"curl", "-s", "-m", "30", "-o", dir + "/body", "-w", "%{http_code}"};
  if (!token.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + path);
  WriteFile(dir + "/body", "");
  RunResult r = RunCommand(argv, 60);
  return {std::atoi(r.output.c_str()), ReadFile(dir + "/body")};
}

// The notices the alerts command was given, one JSON per line.
std::vector<json> Notices(const std::string& path) {
  std::istringstream in(ReadFile(path));
  std::vector<json> out;
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty()) out.push_back(json::parse(l, nullptr, false));
  }
  return out;
}

const json* FindNotice(const std::vector<json>& notices, const std::string& alert, const std::string& state) {
  for (const json& j : notices) {
    if (j.is_object() && j.value("alert", "") == alert && j.value("state", "") == state) return &j;
  }
  return nullptr;
}

constexpr char kGoodRules[] =
    "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = 1\n"
    "[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n";
// Line 7: the array is never closed.
constexpr char kBrokenRules[] =
    "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = 1\n"
    "[[rule]]\nname = \"all\"\nforward = [\"archive\"\n";

class LiveConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir((tmp_ / "http").c_str(), 0755), 0);
    rules_ = tmp_ / "rules.toml";
    WriteFile(rules_, kGoodRules);
    notices_ = tmp_ / "notices.txt";
    const std::string script = tmp_ / "alert.sh";
    WriteFile(script, "#!/bin/sh\n{ cat; echo; } >> '" + notices_ + "'\n");
    ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
    admin_port_ = FreePort();
    RelaisOptions options;
    options.extra = "\n[rules]\npath = \"" + rules_ + "\"\n\n[alerts]\ncommand = \"" + script +
                    "\"\nrepeat = 0\n\n[admin]\nhost = \"127.0.0.1\"\nport = " + std::to_string(admin_port_) +
                    "\n\n[[admin.token]]\nname = \"boss\"\nrole = \"admin\"\nsha256 = \"" +
                    Sha256(kToken, tmp_.path()) + "\"\n";
    relais_ = std::make_unique<RelaisProcess>(tmp_.path(), options);
    ASSERT_TRUE(relais_->Start()) << relais_->Log();
    ASSERT_TRUE(WaitForPort(admin_port_, 10000)) << relais_->Log();
  }

  void TearDown() override {
    if (relais_ && relais_->running()) {
      EXPECT_EQ(relais_->Terminate(), 0) << relais_->Log();
    }
  }

  Http Call(const std::string& path, const std::string& token = kToken) {
    return Get(admin_port_, path, token, tmp_ / "http");
  }

  const json WaitNotice(const std::string& alert, const std::string& state) {
    const int64_t deadline = NowMs() + 30000;
    while (NowMs() < deadline) {
      std::vector<json> all = Notices(notices_);
      if (const json* j = FindNotice(all, alert, state)) return *j;
      SleepMs(200);
    }
    ADD_FAILURE() << "no " << alert << " " << state << " notice\n" << relais_->Log();
    return json();
  }

  TempDir tmp_;
  std::string rules_;
  std::string notices_;
  uint16_t admin_port_ = 0;
  std::unique_ptr<RelaisProcess> relais_;
};

TEST_F(LiveConfigTest, BrokenRuleFileDegradesAndAlertsUntilFixed) {
  Http ready = Call("/readyz", "");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.body.find("degraded"), std::string::npos) << ready.body;

  WriteFile(rules_, kBrokenRules);  // the watcher reloads it
  json raised = WaitNotice("rules-reload-failed", "raised");
  EXPECT_EQ(raised.value("subject", ""), "rules") << raised.dump();
  const std::string message = raised.value("message", "");
  EXPECT_TRUE(std::regex_search(message, std::regex("rules\\.toml:\\d+:\\d+"))) << message;
  EXPECT_NE(message.find("running rules loaded at "), std::string::npos) << message;

  // Still routing: 200, and the body says degraded and why.
  ready = Call("/readyz", "");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_NE(ready.body.find("degraded: running rules from "), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("file on disk differs: " + rules_ + ":"), std::string::npos) << ready.body;
  json status = json::parse(Call("/api/status").body, nullptr, false);
  ASSERT_TRUE(status.is_object());
  EXPECT_NE(status["rules"].value("reload_error", "").find(rules_ + ":"), std::string::npos) << status.dump();

  // What ExecStartPre runs would refuse to start a box with this file.
  RunResult check = RunCommand({RelaisBinary(), "config", "check", relais_->config_path()}, 60);
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_TRUE(std::regex_search(check.output, std::regex("rules\\.toml:\\d+:\\d+"))) << check.output;

  WriteFile(rules_, kGoodRules);
  WaitNotice("rules-reload-failed", "resolved");
  ready = Call("/readyz", "");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.body.find("degraded"), std::string::npos) << ready.body;
  status = json::parse(Call("/api/status").body, nullptr, false);
  EXPECT_EQ(status["rules"].value("reload_error", "?"), "") << status.dump();
  check = RunCommand({RelaisBinary(), "config", "check", relais_->config_path()}, 60);
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(LiveConfigTest, SighupAppliesANewTokenAndNamesWhatNeedsARestart) {
  EXPECT_EQ(Call("/api/status", kNewToken).status, 401);
  std::string config = ReadFile(relais_->config_path());
  const std::string port_line = "port = " + std::to_string(relais_->port()) + "\n";
  ASSERT_NE(config.find(port_line), std::string::npos) << config;
  const std::string good = config;
  config.replace(config.find(port_line), port_line.size(), "port = " + std::to_string(FreePort()) + "\n");
  config +=
      "\n[[admin.token]]\nname = \"night\"\nrole = \"viewer\"\nsha256 = \"" + Sha256(kNewToken, tmp_.path()) + "\"\n";
  WriteFile(relais_->config_path(), config);
  ASSERT_EQ(::kill(relais_->pid(), SIGHUP), 0);
  int64_t deadline = NowMs() + 20000;
  while (Call("/api/status", kNewToken).status != 200) {
    ASSERT_LT(NowMs(), deadline) << relais_->Log();
    SleepMs(200);
  }
  EXPECT_NE(relais_->Log().find("relais.toml changed [listener] port: restart relais to apply"), std::string::npos)
      << relais_->Log();
  // Still listening where it was.
  EXPECT_TRUE(WaitForPort(relais_->port(), 2000));

  // A relais.toml that does not parse changes nothing and raises an alert.
  WriteFile(relais_->config_path(), config + "\n[[[\n");
  ASSERT_EQ(::kill(relais_->pid(), SIGHUP), 0);
  json raised = WaitNotice("config-reload-failed", "raised");
  EXPECT_TRUE(std::regex_search(raised.value("message", ""), std::regex("relais\\.toml:\\d+:\\d+"))) << raised.dump();
  EXPECT_EQ(Call("/api/status", kNewToken).status, 200);
  EXPECT_EQ(Call("/api/status").status, 200);

  WriteFile(relais_->config_path(), good);
  ASSERT_EQ(::kill(relais_->pid(), SIGHUP), 0);
  WaitNotice("config-reload-failed", "resolved");
  EXPECT_EQ(Call("/api/status", kNewToken).status, 401);
}

// [delivery] unrouted_retention changed from the default (7 days) to 0 and
// SIGHUP: the unrouted objects go at once, without a restart, and the log
// says what changed (and no "restart relais to apply" for it).
TEST(LiveRetentionTest, SighupWithAShorterRetentionRemovesByTheNewOne) {
  TempDir tmp;
  RelaisOptions options;
  options.extra = "\n[delivery]\nunrouted_retention = \"7d\"\n";
  RelaisProcess relais(tmp.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string ct = CorpusDir() + "/pydicom__77654033_CT2_17106.dcm";
  RunResult sent =
      RunCommand({"storescu", "-v", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), ct}, 120);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  ASSERT_EQ(relais.StoreList().size(), 1u) << relais.Log();

  std::string config = ReadFile(relais.config_path());
  const std::string line = "unrouted_retention = \"7d\"";
  ASSERT_NE(config.find(line), std::string::npos) << config;
  config.replace(config.find(line), line.size(), "unrouted_retention = \"0s\"");
  WriteFile(relais.config_path(), config);
  ASSERT_EQ(::kill(relais.pid(), SIGHUP), 0);
  const int64_t deadline = NowMs() + 30000;
  while (!relais.StoreList().empty()) {
    ASSERT_LT(NowMs(), deadline) << "the unrouted object is still stored\n" << relais.Log();
    SleepMs(200);
  }
  const std::string log = relais.Log();
  EXPECT_NE(log.find("event=config-reloaded part=retentions changed=\"[delivery] unrouted_retention 604800s -> 0s\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event=expired class=unrouted objects=1 retention_ms=0"), std::string::npos) << log;
  EXPECT_EQ(log.find("restart relais to apply"), std::string::npos) << log;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
