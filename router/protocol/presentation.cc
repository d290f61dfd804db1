#include "router/protocol/presentation.h"

#include <algorithm>
#include <cstring>

namespace relais::ul {
namespace {

constexpr char kImplicitLittle[] = "1.2.840.10008.1.2";
constexpr char kExplicitLittle[] = "1.2.840.10008.1.2.1";

bool IsValidUid(const std::string& uid) {
  // PS3.5 9.1: digits and dots, at most 64 characters, no empty component.
  if (uid.empty() || uid.size() > 64) return false;
  char prev = '.';
  for (char c : uid) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (c < '0' || c > '9') {
      return false;
    }
    prev = c;
  }
  return prev != '.';
}

bool IsSupportedTransferSyntax(const std::string& uid, const UidDictionary& dict) {
  return IsValidUid(uid) && dict.is_supported_transfer_syntax(uid);
}

}  // namespace

bool IsAcceptedAbstractSyntax(const std::string& uid, const AcceptPolicy& policy, const UidDictionary& dict) {
  if (!IsValidUid(uid)) return false;
  if (uid == kVerificationSopClass) return true;
  if (dict.is_storage_sop_class(uid)) return true;
  if (dict.is_known_uid(uid)) return false;  // known, not storage
  return policy.accept_unknown_sop_classes;
}

std::vector<PresentationContextAc> NegotiateContexts(const std::vector<PresentationContextRq>& proposed,
                                                     const AcceptPolicy& policy, const UidDictionary& dict) {
  std::vector<PresentationContextAc> out;
  out.reserve(proposed.size());
  for (const PresentationContextRq& rq : proposed) {
    PresentationContextAc ac;
    ac.id = rq.id;
    if (!IsAcceptedAbstractSyntax(rq.abstract_syntax, policy, dict)) {
      ac.result = ContextResult::kAbstractSyntaxNotSupported;
      // PS3.8 9.3.3.2: the transfer syntax sub-item is still present; its
      // value is not significant when the context is not accepted.
      ac.transfer_syntax = kImplicitLittle;
      out.push_back(ac);
      continue;
    }
    const std::string* chosen = nullptr;
    for (const std::string& ts : rq.transfer_syntaxes) {
      if (IsSupportedTransferSyntax(ts, dict)) {
        chosen = &ts;
        break;
      }
    }
    if (chosen != nullptr && *chosen == kImplicitLittle) {
      auto it = std::find(rq.transfer_syntaxes.begin(), rq.transfer_syntaxes.end(), kExplicitLittle);
      if (it != rq.transfer_syntaxes.end()) chosen = &*it;
    }
    if (chosen == nullptr) {
      ac.result = ContextResult::kTransferSyntaxesNotSupported;
      ac.transfer_syntax = kImplicitLittle;
    } else {
      ac.result = ContextResult::kAcceptance;
      ac.transfer_syntax = *chosen;
    }
    out.push_back(ac);
  }
  return out;
}

}  // namespace relais::ul
