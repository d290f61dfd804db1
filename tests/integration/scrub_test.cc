// The background scrub ([store] scrub_rate) in a real `relais serve`: one
// byte of a stored object flipped on disk (as bit rot would) is found and
// named in the log (event=scrub-damaged with its id and UID) without a
// re-send asking for it, the alert scrub-damaged is raised, and the store
// is left as it is.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "harness.h"

namespace relais::itest {
namespace {

TEST(ScrubTest, FlippedByteOnDiskIsFoundAndLoggedWithItsUid) {
  TempDir dir;
  std::string src = dir / "objects";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, 3, &uids);
  ASSERT_EQ(files.size(), 3u);

  RelaisOptions options;
  // Chunks stored as received, so that the test finds the bytes in data.mdb.
  options.extra = "compression_level = 0\nscrub_rate = \"64MiB/s\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(relais.Terminate(), 0) << relais.Log();

  // Flip one byte in the middle of the second object's data set. Each copy
  // differs from the others only in its UIDs, so take bytes just after its
  // own SOP Instance UID (the data set is stored as received).
  std::string data;
  ASSERT_TRUE(ReadDataSetAfterGroupLength(files[1], &data));
  size_t at_uid = data.find(uids[1]);
  ASSERT_NE(at_uid, std::string::npos);
  const std::string needle = data.substr(at_uid, uids[1].size() + 200);
  std::string mdb = ReadFile(relais.store_path() + "/data.mdb");
  size_t hit = mdb.find(needle);
  ASSERT_NE(hit, std::string::npos) << "the object's bytes are not in data.mdb as received";
  // The uid index and the record hold the UID too, but never followed by
  // 200 bytes of the data set: this hit is the chunk.
  {
    std::fstream f(relais.store_path() + "/data.mdb", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(hit + needle.size() - 10));
    char c = static_cast<char>(mdb[hit + needle.size() - 10] ^ 0x20);
    f.write(&c, 1);
  }

  ASSERT_TRUE(relais.Start()) << relais.Log();
  bool found = false;
  for (int i = 0; i < 600 && !found; ++i) {  // generous: 60 s for a few objects
    found = relais.Log().find("event=scrub-damaged") != std::string::npos;
    if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string log = relais.Log();
  ASSERT_TRUE(found) << log;
  size_t line_at = log.find("event=scrub-damaged");
  std::string line = log.substr(line_at, log.find('\n', line_at) - line_at);
  EXPECT_NE(line.find(uids[1]), std::string::npos) << line;
  EXPECT_NE(line.find("checksum"), std::string::npos) << line;
  for (size_t i : {size_t{0}, size_t{2}}) EXPECT_EQ(log.find(uids[i], line_at), std::string::npos) << log;
  // The alert follows at the next evaluation of the alerts (every 10 s).
  bool alerted = false;
  for (int i = 0; i < 1200 && !alerted; ++i) {  // generous: 120 s
    alerted = relais.Log().find("alert=scrub-damaged subject=store state=raised") != std::string::npos;
    if (!alerted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(alerted) << relais.Log();
  EXPECT_TRUE(relais.running());
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  // The scrub changed nothing: the object is still there, for --repair.
  EXPECT_EQ(relais.StoreList().count(uids[1]), 1u);
}

}  // namespace
}  // namespace relais::itest
