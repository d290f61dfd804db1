// Routing rules end to end: the decision `relais serve` stores with each
// object (by Modality and calling AE), hot swaps of the rule file while
// storescu is sending, broken rule files (at reload and at startup), and the
// `relais rules check` / `relais rules test` commands.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace relais::itest {
namespace {

using ::testing::HasSubstr;

// Two destinations on 127.0.0.1 (nothing is delivered yet, so the ports
// need not listen). Lines 1-10.
constexpr char kTwoDestinations[] =
    "[[destination]]\n"
    "name = \"imaging\"\n"
    "ae_title = \"IMAGING\"\n"
    "host = \"127.0.0.1\"\n"
    "port = 11901\n"
    "[[destination]]\n"
    "name = \"second\"\n"
    "ae_title = \"SECOND\"\n"
    "host = \"127.0.0.1\"\n"
    "port = 11902\n";

constexpr char kModalityAndAeRules[] =
    "[[rule]]\n"
    "name = \"ct-mr\"\n"
    "forward = [\"imaging\"]\n"
    "[rule.match]\n"
    "Modality = [\"CT\", \"MR\"]\n"
    "\n"
    "[[rule]]\n"
    "name = \"from-modality2\"\n"
    "forward = [\"second\"]\n"
    "[rule.match]\n"
    "calling_ae = \"MODALITY2\"\n"
    "\n"
    "[settings]\n"
    "unmatched = \"keep\"\n";

// Rule set "CT -> <to>" over destinations a and b (lines 1-10 define them;
// the rule's forward is on line 13).
std::string CtRuleTo(const std::string& to) {
  return "[[destination]]\n"
         "name = \"a\"\n"
         "ae_title = \"DEST_A\"\n"
         "host = \"127.0.0.1\"\n"
         "port = 11911\n"
         "[[destination]]\n"
         "name = \"b\"\n"
         "ae_title = \"DEST_B\"\n"
         "host = \"127.0.0.1\"\n"
         "port = 11912\n"
         "[[rule]]\n"
         "name = \"ct-to-" +
         to +
         "\"\n"
         "forward = [\"" +
         to +
         "\"]\n"
         "[rule.match]\n"
         "Modality = \"CT\"\n"
         "[settings]\n"
         "unmatched = \"keep\"\n";
}

std::string RulesConfig(const std::string& rules_path) { return "\n[rules]\npath = \"" + rules_path + "\"\n"; }

// Replaces `path` atomically: write a sibling temp file, then rename over.
void ReplaceFile(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  WriteFile(tmp, text);
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0) << path;
}

// Waits until `needle` occurs more than `already` times in the log.
bool WaitForLogCount(const RelaisProcess& relais, const std::string& needle, int already, int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    if (CountOccurrences(relais.Log(), needle) > already) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Lines of `text` that contain `needle`.
std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

std::string ReadTag(const std::string& path, const DcmTagKey& tag) {
  DcmFileFormat ff;
  if (ff.loadFile(path.c_str()).bad()) return "";
  OFString v;
  if (ff.getDataset()->findAndGetOFString(tag, v).bad()) return "";
  return v.c_str();
}

// storescu -v of `files` with calling AE `aet`; the outcome per file.
std::map<std::string, StorescuOutcome> Send(const RelaisProcess& relais, const std::string& aet,
                                            const std::vector<std::string>& files, RunResult* result = nullptr) {
  std::vector<std::string> argv = {
      "storescu", "-v", "-nh", "-aet", aet, "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 300);
  if (result != nullptr) *result = r;
  return ParseStorescuOutcomes(r.output);
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The objects the store lists, by SOP Instance UID: routing and destinations.
struct Listed {
  std::string routing;
  std::vector<std::string> matched_rules;
  std::vector<std::string> destinations;  // sorted
};

std::map<std::string, Listed> ListRouting(const RelaisProcess& relais) {
  std::map<std::string, Listed> out;
  for (const auto& [uid, json] : relais.StoreList()) {
    Listed& l = out[uid];
    l.routing = JsonField(json, "routing");
    l.matched_rules = JsonArrayField(json, "matched_rules");
    l.destinations = Sorted(JsonArrayField(json, "destinations"));
  }
  return out;
}

std::string Describe(const std::vector<std::string>& v) {
  std::string out = "[";
  for (const std::string& s : v) out += (out.size() > 1 ? "," : "") + s;
  return out + "]";
}

TEST(RulesHarnessTest, JsonArrayFieldParsesStringsAndObjects) {
  const std::string j = R"({"a":"x","matched_rules":["r1","r\"2"],"destinations":[],)"
                        R"("objs":[{"name":"telerad","edits":"set A = '[x]'"},{"name":"archive"}],"n":[1, 2]})";
  EXPECT_THAT(JsonArrayField(j, "matched_rules"), ::testing::ElementsAre("r1", "r\"2"));
  EXPECT_TRUE(JsonArrayField(j, "destinations").empty());
  std::vector<std::string> objs = JsonArrayField(j, "objs");
  ASSERT_EQ(objs.size(), 2u);
  EXPECT_EQ(JsonField(objs[0], "name"), "telerad");
  EXPECT_EQ(JsonField(objs[1], "name"), "archive");
  EXPECT_THAT(JsonArrayField(j, "n"), ::testing::ElementsAre("1", "2"));
  EXPECT_TRUE(JsonArrayField(j, "a").empty());  // not an array
  EXPECT_TRUE(JsonArrayField(j, "missing").empty());
  EXPECT_TRUE(JsonArrayField(R"({"k":["unterminated)", "k").empty());
}

// 1. Each object's stored decision follows its Modality and calling AE.
TEST(RulesTest, RoutesByModalityAndCallingAe) {
  TempDir dir;
  const std::string rules_path = dir / "rules.toml";
  WriteFile(rules_path, std::string(kTwoDestinations) + kModalityAndAeRules);
  RelaisOptions options;
  options.extra = RulesConfig(rules_path);
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // Various modalities (CT, MR, NM, US, CR, OT, SR, RTPLAN, RTDOSE, ECG, and a
  // CT image without a Modality element) with distinct SOP Instance UIDs, all
  // of which storescu sends with its default (uncompressed) proposals.
  const std::vector<std::string> from_storescu = {
      "pydicom__CT_small.dcm",
      "pydicom__MR_small.dcm",
      "fodicom__GH487.dcm",
      "pydicomdata__MR-SIEMENS-DICOM-WithOverlays.dcm",
      "pydicom__rtplan.dcm",
      "pydicom__test-SR.dcm",
      "pydicom__waveform_ecg.dcm",
      "pydicomdata__SC_rgb.dcm",
      "dcm4che__NM-MONO2-16-13x-heart.dcm",
  };
  const std::vector<std::string> from_modality2 = {
      "pydicom__77654033_CT2_17106.dcm", "dcm4che__MR01.dcm",     "pydicomdata__gdcm-US-ALOKA-16_big.dcm",
      "pydicom__chrJapMulti.dcm",        "dcm4che__ovly_p01.dcm", "pydicom__rtdose.dcm",
  };

  struct Expected {
    std::string file;
    std::string routing;
    std::vector<std::string> rules;
    std::vector<std::string> destinations;  // sorted
  };
  std::map<std::string, Expected> expected;  // by SOP Instance UID
  std::set<std::string> modalities;
  auto expect = [&](const std::string& path, const std::string& aet) {
    std::string uid = ReadTag(path, DCM_SOPInstanceUID);
    std::string modality = ReadTag(path, DCM_Modality);
    ASSERT_FALSE(uid.empty()) << path;
    ASSERT_EQ(expected.count(uid), 0u) << "two test files share SOP Instance UID " << uid;
    modalities.insert(modality);
    Expected e;
    e.file = path;
    if (modality == "CT" || modality == "MR") {
      e.rules.push_back("ct-mr");
      e.destinations.push_back("imaging");
    }
    if (aet == "MODALITY2") {
      e.rules.push_back("from-modality2");
      e.destinations.push_back("second");
    }
    e.routing = e.rules.empty() ? "unrouted" : "routed";
    e.destinations = Sorted(e.destinations);
    expected[uid] = e;
  };
  std::vector<std::string> paths1, paths2;
  for (const std::string& f : from_storescu) paths1.push_back(CorpusDir() + "/" + f);
  for (const std::string& f : from_modality2) paths2.push_back(CorpusDir() + "/" + f);
  for (const std::string& p : paths1) expect(p, "STORESCU");
  for (const std::string& p : paths2) expect(p, "MODALITY2");
  ASSERT_GE(modalities.size(), 8u);
  ASSERT_TRUE(modalities.count("CT") && modalities.count("MR"));

  for (const auto& [aet, paths] :
       {std::pair{std::string("STORESCU"), paths1}, std::pair{std::string("MODALITY2"), paths2}}) {
    RunResult r;
    std::map<std::string, StorescuOutcome> outcomes = Send(relais, aet, paths, &r);
    for (const std::string& p : paths) {
      EXPECT_TRUE(outcomes[p].acknowledged) << p << " not acknowledged:\n" << r.output;
    }
  }

  std::map<std::string, Listed> listed = ListRouting(relais);
  EXPECT_EQ(listed.size(), expected.size());
  int routed = 0, unrouted = 0, both = 0;
  for (const auto& [uid, e] : expected) {
    auto it = listed.find(uid);
    ASSERT_NE(it, listed.end()) << e.file << " (" << uid << ") not listed";
    const Listed& l = it->second;
    EXPECT_EQ(l.routing, e.routing) << e.file;
    EXPECT_EQ(l.matched_rules, e.rules) << e.file;
    EXPECT_EQ(l.destinations, e.destinations)
        << e.file << ": listed " << Describe(l.destinations) << ", expected " << Describe(e.destinations);
    routed += e.routing == "routed";
    unrouted += e.routing == "unrouted";
    both += e.destinations.size() == 2;
  }
  // The choice of files covers every case.
  EXPECT_GT(unrouted, 0);
  EXPECT_GT(both, 0);
  EXPECT_GT(routed - both, 0);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// 2. Swapping rule set A (CT -> a) for B (CT -> b) while storescu sends
// association after association: every object goes to exactly one of a or
// b, each association keeps the rules it was accepted with, and
// associations started after the reload use B.
TEST(RulesTest, HotSwapWhileSending) {
  TempDir dir;
  const std::string rules_path = dir / "rules.toml";
  WriteFile(rules_path, CtRuleTo("a"));
  RelaisOptions options;
  options.extra = RulesConfig(rules_path);
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  constexpr int kRuns = 6;
  constexpr int kPerRun = 50;
  const std::string source = CorpusDir() + "/pydicom__CT_small.dcm";
  ASSERT_EQ(ReadTag(source, DCM_Modality), "CT");
  std::vector<std::vector<std::string>> files(kRuns);
  std::vector<std::vector<std::string>> uids(kRuns);
  for (int i = 0; i < kRuns; ++i) {
    std::string sub = dir / ("run" + std::to_string(i));
    ASSERT_EQ(RunCommand({"mkdir", "-p", sub}).exit_code, 0);
    files[i] = MakeCopiesWithNewUids(source, sub, kPerRun, &uids[i]);
    ASSERT_EQ(files[i].size(), static_cast<size_t>(kPerRun));
  }

  std::vector<int64_t> started(kRuns, 0), finished(kRuns, 0);
  std::vector<RunResult> results(kRuns);
  std::atomic<int> runs_started{0};
  std::atomic<bool> reload_logged{false};
  std::thread sender([&] {
    for (int i = 0; i < kRuns; ++i) {
      // The last runs wait for the reload (at most 20 s), so that some
      // associations begin after it however slow the machine is: the swap
      // itself still lands while the third one is under way.
      for (int w = 0; i == kRuns - 2 && !reload_logged.load() && w < 10000; ++w) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      started[i] = NowMs();
      runs_started.store(i + 1);
      Send(relais, "STORESCU", files[i], &results[i]);
      finished[i] = NowMs();
    }
  });
  // Swap while the third association is under way.
  while (runs_started.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const int64_t swap_at = NowMs();
  ReplaceFile(rules_path, CtRuleTo("b"));
  bool reloaded = WaitForLogCount(relais, "event=rules-reloaded", 0, 15000);
  const int64_t reload_seen = NowMs();
  reload_logged.store(true);
  sender.join();
  ASSERT_TRUE(reloaded) << relais.Log();

  for (int i = 0; i < kRuns; ++i) {
    for (auto& [path, o] : ParseStorescuOutcomes(results[i].output)) {
      EXPECT_TRUE(o.acknowledged) << "run " << i << ": " << path << "\n" << results[i].output;
    }
  }
  std::map<std::string, Listed> listed = ListRouting(relais);
  EXPECT_EQ(listed.size(), static_cast<size_t>(kRuns * kPerRun));
  int to_a = 0, to_b = 0;
  for (int i = 0; i < kRuns; ++i) {
    std::set<std::string> run_destinations;
    for (const std::string& uid : uids[i]) {
      auto it = listed.find(uid);
      ASSERT_NE(it, listed.end()) << "run " << i << ": object " << uid << " lost";
      const Listed& l = it->second;
      EXPECT_EQ(l.routing, "routed") << uid;
      ASSERT_EQ(l.destinations.size(), 1u) << "run " << i << " " << uid << ": " << Describe(l.destinations);
      const std::string& d = l.destinations[0];
      EXPECT_TRUE(d == "a" || d == "b") << d;
      EXPECT_EQ(l.matched_rules, std::vector<std::string>{"ct-to-" + d}) << uid;
      run_destinations.insert(d);
      (d == "a" ? to_a : to_b)++;
    }
    // An association keeps the rules it was accepted with.
    EXPECT_EQ(run_destinations.size(), 1u) << "run " << i << " mixed rule sets: a and b";
    if (finished[i] < swap_at) {
      EXPECT_EQ(*run_destinations.begin(), "a") << "run " << i << " ended before the swap";
    }
    if (started[i] > reload_seen) {
      EXPECT_EQ(*run_destinations.begin(), "b") << "run " << i << " began after the reload";
    }
  }
  EXPECT_GT(to_a, 0);
  EXPECT_GT(to_b, 0);
  EXPECT_EQ(to_a + to_b, kRuns * kPerRun);

  // The log is written by the event loop that accepts associations and
  // swaps the rules, so its order is the order things happened in: an
  // association accepted before the "rules-reloaded" line uses A for every
  // object, one accepted after it uses B.
  const std::string log = relais.Log();
  const size_t reload_pos = log.find("event=rules-reloaded");
  ASSERT_NE(reload_pos, std::string::npos);
  std::map<std::string, bool> accepted_before_reload;  // "assoc=N " -> before?
  int stored_lines = 0;
  int straddling = 0;  // objects stored after the reload on an older association
  std::istringstream in(log);
  std::string line;
  size_t pos = 0;
  while (std::getline(in, line)) {
    const size_t line_pos = pos;
    pos += line.size() + 1;
    size_t a = line.find("assoc=");
    if (a == std::string::npos) continue;
    std::string assoc = line.substr(a, line.find(' ', a) - a);
    if (line.find("event=association-accepted") != std::string::npos) {
      accepted_before_reload[assoc] = line_pos < reload_pos;
      continue;
    }
    if (line.find("event=stored") == std::string::npos) continue;
    ++stored_lines;
    ASSERT_EQ(accepted_before_reload.count(assoc), 1u) << line;
    const bool before = accepted_before_reload[assoc];
    EXPECT_THAT(line, HasSubstr(before ? " to=a" : " to=b")) << line;
    if (before && line_pos > reload_pos) ++straddling;
  }
  EXPECT_EQ(stored_lines, kRuns * kPerRun);
  // Not asserted (timing): whether the reload fell inside an association.
  std::printf("[ info ] %d of %d objects to a, %d to b; %d stored on an association accepted before the reload\n", to_a,
              kRuns * kPerRun, to_b, straddling);
  EXPECT_EQ(CountOccurrences(relais.Log(), "event=rules-reload-failed"), 0) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// Sends one fresh CT object as STORESCU and returns its listed destinations.
std::vector<std::string> SendOneCt(const RelaisProcess& relais, const std::string& dir, const std::string& tag) {
  std::string sub = dir + "/" + tag;
  RunCommand({"mkdir", "-p", sub});
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", sub, 2, &uids);
  if (files.size() != 2) return {"<copy failed>"};
  RunResult r;
  std::map<std::string, StorescuOutcome> outcomes = Send(relais, "STORESCU", files, &r);
  for (const std::string& f : files) {
    if (!outcomes[f].acknowledged) return {"<not acknowledged: " + r.output + ">"};
  }
  std::map<std::string, Listed> listed = ListRouting(relais);
  std::vector<std::string> out;
  for (const std::string& uid : uids) {
    auto it = listed.find(uid);
    if (it == listed.end()) return {"<not listed>"};
    out.push_back(Describe(it->second.destinations));
  }
  return out;
}

// 3. A broken rule file changes nothing; fixing it and SIGHUP reloads.
TEST(RulesTest, BrokenReloadKeepsOldRulesAndSighupReloadsFixed) {
  TempDir dir;
  const std::string rules_path = dir / "rules.toml";
  WriteFile(rules_path, CtRuleTo("a"));
  RelaisOptions options;
  options.extra = RulesConfig(rules_path);
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::vector<std::string> to_a = {"[a]", "[a]"};
  const std::vector<std::string> to_b = {"[b]", "[b]"};
  EXPECT_EQ(SendOneCt(relais, dir.path(), "before"), to_a);

  // A TOML syntax error: line 13 is `forward = ["b"` (unclosed array), which
  // the TOML parser notices at the next token, line 14 column 1.
  std::string syntax_error = CtRuleTo("b");
  syntax_error.replace(syntax_error.find("forward = [\"b\"]"), 15, "forward = [\"b\"");
  ReplaceFile(rules_path, syntax_error);
  ASSERT_TRUE(WaitForLogCount(relais, "event=rules-reload-failed", 0, 15000)) << relais.Log();
  std::vector<std::string> failed = LinesWith(relais.Log(), "event=rules-reload-failed");
  ASSERT_FALSE(failed.empty());
  EXPECT_THAT(failed[0], HasSubstr("error=\"" + rules_path + ":14:1: ")) << relais.Log();
  EXPECT_EQ(SendOneCt(relais, dir.path(), "after-syntax-error"), to_a) << relais.Log();

  // Valid TOML, unknown destination: forward = ["c"] on line 13, column 12.
  const int failures = CountOccurrences(relais.Log(), "event=rules-reload-failed");
  ReplaceFile(rules_path, CtRuleTo("c"));
  ASSERT_TRUE(WaitForLogCount(relais, "event=rules-reload-failed", failures, 15000)) << relais.Log();
  // Let the log settle: every line of this failure is written at once.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_THAT(relais.Log(), HasSubstr(rules_path + ":13:12: unknown destination 'c'")) << relais.Log();
  EXPECT_EQ(SendOneCt(relais, dir.path(), "after-unknown-destination"), to_a) << relais.Log();
  EXPECT_EQ(CountOccurrences(relais.Log(), "event=rules-reloaded"), 0) << relais.Log();

  // Fixed (CT -> b), then SIGHUP: a reload triggered by SIGHUP succeeds.
  ReplaceFile(rules_path, CtRuleTo("b"));
  ASSERT_EQ(kill(relais.pid(), SIGHUP), 0);
  ASSERT_TRUE(WaitForLogCount(relais, "trigger=\"SIGHUP\" rules=", 0, 15000)) << relais.Log();
  std::vector<std::string> hup = LinesWith(relais.Log(), "trigger=\"SIGHUP\"");
  ASSERT_FALSE(hup.empty());
  EXPECT_THAT(hup.back(), HasSubstr("event=rules-reloaded")) << relais.Log();
  // The file-change reload of the same edit may follow; wait it out.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  EXPECT_EQ(SendOneCt(relais, dir.path(), "after-fix"), to_b) << relais.Log();
  EXPECT_TRUE(relais.running());
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// A rule file with four errors, at known positions (line:column, 1-based).
constexpr char kSeveralErrors[] =
    "[[destination]]\n"                      // 1
    "name = \"archive\"\n"                   // 2
    "ae_title = \"ARCHIVE\"\n"               // 3
    "host = \"10.1.0.20\"\n"                 // 4
    "port = 70000\n"                         // 5: port out of range, column 8
    "[[rule]]\n"                             // 6
    "name = \"r1\"\n"                        // 7
    "forward = [\"archiv\"]\n"               // 8: unknown destination, column 12
    "[rule.match]\n"                         // 9
    "Modalty = \"CT\"\n"                     // 10: unknown keyword, column 1
    "[[rule]]\n"                             // 11
    "name = \"r2\"\n"                        // 12
    "forward = [\"archive\"]\n"              // 13
    "[rule.match]\n"                         // 14
    "time = { hours = \"18:00-25:00\" }\n";  // 15: bad time range, column 18

// 4a. `rules check` reports every error at its line:column and exits 1.
TEST(RulesCliTest, CheckReportsEveryErrorAtItsPosition) {
  TempDir dir;
  const std::string path = dir / "bad.toml";
  WriteFile(path, kSeveralErrors);
  RunResult r = RunCommand({RelaisBinary(), "rules", "check", path}, 60);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.signal, 0);
  EXPECT_THAT(r.output, HasSubstr(path + ":5:8: destination 'archive'.port must be between 1 and 65535, got 70000"));
  EXPECT_THAT(r.output, HasSubstr(path + ":8:12: unknown destination 'archiv', did you mean 'archive'?"));
  EXPECT_THAT(r.output, HasSubstr(path + ":10:1: unknown DICOM keyword 'Modalty', did you mean 'Modality'?"));
  EXPECT_THAT(r.output, HasSubstr(path + ":15:18: bad time range"));
  EXPECT_EQ(LinesWith(r.output, path + ":").size(), 4u) << r.output;

  // A syntax error: unterminated string on line 3.
  WriteFile(path, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\nhost = \"h\"\n");
  r = RunCommand({RelaisBinary(), "rules", "check", path}, 60);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex(":3:[0-9]+: ")) << r.output;
  EXPECT_THAT(r.output, HasSubstr(path + ":3:")) << r.output;
}

TEST(RulesCliTest, CheckAcceptsTheExample) {
  const std::string example = std::string(RELAIS_SOURCE_DIR) + "/appliance/rules-example.toml";
  RunResult r = RunCommand({RelaisBinary(), "rules", "check", example}, 60);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("OK: 3 rules, 2 destinations")) << r.output;
}

// 4b. `rules test` with the example rules: a CT after hours goes to the
// archive and teleradiology; on a weekday morning to the archive only.
TEST(RulesCliTest, TestExampleAfterHoursAndWeekdayMorning) {
  const std::string example = std::string(RELAIS_SOURCE_DIR) + "/appliance/rules-example.toml";
  const std::string ct = CorpusDir() + "/pydicom__CT_small.dcm";
  ASSERT_EQ(ReadTag(ct, DCM_Modality), "CT");
  auto destinations_at = [&](const std::string& at, std::string* json) {
    RunResult r = RunCommand({RelaisBinary(), "rules", "test", "--rules", example, "--calling-ae", "CT01", "--peer",
                              "10.1.2.3", "--at", at, "--explain", "--json", ct},
                             60);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<std::string> lines = LinesWith(r.output, "{\"file\":");
    EXPECT_EQ(lines.size(), 1u) << r.output;
    *json = lines.empty() ? "" : lines[0];
    std::vector<std::string> names;
    for (const std::string& d : JsonArrayField(*json, "destinations")) names.push_back(JsonField(d, "name"));
    return Sorted(names);
  };
  std::string json;
  // Saturday 2026-11-28, 22:00: after hours and weekend.
  EXPECT_EQ(destinations_at("2026-11-28 22:00", &json), (std::vector<std::string>{"archive", "telerad"})) << json;
  EXPECT_EQ(JsonField(json, "result"), "routed");
  EXPECT_EQ(JsonArrayField(json, "matched_rules"),
            (std::vector<std::string>{"everything-to-archive", "ct-mr-after-hours-to-telerad"}))
      << json;
  std::vector<std::string> explain = JsonArrayField(json, "explain");
  EXPECT_EQ(explain.size(), 3u) << json;
  for (const std::string& e : explain) {
    EXPECT_FALSE(JsonArrayField(e, "reasons").empty()) << e;
  }
  // Wednesday 2026-11-25, 10:00: office hours.
  EXPECT_EQ(destinations_at("2026-11-25 10:00", &json), (std::vector<std::string>{"archive"})) << json;
  EXPECT_EQ(JsonArrayField(json, "matched_rules"), (std::vector<std::string>{"everything-to-archive"})) << json;
}

// 5. `relais serve` refuses to start on a rule file that fails validation,
// with the position on stderr, and never crashes.
TEST(RulesStartupTest, ServeExitsWithPositionOnBadRules) {
  struct Case {
    std::string name;
    std::string text;    // rules.toml; not written if empty
    std::string config;  // [rules] path as written in the config
    std::string expect;  // on stderr, after "<dir>/"
  };
  const std::vector<Case> cases = {
      {"unknown-destination", CtRuleTo("c"), "", "rules.toml:13:12: unknown destination 'c', did you mean"},
      {"bad-port", kSeveralErrors, "", "rules.toml:5:8: destination 'archive'.port must be between 1 and 65535"},
      {"syntax", "[[destination]]\nname = \"a\"\nae_title = \"A\nhost = \"h\"\n", "", "rules.toml:3:"},
      {"unclosed-table", "[[rule]\n", "", "rules.toml:1:"},
      // A relative path is relative to the config file, not the cwd.
      {"relative-path", CtRuleTo("c"), "rules.toml", "rules.toml:13:12: unknown destination 'c'"},
      {"missing-file", "", "", "rules.toml"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    const std::string rules_path = dir / "rules.toml";
    if (!c.text.empty()) WriteFile(rules_path, c.text);
    RelaisOptions options;
    options.extra = RulesConfig(c.config.empty() ? rules_path : c.config);
    RelaisProcess relais(dir.path(), options);  // writes the config only
    const std::string err_path = dir / "stderr.txt";
    // From / so that a relative rules path cannot resolve against the cwd.
    RunResult r = RunCommand({"sh", "-c", "cd / && exec \"$0\" serve --config \"$1\" 2>\"$2\"", RelaisBinary(),
                              relais.config_path(), err_path},
                             30);
    const std::string err = ReadFile(err_path);
    EXPECT_NE(r.exit_code, 0) << r.output << err;
    EXPECT_NE(r.exit_code, -1) << "not a clean exit: signal " << r.signal << "\n" << r.output << err;
    EXPECT_EQ(r.signal, 0) << r.output << err;
    EXPECT_LT(r.exit_code, 128) << "killed by a signal (via sh): " << r.output << err;
    EXPECT_THAT(err, HasSubstr(dir.path() + "/" + c.expect)) << "stdout:\n" << r.output << "stderr:\n" << err;
    EXPECT_FALSE(WaitForPort(relais.port(), 50));
  }
}

}  // namespace
}  // namespace relais::itest
