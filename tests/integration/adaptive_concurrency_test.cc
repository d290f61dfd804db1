// Adaptive concurrency (router/deliver/concurrency.h) against a real peer on
// the LAN (127.0.0.1): a second `relais serve` as the receiver, its listener
// limited to 4 associations (more get A-ASSOCIATE-RJ transient, local limit
// exceeded), and a sender whose destination has only name, AE title, host
// and port (and hold_study, so that the whole study waits at once: a
// backlog, without which there is nothing to adapt to). Every object arrives, none fails or is retried, and the
// concurrency target settles at or under 4 (the log's
// event=concurrency-target lines, and /api/destinations through the
// scheduler's Stats in the admin test). No assertion depends on speed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace relais::itest {
namespace {

// The numbers after "key=" in every line of `log` with `event`.
std::vector<int> Values(const std::string& log, const std::string& event, const std::string& key) {
  std::vector<int> out;
  for (size_t at = log.find(event); at != std::string::npos; at = log.find(event, at + 1)) {
    size_t eol = log.find('\n', at);
    std::string line = log.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
    size_t k = line.find(" " + key + "=");
    if (k != std::string::npos) out.push_back(std::atoi(line.c_str() + k + key.size() + 2));
  }
  return out;
}

size_t Count(const std::string& log, const std::string& what) {
  size_t n = 0;
  for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
  return n;
}

// `n` copies of a corpus CT image (~0.5 MB) with fresh UIDs, in `dir`; their
// SOP Instance UIDs into *uids.
std::vector<std::string> MakeCt(const std::string& dir, int n, std::vector<std::string>* uids) {
  return MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", dir, n, uids);
}

// The sender's options: rules in `dir` forwarding everything to "pacs" (AE
// PACS on 127.0.0.1:`peer_port`, only name, AE title, host, port and
// hold_study = `hold`), connect_timeout_s 10.
RelaisOptions SenderTo(const std::string& dir, uint16_t peer_port, const std::string& hold) {
  const std::string rules = dir + "/rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer_port) + "\nhold_study = \"" + hold +
                       "\"\n\n[[rule]]\nname = \"all\"\nforward = [\"pacs\"]\n");
  RelaisOptions o;
  o.extra = "\n[delivery]\nconnect_timeout_s = 10\n\n[rules]\npath = \"" + rules + "\"\n";
  return o;
}

// Sends `files` to the relais on `port` with one storescu association.
RunResult Storescu(uint16_t port, std::vector<std::string>::const_iterator begin,
                   std::vector<std::string>::const_iterator end) {
  std::vector<std::string> argv = {"storescu", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(port)};
  argv.insert(argv.end(), begin, end);
  return RunCommand(argv, 600);
}

// Waits (5 min at most, looking every `poll_ms`) until `peer` holds `n`
// objects; returns how many it holds.
size_t WaitArrived(const RelaisProcess& peer, size_t n, int poll_ms) {
  const int64_t deadline = NowMs() + 300000;
  size_t arrived = 0;
  while (NowMs() < deadline) {
    arrived = peer.StoreList().size();
    if (arrived >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return arrived;
}

// Sends 240 CT images through a sender relais to a receiver relais whose
// listener takes at most `limit` associations; checks what the comment at
// the top says. Returns the number of refusals the sender logged.
size_t SendThroughLimitedPeer(uint32_t limit) {
  TempDir tmp;
  const std::string src = tmp / "src", peer_dir = tmp / "peer", relais_dir = tmp / "relais";
  for (const std::string& d : {src, peer_dir, relais_dir}) EXPECT_EQ(mkdir(d.c_str(), 0755), 0);
  constexpr int kObjects = 240;  // ~130 MB of CT: long enough to ramp up
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCt(src, kObjects, &uids);
  EXPECT_EQ(files.size(), static_cast<size_t>(kObjects));

  RelaisOptions peer_options;
  peer_options.ae_title = "PACS";
  peer_options.max_associations = limit;
  RelaisProcess peer(peer_dir, peer_options);
  if (!peer.Start()) {
    ADD_FAILURE() << peer.Log();
    return 0;
  }

  RelaisProcess relais(relais_dir, SenderTo(relais_dir, peer.port(), "3s"));
  if (!relais.Start()) {
    ADD_FAILURE() << relais.Log();
    return 0;
  }

  RunResult sent = Storescu(relais.port(), files.begin(), files.end());
  EXPECT_EQ(sent.exit_code, 0) << sent.output;

  // Everything arrives at the peer.
  EXPECT_EQ(WaitArrived(peer, uids.size(), 500), uids.size()) << relais.Log();
  std::map<std::string, std::string> got = peer.StoreList();
  for (const std::string& uid : uids) EXPECT_EQ(got.count(uid), 1u) << uid;

  const std::string log = relais.Log();
  // No object failed, was retried or dead-lettered; a refusal is not a link failure.
  EXPECT_EQ(Count(log, "event=send-failed"), 0u) << log;
  EXPECT_EQ(Count(log, "event=dead-letter"), 0u) << log;
  EXPECT_EQ(Count(log, "event=link-failure"), 0u) << log;
  EXPECT_EQ(Count(log, "event=destination-down"), 0u) << log;
  // The target: after a refusal never above what the peer took, at most 4.
  std::vector<int> targets = Values(log, "event=concurrency-target", "target");
  size_t refusals = Count(log, "event=association-refused-at-limit");
  std::vector<int> refused_open = Values(log, "event=association-refused-at-limit", "open");
  for (int open : refused_open) EXPECT_LE(open, static_cast<int>(limit));
  size_t first_refusal = log.find("event=association-refused-at-limit");
  if (first_refusal != std::string::npos) {
    std::vector<int> after = Values(log.substr(first_refusal), "event=concurrency-target", "target");
    for (int t : after) EXPECT_LE(t, static_cast<int>(limit)) << log;
  }
  int last = targets.empty() ? 2 : targets.back();
  if (refusals > 0) last = std::min(last, refused_open.back());
  EXPECT_LE(last, static_cast<int>(limit)) << log;
  std::printf("targets:");
  for (int t : targets) std::printf(" %d", t);
  std::printf("; %zu refusal(s) by the peer; peer log: %zu association-rejected\n", refusals,
              Count(peer.Log(), "event=association-rejected"));
  EXPECT_EQ(relais.Terminate(), 0);
  EXPECT_EQ(peer.Terminate(), 0);
  return refusals;
}

bool HaveStorescu() { return RunCommand({"sh", "-c", "command -v storescu"}, 10).exit_code == 0; }

TEST(AdaptiveConcurrencyTest, LanPeerThatRefusesBeyondFourGetsEverythingAndTheTargetSettlesAtOrUnderFour) {
  if (!HaveStorescu()) GTEST_SKIP() << "storescu not installed";
  SendThroughLimitedPeer(4);
}

// A peer that takes one association: the second one the adaptive start
// opens is refused, which teaches the limit without failing anything.
TEST(AdaptiveConcurrencyTest, PeerThatTakesOneAssociationIsLearntWithoutFailures) {
  if (!HaveStorescu()) GTEST_SKIP() << "storescu not installed";
  EXPECT_GE(SendThroughLimitedPeer(1), 1u);
}

// kill -9 of the sender while adaptive concurrency ramps up (the whole
// study became due at once, associations are being added): after a restart
// every object arrives at least once (the receiver acknowledges an identical
// copy again without keeping it twice), and what arrived is what was sent.
TEST(AdaptiveConcurrencyTest, KillNineDuringRampUpLosesNothing) {
  if (!HaveStorescu()) GTEST_SKIP() << "storescu not installed";
  TempDir tmp;
  const std::string src = tmp / "src", peer_dir = tmp / "peer", relais_dir = tmp / "relais";
  for (const std::string& d : {src, peer_dir, relais_dir}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  constexpr int kObjects = 200;
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCt(src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  RelaisOptions peer_options;
  peer_options.ae_title = "PACS";
  RelaisProcess peer(peer_dir, peer_options);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  RelaisProcess relais(relais_dir, SenderTo(relais_dir, peer.port(), "2s"));
  ASSERT_TRUE(relais.Start()) << relais.Log();
  RunResult sent = Storescu(relais.port(), files.begin(), files.end());
  ASSERT_EQ(sent.exit_code, 0) << sent.output;

  // Kill once the target has risen (or, at the latest, once objects arrive).
  int64_t deadline = NowMs() + 120000;
  while (NowMs() < deadline && relais.Log().find("event=concurrency-target") == std::string::npos &&
         peer.StoreList().size() < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const size_t before = peer.StoreList().size();
  relais.Kill9();
  std::printf("killed with %zu of %d delivered\n", before, kObjects);
  EXPECT_LT(before, static_cast<size_t>(kObjects)) << "delivered everything before the kill: nothing tested";
  ASSERT_TRUE(relais.Start()) << relais.Log();

  WaitArrived(peer, uids.size(), 250);
  std::map<std::string, std::string> got = peer.StoreList();
  for (const std::string& uid : uids) EXPECT_EQ(got.count(uid), 1u) << uid;
  // Intact: a sample of what the receiver stored is what storescu sent.
  for (int i : {0, kObjects / 3, kObjects / 2, kObjects - 1}) {
    const std::string out = tmp / ("export-" + std::to_string(i) + ".dcm");
    ASSERT_TRUE(peer.Export(uids[i], out)) << uids[i];
    std::string why;
    EXPECT_TRUE(SameDataSet(files[i], out, &why)) << files[i] << ": " << why;
  }
  EXPECT_EQ(relais.Terminate(), 0);
  EXPECT_EQ(peer.Terminate(), 0);
}

// What a peer refused is kept across a restart (router/deliver/peer_limits.h,
// `<store>/peer-limits.tsv`, 24 h): a peer that takes one association
// refuses the second one the adaptive start opens; after a restart the
// sender opens only one, so the peer is not refused again, and every object
// of both runs arrives.
TEST(AdaptiveConcurrencyTest, LearntLimitIsKeptAcrossARestart) {
  if (!HaveStorescu()) GTEST_SKIP() << "storescu not installed";
  TempDir tmp;
  const std::string src = tmp / "src", peer_dir = tmp / "peer", relais_dir = tmp / "relais";
  for (const std::string& d : {src, peer_dir, relais_dir}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  constexpr int kObjects = 60;
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCt(src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  RelaisOptions peer_options;
  peer_options.ae_title = "PACS";
  peer_options.max_associations = 1;
  RelaisProcess peer(peer_dir, peer_options);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  RelaisProcess relais(relais_dir, SenderTo(relais_dir, peer.port(), "2s"));
  ASSERT_TRUE(relais.Start()) << relais.Log();
  auto send = [&](size_t from, size_t to) {
    RunResult sent = Storescu(relais.port(), files.begin() + static_cast<std::ptrdiff_t>(from),
                              files.begin() + static_cast<std::ptrdiff_t>(to));
    EXPECT_EQ(sent.exit_code, 0) << sent.output;
    EXPECT_EQ(WaitArrived(peer, to, 250), to) << relais.Log();
  };

  send(0, kObjects / 2);
  const std::string first = relais.Log();
  ASSERT_GE(Count(first, "event=association-refused-at-limit"), 1u) << first;
  const std::string kept = ReadFile(relais.store_path() + "/peer-limits.tsv");
  EXPECT_NE(kept.find("pacs\tPACS@127.0.0.1:" + std::to_string(peer.port()) + "\t1\t"), std::string::npos) << kept;
  ASSERT_EQ(relais.Terminate(), 0);
  const size_t peer_refusals = Count(peer.Log(), "event=association-rejected");

  ASSERT_TRUE(relais.Start()) << relais.Log();
  send(kObjects / 2, kObjects);
  const std::string second = relais.Log().substr(first.size());
  EXPECT_NE(second.find("event=concurrency-ceiling-restored ceiling=1"), std::string::npos) << second;
  EXPECT_EQ(Count(second, "event=association-refused-at-limit"), 0u) << second;
  EXPECT_EQ(Count(peer.Log(), "event=association-rejected"), peer_refusals) << "the restarted sender asked again";
  for (int t : Values(second, "event=concurrency-target", "target")) EXPECT_LE(t, 1) << second;
  std::map<std::string, std::string> got = peer.StoreList();
  for (const std::string& uid : uids) EXPECT_EQ(got.count(uid), 1u) << uid;
  EXPECT_EQ(relais.Terminate(), 0);
  EXPECT_EQ(peer.Terminate(), 0);
}

}  // namespace
}  // namespace relais::itest
