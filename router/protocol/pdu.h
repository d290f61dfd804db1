// Room router/protocol/ (DESIGN.md, "The rooms of router/"): the DICOM
// protocol as data. PDUs (pdu.h, pdu_input.h), the PS3.8 state machine
// (fsm.h), presentation context negotiation (presentation.h) and DIMSE
// command sets (dimse.h): bytes and events in, bytes and effects out.
// May include: base/ and the standard library only. No I/O, no libuv, no
// DCMTK, no store, no other room: it is its own library, relais_protocol,
// and relais_protocol_link_check makes the linker enforce that.
//
// DICOM Upper Layer PDUs (PS3.8 section 9.3) as plain values, with a pure
// decoder and encoder over byte buffers. No I/O here.
//
// Decoding: DecodePdu() looks at the front of a buffer and answers
//   kNeedMore  - not a whole PDU yet (the 6-byte header may be checked already),
//   kPdu       - one PDU decoded, `consumed` bytes used,
//   kInvalid   - the bytes can never be a valid PDU; `error` says why. The
//                association must be aborted (A-ABORT, source 2, `abort_reason`).
// The PDU length is checked against the limit *before* waiting for the body,
// so a peer cannot make us buffer a 4 GB PDU.
//
// Thread: any; the functions keep no state.
#ifndef RELAIS_ROUTER_PROTOCOL_PDU_H_
#define RELAIS_ROUTER_PROTOCOL_PDU_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "base/status.h"

namespace relais::ul {

// PS3.8 9.3.1: PDU types.
enum class PduType : uint8_t {
  kAssociateRq = 0x01,
  kAssociateAc = 0x02,
  kAssociateRj = 0x03,
  kPData = 0x04,
  kReleaseRq = 0x05,
  kReleaseRp = 0x06,
  kAbort = 0x07,
};

inline constexpr char kApplicationContextName[] = "1.2.840.10008.3.1.1.1";

// PS3.8 9.3.2.2 / 9.3.3.2: presentation context item in an A-ASSOCIATE-RQ.
struct PresentationContextRq {
  uint8_t id = 0;  // odd, 1..255
  std::string abstract_syntax;
  std::vector<std::string> transfer_syntaxes;
};

// PS3.8 Table 9-18: result/reason of a presentation context in an A-ASSOCIATE-AC.
enum class ContextResult : uint8_t {
  kAcceptance = 0,
  kUserRejection = 1,
  kNoReason = 2,
  kAbstractSyntaxNotSupported = 3,
  kTransferSyntaxesNotSupported = 4,
};

struct PresentationContextAc {
  uint8_t id = 0;
  ContextResult result = ContextResult::kAcceptance;
  std::string transfer_syntax;  // meaningful only when accepted
};

// PS3.7 D.3.3.3: asynchronous operations window (0 means unlimited).
struct AsyncOpsWindow {
  uint16_t max_invoked = 1;
  uint16_t max_performed = 1;
};

// PS3.7 D.3.3.4: SCP/SCU role selection.
struct RoleSelection {
  std::string sop_class_uid;
  bool scu_role = false;
  bool scp_role = false;
};

// PS3.7 D.3.3.5: SOP class extended negotiation (opaque application info).
struct ExtendedNegotiation {
  std::string sop_class_uid;
  std::string info;  // raw bytes
};

// PS3.7 D.3.3.6: SOP class common extended negotiation.
struct CommonExtendedNegotiation {
  std::string sop_class_uid;
  std::string service_class_uid;
  std::vector<std::string> related_general_sop_classes;
};

// PS3.7 D.3.3.7: user identity negotiation, request side.
struct UserIdentityRq {
  uint8_t type = 1;  // 1 username, 2 username+passcode, 3 Kerberos, 4 SAML, 5 JWT
  bool positive_response_requested = false;
  std::string primary_field;    // raw bytes
  std::string secondary_field;  // raw bytes (passcode for type 2)
};

// A user information sub-item we do not know: kept, never fatal.
struct UnknownItem {
  uint8_t type = 0;
  std::string data;
};

// PS3.8 9.3.2.3 / PS3.7 Annex D.3.3: user information item.
struct UserInformation {
  uint32_t max_length = 0;  // PS3.8 D.1: 0 means no limit
  std::string implementation_class_uid;
  std::string implementation_version_name;  // may be empty (absent)
  std::optional<AsyncOpsWindow> async_ops;
  std::vector<RoleSelection> roles;
  std::vector<ExtendedNegotiation> extended;
  std::vector<CommonExtendedNegotiation> common_extended;
  std::optional<UserIdentityRq> user_identity_rq;
  std::optional<std::string> user_identity_ac;  // server response (A-ASSOCIATE-AC only)
  std::vector<UnknownItem> unknown;
};

// PS3.8 9.3.2: A-ASSOCIATE-RQ. AE titles are stored with trailing and leading
// spaces removed (PS3.8: 16 bytes, space padded, leading/trailing spaces not significant).
struct AssociateRq {
  uint16_t protocol_version = 1;
  std::string called_ae;
  std::string calling_ae;
  std::string application_context = kApplicationContextName;
  std::vector<PresentationContextRq> contexts;
  UserInformation user_info;
};

// PS3.8 9.3.3: A-ASSOCIATE-AC. called/calling AE echo the request.
struct AssociateAc {
  uint16_t protocol_version = 1;
  std::string called_ae;
  std::string calling_ae;
  std::string application_context = kApplicationContextName;
  std::vector<PresentationContextAc> contexts;
  UserInformation user_info;
};

// PS3.8 9.3.4, Table 9-21.
enum class RejectResult : uint8_t { kPermanent = 1, kTransient = 2 };
enum class RejectSource : uint8_t {
  kServiceUser = 1,
  kServiceProviderAcse = 2,
  kServiceProviderPresentation = 3,
};
// Reasons, by source. Service user (source 1):
inline constexpr uint8_t kRjNoReasonGiven = 1;
inline constexpr uint8_t kRjApplicationContextNotSupported = 2;
inline constexpr uint8_t kRjCallingAeNotRecognized = 3;
inline constexpr uint8_t kRjCalledAeNotRecognized = 7;
// Service provider ACSE (source 2):
inline constexpr uint8_t kRjProtocolVersionNotSupported = 2;
// Service provider presentation (source 3):
inline constexpr uint8_t kRjTemporaryCongestion = 1;
inline constexpr uint8_t kRjLocalLimitExceeded = 2;

struct AssociateRj {
  RejectResult result = RejectResult::kPermanent;
  RejectSource source = RejectSource::kServiceUser;
  uint8_t reason = kRjNoReasonGiven;
};

// PS3.8 9.3.5.1 / Annex E: one presentation data value. `data` points into
// the buffer that was decoded and is valid only while that buffer is.
struct Pdv {
  uint8_t context_id = 0;
  bool is_command = false;  // message control header bit 0
  bool is_last = false;     // message control header bit 1
  std::span<const uint8_t> data;
};

struct PData {
  std::vector<Pdv> pdvs;
};

struct ReleaseRq {};
struct ReleaseRp {};

// PS3.8 9.3.8, Table 9-26.
enum class AbortSource : uint8_t { kServiceUser = 0, kServiceProvider = 2 };
enum class AbortReason : uint8_t {
  kNotSpecified = 0,
  kUnrecognizedPdu = 1,
  kUnexpectedPdu = 2,
  kUnrecognizedPduParameter = 4,
  kUnexpectedPduParameter = 5,
  kInvalidPduParameterValue = 6,
};

struct Abort {
  AbortSource source = AbortSource::kServiceUser;
  AbortReason reason = AbortReason::kNotSpecified;
};

using Pdu = std::variant<AssociateRq, AssociateAc, AssociateRj, PData, ReleaseRq, ReleaseRp, Abort>;

struct DecodeResult {
  enum class Kind { kNeedMore, kPdu, kInvalid };
  Kind kind = Kind::kNeedMore;
  size_t consumed = 0;                                    // bytes of the buffer used by the PDU (kPdu only)
  Pdu pdu;                                                // kPdu only
  std::string error;                                      // kInvalid only: what was wrong, for the log
  AbortReason abort_reason = AbortReason::kNotSpecified;  // kInvalid only
};

struct DecodeLimits {
  // Largest P-DATA-TF PDU length field accepted: our negotiated receive
  // maximum (PS3.8 D.1: the maximum length of the PDV list, i.e. the PDU
  // length field of P-DATA-TF). 0 means no limit (not recommended).
  uint32_t max_pdata_length = 262144;
  // Largest length accepted for any other PDU (association negotiation).
  uint32_t max_other_length = 1 << 20;
};

// Decodes the PDU at the front of `buf`. Never reads outside `buf`, never
// allocates more than the bytes present, never throws.
DecodeResult DecodePdu(std::span<const uint8_t> buf, const DecodeLimits& limits);

// Encoders append one whole PDU to `out`. Those with variable-length fields
// return InvalidArgument, and leave `out` as it was, when a value does not
// fit its length field (PS3.8 9.3: 2-byte item and sub-item lengths, the
// 2-byte fields of PS3.7 D.3.3.4-D.3.3.7, 4-byte PDU and PDV lengths); a
// length is never wrapped. Negotiation values the peer sent can be echoed
// (role selection), so the A-ASSOCIATE-AC can fail on peer input.
[[nodiscard]] Status EncodeAssociateRq(const AssociateRq& rq, std::vector<uint8_t>* out);
[[nodiscard]] Status EncodeAssociateAc(const AssociateAc& ac, std::vector<uint8_t>* out);
// Fixed size: cannot fail.
void EncodeAssociateRj(const AssociateRj& rj, std::vector<uint8_t>* out);
void EncodeReleaseRq(std::vector<uint8_t>* out);
void EncodeReleaseRp(std::vector<uint8_t>* out);
void EncodeAbort(const Abort& abort, std::vector<uint8_t>* out);
// One P-DATA-TF PDU holding the given PDVs (each PDV's data is copied).
// Refused before anything is copied when a PDV or the whole list does not
// fit its 4-byte length.
[[nodiscard]] Status EncodePData(const PData& pdata, std::vector<uint8_t>* out);
// Largest `pdv_length` EncodePDataHeader accepts: the PDU length field
// (4 bytes) counts the PDV item length field and its 2 header bytes too.
inline constexpr uint32_t kMaxPdvDataInOnePdu = 0xFFFFFFFFu - 6;
// Encodes the 6-byte P-DATA-TF header plus a 6-byte PDV header for a single
// PDV of `pdv_length` data bytes; the caller appends the data itself. Lets
// the sender stream data without copying it. Refuses a `pdv_length` above
// kMaxPdvDataInOnePdu.
[[nodiscard]] Status EncodePDataHeader(uint8_t context_id, bool is_command, bool is_last, uint32_t pdv_length,
                                       std::vector<uint8_t>* out);

// Human-readable name of a PDU type for logs ("A-ASSOCIATE-RQ").
const char* PduTypeName(PduType type);

}  // namespace relais::ul

#endif  // RELAIS_ROUTER_PROTOCOL_PDU_H_
