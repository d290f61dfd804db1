// Hot backups of a running Relais: while storescu sends objects to
// `relais serve`, backups are taken from this process through the store
// API (a read-only open next to the serving writer, as `relais backup`
// does); each restores into a store whose every object reads back with its
// checksum. A backup taken after the send finds every acknowledged object,
// byte for byte. The `relais backup` / `relais restore` commands themselves
// are exercised when the binary has them (skipped otherwise).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

#include "harness.h"
#include "store/store.h"

namespace relais::itest {
namespace {

constexpr int kObjects = 120;

Result<std::unique_ptr<store::Store>> OpenReadOnly(const std::string& path) {
  store::Options o;
  o.path = path;
  o.read_only = true;
  return store::Store::Open(o);
}

// Every object of the store at `path`: UID -> raw bytes (checksum verified
// by ReadObject). Fails the test on any read error.
std::map<std::string, std::string> ReadEverything(const std::string& path) {
  std::map<std::string, std::string> out;
  auto st = OpenReadOnly(path);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return out;
  Status s = (*st)->List([&](const store::ObjectMeta& m) {
    std::string bytes;
    Status r = (*st)->ReadObject(m.id, [&](std::span<const uint8_t> b) {
      bytes.append(reinterpret_cast<const char*>(b.data()), b.size());
      return Status::OK();
    });
    EXPECT_TRUE(r.ok()) << m.sop_instance_uid << ": " << r.ToString();
    EXPECT_EQ(bytes.size(), m.raw_size);
    out[m.sop_instance_uid] = std::move(bytes);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Backs up the store at `store_path` into `dir` from this process, restores
// it into `dir`-restored and returns what the restored store holds.
std::map<std::string, std::string> BackupAndRestore(const std::string& store_path, const std::string& dir,
                                                    uint64_t* manifest_objects) {
  auto st = OpenReadOnly(store_path);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return {};
  Status s = (*st)->Backup(dir, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  st->reset();
  auto info = store::Store::ReadBackupManifest(dir);
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  if (!info.ok()) return {};
  *manifest_objects = info->objects;
  s = store::Store::RestoreBackup(dir, dir + "-restored");
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ReadEverything(dir + "-restored");
}

TEST(BackupTest, HotBackupsWhileReceivingRestoreEveryObject) {
  TempDir dir;
  std::string src = dir / "objects";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));

  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> argv = {"storescu", "-d", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  Child sender;
  ASSERT_TRUE(sender.Start(argv, dir / "storescu.log"));

  // Hot backups while objects arrive, until the sender is done.
  int hot = 0;
  size_t last_count = 0;
  bool saw_partial = false;
  while (sender.running() || hot == 0) {
    if (!std::ifstream(relais.store_path() + "/data.mdb")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    uint64_t manifest_objects = 0;
    const std::string b = dir / ("hot" + std::to_string(hot++));
    std::map<std::string, std::string> got = BackupAndRestore(relais.store_path(), b, &manifest_objects);
    EXPECT_EQ(got.size(), manifest_objects) << b;
    EXPECT_GE(got.size(), last_count) << b << ": a later backup holds fewer objects";
    last_count = got.size();
    if (got.size() > 0 && got.size() < static_cast<size_t>(kObjects)) saw_partial = true;
    if (hot >= 20) break;
  }
  ASSERT_EQ(sender.Wait(300), 0) << sender.ReadLog();
  std::printf("%d hot backups while receiving (one caught the send half way: %s)\n", hot, saw_partial ? "yes" : "no");
  ASSERT_TRUE(relais.running()) << relais.Log();

  std::map<std::string, StorescuOutcome> outcomes = ParseStorescuOutcomes(sender.ReadLog());
  for (const std::string& f : files) ASSERT_TRUE(outcomes[f].acknowledged) << f << ": " << outcomes[f].reason;

  // A backup of the running store after the send: every object, byte for
  // byte as the serving store has it.
  uint64_t manifest_objects = 0;
  std::map<std::string, std::string> restored = BackupAndRestore(relais.store_path(), dir / "final", &manifest_objects);
  std::map<std::string, std::string> live = ReadEverything(relais.store_path());
  EXPECT_EQ(manifest_objects, static_cast<uint64_t>(kObjects));
  ASSERT_EQ(restored.size(), static_cast<size_t>(kObjects));
  for (const std::string& uid : uids) {
    ASSERT_EQ(restored.count(uid), 1u) << uid << " missing from the restored store";
    ASSERT_EQ(live.count(uid), 1u);
    EXPECT_TRUE(restored[uid] == live[uid]) << uid << " differs";
  }

  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

bool BinaryHasBackup() {
  RunResult r = RunCommand({RelaisBinary(), "--help"}, 30);
  return r.output.find("backup") != std::string::npos && r.output.find("restore") != std::string::npos;
}

TEST(BackupTest, BackupAndRestoreCommandsWhileServing) {
  if (!BinaryHasBackup()) GTEST_SKIP() << "relais has no backup/restore subcommands yet (router/cli/main.cc)";
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

  RunResult b = RunCommand({RelaisBinary(), "backup", "--config", relais.config_path(), dir / "bk"}, 120);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find("30 objects"), std::string::npos) << b.output;
  // Again into the same directory: refused, exit code 2.
  RunResult again = RunCommand({RelaisBinary(), "backup", "--config", relais.config_path(), dir / "bk"}, 120);
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("already holds a backup"), std::string::npos) << again.output;
  // Restore onto the live store: refused, the store is untouched.
  RunResult onto_live = RunCommand({RelaisBinary(), "restore", "--config", relais.config_path(), dir / "bk"}, 120);
  EXPECT_EQ(onto_live.exit_code, 2) << onto_live.output;
  EXPECT_NE(onto_live.output.find("move that directory away"), std::string::npos) << onto_live.output;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  // Move the store away, restore, serve again: every object is there.
  ASSERT_EQ(std::rename(relais.store_path().c_str(), (dir / "old-store").c_str()), 0);
  RunResult r = RunCommand({RelaisBinary(), "restore", "--config", relais.config_path(), dir / "bk"}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::map<std::string, std::string> listed = relais.StoreList();
  EXPECT_EQ(listed.size(), uids.size());
  for (const std::string& uid : uids) EXPECT_EQ(listed.count(uid), 1u) << uid;
  std::map<std::string, std::string> old_store = ReadEverything(dir / "old-store");
  std::map<std::string, std::string> restored = ReadEverything(relais.store_path());
  EXPECT_TRUE(old_store == restored);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
