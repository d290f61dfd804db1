// A store that fills up: Relais refuses further C-STOREs with 0xA700
// (Refused: Out of Resources, PS3.4 Table B.2-1), keeps everything it
// acknowledged before, and goes on serving.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "harness.h"

namespace relais::itest {
namespace {

constexpr int kObjects = 150;  // ~39 KB each: far more than 1 MiB holds

TEST(StoreFullTest, RefusesWithOutOfResourcesAndKeepsWhatItAcknowledged) {
  TempDir dir;
  std::string src = dir / "objects";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));

  RelaisOptions options;
  options.max_size = "1MiB";  // the smallest the config accepts
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // -d prints the numeric DIMSE status of every response; -nh goes on after
  // a refusal, so every later object is answered too.
  std::vector<std::string> argv = {
      "storescu", "-d", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 600);
  ASSERT_NE(r.exit_code, -1) << r.output.substr(r.output.size() > 4000 ? r.output.size() - 4000 : 0);
  ASSERT_TRUE(relais.running()) << relais.Log();

  std::map<std::string, StorescuOutcome> outcomes = ParseStorescuOutcomes(r.output);
  std::vector<size_t> acknowledged;
  int refused = 0;
  int first_refused = -1;
  for (size_t i = 0; i < files.size(); ++i) {
    const StorescuOutcome& o = outcomes[files[i]];
    ASSERT_TRUE(o.sent) << files[i] << " was not sent: " << o.reason;
    if (o.acknowledged) {
      acknowledged.push_back(i);
      continue;
    }
    ++refused;
    if (first_refused < 0) first_refused = static_cast<int>(i);
    EXPECT_EQ(o.status, 0xA700) << files[i] << ": " << o.response << "\n" << o.reason;
  }
  std::printf("%zu acknowledged, %d refused, first refusal at object %d\n", acknowledged.size(), refused,
              first_refused);
  ASSERT_GT(refused, 0) << "the store never filled up";
  ASSERT_GT(acknowledged.size(), 0u) << "nothing fitted in the store";

  // Everything acknowledged is listed and exports intact; nothing refused is.
  std::map<std::string, std::string> listed = relais.StoreList();
  EXPECT_EQ(listed.size(), acknowledged.size());
  for (size_t i : acknowledged) {
    ASSERT_EQ(listed.count(uids[i]), 1u) << "acknowledged " << uids[i] << " not listed";
    std::string out = dir / "export.dcm";
    ASSERT_TRUE(relais.Export(uids[i], out)) << uids[i];
    std::string why;
    EXPECT_TRUE(SameDataSet(files[i], out, &why)) << files[i] << ": " << why;
  }
  for (size_t i = 0; i < files.size(); ++i) {
    if (!outcomes[files[i]].acknowledged) {
      EXPECT_EQ(listed.count(uids[i]), 0u) << "refused " << uids[i] << " listed";
    }
  }

  // Still alive and answering.
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(echo.exit_code, 0) << echo.output << relais.Log();
  // A full store keeps refusing cleanly on a new association, too.
  RunResult again = RunCommand({"storescu", "-d", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()),
                                files[static_cast<size_t>(first_refused)]});
  EXPECT_EQ(ParseStorescuOutcomes(again.output)[files[first_refused]].status, 0xA700) << again.output;
  EXPECT_TRUE(relais.running()) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  // A full store opens again after a restart, with the same objects.
  ASSERT_TRUE(relais.Start()) << relais.Log();
  EXPECT_EQ(relais.StoreList().size(), acknowledged.size());
  RunResult echo2 = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(echo2.exit_code, 0) << echo2.output << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
