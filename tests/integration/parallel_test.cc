// Four storescu processes at once against one Relais, 300 objects each: every
// object is acknowledged, listed exactly once and exports intact. Run with
// and without TCP_NODELAY in storescu (DCMTK reads that environment
// variable; Debian's build leaves Nagle on by default). Only behaviour is
// checked, never timing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <set>

#include "harness.h"

namespace relais::itest {
namespace {

constexpr int kSenders = 4;
constexpr int kPerSender = 300;

void SendInParallel(const std::map<std::string, std::string>& env) {
  TempDir dir;
  std::vector<std::vector<std::string>> files(kSenders);
  std::vector<std::string> uids;
  for (int s = 0; s < kSenders; ++s) {
    std::string sub = dir / ("sender" + std::to_string(s));
    ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
    files[s] = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", sub, kPerSender, &uids);
    ASSERT_EQ(files[s].size(), static_cast<size_t>(kPerSender));
  }
  ASSERT_EQ(std::set<std::string>(uids.begin(), uids.end()).size(), uids.size()) << "UIDs are not unique";

  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<Child> senders(kSenders);
  for (int s = 0; s < kSenders; ++s) {
    std::vector<std::string> argv = {"storescu",  "-v",
                                     "-aec",      "RELAIS",
                                     "-aet",      "SENDER" + std::to_string(s),
                                     "127.0.0.1", std::to_string(relais.port())};
    argv.insert(argv.end(), files[s].begin(), files[s].end());
    ASSERT_TRUE(senders[s].Start(argv, dir / ("storescu" + std::to_string(s) + ".log"), env));
  }
  for (int s = 0; s < kSenders; ++s) {
    int status = senders[s].Wait(600);
    std::string log = senders[s].ReadLog();
    ASSERT_NE(status, -1) << "storescu " << s << " did not finish\n"
                          << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "storescu " << s << " status " << status << "\n"
                                                               << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
    int acknowledged = 0;
    for (const auto& [path, o] : ParseStorescuOutcomes(log)) acknowledged += o.acknowledged ? 1 : 0;
    EXPECT_EQ(acknowledged, kPerSender) << "storescu " << s;
  }
  ASSERT_TRUE(relais.running()) << relais.Log();

  std::map<std::string, std::string> listed = relais.StoreList();
  EXPECT_EQ(listed.size(), uids.size());
  for (const std::string& uid : uids) EXPECT_EQ(listed.count(uid), 1u) << uid << " not listed";
  // Each sender's objects carry its calling AE title.
  for (int s = 0; s < kSenders; ++s) {
    const std::string& uid = uids[s * kPerSender + kPerSender / 2];
    EXPECT_EQ(JsonField(listed[uid], "calling_ae"), "SENDER" + std::to_string(s)) << listed[uid];
  }

  // The comparison can fail: two copies differ (in their UID) byte-wise.
  std::string differ;
  EXPECT_FALSE(SameDataSet(files[0][0], files[0][1], &differ));
  // Spot-check exports: first, middle and last object of every sender.
  for (int s = 0; s < kSenders; ++s) {
    for (int i : {0, kPerSender / 2, kPerSender - 1}) {
      size_t n = static_cast<size_t>(s * kPerSender + i);
      std::string out = dir / "export.dcm";
      ASSERT_TRUE(relais.Export(uids[n], out)) << uids[n];
      std::string why;
      EXPECT_TRUE(SameDataSet(files[s][i], out, &why)) << files[s][i] << ": " << why;
    }
  }
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

TEST(ParallelTest, FourStorescuWithNagle) { SendInParallel({}); }

TEST(ParallelTest, FourStorescuWithTcpNodelay) { SendInParallel({{"TCP_NODELAY", "1"}}); }

}  // namespace
}  // namespace relais::itest
