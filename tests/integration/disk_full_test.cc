// The disk under the store filling up (not the store's max_size): the store
// lives on a small tmpfs the test mounts, with max_size far above it, so
// LMDB's writes fail with ENOSPC. Relais must refuse with 0xA700 (Refused:
// Out of Resources, PS3.4 Table B.2-1), keep everything it acknowledged
// (through a kill -9 mid-fill too), and take objects again once space is
// freed, without a restart.
//
// The water marks are set to 100% / 99% so that the write failure itself is
// what refuses (the storage watch would otherwise close intake a little
// earlier, with the same 0xA700).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "harness.h"
#include "tmpfs.h"

namespace relais::itest {
namespace {

constexpr int kObjects = 320;  // ~39 KB each: more than the free space holds

std::vector<std::string> StorescuArgv(uint16_t port, const std::vector<std::string>& files) {
  // -d prints the numeric DIMSE status of every response; -nh goes on after
  // a refusal, so every later object is answered too.
  std::vector<std::string> argv = {"storescu", "-d", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(port)};
  argv.insert(argv.end(), files.begin(), files.end());
  return argv;
}

TEST(DiskFullTest, FullFilesystemRefusesWithOutOfResourcesKeepsAcknowledgedAndResumes) {
  TempDir dir;
  std::string src = dir / "objects";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  // Declared after `dir`: unmounted before the directory is removed.
  TmpfsMount fs(dir / "store", "16m");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (" << fs.error() << "): this test needs root (CI has it)";
  // Leaves about 5 MiB for the store: room for a hundred-odd objects.
  const std::string filler = dir / "store/filler.bin";
  ASSERT_EQ(WriteFiller(filler, 11u << 20), 11u << 20);

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < files.size(); ++i) index_of[files[i]] = i;

  RelaisOptions options;
  options.max_size = "1GiB";  // far more than the filesystem
  options.extra = "high_water = \"100%\"\nlow_water = \"99%\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::set<size_t> acknowledged;
  int refused = 0;

  // 1. Fill, and kill -9 relais once refusals have started (mid-fill): the
  // storescu log is polled, so the kill lands wherever it lands.
  {
    Child scu;
    ASSERT_TRUE(scu.Start(StorescuArgv(relais.port(), files), dir / "scu1.log"));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
    while (scu.running() && std::chrono::steady_clock::now() < deadline) {
      if (scu.ReadLog().find("0xa700") != std::string::npos || scu.ReadLog().find("0xA700") != std::string::npos) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    relais.Kill9();
    scu.Wait(60);
    std::map<std::string, StorescuOutcome> outcomes = ParseStorescuOutcomes(scu.ReadLog());
    for (const auto& [file, o] : outcomes) {
      if (o.acknowledged) acknowledged.insert(index_of[file]);
      if (o.sent && !o.acknowledged && o.status != -1) {
        EXPECT_EQ(o.status, 0xA700) << file << ": " << o.response << "\n" << o.reason;
        ++refused;
      }
    }
    std::printf("before kill -9: %zu acknowledged, %d refused\n", acknowledged.size(), refused);
    ASSERT_GT(acknowledged.size(), 0u) << scu.ReadLog().substr(0, 4000) << relais.Log();
  }

  // 2. Restart on the full disk: everything acknowledged is there.
  ASSERT_TRUE(relais.Start()) << relais.Log();
  {
    std::map<std::string, std::string> listed = relais.StoreList();
    for (size_t i : acknowledged) EXPECT_EQ(listed.count(uids[i]), 1u) << "acknowledged " << uids[i] << " lost";
  }

  // 3. Send all the others until the disk refuses: 0xA700, relais serving.
  std::vector<std::string> rest;
  for (size_t i = 0; i < files.size(); ++i) {
    if (acknowledged.count(i) == 0) rest.push_back(files[i]);
  }
  std::vector<std::string> refused_files;
  {
    RunResult r = RunCommand(StorescuArgv(relais.port(), rest), 600);
    ASSERT_NE(r.exit_code, -1) << r.output.substr(r.output.size() > 4000 ? r.output.size() - 4000 : 0);
    ASSERT_TRUE(relais.running()) << relais.Log();
    std::map<std::string, StorescuOutcome> outcomes = ParseStorescuOutcomes(r.output);
    for (const std::string& f : rest) {
      const StorescuOutcome& o = outcomes[f];
      ASSERT_TRUE(o.sent) << f << " was not sent: " << o.reason;
      if (o.acknowledged) {
        acknowledged.insert(index_of[f]);
      } else {
        EXPECT_EQ(o.status, 0xA700) << f << ": " << o.response << "\n" << o.reason;
        refused_files.push_back(f);
      }
    }
    std::printf("after restart: %zu acknowledged in all, %zu refused\n", acknowledged.size(), refused_files.size());
    ASSERT_GT(refused_files.size(), 0u) << "the disk never filled up";
  }
  // LMDB reports a short write of its pages as EIO, a refused one as ENOSPC:
  // either way the object is refused as a write failure, not a full map.
  {
    std::string log = relais.Log();
    EXPECT_TRUE(log.find("store cannot write") != std::string::npos ||
                log.find("No space left on device") != std::string::npos)
        << log;
  }

  // Still alive and answering; verify is clean on the full disk.
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(echo.exit_code, 0) << echo.output << relais.Log();
  RunResult verify = RunCommand({RelaisBinary(), "store", "verify", "--config", relais.config_path()}, 300);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_NE(verify.output.find("verify: OK"), std::string::npos) << verify.output;

  // 4. Space freed: the same relais takes the refused objects now.
  ASSERT_EQ(::unlink(filler.c_str()), 0);
  {
    RunResult r = RunCommand(StorescuArgv(relais.port(), refused_files), 600);
    std::map<std::string, StorescuOutcome> outcomes = ParseStorescuOutcomes(r.output);
    size_t taken = 0;
    for (const std::string& f : refused_files) {
      if (outcomes[f].acknowledged) {
        acknowledged.insert(index_of[f]);
        ++taken;
      }
    }
    // 11 MiB freed hold more than the first few refused objects.
    EXPECT_GT(taken, 0u) << r.output.substr(r.output.size() > 4000 ? r.output.size() - 4000 : 0) << relais.Log();
    std::printf("after freeing space: %zu more acknowledged\n", taken);
  }
  ASSERT_TRUE(relais.running()) << relais.Log();

  // 5. Every acknowledged object is listed and byte-identical when exported.
  std::map<std::string, std::string> listed = relais.StoreList();
  EXPECT_EQ(listed.size(), acknowledged.size());
  for (size_t i : acknowledged) {
    ASSERT_EQ(listed.count(uids[i]), 1u) << "acknowledged " << uids[i] << " not listed";
    std::string out = dir / "export.dcm";
    ASSERT_TRUE(relais.Export(uids[i], out)) << uids[i];
    std::string why;
    EXPECT_TRUE(SameDataSet(files[i], out, &why)) << files[i] << ": " << why;
  }
  RunResult verify2 = RunCommand({RelaisBinary(), "store", "verify", "--config", relais.config_path()}, 300);
  EXPECT_NE(verify2.output.find("verify: OK"), std::string::npos) << verify2.output;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
