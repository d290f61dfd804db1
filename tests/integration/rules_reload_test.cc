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
  return "[[destination]]\nname = \"" + to +
         "\"\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\nport = 11911\n"
         "[[rule]]\nname = \"all-to-" +
         to + "\"\nforward = [\"" + to + "\"]\n";
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
  EXPECT_NE(listed.begin()->second.find("\"destinations\":[\"second\"]"), std::string::npos) << listed.begin()->second;
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

// Rule i of a heavy file: one regex of ~60,000 RE2 instructions (~480 KB,
// tens of milliseconds to compile), distinct per rule, matching nothing the
// corpus file holds.
std::string HeavyRules(const std::string& to, int count) {
  std::string text =
      "[[destination]]\nname = \"" + to + "\"\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\nport = 11911\n";
  for (int i = 0; i < count; ++i) {
    text += "[[rule]]\nname = \"heavy-" + std::to_string(i) + "\"\nforward = [\"" + to +
            "\"]\nmatch = { StudyDescription = { regex = \"^\\\\pL{50}" + std::to_string(i) + "$\" } }\n";
  }
  return text + "[[rule]]\nname = \"all-to-" + to + "\"\nforward = [\"" + to + "\"]\n";
}

std::string DestinationsOfOneCt(const RelaisProcess& relais) {
  RunResult r = RunCommand({"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()),
                            CorpusDir() + "/pydicom__CT_small.dcm"});
  if (r.exit_code != 0) return "storescu failed: " + r.output;
  auto listed = relais.StoreList();
  if (listed.size() != 1) return "store holds " + std::to_string(listed.size()) + " objects";
  return listed.begin()->second;
}

void Replace(const std::string& path, const std::string& text) {
  WriteFile(path + ".tmp", text);
  ASSERT_EQ(std::rename((path + ".tmp").c_str(), path.c_str()), 0);
}

// Regression: compiling the rules ran on the loop thread, so while 1,000
// heavy regexes compiled (20 s) no association was answered. Now the loop
// answers while the reload compiles on a worker thread. No clock is read:
// an echo that succeeds while the log does not yet say the reload ended
// happened during it.
TEST(RulesReloadTest, EchoesAreAnsweredWhileAHeavyReloadCompiles) {
  TempDir dir;
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, RuleTo("first"));
  RelaisOptions options;
  // No time budget to hit on a slow or busy machine; the memory budget
  // (128 MiB) takes 150 rules of ~480 KB.
  options.extra = "\n[rules]\npath = \"" + rules + "\"\nmax_compile_time = \"1h\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  Replace(rules, HeavyRules("second", 150));
  ASSERT_TRUE(WaitFor(relais, "event=rules-reload-started", 1, 30000)) << relais.Log();
  int answered_during = 0;
  while (answered_during == 0 && Count(relais.Log(), "event=rules-reloaded") == 0) {
    RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())}, 600);
    ASSERT_EQ(echo.exit_code, 0) << echo.output;
    if (Count(relais.Log(), "event=rules-reloaded") == 0) ++answered_during;
  }
  EXPECT_EQ(answered_during, 1) << "no echo was answered while the reload compiled\n" << relais.Log();

  ASSERT_TRUE(WaitFor(relais, "event=rules-reloaded", 1, 600000)) << relais.Log();
  EXPECT_EQ(Count(relais.Log(), "event=rules-reload-failed"), 0) << relais.Log();
  EXPECT_NE(relais.Log().find("rules=151 "), std::string::npos) << relais.Log();
  EXPECT_NE(DestinationsOfOneCt(relais).find("\"destinations\":[\"second\"]"), std::string::npos) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// A reload past the compile budget fails at the rule that crossed it, and
// the old rules stay in force. 1 MiB takes two of the heavy regexes.
TEST(RulesReloadTest, ReloadOverTheCompileBudgetKeepsTheOldRules) {
  TempDir dir;
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, RuleTo("first"));
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\nmax_regex_memory = \"1MiB\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  Replace(rules, HeavyRules("second", 5));
  ASSERT_TRUE(WaitFor(relais, "event=rules-reload-failed", 1, 60000)) << relais.Log();
  // The third heavy rule starts on line 6 + 4 * 2.
  ASSERT_TRUE(WaitFor(relais, rules + ":14:1: the regexes of the rules up to this one need about", 1, 10000))
      << relais.Log();
  EXPECT_EQ(Count(relais.Log(), "event=rules-reloaded"), 0) << relais.Log();
  EXPECT_NE(DestinationsOfOneCt(relais).find("\"destinations\":[\"first\"]"), std::string::npos) << relais.Log();
  EXPECT_TRUE(relais.running());
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// Regression: a dotted key of 40,000 parts (80 KB) crashed `relais rules
// check`, `relais config check` (exit 139) and `relais serve` on reload
// (stack overflow in toml++). Each now says where, and serve keeps going.
TEST(RulesReloadTest, DeeplyNestedFilesAreRefusedEverywhere) {
  TempDir dir;
  std::string key = "x";
  for (int i = 0; i < 40000; ++i) key += ".a";
  const std::string deep = dir / "deep.toml";
  WriteFile(deep, key + " = 1\n");
  RunResult check = RunCommand({RelaisBinary(), "rules", "check", deep}, 60);
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find(deep + ":1:129: nesting deeper than 64 levels"), std::string::npos) << check.output;

  const std::string config = dir / "relais-deep.toml";
  WriteFile(config, "[listener]\nae_title = \"RELAIS\"\n[store]\npath = \"store\"\n" + key + " = 1\n");
  check = RunCommand({RelaisBinary(), "config", "check", config}, 60);
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find(config + ":5:129: nesting deeper than 64 levels"), std::string::npos) << check.output;

  const std::string rules = dir / "rules.toml";
  WriteFile(rules, RuleTo("first"));
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  Replace(rules, key + " = 1\n");
  ASSERT_TRUE(WaitFor(relais, rules + ":1:129: nesting deeper than 64 levels", 1, 30000)) << relais.Log();
  EXPECT_TRUE(relais.running());
  EXPECT_NE(DestinationsOfOneCt(relais).find("\"destinations\":[\"first\"]"), std::string::npos) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
