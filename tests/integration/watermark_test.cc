// The store's water marks, end to end (router/operate/storage_watch.h): a small store
// whose only destination is down fills up to its high-water mark; Relais then
// answers new C-STOREs 0xA700 (Refused: Out of Resources, PS3.4 Table B.2-1)
// with a reason, logs and audits it, and keeps everything it acknowledged.
// The destination comes up, delivery drains the store below its low-water
// mark, intake reopens, and the objects refused before are accepted. Every
// object acknowledged with Success reaches the destination with the bytes
// it was sent with; nothing refused is delivered.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

void SleepMs(int ms) { ::usleep(static_cast<useconds_t>(ms) * 1000); }

struct Batch {
  std::vector<std::string> acknowledged;  // file paths
  std::vector<std::string> refused;       // answered 0xA700
  std::string output;
};

// One storescu association with `files`; -d prints each response's status
// and Error Comment, -nh goes on after a refusal.
Batch Send(uint16_t port, const std::vector<std::string>& files) {
  std::vector<std::string> argv = {"storescu", "-d", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(port)};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 300);
  Batch b;
  b.output = r.output;
  std::map<std::string, StorescuOutcome> outcomes = ParseStorescuOutcomes(r.output);
  for (const std::string& f : files) {
    const StorescuOutcome& o = outcomes[f];
    if (o.acknowledged) {
      b.acknowledged.push_back(f);
    } else {
      EXPECT_EQ(o.status, 0xA700) << f << " not acknowledged, not refused with 0xA700: " << o.response << " "
                                  << o.reason;
      b.refused.push_back(f);
    }
  }
  return b;
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

TEST(WatermarkTest, FullStoreRefusesThenReopensAfterDrainingAndLosesNothing) {
  TempDir dir;
  ASSERT_EQ(::mkdir((dir / "copies").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "peer").c_str(), 0755), 0);
  constexpr int kFiles = 260;  // ~39 KB each, far more than half of 4 MiB
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", dir / "copies", kFiles, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kFiles));
  std::map<std::string, std::string> uid_of;
  for (size_t i = 0; i < files.size(); ++i) uid_of[files[i]] = uids[i];

  const uint16_t peer_port = FreePort();  // nothing listens there yet
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer_port) +
                       "\nmax_associations = 2\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n"
                       "[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n");
  const std::string audit = dir / "audit.jsonl";
  // The storage-high alert runs this command when intake closes and opens.
  const std::string ran = dir / "alerts.txt";
  const std::string script = dir / "alert.sh";
  WriteFile(script,
            "#!/bin/sh\ncat > /dev/null\necho \"$RELAIS_ALERT|$RELAIS_ALERT_SUBJECT|$RELAIS_ALERT_STATE\" >> '" + ran +
                "'\n");
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  RelaisOptions options;
  options.max_size = "4MiB";
  // Continues [store]: intake closes at half of 4 MiB (about 2 MiB, a few
  // dozen objects) and reopens under a quarter.
  options.extra =
      "high_water = 0.5\nlow_water = 0.25\n"
      "\n[delivery]\ndown_after_failures = 2\nconnect_timeout_s = 2\nidle_release_s = 1\n"
      "\n[rules]\npath = \"" +
      rules +
      "\"\n"
      "\n[audit]\npath = \"" +
      audit +
      "\"\n"
      "\n[alerts]\ncommand = \"" +
      script + "\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // 1. Send in small associations (the watch samples once a second) until
  // Relais refuses.
  std::vector<std::string> acknowledged;
  std::vector<std::string> refused;
  size_t next = 0;
  std::string refusal_output;
  while (refused.empty()) {
    ASSERT_LT(next, files.size()) << "the store never reached its high-water mark\n" << relais.Log();
    std::vector<std::string> batch(files.begin() + next, files.begin() + std::min(next + 4, files.size()));
    next += batch.size();
    Batch b = Send(relais.port(), batch);
    acknowledged.insert(acknowledged.end(), b.acknowledged.begin(), b.acknowledged.end());
    refused.insert(refused.end(), b.refused.begin(), b.refused.end());
    if (!b.refused.empty()) refusal_output = b.output;
  }
  std::printf("intake closed after %zu objects acknowledged; %zu refused in that association\n", acknowledged.size(),
              refused.size());
  ASSERT_GE(acknowledged.size(), 12u) << "closed too early for a 50% mark of 4 MiB";
  // storescu shows the Error Comment: what happened and what to do.
  EXPECT_NE(refusal_output.find("high-water 50%"), std::string::npos) << refusal_output;
  EXPECT_NE(refusal_output.find("retry later"), std::string::npos) << refusal_output;
  ASSERT_TRUE(relais.running()) << relais.Log();
  {
    const std::string log = relais.Log();
    EXPECT_EQ(CountOf(log, "event=intake-closed"), 1) << log;
    EXPECT_EQ(CountOf(log, "event=intake-reopened"), 0) << log;
  }
  // Still refused while the destination is down (nothing drains).
  {
    SleepMs(1500);
    Batch again = Send(relais.port(), {refused[0]});
    EXPECT_EQ(again.refused.size(), 1u) << again.output;
  }
  // Still answering C-ECHO.
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(echo.exit_code, 0) << echo.output;

  // 2. The destination comes up: delivery drains, intake reopens.
  StorescpPeer peer(dir / "peer", [&] {
    StorescpOptions o;
    o.ae_title = "ARCHIVE";
    o.port = peer_port;
    return o;
  }());
  ASSERT_TRUE(peer.Start()) << peer.Log();
  int64_t deadline = NowMs() + 120000;
  while (CountOf(relais.Log(), "event=intake-reopened") == 0) {
    ASSERT_LT(NowMs(), deadline) << "intake never reopened\n" << relais.Log();
    SleepMs(200);
  }

  // 3. The refused objects and a few new ones are accepted now.
  std::vector<std::string> rest = refused;
  for (size_t i = 0; i < 8 && next < files.size(); ++i) rest.push_back(files[next++]);
  Batch b = Send(relais.port(), rest);
  EXPECT_EQ(b.acknowledged.size(), rest.size()) << b.output << relais.Log();
  acknowledged.insert(acknowledged.end(), b.acknowledged.begin(), b.acknowledged.end());

  // 4. Everything acknowledged arrives, intact, exactly the acknowledged set.
  std::set<std::string> want;
  for (const std::string& f : acknowledged) want.insert(uid_of[f]);
  std::map<std::string, std::vector<std::string>> received;
  deadline = NowMs() + 120000;
  for (;;) {
    received = peer.Received();
    size_t have = 0;
    for (const std::string& u : want) have += received.count(u);
    if (have == want.size()) break;
    ASSERT_LT(NowMs(), deadline) << have << " of " << want.size() << " arrived\n" << relais.Log();
    SleepMs(250);
  }
  EXPECT_EQ(received.count(""), 0u) << "a received file DCMTK cannot read";
  for (const auto& [uid, paths] : received) {
    EXPECT_EQ(want.count(uid), 1u) << "delivered but never acknowledged: " << uid;
  }
  for (const std::string& f : acknowledged) {
    const std::vector<std::string>& got = received[uid_of[f]];
    ASSERT_FALSE(got.empty()) << f;
    for (const std::string& g : got) {
      std::string why;
      EXPECT_TRUE(SameDataSet(f, g, &why)) << f << " vs " << g << ": " << why;
    }
  }

  // The log and the audit trail tell the story: one closing, one reopening.
  const std::string log = relais.Log();
  EXPECT_EQ(CountOf(log, "event=intake-closed"), 1) << log;
  EXPECT_EQ(CountOf(log, "event=intake-reopened"), 1) << log;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  const std::string trail = ReadFile(audit);
  EXPECT_EQ(CountOf(trail, "\"kind\":\"storage\""), 2) << trail.substr(0, 2000);
  EXPECT_EQ(CountOf(trail, "\"event\":\"intake-closed\""), 1);
  EXPECT_EQ(CountOf(trail, "\"event\":\"intake-reopened\""), 1);
  EXPECT_GE(CountOf(trail, "0xA700"), static_cast<int>(refused.size()) + 1) << "each refusal is audited";
  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  // The alert was raised at the closing and resolved at the reopening (the
  // command runs at once: StorageWatch tells Alerts on each crossing).
  EXPECT_EQ(ReadFile(ran), "storage-high|store|raised\nstorage-high|store|resolved\n");
}

}  // namespace
}  // namespace relais::itest
