// Tests for the length fields of the DICOM Upper Layer PDU encoders
// (router/protocol/pdu.h): every length the encoders write, at the largest
// value that fits and one past it.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <string>
#include <string_view>
#include <vector>

#include "router/protocol/pdu.h"
#include "tests/router/protocol/pdu_test_util.h"

namespace relais::ul {
namespace {

using testutil::Decode;
using testutil::DecodeAs;
using testutil::FromHex;
using testutil::ToHex;
using Kind = DecodeResult::Kind;

// ------------------------------------------------------- length fields
//
// Every length field the encoders write, at the largest value that fits
// (encodes, decodes to the same value, re-encodes to the same bytes) and one
// past it (refused, naming the field, `out` untouched). Before the fix the
// 2-byte lengths wrapped silently. A sub-item nested in another item cannot
// reach 65535 without its parent overflowing first, so its own check is
// tested at 65536 and the round trip at the largest size its parent allows.

constexpr size_t kU16 = 65535;

// A request whose user information item holds only the maximum length
// sub-item (8 bytes): each case adds one field to it.
AssociateRq BaseRq() {
  AssociateRq rq;
  rq.called_ae = "SCP";
  rq.calling_ae = "SCU";
  return rq;
}
AssociateAc BaseAc() {
  AssociateAc ac;
  ac.called_ae = "SCP";
  ac.calling_ae = "SCU";
  return ac;
}
// Bytes of the user information body besides the field under test:
// the maximum length sub-item (4 + 4) and the sub-item's own header (4).
constexpr size_t kUiOverhead = 8 + 4;

std::string Filler(size_t n) { return std::string(n, '7'); }

// Encodes, decodes, re-encodes: the bytes must be stable.
template <typename Assoc>
Assoc RoundTrip(const Assoc& a) {
  std::vector<uint8_t> out;
  Status s;
  if constexpr (std::is_same_v<Assoc, AssociateRq>) {
    s = EncodeAssociateRq(a, &out);
  } else {
    s = EncodeAssociateAc(a, &out);
  }
  EXPECT_TRUE(s.ok()) << s.ToString();
  Assoc back = DecodeAs<Assoc>(out);
  std::vector<uint8_t> again;
  if constexpr (std::is_same_v<Assoc, AssociateRq>) {
    s = EncodeAssociateRq(back, &again);
  } else {
    s = EncodeAssociateAc(back, &again);
  }
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(again == out) << "re-encoding changed the bytes";
  return back;
}

// The encoder refuses, names `field` and leaves the bytes already in `out`.
template <typename Assoc>
void ExpectRefused(const Assoc& a, std::string_view field) {
  std::vector<uint8_t> out = {0xAB, 0xCD};
  Status s;
  if constexpr (std::is_same_v<Assoc, AssociateRq>) {
    s = EncodeAssociateRq(a, &out);
  } else {
    s = EncodeAssociateAc(a, &out);
  }
  ASSERT_FALSE(s.ok()) << "expected " << field << " to be refused";
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  EXPECT_EQ(out, (std::vector<uint8_t>{0xAB, 0xCD}));
}

TEST(PduLengthTest, ApplicationContextItem) {
  AssociateRq rq = BaseRq();
  rq.application_context = Filler(kU16);
  EXPECT_EQ(RoundTrip(rq).application_context.size(), kU16);
  rq.application_context = Filler(kU16 + 1);
  ExpectRefused(rq, "application context item (0x10)");
}

TEST(PduLengthTest, PresentationContextItemRq) {
  // Body: id + 3 reserved, abstract syntax sub-item (4 + n), one transfer
  // syntax sub-item (4 + 17).
  const std::string ts = "1.2.840.10008.1.2";
  const size_t n = kU16 - 4 - 4 - 4 - ts.size();
  AssociateRq rq = BaseRq();
  rq.contexts = {{1, Filler(n), {ts}}};
  AssociateRq back = RoundTrip(rq);
  ASSERT_EQ(back.contexts.size(), 1u);
  EXPECT_EQ(back.contexts[0].abstract_syntax.size(), n);
  EXPECT_EQ(back.contexts[0].transfer_syntaxes, std::vector<std::string>{ts});
  rq.contexts = {{1, Filler(n + 1), {ts}}};
  ExpectRefused(rq, "presentation context item (0x20)");
  // Many small transfer syntaxes overflow it too.
  rq.contexts = {{1, "1.2", std::vector<std::string>(4000, ts)}};
  ExpectRefused(rq, "presentation context item (0x20)");
}

TEST(PduLengthTest, AbstractAndTransferSyntaxSubItemsRq) {
  AssociateRq rq = BaseRq();
  rq.contexts = {{1, Filler(kU16 + 1), {"1.2"}}};
  ExpectRefused(rq, "abstract syntax sub-item (0x30)");
  rq.contexts = {{1, "1.2", {Filler(kU16 + 1)}}};
  ExpectRefused(rq, "transfer syntax sub-item (0x40)");
  // The largest transfer syntax the context item leaves room for.
  const size_t n = kU16 - 4 - 4 - 3 - 4;
  rq.contexts = {{1, "1.2", {Filler(n)}}};
  EXPECT_EQ(RoundTrip(rq).contexts[0].transfer_syntaxes[0].size(), n);
}

TEST(PduLengthTest, PresentationContextItemAc) {
  // Body: id, reserved, result, reserved, transfer syntax sub-item (4 + n).
  const size_t n = kU16 - 4 - 4;
  AssociateAc ac = BaseAc();
  ac.contexts = {{1, ContextResult::kAcceptance, Filler(n)}};
  EXPECT_EQ(RoundTrip(ac).contexts[0].transfer_syntax.size(), n);
  ac.contexts = {{1, ContextResult::kAcceptance, Filler(n + 1)}};
  ExpectRefused(ac, "presentation context item (0x21)");
  ac.contexts = {{1, ContextResult::kAcceptance, Filler(kU16 + 1)}};
  ExpectRefused(ac, "transfer syntax sub-item (0x40)");
}

TEST(PduLengthTest, UserInformationItem) {
  const size_t n = kU16 - kUiOverhead;
  AssociateRq rq = BaseRq();
  rq.user_info.unknown = {{0x60, std::string(n, 'x')}};
  AssociateRq back = RoundTrip(rq);
  ASSERT_EQ(back.user_info.unknown.size(), 1u);
  EXPECT_EQ(back.user_info.unknown[0].data.size(), n);
  rq.user_info.unknown = {{0x60, std::string(n + 1, 'x')}};
  ExpectRefused(rq, "user information item (0x50)");
  // Two sub-items that each fit, together too long for their parent.
  rq.user_info.unknown = {{0x60, std::string(40000, 'x')}, {0x61, std::string(40000, 'y')}};
  ExpectRefused(rq, "user information item (0x50)");
  // Also in an A-ASSOCIATE-AC.
  AssociateAc ac = BaseAc();
  ac.user_info.unknown = {{0x60, std::string(n + 1, 'x')}};
  ExpectRefused(ac, "user information item (0x50)");
}

TEST(PduLengthTest, UnknownUserInformationSubItem) {
  AssociateRq rq = BaseRq();
  rq.user_info.unknown = {{0x40, std::string(kU16 + 1, 'x')}};  // before the known ones
  ExpectRefused(rq, "unknown user information sub-item");
  rq.user_info.unknown = {{0x60, std::string(kU16 + 1, 'x')}};  // after them
  ExpectRefused(rq, "unknown user information sub-item");
}

TEST(PduLengthTest, ImplementationClassUidSubItem) {
  const size_t n = kU16 - kUiOverhead;
  AssociateRq rq = BaseRq();
  rq.user_info.implementation_class_uid = Filler(n);
  EXPECT_EQ(RoundTrip(rq).user_info.implementation_class_uid.size(), n);
  rq.user_info.implementation_class_uid = Filler(n + 1);
  ExpectRefused(rq, "user information item (0x50)");
  rq.user_info.implementation_class_uid = Filler(kU16 + 1);
  ExpectRefused(rq, "implementation class UID sub-item (0x52)");
}

TEST(PduLengthTest, ImplementationVersionNameSubItem) {
  const size_t n = kU16 - kUiOverhead;
  AssociateAc ac = BaseAc();
  ac.user_info.implementation_version_name = std::string(n, 'V');
  EXPECT_EQ(RoundTrip(ac).user_info.implementation_version_name.size(), n);
  ac.user_info.implementation_version_name = std::string(n + 1, 'V');
  ExpectRefused(ac, "user information item (0x50)");
  ac.user_info.implementation_version_name = std::string(kU16 + 1, 'V');
  ExpectRefused(ac, "implementation version name sub-item (0x55)");
}

TEST(PduLengthTest, RoleSelectionUidAndSubItem) {
  // Sub-item body: UID length (2), UID, SCU role, SCP role.
  const size_t n = kU16 - kUiOverhead - 2 - 2;
  AssociateAc ac = BaseAc();  // the AC echoes the peer's role selections
  ac.user_info.roles = {{Filler(n), true, false}};
  AssociateAc back = RoundTrip(ac);
  ASSERT_EQ(back.user_info.roles.size(), 1u);
  EXPECT_EQ(back.user_info.roles[0].sop_class_uid.size(), n);
  EXPECT_TRUE(back.user_info.roles[0].scu_role);
  ac.user_info.roles = {{Filler(n + 1), true, false}};
  ExpectRefused(ac, "user information item (0x50)");
  ac.user_info.roles = {{Filler(kU16 - 3), true, false}};  // the UID fits, its sub-item does not
  ExpectRefused(ac, "role selection sub-item (0x54)");
  ac.user_info.roles = {{Filler(kU16 + 1), true, false}};
  ExpectRefused(ac, "role selection SOP class UID (0x54)");
  AssociateRq rq = BaseRq();
  rq.user_info.roles = {{Filler(kU16 + 1), true, false}};
  ExpectRefused(rq, "role selection SOP class UID (0x54)");
}

TEST(PduLengthTest, ExtendedNegotiationUidInfoAndSubItem) {
  const std::string uid = "1.2.840.10008.5.1.4.1.2.2.1";
  // Sub-item body: UID length (2), UID, application information.
  const size_t n = kU16 - kUiOverhead - 2 - uid.size();
  AssociateRq rq = BaseRq();
  rq.user_info.extended = {{uid, std::string(n, '\x01')}};
  AssociateRq back = RoundTrip(rq);
  ASSERT_EQ(back.user_info.extended.size(), 1u);
  EXPECT_EQ(back.user_info.extended[0].sop_class_uid, uid);
  EXPECT_EQ(back.user_info.extended[0].info.size(), n);
  rq.user_info.extended = {{uid, std::string(n + 1, '\x01')}};
  ExpectRefused(rq, "user information item (0x50)");
  rq.user_info.extended = {{uid, std::string(kU16 - 2 - uid.size() + 1, '\x01')}};
  ExpectRefused(rq, "extended negotiation sub-item (0x56)");
  rq.user_info.extended = {{Filler(kU16 + 1), ""}};
  ExpectRefused(rq, "extended negotiation SOP class UID (0x56)");
}

TEST(PduLengthTest, CommonExtendedNegotiationFieldsAndSubItem) {
  // Sub-item body: SOP class (2 + 3), service class (2 + 3), related list
  // length (2), one related UID (2 + n).
  const size_t n = kU16 - kUiOverhead - 5 - 5 - 2 - 2;
  AssociateRq rq = BaseRq();
  rq.user_info.common_extended = {{"1.2", "1.3", {Filler(n)}}};
  AssociateRq back = RoundTrip(rq);
  ASSERT_EQ(back.user_info.common_extended.size(), 1u);
  ASSERT_EQ(back.user_info.common_extended[0].related_general_sop_classes.size(), 1u);
  EXPECT_EQ(back.user_info.common_extended[0].related_general_sop_classes[0].size(), n);
  rq.user_info.common_extended = {{"1.2", "1.3", {Filler(n + 1)}}};
  ExpectRefused(rq, "user information item (0x50)");
  rq.user_info.common_extended = {{Filler(kU16 + 1), "1.3", {}}};
  ExpectRefused(rq, "common extended negotiation SOP class UID (0x57)");
  rq.user_info.common_extended = {{"1.2", Filler(kU16 + 1), {}}};
  ExpectRefused(rq, "common extended negotiation service class UID (0x57)");
  rq.user_info.common_extended = {{"1.2", "1.3", {Filler(kU16 + 1)}}};
  ExpectRefused(rq, "common extended negotiation related general SOP class UID (0x57)");
  // Each related UID fits; the list of them does not (700 x 102 bytes).
  rq.user_info.common_extended = {{"1.2", "1.3", std::vector<std::string>(700, Filler(100))}};
  ExpectRefused(rq, "common extended negotiation related general SOP class list (0x57)");
  // Each field fits; the sub-item does not.
  rq.user_info.common_extended = {{Filler(30000), Filler(30000), {Filler(6000)}}};
  ExpectRefused(rq, "common extended negotiation sub-item (0x57)");
}

TEST(PduLengthTest, UserIdentityFieldsAndSubItem) {
  // Sub-item body: type, response requested, primary (2 + n), secondary (2 + 0).
  const size_t n = kU16 - kUiOverhead - 2 - 2 - 2;
  AssociateRq rq = BaseRq();
  rq.user_info.user_identity_rq = UserIdentityRq{2, true, std::string(n, 'u'), ""};
  AssociateRq back = RoundTrip(rq);
  ASSERT_TRUE(back.user_info.user_identity_rq.has_value());
  EXPECT_EQ(back.user_info.user_identity_rq->primary_field.size(), n);
  rq.user_info.user_identity_rq = UserIdentityRq{2, true, "", std::string(n, 'p')};
  EXPECT_EQ(RoundTrip(rq).user_info.user_identity_rq->secondary_field.size(), n);
  rq.user_info.user_identity_rq = UserIdentityRq{2, true, std::string(n + 1, 'u'), ""};
  ExpectRefused(rq, "user information item (0x50)");
  rq.user_info.user_identity_rq = UserIdentityRq{2, true, std::string(40000, 'u'), std::string(40000, 'p')};
  ExpectRefused(rq, "user identity sub-item (0x58)");
  rq.user_info.user_identity_rq = UserIdentityRq{1, false, std::string(kU16 + 1, 'u'), ""};
  ExpectRefused(rq, "user identity primary field (0x58)");
  rq.user_info.user_identity_rq = UserIdentityRq{2, false, "u", std::string(kU16 + 1, 'p')};
  ExpectRefused(rq, "user identity secondary field (0x58)");
}

TEST(PduLengthTest, UserIdentityServerResponseAndSubItem) {
  // Sub-item body: response length (2), response.
  const size_t n = kU16 - kUiOverhead - 2;
  AssociateAc ac = BaseAc();
  ac.user_info.user_identity_ac = std::string(n, 'r');
  EXPECT_EQ(RoundTrip(ac).user_info.user_identity_ac->size(), n);
  ac.user_info.user_identity_ac = std::string(n + 1, 'r');
  ExpectRefused(ac, "user information item (0x50)");
  ac.user_info.user_identity_ac = std::string(kU16 - 1, 'r');  // the field fits, its sub-item does not
  ExpectRefused(ac, "user identity server response sub-item (0x59)");
  ac.user_info.user_identity_ac = std::string(kU16 + 1, 'r');
  ExpectRefused(ac, "user identity server response (0x59)");
}

// A read-only mapping of `size` zero bytes that never takes memory: lets a
// PDV claim 4 GiB without allocating it. The encoder must refuse before it
// reads any of it.
class HugeZeros {
 public:
  explicit HugeZeros(size_t size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<const uint8_t*>(p);
  }
  ~HugeZeros() {
    if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
  }
  HugeZeros(const HugeZeros&) = delete;
  HugeZeros& operator=(const HugeZeros&) = delete;
  const uint8_t* data() const { return data_; }

 private:
  size_t size_;
  const uint8_t* data_ = nullptr;
};

TEST(PduLengthTest, PDataHeaderPduAndPdvLengths) {
  // The largest PDV whose PDU length (pdv + 6) still fits 4 bytes.
  std::vector<uint8_t> out;
  ASSERT_TRUE(EncodePDataHeader(1, false, true, kMaxPdvDataInOnePdu, &out).ok());
  EXPECT_EQ(ToHex(out), ToHex(FromHex("04 00 FFFFFFFF  FFFFFFFB 01 02")));
  // Its header decodes (no limit): the decoder waits for the body.
  DecodeLimits no_limit;
  no_limit.max_pdata_length = 0;
  EXPECT_EQ(Decode(out, no_limit).kind, Kind::kNeedMore);
  // One more byte: the PDU length would wrap to 0 (and the PDV length to 1).
  out = {0xAB};
  Status s = EncodePDataHeader(1, false, true, kMaxPdvDataInOnePdu + 1, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(out, std::vector<uint8_t>{0xAB});
  EXPECT_FALSE(EncodePDataHeader(1, false, true, 0xFFFFFFFFu, &out).ok());
  EXPECT_EQ(out, std::vector<uint8_t>{0xAB});
}

TEST(PduLengthTest, PDataPdvAndPduLengths) {
  if (sizeof(size_t) < 8) GTEST_SKIP() << "needs a 64-bit size_t";
  const size_t kFour = size_t{1} << 32;
  HugeZeros zeros(kFour + 16);
  ASSERT_NE(zeros.data(), nullptr) << "cannot map 4 GiB of address space";
  PData p;
  std::vector<uint8_t> out = {0xAB};
  // PDV item length = data + 2: 0xFFFFFFFF fits, the PDU length (+4) does not.
  p.pdvs = {{1, false, true, std::span<const uint8_t>(zeros.data(), 0xFFFFFFFFu - 2)}};
  Status s = EncodePData(p, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("PDU length"), std::string::npos) << s.message();
  // The PDV item length itself would wrap.
  p.pdvs = {{1, false, true, std::span<const uint8_t>(zeros.data(), 0xFFFFFFFFu - 1)}};
  s = EncodePData(p, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("item length"), std::string::npos) << s.message();
  // Two PDVs that each fit, together past 4 GiB.
  p.pdvs = {{1, false, false, std::span<const uint8_t>(zeros.data(), kFour / 2)},
            {1, false, true, std::span<const uint8_t>(zeros.data(), kFour / 2)}};
  EXPECT_FALSE(EncodePData(p, &out).ok());
  EXPECT_EQ(out, std::vector<uint8_t>{0xAB});  // nothing copied, nothing appended
}

}  // namespace
}  // namespace relais::ul
