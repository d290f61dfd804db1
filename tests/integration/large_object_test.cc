// One ~300 MB object through storescu into Relais: Relais's memory stays
// bounded (the store streams chunks; nothing holds the whole object) and the
// export is byte-identical.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "base/sanitizer.h"
#include "harness.h"

namespace relais::itest {
namespace {

constexpr int kRows = 512;
constexpr int kColumns = 512;
constexpr int kFrames = 600;  // 512 x 512 x 2 bytes x 600 = 314,572,800 bytes of pixels
constexpr uint64_t kPixelBytes = uint64_t{kRows} * kColumns * 2 * kFrames;
constexpr uint64_t kPeakRssLimitKiB = 150 * 1024;

// Writes a Multi-frame Grayscale Word Secondary Capture image in Explicit VR
// Little Endian. The header is written by DCMTK; Pixel Data, the last
// element, is appended by hand so that the test never holds 300 MB: PS3.5
// 7.1.2 explicit VR element with a 32-bit length, tag (7FE0,0010), VR OW,
// two reserved bytes. Pixels are 12-bit noise over a gradient, so they do
// not compress away. Returns the SOP Instance UID, "" on error.
std::string WriteLargeImage(const std::string& path) {
  char uid[100];
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  bool ok =
      ds->putAndInsertString(DCM_SOPClassUID, UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage).good() &&
      ds->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT)).good() &&
      ds->putAndInsertString(DCM_StudyInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_STUDY_UID_ROOT)).good() &&
      ds->putAndInsertString(DCM_SeriesInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT)).good() &&
      ds->putAndInsertString(DCM_PatientID, "LARGE-1").good() && ds->putAndInsertString(DCM_Modality, "OT").good() &&
      ds->putAndInsertUint16(DCM_SamplesPerPixel, 1).good() &&
      ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2").good() &&
      ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(kFrames).c_str()).good() &&
      ds->putAndInsertUint16(DCM_Rows, kRows).good() && ds->putAndInsertUint16(DCM_Columns, kColumns).good() &&
      ds->putAndInsertUint16(DCM_BitsAllocated, 16).good() && ds->putAndInsertUint16(DCM_BitsStored, 16).good() &&
      ds->putAndInsertUint16(DCM_HighBit, 15).good() && ds->putAndInsertUint16(DCM_PixelRepresentation, 0).good();
  if (!ok) return "";
  OFString instance;
  ds->findAndGetOFString(DCM_SOPInstanceUID, instance);
  if (ff.saveFile(path.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_withoutPadding).bad()) {
    return "";
  }
  std::ofstream f(path, std::ios::binary | std::ios::app);
  const uint8_t header[12] = {0xE0,
                              0x7F,
                              0x10,
                              0x00,
                              'O',
                              'W',
                              0x00,
                              0x00,
                              static_cast<uint8_t>(kPixelBytes),
                              static_cast<uint8_t>(kPixelBytes >> 8),
                              static_cast<uint8_t>(kPixelBytes >> 16),
                              static_cast<uint8_t>(kPixelBytes >> 24)};
  f.write(reinterpret_cast<const char*>(header), sizeof(header));
  std::vector<uint8_t> block(1 << 20);
  uint32_t x = 2463534242u;  // xorshift32 state
  uint64_t sample = 0;
  for (uint64_t written = 0; written < kPixelBytes; written += block.size()) {
    for (size_t i = 0; i < block.size(); i += 2, ++sample) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      uint16_t v = static_cast<uint16_t>(((sample % kColumns) * 64 + (x & 0x0FFF)) & 0xFFFF);
      block[i] = static_cast<uint8_t>(v);
      block[i + 1] = static_cast<uint8_t>(v >> 8);
    }
    f.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size()));
  }
  f.close();
  return f ? instance.c_str() : "";
}

// Takes ~6 s here (300 MB generated, sent, stored, exported, compared), so
// it is not labelled slow.
TEST(LargeObjectTest, Object300MBKeepsMemoryBoundedAndExportsIdentical) {
  TempDir dir;
  std::string image = dir / "large.dcm";
  std::string uid = WriteLargeImage(image);
  ASSERT_FALSE(uid.empty()) << "cannot write " << image;

  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();
  uint64_t before = PeakRssKiB(relais.pid());

  RunResult r =
      RunCommand({"storescu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), image}, 600);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(ParseStorescuOutcomes(r.output)[image].acknowledged) << r.output;
  ASSERT_TRUE(relais.running()) << relais.Log();
  uint64_t peak = PeakRssKiB(relais.pid());
  std::printf("relais peak RSS: %llu KiB before, %llu KiB after a %llu-byte object\n",
              static_cast<unsigned long long>(before), static_cast<unsigned long long>(peak),
              static_cast<unsigned long long>(kPixelBytes));
  ASSERT_GT(peak, 0u);
#if RELAIS_ASAN
  // AddressSanitizer keeps freed memory in quarantine (256 MB by default) and
  // adds shadow memory, so RSS says nothing about Relais's own bound here.
  std::printf("AddressSanitizer build: peak RSS bound not checked\n");
#else
  EXPECT_LT(peak, kPeakRssLimitKiB) << "Relais held too much of the object in memory";
#endif

  std::map<std::string, std::string> listed = relais.StoreList();
  ASSERT_EQ(listed.count(uid), 1u);
  // "raw_size" is a JSON number: the data set bytes as received.
  const std::string& line = listed[uid];
  size_t p = line.find("\"raw_size\":");
  ASSERT_NE(p, std::string::npos) << line;
  EXPECT_GT(std::strtoull(line.c_str() + p + 11, nullptr, 10), kPixelBytes) << line;
  std::string out = dir / "export.dcm";
  ASSERT_TRUE(relais.Export(uid, out));
  std::string why;
  EXPECT_TRUE(SameDataSet(image, out, &why)) << why;
  std::remove(out.c_str());
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
