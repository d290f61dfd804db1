// Duplicate policy end to end (issue 13), against real peers on 127.0.0.1: a
// modality (storescu) sends a study of 200 images into `relais serve`, which
// forwards them to DCMTK storescp; after delivery the modality sends the
// same study again, as one does after a network error on its side.
// - resend = "never", no retention: the resent objects are stored anew but
//   not queued (the `delivered` memory suppresses them); storescp has each
//   image exactly once, and `relais object show` says why.
// - resend = "if-changed": one image changed (a tag edited, same SOP
//   Instance UID) is sent again, the others are not: with retention 1h they
//   are identical to the retained objects and acknowledged without being
//   stored or queued again (event=duplicate-identical); without retention
//   they are stored anew and their rows suppressed.
//
// No assertion depends on speed: every wait polls with a generous deadline.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

constexpr int kStudySize = 200;

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string SmallCt() { return CorpusDir() + "/pydicom__77654033_CT2_17106.dcm"; }

std::vector<std::string> JsonLines(const std::string& output) {
  std::vector<std::string> out;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '{') out.push_back(line);
  }
  return out;
}

std::vector<std::string> QueueRows(const RelaisProcess& relais) {
  RunResult r = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"}, 120);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return JsonLines(r.output);
}

// Sends `files` in one association; returns how many were acknowledged.
size_t Storescu(uint16_t port, const std::vector<std::string>& files) {
  std::vector<std::string> argv = {"storescu", "-v", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(port)};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 300);
  size_t acked = 0;
  for (const auto& [path, o] : ParseStorescuOutcomes(r.output)) acked += o.acknowledged ? 1 : 0;
  return acked;
}

size_t CountInLog(const std::string& log, const std::string& what) {
  size_t n = 0;
  for (size_t p = log.find(what); p != std::string::npos; p = log.find(what, p + 1)) ++n;
  return n;
}

// Polls until storescp holds `files` files and relais has no queue row.
bool WaitDelivered(const RelaisProcess& relais, const StorescpPeer& scp, size_t files, int timeout_s) {
  const int64_t deadline = NowMs() + timeout_s * 1000LL;
  while (NowMs() < deadline) {
    if (scp.CountFiles() >= files && QueueRows(relais).empty()) return true;
    SleepMs(250);
  }
  return false;
}

struct Study {
  TempDir dir;
  std::vector<std::string> files, uids;
  std::unique_ptr<StorescpPeer> scp;
  std::unique_ptr<RelaisProcess> relais;

  // storescp "ARCHIVE" and relais routing everything to it with `resend`.
  void Start(const std::string& resend, const std::string& delivery) {
    for (const char* d : {"scp", "copies"}) ASSERT_EQ(mkdir((dir / d).c_str(), 0755), 0);
    StorescpOptions scp_options;
    scp_options.ae_title = "ARCHIVE";
    scp = std::make_unique<StorescpPeer>(dir / "scp", scp_options);
    ASSERT_TRUE(scp->Start()) << scp->Log();
    std::string rules = dir / "rules.toml";
    WriteFile(rules, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                         std::to_string(scp->port()) + "\nresend = \"" + resend +
                         "\"\nresend_window = \"30d\"\n[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n");
    RelaisOptions options;
    options.extra = "\n[delivery]\n" + delivery + "\n[rules]\npath = \"" + rules + "\"\n";
    relais = std::make_unique<RelaisProcess>(dir.path(), options);
    ASSERT_TRUE(relais->Start()) << relais->Log();
    files = MakeCopiesWithNewUids(SmallCt(), dir / "copies", kStudySize, &uids);
    ASSERT_EQ(files.size(), static_cast<size_t>(kStudySize));
  }

  // The study sent once and delivered: each image once at storescp.
  void SendAndDeliver() {
    ASSERT_EQ(Storescu(relais->port(), files), files.size()) << relais->Log();
    ASSERT_TRUE(WaitDelivered(*relais, *scp, files.size(), 120)) << relais->Log();
  }

  void ExpectEachReceived(size_t times, const std::string& except = "", size_t except_times = 0) {
    auto received = scp->Received();
    EXPECT_EQ(received.count(""), 0u);
    for (const std::string& uid : uids) {
      EXPECT_EQ(received[uid].size(), uid == except ? except_times : times) << uid;
    }
  }
};

TEST(DuplicateTest, NeverSendsAResentStudyAgain) {
  Study s;
  ASSERT_NO_FATAL_FAILURE(s.Start("never", ""));
  ASSERT_NO_FATAL_FAILURE(s.SendAndDeliver());
  s.ExpectEachReceived(1);

  // Delivered objects are removed (no retention): the resend is stored anew
  // and its row suppressed in the same commit, so no row ever appears.
  ASSERT_EQ(Storescu(s.relais->port(), s.files), s.files.size()) << s.relais->Log();
  EXPECT_TRUE(QueueRows(*s.relais).empty());
  SleepMs(2000);  // anything queued by mistake would be on its way by now
  s.ExpectEachReceived(1);
  std::string log = s.relais->Log();
  EXPECT_EQ(CountInLog(log, "suppressed=archive"), static_cast<size_t>(kStudySize)) << log;

  // The object (kept until the next sweep) says why.
  RunResult show =
      RunCommand({RelaisBinary(), "object", "show", "--config", s.relais->config_path(), s.uids[0], "--json"}, 60);
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("\"state\":\"suppressed\""), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("already delivered to archive at "), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("resend = \\\"never\\\""), std::string::npos) << show.output;
  show = RunCommand({RelaisBinary(), "object", "show", "--config", s.relais->config_path(), s.uids[0]}, 60);
  EXPECT_NE(show.output.find("not sent again: already delivered to archive"), std::string::npos) << show.output;

  RunResult verify = RunCommand({RelaisBinary(), "store", "verify", "--config", s.relais->config_path()}, 120);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_EQ(s.relais->Terminate(), 0) << s.relais->Log();
}

// The study sent, delivered, one image corrected at the modality (same SOP
// Instance UID, a tag changed), the study sent again: only the corrected
// image reaches storescp a second time. With `retention` the unchanged
// images are still stored (identical duplicates); without, they were
// removed after delivery and are suppressed by the resend memory.
void RunIfChanged(bool retention) {
  Study s;
  ASSERT_NO_FATAL_FAILURE(s.Start("if-changed", retention ? "retention = \"1h\"\n" : ""));
  ASSERT_NO_FATAL_FAILURE(s.SendAndDeliver());
  s.ExpectEachReceived(1);

  RunResult mod = RunCommand({"dcmodify", "-nb", "-m", "StudyDescription=Corrected", s.files[7]}, 60);
  ASSERT_EQ(mod.exit_code, 0) << mod.output;
  ASSERT_EQ(Storescu(s.relais->port(), s.files), s.files.size()) << s.relais->Log();
  ASSERT_TRUE(WaitDelivered(*s.relais, *s.scp, s.files.size() + 1, 120)) << s.relais->Log();
  SleepMs(2000);  // anything queued by mistake would be on its way by now
  s.ExpectEachReceived(1, s.uids[7], 2);
  std::string log = s.relais->Log();
  const size_t unchanged = kStudySize - 1;
  EXPECT_EQ(CountInLog(log, "event=duplicate-identical"), retention ? unchanged : 0) << log;
  EXPECT_EQ(CountInLog(log, "suppressed=archive"), retention ? 0 : unchanged) << log;
  if (retention) {
    EXPECT_EQ(s.relais->StoreList().size(), static_cast<size_t>(kStudySize));
  }

  RunResult verify = RunCommand({RelaisBinary(), "store", "verify", "--config", s.relais->config_path()}, 120);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_EQ(s.relais->Terminate(), 0) << s.relais->Log();
}

TEST(DuplicateTest, IfChangedSendsOnlyTheChangedImageAgainWhileStored) { RunIfChanged(/*retention=*/true); }

TEST(DuplicateTest, IfChangedSendsOnlyTheChangedImageAgainAfterRemoval) { RunIfChanged(/*retention=*/false); }

}  // namespace
}  // namespace relais::itest
