// Tests for HeaderParser (router/receive/dataset_header.h): corpus files fed as they
// would arrive in PDVs, and hostile data sets.
#include "router/receive/dataset_header.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relais::dicom {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kExplicitLE[] = "1.2.840.10008.1.2.1";
constexpr char kImplicitLE[] = "1.2.840.10008.1.2";
constexpr char kExplicitBE[] = "1.2.840.10008.1.2.2";
constexpr char kDeflated[] = "1.2.840.10008.1.2.1.99";

// Keeps DCMTK's expected warnings ("PixelData encountered, skipping rest")
// out of the test log.
class QuietDcmtk : public ::testing::Environment {
 public:
  void SetUp() override { OFLog::configure(OFLogger::FATAL_LOG_LEVEL); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new QuietDcmtk);

// Encodes a data set as a C-STORE sender would put it in PDVs: DCMTK's own
// writer, in `xfer`, no File Meta Information.
std::vector<uint8_t> Encode(DcmDataset* ds, E_TransferSyntax xfer, bool* ok) {
  std::vector<uint8_t> out;
  std::vector<char> buf(64 * 1024);
  DcmOutputBufferStream os(buf.data(), buf.size());
  ds->transferInit();
  OFCondition c = EC_StreamNotifyClient;
  while (c == EC_StreamNotifyClient) {
    c = ds->write(os, xfer, EET_ExplicitLength, nullptr);
    if (c.good()) os.flush();
    void* p;
    offile_off_t n;
    os.flushBuffer(p, n);
    out.insert(out.end(), static_cast<uint8_t*>(p), static_cast<uint8_t*>(p) + n);
  }
  ds->transferEnd();
  *ok = c.good();
  return out;
}

// Feeds `bytes` in fragments of 1..max_fragment bytes (fixed seed) until done.
Result<HeaderInfo> ParseInFragments(const std::vector<uint8_t>& bytes, const std::string& ts, size_t max_fragment,
                                    uint32_t seed, HeaderParser* parser = nullptr) {
  std::unique_ptr<HeaderParser> own;
  if (parser == nullptr) {
    own = std::make_unique<HeaderParser>(ts);
    parser = own.get();
  }
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> size(1, max_fragment);
  size_t off = 0;
  while (off < bytes.size() && !parser->done()) {
    size_t n = std::min(size(rng), bytes.size() - off);
    parser->Feed(std::span(bytes.data() + off, n), off + n == bytes.size());
    off += n;
  }
  if (bytes.empty()) parser->Feed({}, true);
  EXPECT_TRUE(parser->done());
  return parser->result();
}

std::string Get(DcmItem* ds, const DcmTagKey& tag) {
  OFString v;
  if (ds->findAndGetOFString(tag, v).bad()) return "";
  return v.c_str();
}

// Top-level elements before Pixel Data.
size_t HeaderElementCount(DcmDataset* ds) {
  size_t n = 0;
  for (unsigned long i = 0; i < ds->card(); ++i) {
    if (ds->getElement(i)->getTag() < DCM_PixelData) ++n;
  }
  return n;
}

std::vector<std::filesystem::path> CorpusFiles() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(RELAIS_CORPUS_DIR)) {
    if (e.path().extension() == ".dcm") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(HeaderParserTest, EveryReadableCorpusFileInRandomFragments) {
  int checked = 0, refused_without_uid = 0;
  for (const auto& path : CorpusFiles()) {
    SCOPED_TRACE(path.filename().string());
    DcmFileFormat ff;
    if (ff.loadFile(path.c_str()).bad()) continue;
    DcmDataset* ds = ff.getDataset();
    E_TransferSyntax xfer = ds->getOriginalXfer();
    bool ok = false;
    std::vector<uint8_t> bytes = Encode(ds, xfer, &ok);
    if (!ok) continue;
    const std::string ts = DcmXfer(xfer).getXferID();
    HeaderParser parser(ts);
    Result<HeaderInfo> r = ParseInFragments(bytes, ts, 64 * 1024, 42, &parser);
    if (Get(ds, DCM_SOPInstanceUID).empty() || Get(ds, DCM_SOPClassUID).empty()) {
      ASSERT_FALSE(r.ok());
      EXPECT_THAT(r.status().message(), HasSubstr("no SOP"));
      ++refused_without_uid;
      continue;
    }
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->sop_class_uid, Get(ds, DCM_SOPClassUID));
    EXPECT_EQ(r->sop_instance_uid, Get(ds, DCM_SOPInstanceUID));
    EXPECT_EQ(r->study_instance_uid, Get(ds, DCM_StudyInstanceUID));
    EXPECT_EQ(r->series_instance_uid, Get(ds, DCM_SeriesInstanceUID));
    EXPECT_EQ(r->patient_id, Get(ds, DCM_PatientID));
    EXPECT_EQ(r->modality, Get(ds, DCM_Modality));
    // The whole header, nested sequences included, and nothing from Pixel Data on.
    EXPECT_EQ(HeaderElementCount(parser.dataset()), HeaderElementCount(ds));
    EXPECT_EQ(parser.dataset()->tagExists(DCM_PixelData), false);
    ++checked;
  }
  EXPECT_GE(checked, 40);
  RecordProperty("checked", checked);
  RecordProperty("refused_without_uid", refused_without_uid);
}

struct Loaded {
  std::vector<uint8_t> bytes;
  std::string ts;
  std::string sop_instance_uid;
};

Loaded LoadCorpus(const char* name) {
  Loaded l;
  DcmFileFormat ff;
  std::string path = std::string(RELAIS_CORPUS_DIR) + "/" + name;
  EXPECT_TRUE(ff.loadFile(path.c_str()).good()) << path;
  E_TransferSyntax xfer = ff.getDataset()->getOriginalXfer();
  bool ok = false;
  l.bytes = Encode(ff.getDataset(), xfer, &ok);
  EXPECT_TRUE(ok);
  l.ts = DcmXfer(xfer).getXferID();
  l.sop_instance_uid = Get(ff.getDataset(), DCM_SOPInstanceUID);
  return l;
}

// The pixel layout for the store's byte shuffle: the offset is the first
// byte of the Pixel Data value (the element's header just before it), for
// native little endian 16-bit data only.
TEST(HeaderParserTest, PixelLayoutOfNativeSixteenBitData) {
  struct Case {
    const char* name;
    size_t header_bytes;  // of the Pixel Data element: 12 explicit VR OW, 8 implicit
    uint32_t sample_bytes;
  };
  for (Case c : {Case{"pynetdicom__CTImageStorage.dcm", 12, 2}, Case{"dcm4che__MR01.dcm", 8, 2},
                 Case{"fodicom__GH538-jpeg1.dcm", 0, 0}, Case{"fodicom__Deflated.dcm", 0, 0}}) {
    SCOPED_TRACE(c.name);
    Loaded l = LoadCorpus(c.name);
    Result<HeaderInfo> r = ParseInFragments(l.bytes, l.ts, 4000, 3);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->sample_bytes, c.sample_bytes);
    if (c.sample_bytes == 0) {
      EXPECT_EQ(r->pixel_offset, 0u);
      continue;
    }
    const uint64_t at = r->pixel_offset;
    ASSERT_GT(at, c.header_bytes);
    ASSERT_LE(at, l.bytes.size());
    const uint8_t* tag = l.bytes.data() + at - c.header_bytes;
    EXPECT_EQ(std::vector<uint8_t>(tag, tag + 4), (std::vector<uint8_t>{0xE0, 0x7F, 0x10, 0x00}));
    const uint8_t* len = l.bytes.data() + at - 4;
    uint32_t length = len[0] | len[1] << 8 | len[2] << 16 | static_cast<uint32_t>(len[3]) << 24;
    EXPECT_LE(at + length, l.bytes.size());
  }
}

TEST(HeaderParserTest, OneByteAtATime) {
  for (const char* name : {"pynetdicom__CTImageStorage.dcm", "dcm4che__MR01.dcm", "pydicomdata__SC_rgb_expb.dcm",
                           "fodicom__Deflated.dcm", "pydicomdata__MR-SIEMENS-DICOM-WithOverlays.dcm"}) {
    SCOPED_TRACE(name);
    Loaded l = LoadCorpus(name);
    Result<HeaderInfo> r = ParseInFragments(l.bytes, l.ts, 1, 1);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->sop_instance_uid, l.sop_instance_uid);
  }
}

TEST(HeaderParserTest, DeflatedTransferSyntaxIsInflated) {
  Loaded l = LoadCorpus("fodicom__Deflated.dcm");
  ASSERT_EQ(l.ts, kDeflated);
  Result<HeaderInfo> r = ParseInFragments(l.bytes, l.ts, 4096, 7);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sop_instance_uid, l.sop_instance_uid);
}

TEST(HeaderParserTest, StopsAtPixelDataAndIgnoresTheRest) {
  Loaded l = LoadCorpus("pynetdicom__CTImageStorage.dcm");
  HeaderParser parser(l.ts);
  size_t off = 0;
  while (!parser.done()) {
    parser.Feed(std::span(l.bytes.data() + off, 1000), false);
    off += 1000;
  }
  EXPECT_LT(off, l.bytes.size() / 2);  // the header is small, the pixels are not
  uint64_t fed = parser.bytes_fed();
  std::vector<uint8_t> junk(1 << 20, 0xAB);
  parser.Feed(junk, true);  // after done: ignored
  EXPECT_EQ(parser.bytes_fed(), fed);
  ASSERT_TRUE(parser.result().ok());
  EXPECT_EQ(parser.result()->sop_instance_uid, l.sop_instance_uid);
}

TEST(HeaderParserTest, TruncationAtEveryOffsetOfTheHeaderIsClean) {
  Loaded l = LoadCorpus("pynetdicom__CTImageStorage.dcm");
  HeaderParser full(l.ts);
  full.Feed(l.bytes, true);
  ASSERT_TRUE(full.result().ok());
  // Header length: where DCMTK stopped reading is unknown, so cut up to 6 KiB.
  size_t header_end = std::min<size_t>(l.bytes.size(), 6000);
  int refused = 0;
  for (size_t cut = 0; cut < header_end; ++cut) {
    HeaderParser p(l.ts);
    p.Feed(std::span(l.bytes.data(), cut), true);
    ASSERT_TRUE(p.done()) << cut;
    Result<HeaderInfo> r = p.result();
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
      ++refused;
    } else {
      // Cut exactly at an element boundary after the UIDs: a shorter, valid data set.
      EXPECT_EQ(r->sop_instance_uid, l.sop_instance_uid) << cut;
    }
  }
  EXPECT_GT(refused, static_cast<int>(header_end) / 2);
}

TEST(HeaderParserTest, TruncatedDeflateStreamIsAnError) {
  Loaded l = LoadCorpus("fodicom__Deflated.dcm");
  // The deflated data set ends in Pixel Data, so every cut before the header
  // is complete leaves the deflate stream unfinished.
  for (size_t cut = 0; cut < 420; ++cut) {
    HeaderParser p(l.ts);
    p.Feed(std::span(l.bytes.data(), cut), true);
    ASSERT_TRUE(p.done());
    EXPECT_FALSE(p.result().ok()) << cut;
  }
  // A complete deflated data set with no Pixel Data parses to its end.
  DcmDataset ds;
  ds.putAndInsertString(DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.7");
  ds.putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
  bool ok = false;
  std::vector<uint8_t> bytes = Encode(&ds, EXS_DeflatedLittleEndianExplicit, &ok);
  ASSERT_TRUE(ok);
  Result<HeaderInfo> r = ParseInFragments(bytes, kDeflated, 5, 9);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sop_instance_uid, "1.2.3.4");
  for (size_t cut = 0; cut + 1 < bytes.size(); ++cut) {
    HeaderParser p(kDeflated);
    p.Feed(std::span(bytes.data(), cut), true);
    ASSERT_TRUE(p.done());
    EXPECT_FALSE(p.result().ok()) << cut;
  }
}

TEST(HeaderParserTest, GarbageIsAnErrorInEveryTransferSyntax) {
  std::mt19937 rng(1234);
  for (const char* ts : {kExplicitLE, kImplicitLE, kExplicitBE, kDeflated}) {
    for (int round = 0; round < 50; ++round) {
      std::vector<uint8_t> junk(1 + rng() % 5000);
      for (auto& b : junk) b = static_cast<uint8_t>(rng());
      Result<HeaderInfo> r = ParseInFragments(junk, ts, 512, round);
      EXPECT_FALSE(r.ok()) << ts << " round " << round;
    }
  }
}

// Explicit VR little endian (PS3.5 7.1.2):
//   (0008,0016) UI, length 4, "1.2\0"          SOP Class UID
//   (0029,1010) OB, reserved 0000, length 0xFFFFFFF0   a private value claiming ~4 GiB
const std::vector<uint8_t> kHugeExplicit = {0x08, 0x00, 0x16, 0x00, 'U',  'I',  0x04, 0x00, '1',  '.',
                                            '2',  0x00, 0x29, 0x00, 0x10, 0x10, 'O',  'B',  0x00, 0x00,
                                            0xF0, 0xFF, 0xFF, 0xFF, 0x01, 0x02, 0x03, 0x04};

TEST(HeaderParserTest, HugeDeclaredLengthIsRefusedBeforeTheEnd) {
  // Not the last fragment: DCMTK alone would allocate 4 GiB here and wait.
  HeaderParser p(kExplicitLE);
  p.Feed(kHugeExplicit, false);
  ASSERT_TRUE(p.done());
  EXPECT_EQ(p.result().status().message(),
            "data set cannot be parsed: element (0029,1010) at byte 12 declares 4294967280 bytes, "
            "more than the header may hold (67108864 bytes)");
}

TEST(HeaderParserTest, HugeLengthInImplicitVr) {
  // Implicit VR little endian (PS3.5 7.1.3): (0008,0018) length 0xFFFFFFF0, then "1."
  const std::vector<uint8_t> bytes = {0x08, 0x00, 0x18, 0x00, 0xF0, 0xFF, 0xFF, 0xFF, '1', '.'};
  HeaderParser p(kImplicitLE);
  p.Feed(bytes, false);
  ASSERT_TRUE(p.done());
  EXPECT_THAT(p.result().status().message(), HasSubstr("element (0008,0018) at byte 0 declares 4294967280"));
}

TEST(HeaderParserTest, HugeLengthInBigEndian) {
  // Explicit VR big endian: (0010,0010) PN, length 0x7FF0 (16-bit), then the
  // next element (0029,1010) UN length 0x7FFFFFF0 (2 GiB).
  std::vector<uint8_t> bytes = {0x00, 0x10, 0x00, 0x10, 'P', 'N',  0x00, 0x02, 'A',  ' ',  0x00,
                                0x29, 0x10, 0x10, 'U',  'N', 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xF0};
  HeaderParser p(kExplicitBE);
  p.Feed(bytes, false);
  ASSERT_TRUE(p.done());
  EXPECT_THAT(p.result().status().message(), HasSubstr("element (0029,1010) at byte 10 declares 2147483632"));
}

TEST(HeaderParserTest, HugeLengthNestedInASequenceItem) {
  // Explicit VR LE:
  //   (0008,1115) SQ, reserved, length undefined (FFFFFFFF)   Referenced Series Sequence
  //     (FFFE,E000) item, length undefined
  //       (0008,1155) UI, length 0xFFF0 ... (16-bit: fine, 65520 bytes)
  //   but here instead (0008,1160) OL? no: (0029,1010) UN, reserved, length 0xFFFFFFF0
  const std::vector<uint8_t> bytes = {
      0x08, 0x00, 0x15, 0x11, 'S',  'Q',  0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF,  // SQ, undefined length
      0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF,                          // item, undefined length
      0x29, 0x00, 0x10, 0x10, 'U',  'N',  0x00, 0x00, 0xF0, 0xFF, 0xFF, 0xFF,  // UN, 4294967280 bytes
      0x00, 0x00};
  HeaderParser p(kExplicitLE);
  p.Feed(bytes, false);
  ASSERT_TRUE(p.done());
  EXPECT_THAT(p.result().status().message(), HasSubstr("element (0029,1010) at byte 20 declares 4294967280"));
}

TEST(HeaderParserTest, HugeItemLengthIsRefused) {
  // (0008,1115) SQ undefined length, then an item (FFFE,E000) claiming 0xFFFFFFF0 bytes.
  const std::vector<uint8_t> bytes = {0x08, 0x00, 0x15, 0x11, 'S',  'Q',  0x00, 0x00, 0xFF, 0xFF, 0xFF,
                                      0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xF0, 0xFF, 0xFF, 0xFF, 0x00, 0x00};
  HeaderParser p(kExplicitLE);
  p.Feed(bytes, false);
  ASSERT_TRUE(p.done());
  EXPECT_THAT(p.result().status().message(), HasSubstr("element (FFFE,E000) at byte 12 declares 4294967280"));
}

TEST(HeaderParserTest, LengthAboveTheConfiguredLimitIsRefused) {
  // (0008,0016) UI length 4 "1.2\0", then (0029,1010) OB length 0x00100000 (1 MiB) with a 64 KiB limit.
  const std::vector<uint8_t> bytes = {0x08, 0x00, 0x16, 0x00, 'U', 'I', 0x04, 0x00, '1',  '.',  '2',  0x00,
                                      0x29, 0x00, 0x10, 0x10, 'O', 'B', 0x00, 0x00, 0x00, 0x00, 0x10, 0x00};
  HeaderParser p(kExplicitLE, 64 * 1024);
  p.Feed(bytes, false);
  ASSERT_TRUE(p.done());
  EXPECT_THAT(p.result().status().message(), HasSubstr("declares 1048576 bytes, more than the header may hold (65536"));
}

TEST(HeaderParserTest, HeaderLargerThanLimitIsRefused) {
  Loaded l = LoadCorpus("pynetdicom__CTImageStorage.dcm");
  HeaderParser p(l.ts, 1024);
  Result<HeaderInfo> r = ParseInFragments(l.bytes, l.ts, 100, 3, &p);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("data set cannot be parsed: element"));
}

TEST(HeaderParserTest, ManySmallElementsBeyondLimitAreRefused) {
  // 2000 x (0009,xx10)-style private LO elements of 64 bytes each, > 64 KiB in all, no Pixel Data.
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 2000; ++i) {
    uint8_t el[8] = {0x09, 0x00, static_cast<uint8_t>(0x00), static_cast<uint8_t>(0x10 + (i % 0xE0)), 'L', 'O',
                     0x40, 0x00};
    bytes.insert(bytes.end(), el, el + 8);
    bytes.insert(bytes.end(), 64, 'A');
  }
  HeaderParser p(kExplicitLE, 64 * 1024);
  for (size_t off = 0; off < bytes.size() && !p.done(); off += 1000) {
    p.Feed(std::span(bytes.data() + off, std::min<size_t>(1000, bytes.size() - off)), false);
  }
  ASSERT_TRUE(p.done());
  EXPECT_FALSE(p.result().ok());
}

// Implicit VR LE element: tag, 4-byte length, value.
void AddImplicit(std::vector<uint8_t>* out, uint16_t g, uint16_t e, const std::string& value) {
  const uint32_t n = static_cast<uint32_t>(value.size());
  const uint8_t h[8] = {static_cast<uint8_t>(g),       static_cast<uint8_t>(g >> 8), static_cast<uint8_t>(e),
                        static_cast<uint8_t>(e >> 8),  static_cast<uint8_t>(n),      static_cast<uint8_t>(n >> 8),
                        static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 24)};
  out->insert(out->end(), h, h + 8);
  out->insert(out->end(), value.begin(), value.end());
}

// Implicit VR LE item of defined length, holding `content`.
void AddItem(std::vector<uint8_t>* out, const std::vector<uint8_t>& content) {
  std::vector<uint8_t> item;
  AddImplicit(&item, 0xFFFE, 0xE000, std::string(content.begin(), content.end()));
  out->insert(out->end(), item.begin(), item.end());
}

TEST(HeaderParserTest, DuplicateElementIsReadAsDcmtkReadsAFileInEveryFragmentSize) {
  // (0008,0016), (0008,0018), (0010,0020), then (0008,0018) again with a
  // 600-byte value and (0010,0030). DCMTK fed fragment by fragment dropped
  // the second copy half read and then read its value as element headers;
  // read at once, it keeps the first copy and goes on.
  std::vector<uint8_t> bytes;
  AddImplicit(&bytes, 0x0008, 0x0016, std::string("1.2\0", 4));
  AddImplicit(&bytes, 0x0008, 0x0018, "1.2.3.4.");
  AddImplicit(&bytes, 0x0010, 0x0020, "P1");
  AddImplicit(&bytes, 0x0008, 0x0018, std::string(600, '\xFF'));
  AddImplicit(&bytes, 0x0010, 0x0030, "19700101");
  for (size_t fragment : {1, 7, 100, 4096}) {
    SCOPED_TRACE(fragment);
    HeaderParser p(kImplicitLE);
    Result<HeaderInfo> r = ParseInFragments(bytes, kImplicitLE, fragment, 11, &p);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->sop_instance_uid, "1.2.3.4.");
    EXPECT_EQ(Get(p.dataset(), DCM_PatientBirthDate), "19700101");
  }
}

TEST(HeaderParserTest, SequenceItemsWithTheSameTagsAndADuplicateInsideAnItemAreRead) {
  std::vector<uint8_t> item1, item2;
  AddImplicit(&item1, 0x0008, 0x1150, "1.2.840.10008.5.1.4.1.1.2");
  AddImplicit(&item1, 0x0008, 0x1155, "1.2.3.1.");
  AddImplicit(&item2, 0x0008, 0x1150, "1.2.840.10008.5.1.4.1.1.2");
  AddImplicit(&item2, 0x0008, 0x1155, "1.2.3.2.");
  AddImplicit(&item2, 0x0008, 0x1155, std::string(300, '9'));  // the same tag twice in one item
  std::vector<uint8_t> seq, bytes;
  AddItem(&seq, item1);
  AddItem(&seq, item2);
  AddImplicit(&bytes, 0x0008, 0x0016, std::string("1.2\0", 4));
  AddImplicit(&bytes, 0x0008, 0x0018, "1.2.3.4.");
  AddImplicit(&bytes, 0x0008, 0x1140, std::string(seq.begin(), seq.end()));  // Referenced Image Sequence
  AddImplicit(&bytes, 0x0010, 0x0020, "P1");
  for (size_t fragment : {1, 5, 4096}) {
    SCOPED_TRACE(fragment);
    HeaderParser p(kImplicitLE);
    Result<HeaderInfo> r = ParseInFragments(bytes, kImplicitLE, fragment, 1, &p);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->patient_id, "P1");
    DcmItem* second = nullptr;
    ASSERT_TRUE(p.dataset()->findAndGetSequenceItem(DCM_ReferencedImageSequence, second, 1).good());
    EXPECT_EQ(Get(second, DCM_ReferencedSOPInstanceUID), "1.2.3.2.");
  }
}

TEST(HeaderParserTest, StopsAtATagAbovePixelDataToo) {
  // No Pixel Data, but Data Set Trailing Padding (FFFC,FFFC) of 100000
  // bytes: readUntilTag stops at any tag >= (7FE0,0010), so the header ends
  // there and the padding is neither held nor needed.
  std::vector<uint8_t> bytes;
  AddImplicit(&bytes, 0x0008, 0x0016, std::string("1.2\0", 4));
  AddImplicit(&bytes, 0x0008, 0x0018, "1.2.3.4.");
  AddImplicit(&bytes, 0xFFFC, 0xFFFC, std::string(100000, '\0'));
  const size_t header = 12 + 16 + 8;  // up to the end of the padding element's header
  HeaderParser p(kImplicitLE);
  p.Feed(std::span(bytes.data(), header), false);
  ASSERT_TRUE(p.done());
  Result<HeaderInfo> r = p.result();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sop_instance_uid, "1.2.3.4.");
  EXPECT_EQ(HeaderElementCount(p.dataset()), 2u);
}

TEST(HeaderParserTest, ElementsOutOfOrderAreStillAccepted) {
  // PS3.5 7.1 wants ascending tags; DCMTK sorts them. Fed fragment by
  // fragment, it lost its place in the item after an out-of-order element.
  std::vector<uint8_t> bytes;
  AddImplicit(&bytes, 0x0010, 0x0020, "P1");
  AddImplicit(&bytes, 0x0008, 0x0018, "1.2.3.4.");
  AddImplicit(&bytes, 0x0008, 0x0016, std::string("1.2\0", 4));
  for (size_t fragment : {1, 3, 4096}) {
    SCOPED_TRACE(fragment);
    Result<HeaderInfo> r = ParseInFragments(bytes, kImplicitLE, fragment, 2);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->sop_instance_uid, "1.2.3.4.");
    EXPECT_EQ(r->patient_id, "P1");
  }
}

TEST(HeaderParserTest, MissingSopInstanceUidIsAnError) {
  // Explicit VR LE: (0008,0016) UI "1.2\0" (SOP Class UID) and (0008,0060) CS "CT" (Modality), nothing else.
  const std::vector<uint8_t> bytes = {0x08, 0x00, 0x16, 0x00, 'U',  'I', 0x04, 0x00, '1',  '.', '2',
                                      0x00, 0x08, 0x00, 0x60, 0x00, 'C', 'S',  0x02, 0x00, 'C', 'T'};
  HeaderParser p(kExplicitLE);
  p.Feed(bytes, true);
  ASSERT_TRUE(p.done());
  EXPECT_EQ(p.result().status().message(), "data set has no SOP Instance UID (0008,0018)");
}

TEST(HeaderParserTest, MinimalValidDataSet) {
  // Implicit VR LE: (0008,0016) "1.2\0", (0008,0018) "1.2.3\0" (6 bytes), (0010,0020) "P1".
  const std::vector<uint8_t> bytes = {0x08, 0x00, 0x16, 0x00, 0x04, 0x00, 0x00, 0x00, '1',  '.',  '2', 0x00,
                                      0x08, 0x00, 0x18, 0x00, 0x06, 0x00, 0x00, 0x00, '1',  '.',  '2', '.',
                                      '3',  0x00, 0x10, 0x00, 0x20, 0x00, 0x02, 0x00, 0x00, 0x00, 'P', '1'};
  Result<HeaderInfo> r = ParseInFragments(bytes, kImplicitLE, 3, 5);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sop_class_uid, "1.2");
  EXPECT_EQ(r->sop_instance_uid, "1.2.3");
  EXPECT_EQ(r->patient_id, "P1");
  EXPECT_EQ(r->modality, "");
}

TEST(HeaderParserTest, EmptyDataSetIsAnError) {
  HeaderParser p(kExplicitLE);
  p.Feed({}, true);
  ASSERT_TRUE(p.done());
  EXPECT_FALSE(p.result().ok());
}

TEST(HeaderParserTest, UnknownTransferSyntaxIsAnError) {
  HeaderParser p("1.2.3.4.5");
  EXPECT_TRUE(p.done());
  EXPECT_EQ(p.result().status().message(), "unknown transfer syntax '1.2.3.4.5'");
}

TEST(HeaderParserTest, CorruptDeflateIsAnError) {
  std::vector<uint8_t> bytes(100, 0xFF);  // not a valid raw deflate stream
  HeaderParser p(kDeflated);
  p.Feed(bytes, false);
  ASSERT_TRUE(p.done());
  EXPECT_THAT(p.result().status().message(), HasSubstr("deflate stream is corrupt"));
}

}  // namespace
}  // namespace relais::dicom
