// Destination options that shape delivery in time:
// - hold_study: a destination that wants whole studies gets none of a
//   study's objects while the study is still arriving, then all of them once
//   it has been quiet for the hold time. Another destination of the same
//   objects is not held.
// - bandwidth_limit: the bytes sent to a destination are paced.
//
// Timing: the only time check is a lower bound ("nothing arrived before the
// study went quiet"), which a slow machine cannot break: Relais receives each
// object before storescu returns, so the study is quiet no earlier than
// (last storescu return) + hold > the moment we look.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

constexpr int kHoldSeconds = 4;

TEST(DeliveryHoldTest, HeldDestinationGetsTheWholeStudyOnlyOnceQuiet) {
  TempDir tmp;
  for (const char* d : {"held-peer", "archive-peer", "relais", "copies"}) {
    ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  }
  StorescpOptions held_opts;
  held_opts.ae_title = "RADIOLOGIST";
  StorescpPeer held(tmp.path() + "/held-peer", held_opts);
  StorescpOptions archive_opts;
  archive_opts.ae_title = "ARCHIVE";
  StorescpPeer archive(tmp.path() + "/archive-peer", archive_opts);
  ASSERT_TRUE(held.Start()) << held.Log();
  ASSERT_TRUE(archive.Start()) << archive.Log();

  const std::string rules = tmp.path() + "/rules.toml";
  WriteFile(rules,
            "[[destination]]\nname = \"radiologist\"\nae_title = \"RADIOLOGIST\"\nhost = \"127.0.0.1\"\nport = " +
                std::to_string(held.port()) + "\nhold_study = \"" + std::to_string(kHoldSeconds) +
                "s\"\n\n"
                "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                std::to_string(archive.port()) +
                "\n\n[[rule]]\nname = \"both\"\nforward = [\"radiologist\", \"archive\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(tmp.path() + "/relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // Three objects of one study (copies of one MR with new SOP Instance UIDs).
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", 3, &uids);
  ASSERT_EQ(files.size(), 3u);
  for (size_t i = 0; i < files.size(); ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    RunResult r = RunCommand({"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), files[i]}, 60);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // The study is still within its hold time: nothing may have reached the
  // held destination (see the timing note at the top).
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(held.CountFiles(), 0u) << "the held destination got part of a study that was still arriving";

  // Then the whole study arrives, and the archive got everything too.
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && (held.CountFiles() < 3 || archive.CountFiles() < 3)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto held_got = held.Received();
  auto archive_got = archive.Received();
  for (const std::string& uid : uids) {
    EXPECT_EQ(held_got.count(uid), 1u) << uid << " did not reach the held destination\n" << relais.Log();
    EXPECT_EQ(archive_got.count(uid), 1u) << uid << " did not reach the archive\n" << relais.Log();
  }
}

// 6 CT slices (~3.2 MB) to a destination limited to 1 MB/s: from the first
// arrival to the last takes at least the time the limit allows for the
// objects in between, less the limiter's quarter-second burst. A lower
// bound only: a slow machine makes it longer, never shorter.
TEST(DeliveryPacingTest, BandwidthLimitPacesTheBytesSent) {
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  StorescpOptions opts;
  opts.ae_title = "SLOWLINK";
  StorescpPeer peer(tmp / "peer", opts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"slow\"\nae_title = \"SLOWLINK\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer.port()) +
                       "\nmax_associations = 2\nbandwidth_limit = \"1MB/s\"\n\n"
                       "[[rule]]\nname = \"all\"\nforward = [\"slow\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", tmp / "copies", 6, &uids);
  ASSERT_EQ(files.size(), 6u);
  uint64_t bytes = 0;
  for (const std::string& f : files) bytes += ReadFile(f).size();
  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  int64_t deadline = NowMs() + 120000, first = 0, last = 0;
  while (NowMs() < deadline && peer.CountFiles() < files.size()) {
    if (first == 0 && peer.CountFiles() > 0) first = NowMs();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  last = NowMs();
  ASSERT_EQ(peer.CountFiles(), files.size()) << relais.Log();
  if (first == 0) first = last;
  // storescp creates a file when an object starts to arrive: between the
  // first file and the last one, at least the 4 objects in between were
  // sent. Less the burst (250 kB), at 1 MB/s; 10 % slack for polling.
  double floor_ms = (static_cast<double>(bytes) * 4 / 6 - 250000.0) / 1e6 * 1000.0 * 0.9;
  EXPECT_GE(static_cast<double>(last - first), floor_ms)
      << "6 objects (" << bytes << " bytes) arrived faster than 1 MB/s allows";
  std::printf("first to last arrival: %lld ms for %llu bytes (floor %.0f ms)\n", static_cast<long long>(last - first),
              static_cast<unsigned long long>(bytes), floor_ms);
}

// A destination that asks for DICOM TLS gets nothing in clear text: when
// its TLS settings cannot be used (here a CA file that is not PEM), its
// rows wait and the log says why, while a plain destination of the same
// objects is served. (tls_test.cc covers TLS that works.)
TEST(DeliveryTlsTest, TlsDestinationIsNeverSentInClearText) {
  TempDir tmp;
  for (const char* d : {"tls-peer", "plain-peer", "relais"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  StorescpOptions tls_opts;
  tls_opts.ae_title = "SECURE";
  StorescpPeer secure(tmp / "tls-peer", tls_opts);
  StorescpOptions plain_opts;
  plain_opts.ae_title = "PLAIN";
  StorescpPeer plain(tmp / "plain-peer", plain_opts);
  ASSERT_TRUE(secure.Start()) << secure.Log();
  ASSERT_TRUE(plain.Start()) << plain.Log();
  const std::string rules = tmp / "rules.toml";
  WriteFile(tmp / "ca.pem", "not used\n");
  WriteFile(rules, "[[destination]]\nname = \"secure\"\nae_title = \"SECURE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(secure.port()) + "\ntls = { ca_file = \"ca.pem\" }\n\n" +
                       "[[destination]]\nname = \"plain\"\nae_title = \"PLAIN\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(plain.port()) +
                       "\n\n[[rule]]\nname = \"both\"\nforward = [\"secure\", \"plain\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string file = CorpusDir() + "/dcm4che__MR01.dcm";
  RunResult r = RunCommand({"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), file}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && plain.CountFiles() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(plain.CountFiles(), 1u) << relais.Log();
  // The plain copy went out; give the other a few scheduler rounds (rescans
  // run every 2 s) to prove it stays put.
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  EXPECT_EQ(secure.CountFiles(), 0u) << "sent to a tls destination without TLS";
  // (The peer's log shows the harness's port probe as a connection; no
  // association request ever came.)
  EXPECT_EQ(secure.Log().find("Association Acknowledged"), std::string::npos) << secure.Log();
  RunResult q = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"}, 60);
  EXPECT_NE(q.output.find("\"destination\":\"secure\""), std::string::npos) << q.output;
  EXPECT_NE(relais.Log().find("event=tls-config-failed"), std::string::npos) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
