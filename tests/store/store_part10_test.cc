// ExportPart10: a valid Part 10 file around the data set bytes as received.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>

// clang-format off
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"
// clang-format on

#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::PutObject;
using testing::TempDir;
using testing::TestOptions;

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Offset of the data set in a Part 10 file (PS3.10 7.1): 128-byte preamble,
// "DICM", then (0002,0000) UL in Explicit VR LE = 12 bytes whose value is the
// length of the rest of the group.
size_t DataSetOffset(const std::vector<uint8_t>& f) {
  EXPECT_GE(f.size(), 144u);
  EXPECT_EQ(std::string(f.begin() + 128, f.begin() + 132), "DICM");
  // 02 00 00 00 'U' 'L' 04 00: tag (0002,0000), VR UL, length 4.
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + 132, f.begin() + 140),
            (std::vector<uint8_t>{0x02, 0x00, 0x00, 0x00, 'U', 'L', 0x04, 0x00}));
  uint32_t group_length = f[140] | f[141] << 8 | f[142] << 16 | static_cast<uint32_t>(f[143]) << 24;
  return 144 + group_length;
}

std::string RunCommand(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class Part10Test : public ::testing::TestWithParam<const char*> {};

TEST_P(Part10Test, ExportIsValidAndCarriesTheDataSetByteForByte) {
  std::string src = std::string(RELAIS_CORPUS_DIR) + "/" + GetParam();
  std::vector<uint8_t> file = ReadFileBytes(src);
  ASSERT_FALSE(file.empty()) << src;
  std::vector<uint8_t> data_set(file.begin() + DataSetOffset(file), file.end());

  DcmFileFormat original;
  ASSERT_TRUE(original.loadFile(src.c_str()).good());
  OFString sop_class, sop_instance, ts, patient_name;
  original.getDataset()->findAndGetOFString(DCM_SOPClassUID, sop_class);
  original.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sop_instance);
  original.getDataset()->findAndGetOFString(DCM_PatientName, patient_name);
  original.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, ts);

  TempDir dir;
  auto store = std::move(Store::Open(TestOptions(dir.Sub("db"))).value());
  ObjectMeta meta;
  meta.sop_class_uid = sop_class.c_str();
  meta.sop_instance_uid = sop_instance.c_str();
  meta.transfer_syntax_uid = ts.c_str();
  meta.calling_ae = "CTSCAN1";
  ASSERT_TRUE(PutObject(*store, meta, data_set).status.ok());

  std::string out = dir.Sub("out.dcm");
  Status s = store->ExportPart10(sop_instance.c_str(), out);
  ASSERT_TRUE(s.ok()) << s.ToString();

  std::vector<uint8_t> exported = ReadFileBytes(out);
  EXPECT_TRUE(std::all_of(exported.begin(), exported.begin() + 128, [](uint8_t b) { return b == 0; }));
  size_t offset = DataSetOffset(exported);
  EXPECT_EQ(std::vector<uint8_t>(exported.begin() + offset, exported.end()), data_set);

  DcmFileFormat back;
  ASSERT_TRUE(back.loadFile(out.c_str()).good());
  DcmMetaInfo* mi = back.getMetaInfo();
  OFString v;
  EXPECT_TRUE(mi->findAndGetOFString(DCM_MediaStorageSOPClassUID, v).good());
  EXPECT_EQ(v, sop_class);
  EXPECT_TRUE(mi->findAndGetOFString(DCM_MediaStorageSOPInstanceUID, v).good());
  EXPECT_EQ(v, sop_instance);
  EXPECT_TRUE(mi->findAndGetOFString(DCM_TransferSyntaxUID, v).good());
  EXPECT_EQ(v, ts);
  EXPECT_TRUE(mi->findAndGetOFString(DCM_SourceApplicationEntityTitle, v).good());
  EXPECT_EQ(v, "CTSCAN1");
  EXPECT_TRUE(mi->findAndGetOFString(DCM_ImplementationClassUID, v).good());
  EXPECT_EQ(v.substr(0, 5), "2.25.");
  EXPECT_TRUE(back.getDataset()->findAndGetOFString(DCM_PatientName, v).good());
  EXPECT_EQ(v, patient_name);
  const Uint8* version = nullptr;
  unsigned long count = 0;
  ASSERT_TRUE(mi->findAndGetUint8Array(DCM_FileMetaInformationVersion, version, &count).good());
  ASSERT_EQ(count, 2u);
  EXPECT_EQ(version[0], 0x00);
  EXPECT_EQ(version[1], 0x01);

  // The reference tool agrees: no error, and it saw the meta we wrote.
  int code = 0;
  std::string dump = RunCommand("dcmdump " + out + " 2>&1", &code);
  EXPECT_EQ(code, 0) << dump;
  EXPECT_NE(dump.find("(0002,0016) AE [CTSCAN1]"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("E: "), std::string::npos) << dump;
  EXPECT_EQ(dump.find("W: "), std::string::npos) << dump;
}

INSTANTIATE_TEST_SUITE_P(Corpus, Part10Test,
                         ::testing::Values("dicomparser__CT1_UNC.implicit_little_endian.dcm",
                                           "dcm4che__CT-JPEGLosslessSV1.dcm"));

TEST(Part10ExportTest, MissingTransferSyntaxIsInvalidArgumentAndLeavesNoFile) {
  TempDir dir;
  auto store = std::move(Store::Open(TestOptions(dir.Sub("db"))).value());
  ObjectMeta meta = testing::MakeMeta("1.2.3");
  meta.transfer_syntax_uid.clear();
  ASSERT_TRUE(PutObject(*store, meta, testing::RandomBytes(100, 1)).status.ok());
  std::string out = dir.Sub("out.dcm");
  EXPECT_EQ(store->ExportPart10("1.2.3", out).code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_TRUE(store->ExportPart10("1.2.3", dir.Sub("no/such/dir/out.dcm")).code() != Status::Code::kOk);
}

}  // namespace
}  // namespace relais::store
