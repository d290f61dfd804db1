#include "router/deliver/outcome.h"

#include <cstdio>

#include "base/hex.h"

namespace relais::router {

const char* OutcomeKindName(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::kSuccess: return "success";
    case Outcome::Kind::kWarning: return "warning";
    case Outcome::Kind::kFailure: return "failure";
    case Outcome::Kind::kNoContext: return "no-context";
    case Outcome::Kind::kRejected: return "rejected";
    case Outcome::Kind::kTransportError: return "transport-error";
    case Outcome::Kind::kTimeout: return "timeout";
    case Outcome::Kind::kAborted: return "aborted";
    case Outcome::Kind::kLocalError: return "local-error";
  }
  return "?";
}

// PS3.7 Annex C: 0x0000 success; warnings 0x0001, 0x0107 (attribute list
// error), 0x0116 (attribute value out of range) and 0xBxxx (for C-STORE,
// PS3.4 B.2.3: 0xB000 coercion, 0xB007 data set does not match SOP class,
// 0xB006 elements discarded); everything else (0xA7xx, 0xA9xx, 0xCxxx,
// 0x01xx, 0x02xx, and the pending/cancel statuses, which a C-STORE-RSP or
// C-ECHO-RSP must not carry) is a failure.
Outcome::Kind ClassifyStatus(uint16_t status) {
  if (status == 0x0000) return Outcome::Kind::kSuccess;
  if (status == 0x0001 || status == 0x0107 || status == 0x0116 || (status & 0xF000) == 0xB000) {
    return Outcome::Kind::kWarning;
  }
  return Outcome::Kind::kFailure;
}

bool Outcome::IsTransient() const {
  switch (kind) {
    case Kind::kSuccess:
    case Kind::kWarning:
    case Kind::kNoContext:
    case Kind::kLocalError: return false;
    case Kind::kFailure:
      // 0xA7xx Refused: Out of Resources (PS3.4 B.2.3); 0x0213 Resource
      // Limitation and 0x0110 Processing Failure (PS3.7 C.4, C.5).
      return (status & 0xFF00) == 0xA700 || status == 0x0213 || status == 0x0110;
    case Kind::kRejected: return reject_result == ul::RejectResult::kTransient;
    case Kind::kTransportError:
    case Kind::kTimeout:
    case Kind::kAborted: return true;
  }
  return false;
}

bool Outcome::IsMisconfiguration() const {
  if (kind == Kind::kTransportError && tls.IsConfiguration()) return true;
  if (kind != Kind::kRejected || reject_result != ul::RejectResult::kPermanent ||
      reject_source != ul::RejectSource::kServiceUser) {
    return false;
  }
  return reject_reason == ul::kRjApplicationContextNotSupported || reject_reason == ul::kRjCallingAeNotRecognized ||
         reject_reason == ul::kRjCalledAeNotRecognized;
}

std::string Outcome::ToString() const {
  std::string s = OutcomeKindName(kind);
  if (kind == Kind::kSuccess || kind == Kind::kWarning || kind == Kind::kFailure) {
    s += " status=" + Hex4(status);
  }
  if (!error.empty()) s += ": " + error;
  return s;
}

}  // namespace relais::router
