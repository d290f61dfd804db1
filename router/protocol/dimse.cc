// DIMSE command set codec: group 0000 in Implicit VR Little Endian.
//
// PS3.7 6.3.1: "The Command Set ... shall be encoded using the Little Endian
// Implicit VR Transfer Syntax". Each element (PS3.5 7.1.3) is
//   tag group (2, LE) | tag element (2, LE) | value length (4, LE) | value.
// PS3.7 Annex E lists the elements; the ones Relais knows are kElements
// below. (0000,0000) Command Group Length (UL) is "the even number of bytes
// from the end of the value field to the beginning of the next group", i.e.
// every byte after the group length element itself.
#include "router/protocol/dimse.h"

#include <cstdio>

namespace relais::dimse {
namespace {

// PS3.7 Table E.1-1 tags (element numbers of group 0000).
constexpr uint16_t kCommandGroupLength = 0x0000;       // UL
constexpr uint16_t kAffectedSopClassUid = 0x0002;      // UI
constexpr uint16_t kRequestedSopClassUid = 0x0003;     // UI
constexpr uint16_t kCommandFieldTag = 0x0100;          // US
constexpr uint16_t kMessageId = 0x0110;                // US
constexpr uint16_t kMessageIdRespondedTo = 0x0120;     // US
constexpr uint16_t kMoveDestination = 0x0600;          // AE
constexpr uint16_t kPriority = 0x0700;                 // US
constexpr uint16_t kCommandDataSetType = 0x0800;       // US
constexpr uint16_t kStatus = 0x0900;                   // US
constexpr uint16_t kErrorComment = 0x0902;             // LO
constexpr uint16_t kErrorId = 0x0903;                  // US
constexpr uint16_t kAffectedSopInstanceUid = 0x1000;   // UI
constexpr uint16_t kRequestedSopInstanceUid = 0x1001;  // UI
constexpr uint16_t kMoveOriginatorAe = 0x1030;         // AE
constexpr uint16_t kMoveOriginatorMessageId = 0x1031;  // US

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
void Put16(uint16_t v, std::vector<uint8_t>* out) {
  out->push_back(static_cast<uint8_t>(v));
  out->push_back(static_cast<uint8_t>(v >> 8));
}
void Put32(uint32_t v, std::vector<uint8_t>* out) {
  Put16(static_cast<uint16_t>(v), out);
  Put16(static_cast<uint16_t>(v >> 16), out);
}

std::string TagString(uint16_t group, uint16_t element) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "(%04X,%04X)", group, element);
  return buf;
}

// PS3.5 6.2: trailing padding (NUL for UI, space for text VRs) is not
// significant; for AE leading spaces are not significant either.
std::string Trim(std::span<const uint8_t> v, bool trim_leading) {
  size_t b = 0, e = v.size();
  while (e > b && (v[e - 1] == 0 || v[e - 1] == ' ')) --e;
  if (trim_leading) {
    while (b < e && v[b] == ' ') ++b;
  }
  return std::string(reinterpret_cast<const char*>(v.data()) + b, e - b);
}

Status ReadUs(uint16_t element, std::span<const uint8_t> v, uint16_t* out) {
  if (v.size() != 2) {
    return Status::InvalidArgument("DIMSE command element " + TagString(0, element) + " (US) has value length " +
                                   std::to_string(v.size()) + ", not 2");
  }
  *out = Le16(v.data());
  return Status::OK();
}

Status ReadUs(uint16_t element, std::span<const uint8_t> v, std::optional<uint16_t>* out) {
  uint16_t x = 0;
  RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &x));
  *out = x;
  return Status::OK();
}

void PutHeader(uint16_t element, uint32_t length, std::vector<uint8_t>* out) {
  Put16(0x0000, out);
  Put16(element, out);
  Put32(length, out);
}

void PutUs(uint16_t element, uint16_t v, std::vector<uint8_t>* out) {
  PutHeader(element, 2, out);
  Put16(v, out);
}

void PutOptionalUs(uint16_t element, const std::optional<uint16_t>& v, std::vector<uint8_t>* out) {
  if (v) PutUs(element, *v, out);
}

// Strings: omitted when empty; padded to even length with `pad` (PS3.5 6.2:
// NUL for UI, space for AE/LO).
void PutString(uint16_t element, const std::string& s, char pad, std::vector<uint8_t>* out) {
  if (s.empty()) return;
  const size_t len = s.size() + (s.size() % 2);
  PutHeader(element, static_cast<uint32_t>(len), out);
  out->insert(out->end(), s.begin(), s.end());
  if (len != s.size()) out->push_back(static_cast<uint8_t>(pad));
}

// PS3.7 Annex C: failure statuses are Axxx, Cxxx, and 01xx/02xx except the
// warnings 0107 and 0116.
bool IsFailure(uint16_t status) {
  const uint16_t hi = status & 0xF000;
  if (hi == 0xA000 || hi == 0xC000) return true;
  const uint16_t hb = status & 0xFF00;
  if (hb == 0x0100) return status != 0x0107 && status != 0x0116;
  return hb == 0x0200;
}

}  // namespace

Result<Command> DecodeCommand(std::span<const uint8_t> bytes) {
  Command cmd;
  bool have_field = false;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t left = bytes.size() - pos;
    if (left < 8) {
      return Status::InvalidArgument("DIMSE command truncated: " + std::to_string(left) + " bytes left at offset " +
                                     std::to_string(pos) + ", an element header needs 8");
    }
    const uint8_t* p = bytes.data() + pos;
    const uint16_t group = Le16(p);
    const uint16_t element = Le16(p + 2);
    const uint32_t length = Le32(p + 4);
    if (group != 0x0000) {
      return Status::InvalidArgument("DIMSE command holds element " + TagString(group, element) +
                                     " outside group 0000 at offset " + std::to_string(pos));
    }
    // Compare against what is left, never add to `length` (it may be ~4 GB).
    if (length > left - 8) {
      return Status::InvalidArgument("DIMSE command element " + TagString(group, element) + " has value length " +
                                     std::to_string(length) + " but only " + std::to_string(left - 8) +
                                     " bytes follow");
    }
    const std::span<const uint8_t> v = bytes.subspan(pos + 8, length);
    const size_t next = pos + 8 + length;
    switch (element) {
      case kCommandGroupLength: {
        if (v.size() != 4) {
          return Status::InvalidArgument("DIMSE Command Group Length (0000,0000) has value length " +
                                         std::to_string(v.size()) + ", not 4");
        }
        const uint32_t declared = Le32(v.data());
        if (declared != bytes.size() - next) {
          return Status::InvalidArgument("DIMSE Command Group Length (0000,0000) says " + std::to_string(declared) +
                                         " bytes follow, but " + std::to_string(bytes.size() - next) + " do");
        }
        break;
      }
      case kAffectedSopClassUid: cmd.affected_sop_class_uid = Trim(v, false); break;
      case kRequestedSopClassUid: cmd.requested_sop_class_uid = Trim(v, false); break;
      case kCommandFieldTag: {
        uint16_t f = 0;
        RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &f));
        cmd.command_field = static_cast<CommandField>(f);
        have_field = true;
        break;
      }
      case kMessageId: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.message_id)); break;
      case kMessageIdRespondedTo: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.message_id_responded_to)); break;
      case kMoveDestination: cmd.move_destination = Trim(v, true); break;
      case kPriority: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.priority)); break;
      case kCommandDataSetType: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.data_set_type)); break;
      case kStatus: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.status)); break;
      case kErrorComment: cmd.error_comment = Trim(v, false); break;
      case kErrorId: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.error_id)); break;
      case kAffectedSopInstanceUid: cmd.affected_sop_instance_uid = Trim(v, false); break;
      case kRequestedSopInstanceUid: cmd.requested_sop_instance_uid = Trim(v, false); break;
      case kMoveOriginatorAe: cmd.move_originator_ae = Trim(v, true); break;
      case kMoveOriginatorMessageId: RELAIS_RETURN_IF_ERROR(ReadUs(element, v, &cmd.move_originator_message_id)); break;
      default: break;  // Other group 0000 elements (e.g. N-service ones): skipped.
    }
    pos = next;
  }
  if (!have_field) {
    return Status::InvalidArgument("DIMSE command has no Command Field (0000,0100)");
  }
  return cmd;
}

std::vector<uint8_t> EncodeCommand(const Command& cmd) {
  // Body first (ascending tags), then prefix the group length.
  std::vector<uint8_t> body;
  body.reserve(256);
  PutString(kAffectedSopClassUid, cmd.affected_sop_class_uid, '\0', &body);
  PutString(kRequestedSopClassUid, cmd.requested_sop_class_uid, '\0', &body);
  PutUs(kCommandFieldTag, static_cast<uint16_t>(cmd.command_field), &body);
  PutOptionalUs(kMessageId, cmd.message_id, &body);
  PutOptionalUs(kMessageIdRespondedTo, cmd.message_id_responded_to, &body);
  PutString(kMoveDestination, cmd.move_destination, ' ', &body);
  PutOptionalUs(kPriority, cmd.priority, &body);
  PutUs(kCommandDataSetType, cmd.data_set_type, &body);
  PutOptionalUs(kStatus, cmd.status, &body);
  PutString(kErrorComment, cmd.error_comment, ' ', &body);
  PutOptionalUs(kErrorId, cmd.error_id, &body);
  PutString(kAffectedSopInstanceUid, cmd.affected_sop_instance_uid, '\0', &body);
  PutString(kRequestedSopInstanceUid, cmd.requested_sop_instance_uid, '\0', &body);
  PutString(kMoveOriginatorAe, cmd.move_originator_ae, ' ', &body);
  PutOptionalUs(kMoveOriginatorMessageId, cmd.move_originator_message_id, &body);

  std::vector<uint8_t> out;
  out.reserve(12 + body.size());
  PutHeader(kCommandGroupLength, 4, &out);
  Put32(static_cast<uint32_t>(body.size()), &out);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// PS3.7 Table 9.3-13 (C-ECHO-RSP): Affected SOP Class UID, Command Field,
// Message ID Being Responded To, Command Data Set Type (0101H), Status.
Command MakeEchoResponse(const Command& rq, uint16_t status) {
  Command rsp;
  rsp.command_field = CommandField::kCEchoRsp;
  rsp.affected_sop_class_uid = rq.affected_sop_class_uid;
  rsp.message_id_responded_to = rq.message_id;
  rsp.data_set_type = kNoDataSet;
  rsp.status = status;
  return rsp;
}

// PS3.7 Table 9.3-2 (C-STORE-RSP): as C-ECHO-RSP plus Affected SOP Instance
// UID; Error Comment (0000,0902) may accompany a failure status.
Command MakeStoreResponse(const Command& rq, uint16_t status, std::string error_comment) {
  Command rsp;
  rsp.command_field = CommandField::kCStoreRsp;
  rsp.affected_sop_class_uid = rq.affected_sop_class_uid;
  rsp.affected_sop_instance_uid = rq.affected_sop_instance_uid;
  rsp.message_id_responded_to = rq.message_id;
  rsp.data_set_type = kNoDataSet;
  rsp.status = status;
  if (!error_comment.empty() && IsFailure(status)) {
    // LO holds at most 64 characters (PS3.5 Table 6.2-1).
    if (error_comment.size() > 64) error_comment.resize(64);
    rsp.error_comment = std::move(error_comment);
  }
  return rsp;
}

Command MakeUnsupportedResponse(const Command& rq) {
  Command rsp;
  rsp.command_field = static_cast<CommandField>(static_cast<uint16_t>(rq.command_field) | 0x8000);
  // N-service requests name their SOP class/instance as "Requested"; the
  // response names them as "Affected" (PS3.7 10.3).
  rsp.affected_sop_class_uid =
      rq.affected_sop_class_uid.empty() ? rq.requested_sop_class_uid : rq.affected_sop_class_uid;
  rsp.affected_sop_instance_uid =
      rq.affected_sop_instance_uid.empty() ? rq.requested_sop_instance_uid : rq.affected_sop_instance_uid;
  rsp.message_id_responded_to = rq.message_id;
  rsp.data_set_type = kNoDataSet;
  rsp.status = kStatusUnrecognizedOperation;
  return rsp;
}

const char* CommandFieldName(CommandField f) {
  switch (f) {
    case CommandField::kCStoreRq: return "C-STORE-RQ";
    case CommandField::kCStoreRsp: return "C-STORE-RSP";
    case CommandField::kCGetRq: return "C-GET-RQ";
    case CommandField::kCGetRsp: return "C-GET-RSP";
    case CommandField::kCFindRq: return "C-FIND-RQ";
    case CommandField::kCFindRsp: return "C-FIND-RSP";
    case CommandField::kCMoveRq: return "C-MOVE-RQ";
    case CommandField::kCMoveRsp: return "C-MOVE-RSP";
    case CommandField::kCEchoRq: return "C-ECHO-RQ";
    case CommandField::kCEchoRsp: return "C-ECHO-RSP";
    case CommandField::kNEventReportRq: return "N-EVENT-REPORT-RQ";
    case CommandField::kNEventReportRsp: return "N-EVENT-REPORT-RSP";
    case CommandField::kNGetRq: return "N-GET-RQ";
    case CommandField::kNGetRsp: return "N-GET-RSP";
    case CommandField::kNSetRq: return "N-SET-RQ";
    case CommandField::kNSetRsp: return "N-SET-RSP";
    case CommandField::kNActionRq: return "N-ACTION-RQ";
    case CommandField::kNActionRsp: return "N-ACTION-RSP";
    case CommandField::kNCreateRq: return "N-CREATE-RQ";
    case CommandField::kNCreateRsp: return "N-CREATE-RSP";
    case CommandField::kNDeleteRq: return "N-DELETE-RQ";
    case CommandField::kNDeleteRsp: return "N-DELETE-RSP";
    case CommandField::kCCancelRq: return "C-CANCEL-RQ";
  }
  return "unknown command";
}

UidProblem CheckUid(std::string_view uid) {
  while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.remove_suffix(1);
  for (char c : uid) {
    if (c != '.' && (c < '0' || c > '9')) return UidProblem::kBadCharacter;
  }
  if (uid.empty()) return UidProblem::kEmpty;
  UidProblem found = UidProblem::kNone;
  size_t start = 0;
  while (true) {
    size_t dot = uid.find('.', start);
    std::string_view component =
        uid.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (component.empty()) return UidProblem::kEmptyComponent;
    if (component.size() > 1 && component[0] == '0') found = UidProblem::kLeadingZero;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (found != UidProblem::kNone) return found;
  return uid.size() > 64 ? UidProblem::kTooLong : UidProblem::kNone;
}

const char* UidProblemText(UidProblem problem) {
  switch (problem) {
    case UidProblem::kNone: return "is valid";
    case UidProblem::kBadCharacter: return "has a character other than 0-9 and '.'";
    case UidProblem::kEmpty: return "is empty";
    case UidProblem::kEmptyComponent: return "has an empty component";
    case UidProblem::kLeadingZero: return "has a component with a leading zero";
    case UidProblem::kTooLong: return "is longer than 64 characters";
  }
  return "?";
}

}  // namespace relais::dimse
