// libFuzzer target: peer text on its way out. Random bytes go into every
// text field of the JSON, log and DICOM text paths (base/text.h,
// base/json_safe.h, rules/dicom_text.h): the JSON always parses, a log value
// is always one line of UTF-8 with no control character, and decoded DICOM
// text is always UTF-8, whatever character set the input names.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/json_safe.h"
#include "base/text.h"
#include "rules/dicom_text.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

bool NoControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) return false;
  }
  return s.find("\xC2\x85") == std::string_view::npos;
}

const char* const kCharsets[] = {"",           "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110",
                                 "ISO_IR 144", "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148",
                                 "ISO_IR 166", "ISO_IR 13",  "ISO_IR 192", "GB18030",    "GBK",
                                 "\\ISO 2022 IR 87", "ISO 2022 IR 6\\ISO 2022 IR 149",
                                 "ISO 2022 IR 13\\ISO 2022 IR 87", "ISO 2022 IR 100\\ISO 2022 IR 126"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Byte 0 picks a character set (or, past the list, the first field is one);
  // the rest is fields separated by NUL.
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string> fields;
  size_t start = 0;
  while (start <= in.size()) {
    size_t nul = in.find('\0', start);
    if (nul == std::string_view::npos) nul = in.size();
    fields.emplace_back(in.substr(start, nul - start));
    start = nul + 1;
  }
  constexpr size_t kSets = sizeof(kCharsets) / sizeof(kCharsets[0]);
  std::string charset = data[0] < kSets ? kCharsets[data[0]] : fields[0];

  nlohmann::json obj = nlohmann::json::object();
  std::string hand = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    // Hand-written JSON (CLI, audit): JsonEscape.
    hand += (i ? ",\"" : "\"") + JsonEscape(f) + "\":\"" + JsonEscape(f) + "\"";
    // Logs: one line, UTF-8, no control characters.
    std::string e = relais::LogEscape(f), q = relais::LogEscape(f, true), t = relais::LogToken(f);
    Check(relais::IsUtf8(e) && NoControl(e) && relais::IsUtf8(q) && NoControl(q) && relais::IsUtf8(t) && NoControl(t));
    // DICOM text, decoded by the character set, for rules and operators.
    for (auto kind : {relais::rules::TextKind::kValue, relais::rules::TextKind::kPersonName,
                      relais::rules::TextKind::kText}) {
      std::string d = relais::rules::DecodeDicomText(f, charset, kind);
      Check(relais::IsUtf8(d));
      obj[d] = f;  // decoded keys, raw values: JsonDump must cope with both
    }
    obj["raw" + std::to_string(i)] = {f, {{"nested", f}}};
    obj[f] = i;
  }
  hand += "}";
  Check(!nlohmann::json::parse(hand, nullptr, false).is_discarded());
  std::string dumped = relais::JsonDump(obj);
  Check(!nlohmann::json::parse(dumped, nullptr, false).is_discarded());
  return 0;
}
