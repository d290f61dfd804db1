// Send now and re-route (issue 14), against real peers on 127.0.0.1:
// `relais route --study UID --to B` sends a study already delivered to A to
// a second storescp B; after an outage, `relais queue retry --dest X` ends
// the destination's backoff (10 minutes here) so that delivery happens at
// once. The waits bound a hang: 60 s is far below the backoff, so a pass
// means the backoff was ended, whatever the machine's speed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

std::string SmallCt() { return CorpusDir() + "/pydicom__77654033_CT2_17106.dcm"; }

StorescpOptions Scp(const std::string& ae, uint16_t port = 0) {
  StorescpOptions o;
  o.ae_title = ae;
  o.port = port;
  return o;
}

std::string Destination(const std::string& name, const std::string& ae, uint16_t port, const std::string& more = "") {
  return "[[destination]]\nname = \"" + name + "\"\nae_title = \"" + ae +
         "\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) + "\n" + more;
}

size_t SentCount(uint16_t port, const std::vector<std::string>& files) {
  std::vector<std::string> argv = {"storescu", "-v", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(port)};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 300);
  size_t n = 0;
  for (const auto& [path, o] : ParseStorescuOutcomes(r.output)) n += o.acknowledged;
  return n;
}

// Polls until `scp` holds every UID of `uids`. False after `timeout_s`.
bool WaitReceived(const StorescpPeer& scp, const std::vector<std::string>& uids, int timeout_s) {
  const int64_t deadline = NowMs() + timeout_s * 1000LL;
  for (;;) {
    auto got = scp.Received();
    bool all = true;
    for (const std::string& u : uids) all = all && got.count(u) != 0;
    if (all) return true;
    if (NowMs() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

TEST(RouteTest, ADeliveredStudyReRoutedToASecondDestinationArrivesThere) {
  TempDir dir;
  for (const char* d : {"a", "b", "copies"}) ASSERT_EQ(mkdir((dir / d).c_str(), 0755), 0);
  StorescpPeer a(dir / "a", Scp("PACSA"));
  StorescpPeer b(dir / "b", Scp("PACSB"));
  ASSERT_TRUE(a.Start()) << a.Log();
  ASSERT_TRUE(b.Start()) << b.Log();
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("PACSA", "PACSA", a.port()) + Destination("PACSB", "PACSB", b.port()) +
                       "[[rule]]\nname = \"all\"\nforward = [\"PACSA\"]\n");
  RelaisOptions options;
  options.extra = "\n[delivery]\nretention = \"1h\"\n\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), dir / "copies", 4, &uids);
  ASSERT_EQ(SentCount(relais.port(), files), 4u) << relais.Log();
  ASSERT_TRUE(WaitReceived(a, uids, 120)) << relais.Log();
  const std::string study = TagValue(files[0], "StudyInstanceUID");
  ASSERT_FALSE(study.empty());
  EXPECT_TRUE(b.Received().empty());

  // An unknown destination: exit 2, the known names said.
  RunResult bad =
      RunCommand({RelaisBinary(), "route", "--config", relais.config_path(), "--study", study, "--to", "NOPE"}, 60);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("PACSA, PACSB"), std::string::npos) << bad.output;

  RunResult r =
      RunCommand({RelaisBinary(), "route", "--config", relais.config_path(), "--study", study, "--to", "PACSB"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("routed 4 objects to PACSB"), std::string::npos) << r.output;
  // The study's history has PACSB at once (queued, or sent already): the
  // route counts in the transaction that made the rows.
  RunResult found =
      RunCommand({RelaisBinary(), "find", "--config", relais.config_path(), "--study", study, "--json"}, 60);
  ASSERT_EQ(found.exit_code, 0) << found.output;
  nlohmann::json j = nlohmann::json::parse(found.output, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["studies"].size() == 1) << found.output;
  int b_rows = -1;
  for (const auto& d : j["studies"][0]["destinations"]) {
    if (d.value("destination", "") == "PACSB") b_rows = d.value("queued", 0) + d.value("sent", 0);
  }
  EXPECT_EQ(b_rows, 4) << found.output;
  ASSERT_TRUE(WaitReceived(b, uids, 60)) << relais.Log();
  for (const auto& [uid, paths] : b.Received()) EXPECT_EQ(paths.size(), 1u) << uid;

  // The manual action is in the object's history, with who did it.
  RunResult show =
      RunCommand({RelaisBinary(), "object", "show", "--config", relais.config_path(), uids[0], "--json"}, 60);
  EXPECT_NE(show.output.find("\"result\":\"routed\""), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("relais route (user "), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("\"rule\":\"(manual)\""), std::string::npos) << show.output;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

TEST(RouteTest, SendNowAfterAnOutageDeliversWithoutWaitingForTheBackoff) {
  TempDir dir;
  for (const char* d : {"scp", "copies"}) ASSERT_EQ(mkdir((dir / d).c_str(), 0755), 0);
  StorescpPeer scp(dir / "scp", Scp("SINK"));
  ASSERT_TRUE(scp.Start()) << scp.Log();
  const uint16_t port = scp.port();
  scp.Stop();  // the outage
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("SINK", "SINK", port, "retry = { initial_backoff = \"10m\", max_backoff = \"10m\" }\n") +
                       "[[rule]]\nname = \"all\"\nforward = [\"SINK\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), dir / "copies", 3, &uids);
  ASSERT_EQ(SentCount(relais.port(), files), 3u) << relais.Log();
  // Wait for the first failed attempt: the destination is in its backoff.
  const int64_t deadline = NowMs() + 60'000;
  while (relais.Log().find("event=link-failure") == std::string::npos &&
         relais.Log().find("event=destination-down") == std::string::npos) {
    ASSERT_LT(NowMs(), deadline) << relais.Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(scp.Restart(Scp("SINK", port))) << scp.Log();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(scp.Received().empty()) << "delivered before the send now: the backoff is not 10 minutes";

  RunResult r = RunCommand({RelaisBinary(), "queue", "retry", "--config", relais.config_path(), "--dest", "SINK"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("requeued 3 rows"), std::string::npos) << r.output;
  ASSERT_TRUE(WaitReceived(scp, uids, 60)) << relais.Log();
  EXPECT_NE(relais.Log().find("event=send-now"), std::string::npos) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
