// CLI actions on a running `relais serve` (issue 14): `relais queue purge`
// shows what it removes, refuses without a terminal unless --yes, has
// --dry-run, removes only the named destination's rows and keeps an object
// delivered elsewhere (retention); destination names compare without regard
// to case; every action is a "cli" record in the audit trail, interleaved
// with serve's records in one chain that `relais audit verify` accepts,
// also while serve rotates the file under the commands.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using ::testing::HasSubstr;

int CountLines(const std::string& text, const std::string& needle) {
  int n = 0;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) n += l.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

TEST(CliActionsTest, PurgeAsksShowsAndKeepsWhatAnotherDestinationHoldsAndEveryActionIsAudited) {
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  StorescpOptions opts;
  opts.ae_title = "ARCHIVE";
  StorescpPeer peer(tmp / "peer", opts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  // TELERAD is down (nothing listens on port 9): its rows stay queued.
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer.port()) +
                       "\n\n[[destination]]\nname = \"TELERAD\"\nae_title = \"TELERAD\"\nhost = \"127.0.0.1\"\n"
                       "port = 9\n\n[[rule]]\nname = \"all\"\nforward = [\"archive\", \"TELERAD\"]\n");
  RelaisOptions options;
  options.extra =
      "\n[rules]\npath = \"" + rules + "\"\n\n[audit]\npath = \"audit.jsonl\"\n\n[delivery]\nretention = \"1d\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string cfg = relais.config_path();
  const std::string audit = cfg.substr(0, cfg.rfind('/')) + "/audit.jsonl";

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", 2, &uids);
  ASSERT_EQ(files.size(), 2u);
  RunResult sent = RunCommand({"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1",
                               std::to_string(relais.port()), files[0], files[1]},
                              60);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && peer.Received().size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(peer.Received().size(), 2u) << relais.Log();

  // Wrong case finds TELERAD; an unknown name says which exist.
  RunResult ls = RunCommand({RelaisBinary(), "queue", "ls", "--config", cfg, "--dest", "telerad", "--json"}, 60);
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_EQ(CountLines(ls.output, "\"destination\":\"TELERAD\""), 2) << ls.output;
  RunResult unknown = RunCommand({RelaisBinary(), "queue", "ls", "--config", cfg, "--dest", "nowhere"}, 60);
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("no destination 'nowhere' (known: TELERAD, archive)"));

  RunResult dry = RunCommand({RelaisBinary(), "queue", "purge", "--config", cfg, "--dest", "telerad", "--dry-run"}, 60);
  EXPECT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_THAT(dry.output, HasSubstr("would purge 2 rows"));
  EXPECT_THAT(dry.output, HasSubstr(uids[0]));
  // --study selects the study's stored objects (both copies share MR01's study).
  std::map<std::string, std::string> listed = relais.StoreList();
  ASSERT_EQ(listed.count(uids[0]), 1u);
  const std::string study = JsonField(listed[uids[0]], "study_instance_uid");
  ASSERT_FALSE(study.empty()) << listed[uids[0]];
  ls = RunCommand({RelaisBinary(), "queue", "ls", "--config", cfg, "--study", study, "--json"}, 60);
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_EQ(CountLines(ls.output, "\"destination\":\"TELERAD\""), 2) << ls.output;
  RunResult study_dry = RunCommand(
      {RelaisBinary(), "queue", "purge", "--config", cfg, "--study", study, "--dest", "TELERAD", "--dry-run"}, 60);
  EXPECT_EQ(study_dry.exit_code, 0) << study_dry.output;
  EXPECT_THAT(study_dry.output, HasSubstr("would purge 2 rows"));
  RunResult no_study =
      RunCommand({RelaisBinary(), "queue", "purge", "--config", cfg, "--study", "1.2.3.404", "--dry-run"}, 60);
  EXPECT_EQ(no_study.exit_code, 2) << no_study.output;
  EXPECT_THAT(no_study.output, HasSubstr("no stored object of Study Instance UID 1.2.3.404"));
  RunResult refused = RunCommand({RelaisBinary(), "queue", "purge", "--config", cfg, "--dest", "TELERAD"}, 60);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("pass --yes"));
  ls = RunCommand({RelaisBinary(), "queue", "ls", "--config", cfg, "--dest", "TELERAD", "--json"}, 60);
  EXPECT_EQ(CountLines(ls.output, "\"destination\":\"TELERAD\""), 2) << "dry run and refusal keep the rows";

  RunResult purged = RunCommand({RelaisBinary(), "queue", "purge", "--config", cfg, "--dest", "TELERAD", "--yes"}, 60);
  EXPECT_EQ(purged.exit_code, 0) << purged.output;
  EXPECT_THAT(purged.output, HasSubstr("purged 2 rows"));
  // Delivered to the archive and retained for a day: both objects stay.
  std::map<std::string, std::string> stored = relais.StoreList();
  EXPECT_EQ(stored.count(uids[0]), 1u);
  EXPECT_EQ(stored.count(uids[1]), 1u);
  if (stored.count(uids[0])) {
    EXPECT_EQ(JsonField(stored[uids[0]], "class"), "delivered");
  }

  // Serve writes on (a third object) after the CLI's records; the chain holds while it runs.
  std::vector<std::string> more;
  std::vector<std::string> third = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", 1, &more);
  ASSERT_EQ(third.size(), 1u);
  sent = RunCommand(
      {"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), third[0]}, 60);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output << ReadFile(audit);

  const std::string trail = ReadFile(audit);
  EXPECT_EQ(CountLines(trail, "\"kind\":\"cli\""), 2) << trail;  // the refusal and the purge; not the dry run
  EXPECT_EQ(CountLines(trail, "\"action\":\"queue purge\",\"selector\":\"--dest TELERAD\",\"result\":\"ok\""), 1)
      << trail;
  EXPECT_EQ(CountLines(trail, "\"count\":\"2\""), 1) << trail;
  EXPECT_THAT(trail, HasSubstr(uids[1]));
  EXPECT_THAT(trail, HasSubstr("\"uid\":\"" + std::to_string(getuid()) + "\""));
  EXPECT_GT(trail.rfind("\"kind\":\"object\""), trail.rfind("\"kind\":\"cli\"")) << "serve wrote after the CLI";

  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

TEST(CliActionsTest, MissingDefaultConfigNamesThePathAndSaysToPassConfig) {
  RunResult r = RunCommand({RelaisBinary(), "queue", "ls", "--config", "/nonexistent/relais.toml"}, 60);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no configuration file at /nonexistent/relais.toml: pass --config FILE"));
  RunResult help = RunCommand({RelaisBinary(), "store", "ls", "--help"}, 60);
  EXPECT_THAT(help.output, HasSubstr("default: /etc/relais/relais.toml"));
}

// `relais serve` rotates its audit file (rotate_size 4 KiB) while objects
// arrive and `relais queue retry` commands append their records: every
// record ends up in one chain over the rotated files and the current one,
// which `relais audit verify FILES...` accepts.
TEST(CliActionsTest, CommandsAppendingWhileServeRotatesKeepOneChain) {
  TempDir tmp;
  for (const char* d : {"relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules,
            "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = 9\n\n"
            "[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n\n[audit]\npath = \"audit.jsonl\"\nrotate_size = \"4KiB\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string cfg = relais.config_path();
  const std::string dir = cfg.substr(0, cfg.rfind('/'));

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", 12, &uids);
  ASSERT_EQ(files.size(), 12u);
  std::atomic<int> sends_ok{0};
  std::thread sender([&] {
    for (const std::string& f : files) {
      RunResult r = RunCommand(
          {"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), f}, 60);
      if (r.exit_code == 0) ++sends_ok;
    }
  });
  int retries = 0;
  for (int i = 0; i < 12; ++i) {
    RunResult r = RunCommand({RelaisBinary(), "queue", "retry", "--config", cfg, "--dest", "archive"}, 60);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    retries += r.exit_code == 0;
  }
  sender.join();
  EXPECT_EQ(sends_ok.load(), 12);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  std::vector<std::string> trail;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("audit.jsonl.", 0) == 0) trail.push_back(e.path().string());
    EXPECT_EQ(name.find(".rotating"), std::string::npos) << "a rotation left " << name;
  }
  std::sort(trail.begin(), trail.end());
  EXPECT_GE(trail.size(), 3u) << "serve rotated the file";
  trail.push_back(dir + "/audit.jsonl");
  std::vector<std::string> argv = {RelaisBinary(), "audit", "verify"};
  argv.insert(argv.end(), trail.begin(), trail.end());
  RunResult verify = RunCommand(argv, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr("OK: "));
  int cli = 0;
  for (const std::string& f : trail) cli += CountLines(ReadFile(f), "\"action\":\"queue retry\"");
  EXPECT_EQ(cli, retries) << "every command's record is in the chain";
}

}  // namespace
}  // namespace relais::itest
