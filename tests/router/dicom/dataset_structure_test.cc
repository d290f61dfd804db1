// The data set structure guard (router/dicom/dataset_structure.h) on its
// own, with data sets built here byte by byte (explicit VR little endian,
// PS3.5 7.1.2). The header parser's and send preparation's uses of it are
// tested in tests/router/receive/ and tests/router/deliver/.
#include "router/dicom/dataset_structure.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/router/dicom/element_bytes.h"

namespace relais::dicom {
namespace {

constexpr char kExplicitLE[] = "1.2.840.10008.1.2.1";

using relais::testing::Long;
using relais::testing::Put16;
using relais::testing::Put32;
using relais::testing::Short;

// SOP Class and Instance UIDs, a Patient ID, then 4 bytes of Pixel Data.
std::vector<uint8_t> SmallImage() {
  std::vector<uint8_t> b;
  Short(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
  Short(&b, 0x0008, 0x0018, "UI", "1.2.3.4.5.6.7.8.9");
  Short(&b, 0x0010, 0x0020, "LO", "PID-1");
  Long(&b, 0x7FE0, 0x0010, "OW", 4);
  Put32(&b, 0);
  return b;
}

TEST(DataSetStructureTest, AWellFormedDataSetPasses) {
  std::vector<uint8_t> b = SmallImage();
  EXPECT_TRUE(CheckDataSetStructure(b, kExplicitLE).ok());
  DataSetStructureGuard guard(/*implicit_vr=*/false, /*big_endian=*/false, b.size(), /*stop_at_pixel_data=*/false);
  EXPECT_EQ(guard.Scan(b.data(), b.size()), "");
  EXPECT_EQ(guard.AtEnd(), "");
  EXPECT_FALSE(guard.stopped());
}

TEST(DataSetStructureTest, ByteByByteFeedingFindsWhatOneScanFinds) {
  std::vector<uint8_t> b = SmallImage();
  DataSetStructureGuard guard(false, false, b.size());
  for (size_t i = 0; i < b.size() && !guard.stopped(); ++i) ASSERT_EQ(guard.Scan(&b[i], 1), "") << "byte " << i;
  ASSERT_TRUE(guard.stopped());
  // Stopped just after the Pixel Data element's 12-byte header.
  EXPECT_EQ(guard.stop_offset(), b.size() - 4);
  EXPECT_EQ(guard.AtEnd(), "");
}

TEST(DataSetStructureTest, ADeclaredLengthPastTheBudgetIsRefusedBeforeItsValue) {
  std::vector<uint8_t> b;
  Short(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
  Long(&b, 0x0029, 0x1010, "OB", 0xFFFFFFF0);  // a private value claiming ~4 GiB
  DataSetStructureGuard guard(false, false, /*budget=*/1 << 20);
  std::string why = guard.Scan(b.data(), b.size());
  EXPECT_NE(why.find("declares 4294967280 bytes"), std::string::npos) << why;
  Status s = CheckDataSetStructure(b, kExplicitLE);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
}

TEST(DataSetStructureTest, AnEndInsideAValueIsTruncation) {
  std::vector<uint8_t> b = SmallImage();
  b.resize(b.size() - 2);  // two of the four pixel bytes
  DataSetStructureGuard guard(false, false, 1 << 20, /*stop_at_pixel_data=*/false);
  ASSERT_EQ(guard.Scan(b.data(), b.size()), "");
  std::string why = guard.AtEnd();
  EXPECT_NE(why.find("(truncated)"), std::string::npos) << why;
  EXPECT_FALSE(CheckDataSetStructure(b, kExplicitLE).ok());
}

TEST(DataSetStructureTest, SixtyFiveNestedSequencesAreRefused) {
  auto nested = [](int depth) {
    std::vector<uint8_t> b;
    Short(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.88.11");
    for (int i = 0; i < depth; ++i) {
      Long(&b, 0x0040, 0xA730, "SQ", 0xFFFFFFFF);  // Content Sequence
      Put16(&b, 0xFFFE);
      Put16(&b, 0xE000);  // Item
      Put32(&b, 0xFFFFFFFF);
    }
    for (int i = 0; i < depth; ++i) {
      Put16(&b, 0xFFFE);
      Put16(&b, 0xE00D);  // Item Delimitation
      Put32(&b, 0);
      Put16(&b, 0xFFFE);
      Put16(&b, 0xE0DD);  // Sequence Delimitation
      Put32(&b, 0);
    }
    return b;
  };
  EXPECT_TRUE(CheckDataSetStructure(nested(64), kExplicitLE).ok());
  Status s = CheckDataSetStructure(nested(65), kExplicitLE);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("nested deeper than 64"), std::string::npos) << s.message();
}

TEST(DataSetStructureTest, UnknownTransferSyntaxIsInvalidArgument) {
  std::vector<uint8_t> b = SmallImage();
  Status s = CheckDataSetStructure(b, "1.2.3.4");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace relais::dicom
