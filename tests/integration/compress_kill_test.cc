// Kill -9 while chunks are being compressed ahead of the commit: objects of
// many chunks (16-bit native pixel data, so that chunks are byte-shuffled
// as well), a slow fixed zstd level so that the compression threads are
// busy with the object still arriving when Relais dies. Every object that
// storescu saw acknowledged must be in the store afterwards, byte-exact;
// objects not acknowledged may be missing but never partial.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <chrono>
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

constexpr int kObjects = 12;
constexpr int kCycles = 3;
constexpr uint16_t kSide = 512;
constexpr uint16_t kFrames = 6;  // 3 MiB of pixels: 12 chunks of 256 KiB each

// Multi-frame 16-bit CT-like images (a smooth field plus noise), each with
// its own UID and pixels, Explicit VR Little Endian.
bool MakeObjects(const std::string& dir, std::vector<SentObject>* out, std::string* error) {
  std::mt19937 rng(99);
  for (int i = 0; i < kObjects; ++i) {
    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ds->putAndInsertString(DCM_SOPInstanceUID, uid);
    ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.3680043.10.543.1");
    ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.3680043.10.543.1.1");
    ds->putAndInsertString(DCM_Modality, "CT");
    ds->putAndInsertString(DCM_PatientID, "KILL9");
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(kFrames).c_str());
    ds->putAndInsertUint16(DCM_Rows, kSide);
    ds->putAndInsertUint16(DCM_Columns, kSide);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_HighBit, 11);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    std::vector<Uint16> px(size_t{kSide} * kSide * kFrames);
    for (size_t p = 0; p < px.size(); ++p) {
      size_t x = p % kSide, y = (p / kSide) % kSide;
      px[p] = static_cast<Uint16>(1000 + (x + y + static_cast<size_t>(i) * 7) % 900 + rng() % 30);
    }
    OFCondition c = ds->putAndInsertUint16Array(DCM_PixelData, px.data(), static_cast<unsigned long>(px.size()));
    const std::string path = dir + "/obj" + std::to_string(i) + ".dcm";
    if (c.bad()) {
      *error = "make " + path + ": " + c.text();
      return false;
    }
    SentObject o;
    if (!SaveSentObject(ff, EWM_fileformat, path, uid, &o, error)) return false;
    out->push_back(std::move(o));
  }
  return true;
}

// Reads every acknowledged object back through a read-only store; returns
// the problems found.
std::vector<std::string> CheckAcknowledged(const std::string& store_path, const std::string& tmp,
                                           const std::vector<SentObject>& objects, const std::set<size_t>& acked) {
  std::vector<std::string> problems;
  store::Options so;
  so.path = store_path;
  so.read_only = true;
  auto st = store::Store::Open(so);
  if (!st.ok()) return {"open read-only: " + st.status().message()};
  for (size_t i : acked) {
    const SentObject& o = objects[i];
    std::string out = tmp + "/check.dcm";
    std::remove(out.c_str());
    Status s = (*st)->ExportPart10(o.uid, out);
    std::string dataset;
    if (!s.ok()) {
      problems.push_back(o.uid + ": " + s.message());
    } else if (!DatasetAfterMeta(ReadFile(out), &dataset) || dataset != o.dataset) {
      problems.push_back(o.uid + ": data set differs from the one sent");
    }
  }
  // Whatever else is listed is whole too (no partial object is visible).
  Status ls = (*st)->List([&](const store::ObjectMeta& m) {
    Status r = (*st)->ReadObject(m.id, [](std::span<const uint8_t>) { return Status(); });
    if (!r.ok()) problems.push_back(m.sop_instance_uid + ": " + r.message());
    return true;
  });
  if (!ls.ok()) problems.push_back("List: " + ls.message());
  return problems;
}

TEST(CompressKillTest, AcknowledgedObjectsSurviveKill9WhileChunksAreCompressed) {
  TempDir dir;
  std::string objdir = dir / "objects";
  ASSERT_EQ(system(("mkdir -p " + objdir).c_str()), 0);
  std::vector<SentObject> objects;
  std::string error;
  ASSERT_TRUE(MakeObjects(objdir, &objects, &error)) << error;
  std::map<std::string, size_t> by_path;
  for (size_t i = 0; i < objects.size(); ++i) by_path[objects[i].path] = i;

  RelaisOptions options;
  // A slow level: chunks of the object still arriving wait in and occupy the
  // compression threads when the kill comes.
  options.extra = "compression_level = 15\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::set<size_t> acked;
  int interrupted = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    // Objects not acknowledged yet first; then resends (a replaced object
    // is deleted in the commit of its successor: that must survive too).
    std::vector<std::string> files;
    for (size_t i = 0; i < objects.size(); ++i) {
      if (acked.count(i) == 0) files.push_back(objects[i].path);
    }
    for (size_t i : acked) files.push_back(objects[i].path);
    // Kill as soon as the cycle's first (or, in the last cycle, second)
    // object is acknowledged (an event, not a time): the next one is then
    // streaming in and its chunks are in the compression threads.
    const size_t want = cycle == kCycles - 1 ? 2 : 1;
    Kill9Round round;
    ASSERT_TRUE(SendAndKill9(relais, {files}, want, std::chrono::seconds(120),
                             dir / ("storescu-" + std::to_string(cycle)), &round));
    if (round.interrupted) ++interrupted;
    for (const std::string& path : round.reports[0].acknowledged) {
      auto it = by_path.find(path);
      ASSERT_NE(it, by_path.end()) << path;
      acked.insert(it->second);
    }
    ASSERT_TRUE(relais.Start()) << "restart after kill -9 failed:\n" << relais.Log();
    ASSERT_EQ(relais.Terminate(), 0) << relais.Log();  // recovery ran; the store is closed for the check
    std::vector<std::string> problems = CheckAcknowledged(relais.store_path(), dir.path(), objects, acked);
    for (const std::string& p : problems) ADD_FAILURE() << "cycle " << cycle << ": " << p;
    std::printf("[compress-kill] cycle=%d acked_total=%zu problems=%zu%s\n", cycle, acked.size(), problems.size(),
                round.interrupted ? " interrupted" : "");
    ASSERT_TRUE(relais.Start()) << relais.Log();
  }
  EXPECT_GT(interrupted, 0) << "no kill interrupted a transfer";
  EXPECT_GE(acked.size(), static_cast<size_t>(kCycles));
}

}  // namespace
}  // namespace relais::itest
