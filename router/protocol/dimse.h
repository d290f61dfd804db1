// DIMSE command sets (PS3.7 section 9.3, Annex E): group 0000 elements,
// always encoded Implicit VR Little Endian (PS3.7 6.3.1). Pure codec, no I/O.
//
// Thread: any.
#ifndef RELAIS_ROUTER_PROTOCOL_DIMSE_H_
#define RELAIS_ROUTER_PROTOCOL_DIMSE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace relais::dimse {

// PS3.7 E.1-1: Command Field (0000,0100).
enum class CommandField : uint16_t {
  kCStoreRq = 0x0001,
  kCStoreRsp = 0x8001,
  kCGetRq = 0x0010,
  kCGetRsp = 0x8010,
  kCFindRq = 0x0020,
  kCFindRsp = 0x8020,
  kCMoveRq = 0x0021,
  kCMoveRsp = 0x8021,
  kCEchoRq = 0x0030,
  kCEchoRsp = 0x8030,
  kNEventReportRq = 0x0100,
  kNEventReportRsp = 0x8100,
  kNGetRq = 0x0110,
  kNGetRsp = 0x8110,
  kNSetRq = 0x0120,
  kNSetRsp = 0x8120,
  kNActionRq = 0x0130,
  kNActionRsp = 0x8130,
  kNCreateRq = 0x0140,
  kNCreateRsp = 0x8140,
  kNDeleteRq = 0x0150,
  kNDeleteRsp = 0x8150,
  kCCancelRq = 0x0FFF,
};

// PS3.7 E.1-1: Command Data Set Type (0000,0800): 0x0101 means no data set.
inline constexpr uint16_t kNoDataSet = 0x0101;
inline constexpr uint16_t kDataSetPresent = 0x0000;

// Status codes used by Relais (PS3.4 Annex B.2, PS3.7 Annex C).
inline constexpr uint16_t kStatusSuccess = 0x0000;
inline constexpr uint16_t kStatusOutOfResources = 0xA700;        // C-STORE: refused, out of resources
inline constexpr uint16_t kStatusDataSetMismatch = 0xA900;       // data set does not match SOP class
inline constexpr uint16_t kStatusCannotUnderstand = 0xC000;      // cannot understand
inline constexpr uint16_t kStatusSopClassNotSupported = 0x0122;  // refused: SOP class not supported
inline constexpr uint16_t kStatusUnrecognizedOperation = 0x0211;
inline constexpr uint16_t kStatusProcessingFailure = 0x0110;
inline constexpr uint16_t kStatusDuplicateInvocation = 0x0210;
inline constexpr uint16_t kStatusMistypedArgument = 0x0212;
inline constexpr uint16_t kStatusNotAuthorized = 0x0124;  // PS3.7 C.5.x: Refused: Not Authorized

// A decoded or to-be-encoded command set. Only the elements present in a
// command are set; optional ones are std::optional. Unknown group 0000
// elements are skipped on decode.
struct Command {
  CommandField command_field = CommandField::kCEchoRq;  // (0000,0100)
  std::optional<uint16_t> message_id;                   // (0000,0110)
  std::optional<uint16_t> message_id_responded_to;      // (0000,0120)
  std::string affected_sop_class_uid;                   // (0000,0002)
  std::string requested_sop_class_uid;                  // (0000,0003)
  std::string affected_sop_instance_uid;                // (0000,1000)
  std::string requested_sop_instance_uid;               // (0000,1001)
  std::optional<uint16_t> priority;                     // (0000,0700)
  uint16_t data_set_type = kNoDataSet;                  // (0000,0800)
  std::optional<uint16_t> status;                       // (0000,0900)
  std::string error_comment;                            // (0000,0902)
  std::optional<uint16_t> error_id;                     // (0000,0903)
  std::string move_originator_ae;                       // (0000,1030)
  std::optional<uint16_t> move_originator_message_id;   // (0000,1031)
  std::string move_destination;                         // (0000,0600)

  bool has_data_set() const { return data_set_type != kNoDataSet; }
};

// Decodes a complete command set (the concatenated command PDV fragments).
// Returns InvalidArgument, with a reason, for truncated elements, lengths
// past the end, elements outside group 0000, or a missing Command Field.
// UID and AE strings are returned without trailing NUL/space padding.
Result<Command> DecodeCommand(std::span<const uint8_t> bytes);

// Encodes `cmd` with (0000,0000) Command Group Length first and elements in
// ascending tag order; UIDs padded to even length with NUL, text with space.
std::vector<uint8_t> EncodeCommand(const Command& cmd);

// Builds the C-ECHO-RSP / C-STORE-RSP for a request.
Command MakeEchoResponse(const Command& rq, uint16_t status);
Command MakeStoreResponse(const Command& rq, uint16_t status, std::string error_comment = {});
// Builds the generic failure response for a request Relais does not serve
// (response command field = rq | 0x8000, status 0x0211 Unrecognized Operation).
Command MakeUnsupportedResponse(const Command& rq);

const char* CommandFieldName(CommandField f);

// PS3.5 9.1: what is wrong with a UID a peer sent, worst first. Trailing
// NUL and space (the UI padding) are not part of the value.
enum class UidProblem {
  kNone,
  kBadCharacter,    // a byte other than '0'-'9' and '.': never a UID; refuse
  kEmpty,           // deviations below: logged, not refused here
  kEmptyComponent,  // leading, trailing or doubled '.'
  kLeadingZero,     // a component such as "01" (only "0" may start with 0)
  kTooLong,         // more than 64 characters (the store refuses it)
};
UidProblem CheckUid(std::string_view uid);
// "has a character other than 0-9 and '.'", for logs.
const char* UidProblemText(UidProblem problem);

}  // namespace relais::dimse

#endif  // RELAIS_ROUTER_PROTOCOL_DIMSE_H_
