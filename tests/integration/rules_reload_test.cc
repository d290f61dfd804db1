// Hot reload corner cases: a rule file behind a swapped symlink (how
// Kubernetes ConfigMap volumes update), and a busy neighbour file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "harness.h"

namespace relais::itest {
namespace {

std::string RuleTo(const std::string& to) {
  return "[[destination]]\nname = \"" + to + "\"\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\nport = 11911\n"
         "[[rule]]\nname = \"all-to-" + to + "\"\nforward = [\"" + to + "\"]\n";
}

int Count(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

bool WaitFor(const RelaisProcess& relais, const std::string& needle, int count, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    if (Count(relais.Log(), needle) >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(RulesReloadTest, SymlinkSwapLikeAConfigMapReloads) {
  TempDir dir;
  const std::string cm = dir / "cm";
  ASSERT_EQ(RunCommand({"mkdir", "-p", cm + "/v1", cm + "/v2"}).exit_code, 0);
  WriteFile(cm + "/v1/rules.toml", RuleTo("first"));
  WriteFile(cm + "/v2/rules.toml", RuleTo("second"));
  ASSERT_EQ(symlink("v1", (cm + "/..data").c_str()), 0);
  ASSERT_EQ(symlink("..data/rules.toml", (cm + "/rules.toml").c_str()), 0);
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + cm + "/rules.toml\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // An unrelated file in the directory changes nothing.
  WriteFile(cm + "/unrelated.txt", "x");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(Count(relais.Log(), "event=rules-reloaded"), 0) << relais.Log();

  // Swap the ..data link atomically, as the kubelet does.
  ASSERT_EQ(symlink("v2", (cm + "/..data_tmp").c_str()), 0);
  ASSERT_EQ(std::rename((cm + "/..data_tmp").c_str(), (cm + "/..data").c_str()), 0);
  ASSERT_TRUE(WaitFor(relais, "event=rules-reloaded", 1, 10000)) << relais.Log();

  RunResult r = RunCommand({"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()),
                            CorpusDir() + "/pydicom__CT_small.dcm"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto listed = relais.StoreList();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_NE(listed.begin()->second.find("\"destinations\":[\"second\"]"), std::string::npos)
      << listed.begin()->second;
}

TEST(RulesReloadTest, BusyNeighbourFileDoesNotPostponeTheReload) {
  TempDir dir;
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, RuleTo("first"));
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(dir.path(), options);  // its log is written next to the rules
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::string tmp = rules + ".tmp";
  WriteFile(tmp, RuleTo("second"));
  ASSERT_EQ(std::rename(tmp.c_str(), rules.c_str()), 0);
  // Keep a neighbour file busy every 50 ms for 3 s: the reload still comes.
  bool reloaded = false;
  for (int i = 0; i < 60 && !reloaded; ++i) {
    WriteFile(dir / "busy.log", std::to_string(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    reloaded = Count(relais.Log(), "event=rules-reloaded") > 0;
  }
  EXPECT_TRUE(reloaded) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
