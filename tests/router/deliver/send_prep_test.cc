// Tests for send preparation (router/deliver/send_prep.h): transfer syntax policy,
// presentation context planning and choice, and DCMTK transcoding of corpus
// objects, including hostile and truncated data sets.
#include "router/deliver/send_prep.h"
#include "base/sanitizer.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relais::router {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kExplicitBE[] = "1.2.840.10008.1.2.2";
constexpr char kDeflated[] = "1.2.840.10008.1.2.1.99";
constexpr char kRle[] = "1.2.840.10008.1.2.5";
constexpr char kJpegBaseline[] = "1.2.840.10008.1.2.4.50";
constexpr char kJpegExtended[] = "1.2.840.10008.1.2.4.51";
constexpr char kJpegLossless[] = "1.2.840.10008.1.2.4.57";
constexpr char kJpegSv1[] = "1.2.840.10008.1.2.4.70";
constexpr char kJpegLs[] = "1.2.840.10008.1.2.4.80";
constexpr char kJpegLsNear[] = "1.2.840.10008.1.2.4.81";
constexpr char kJ2kLossless[] = "1.2.840.10008.1.2.4.90";
constexpr char kJ2k[] = "1.2.840.10008.1.2.4.91";
constexpr char kHtj2k[] = "1.2.840.10008.1.2.4.203";
constexpr char kCtImage[] = "1.2.840.10008.5.1.4.1.1.2";
constexpr char kMrImage[] = "1.2.840.10008.5.1.4.1.1.4";

#if RELAIS_ASAN
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

class QuietDcmtk : public ::testing::Environment {
 public:
  void SetUp() override { OFLog::configure(OFLogger::FATAL_LOG_LEVEL); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new QuietDcmtk);

// A stored object: the data set bytes exactly as in the file, after the File
// Meta Information, and the transfer syntax the meta names.
struct Stored {
  std::vector<uint8_t> bytes;
  std::string ts;
};

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Splits a Part 10 file by hand (PS3.10 7.1: 128-byte preamble, "DICM", then
// group 0002 in explicit VR little endian), so that the data set bytes are the
// file's own, not DCMTK's re-encoding.
Stored LoadStored(const std::string& name, bool require_ts = true) {
  Stored s;
  std::vector<uint8_t> f = ReadFile(std::string(RELAIS_CORPUS_DIR) + "/" + name);
  EXPECT_GT(f.size(), 132u) << name;
  if (f.size() <= 132 || std::string(f.begin() + 128, f.begin() + 132) != "DICM") {
    ADD_FAILURE() << name << ": no DICM prefix";
    return s;
  }
  size_t i = 132;
  auto u16 = [&](size_t at) { return static_cast<uint32_t>(f[at] | f[at + 1] << 8); };
  while (i + 8 <= f.size() && u16(i) == 0x0002) {
    const uint32_t element = u16(i + 2);
    const std::string vr(f.begin() + i + 4, f.begin() + i + 6);
    uint32_t len;
    size_t header;
    if (vr == "OB" || vr == "OW" || vr == "SQ" || vr == "UN" || vr == "UT" || vr == "UC" || vr == "UR") {
      len = u16(i + 8) | u16(i + 10) << 16;
      header = 12;
    } else {
      len = u16(i + 6);
      header = 8;
    }
    if (element == 0x0010) {
      s.ts.assign(f.begin() + i + header, f.begin() + i + header + len);
      while (!s.ts.empty() && (s.ts.back() == '\0' || s.ts.back() == ' ')) s.ts.pop_back();
    }
    i += header + len;
  }
  s.bytes.assign(f.begin() + i, f.end());
  if (require_ts) {
    EXPECT_FALSE(s.ts.empty()) << name;
  }
  return s;
}

// Parses trusted bytes (test output) with DCMTK.
std::unique_ptr<DcmDataset> Parse(const std::vector<uint8_t>& bytes, const std::string& ts) {
  auto ds = std::make_unique<DcmDataset>();
  DcmInputBufferStream in;
  E_TransferSyntax xfer = DcmXfer(ts.c_str()).getXfer();
  if (DcmXfer(xfer).getStreamCompression() != ESC_none) {
    EXPECT_TRUE(in.installCompressionFilter(ESC_zlib).good());
    xfer = EXS_LittleEndianExplicit;
  }
  in.setBuffer(bytes.data(), bytes.size());
  in.setEos();
  ds->transferInit();
  OFCondition c = ds->read(in, xfer);
  ds->transferEnd();
  EXPECT_TRUE(c.good()) << c.text();
  in.releaseBuffer();
  return ds;
}

std::string Get(DcmItem* ds, const DcmTagKey& tag) {
  OFString v;
  if (ds->findAndGetOFStringArray(tag, v).bad()) return "<absent>";
  return v.c_str();
}

// Native pixel bytes of an uncompressed data set (host byte order).
std::vector<uint8_t> Pixels(DcmDataset* ds) {
  DcmElement* e = nullptr;
  EXPECT_TRUE(ds->findAndGetElement(DCM_PixelData, e).good());
  if (e == nullptr) return {};
  Uint8* p = nullptr;
  EXPECT_TRUE(e->getUint8Array(p).good());
  if (p == nullptr) return {};
  return std::vector<uint8_t>(p, p + e->getLength());
}

// Pixels as colour-by-pixel (Planar Configuration 0, PS3.3 C.7.6.3.1.3): the
// lossless encoders store colour-by-plane images interleaved and say so.
std::vector<uint8_t> InterleavedPixels(DcmDataset* ds) {
  std::vector<uint8_t> px = Pixels(ds);
  Uint16 spp = 1, planar = 0, rows = 0, cols = 0, bits = 8;
  ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
  ds->findAndGetUint16(DCM_PlanarConfiguration, planar);
  ds->findAndGetUint16(DCM_Rows, rows);
  ds->findAndGetUint16(DCM_Columns, cols);
  ds->findAndGetUint16(DCM_BitsAllocated, bits);
  if (spp != 3 || planar != 1 || bits != 8) return px;
  const size_t plane = size_t{rows} * cols, frame = 3 * plane;
  std::vector<uint8_t> out(px.size());
  for (size_t f = 0; f + frame <= px.size(); f += frame) {
    for (size_t i = 0; i < plane; ++i) {
      for (size_t c = 0; c < 3; ++c) out[f + 3 * i + c] = px[f + c * plane + i];
    }
  }
  return out;
}

std::vector<uint8_t> Prepare(const Stored& s, const std::string& target,
                             const std::vector<rules::TagEdit>& edits = {}) {
  Result<std::vector<uint8_t>> r = PrepareDataset(s.bytes, s.ts, target, edits);
  EXPECT_TRUE(r.ok()) << s.ts << " -> " << target << ": " << r.status().ToString();
  return r.ok() ? std::move(r).value() : std::vector<uint8_t>{};
}

bool Contains(const std::vector<uint8_t>& hay, std::initializer_list<uint8_t> needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

// ---- Syntax classification ------------------------------------------------

TEST(SendPrepSyntaxTest, UncompressedAndLossless) {
  EXPECT_TRUE(IsUncompressedSyntax(kImplicitVrLittleEndian));
  EXPECT_TRUE(IsUncompressedSyntax(kExplicitVrLittleEndian));
  EXPECT_TRUE(IsUncompressedSyntax(kExplicitBE));
  EXPECT_FALSE(IsUncompressedSyntax(kDeflated));
  EXPECT_FALSE(IsUncompressedSyntax(kRle));
  for (const char* ts : {kImplicitVrLittleEndian, kExplicitVrLittleEndian, kExplicitBE, kDeflated, kRle, kJpegLossless,
                         kJpegSv1, kJpegLs, kJ2kLossless, "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"}) {
    EXPECT_TRUE(IsLosslessSyntax(ts)) << ts;
  }
  for (const char* ts :
       {kJpegBaseline, kJpegExtended, kJpegLsNear, kJ2k, kHtj2k, "1.2.840.10008.1.2.4.100", "", "1.2.3"}) {
    EXPECT_FALSE(IsLosslessSyntax(ts)) << ts;
  }
}

TEST(SendPrepSyntaxTest, CanConvertNeverLossy) {
  // Identity, whatever the syntax (a lossy object is sent as it is).
  EXPECT_TRUE(CanConvert(kJpegBaseline, kJpegBaseline));
  EXPECT_TRUE(CanConvert(kHtj2k, kHtj2k));
  // Decoding into uncompressed or deflated.
  for (const char* from : {kJpegBaseline, kJpegExtended, kJpegLossless, kJpegSv1, kJpegLs, kJpegLsNear, kRle, kDeflated,
                           kExplicitBE, kImplicitVrLittleEndian}) {
    EXPECT_TRUE(CanConvert(from, kExplicitVrLittleEndian)) << from;
    EXPECT_TRUE(CanConvert(from, kImplicitVrLittleEndian)) << from;
    EXPECT_TRUE(CanConvert(from, kDeflated)) << from;
  }
  // Lossless encoding of uncompressed or deflated objects.
  for (const char* to : {kJpegLs, kJpegSv1, kRle}) {
    EXPECT_TRUE(CanConvert(kExplicitVrLittleEndian, to)) << to;
    EXPECT_TRUE(CanConvert(kExplicitBE, to)) << to;
    EXPECT_TRUE(CanConvert(kDeflated, to)) << to;
  }
  // Never to a lossy syntax.
  for (const char* to : {kJpegBaseline, kJpegExtended, kJpegLsNear, kJ2k}) {
    EXPECT_FALSE(CanConvert(kExplicitVrLittleEndian, to)) << to;
  }
  // No codec here for JPEG 2000 / HTJ2K; no re-encoding between compressed syntaxes.
  EXPECT_FALSE(CanConvert(kJ2kLossless, kExplicitVrLittleEndian));
  EXPECT_FALSE(CanConvert(kHtj2k, kExplicitVrLittleEndian));
  EXPECT_FALSE(CanConvert(kExplicitVrLittleEndian, kJ2kLossless));
  EXPECT_FALSE(CanConvert(kJpegSv1, kJpegLs));
  EXPECT_FALSE(CanConvert(kJpegBaseline, kJpegLs));
  EXPECT_FALSE(CanConvert("1.2.3", kExplicitVrLittleEndian));
}

TEST(SendPrepSyntaxTest, CanConvertAgreesWithDcmtkCodecList) {
  RegisterCodecs();
  RegisterCodecs();  // idempotent
  const std::vector<std::string> all = {kImplicitVrLittleEndian,
                                        kExplicitVrLittleEndian,
                                        kExplicitBE,
                                        kRle,
                                        kJpegBaseline,
                                        kJpegExtended,
                                        kJpegLossless,
                                        kJpegSv1,
                                        kJpegLs,
                                        kJpegLsNear,
                                        kJ2kLossless,
                                        kJ2k};
  for (const std::string& from : all) {
    for (const std::string& to : all) {
      E_TransferSyntax f = DcmXfer(from.c_str()).getXfer(), t = DcmXfer(to.c_str()).getXfer();
      if (from == to || (!DcmXfer(f).isEncapsulated() && !DcmXfer(t).isEncapsulated())) continue;
      if (CanConvert(from, to)) {
        EXPECT_TRUE(DcmCodecList::canChangeCoding(f, t)) << from << " -> " << to;
      }
    }
  }
}

// ---- PlanContexts ---------------------------------------------------------

TEST(SendPrepPlanTest, VerificationFirstThenOneContextPerWantedSyntaxThenFallback) {
  std::vector<ObjectKind> kinds = {
      {kCtImage, kExplicitVrLittleEndian}, {kMrImage, kJpegBaseline}, {kCtImage, kJpegSv1}};
  std::vector<std::string> preferred = {kJpegLs, kJpegBaseline, kExplicitVrLittleEndian};
  std::vector<ContextProposal> p = PlanContexts(kinds, preferred);
  ASSERT_EQ(p.size(), 7u);
  EXPECT_EQ(p[0].abstract_syntax, "1.2.840.10008.1.1");
  EXPECT_THAT(p[0].transfer_syntaxes, ElementsAre(kImplicitVrLittleEndian));
  // CT: .80 can be made from the EVR object (so it gets its own context);
  // .50 is lossy and neither object is stored in it; each stored syntax
  // (EVR, .70) alone; then the fallback.
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(p[i].abstract_syntax, kCtImage);
  EXPECT_THAT(p[1].transfer_syntaxes, ElementsAre(kJpegLs));
  EXPECT_THAT(p[2].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian));
  EXPECT_THAT(p[3].transfer_syntaxes, ElementsAre(kJpegSv1));
  EXPECT_THAT(p[4].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian, kImplicitVrLittleEndian));
  // MR stored as .50: .50 itself (identity), alone, then the fallback.
  EXPECT_EQ(p[5].abstract_syntax, kMrImage);
  EXPECT_THAT(p[5].transfer_syntaxes, ElementsAre(kJpegBaseline));
  EXPECT_EQ(p[6].abstract_syntax, kMrImage);
  EXPECT_THAT(p[6].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian, kImplicitVrLittleEndian));
  EXPECT_EQ(PlanContexts(kinds, preferred).size(), p.size());
}

TEST(SendPrepPlanTest, EachStoredCompressedSyntaxOfOneClassGetsItsOwnContext) {
  // Orthanc and storescp answer a context [J2K, JPEG-LS, EVR] with EVR: the
  // J2K object would then need decoding. Alone, each is accepted as is.
  std::vector<ContextProposal> p =
      PlanContexts({{kCtImage, kJ2kLossless}, {kCtImage, kJpegLs}, {kCtImage, kExplicitVrLittleEndian}}, {});
  ASSERT_EQ(p.size(), 5u);
  EXPECT_THAT(p[1].transfer_syntaxes, ElementsAre(kJ2kLossless));
  EXPECT_THAT(p[2].transfer_syntaxes, ElementsAre(kJpegLs));
  EXPECT_THAT(p[3].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian));
  EXPECT_THAT(p[4].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian, kImplicitVrLittleEndian));
}

TEST(SendPrepPlanTest, PlainStoredSyntaxesGetTheirOwnContextsToo) {
  // So that an Implicit VR object is sent as stored, not re-encoded as
  // Explicit VR because the SCP prefers that in the fallback context.
  std::vector<ContextProposal> p =
      PlanContexts({{kCtImage, kExplicitVrLittleEndian}, {kCtImage, kImplicitVrLittleEndian}}, {});
  ASSERT_EQ(p.size(), 4u);
  EXPECT_THAT(p[1].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian));
  EXPECT_THAT(p[2].transfer_syntaxes, ElementsAre(kImplicitVrLittleEndian));
  EXPECT_THAT(p[3].transfer_syntaxes, ElementsAre(kExplicitVrLittleEndian, kImplicitVrLittleEndian));
  // A preferred plain syntax adds nothing beyond the fallback.
  EXPECT_EQ(PlanContexts({{kCtImage, kJpegLs}}, {kExplicitVrLittleEndian}).size(), 3u);
}

TEST(SendPrepPlanTest, ManySopClassesAreCappedAt128Deterministically) {
  std::vector<ObjectKind> kinds;
  for (int i = 0; i < 300; ++i) kinds.push_back({"1.2.3." + std::to_string(i), kJpegLs});
  std::vector<ContextProposal> p = PlanContexts(kinds, {kExplicitVrLittleEndian});
  EXPECT_LE(p.size(), 128u);
  EXPECT_EQ(p.size(), 127u);  // Verification + 63 classes x 2 contexts; the 64th does not fit whole
  for (size_t i = 1; i < p.size(); ++i) {
    EXPECT_EQ(p[i].abstract_syntax, "1.2.3." + std::to_string((i - 1) / 2));  // a prefix of `kinds`
  }
  std::vector<ContextProposal> again = PlanContexts(kinds, {kExplicitVrLittleEndian});
  ASSERT_EQ(again.size(), p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(again[i].abstract_syntax, p[i].abstract_syntax);
    EXPECT_EQ(again[i].transfer_syntaxes, p[i].transfer_syntaxes);
  }
  // Three contexts per class ({EVR}, {IVR}, fallback): 42 classes fit.
  kinds.clear();
  for (int i = 0; i < 300; ++i) {
    kinds.push_back({"1.2.3." + std::to_string(i), kExplicitVrLittleEndian});
    kinds.push_back({"1.2.3." + std::to_string(i), kImplicitVrLittleEndian});
  }
  EXPECT_EQ(PlanContexts(kinds, {}).size(), 127u);
}

// ---- ChooseContext --------------------------------------------------------

using Accepted = std::vector<ScuAssociation::AcceptedContext>;

TEST(SendPrepChooseTest, StoredSyntaxWhenNoPreference) {
  Accepted a = {{1, "1.2.840.10008.1.1", kImplicitVrLittleEndian},
                {3, kCtImage, kExplicitVrLittleEndian},
                {5, kCtImage, kJpegSv1}};
  auto c = ChooseContext(a, {kCtImage, kJpegSv1}, {});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 5);
  EXPECT_EQ(c->transfer_syntax, kJpegSv1);
  EXPECT_FALSE(c->convert);
}

TEST(SendPrepChooseTest, FirstPreferredThatIsAcceptedAndConvertible) {
  Accepted a = {{3, kCtImage, kExplicitVrLittleEndian}, {5, kCtImage, kJpegLs}, {7, kCtImage, kRle}};
  // .70 is not accepted; .80 is accepted and reachable from EVR.
  auto c = ChooseContext(a, {kCtImage, kExplicitVrLittleEndian}, {kJpegSv1, kJpegLs, kRle});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 5);
  EXPECT_EQ(c->transfer_syntax, kJpegLs);
  EXPECT_TRUE(c->convert);
  // A JPEG baseline object cannot become .80 or RLE; it is sent as stored
  // when that is accepted...
  a.push_back({9, kCtImage, kJpegBaseline});
  c = ChooseContext(a, {kCtImage, kJpegBaseline}, {kJpegLs, kRle});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 9);
  EXPECT_FALSE(c->convert);
  // ...and decompressed when the destination prefers an uncompressed syntax.
  c = ChooseContext(a, {kCtImage, kJpegBaseline}, {kExplicitVrLittleEndian});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 3);
  EXPECT_TRUE(c->convert);
}

TEST(SendPrepChooseTest, FallsBackToExplicitThenImplicit) {
  Accepted a = {{3, kCtImage, kImplicitVrLittleEndian},
                {5, kCtImage, kExplicitVrLittleEndian},
                {7, kMrImage, kExplicitVrLittleEndian}};
  auto c = ChooseContext(a, {kCtImage, kJpegLs}, {kJpegLs});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 5);
  EXPECT_EQ(c->transfer_syntax, kExplicitVrLittleEndian);
  EXPECT_TRUE(c->convert);
  a.erase(a.begin() + 1);
  c = ChooseContext(a, {kCtImage, kJpegLs}, {});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 3);
  EXPECT_EQ(c->transfer_syntax, kImplicitVrLittleEndian);
  // Only contexts of the object's own SOP class are used.
  c = ChooseContext(a, {kMrImage, kImplicitVrLittleEndian}, {});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->context_id, 7);
  EXPECT_FALSE(ChooseContext(a, {"1.2.9", kExplicitVrLittleEndian}, {}).has_value());
}

TEST(SendPrepChooseTest, NothingWhenOnlyLossyOrUndecodableSyntaxesAreAccepted) {
  Accepted a = {{1, kCtImage, kJpegBaseline}, {3, kCtImage, kJpegLsNear}, {5, kMrImage, kExplicitVrLittleEndian}};
  EXPECT_FALSE(ChooseContext(a, {kCtImage, kExplicitVrLittleEndian}, {kJpegBaseline}).has_value());
  EXPECT_FALSE(ChooseContext(a, {kCtImage, kExplicitVrLittleEndian}, {}).has_value());
  // JPEG 2000 cannot be decoded here: no EVR fallback either.
  a.push_back({7, kCtImage, kExplicitVrLittleEndian});
  EXPECT_FALSE(ChooseContext(a, {kCtImage, kJ2kLossless}, {}).has_value());
  EXPECT_TRUE(ChooseContext(a, {kCtImage, kJpegSv1}, {}).has_value());
}

// ---- PrepareDataset -------------------------------------------------------

TEST(SendPrepDatasetTest, UncompressedToJpegLsLosslessAndBackIsBitExact) {
  Stored ct = LoadStored("dicomparser__CT1_UNC.implicit_little_endian.dcm");
  ASSERT_EQ(ct.ts, kImplicitVrLittleEndian);
  std::vector<uint8_t> jls = Prepare(ct, kJpegLs);
  ASSERT_FALSE(jls.empty());
  EXPECT_LT(jls.size(), ct.bytes.size());
  // ITU-T T.87: SOI (FFD8) then SOF55 (FFF7), the JPEG-LS frame header.
  EXPECT_TRUE(Contains(jls, {0xFF, 0xD8, 0xFF, 0xF7}));
  std::vector<uint8_t> back = Prepare({jls, kJpegLs}, kExplicitVrLittleEndian);
  auto original = Parse(ct.bytes, ct.ts);
  auto decoded = Parse(back, kExplicitVrLittleEndian);
  std::vector<uint8_t> px = Pixels(original.get());
  EXPECT_EQ(px.size(), 512u * 512u * 2u);
  EXPECT_TRUE(Pixels(decoded.get()) == px);
  EXPECT_EQ(Get(decoded.get(), DCM_SOPInstanceUID), Get(original.get(), DCM_SOPInstanceUID));
  EXPECT_EQ(Get(decoded.get(), DCM_PatientName), Get(original.get(), DCM_PatientName));
}

TEST(SendPrepDatasetTest, JpegLosslessSv1AndRleRoundTrips) {
  Stored mr = LoadStored("pydicom__MR_small.dcm");
  auto original = Parse(mr.bytes, mr.ts);
  std::vector<uint8_t> px = Pixels(original.get());
  ASSERT_FALSE(px.empty());
  std::vector<uint8_t> sv1 = Prepare(mr, kJpegSv1);
  // ITU-T T.81 B.1.1.3: SOI then SOF3 (FFC3), lossless Huffman.
  EXPECT_TRUE(Contains(sv1, {0xFF, 0xD8})) << "no SOI";
  EXPECT_TRUE(Contains(sv1, {0xFF, 0xC3})) << "no SOF3";
  EXPECT_TRUE(Pixels(Parse(Prepare({sv1, kJpegSv1}, kExplicitVrLittleEndian), kExplicitVrLittleEndian).get()) == px);
  std::vector<uint8_t> rle = Prepare(mr, kRle);
  EXPECT_TRUE(Pixels(Parse(Prepare({rle, kRle}, kImplicitVrLittleEndian), kImplicitVrLittleEndian).get()) == px);
}

TEST(SendPrepDatasetTest, ColourImagesRoundTripLosslessly) {
  for (const char* name : {"pydicomdata__SC_rgb.dcm", "dcm4che__US-RGB-8-esopecho.dcm", "pydicomdata__color-pl.dcm",
                           "pydicomdata__SC_rgb_expb.dcm"}) {
    SCOPED_TRACE(name);
    Stored s = LoadStored(name);
    std::vector<uint8_t> px =
        InterleavedPixels(Parse(Prepare(s, kExplicitVrLittleEndian), kExplicitVrLittleEndian).get());
    ASSERT_FALSE(px.empty());
    for (const char* codec : {kJpegLs, kJpegSv1, kRle}) {
      SCOPED_TRACE(codec);
      std::vector<uint8_t> enc = Prepare(s, codec);
      auto ds = Parse(Prepare({enc, codec}, kExplicitVrLittleEndian), kExplicitVrLittleEndian);
      EXPECT_EQ(Get(ds.get(), DCM_PhotometricInterpretation), "RGB");
      EXPECT_TRUE(InterleavedPixels(ds.get()) == px);
    }
  }
}

TEST(SendPrepDatasetTest, SameSyntaxCarriesPixelDataUndecoded) {
  // DCMTK 3.6.7 cannot decode this JPEG-LS object (7 of 8 bits stored), but
  // sending it in its own syntax with edits must not try to.
  Stored s = LoadStored("pydicomdata__JLSL_08_07_0_1F.dcm");
  ASSERT_EQ(s.ts, kJpegLs);
  EXPECT_FALSE(PrepareDataset(s.bytes, s.ts, kExplicitVrLittleEndian, {}).ok());
  std::vector<rules::TagEdit> edits(1);
  edits[0].tag = 0x00100010;
  edits[0].value = "ANON";
  std::vector<uint8_t> out = Prepare(s, kJpegLs, edits);
  auto ds = Parse(out, kJpegLs);
  EXPECT_EQ(Get(ds.get(), DCM_PatientName), "ANON");
  auto original = Parse(s.bytes, s.ts);
  DcmElement *ea = nullptr, *eb = nullptr;
  ASSERT_TRUE(original->findAndGetElement(DCM_PixelData, ea).good());
  ASSERT_TRUE(ds->findAndGetElement(DCM_PixelData, eb).good());
  auto* a = static_cast<DcmPixelData*>(ea);
  auto* b = static_cast<DcmPixelData*>(eb);
  DcmPixelSequence *sa = nullptr, *sb = nullptr;
  ASSERT_TRUE(a->getEncapsulatedRepresentation(EXS_JPEGLSLossless, nullptr, sa).good());
  ASSERT_TRUE(b->getEncapsulatedRepresentation(EXS_JPEGLSLossless, nullptr, sb).good());
  ASSERT_EQ(sa->card(), sb->card());
  for (unsigned long i = 0; i < sa->card(); ++i) {
    DcmPixelItem *ia = nullptr, *ib = nullptr;
    ASSERT_TRUE(sa->getItem(ia, i).good());
    ASSERT_TRUE(sb->getItem(ib, i).good());
    Uint8 *pa = nullptr, *pb = nullptr;
    ia->getUint8Array(pa);
    ib->getUint8Array(pb);
    ASSERT_EQ(ia->getLength(), ib->getLength()) << "fragment " << i;
    EXPECT_EQ(0, memcmp(pa, pb, ia->getLength())) << "fragment " << i;
  }
}

TEST(SendPrepDatasetTest, CompressedCorpusObjectsDecode) {
  for (const char* name : {"wg04__CT1_JPLL.dcm", "wg04__CT1_JLSL.dcm", "wg04__CT1_RLE.dcm"}) {
    SCOPED_TRACE(name);
    Stored s = LoadStored(name);
    Stored unc = LoadStored("dicomparser__CT1_UNC.implicit_little_endian.dcm");
    // The WG04 CT1 family is one image: every lossless decode gives the same pixels.
    EXPECT_TRUE(Pixels(Parse(Prepare(s, kExplicitVrLittleEndian), kExplicitVrLittleEndian).get()) ==
                Pixels(Parse(unc.bytes, unc.ts).get()));
  }
}

TEST(SendPrepDatasetTest, JpegBaselineDecompresses) {
  Stored s = LoadStored("fodicom__GH538-jpeg1.dcm");
  ASSERT_EQ(s.ts, kJpegBaseline);
  std::vector<uint8_t> out = Prepare(s, kExplicitVrLittleEndian);
  auto ds = Parse(out, kExplicitVrLittleEndian);
  Uint16 rows = 0, cols = 0, spp = 0, bits = 0;
  ASSERT_TRUE(ds->findAndGetUint16(DCM_Rows, rows).good());
  ASSERT_TRUE(ds->findAndGetUint16(DCM_Columns, cols).good());
  ASSERT_TRUE(ds->findAndGetUint16(DCM_SamplesPerPixel, spp).good());
  ASSERT_TRUE(ds->findAndGetUint16(DCM_BitsAllocated, bits).good());
  EXPECT_EQ(Pixels(ds.get()).size(), size_t{rows} * cols * spp * (bits / 8));
  EXPECT_THAT(Get(ds.get(), DCM_PhotometricInterpretation), ::testing::Not(HasSubstr("YBR_FULL_422")));
}

TEST(SendPrepDatasetTest, LossyTargetIsRefused) {
  Stored s = LoadStored("pydicom__MR_small.dcm");
  for (const char* to : {kJpegBaseline, kJpegLsNear, kJ2k}) {
    Result<std::vector<uint8_t>> r = PrepareDataset(s.bytes, s.ts, to, {});
    ASSERT_FALSE(r.ok()) << to;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("without loss"));
  }
}

TEST(SendPrepDatasetTest, EditsShowInTheOutput) {
  Stored s = LoadStored("pydicom__MR_small.dcm");
  auto original = Parse(s.bytes, s.ts);
  ASSERT_NE(Get(original.get(), DCM_PatientID), "<absent>");
  std::vector<rules::TagEdit> edits(3);
  edits[0].op = rules::TagEdit::Op::kSet;
  edits[0].target = "PatientName";
  edits[0].tag = 0x00100010;
  edits[0].value = "ANON^X";
  edits[1].op = rules::TagEdit::Op::kRemove;
  edits[1].target = "PatientID";
  edits[1].tag = 0x00100020;
  edits[2].op = rules::TagEdit::Op::kPrefix;
  edits[2].target = "InstitutionName";
  edits[2].tag = 0x00080080;
  edits[2].value = "EXT-";
  for (const char* to : {s.ts.c_str(), kImplicitVrLittleEndian, kJpegLs}) {
    SCOPED_TRACE(to);
    auto ds = Parse(Prepare(s, to, edits), to);
    EXPECT_EQ(Get(ds.get(), DCM_PatientName), "ANON^X");
    EXPECT_EQ(Get(ds.get(), DCM_PatientID), "<absent>");
    EXPECT_EQ(Get(ds.get(), DCM_InstitutionName), "EXT-TOSHIBA");
    EXPECT_EQ(Get(ds.get(), DCM_SOPInstanceUID), Get(original.get(), DCM_SOPInstanceUID));
  }
}

TEST(SendPrepDatasetTest, DeflateBothWays) {
  Stored s = LoadStored("pydicom__MR_small.dcm");
  std::vector<uint8_t> evr = Prepare(s, kExplicitVrLittleEndian);
  std::vector<uint8_t> dfl = Prepare(s, kDeflated);
  ASSERT_FALSE(dfl.empty());
  EXPECT_LT(dfl.size(), evr.size());
  // Raw deflate, not explicit VR LE: the data set would start with group 0008.
  EXPECT_FALSE(dfl[0] == 0x08 && dfl[1] == 0x00);
  EXPECT_EQ(Prepare({dfl, kDeflated}, kExplicitVrLittleEndian), evr);
  // Deflated corpus objects.
  for (const char* name : {"pydicom__image_dfl.dcm", "fodicom__Deflated.dcm"}) {
    Stored d = LoadStored(name);
    ASSERT_EQ(d.ts, kDeflated);
    auto ds = Parse(Prepare(d, kImplicitVrLittleEndian), kImplicitVrLittleEndian);
    EXPECT_FALSE(Pixels(ds.get()).empty()) << name;
  }
}

TEST(SendPrepDatasetTest, BigEndianInput) {
  Stored be = LoadStored("pydicom__MR_small_bigendian.dcm");
  Stored le = LoadStored("pydicom__MR_small.dcm");
  ASSERT_EQ(be.ts, kExplicitBE);
  std::vector<uint8_t> px = Pixels(Parse(le.bytes, le.ts).get());
  EXPECT_TRUE(Pixels(Parse(Prepare(be, kExplicitVrLittleEndian), kExplicitVrLittleEndian).get()) == px);
  std::vector<uint8_t> jls = Prepare(be, kJpegLs);
  EXPECT_TRUE(Pixels(Parse(Prepare({jls, kJpegLs}, kExplicitVrLittleEndian), kExplicitVrLittleEndian).get()) == px);
  // And back to big endian: the same bytes as the stored object's values.
  auto again = Parse(Prepare(le, kExplicitBE), kExplicitBE);
  EXPECT_TRUE(Pixels(again.get()) == px);
}

TEST(SendPrepDatasetTest, ObjectWithoutPixelDataConvertsTrivially) {
  Stored sr = LoadStored("pydicom__test-SR.dcm");
  auto original = Parse(sr.bytes, sr.ts);
  for (const char* to : {kJpegLs, kRle, kImplicitVrLittleEndian}) {
    auto ds = Parse(Prepare(sr, to), to);
    EXPECT_EQ(ds->card(), original->card()) << to;
    EXPECT_EQ(Get(ds.get(), DCM_SOPInstanceUID), Get(original.get(), DCM_SOPInstanceUID));
  }
}

TEST(SendPrepDatasetTest, TruncatedCorpusFileIsInvalidArgument) {
  Stored s = LoadStored("pydicom__MR_truncated.dcm");
  Result<std::vector<uint8_t>> r = PrepareDataset(s.bytes, s.ts, kExplicitVrLittleEndian, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("cannot be parsed"));
}

TEST(SendPrepDatasetTest, TruncationAtEveryOffsetIsClean) {
  for (const char* name : {"pydicom__rtdose_1frame.dcm", "pydicom__chrSQEncoding.dcm", "pydicom__MR_small_RLE.dcm"}) {
    SCOPED_TRACE(name);
    Stored s = LoadStored(name);
    const std::string to = s.ts == kRle ? kExplicitVrLittleEndian : kJpegLs;
    const size_t step = s.bytes.size() > 4000 ? 7 : 1;
    int errors = 0;
    for (size_t n = 0; n < s.bytes.size(); n += step) {
      Result<std::vector<uint8_t>> r = PrepareDataset(std::span(s.bytes.data(), n), s.ts, to, {});
      if (!r.ok()) {
        ASSERT_EQ(r.status().code(), Status::Code::kInvalidArgument) << n << ": " << r.status().ToString();
        ++errors;
      }
    }
    EXPECT_GT(errors, 0);
    // Inside the last element (Pixel Data) it is always an error.
    for (size_t cut = 1; cut < 64; ++cut) {
      EXPECT_FALSE(PrepareDataset(std::span(s.bytes.data(), s.bytes.size() - cut), s.ts, to, {}).ok()) << cut;
    }
  }
}

// Hostile data sets written by hand from PS3.5 7.1.2 (explicit VR) and 7.1.3
// (implicit VR): one small element, then one whose value length (0xFFFFFFF0)
// is far beyond the bytes that follow.
std::vector<uint8_t> HugeLength(const std::string& ts) {
  if (ts == kImplicitVrLittleEndian) {
    return {0x10, 0x00, 0x10, 0x00, 0x04, 0x00, 0x00, 0x00, 'A', 'B', '^', 'C',  // (0010,0010) len 4 "AB^C"
            0x09, 0x00, 0x10, 0x00, 0xF0, 0xFF, 0xFF, 0xFF, 1,   2,   3,   4};   // (0009,0010) len 0xFFFFFFF0
  }
  if (ts == kExplicitBE) {
    return {0x00, 0x10, 0x00, 0x10, 'P', 'N', 0x00, 0x04, 'A',  'B',  '^',  'C',                // (0010,0010) PN 4
            0x00, 0x11, 0x10, 0x00, 'O', 'B', 0,    0,    0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3, 4};  // (0011,1000) OB huge
  }
  return {0x10, 0x00, 0x10, 0x00, 'P', 'N', 0x04, 0x00, 'A',  'B',  '^',  'C',                // (0010,0010) PN 4
          0x11, 0x00, 0x00, 0x10, 'O', 'B', 0,    0,    0xF0, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4};  // (0011,1000) OB huge
}

// (0008,1115) SQ undefined length, an item of undefined length holding
// (0011,1000) OB with a 0x0FFFFFF0 length, in explicit VR little endian.
const std::vector<uint8_t> kHugeNested = {0x08, 0x00, 0x15, 0x11, 'S',  'Q',  0,    0,    0xFF, 0xFF, 0xFF, 0xFF,
                                          0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF, 0x11, 0x00, 0x00, 0x10,
                                          'O',  'B',  0,    0,    0xF0, 0xFF, 0xFF, 0x0F, 1,    2,    3,    4};

TEST(SendPrepDatasetTest, HugeDeclaredLengthsAreRefused) {
  for (const char* ts : {kExplicitVrLittleEndian, kImplicitVrLittleEndian, kExplicitBE}) {
    Result<std::vector<uint8_t>> r = PrepareDataset(HugeLength(ts), ts, kExplicitVrLittleEndian, {});
    ASSERT_FALSE(r.ok()) << ts;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << r.status().ToString();
  }
  Result<std::vector<uint8_t>> r = PrepareDataset(kHugeNested, kExplicitVrLittleEndian, kJpegLs, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
}

// The declared length is refused without being allocated: in a child limited
// to 512 MiB of address space, the 4 GiB length must still be an ordinary
// parse error, not an out-of-memory one. (Skipped under ASan, whose shadow
// memory needs far more address space.)
TEST(SendPrepDatasetTest, HugeDeclaredLengthIsNotAllocated) {
  if (kAsan) GTEST_SKIP() << "address-space limit does not work with ASan";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit lim{size_t{512} << 20, size_t{512} << 20};
    setrlimit(RLIMIT_AS, &lim);
    int code = 0;
    for (const auto& [bytes, ts] : {std::pair(HugeLength(kExplicitVrLittleEndian), kExplicitVrLittleEndian),
                                    std::pair(HugeLength(kImplicitVrLittleEndian), kImplicitVrLittleEndian),
                                    std::pair(kHugeNested, kExplicitVrLittleEndian)}) {
      Result<std::vector<uint8_t>> r = PrepareDataset(bytes, ts, kExplicitVrLittleEndian, {});
      if (r.ok() || r.status().code() != Status::Code::kInvalidArgument ||
          r.status().message().find("emory") != std::string::npos) {
        code = 1;
      }
    }
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SendPrepDatasetTest, BadDeflateStreamsAreInvalidArgument) {
  Stored d = LoadStored("pydicom__image_dfl.dcm");
  std::vector<uint8_t> truncated(d.bytes.begin(), d.bytes.begin() + static_cast<ptrdiff_t>(d.bytes.size() / 2));
  Result<std::vector<uint8_t>> r = PrepareDataset(truncated, kDeflated, kExplicitVrLittleEndian, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  // Raw deflate (RFC 1951 3.2.3): BTYPE=11 is a reserved block type.
  std::vector<uint8_t> corrupt = {0x07, 0x00, 0x00, 0x00};
  r = PrepareDataset(corrupt, kDeflated, kExplicitVrLittleEndian, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
}

TEST(SendPrepDatasetTest, UnknownSyntaxesAreInvalidArgument) {
  Stored s = LoadStored("pydicom__MR_small.dcm");
  EXPECT_EQ(PrepareDataset(s.bytes, "1.2.3", kExplicitVrLittleEndian, {}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(PrepareDataset(s.bytes, s.ts, "1.2.3", {}).status().code(), Status::Code::kInvalidArgument);
  // JPEG 2000 has no codec here: sending it decompressed is refused up front.
  Stored j2k = LoadStored("wg04__CT1_J2KR.dcm");
  EXPECT_EQ(PrepareDataset(j2k.bytes, j2k.ts, kExplicitVrLittleEndian, {}).status().code(),
            Status::Code::kInvalidArgument);
  // But editing it in its own syntax works (pixel data carried as is).
  std::vector<rules::TagEdit> edits(1);
  edits[0].tag = 0x00100010;
  edits[0].value = "ANON";
  auto ds = Parse(Prepare(j2k, j2k.ts, edits), j2k.ts);
  EXPECT_EQ(Get(ds.get(), DCM_PatientName), "ANON");
}

// Every corpus object that DCMTK can decode either converts or is refused
// with InvalidArgument (never a crash).
TEST(SendPrepDatasetTest, CorpusToExplicitLittleEndian) {
  int ok = 0, refused = 0;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(RELAIS_CORPUS_DIR)) {
    if (e.path().extension() == ".dcm" && e.file_size() < (size_t{1} << 20)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::vector<uint8_t> f = ReadFile(path);
    if (f.size() < 132 || std::string(f.begin() + 128, f.begin() + 132) != "DICM") continue;
    Stored s = LoadStored(path.filename().string(), /*require_ts=*/false);
    if (!CanConvert(s.ts, kExplicitVrLittleEndian)) continue;
    SCOPED_TRACE(path.filename().string());
    Result<std::vector<uint8_t>> r = PrepareDataset(s.bytes, s.ts, kExplicitVrLittleEndian, {});
    if (r.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << r.status().ToString();
      ++refused;
    }
  }
  EXPECT_GE(ok, 60);
  RecordProperty("converted", ok);
  RecordProperty("refused", refused);
}

// ---- MakeMemoryReader -----------------------------------------------------

TEST(SendPrepReaderTest, ChunksAndMeta) {
  std::vector<uint8_t> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  store::ObjectMeta meta;
  meta.id = 42;
  meta.sop_instance_uid = "1.2.3.4";
  meta.transfer_syntax_uid = kExplicitVrLittleEndian;
  meta.raw_size = 5;
  auto reader = MakeMemoryReader(meta, bytes, kJpegLs, 300);
  EXPECT_EQ(reader->meta().id, 42u);
  EXPECT_EQ(reader->meta().sop_instance_uid, "1.2.3.4");
  EXPECT_EQ(reader->meta().transfer_syntax_uid, kJpegLs);
  EXPECT_EQ(reader->meta().raw_size, 1000u);
  EXPECT_EQ(reader->meta().checksum, XXH3_64bits(bytes.data(), bytes.size()));
  std::vector<uint8_t> all, chunk;
  std::vector<size_t> sizes;
  bool done = false;
  while (!done) {
    ASSERT_TRUE(reader->Next(&chunk, &done).ok());
    sizes.push_back(chunk.size());
    all.insert(all.end(), chunk.begin(), chunk.end());
  }
  EXPECT_THAT(sizes, ElementsAre(300, 300, 300, 100));
  EXPECT_EQ(all, bytes);

  auto empty = MakeMemoryReader(meta, {}, kJpegLs);
  ASSERT_TRUE(empty->Next(&chunk, &done).ok());
  EXPECT_TRUE(done);
  EXPECT_TRUE(chunk.empty());
  EXPECT_EQ(empty->meta().raw_size, 0u);
}

}  // namespace
}  // namespace relais::router
