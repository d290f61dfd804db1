// DICOM Upper Layer PDU codec: PS3.8 section 9.3, Annexes D and E; user
// information sub-items from PS3.7 Annex D.3.3. See pdu.h for the contract.
//
// Choices made where the standard leaves room (each one is tested):
//  - PS3.8 9.3.1: "Items of unrecognized types shall be ignored and skipped."
//    Unknown top-level items of A-ASSOCIATE-RQ/AC and unknown sub-items of a
//    presentation context are skipped. Unknown user information sub-items are
//    kept in UserInformation::unknown (PS3.8 D.2 note 2: an acceptor ignores
//    them and must not reject because of them; we keep them for the log).
//    A presentation context item of the other direction (0x21 in an RQ, 0x20
//    in an AC) is a recognised but unexpected item: kInvalid with
//    kUnexpectedPduParameter.
//  - PS3.8 9.3.2/9.3.3: "A receiver ... shall only test that bit 0 is set" of
//    the protocol version. The decoder does not reject anything on it; it
//    reports the raw value and the association answers a version without bit
//    0 with A-ASSOCIATE-RJ (source 2, reason 2), which is not an abort.
//  - Reserved fields are "sent with a value 00H but not tested" (PS3.8 9.3):
//    never tested here.
//  - The decoder checks framing, not meaning: a missing application context
//    item decodes as an empty application_context, a missing user
//    information item as a default UserInformation (max_length 0), a context
//    without abstract or transfer syntax as empty fields. The association
//    decides what to reject.
//  - Fixed-size PDUs (A-ASSOCIATE-RJ, A-RELEASE-RQ/RP, A-ABORT) must have a
//    PDU length of at least 4; extra bytes are ignored (robustness). An
//    A-ASSOCIATE-RQ/AC needs at least its 68 fixed bytes. Both checks happen
//    on the header, before the body is awaited.
//  - A known user information sub-item whose fixed-size fields have the wrong
//    size, or whose inner length fields run past the sub-item, is kInvalid.
//  - DecodeLimits: a limit of 0 means "no limit", for both fields.
//  - Values outside an enum's table (RJ result/source, abort source/reason,
//    context result) are kept as they are; the caller decides.
//
// Encoding: AE titles are truncated to 16 bytes and space padded (PS3.8
// 9.3.2). UIDs are written unpadded (PS3.8 Annex F: "No separator nor padding
// shall be present ... after the last digit of the last component"; PS3.5 9.1
// exempts network negotiation from the even-length NUL padding). User
// information sub-items go out in increasing item type (PS3.8 9.3.2.3 note:
// older applications may expect it).
// Encoders refuse (InvalidArgument, `out` unchanged) a value that does not
// fit its length field: 2 bytes for items, sub-items and the length-prefixed
// fields of PS3.7 D.3.3.4-D.3.3.7, 4 bytes for PDU and PDV lengths. Nothing
// is split: PS3.8 has no continuation for negotiation items, and a caller
// that streams data chooses its own PDV sizes (EncodePDataHeader).
//
// This file: the PDU header, P-DATA-TF and the fixed-size PDUs;
// pdu_associate.cc: A-ASSOCIATE-RQ/AC and their items; pdu_codec.h: what
// both share (bounds-checked reading, the Writer).
#include "router/protocol/pdu.h"

#include <cstring>
#include <utility>

#include "router/protocol/pdu_codec.h"

namespace relais::ul {

using internal::Fail;
using internal::HexByte;
using internal::kAssociateFixedSize;
using internal::kMaxU32;
using internal::kPduHeaderSize;
using internal::kShortPduBodySize;
using internal::LoadU32;
using internal::ParseError;
using internal::Writer;

namespace {

// PS3.8 9.3.5: P-DATA-TF, one or more PDV items (PS3.8 9.3.5.1, Annex E.2).
bool ParsePData(std::span<const uint8_t> body, PData* pdata, ParseError* err) {
  if (body.empty()) return Fail(err, "P-DATA-TF without presentation data value items");
  size_t pos = 0;
  while (pos < body.size()) {
    if (body.size() - pos < 4) return Fail(err, "truncated PDV item length in P-DATA-TF");
    const uint32_t length = LoadU32(&body[pos]);
    pos += 4;
    if (length < 2) {
      return Fail(err, "PDV item length " + std::to_string(length) + " is less than 2");
    }
    if (length > body.size() - pos) {
      return Fail(err, "PDV item length " + std::to_string(length) + " runs past the P-DATA-TF PDU (" +
                           std::to_string(body.size() - pos) + " bytes left)");
    }
    Pdv pdv;
    pdv.context_id = body[pos];
    const uint8_t control = body[pos + 1];  // PS3.8 E.2: message control header.
    pdv.is_command = (control & 0x01) != 0;
    pdv.is_last = (control & 0x02) != 0;
    pdv.data = body.subspan(pos + 2, length - 2);  // zero copy
    pdata->pdvs.push_back(pdv);
    pos += length;
  }
  return true;
}

DecodeResult Invalid(std::string message, AbortReason reason) {
  DecodeResult result;
  result.kind = DecodeResult::Kind::kInvalid;
  result.error = std::move(message);
  result.abort_reason = reason;
  return result;
}

bool IsKnownType(uint8_t t) { return t >= 0x01 && t <= 0x07; }

// Smallest PDU length field each PDU type can have.
uint32_t MinLength(PduType type) {
  switch (type) {
    case PduType::kAssociateRq:
    case PduType::kAssociateAc: return kAssociateFixedSize;
    case PduType::kPData: return 0;  // emptiness is reported on the body
    default: return kShortPduBodySize;
  }
}

}  // namespace

DecodeResult DecodePdu(std::span<const uint8_t> buf, const DecodeLimits& limits) {
  DecodeResult result;  // kNeedMore
  if (buf.size() < kPduHeaderSize) return result;
  const uint8_t raw_type = buf[0];
  if (!IsKnownType(raw_type)) {
    return Invalid("unrecognized PDU type " + HexByte(raw_type), AbortReason::kUnrecognizedPdu);
  }
  const PduType type = static_cast<PduType>(raw_type);
  const uint32_t length = LoadU32(&buf[2]);
  // The limit is checked before the body is awaited (see pdu.h).
  const uint32_t limit = type == PduType::kPData ? limits.max_pdata_length : limits.max_other_length;
  if (limit != 0 && length > limit) {
    return Invalid(std::string(PduTypeName(type)) + " length " + std::to_string(length) + " exceeds limit " +
                       std::to_string(limit),
                   AbortReason::kInvalidPduParameterValue);
  }
  if (length < MinLength(type)) {
    return Invalid(std::string(PduTypeName(type)) + " length " + std::to_string(length) + " is too short",
                   AbortReason::kInvalidPduParameterValue);
  }
  if (buf.size() - kPduHeaderSize < length) return result;  // no overflow: size >= 6

  const std::span<const uint8_t> body = buf.subspan(kPduHeaderSize, length);
  ParseError err;
  bool ok = true;
  switch (type) {
    case PduType::kAssociateRq: {
      AssociateRq rq;
      ok = ParseAssociateRq(body, &rq, &err);
      result.pdu = std::move(rq);
      break;
    }
    case PduType::kAssociateAc: {
      AssociateAc ac;
      ok = ParseAssociateAc(body, &ac, &err);
      result.pdu = std::move(ac);
      break;
    }
    case PduType::kAssociateRj:  // PS3.8 Table 9-21: reserved, result, source, reason.
      result.pdu = AssociateRj{static_cast<RejectResult>(body[1]), static_cast<RejectSource>(body[2]), body[3]};
      break;
    case PduType::kPData: {
      PData pdata;
      ok = ParsePData(body, &pdata, &err);
      result.pdu = std::move(pdata);
      break;
    }
    case PduType::kReleaseRq: result.pdu = ReleaseRq{}; break;  // PS3.8 9.3.6: 4 reserved bytes
    case PduType::kReleaseRp: result.pdu = ReleaseRp{}; break;  // PS3.8 9.3.7
    case PduType::kAbort:                                       // PS3.8 Table 9-26: reserved, reserved, source, reason.
      result.pdu = Abort{static_cast<AbortSource>(body[2]), static_cast<AbortReason>(body[3])};
      break;
  }
  if (!ok) return Invalid(std::string(PduTypeName(type)) + ": " + err.message, err.reason);
  result.kind = DecodeResult::Kind::kPdu;
  result.consumed = kPduHeaderSize + length;
  return result;
}

// The fixed-size PDUs below have no variable field: they cannot fail.
void EncodeAssociateRj(const AssociateRj& rj, std::vector<uint8_t>* out) {
  Writer w("A-ASSOCIATE-RJ", out);
  size_t at = w.BeginPdu(PduType::kAssociateRj);  // PS3.8 Table 9-21
  w.U8(0);
  w.U8(static_cast<uint8_t>(rj.result));
  w.U8(static_cast<uint8_t>(rj.source));
  w.U8(rj.reason);
  w.EndPdu(at);
}

void EncodeReleaseRq(std::vector<uint8_t>* out) {
  Writer w("A-RELEASE-RQ", out);
  size_t at = w.BeginPdu(PduType::kReleaseRq);  // PS3.8 Table 9-24
  w.U32(0);
  w.EndPdu(at);
}

void EncodeReleaseRp(std::vector<uint8_t>* out) {
  Writer w("A-RELEASE-RP", out);
  size_t at = w.BeginPdu(PduType::kReleaseRp);  // PS3.8 Table 9-25
  w.U32(0);
  w.EndPdu(at);
}

void EncodeAbort(const Abort& abort, std::vector<uint8_t>* out) {
  Writer w("A-ABORT", out);
  size_t at = w.BeginPdu(PduType::kAbort);  // PS3.8 Table 9-26
  w.U8(0);
  w.U8(0);
  w.U8(static_cast<uint8_t>(abort.source));
  w.U8(static_cast<uint8_t>(abort.reason));
  w.EndPdu(at);
}

namespace {
// PS3.8 E.2: bit 0 command (1) / data (0), bit 1 last fragment.
uint8_t ControlHeader(bool is_command, bool is_last) {
  return static_cast<uint8_t>((is_command ? 0x01 : 0x00) | (is_last ? 0x02 : 0x00));
}
}  // namespace

Status EncodePData(const PData& pdata, std::vector<uint8_t>* out) {
  // Both length fields are checked before anything is copied.
  size_t total = 0;
  for (const Pdv& pdv : pdata.pdvs) {
    if (pdv.data.size() > kMaxU32 - 2) {  // PS3.8 9.3.5.1: the item length counts 2 header bytes
      return Status::InvalidArgument("P-DATA-TF: PDV of " + std::to_string(pdv.data.size()) +
                                     " bytes does not fit its 4-byte item length");
    }
    total += 6 + pdv.data.size();
    if (total > kMaxU32) {
      return Status::InvalidArgument("P-DATA-TF: PDV list of more than " + std::to_string(kMaxU32) +
                                     " bytes does not fit the 4-byte PDU length");
    }
  }
  out->reserve(out->size() + kPduHeaderSize + total);
  Writer w("P-DATA-TF", out);
  size_t at = w.BeginPdu(PduType::kPData);
  for (const Pdv& pdv : pdata.pdvs) {  // PS3.8 9.3.5.1
    w.U32(static_cast<uint32_t>(pdv.data.size() + 2));
    w.U8(pdv.context_id);
    w.U8(ControlHeader(pdv.is_command, pdv.is_last));
    out->insert(out->end(), pdv.data.begin(), pdv.data.end());
  }
  w.EndPdu(at);
  return w.Finish();
}

Status EncodePDataHeader(uint8_t context_id, bool is_command, bool is_last, uint32_t pdv_length,
                         std::vector<uint8_t>* out) {
  // PDU length = PDV item length field (4) + item length (2 + data).
  if (pdv_length > kMaxPdvDataInOnePdu) {
    return Status::InvalidArgument("P-DATA-TF: PDV of " + std::to_string(pdv_length) +
                                   " bytes does not fit the 4-byte PDU length");
  }
  Writer w("P-DATA-TF", out);
  w.U8(static_cast<uint8_t>(PduType::kPData));
  w.U8(0);
  w.U32(pdv_length + 6);
  w.U32(pdv_length + 2);
  w.U8(context_id);
  w.U8(ControlHeader(is_command, is_last));
  return w.Finish();
}

const char* PduTypeName(PduType type) {
  switch (type) {
    case PduType::kAssociateRq: return "A-ASSOCIATE-RQ";
    case PduType::kAssociateAc: return "A-ASSOCIATE-AC";
    case PduType::kAssociateRj: return "A-ASSOCIATE-RJ";
    case PduType::kPData: return "P-DATA-TF";
    case PduType::kReleaseRq: return "A-RELEASE-RQ";
    case PduType::kReleaseRp: return "A-RELEASE-RP";
    case PduType::kAbort: return "A-ABORT";
  }
  return "unknown PDU";
}

}  // namespace relais::ul
