// libFuzzer target: peer text on its way out. Random bytes go into every
// text field of the JSON, log, audit and DICOM text paths (base/text.h,
// base/json_safe.h, router/record/audit.h, rules/dicom_text.h): the JSON always
// parses, a log value is always one line of UTF-8 with no control
// character, every audit record parses and the trail verifies, and decoded
// DICOM text is always UTF-8, whatever character set the input names.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/json_safe.h"
#include "base/text.h"
#include "router/record/audit.h"
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

const char* const kCharsets[] = {"",
                                 "ISO_IR 100",
                                 "ISO_IR 101",
                                 "ISO_IR 109",
                                 "ISO_IR 110",
                                 "ISO_IR 144",
                                 "ISO_IR 127",
                                 "ISO_IR 126",
                                 "ISO_IR 138",
                                 "ISO_IR 148",
                                 "ISO_IR 166",
                                 "ISO_IR 13",
                                 "ISO_IR 192",
                                 "GB18030",
                                 "GBK",
                                 "\\ISO 2022 IR 87",
                                 "ISO 2022 IR 6\\ISO 2022 IR 149",
                                 "ISO 2022 IR 13\\ISO 2022 IR 87",
                                 "ISO 2022 IR 100\\ISO 2022 IR 126"};

// Writes the fields as one audit record (and a refusal) into a fresh trail;
// every line must parse and the chain verify.
void CheckAudit(const std::vector<std::string>& f) {
  // tmpfs where there is one: the trail's fdatasync costs nothing there.
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                                  "/relais-text-fuzz-" + std::to_string(getpid()) + ".jsonl";
  unlink(path.c_str());
  {
    auto log = relais::router::AuditLog::Open(path);
    Check(log.ok());
    auto at = [&](size_t i) { return std::string_view(f[i % f.size()]); };
    const std::string key = "k_" + std::string(at(2));  // keys are ours, never "seq", "hash"...
    (*log)->Record("object", {{"calling_ae", at(1)}, {key, at(3)}, {"reason", at(4)}, {"patient_id", at(0)}});
    (*log)->RecordRefusal("admin", at(5), {{"path", at(6)}, {"reason", "x"}}, {"reason"});
    (*log)->RecordRefusal("admin", at(5), {{"path", at(7)}, {"reason", "x"}}, {"reason"});
  }
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) Check(!nlohmann::json::parse(line, nullptr, false).is_discarded());
  auto report = relais::router::AuditLog::Verify(path);
  Check(report.ok() && report->bad_line == 0);
  unlink(path.c_str());
}

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
    hand += (i ? ",\"" : "\"") + relais::JsonEscape(f) + "\":\"" + relais::JsonEscape(f) + "\"";
    // Logs: one line, UTF-8, no control characters.
    std::string e = relais::LogEscape(f), q = relais::LogEscape(f, true), t = relais::LogToken(f);
    Check(relais::IsUtf8(e) && NoControl(e) && relais::IsUtf8(q) && NoControl(q) && relais::IsUtf8(t) && NoControl(t));
    // DICOM text, decoded by the character set, for rules and operators.
    for (auto kind :
         {relais::rules::TextKind::kValue, relais::rules::TextKind::kPersonName, relais::rules::TextKind::kText}) {
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
  // The audit trail's cut (pure, every input), and the writer with verify
  // (a file, a thread: one input in eight, chosen by its first byte).
  for (const std::string& f : fields) {
    std::string cut = relais::router::AuditCut(f, 64);
    const std::string escaped = relais::JsonEscape(cut);
    Check(escaped.size() <= 64 && !nlohmann::json::parse("\"" + escaped + "\"", nullptr, false).is_discarded());
  }
  if (data[0] % 8 == 0) CheckAudit(fields);
  return 0;
}
