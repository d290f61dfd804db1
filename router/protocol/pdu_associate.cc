// A-ASSOCIATE-RQ and -AC (PS3.8 9.3.2, 9.3.3): the fixed fields, the
// presentation context items, and the user information item with its
// sub-items (PS3.8 Annex D, PS3.7 D.3.3), decoded and encoded. The choices
// made where the standard leaves room are listed at the top of pdu.cc.
#include <type_traits>

#include "router/protocol/pdu.h"
#include "router/protocol/pdu_codec.h"

namespace relais::ul {
namespace internal {
namespace {

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
      *error = "item " + HexByte(*type) + " length " + std::to_string(length) + " runs past its parent " + parent_ +
               " (" + std::to_string(reader_.remaining()) + " bytes left)";
      return Step::kError;
    }
    return Step::kItem;
  }

 private:
  Reader reader_;
  const char* parent_;
};

// Calls `on_item(type, body)` for each item of `data`, in order. True at the
// end; false with `err` set on a framing error, or once on_item returns
// false (having set `err`).
template <typename OnItem>
bool ForEachItem(std::span<const uint8_t> data, const char* parent, ParseError* err, OnItem on_item) {
  ItemWalker items(data, parent);
  uint8_t type = 0;
  std::span<const uint8_t> item;
  for (;;) {
    switch (items.Next(&type, &item, &err->message)) {
      case ItemWalker::Step::kEnd: return true;
      case ItemWalker::Step::kError: err->reason = AbortReason::kInvalidPduParameterValue; return false;
      case ItemWalker::Step::kItem: break;
    }
    if (!on_item(type, item)) return false;
  }
}

// PS3.8 9.3.2.2: presentation context item (RQ), 0x20.
bool ParseContextRq(std::span<const uint8_t> body, PresentationContextRq* pc, ParseError* err) {
  Reader r(body);
  std::span<const uint8_t> fixed;
  // Context ID (1), reserved (3).
  if (!r.Bytes(4, &fixed)) return Fail(err, "presentation context item (RQ) shorter than 4 bytes");
  pc->id = fixed[0];
  return ForEachItem(r.Rest(), "presentation context item (RQ)", err, [pc](uint8_t type, auto item) {
    if (type == 0x30) {  // PS3.8 9.3.2.2.1: abstract syntax sub-item.
      pc->abstract_syntax = StripUid(item);
    } else if (type == 0x40) {  // PS3.8 9.3.2.2.2: transfer syntax sub-item.
      pc->transfer_syntaxes.push_back(StripUid(item));
    }  // PS3.8 9.3.1: other sub-items are ignored and skipped.
    return true;
  });
}

// PS3.8 9.3.3.2: presentation context item (AC), 0x21.
bool ParseContextAc(std::span<const uint8_t> body, PresentationContextAc* pc, ParseError* err) {
  Reader r(body);
  std::span<const uint8_t> fixed;
  // Context ID (1), reserved (1), result/reason (1), reserved (1).
  if (!r.Bytes(4, &fixed)) return Fail(err, "presentation context item (AC) shorter than 4 bytes");
  pc->id = fixed[0];
  pc->result = static_cast<ContextResult>(fixed[2]);
  return ForEachItem(r.Rest(), "presentation context item (AC)", err, [pc](uint8_t type, auto item) {
    // PS3.8 9.3.3.2.1: one transfer syntax sub-item, not significant when
    // the result is not acceptance (kept anyway).
    if (type == 0x40) pc->transfer_syntax = StripUid(item);
    return true;
  });
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

// One sub-item of the user information item (PS3.8 Annex D, PS3.7 D.3.3).
bool ParseUserInformationSubItem(uint8_t type, std::span<const uint8_t> item, UserInformation* ui, ParseError* err) {
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
      if (!r.U8(&id.type) || !r.U8(&positive) || !r.LengthPrefixed(&primary) || !r.LengthPrefixed(&secondary)) {
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
  return true;
}

// PS3.8 9.3.2.3 / Annex D, PS3.7 D.3.3: user information item, 0x50.
bool ParseUserInformation(std::span<const uint8_t> body, UserInformation* ui, ParseError* err) {
  return ForEachItem(body, "user information item", err,
                     [ui, err](uint8_t type, auto item) { return ParseUserInformationSubItem(type, item, ui, err); });
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
  return ForEachItem(body.subspan(kAssociateFixedSize), name, err, [=](uint8_t type, auto item) {
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
    return true;
  });
}

}  // namespace

bool ParseAssociateRq(std::span<const uint8_t> body, AssociateRq* rq, ParseError* err) {
  return ParseAssociate(body, /*is_rq=*/true, rq, err);
}

bool ParseAssociateAc(std::span<const uint8_t> body, AssociateAc* ac, ParseError* err) {
  return ParseAssociate(body, /*is_rq=*/false, ac, err);
}

namespace {

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
}  // namespace internal

using internal::PutAssociateFixed;
using internal::PutUserInformation;
using internal::Writer;

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

}  // namespace relais::ul
