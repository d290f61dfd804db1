#include "router/cli/edits_text.h"

#include <cstdint>
#include <cstdio>
#include <vector>

#include "base/text.h"
#include "rules/routing.h"

namespace relais::router {
namespace {

// "(0008,0080)".
std::string TagText(uint32_t tag) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "(%04X,%04X)", tag >> 16, tag & 0xFFFF);
  return buf;
}

// "(0008,0080) InstitutionName", or the tag alone when the rule named it so.
std::string Target(const rules::TagEdit& e) {
  std::string tag = TagText(e.tag);
  if (e.target.empty() || e.target[0] == '(') return tag;
  return tag + " " + LogEscape(e.target);
}

}  // namespace

std::string EditsText(const std::string& encoded) {
  if (encoded.empty()) return "";
  Result<std::vector<rules::TagEdit>> edits = rules::DecodeEdits(encoded);
  if (!edits.ok()) return LogEscape(encoded);
  std::string out;
  for (const rules::TagEdit& e : *edits) {
    if (!out.empty()) out += "; ";
    switch (e.op) {
      case rules::TagEdit::Op::kSet: out += "set " + Target(e) + " = \"" + LogEscape(e.value) + "\""; break;
      case rules::TagEdit::Op::kRemove: out += "remove " + Target(e); break;
      case rules::TagEdit::Op::kCopy: out += "copy " + TagText(e.from_tag) + " to " + Target(e); break;
      case rules::TagEdit::Op::kPrefix: out += "prefix " + Target(e) + " with \"" + LogEscape(e.value) + "\""; break;
    }
  }
  return out;
}

}  // namespace relais::router
