// The audit trail's records, as router/record/audit.h specifies them: the
// frame every line has, the bounds that keep a record small whatever its
// input (Bounds in audit.h), and the parser that reads a line back for
// Open() (where the chain stands) and Verify(). Internal to record/: the
// writer (audit.cc), the refusal windows (audit_refusals.cc) and the
// verifier (audit_verify.cc) include it.
// Thread: any (pure functions).
#ifndef RELAIS_ROUTER_RECORD_AUDIT_FORMAT_H_
#define RELAIS_ROUTER_RECORD_AUDIT_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/record/audit.h"

namespace relais::router::audit {

// "prev" of the first record of a chain.
inline constexpr char kZeroHash[] = "0000000000000000000000000000000000000000000000000000000000000000";
// What ends every record before its hash; the hash is the last field.
inline constexpr std::string_view kHashKey = ",\"hash\":\"";
// The most a record's frame takes besides its kind and fields:
// {"seq":<20 digits>,"time":"<at most 32>","kind":"" ,"prev":"<64>","hash":"<64>"}
inline constexpr size_t kFrameBytes = 7 + 20 + 9 + 32 + 10 + 1 + 9 + 64 + 1 + 9 + 64 + 2;
// What follows the fields: ,"prev":"<64>","hash":"<64>"}
inline constexpr size_t kTailBytes = 9 + 64 + 1 + 9 + 64 + 2;
// Room kept for a ,"cut_fields":"<20 digits>" field.
inline constexpr size_t kCutFieldsBytes = 16 + 20 + 1;
static_assert(kFrameBytes + kAuditMaxKeyBytes + kCutFieldsBytes + 6 + kAuditMaxKeyBytes + kAuditMaxFieldBytes <=
                  kAuditMaxRecordBytes,
              "a record must hold at least one field of each maximum");

// What a line says about itself: its record, or why it is not one.
struct ParsedRecord {
  bool ok = false;
  std::string error;
  std::string hash;
  std::string prev;
  uint64_t seq = 0;
  std::string kind;
  std::string reason;      // segment records
  std::string torn_bytes;  // segment records
  std::string prev_file;   // "rotated" segment records
};

// Parses one line (without its '\n'): a flat JSON object with valid
// "prev", "seq" and "kind", its "hash" last and matching the line.
ParsedRecord ParseRecord(std::string_view line);

// Length of `s` JSON-escaped (base/text.h JsonEscape).
size_t EscapedSize(std::string_view s);

// The file name of `path` (after its last '/').
std::string BaseName(const std::string& path);

// The bounded form of a record (see Bounds in audit.h).
struct BoundedRecord {
  std::string kind;
  std::vector<std::pair<std::string, std::string>> fields;
};

// `kind` and `fields` (pairs of key and value: AuditLog::Field or
// std::string) cut to the bounds; the fields that no longer fit are left
// out and counted in a last "cut_fields" field.
template <typename Range>
BoundedRecord Bound(std::string_view kind, const Range& fields) {
  BoundedRecord b;
  b.kind = AuditCut(kind, kAuditMaxKeyBytes);
  size_t used = kFrameBytes + EscapedSize(b.kind) + kCutFieldsBytes;
  size_t left_out = 0;
  b.fields.reserve(fields.size());
  for (const auto& f : fields) {
    if (left_out > 0) {
      ++left_out;
      continue;
    }
    std::string k = AuditCut(f.first, kAuditMaxKeyBytes);
    std::string v = AuditCut(f.second, kAuditMaxFieldBytes);
    const size_t cost = 6 + EscapedSize(k) + EscapedSize(v);  // ,"k":"v"
    if (used + cost > kAuditMaxRecordBytes) {
      left_out = 1;
      continue;
    }
    used += cost;
    b.fields.emplace_back(std::move(k), std::move(v));
  }
  if (left_out > 0) b.fields.emplace_back("cut_fields", std::to_string(left_out));
  return b;
}

}  // namespace relais::router::audit

#endif  // RELAIS_ROUTER_RECORD_AUDIT_FORMAT_H_
