// Tests for the DICOM Upper Layer PDU codec (router/protocol/pdu.h): golden PDUs from
// PS3.8 9.3 (tests/router/protocol/pdu_test_data.h), round trips, truncation at every
// offset, corrupted lengths, limits, and a deterministic mutation loop. The
// encoders' length fields: pdu_length_test.cc.
#include "router/protocol/pdu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string_view>

#include "tests/router/protocol/pdu_test_data.h"
#include "tests/router/protocol/pdu_test_util.h"

namespace relais::ul {
namespace {

using testutil::Decode;
using testutil::DecodeAs;
using testutil::Encode;
using testutil::ExpectInvalid;
using testutil::FromHex;
using testutil::ToHex;
using Kind = DecodeResult::Kind;

struct Golden {
  const char* name;
  const char* hex;
};
const Golden kGoldens[] = {
    {"AssociateRq", testdata::kAssociateRqHex},
    {"AssociateAc", testdata::kAssociateAcHex},
    {"AssociateRqFull", testdata::kAssociateRqFullHex},
    {"AssociateRj", testdata::kAssociateRjHex},
    {"PData", testdata::kPDataHex},
    {"ReleaseRq", testdata::kReleaseRqHex},
    {"ReleaseRp", testdata::kReleaseRpHex},
    {"Abort", testdata::kAbortHex},
};

// ------------------------------------------------------------------ goldens

TEST(PduGoldenTest, AssociateRqLikeStorescuDecodes) {
  const auto bytes = FromHex(testdata::kAssociateRqHex);
  ASSERT_EQ(bytes.size(), 6u + 317u);
  AssociateRq rq = DecodeAs<AssociateRq>(bytes);
  EXPECT_EQ(rq.protocol_version, 1);
  EXPECT_EQ(rq.called_ae, "ANY-SCP");
  EXPECT_EQ(rq.calling_ae, "STORESCU");
  EXPECT_EQ(rq.application_context, kApplicationContextName);
  ASSERT_EQ(rq.contexts.size(), 2u);
  EXPECT_EQ(rq.contexts[0].id, 1);
  EXPECT_EQ(rq.contexts[0].abstract_syntax, "1.2.840.10008.5.1.4.1.1.2");
  EXPECT_EQ(rq.contexts[0].transfer_syntaxes, (std::vector<std::string>{"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}));
  EXPECT_EQ(rq.contexts[1].id, 3);
  EXPECT_EQ(rq.contexts[1].abstract_syntax, "1.2.840.10008.5.1.4.1.1.4");
  EXPECT_EQ(rq.contexts[1].transfer_syntaxes.size(), 2u);
  EXPECT_EQ(rq.user_info.max_length, 16384u);
  EXPECT_EQ(rq.user_info.implementation_class_uid, "1.2.276.0.7230010.3.0.3.6.7");
  EXPECT_EQ(rq.user_info.implementation_version_name, "OFFIS_DCMTK_367");
  EXPECT_FALSE(rq.user_info.async_ops.has_value());
  EXPECT_TRUE(rq.user_info.roles.empty());
  EXPECT_TRUE(rq.user_info.unknown.empty());
}

TEST(PduGoldenTest, AssociateRqEncodesToGoldenBytes) {
  AssociateRq rq;
  rq.called_ae = "ANY-SCP";
  rq.calling_ae = "STORESCU";
  rq.contexts = {{1, "1.2.840.10008.5.1.4.1.1.2", {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}},
                 {3, "1.2.840.10008.5.1.4.1.1.4", {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}}};
  rq.user_info.max_length = 16384;
  rq.user_info.implementation_class_uid = "1.2.276.0.7230010.3.0.3.6.7";
  rq.user_info.implementation_version_name = "OFFIS_DCMTK_367";
  std::vector<uint8_t> out;
  ASSERT_TRUE(EncodeAssociateRq(rq, &out).ok());
  EXPECT_EQ(ToHex(out), ToHex(FromHex(testdata::kAssociateRqHex)));
}

TEST(PduGoldenTest, AssociateAcDecodesAndEncodesToGoldenBytes) {
  const auto bytes = FromHex(testdata::kAssociateAcHex);
  AssociateAc ac = DecodeAs<AssociateAc>(bytes);
  EXPECT_EQ(ac.called_ae, "ANY-SCP");
  EXPECT_EQ(ac.calling_ae, "STORESCU");
  EXPECT_EQ(ac.application_context, kApplicationContextName);
  ASSERT_EQ(ac.contexts.size(), 2u);
  EXPECT_EQ(ac.contexts[0].id, 1);
  EXPECT_EQ(ac.contexts[0].result, ContextResult::kAcceptance);
  EXPECT_EQ(ac.contexts[0].transfer_syntax, "1.2.840.10008.1.2.1");
  EXPECT_EQ(ac.contexts[1].id, 3);
  EXPECT_EQ(ac.contexts[1].result, ContextResult::kAbstractSyntaxNotSupported);
  EXPECT_EQ(ac.contexts[1].transfer_syntax, "");
  EXPECT_EQ(ac.user_info.max_length, 262144u);
  EXPECT_EQ(ac.user_info.implementation_class_uid, "1.2.3.4.5.6");
  EXPECT_EQ(ac.user_info.implementation_version_name, "RELAIS_010");

  AssociateAc built;
  built.called_ae = "ANY-SCP";  // PS3.8 9.3.3: echoed from the RQ
  built.calling_ae = "STORESCU";
  built.contexts = {{1, ContextResult::kAcceptance, "1.2.840.10008.1.2.1"},
                    {3, ContextResult::kAbstractSyntaxNotSupported, ""}};
  built.user_info.max_length = 262144;
  built.user_info.implementation_class_uid = "1.2.3.4.5.6";
  built.user_info.implementation_version_name = "RELAIS_010";
  std::vector<uint8_t> out;
  ASSERT_TRUE(EncodeAssociateAc(built, &out).ok());
  EXPECT_EQ(ToHex(out), ToHex(bytes));
}

TEST(PduGoldenTest, AssociateRqWithEverySubItemDecodes) {
  AssociateRq rq = DecodeAs<AssociateRq>(FromHex(testdata::kAssociateRqFullHex));
  EXPECT_EQ(rq.called_ae, "ROUTER");  // leading spaces stripped
  EXPECT_EQ(rq.calling_ae, "MODALITY");
  ASSERT_EQ(rq.contexts.size(), 1u);                               // unknown top-level item 0x3F skipped
  EXPECT_EQ(rq.contexts[0].abstract_syntax, "1.2.840.10008.1.1");  // NUL stripped
  EXPECT_EQ(rq.contexts[0].transfer_syntaxes, std::vector<std::string>{"1.2.840.10008.1.2"});
  const UserInformation& ui = rq.user_info;
  EXPECT_EQ(ui.max_length, 0u);
  EXPECT_EQ(ui.implementation_class_uid, "1.2.3.4");
  ASSERT_TRUE(ui.async_ops.has_value());
  EXPECT_EQ(ui.async_ops->max_invoked, 5);
  EXPECT_EQ(ui.async_ops->max_performed, 1);
  ASSERT_EQ(ui.roles.size(), 1u);
  EXPECT_EQ(ui.roles[0].sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
  EXPECT_FALSE(ui.roles[0].scu_role);
  EXPECT_TRUE(ui.roles[0].scp_role);
  EXPECT_EQ(ui.implementation_version_name, "TEST_1");
  ASSERT_EQ(ui.extended.size(), 1u);
  EXPECT_EQ(ui.extended[0].sop_class_uid, "1.2.840.10008.5.1.4.1.2.1.1");
  EXPECT_EQ(ui.extended[0].info, std::string("\x01", 1));
  ASSERT_EQ(ui.common_extended.size(), 1u);
  EXPECT_EQ(ui.common_extended[0].sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.40");
  EXPECT_EQ(ui.common_extended[0].service_class_uid, "1.2.840.10008.4.2");
  EXPECT_EQ(ui.common_extended[0].related_general_sop_classes,
            std::vector<std::string>{"1.2.840.10008.5.1.4.1.1.88.22"});
  ASSERT_TRUE(ui.user_identity_rq.has_value());
  EXPECT_EQ(ui.user_identity_rq->type, 2);
  EXPECT_TRUE(ui.user_identity_rq->positive_response_requested);
  EXPECT_EQ(ui.user_identity_rq->primary_field, "alice");
  EXPECT_EQ(ui.user_identity_rq->secondary_field, "secret");
  EXPECT_FALSE(ui.user_identity_ac.has_value());
  ASSERT_EQ(ui.unknown.size(), 1u);  // PS3.8 D.2: kept, not fatal
  EXPECT_EQ(ui.unknown[0].type, 0x7A);
  EXPECT_EQ(ui.unknown[0].data, "\xDE\xAD\xBE\xEF");
}

TEST(PduGoldenTest, AssociateRjDecodes) {
  AssociateRj rj = DecodeAs<AssociateRj>(FromHex(testdata::kAssociateRjHex));
  EXPECT_EQ(rj.result, RejectResult::kPermanent);
  EXPECT_EQ(rj.source, RejectSource::kServiceUser);
  EXPECT_EQ(rj.reason, kRjCalledAeNotRecognized);
  std::vector<uint8_t> out;
  EncodeAssociateRj({RejectResult::kPermanent, RejectSource::kServiceUser, kRjCalledAeNotRecognized}, &out);
  EXPECT_EQ(ToHex(out), ToHex(FromHex(testdata::kAssociateRjHex)));
}

TEST(PduGoldenTest, PDataWithTwoPdvsDecodesZeroCopy) {
  const auto bytes = FromHex(testdata::kPDataHex);
  DecodeResult r = Decode(bytes);
  ASSERT_EQ(r.kind, Kind::kPdu) << r.error;
  const PData& p = std::get<PData>(r.pdu);
  ASSERT_EQ(p.pdvs.size(), 2u);
  EXPECT_EQ(p.pdvs[0].context_id, 1);
  EXPECT_TRUE(p.pdvs[0].is_command);
  EXPECT_TRUE(p.pdvs[0].is_last);
  ASSERT_EQ(p.pdvs[0].data.size(), 12u);
  EXPECT_EQ(p.pdvs[0].data.data(), bytes.data() + 12);  // points into the input
  EXPECT_EQ(p.pdvs[0].data[8], 0x38);
  EXPECT_EQ(p.pdvs[1].context_id, 1);
  EXPECT_FALSE(p.pdvs[1].is_command);
  EXPECT_TRUE(p.pdvs[1].is_last);
  ASSERT_EQ(p.pdvs[1].data.size(), 6u);
  EXPECT_EQ(p.pdvs[1].data.data(), bytes.data() + 30);
  EXPECT_EQ(p.pdvs[1].data[0], 0xDE);
}

TEST(PduGoldenTest, ReleaseAndAbortDecodeAndEncode) {
  DecodeAs<ReleaseRq>(FromHex(testdata::kReleaseRqHex));
  DecodeAs<ReleaseRp>(FromHex(testdata::kReleaseRpHex));
  Abort a = DecodeAs<Abort>(FromHex(testdata::kAbortHex));
  EXPECT_EQ(a.source, AbortSource::kServiceProvider);
  EXPECT_EQ(a.reason, AbortReason::kInvalidPduParameterValue);
  std::vector<uint8_t> out;
  EncodeReleaseRq(&out);
  EXPECT_EQ(ToHex(out), ToHex(FromHex(testdata::kReleaseRqHex)));
  out.clear();
  EncodeReleaseRp(&out);
  EXPECT_EQ(ToHex(out), ToHex(FromHex(testdata::kReleaseRpHex)));
  out.clear();
  EncodeAbort({AbortSource::kServiceProvider, AbortReason::kInvalidPduParameterValue}, &out);
  EXPECT_EQ(ToHex(out), ToHex(FromHex(testdata::kAbortHex)));
}

TEST(PduGoldenTest, PDataEncodesToGoldenBytes) {
  const auto bytes = FromHex(testdata::kPDataHex);
  const uint8_t cmd[] = {0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00};
  const uint8_t data[] = {0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01};
  PData p;
  p.pdvs = {{1, true, true, cmd}, {1, false, true, data}};
  std::vector<uint8_t> out;
  ASSERT_TRUE(EncodePData(p, &out).ok());
  EXPECT_EQ(ToHex(out), ToHex(bytes));
}

TEST(PduGoldenTest, PDataHeaderPlusDataEqualsEncodePData) {
  const uint8_t data[] = {1, 2, 3, 4, 5};
  std::vector<uint8_t> streamed;
  ASSERT_TRUE(EncodePDataHeader(7, false, true, sizeof(data), &streamed).ok());
  EXPECT_EQ(streamed.size(), 12u);
  streamed.insert(streamed.end(), data, data + sizeof(data));
  PData p;
  p.pdvs = {{7, false, true, data}};
  std::vector<uint8_t> whole;
  ASSERT_TRUE(EncodePData(p, &whole).ok());
  EXPECT_EQ(ToHex(streamed), ToHex(whole));
}

TEST(PduGoldenTest, TypeNames) {
  EXPECT_STREQ(PduTypeName(PduType::kAssociateRq), "A-ASSOCIATE-RQ");
  EXPECT_STREQ(PduTypeName(PduType::kPData), "P-DATA-TF");
  EXPECT_STREQ(PduTypeName(PduType::kAbort), "A-ABORT");
}

// ------------------------------------------------------------- round trips

TEST(PduRoundTripTest, EveryGoldenIsStable) {
  for (const Golden& g : kGoldens) {
    SCOPED_TRACE(g.name);
    const auto bytes = FromHex(g.hex);
    DecodeResult r1 = Decode(bytes);
    ASSERT_EQ(r1.kind, Kind::kPdu) << r1.error;
    const auto enc1 = Encode(r1.pdu);
    DecodeResult r2 = Decode(enc1);
    ASSERT_EQ(r2.kind, Kind::kPdu) << r2.error;
    EXPECT_EQ(r2.consumed, enc1.size());
    EXPECT_EQ(ToHex(Encode(r2.pdu)), ToHex(enc1));
    if (std::string_view(g.name) != "AssociateRqFull") {
      EXPECT_EQ(ToHex(enc1), ToHex(bytes));  // goldens are canonical
    }
  }
}

TEST(PduRoundTripTest, AcWithEverySubItemIsStable) {
  AssociateAc ac;
  ac.protocol_version = 3;                // other bits are kept, not rejected (PS3.8 9.3.3)
  ac.called_ae = "A-VERY-LONG-AE-TITLE";  // truncated to 16 on the wire
  ac.calling_ae = "X";
  ac.contexts = {{1, ContextResult::kAcceptance, "1.2.840.10008.1.2"},
                 {3, ContextResult::kTransferSyntaxesNotSupported, ""},
                 {5, ContextResult::kUserRejection, "1.2.840.10008.1.2.1"}};
  UserInformation& ui = ac.user_info;
  ui.max_length = 65536;
  ui.implementation_class_uid = "1.2.3";
  ui.implementation_version_name = "V";
  ui.async_ops = AsyncOpsWindow{0, 0};
  ui.roles = {{"1.2.840.10008.5.1.4.1.1.2", true, true}, {"1.2.840.10008.5.1.4.1.1.4", false, true}};
  ui.extended = {{"1.2.840.10008.5.1.4.1.2.2.1", std::string("\x01\x00\x01", 3)}};
  ui.common_extended = {{"1.2.3.4", "1.2.840.10008.4.2", {}}};
  ui.user_identity_ac = "token";
  ui.unknown = {{0x60, "abc"}, {0x7F, ""}};
  std::vector<uint8_t> out;
  ASSERT_TRUE(EncodeAssociateAc(ac, &out).ok());
  AssociateAc back = DecodeAs<AssociateAc>(out);
  EXPECT_EQ(back.protocol_version, 3);
  EXPECT_EQ(back.called_ae, "A-VERY-LONG-AE-T");
  EXPECT_EQ(back.calling_ae, "X");
  ASSERT_EQ(back.contexts.size(), 3u);
  EXPECT_EQ(back.contexts[1].result, ContextResult::kTransferSyntaxesNotSupported);
  EXPECT_EQ(back.contexts[2].transfer_syntax, "1.2.840.10008.1.2.1");
  EXPECT_EQ(back.user_info.max_length, 65536u);
  ASSERT_TRUE(back.user_info.async_ops.has_value());
  EXPECT_EQ(back.user_info.async_ops->max_invoked, 0);
  ASSERT_EQ(back.user_info.roles.size(), 2u);
  EXPECT_TRUE(back.user_info.roles[0].scu_role);
  EXPECT_FALSE(back.user_info.roles[1].scu_role);
  EXPECT_EQ(back.user_info.extended[0].info, std::string("\x01\x00\x01", 3));
  EXPECT_TRUE(back.user_info.common_extended[0].related_general_sop_classes.empty());
  EXPECT_EQ(back.user_info.user_identity_ac, std::optional<std::string>("token"));
  ASSERT_EQ(back.user_info.unknown.size(), 2u);
  EXPECT_EQ(back.user_info.unknown[0].type, 0x60);
  EXPECT_EQ(back.user_info.unknown[0].data, "abc");
  EXPECT_EQ(back.user_info.unknown[1].type, 0x7F);
  std::vector<uint8_t> again;
  ASSERT_TRUE(EncodeAssociateAc(back, &again).ok());
  EXPECT_EQ(ToHex(again), ToHex(out));
}

TEST(PduRoundTripTest, AeTitlesArePaddedWithSpaces) {
  AssociateRq rq;
  rq.called_ae = "SCP";
  rq.calling_ae = "";
  std::vector<uint8_t> out;
  ASSERT_TRUE(EncodeAssociateRq(rq, &out).ok());
  EXPECT_EQ(std::string(out.begin() + 10, out.begin() + 26), "SCP             ");
  EXPECT_EQ(std::string(out.begin() + 26, out.begin() + 42), std::string(16, ' '));
}

TEST(PduRoundTripTest, TwoPdusInOneBufferAreDecodedOneAtATime) {
  auto bytes = FromHex(testdata::kPDataHex);
  const size_t first = bytes.size();
  const auto rel = FromHex(testdata::kReleaseRqHex);
  bytes.insert(bytes.end(), rel.begin(), rel.end());
  DecodeResult r = Decode(bytes);
  ASSERT_EQ(r.kind, Kind::kPdu);
  EXPECT_EQ(r.consumed, first);
  DecodeResult r2 = DecodePdu(std::span<const uint8_t>(bytes).subspan(first), DecodeLimits());
  ASSERT_EQ(r2.kind, Kind::kPdu);
  EXPECT_TRUE(std::holds_alternative<ReleaseRq>(r2.pdu));
}

// --------------------------------------------------------------- truncation

TEST(PduTruncationTest, EveryPrefixOfEveryGoldenNeedsMore) {
  for (const Golden& g : kGoldens) {
    SCOPED_TRACE(g.name);
    const auto bytes = FromHex(g.hex);
    for (size_t n = 0; n < bytes.size(); ++n) {
      // A fresh exact-size copy so that ASan sees any read past the prefix.
      std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
      DecodeResult r = Decode(prefix);
      ASSERT_EQ(r.kind, Kind::kNeedMore) << "prefix " << n << ": " << r.error;
    }
  }
}

// A PDU length shortened by k makes the body end early: items then run past
// their parent. Must be kInvalid (or, where the cut lands on an item
// boundary, a smaller valid PDU) - never a crash or an over-read.
TEST(PduTruncationTest, ShortenedPduLengthNeverOverreads) {
  for (const Golden& g : kGoldens) {
    SCOPED_TRACE(g.name);
    const auto bytes = FromHex(g.hex);
    for (size_t cut = 1; cut + 6 <= bytes.size(); ++cut) {
      std::vector<uint8_t> b(bytes.begin(), bytes.end() - cut);
      const uint32_t len = static_cast<uint32_t>(b.size() - 6);
      b[2] = len >> 24, b[3] = len >> 16, b[4] = len >> 8, b[5] = len;
      DecodeResult r = Decode(b);
      ASSERT_NE(r.kind, Kind::kNeedMore) << "cut " << cut;
      if (r.kind == Kind::kPdu) {
        EXPECT_EQ(r.consumed, b.size());
      }
    }
  }
}

TEST(PduTruncationTest, AssociateRqCutInsideAnItemIsInvalid) {
  auto b = FromHex(testdata::kAssociateRqHex);
  b.pop_back();  // the last byte of "OFFIS_DCMTK_367"
  b[5] -= 1;     // PDU length 316
  ExpectInvalid(b, AbortReason::kInvalidPduParameterValue);
}

// ---------------------------------------------------------- corrupt lengths

std::vector<uint8_t> Patched(const char* hex, size_t offset, std::initializer_list<uint8_t> bytes) {
  auto b = FromHex(hex);
  std::copy(bytes.begin(), bytes.end(), b.begin() + offset);
  return b;
}

// Offsets in kAssociateRqHex: header 6 + fixed 68 = 74: application context
// item; 74 + 25 = 99: first presentation context item (81 bytes); 107: its
// abstract syntax sub-item (after the 4-byte header and 4 fixed bytes); 99 + 162 = 261: user information item; 265: max
// length sub-item.
TEST(PduCorruptionTest, ApplicationContextItemLengthPastPdu) {
  EXPECT_EQ(FromHex(testdata::kAssociateRqHex)[74], 0x10);
  ExpectInvalid(Patched(testdata::kAssociateRqHex, 76, {0xFF, 0xFF}), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, PresentationContextItemLengthPastPdu) {
  EXPECT_EQ(FromHex(testdata::kAssociateRqHex)[99], 0x20);
  ExpectInvalid(Patched(testdata::kAssociateRqHex, 101, {0x01, 0x00}), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, AbstractSyntaxSubItemLengthPastItsContext) {
  EXPECT_EQ(FromHex(testdata::kAssociateRqHex)[107], 0x30);
  // 0x4C would still fit in the PDU, but not in the 77-byte context item.
  ExpectInvalid(Patched(testdata::kAssociateRqHex, 109, {0x00, 0x4C}), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, UserInformationItemLengthPastPdu) {
  EXPECT_EQ(FromHex(testdata::kAssociateRqHex)[261], 0x50);
  ExpectInvalid(Patched(testdata::kAssociateRqHex, 263, {0x00, 0x3B}), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, MaxLengthSubItemOfWrongSize) {
  EXPECT_EQ(FromHex(testdata::kAssociateRqHex)[265], 0x51);
  ExpectInvalid(Patched(testdata::kAssociateRqHex, 267, {0x00, 0x03}), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, InnerLengthsOfUserInfoSubItems) {
  const auto golden = FromHex(testdata::kAssociateRqFullHex);
  // Find each sub-item by its type inside the user information item and make
  // its first inner 2-byte length 0xFFFF: it then runs past the sub-item.
  const std::string_view text(reinterpret_cast<const char*>(golden.data()), golden.size());
  const size_t ui = text.find(std::string_view("\x50\x00\x00\xDC", 4));
  ASSERT_NE(ui, std::string_view::npos);
  size_t pos = ui + 4;
  int patched = 0;
  while (pos + 4 <= golden.size()) {
    const uint8_t type = golden[pos];
    const size_t len = golden[pos + 2] << 8 | golden[pos + 3];
    if (type == 0x54 || type == 0x56 || type == 0x57 || type == 0x59) {
      auto b = golden;
      b[pos + 4] = 0xFF, b[pos + 5] = 0xFF;
      SCOPED_TRACE(type);
      ExpectInvalid(b, AbortReason::kInvalidPduParameterValue);
      ++patched;
    }
    if (type == 0x58) {  // primary field length at +6
      auto b = golden;
      b[pos + 6] = 0xFF, b[pos + 7] = 0xFF;
      ExpectInvalid(b, AbortReason::kInvalidPduParameterValue);
      ++patched;
    }
    if (type == 0x53) {
      auto b = golden;
      b[pos + 3] = 3;  // async window of 3 bytes
      ExpectInvalid(b, AbortReason::kInvalidPduParameterValue);
      ++patched;
    }
    pos += 4 + len;
  }
  EXPECT_EQ(patched, 5);  // 53, 54, 56, 57, 58
}

TEST(PduCorruptionTest, PdvLengthBelowTwo) {
  // First PDV item length (offset 6) set to 1 and to 0.
  ExpectInvalid(Patched(testdata::kPDataHex, 6, {0, 0, 0, 1}), AbortReason::kInvalidPduParameterValue);
  ExpectInvalid(Patched(testdata::kPDataHex, 6, {0, 0, 0, 0}), AbortReason::kInvalidPduParameterValue);
  // A lone PDV item of length 1 that fits the PDU exactly: only the "< 2"
  // rule rejects it (it has a context ID but no message control header).
  ExpectInvalid(FromHex("04 00 00000005 00000001 01"), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, PdvLengthPastPdu) {
  ExpectInvalid(Patched(testdata::kPDataHex, 6, {0xFF, 0xFF, 0xFF, 0xFF}), AbortReason::kInvalidPduParameterValue);
  // Second PDV (offset 24) one byte too long.
  ExpectInvalid(Patched(testdata::kPDataHex, 24, {0, 0, 0, 9}), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, PDataWithNoPdvIsInvalid) {
  ExpectInvalid(FromHex("04 00 00000000"), AbortReason::kInvalidPduParameterValue);
  // Three bytes cannot hold a PDV item length.
  ExpectInvalid(FromHex("04 00 00000003 000000"), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, PduLengthAllOnesIsInvalidFromTheHeaderAlone) {
  for (uint8_t type = 1; type <= 7; ++type) {
    SCOPED_TRACE(static_cast<int>(type));
    std::vector<uint8_t> header = {type, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    ExpectInvalid(header, AbortReason::kInvalidPduParameterValue);
  }
}

TEST(PduCorruptionTest, FixedSizePdusShorterThanFourAreInvalid) {
  ExpectInvalid(FromHex("03 00 00000003 000101"), AbortReason::kInvalidPduParameterValue);
  ExpectInvalid(FromHex("05 00 00000000"), AbortReason::kInvalidPduParameterValue);
  ExpectInvalid(FromHex("07 00 00000002"), AbortReason::kInvalidPduParameterValue);  // header only
  // A-ASSOCIATE-RQ shorter than its 68 fixed bytes.
  ExpectInvalid(FromHex("01 00 00000043"), AbortReason::kInvalidPduParameterValue);
}

TEST(PduCorruptionTest, FixedSizePduWithExtraBytesIsAccepted) {
  auto r = Decode(FromHex("06 00 00000006 00000000 FFFF"));
  ASSERT_EQ(r.kind, Kind::kPdu) << r.error;
  EXPECT_EQ(r.consumed, 12u);
}

// ------------------------------------------------------------------ limits

TEST(PduLimitsTest, PDataOverTheMaximumIsInvalidBeforeTheBody) {
  DecodeLimits limits;
  limits.max_pdata_length = 16384;
  ExpectInvalid(FromHex("04 00 00004001"), AbortReason::kInvalidPduParameterValue, limits);
  // At the limit: waits for the body.
  EXPECT_EQ(Decode(FromHex("04 00 00004000"), limits).kind, Kind::kNeedMore);
  // The P-DATA limit does not apply to other PDUs.
  EXPECT_EQ(Decode(FromHex("01 00 00004001"), limits).kind, Kind::kNeedMore);
}

TEST(PduLimitsTest, OtherPduOverTheMaximumIsInvalid) {
  DecodeLimits limits;
  limits.max_other_length = 1000;
  ExpectInvalid(FromHex("01 00 000003E9"), AbortReason::kInvalidPduParameterValue, limits);
  EXPECT_EQ(Decode(FromHex("01 00 000003E8"), limits).kind, Kind::kNeedMore);
  // The other-PDU limit does not apply to P-DATA.
  EXPECT_EQ(Decode(FromHex("04 00 000003E9"), limits).kind, Kind::kNeedMore);
}

TEST(PduLimitsTest, ZeroMeansNoLimit) {
  DecodeLimits limits{0, 0};
  EXPECT_EQ(Decode(FromHex("04 00 FFFFFFFF"), limits).kind, Kind::kNeedMore);
  EXPECT_EQ(Decode(FromHex("01 00 FFFFFFFF"), limits).kind, Kind::kNeedMore);
}

TEST(PduLimitsTest, GoldenAssociateRqAgainstATightLimit) {
  DecodeLimits limits;
  limits.max_other_length = 316;
  ExpectInvalid(FromHex(testdata::kAssociateRqHex), AbortReason::kInvalidPduParameterValue, limits);
  limits.max_other_length = 317;
  EXPECT_EQ(Decode(FromHex(testdata::kAssociateRqHex), limits).kind, Kind::kPdu);
}

// ------------------------------------------------------------ wrong types

TEST(PduTypeTest, UnknownPduTypeIsUnrecognized) {
  ExpectInvalid(FromHex("08 00 00000004 00000000"), AbortReason::kUnrecognizedPdu);
  ExpectInvalid(FromHex("00 00 00000004 00000000"), AbortReason::kUnrecognizedPdu);
  ExpectInvalid(FromHex("FF 00 00000004"), AbortReason::kUnrecognizedPdu);  // header is enough
  // Fewer than 6 bytes: not decided yet.
  EXPECT_EQ(Decode(FromHex("FF 00 0000")).kind, Kind::kNeedMore);
}

TEST(PduTypeTest, AcContextItemInsideAnRqIsUnexpected) {
  // Turn the first presentation context item (RQ, 0x20) into 0x21.
  ExpectInvalid(Patched(testdata::kAssociateRqHex, 99, {0x21}), AbortReason::kUnexpectedPduParameter);
  // And the first AC context item (offset 99 too) into 0x20.
  ExpectInvalid(Patched(testdata::kAssociateAcHex, 99, {0x20}), AbortReason::kUnexpectedPduParameter);
}

TEST(PduTypeTest, ProtocolVersionIsReportedNotRejected) {
  // PS3.8 9.3.2: only bit 0 is tested, by the association; any value decodes.
  AssociateRq rq = DecodeAs<AssociateRq>(Patched(testdata::kAssociateRqHex, 6, {0x00, 0x02}));
  EXPECT_EQ(rq.protocol_version, 2);
  EXPECT_EQ(rq.protocol_version & 1, 0);
}

TEST(PduTypeTest, ReservedFieldsAreNotTested) {
  auto b = FromHex(testdata::kAssociateRqHex);
  b[1] = 0xAA;                                   // PDU reserved byte
  b[8] = 0xBB;                                   // reserved after protocol version
  for (size_t i = 42; i < 74; ++i) b[i] = 0xCC;  // 32 reserved bytes
  b[75] = 0xDD;                                  // item reserved byte
  b[104] = 0xFF, b[105] = 0xFF;                  // context item reserved bytes: DCMTK 3.6.7
  b[106] = 0xFF;                                 // storescu really sends FF in byte 7
  AssociateRq rq = DecodeAs<AssociateRq>(b);
  EXPECT_EQ(rq.contexts.size(), 2u);
}

TEST(PduTypeTest, MissingApplicationContextDecodesEmpty) {
  // An RQ with only the fixed fields: the association rejects it, the decoder
  // reports what was there.
  std::vector<uint8_t> b = FromHex("01 00 00000044");
  b.resize(6 + 68, 0);
  b[7] = 1;
  AssociateRq rq = DecodeAs<AssociateRq>(b);
  EXPECT_EQ(rq.application_context, "");
  EXPECT_TRUE(rq.contexts.empty());
  EXPECT_EQ(rq.user_info.max_length, 0u);
}

// ------------------------------------------------------------- mutation

// Deterministic mutations of the goldens. The decoder must never crash, hang
// or over-read (run under ASan in CI); when it accepts a mutant, the result
// must re-encode and decode stably.
TEST(PduMutationTest, TwentyThousandMutationsNeverCrash) {
  std::vector<std::vector<uint8_t>> goldens;
  for (const Golden& g : kGoldens) goldens.push_back(FromHex(g.hex));
  std::mt19937 rng(20240601);
  auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const uint8_t kInteresting[] = {0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF};
  int accepted = 0, invalid = 0, need_more = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> b = goldens[pick(goldens.size())];
    const int edits = 1 + static_cast<int>(pick(4));
    for (int e = 0; e < edits && !b.empty(); ++e) {
      const size_t at = pick(b.size());
      switch (pick(6)) {
        case 0: b[at] ^= static_cast<uint8_t>(1u << pick(8)); break;
        case 1: b[at] = static_cast<uint8_t>(pick(256)); break;
        case 2: b[at] = kInteresting[pick(sizeof(kInteresting))]; break;
        case 3:  // a 2- or 4-byte length-like window to an extreme
          for (size_t k = at; k < std::min(b.size(), at + (pick(2) ? 2 : 4)); ++k) {
            b[k] = pick(2) ? 0xFF : 0x00;
          }
          break;
        case 4: b.resize(at); break;
        case 5: b.insert(b.begin() + at, static_cast<uint8_t>(pick(256))); break;
      }
    }
    // Keep the PDU length consistent half of the time, so mutations reach the
    // item parsers instead of stopping at kNeedMore.
    if (b.size() >= 6 && pick(2)) {
      const uint32_t len = static_cast<uint32_t>(b.size() - 6);
      b[2] = len >> 24, b[3] = len >> 16, b[4] = len >> 8, b[5] = len;
    }
    DecodeResult r = Decode(b);
    switch (r.kind) {
      case Kind::kNeedMore: ++need_more; break;
      case Kind::kInvalid:
        ++invalid;
        ASSERT_FALSE(r.error.empty());
        break;
      case Kind::kPdu: {
        ++accepted;
        ASSERT_LE(r.consumed, b.size());
        const auto enc1 = Encode(r.pdu);
        DecodeResult r2 = Decode(enc1, DecodeLimits{0, 0});
        ASSERT_EQ(r2.kind, Kind::kPdu) << "mutant " << i << ": " << r2.error;
        ASSERT_EQ(ToHex(Encode(r2.pdu)), ToHex(enc1)) << "mutant " << i;
        break;
      }
    }
  }
  // The loop must exercise all three outcomes to mean anything.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(invalid, 1000);
  EXPECT_GT(need_more, 1000);
}

}  // namespace
}  // namespace relais::ul
