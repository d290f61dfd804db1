// "Nothing acknowledged is lost" (DESIGN.md, Promises): three storescu
// processes send to Relais in parallel while Relais is killed with SIGKILL
// at a random moment, again and again on the same store. Every object that
// storescu saw answered with Success must be listed after the restart and
// export with exactly the data set bytes that were sent. Objects that were
// not acknowledged may or may not be there, but whatever is listed must
// export intact (no partial objects).
//
// Seed: RELAIS_CRASH_SEED (default fixed) makes the kill delays repeatable.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "kill9.h"
#include "store/store.h"

namespace relais::itest {
namespace {

constexpr char kSource[] = "pydicom__CT_small.dcm";
constexpr char kExplicitLittleEndian[] = "1.2.840.10008.1.2.1";
constexpr int kObjects = 600;
constexpr int kSenders = 3;
constexpr int kMinCycles = 8;
constexpr int kMaxCycles = 20;
// Files given to each storescu per cycle: enough that a 100-800 ms kill
// usually lands in the middle of the stream.
constexpr size_t kPerSender = 60;
// `relais store export` runs per cycle (each is a process; slow under ASan).
// Every listed object is also checked in-process each cycle (see below).
constexpr size_t kCliExportsPerCycle = 12;

// Writes `n` copies of the corpus CT, each with a fresh SOP Instance UID
// (and the matching Media Storage SOP Instance UID), as Explicit VR Little
// Endian Part 10 files in `dir`.
bool MakeObjects(const std::string& dir, int n, std::vector<SentObject>* out, std::string* error) {
  DcmFileFormat ff;
  std::string src = CorpusDir() + "/" + kSource;
  OFCondition c = ff.loadFile(src.c_str());
  if (c.bad()) {
    *error = "load " + src + ": " + c.text();
    return false;
  }
  // storescu does not send Data Set Trailing Padding (FFFC,FFFC), and its
  // DIMSE layer writes sequences with explicit length: make the files the
  // same, so that the file's data set bytes are exactly the bytes sent.
  ff.getDataset()->findAndDeleteElement(DCM_DataSetTrailingPadding, true, true);
  for (int i = 0; i < n; ++i) {
    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    c = ff.getDataset()->putAndInsertString(DCM_SOPInstanceUID, uid);
    if (c.bad()) {
      *error = std::string("set UID: ") + c.text();
      return false;
    }
    char name[32];
    std::snprintf(name, sizeof(name), "/obj%04d.dcm", i);
    SentObject o;
    if (!SaveSentObject(ff, EWM_updateMeta, dir + name, uid, &o, error)) return false;
    out->push_back(std::move(o));
  }
  return true;
}

class CrashTest : public ::testing::Test {
 protected:
  // Exports `uid` and checks it against what was sent. Returns "" when
  // intact, else what is wrong.
  std::string CheckExport(const RelaisProcess& relais, const SentObject& o) {
    std::string out = dir_ / "export.dcm";
    std::remove(out.c_str());
    if (!relais.Export(o.uid, out)) return "export failed";
    std::string file = ReadFile(out);
    std::string dataset;
    if (!DatasetAfterMeta(file, &dataset)) return "export is not a Part 10 file";
    std::string ts = Part10TransferSyntax(file);
    if (ts == kExplicitLittleEndian) {
      if (dataset != o.dataset) {
        return "data set differs (" + std::to_string(dataset.size()) + " bytes vs " + std::to_string(o.dataset.size()) +
               " sent)";
      }
      return "";
    }
    // Transfer syntax changed on the way: the bytes cannot match; the object
    // must still parse and carry its UID.
    ++transcoded_;
    DcmFileFormat ff;
    if (ff.loadFile(out.c_str()).bad()) return "export (transfer syntax " + ts + ") does not parse";
    OFString got;
    ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, got);
    if (got.c_str() != o.uid) return "export has SOP Instance UID " + std::string(got.c_str());
    return "";
  }

  // Checks every listed object in-process, through a read-only store (what
  // `relais store ls/export` open): ExportPart10 writes a Part 10 file whose
  // data set must be the bytes sent, and ReadObject verifies the checksum.
  // Returns the number of damaged objects (each one reported).
  size_t CheckAllInProcess(const std::string& store_path, const std::vector<SentObject>& objects,
                           const std::map<std::string, size_t>& by_uid, const std::string& when) {
    store::Options so;
    so.path = store_path;
    so.read_only = true;
    Result<std::unique_ptr<store::Store>> opened = store::Store::Open(so);
    if (!opened.ok()) {
      ADD_FAILURE() << when << ": cannot open the store read-only: " << opened.status().message();
      return 1;
    }
    std::unique_ptr<store::Store> st = std::move(*opened);
    std::vector<store::ObjectMeta> metas;
    Status s = st->List([&](const store::ObjectMeta& m) {
      metas.push_back(m);
      return true;
    });
    if (!s.ok()) {
      ADD_FAILURE() << when << ": List: " << s.message();
      return 1;
    }
    size_t bad = 0;
    std::string out = dir_ / "inproc.dcm";
    for (const store::ObjectMeta& m : metas) {
      auto it = by_uid.find(m.sop_instance_uid);
      if (it == by_uid.end()) {
        if (++bad <= 10) ADD_FAILURE() << when << ": unknown object " << m.sop_instance_uid;
        continue;
      }
      const SentObject& o = objects[it->second];
      std::string why;
      Status rs = st->ReadObject(m.id, [](std::span<const uint8_t>) { return Status(); });
      if (!rs.ok()) why = "ReadObject: " + rs.message();
      std::remove(out.c_str());
      Status es = st->ExportPart10(m.sop_instance_uid, out);
      std::string dataset;
      if (why.empty() && !es.ok()) why = "ExportPart10: " + es.message();
      if (why.empty() && !DatasetAfterMeta(ReadFile(out), &dataset)) why = "export is not Part 10";
      if (why.empty() && m.transfer_syntax_uid == kExplicitLittleEndian && dataset != o.dataset) {
        why = "data set differs (" + std::to_string(dataset.size()) + " bytes vs " + std::to_string(o.dataset.size()) +
              " sent)";
      }
      if (!why.empty() && ++bad <= 10) ADD_FAILURE() << when << ": " << m.sop_instance_uid << ": " << why;
    }
    return bad;
  }

  TempDir dir_;
  int transcoded_ = 0;
};

TEST_F(CrashTest, NothingAcknowledgedIsLostAcrossKill9) {
  std::string objdir = dir_ / "objects";
  ASSERT_EQ(system(("mkdir -p " + objdir).c_str()), 0);
  std::vector<SentObject> objects;
  std::string error;
  ASSERT_TRUE(MakeObjects(objdir, kObjects, &objects, &error)) << error;
  std::map<std::string, size_t> by_path;
  std::map<std::string, size_t> by_uid;
  for (size_t i = 0; i < objects.size(); ++i) {
    by_path[objects[i].path] = i;
    by_uid[objects[i].uid] = i;
  }

  uint32_t seed = 20240611;
  if (const char* s = std::getenv("RELAIS_CRASH_SEED")) seed = static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(100, 800);
  std::printf("[crash] seed=%u objects=%d senders=%d\n", seed, kObjects, kSenders);

  RelaisProcess relais(dir_.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<size_t> pending(objects.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  std::set<size_t> acked;     // acknowledged at least once, ever
  std::set<size_t> verified;  // exported intact at least once
  std::set<size_t> reported;  // found damaged (reported once, checked again at the end)
  int interrupted_cycles = 0;
  int cycle = 0;
  for (; cycle < kMaxCycles && (cycle < kMinCycles || !pending.empty()); ++cycle) {
    // The batch: objects not yet acknowledged first; when too few are left,
    // already acknowledged ones again (a duplicate replaces the stored copy
    // in one commit: a crash then must still leave one intact copy).
    std::vector<size_t> batch(pending.begin(), pending.begin() + std::min(pending.size(), kSenders * kPerSender));
    std::vector<size_t> dup(acked.begin(), acked.end());
    std::shuffle(dup.begin(), dup.end(), rng);
    for (size_t i = 0; batch.size() < kSenders * kPerSender && i < dup.size(); ++i) batch.push_back(dup[i]);

    std::vector<std::vector<std::string>> files(kSenders);
    for (size_t i = 0; i < batch.size(); ++i) files[i % kSenders].push_back(objects[batch[i]].path);
    // Kill once a random share of the batch is acknowledged (not after a
    // fixed time: how long a batch takes depends on the machine, and
    // identical resends are acknowledged without a write), so that the kill
    // lands mid-stream on any machine. A time cap covers senders that stall.
    const size_t want = std::uniform_int_distribution<size_t>(1, std::max<size_t>(1, batch.size() * 2 / 3))(rng);
    Kill9Round round;
    ASSERT_TRUE(SendAndKill9(relais, files, want, std::chrono::milliseconds(delay_ms(rng) * 20),
                             dir_ / ("storescu-" + std::to_string(cycle)), &round));
    const int delay = static_cast<int>(round.kill_after_ms);

    size_t acked_now = 0;
    size_t sent_now = 0;
    const bool interrupted = round.interrupted;
    std::vector<size_t> newly;
    for (const StorescuReport& report : round.reports) {
      sent_now += report.sent.size();
      for (const std::string& path : report.acknowledged) {
        auto it = by_path.find(path);
        ASSERT_NE(it, by_path.end()) << "storescu acknowledged an unknown file " << path;
        ++acked_now;
        if (acked.insert(it->second).second) newly.push_back(it->second);
      }
    }
    if (interrupted) ++interrupted_cycles;
    pending.erase(std::remove_if(pending.begin(), pending.end(), [&](size_t i) { return acked.count(i) > 0; }),
                  pending.end());

    ASSERT_TRUE(relais.Start()) << "restart after kill -9 failed (cycle " << cycle << "):\n" << relais.Log();
    std::map<std::string, std::string> listed = relais.StoreList();

    // 1. Every acknowledged object, ever, is listed.
    size_t missing = 0;
    for (size_t i : acked) {
      if (listed.count(objects[i].uid) == 0) {
        if (++missing <= 10) ADD_FAILURE() << "cycle " << cycle << ": acknowledged " << objects[i].uid << " lost";
      }
    }
    // 2. Every listed object (acknowledged or not) is intact, checked
    //    in-process; and a sample goes through `relais store export`:
    //    unacknowledged ones first, then new ones, then a few older ones (a
    //    later crash must not damage them).
    size_t damaged = CheckAllInProcess(relais.store_path(), objects, by_uid, "cycle " + std::to_string(cycle));
    size_t unacked_listed = 0;
    std::vector<size_t> unacked_new;
    std::vector<size_t> acked_new;
    for (const auto& [uid, json] : listed) {
      auto it = by_uid.find(uid);
      if (it == by_uid.end()) {
        ADD_FAILURE() << "store lists an object nobody sent: " << json;
        continue;
      }
      if (acked.count(it->second) == 0) ++unacked_listed;
      if (verified.count(it->second) || reported.count(it->second)) continue;
      (acked.count(it->second) ? acked_new : unacked_new).push_back(it->second);
    }
    std::shuffle(acked_new.begin(), acked_new.end(), rng);
    std::vector<size_t> old(verified.begin(), verified.end());
    std::shuffle(old.begin(), old.end(), rng);
    std::vector<size_t> to_check = unacked_new;
    to_check.insert(to_check.end(), acked_new.begin(), acked_new.end());
    to_check.resize(std::min(to_check.size(), kCliExportsPerCycle - 3));
    for (size_t i = 0; i < old.size() && i < 3; ++i) to_check.push_back(old[i]);
    for (size_t i : to_check) {
      std::string bad = CheckExport(relais, objects[i]);
      if (bad.empty()) {
        verified.insert(i);
      } else {
        reported.insert(i);
        ADD_FAILURE() << "cycle " << cycle << ": " << objects[i].uid << (acked.count(i) ? " (acknowledged)" : "")
                      << ": " << bad;
      }
    }
    std::printf(
        "[crash] cycle=%d kill_after_ms=%d batch=%zu sent=%zu acked=%zu new_acked=%zu acked_total=%zu "
        "listed=%zu listed_unacked=%zu missing=%zu damaged=%zu cli_exported=%zu pending=%zu%s\n",
        cycle, delay, batch.size(), sent_now, acked_now, newly.size(), acked.size(), listed.size(), unacked_listed,
        missing, damaged, to_check.size(), pending.size(), interrupted ? " interrupted" : "");
    std::fflush(stdout);
    if (HasFatalFailure() || missing > 0) break;
  }
  EXPECT_GE(cycle, kMinCycles);
  // The test means something only if kills landed mid-stream.
  EXPECT_GT(interrupted_cycles, 0) << "no kill interrupted a transfer: the senders were always done first";
  // (How many objects get acknowledged in kMaxCycles depends on speed, e.g.
  // under sanitizers: not asserted.)

  // 3. Finally, after a clean stop, the store holds no partial object:
  //    every listed object exports intact, and every acknowledged one is
  //    listed.
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  std::map<std::string, std::string> listed = relais.StoreList();
  for (size_t i : acked) {
    EXPECT_EQ(listed.count(objects[i].uid), 1u) << "final: acknowledged " << objects[i].uid << " lost";
  }
  size_t bad_exports = CheckAllInProcess(relais.store_path(), objects, by_uid, "final");
  std::printf(
      "[crash] done cycles=%d interrupted=%d acked=%zu never_acked=%zu listed=%zu bad_exports=%zu "
      "transcoded=%d\n",
      cycle, interrupted_cycles, acked.size(), pending.size(), listed.size(), bad_exports, transcoded_);
  EXPECT_EQ(bad_exports, 0u);
}

}  // namespace
}  // namespace relais::itest
