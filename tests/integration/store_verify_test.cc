// `relais store verify` on a real store: clean while `relais serve` takes
// objects from storescu (it reads a snapshot next to the serving writer),
// then, with a chunk damaged on disk, it names the object, says it cannot be
// read back, and exits 1; `--repair`, while serving again, quarantines that
// object with the reason and leaves a store that verifies clean.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "harness.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::itest {
namespace {

TEST(StoreVerifyCommandTest, CleanWhileServingAndNamesADamagedObject) {
  TempDir dir;
  std::string src = dir / "objects";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, 30, &uids);
  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  ASSERT_EQ(RunCommand(argv, 300).exit_code, 0);

  RunResult clean = RunCommand({RelaisBinary(), "store", "verify", "--config", relais.config_path()}, 120);
  EXPECT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_NE(clean.output.find(": 30 objects"), std::string::npos) << clean.output;
  EXPECT_NE(clean.output.find("verify: OK"), std::string::npos) << clean.output;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  // Damage the first chunk of one object, as bit rot would: same length,
  // one byte changed.
  uint64_t id = 0;
  {
    store::Options o;
    o.path = relais.store_path();
    o.read_only = true;
    auto st = store::Store::Open(o);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    auto meta = (*st)->Find(uids[7]);
    ASSERT_TRUE(meta.ok()) << meta.status().ToString();
    id = meta->id;
  }
  {
    store::LmdbEnv env;
    ASSERT_TRUE(env.Open(relais.store_path(), 0, false).ok());
    store::Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    store::ChunkKey key(id, 0);
    std::span<const uint8_t> value;
    ASSERT_TRUE(txn.Get(env.dbis().chunks, key.val(), &value).ok());
    std::vector<uint8_t> changed(value.begin(), value.end());
    ASSERT_GT(changed.size(), 200u);
    changed[changed.size() / 2] ^= 0x5A;
    ASSERT_TRUE(txn.Put(env.dbis().chunks, key.val(), store::ToVal(std::span<const uint8_t>(changed))).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  RunResult bad = RunCommand({RelaisBinary(), "store", "verify", "--config", relais.config_path()}, 120);
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("problem: object " + std::to_string(id) + " (" + uids[7] + "): "), std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("[unreadable]"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("verify: 1 problem(s)"), std::string::npos) << bad.output;

  ASSERT_TRUE(relais.Start()) << relais.Log();
  RunResult repair = RunCommand({RelaisBinary(), "store", "verify", "--repair", "--config", relais.config_path()}, 120);
  EXPECT_EQ(repair.exit_code, 0) << repair.output;
  EXPECT_NE(repair.output.find("repair: 1 unreadable object(s) quarantined"), std::string::npos) << repair.output;
  EXPECT_NE(repair.output.find("quarantined: object " + std::to_string(id) + " (" + uids[7] + ") at "),
            std::string::npos)
      << repair.output;
  EXPECT_NE(repair.output.find("after: verify: OK"), std::string::npos) << repair.output;
  RunResult again = RunCommand({RelaisBinary(), "store", "verify", "--config", relais.config_path()}, 120);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find(": 29 objects"), std::string::npos) << again.output;
  // The serving relais still takes objects after the repair.
  std::vector<std::string> one = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), files[7]};
  EXPECT_EQ(RunCommand(one, 120).exit_code, 0);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  RunResult last = RunCommand({RelaisBinary(), "store", "verify", "--config", relais.config_path()}, 120);
  EXPECT_EQ(last.exit_code, 0) << last.output;
  EXPECT_NE(last.output.find(": 30 objects"), std::string::npos) << last.output;
}

}  // namespace
}  // namespace relais::itest
