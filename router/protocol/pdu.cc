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
#include "router/protocol/pdu.h"

#include <cstring>
#include <utility>

namespace relais::ul {
namespace {

constexpr size_t kPduHeaderSize = 6;
// PS3.8 Table 9-11: protocol version (2), reserved (2), called AE (16),
// calling AE (16), reserved (32).
constexpr size_t kAssociateFixedSize = 68;
// PS3.8 Tables 9-21, 9-24, 9-25, 9-26: four bytes after the header.
constexpr size_t kShortPduBodySize = 4;
constexpr size_t kAeTitleSize = 16;

// ---------------------------------------------------------------- reading

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t LoadU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string ToString(std::span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// PS3.8 9.3.2: AE titles are 16 bytes, leading and trailing spaces are not
// significant. Trailing NULs (sent by some non-conforming peers) go too.
std::string StripAeTitle(std::span<const uint8_t> field) {
  size_t begin = 0;
  size_t end = field.size();
  while (begin < end && field[begin] == ' ') ++begin;
  while (end > begin && (field[end - 1] == ' ' || field[end - 1] == '\0')) --end;
  return ToString(field.subspan(begin, end - begin));
}

// PS3.8 Annex F forbids padding, but peers that pad UIDs as in a data set
// (PS3.5 9.1, trailing NUL) or with a space exist: strip them.
std::string StripUid(std::span<const uint8_t> field) {
  size_t end = field.size();
  while (end > 0 && (field[end - 1] == '\0' || field[end - 1] == ' ')) --end;
  return ToString(field.first(end));
}

std::string HexByte(uint8_t b) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string s = "0x";
  s += kDigits[b >> 4];
  s += kDigits[b & 0xF];
  return s;
}

// A bounds-checked cursor over one item body. Every read fails cleanly
// instead of reading past the end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  bool empty() const { return pos_ == data_.size(); }

  bool U8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = data_[pos_++];
    return true;
  }
  bool U16(uint16_t* v) {
    if (remaining() < 2) return false;
    *v = LoadU16(&data_[pos_]);
    pos_ += 2;
    return true;
  }
  bool Bytes(size_t n, std::span<const uint8_t>* out) {
    if (remaining() < n) return false;
    *out = data_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  // A 2-byte length followed by that many bytes (PS3.7 D.3.3.4-D.3.3.7).
  bool LengthPrefixed(std::span<const uint8_t>* out) {
    uint16_t n = 0;
    return U16(&n) && Bytes(n, out);
  }
  std::span<const uint8_t> Rest() {
    auto rest = data_.subspan(pos_);
    pos_ = data_.size();
    return rest;
  }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

// Walks items with the PS3.8 9.3.2 item header: type (1), reserved (1),
// length (2, big endian).
class ItemWalker {
 public:
  enum class Step { kEnd, kItem, kError };

  ItemWalker(std::span<const uint8_t> data, const char* parent) : reader_(data), parent_(parent) {}

  Step Next(uint8_t* type, std::span<const uint8_t>* body, std::string* error) {
    if (reader_.empty()) return Step::kEnd;
    uint8_t reserved = 0;
    uint16_t length = 0;
    if (!reader_.U8(type) || !reader_.U8(&reserved) || !reader_.U16(&length)) {
      *error = std::string("truncated item header in ") + parent_;
      return Step::kError;
    }
    if (!reader_.Bytes(length, body)) {
      *error = "item " + HexByte(*type) + " length " + std::to_string(length) + " runs past its parent " +
               parent_ + " (" + std::to_string(reader_.remaining()) + " bytes left)";
      return Step::kError;
    }
    return Step::kItem;
  }

 private:
  Reader reader_;
  const char* parent_;
};

// Failure of a nested parse: message plus the abort reason to use.
struct ParseError {
  std::string message;
  AbortReason reason = AbortReason::kInvalidPduParameterValue;
};

bool Fail(ParseError* err, std::string message,
          AbortReason reason = AbortReason::kInvalidPduParameterValue) {
  err->message = std::move(message);
  err->reason = reason;
  return false;
}

// PS3.8 9.3.2.2: presentation context item (RQ), 0x20.
bool ParseContextRq(std::span<const uint8_t> body, PresentationContextRq* pc, ParseError* err) {
  Reader r(body);
  std::span<const uint8_t> fixed;
  // Context ID (1), reserved (3).
  if (!r.Bytes(4, &fixed)) return Fail(err, "presentation context item (RQ) shorter than 4 bytes");
  pc->id = fixed[0];
  ItemWalker items(r.Rest(), "presentation context item (RQ)");
  uint8_t type = 0;
  std::span<const uint8_t> item;
  for (;;) {
    switch (items.Next(&type, &item, &err->message)) {
      case ItemWalker::Step::kEnd: return true;
      case ItemWalker::Step::kError: err->reason = AbortReason::kInvalidPduParameterValue; return false;
      case ItemWalker::Step::kItem: break;
    }
    if (type == 0x30) {  // PS3.8 9.3.2.2.1: abstract syntax sub-item.
      pc->abstract_syntax = StripUid(item);
    } else if (type == 0x40) {  // PS3.8 9.3.2.2.2: transfer syntax sub-item.
      pc->transfer_syntaxes.push_back(StripUid(item));
    }  // PS3.8 9.3.1: other sub-items are ignored and skipped.
  }
}

// PS3.8 9.3.3.2: presentation context item (AC), 0x21.
bool ParseContextAc(std::span<const uint8_t> body, PresentationContextAc* pc, ParseError* err) {
  Reader r(body);
  std::span<const uint8_t> fixed;
  // Context ID (1), reserved (1), result/reason (1), reserved (1).
  if (!r.Bytes(4, &fixed)) return Fail(err, "presentation context item (AC) shorter than 4 bytes");
  pc->id = fixed[0];
  pc->result = static_cast<ContextResult>(fixed[2]);
  ItemWalker items(r.Rest(), "presentation context item (AC)");
  uint8_t type = 0;
  std::span<const uint8_t> item;
  for (;;) {
    switch (items.Next(&type, &item, &err->message)) {
      case ItemWalker::Step::kEnd: return true;
      case ItemWalker::Step::kError: err->reason = AbortReason::kInvalidPduParameterValue; return false;
      case ItemWalker::Step::kItem: break;
    }
    // PS3.8 9.3.3.2.1: one transfer syntax sub-item, not significant when
    // the result is not acceptance (kept anyway).
    if (type == 0x40) pc->transfer_syntax = StripUid(item);
  }
}

// PS3.7 D.3.3.6 (Table D.3-12): SOP class common extended negotiation.
bool ParseCommonExtended(std::span<const uint8_t> body, CommonExtendedNegotiation* ce, ParseError* err) {
  Reader r(body);
  std::span<const uint8_t> sop, service, related;
  if (!r.LengthPrefixed(&sop) || !r.LengthPrefixed(&service) || !r.LengthPrefixed(&related)) {
    return Fail(err, "common extended negotiation sub-item (0x57): a length runs past the sub-item");
  }
  ce->sop_class_uid = StripUid(sop);
  ce->service_class_uid = StripUid(service);
  // Table D.3-13: each related general SOP class is length (2) + UID.
  Reader rr(related);
  while (!rr.empty()) {
    std::span<const uint8_t> uid;
    if (!rr.LengthPrefixed(&uid)) {
      return Fail(err, "common extended negotiation sub-item (0x57): related SOP class runs past its list");
    }
    ce->related_general_sop_classes.push_back(StripUid(uid));
  }
  return true;
}

// PS3.8 9.3.2.3 / Annex D, PS3.7 D.3.3: user information item, 0x50.
bool ParseUserInformation(std::span<const uint8_t> body, UserInformation* ui, ParseError* err) {
  ItemWalker items(body, "user information item");
  uint8_t type = 0;
  std::span<const uint8_t> item;
  for (;;) {
    switch (items.Next(&type, &item, &err->message)) {
      case ItemWalker::Step::kEnd: return true;
      case ItemWalker::Step::kError: err->reason = AbortReason::kInvalidPduParameterValue; return false;
      case ItemWalker::Step::kItem: break;
    }
    Reader r(item);
    switch (type) {
      case 0x51:  // PS3.8 D.1: maximum length received, 4 bytes.
        if (item.size() != 4) return Fail(err, "maximum length sub-item (0x51) length is not 4");
        ui->max_length = LoadU32(item.data());
        break;
      case 0x52:  // PS3.7 D.3.3.2.1: implementation class UID.
        ui->implementation_class_uid = StripUid(item);
        break;
      case 0x53:  // PS3.7 D.3.3.3.1: max invoked (2), max performed (2).
        if (item.size() != 4) return Fail(err, "asynchronous operations window sub-item (0x53) length is not 4");
        ui->async_ops = AsyncOpsWindow{LoadU16(item.data()), LoadU16(item.data() + 2)};
        break;
      case 0x54: {  // PS3.7 D.3.3.4.1: UID length (2), UID, SCU role (1), SCP role (1).
        RoleSelection role;
        std::span<const uint8_t> uid;
        uint8_t scu = 0, scp = 0;
        if (!r.LengthPrefixed(&uid) || !r.U8(&scu) || !r.U8(&scp)) {
          return Fail(err, "role selection sub-item (0x54): fields run past the sub-item");
        }
        role.sop_class_uid = StripUid(uid);
        role.scu_role = scu != 0;
        role.scp_role = scp != 0;
        ui->roles.push_back(std::move(role));
        break;
      }
      case 0x55:  // PS3.7 D.3.3.2.3: implementation version name, 1-16 chars.
        ui->implementation_version_name = ToString(item);
        break;
      case 0x56: {  // PS3.7 D.3.3.5.1: UID length (2), UID, application info.
        ExtendedNegotiation ext;
        std::span<const uint8_t> uid;
        if (!r.LengthPrefixed(&uid)) {
          return Fail(err, "extended negotiation sub-item (0x56): UID runs past the sub-item");
        }
        ext.sop_class_uid = StripUid(uid);
        ext.info = ToString(r.Rest());
        ui->extended.push_back(std::move(ext));
        break;
      }
      case 0x57: {
        CommonExtendedNegotiation ce;
        if (!ParseCommonExtended(item, &ce, err)) return false;
        ui->common_extended.push_back(std::move(ce));
        break;
      }
      case 0x58: {  // PS3.7 D.3.3.7.1: type (1), response requested (1),
                    // primary length (2), primary, secondary length (2), secondary.
        UserIdentityRq id;
        uint8_t positive = 0;
        std::span<const uint8_t> primary, secondary;
        if (!r.U8(&id.type) || !r.U8(&positive) || !r.LengthPrefixed(&primary) ||
            !r.LengthPrefixed(&secondary)) {
          return Fail(err, "user identity sub-item (0x58): fields run past the sub-item");
        }
        id.positive_response_requested = positive != 0;
        id.primary_field = ToString(primary);
        id.secondary_field = ToString(secondary);
        ui->user_identity_rq = std::move(id);
        break;
      }
      case 0x59: {  // PS3.7 D.3.3.7.2: server response length (2), response.
        std::span<const uint8_t> response;
        if (!r.LengthPrefixed(&response)) {
          return Fail(err, "user identity sub-item (0x59): response runs past the sub-item");
        }
        ui->user_identity_ac = ToString(response);
        break;
      }
      default:  // PS3.8 D.2 note 2: unrecognized sub-items are ignored; kept.
        ui->unknown.push_back(UnknownItem{type, ToString(item)});
        break;
    }
  }
}

// PS3.8 9.3.2 / 9.3.3: the common layout of A-ASSOCIATE-RQ and -AC.
// `Assoc` is AssociateRq or AssociateAc.
template <typename Assoc>
bool ParseAssociate(std::span<const uint8_t> body, bool is_rq, Assoc* a, ParseError* err) {
  // Length >= kAssociateFixedSize was checked on the header.
  const uint8_t* p = body.data();
  a->protocol_version = LoadU16(p);  // only bit 0 is significant; see top.
  a->called_ae = StripAeTitle(body.subspan(4, kAeTitleSize));
  a->calling_ae = StripAeTitle(body.subspan(4 + kAeTitleSize, kAeTitleSize));
  a->application_context.clear();  // absent item -> empty, see top.
  const char* name = is_rq ? "A-ASSOCIATE-RQ" : "A-ASSOCIATE-AC";
  ItemWalker items(body.subspan(kAssociateFixedSize), name);
  uint8_t type = 0;
  std::span<const uint8_t> item;
  for (;;) {
    switch (items.Next(&type, &item, &err->message)) {
      case ItemWalker::Step::kEnd: return true;
      case ItemWalker::Step::kError: err->reason = AbortReason::kInvalidPduParameterValue; return false;
      case ItemWalker::Step::kItem: break;
    }
    if (type == 0x10) {  // PS3.8 9.3.2.1: application context item.
      a->application_context = StripUid(item);
    } else if (type == 0x50) {
      if (!ParseUserInformation(item, &a->user_info, err)) return false;
    } else if (type == (is_rq ? 0x21 : 0x20)) {
      return Fail(err, std::string("presentation context item ") + HexByte(type) + " in an " + name,
                  AbortReason::kUnexpectedPduParameter);
    } else if (type == 0x20 || type == 0x21) {
      if constexpr (std::is_same_v<Assoc, AssociateRq>) {
        PresentationContextRq pc;
        if (!ParseContextRq(item, &pc, err)) return false;
        a->contexts.push_back(std::move(pc));
      } else {
        PresentationContextAc pc;
        if (!ParseContextAc(item, &pc, err)) return false;
        a->contexts.push_back(std::move(pc));
      }
    }  // PS3.8 9.3.1: items of unrecognized types are ignored and skipped.
  }
}

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

// ---------------------------------------------------------------- writing

constexpr size_t kMaxU16 = 0xFFFF;
constexpr size_t kMaxU32 = 0xFFFFFFFF;

// Appends one PDU to `bytes`. A value that does not fit its length field is
// refused, never wrapped: the first such field is remembered in `error`, and
// Finish() then removes everything this Writer appended and returns it.
class Writer {
 public:
  Writer(const char* pdu_name, std::vector<uint8_t>* out) : name_(pdu_name), out_(out), start_(out->size()) {}

  void U8(uint8_t v) { out_->push_back(v); }
  void U16(uint16_t v) {
    out_->push_back(static_cast<uint8_t>(v >> 8));
    out_->push_back(static_cast<uint8_t>(v));
  }
  void U32(uint32_t v) {
    out_->push_back(static_cast<uint8_t>(v >> 24));
    out_->push_back(static_cast<uint8_t>(v >> 16));
    out_->push_back(static_cast<uint8_t>(v >> 8));
    out_->push_back(static_cast<uint8_t>(v));
  }
  void Bytes(std::string_view s) { out_->insert(out_->end(), s.begin(), s.end()); }
  void Zeros(size_t n) { out_->insert(out_->end(), n, 0); }
  size_t size() const { return out_->size(); }

  // A 2-byte length and the bytes (PS3.7 D.3.3.4-D.3.3.7 fields).
  void LengthPrefixed(std::string_view s, const char* what) {
    if (!Fits(s.size(), kMaxU16, what)) return;
    U16(static_cast<uint16_t>(s.size()));
    Bytes(s);
  }
  // A 2-byte length patched by EndU16Length over what follows it.
  size_t BeginU16Length() {
    size_t at = size();
    U16(0);
    return at;
  }
  void EndU16Length(size_t at, const char* what) {
    const size_t n = size() - at - 2;
    if (Fits(n, kMaxU16, what)) PatchU16(at, static_cast<uint16_t>(n));
  }

  // Item header (PS3.8 9.3.2): type, reserved (second byte, 0 unless given),
  // 2-byte length patched by EndItem.
  size_t BeginItem(uint8_t type, uint8_t second = 0) {
    size_t at = size();
    U8(type);
    U8(second);
    U16(0);
    return at;
  }
  void EndItem(size_t at, const char* what) {
    const size_t n = size() - at - 4;
    if (Fits(n, kMaxU16, what)) PatchU16(at + 2, static_cast<uint16_t>(n));
  }
  void StringItem(uint8_t type, std::string_view s, const char* what) {
    size_t at = BeginItem(type);
    Bytes(s);
    EndItem(at, what);
  }

  // PDU header (PS3.8 9.3.1): type, reserved, 4-byte length patched by EndPdu.
  size_t BeginPdu(PduType type) {
    size_t at = size();
    U8(static_cast<uint8_t>(type));
    U8(0);
    U32(0);
    return at;
  }
  void EndPdu(size_t at) {
    const size_t n = size() - at - kPduHeaderSize;
    if (Fits(n, kMaxU32, "PDU")) PatchU32(at + 2, static_cast<uint32_t>(n));
  }

  // OK, or the first field that did not fit (and `out` as it was before).
  Status Finish() {
    if (error_.empty()) return Status::OK();
    out_->resize(start_);
    return Status::InvalidArgument(std::string(name_) + ": " + error_);
  }

 private:
  bool Fits(size_t n, size_t max, const char* what) {
    if (n <= max) return true;
    if (error_.empty()) {
      error_ = std::string(what) + " is " + std::to_string(n) + " bytes long; its length field holds at most " +
               std::to_string(max);
    }
    return false;
  }
  void PatchU16(size_t at, uint16_t v) {
    (*out_)[at] = static_cast<uint8_t>(v >> 8);
    (*out_)[at + 1] = static_cast<uint8_t>(v);
  }
  void PatchU32(size_t at, uint32_t v) {
    (*out_)[at] = static_cast<uint8_t>(v >> 24);
    (*out_)[at + 1] = static_cast<uint8_t>(v >> 16);
    (*out_)[at + 2] = static_cast<uint8_t>(v >> 8);
    (*out_)[at + 3] = static_cast<uint8_t>(v);
  }

  const char* name_;
  std::vector<uint8_t>* out_;
  size_t start_;
  std::string error_;
};

// PS3.8 9.3.2: 16 bytes, space padded.
void PutAeTitle(std::string_view ae, Writer* w) {
  if (ae.size() > kAeTitleSize) ae = ae.substr(0, kAeTitleSize);
  w->Bytes(ae);
  w->Bytes(std::string_view("                ", kAeTitleSize - ae.size()));
}

void PutUnknownItems(const UserInformation& ui, bool before_known, Writer* w) {
  for (const UnknownItem& u : ui.unknown) {
    if ((u.type < 0x51) == before_known) w->StringItem(u.type, u.data, "unknown user information sub-item");
  }
}

// PS3.8 9.3.2.3 / PS3.7 D.3.3, sub-items in increasing type order.
void PutUserInformation(const UserInformation& ui, Writer* w) {
  size_t at = w->BeginItem(0x50);
  PutUnknownItems(ui, /*before_known=*/true, w);
  size_t sub = w->BeginItem(0x51);  // PS3.8 D.1
  w->U32(ui.max_length);
  w->EndItem(sub, "maximum length sub-item (0x51)");
  if (!ui.implementation_class_uid.empty()) {
    w->StringItem(0x52, ui.implementation_class_uid, "implementation class UID sub-item (0x52)");
  }
  if (ui.async_ops) {
    sub = w->BeginItem(0x53);
    w->U16(ui.async_ops->max_invoked);
    w->U16(ui.async_ops->max_performed);
    w->EndItem(sub, "asynchronous operations window sub-item (0x53)");
  }
  for (const RoleSelection& role : ui.roles) {
    sub = w->BeginItem(0x54);
    w->LengthPrefixed(role.sop_class_uid, "role selection SOP class UID (0x54)");
    w->U8(role.scu_role ? 1 : 0);
    w->U8(role.scp_role ? 1 : 0);
    w->EndItem(sub, "role selection sub-item (0x54)");
  }
  if (!ui.implementation_version_name.empty()) {
    w->StringItem(0x55, ui.implementation_version_name, "implementation version name sub-item (0x55)");
  }
  for (const ExtendedNegotiation& ext : ui.extended) {
    sub = w->BeginItem(0x56);
    w->LengthPrefixed(ext.sop_class_uid, "extended negotiation SOP class UID (0x56)");
    w->Bytes(ext.info);
    w->EndItem(sub, "extended negotiation sub-item (0x56)");
  }
  for (const CommonExtendedNegotiation& ce : ui.common_extended) {
    sub = w->BeginItem(0x57, /*second=sub-item version*/ 0);
    w->LengthPrefixed(ce.sop_class_uid, "common extended negotiation SOP class UID (0x57)");
    w->LengthPrefixed(ce.service_class_uid, "common extended negotiation service class UID (0x57)");
    size_t list_at = w->BeginU16Length();
    for (const std::string& uid : ce.related_general_sop_classes) {
      w->LengthPrefixed(uid, "common extended negotiation related general SOP class UID (0x57)");
    }
    w->EndU16Length(list_at, "common extended negotiation related general SOP class list (0x57)");
    w->EndItem(sub, "common extended negotiation sub-item (0x57)");
  }
  if (ui.user_identity_rq) {
    const UserIdentityRq& id = *ui.user_identity_rq;
    sub = w->BeginItem(0x58);
    w->U8(id.type);
    w->U8(id.positive_response_requested ? 1 : 0);
    w->LengthPrefixed(id.primary_field, "user identity primary field (0x58)");
    w->LengthPrefixed(id.secondary_field, "user identity secondary field (0x58)");
    w->EndItem(sub, "user identity sub-item (0x58)");
  }
  if (ui.user_identity_ac) {
    sub = w->BeginItem(0x59);
    w->LengthPrefixed(*ui.user_identity_ac, "user identity server response (0x59)");
    w->EndItem(sub, "user identity server response sub-item (0x59)");
  }
  PutUnknownItems(ui, /*before_known=*/false, w);
  w->EndItem(at, "user information item (0x50)");
}

// PS3.8 Tables 9-11 / 9-17: the fixed fields of A-ASSOCIATE-RQ/AC.
template <typename Assoc>
size_t PutAssociateFixed(PduType type, const Assoc& a, Writer* w) {
  size_t at = w->BeginPdu(type);
  w->U16(a.protocol_version);
  w->U16(0);
  PutAeTitle(a.called_ae, w);   // AC: echoes the RQ (PS3.8 9.3.3)
  PutAeTitle(a.calling_ae, w);  // AC: echoes the RQ
  w->Zeros(32);
  w->StringItem(0x10, a.application_context, "application context item (0x10)");
  return at;
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
      ok = ParseAssociate(body, /*is_rq=*/true, &rq, &err);
      result.pdu = std::move(rq);
      break;
    }
    case PduType::kAssociateAc: {
      AssociateAc ac;
      ok = ParseAssociate(body, /*is_rq=*/false, &ac, &err);
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
    case PduType::kAbort:  // PS3.8 Table 9-26: reserved, reserved, source, reason.
      result.pdu = Abort{static_cast<AbortSource>(body[2]), static_cast<AbortReason>(body[3])};
      break;
  }
  if (!ok) return Invalid(std::string(PduTypeName(type)) + ": " + err.message, err.reason);
  result.kind = DecodeResult::Kind::kPdu;
  result.consumed = kPduHeaderSize + length;
  return result;
}

Status EncodeAssociateRq(const AssociateRq& rq, std::vector<uint8_t>* out) {
  Writer w("A-ASSOCIATE-RQ", out);
  size_t at = PutAssociateFixed(PduType::kAssociateRq, rq, &w);
  for (const PresentationContextRq& pc : rq.contexts) {  // PS3.8 9.3.2.2
    size_t item = w.BeginItem(0x20);
    w.U8(pc.id);
    w.Zeros(3);
    w.StringItem(0x30, pc.abstract_syntax, "abstract syntax sub-item (0x30)");
    for (const std::string& ts : pc.transfer_syntaxes) {
      w.StringItem(0x40, ts, "transfer syntax sub-item (0x40)");
    }
    w.EndItem(item, "presentation context item (0x20)");
  }
  PutUserInformation(rq.user_info, &w);
  w.EndPdu(at);
  return w.Finish();
}

Status EncodeAssociateAc(const AssociateAc& ac, std::vector<uint8_t>* out) {
  Writer w("A-ASSOCIATE-AC", out);
  size_t at = PutAssociateFixed(PduType::kAssociateAc, ac, &w);
  for (const PresentationContextAc& pc : ac.contexts) {  // PS3.8 9.3.3.2
    size_t item = w.BeginItem(0x21);
    w.U8(pc.id);
    w.U8(0);
    w.U8(static_cast<uint8_t>(pc.result));
    w.U8(0);
    // One transfer syntax sub-item always; not significant unless accepted.
    w.StringItem(0x40, pc.transfer_syntax, "transfer syntax sub-item (0x40)");
    w.EndItem(item, "presentation context item (0x21)");
  }
  PutUserInformation(ac.user_info, &w);
  w.EndPdu(at);
  return w.Finish();
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
