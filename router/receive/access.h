// AccessPolicy: who may associate with a listener ([[listener.allow]],
// [[listener.user]] in rules/rules.h ListenerConfig).
//
// - Allow-list: empty accepts every calling AE from anywhere. Otherwise an
//   entry must match the calling AE title (exactly, or "*") and the peer's
//   address (inside its CIDR block, or any when it has none).
// - User identity (PS3.7 D.3.3.7): when users are configured, the
//   A-ASSOCIATE-RQ must carry a User Identity sub-item naming one of them:
//   type 2 (username and passcode) with the passcode whose SHA-256 is
//   configured, or type 1 (username only) for a user configured without a
//   passcode. Other types (Kerberos, SAML, JWT) are refused.
// A refusal carries the A-ASSOCIATE-RJ fields (PS3.8 9.3.4, Table 9-21), a
// short label for metrics and a message for the log and the audit trail that
// says what the admin can do. Passcodes never appear in messages.
//
// Thread: immutable after Make; any thread.
#ifndef RELAIS_ROUTER_RECEIVE_ACCESS_H_
#define RELAIS_ROUTER_RECEIVE_ACCESS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/cidr.h"
#include "base/status.h"
#include "router/protocol/pdu.h"
#include "rules/rules.h"

namespace relais::router {

class AccessPolicy {
 public:
  // InvalidArgument for a malformed CIDR or hash (the config check refuses
  // them first).
  static Result<AccessPolicy> Make(const rules::ListenerConfig& config);
  AccessPolicy() = default;  // accepts everyone

  struct Decision {
    bool allowed = true;
    // When refused: A-ASSOCIATE-RJ result (1 permanent), source (1 service
    // user) and reason (3 calling AE title not recognized, 1 no reason given).
    uint8_t rj_reason = 0;
    std::string label;  // "calling-ae" or "identity" (metrics)
    std::string why;    // for the log and the audit trail
    std::string user;   // the authenticated username ("" when none)
    // A-ASSOCIATE-AC User Identity sub-item (0x59) to send: present when the
    // requestor asked for a positive response (empty server response for
    // username types, PS3.7 D.3.3.7.2).
    std::optional<std::string> identity_ac;
  };
  Decision Check(const std::string& calling_ae, const std::string& peer_ip,
                 const std::optional<ul::UserIdentityRq>& identity) const;

  bool restricts_callers() const { return !allow_.empty(); }
  bool requires_identity() const { return !users_.empty(); }

 private:
  struct Allow {
    std::string calling_ae;
    std::optional<Cidr> from;
  };
  struct User {
    std::string username;
    std::vector<uint8_t> passcode_sha256;  // 32 bytes, or empty: no passcode
  };
  std::vector<Allow> allow_;
  std::vector<User> users_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECEIVE_ACCESS_H_
