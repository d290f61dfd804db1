#include "router/deliver/retry_policy.h"

#include <algorithm>

namespace relais::router {

const char* FailureClassName(FailureClass cls) {
  switch (cls) {
    case FailureClass::kLink: return "link";
    case FailureClass::kTransientStatus: return "transient-status";
    case FailureClass::kRefused: return "refused";
    case FailureClass::kUnsupported: return "unsupported";
    case FailureClass::kUnreadable: return "unreadable";
    case FailureClass::kLimit: return "limit";
    case FailureClass::kMisconfigured: return "misconfigured";
  }
  return "?";
}

RetryDecision DecideSendRetry(const Outcome& o, uint32_t attempts, uint32_t max_attempts) {
  using Kind = Outcome::Kind;
  const bool transient = o.IsTransient();
  RetryDecision r;
  r.link = o.kind == Kind::kTransportError || o.kind == Kind::kTimeout || o.kind == Kind::kAborted ||
           (o.kind == Kind::kRejected && transient);
  r.give_up = !transient &&
              (o.kind == Kind::kNoContext || o.kind == Kind::kLocalError || attempts >= kPermanentFailureAttempts);
  r.cls = r.link                        ? FailureClass::kLink
          : transient                   ? FailureClass::kTransientStatus
          : o.kind == Kind::kNoContext  ? FailureClass::kUnsupported
          : o.kind == Kind::kLocalError ? FailureClass::kUnreadable
                                        : FailureClass::kRefused;
  r.at_limit = max_attempts != 0 && attempts >= max_attempts;
  if (!r.give_up && r.at_limit) {
    r.give_up = true;
    r.cls = FailureClass::kLimit;
  }
  return r;
}

RetryDecision DecideOpenRetry(const Outcome& o, uint32_t attempts, uint32_t max_attempts) {
  RetryDecision r;
  r.link = true;
  r.cls = FailureClass::kLink;
  if (o.IsMisconfiguration()) {
    r.cls = FailureClass::kMisconfigured;
    r.hold = true;
    return r;
  }
  if (o.kind == Outcome::Kind::kRejected && !o.IsTransient() && attempts >= kPermanentFailureAttempts) {
    r.give_up = true;
    r.cls = FailureClass::kRefused;
  }
  r.at_limit = max_attempts != 0 && attempts >= max_attempts;
  if (r.at_limit) {
    if (!r.give_up) r.cls = FailureClass::kLimit;
    r.give_up = true;
  }
  return r;
}

int64_t BackoffMs(uint64_t initial_backoff_s, uint64_t max_backoff_s, uint32_t failures, double jitter) {
  uint64_t base_ms = initial_backoff_s * 1000;
  uint64_t max_ms = std::max<uint64_t>(max_backoff_s * 1000, base_ms);
  uint32_t shift = failures == 0 ? 0 : std::min<uint32_t>(failures - 1, 30);
  uint64_t ms = base_ms << shift;
  if (ms > max_ms || (shift > 0 && (ms >> shift) != base_ms)) ms = max_ms;
  return static_cast<int64_t>(static_cast<double>(ms) * jitter);
}

}  // namespace relais::router
