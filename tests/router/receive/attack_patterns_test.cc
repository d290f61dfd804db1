// Known attack patterns from DICOM stacks' CVE history, each answered
// cleanly (issue 6). PDU/item length overflow and underflow and huge element
// lengths have their own tests in pdu_test.cc, dataset_header_test.cc and
// tests/integration/hostile_test.cc; this file adds:
// - deeply nested sequences (stack exhaustion in recursive parsers);
// - path characters in UIDs and AE titles, which some stacks used as file
//   names (path traversal): Relais never makes a file name from them.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "router/dicom/dataset_structure.h"
#include "router/receive/access.h"
#include "router/receive/dataset_header.h"
#include "store/store.h"
#include "tests/router/dicom/element_bytes.h"
#include "tests/store/store_test_util.h"

namespace relais {
namespace {

constexpr char kExplicitLE[] = "1.2.840.10008.1.2.1";

using relais::testing::Long;
using relais::testing::Put16;
using relais::testing::Put32;
using relais::testing::Short;

// SOP Class and Instance UIDs, then `depth` nested sequences of undefined
// length, each with one item of undefined length, properly closed (or not).
std::vector<uint8_t> Nested(int depth, bool closed) {
  std::vector<uint8_t> b;
  Short(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
  Short(&b, 0x0008, 0x0018, "UI", "1.2.3.4.5.6.7.8.9");
  for (int i = 0; i < depth; ++i) {
    Long(&b, 0x0040, 0xA730, "SQ", 0xFFFFFFFF);  // Content Sequence
    Put16(&b, 0xFFFE);
    Put16(&b, 0xE000);  // Item
    Put32(&b, 0xFFFFFFFF);
  }
  if (closed) {
    for (int i = 0; i < depth; ++i) {
      Put16(&b, 0xFFFE);
      Put16(&b, 0xE00D);  // Item Delimitation
      Put32(&b, 0);
      Put16(&b, 0xFFFE);
      Put16(&b, 0xE0DD);  // Sequence Delimitation
      Put32(&b, 0);
    }
  }
  return b;
}

TEST(AttackPatternTest, DeeplyNestedSequencesAreAnsweredNotCrashedOn) {
  // 100000 levels is 2 MB of header: a recursive parser without a bound
  // would exhaust its stack long before the end.
  for (int depth : {10, 1000, 100000}) {
    for (bool closed : {true, false}) {
      std::vector<uint8_t> bytes = Nested(depth, closed);
      dicom::HeaderParser p(kExplicitLE);
      // In PDV-sized pieces, as an association feeds it.
      for (size_t off = 0; off < bytes.size() && !p.done(); off += 16384) {
        size_t n = std::min<size_t>(16384, bytes.size() - off);
        p.Feed(std::span<const uint8_t>(bytes.data() + off, n), off + n == bytes.size());
      }
      ASSERT_TRUE(p.done()) << depth;
      Result<dicom::HeaderInfo> r = p.result();
      if (depth == 10) {
        // Shallow nesting is normal (SR content trees).
        if (closed) {
          EXPECT_TRUE(r.ok()) << r.status().message();
        }
      } else {
        ASSERT_FALSE(r.ok()) << depth;
        EXPECT_NE(r.status().message().find("sequences nested deeper than 64 levels at byte"), std::string::npos)
            << r.status().message();
      }
    }
  }
}

// Implicit VR: DCMTK knows (0040,A730) is a sequence from its dictionary and
// recurses into a defined-length one too.
TEST(AttackPatternTest, DeepImplicitVrDefinedLengthSequencesAreBounded) {
  // Built inside out: each level is SQ(defined) { Item(defined) { inner } }.
  std::vector<uint8_t> inner;
  for (int i = 0; i < 5000; ++i) {
    std::vector<uint8_t> level;
    Put16(&level, 0x0040);
    Put16(&level, 0xA730);
    Put32(&level, static_cast<uint32_t>(inner.size() + 8));
    Put16(&level, 0xFFFE);
    Put16(&level, 0xE000);
    Put32(&level, static_cast<uint32_t>(inner.size()));
    level.insert(level.end(), inner.begin(), inner.end());
    inner.swap(level);
  }
  std::vector<uint8_t> bytes;
  auto elem = [&](uint16_t g, uint16_t e, std::string v) {
    if (v.size() % 2) v.push_back('\0');
    Put16(&bytes, g);
    Put16(&bytes, e);
    Put32(&bytes, static_cast<uint32_t>(v.size()));
    bytes.insert(bytes.end(), v.begin(), v.end());
  };
  elem(0x0008, 0x0016, "1.2.840.10008.5.1.4.1.1.88.11");
  elem(0x0008, 0x0018, "1.2.3.4.5");
  bytes.insert(bytes.end(), inner.begin(), inner.end());
  dicom::HeaderParser p("1.2.840.10008.1.2");
  p.Feed(bytes, true);
  ASSERT_TRUE(p.done());
  ASSERT_FALSE(p.result().ok());
  EXPECT_NE(p.result().status().message().find("nested deeper than 64"), std::string::npos)
      << p.result().status().message();
  EXPECT_FALSE(dicom::CheckDataSetStructure(bytes, "1.2.840.10008.1.2").ok());
}

// Nesting after Pixel Data is not seen at receive time (the header parser
// stops there) but is checked before DCMTK reads the whole object to send it.
TEST(AttackPatternTest, NestingAfterPixelDataIsCheckedBeforeAWholeRead) {
  std::vector<uint8_t> bytes;
  Short(&bytes, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
  Short(&bytes, 0x0008, 0x0018, "UI", "1.2.3.4.5.6.7.8.9");
  Long(&bytes, 0x7FE0, 0x0010, "OW", 4);
  Put32(&bytes, 0);
  std::vector<uint8_t> tail = Nested(10000, true);
  // Reuse the nesting without its UIDs, under (FFFA,FFFA) Digital Signatures Sequence.
  std::vector<uint8_t> deep(tail.begin() + 60, tail.end());  // the two UI elements are 34 + 26 bytes
  Long(&bytes, 0xFFFA, 0xFFFA, "SQ", 0xFFFFFFFF);
  Put16(&bytes, 0xFFFE);
  Put16(&bytes, 0xE000);
  Put32(&bytes, 0xFFFFFFFF);
  bytes.insert(bytes.end(), deep.begin(), deep.end());
  dicom::HeaderParser p(kExplicitLE);
  p.Feed(bytes, true);
  ASSERT_TRUE(p.done());
  EXPECT_TRUE(p.result().ok()) << "the header itself is fine: " << p.result().status().message();
  Status s = dicom::CheckDataSetStructure(bytes, kExplicitLE);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("nested deeper than 64"), std::string::npos) << s.message();
  // A normal object passes the whole check.
  std::vector<uint8_t> fine = Nested(5, true);
  EXPECT_TRUE(dicom::CheckDataSetStructure(fine, kExplicitLE).ok());
}

TEST(AttackPatternTest, PathCharactersInUidsNeverBecomeFileNames) {
  store::testing::TempDir dir;
  store::Options o = store::testing::TestOptions(dir.Sub("store"));
  auto opened = store::Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const std::string victim = dir.Sub("pwned");
  const std::vector<std::string> hostile = {
      "../../../../../../" + victim.substr(1),  // relative traversal to an absolute place
      victim,                                   // an absolute path as a UID
      "1.2.3/../../x",
      "1.2.3\\..\\..\\x",
      std::string("1.2.3\0/x", 8),
      "1.2.3\n4",
  };
  for (const std::string& uid : hostile) {
    store::ObjectMeta meta = store::testing::MakeMeta(uid);
    meta.calling_ae = "../" + victim.substr(1);  // AE titles are not file names either
    auto put = store::testing::PutObject(**opened, meta, store::testing::RandomBytes(1000, 3));
    ASSERT_TRUE(put.status.ok()) << put.status.ToString();
    Result<store::ObjectMeta> found = (*opened)->Find(uid);
    ASSERT_TRUE(found.ok()) << uid;
    EXPECT_EQ(found->sop_instance_uid, uid);
    // Export writes exactly where the admin asked, nowhere else.
    const std::string out = dir.Sub("export.dcm");
    ASSERT_TRUE((*opened)->ExportPart10(uid, out).ok());
    EXPECT_TRUE(std::filesystem::exists(out));
    std::filesystem::remove(out);
  }
  EXPECT_FALSE(std::filesystem::exists(victim)) << "a UID became a file name";
  // Nothing but the store's own files appeared in its directory.
  for (const auto& e : std::filesystem::directory_iterator(dir.Sub("store"))) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "data.mdb" || name == "lock.mdb") << name;
  }
}

TEST(AttackPatternTest, HostileCallingAeTitlesAreComparedNotInterpreted) {
  rules::ListenerConfig c;
  c.ae_title = "RELAIS";
  c.allow = {{"CT1", ""}};
  Result<router::AccessPolicy> p = router::AccessPolicy::Make(c);
  ASSERT_TRUE(p.ok());
  for (const std::string& ae : {std::string("../CT1"), std::string("CT1\0", 4), std::string("CT1 "), std::string("*"),
                                std::string("%s%s%n"), std::string(16, '\xFF')}) {
    EXPECT_FALSE(p->Check(ae, "127.0.0.1", std::nullopt).allowed) << ae;
  }
  EXPECT_TRUE(p->Check("CT1", "127.0.0.1", std::nullopt).allowed);
}

}  // namespace
}  // namespace relais
