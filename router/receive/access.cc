// AccessPolicy (router/receive/access.h).
#include "router/receive/access.h"

#include <openssl/crypto.h>

#include <array>

#include "base/hex.h"
#include "base/sha256.h"

namespace relais::router {
namespace {

// PS3.8 Table 9-21, source 1 (service user).
constexpr uint8_t kRjNoReasonGiven = 1;
constexpr uint8_t kRjCallingAeNotRecognized = 3;

// Printable for a log line: at most 64 characters, controls replaced.
std::string Shown(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7F) ? c : '?';
  return s.size() > 64 ? out + "..." : out;
}

}  // namespace

Result<AccessPolicy> AccessPolicy::Make(const rules::ListenerConfig& config) {
  AccessPolicy p;
  for (const rules::ListenerConfig::Allow& a : config.allow) {
    Allow entry{a.calling_ae, std::nullopt};
    if (!a.from.empty()) {
      entry.from = Cidr::Parse(a.from);
      if (!entry.from)
        return Status::InvalidArgument("listener.allow.from '" + a.from + "' is not an IP or CIDR block");
    }
    p.allow_.push_back(std::move(entry));
  }
  for (const rules::ListenerConfig::User& u : config.users) {
    User entry{u.username, {}};
    if (!u.passcode_sha256.empty()) {
      std::string digest;  // lowercase only, as the config parser requires
      if (!IsLowerHex(u.passcode_sha256) || !HexDecode(u.passcode_sha256, &digest) || digest.size() != 32) {
        return Status::InvalidArgument("listener.user '" + u.username + "': passcode_sha256 is not 64 hex digits");
      }
      entry.passcode_sha256.assign(digest.begin(), digest.end());
    }
    p.users_.push_back(std::move(entry));
  }
  return p;
}

AccessPolicy::Decision AccessPolicy::Check(const std::string& calling_ae, const std::string& peer_ip,
                                           const std::optional<ul::UserIdentityRq>& identity) const {
  Decision d;
  if (!allow_.empty()) {
    bool ae_known = false;
    bool matched = false;
    for (const Allow& a : allow_) {
      const bool ae_ok = a.calling_ae == "*" || a.calling_ae == calling_ae;
      ae_known = ae_known || (ae_ok && a.calling_ae != "*");
      if (ae_ok && (!a.from || a.from->Contains(peer_ip))) {
        matched = true;
        break;
      }
    }
    if (!matched) {
      d.allowed = false;
      d.rj_reason = kRjCallingAeNotRecognized;
      d.label = "calling-ae";
      d.why = ae_known ? "calling AE title '" + Shown(calling_ae) + "' is not allowed from " + Shown(peer_ip) +
                             ": add its address to its [[listener.allow]] entry if it moved"
                       : "calling AE title '" + Shown(calling_ae) + "' from " + Shown(peer_ip) +
                             " is not in [[listener.allow]]: add an entry for it if it is a known sender";
      return d;
    }
  }
  if (users_.empty()) return d;
  auto refuse = [&](std::string why) {
    d.allowed = false;
    d.rj_reason = kRjNoReasonGiven;
    d.label = "identity";
    d.why = std::move(why);
    return d;
  };
  if (!identity) {
    return refuse("no user identity (PS3.7 D.3.3.7) from '" + Shown(calling_ae) +
                  "': this listener requires a [[listener.user]]; configure the sender with a username and passcode");
  }
  if (identity->type != 1 && identity->type != 2) {
    return refuse("user identity type " + std::to_string(identity->type) +
                  " is not supported (only username, and username with passcode)");
  }
  for (const User& u : users_) {
    if (u.username != identity->primary_field) continue;
    if (u.passcode_sha256.empty()) {
      if (identity->type != 1 && !identity->secondary_field.empty()) {
        return refuse("user '" + Shown(u.username) + "' has no passcode configured but one was sent");
      }
    } else {
      if (identity->type != 2) return refuse("user '" + Shown(u.username) + "' must send a passcode");
      std::array<uint8_t, 32> h;
      if (!Sha256(identity->secondary_field, &h) || CRYPTO_memcmp(h.data(), u.passcode_sha256.data(), 32) != 0) {
        return refuse("wrong passcode for user '" + Shown(u.username) + "'");
      }
    }
    d.user = u.username;
    if (identity->positive_response_requested) d.identity_ac = std::string();
    return d;
  }
  return refuse("unknown user '" + Shown(identity->primary_field) + "': add it to [[listener.user]]");
}

}  // namespace relais::router
