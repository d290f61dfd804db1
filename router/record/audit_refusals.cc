// AuditLog's refusal windows (router/record/audit.h, "Repeated refusals"):
// the first refusal of a key is a record, the next ones within the window
// are counted, and one summary record says how many when the window ends.
#include <string>

#include "base/text.h"
#include "router/record/audit.h"
#include "router/record/audit_format.h"

namespace relais::router {

using audit::Bound;
using audit::BoundedRecord;

void AuditLog::RecordRefusal(std::string_view kind, std::string_view address, std::initializer_list<Field> fields,
                             std::initializer_list<std::string_view> key) {
  BoundedRecord b = Bound(kind, fields);
  Fields summary;
  summary.emplace_back("address", AuditCut(address));
  std::string id = b.kind;
  id.push_back('\0');
  id += summary.front().second;
  for (std::string_view name : key) {
    for (const auto& [k, v] : b.fields) {
      if (k != name) continue;
      summary.emplace_back(k, v);
      id.push_back('\0');
      id += v;
      break;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  FlushRefusalsLocked(now, /*all=*/false);  // this key's window may have ended
  auto it = refusals_.find(id);
  if (it != refusals_.end()) {
    ++it->second.count;
    it->second.until_ms = now;
    return;
  }
  if (refusals_.size() >= kAuditMaxRefusalWindows) {  // end the oldest window early
    auto oldest = refusals_.begin();
    for (auto w = refusals_.begin(); w != refusals_.end(); ++w) {
      if (w->second.since_ms < oldest->second.since_ms) oldest = w;
    }
    if (oldest->second.count > 0) WriteSummaryLocked(oldest->second);
    refusals_.erase(oldest);
  }
  RefusalWindow w;
  w.kind = b.kind;
  w.summary = std::move(summary);
  w.since_ms = now;
  w.until_ms = now;
  w.first_seq = RecordLocked(b.kind, b.fields, now);  // its time is the window's since
  refusals_.emplace(std::move(id), std::move(w));
}

void AuditLog::FlushRefusalsLocked(int64_t now_ms, bool all) {
  for (auto it = refusals_.begin(); it != refusals_.end();) {
    const RefusalWindow& w = it->second;
    if (!all && now_ms - w.since_ms < options_.refusal_window_ms && now_ms >= w.since_ms) {
      ++it;
      continue;
    }
    if (w.count > 0) WriteSummaryLocked(w);
    it = refusals_.erase(it);
  }
}

void AuditLog::WriteSummaryLocked(const RefusalWindow& w) {
  Fields f = w.summary;
  f.emplace_back("repeated", std::to_string(w.count));
  f.emplace_back("since", IsoTime(w.since_ms));
  f.emplace_back("until", IsoTime(w.until_ms));
  f.emplace_back("first_seq", std::to_string(w.first_seq));
  BoundedRecord b = Bound(w.kind, f);
  RecordLocked(b.kind, b.fields);
}

}  // namespace relais::router
