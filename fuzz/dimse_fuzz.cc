// libFuzzer target: the DIMSE command set decoder (router/protocol/dimse.h, PS3.7
// 9.3 / E.1, Implicit VR Little Endian). A command that decodes must
// re-encode, and decode again to the same fields (round trip).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "router/protocol/dimse.h"

namespace dimse = relais::dimse;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  relais::Result<dimse::Command> cmd = dimse::DecodeCommand(std::span<const uint8_t>(data, size));
  if (!cmd.ok()) {
    if (cmd.status().message().empty()) abort();  // a refusal must say why
    return 0;
  }
  std::vector<uint8_t> again = dimse::EncodeCommand(*cmd);
  relais::Result<dimse::Command> back = dimse::DecodeCommand(again);
  if (!back.ok()) abort();
  if (back->command_field != cmd->command_field || back->message_id != cmd->message_id ||
      back->affected_sop_instance_uid != cmd->affected_sop_instance_uid ||
      back->affected_sop_class_uid != cmd->affected_sop_class_uid) {
    abort();
  }
  (void)dimse::CommandFieldName(cmd->command_field);
  if (cmd->command_field == dimse::CommandField::kCStoreRq) {
    (void)dimse::EncodeCommand(dimse::MakeStoreResponse(*cmd, 0xA700, "fuzz"));
  }
  return 0;
}
