// Outcome: the result of establishing an outgoing association or of one
// operation on it (C-ECHO, C-STORE), as ScuAssociation (scu_association.h)
// reports it and the retry policy (retry_policy.h) and the delivery
// scheduler (delivery.h) read it. A value type: no libuv, no store.
//
// Thread: any (plain data and pure functions).
#ifndef RELAIS_ROUTER_DELIVER_OUTCOME_H_
#define RELAIS_ROUTER_DELIVER_OUTCOME_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "router/net/tls_failure.h"
#include "router/protocol/pdu.h"

namespace relais::router {

// The result of establishing the association or of one operation.
struct Outcome {
  enum class Kind {
    kSuccess,         // established; or response status 0x0000
    kWarning,         // response status is a warning: the peer kept the object
    kFailure,         // response status is a failure; `status` says which
    kNoContext,       // no accepted presentation context fits (nothing sent)
    kRejected,        // A-ASSOCIATE-RJ; reject_* say why
    kTransportError,  // resolve/connect/read/write failed or connection lost
    kTimeout,         // a timer of ScuConfig expired; the association is aborted
    kAborted,         // A-ABORT (either side) or a protocol error
    kLocalError,      // our side failed (store read, caller misuse); aborted if mid-object
  };
  Kind kind = Kind::kSuccess;
  uint16_t status = 0;  // DIMSE status (kSuccess/kWarning/kFailure)
  std::string error;    // human-readable, for logs and the dead-letter reason
  // kLocalError from reading the object from the store: that Status's code
  // (kNotFound: the object was replaced or purged while being sent).
  // kOk otherwise.
  Status::Code store_code = Status::Code::kOk;
  // kRejected only: PS3.8 Table 9-21 fields of the A-ASSOCIATE-RJ.
  ul::RejectResult reject_result = ul::RejectResult::kPermanent;
  ul::RejectSource reject_source = ul::RejectSource::kServiceUser;
  uint8_t reject_reason = 0;
  // An operation's response (kSuccess/kWarning/kFailure): milliseconds from
  // its command going on the wire to its response; -1 otherwise.
  int64_t round_trip_ms = -1;
  // kTransportError only: set when DICOM TLS failed, and why (the peer's
  // certificate does not fit, or it refused ours: router/net/tls_failure.h).
  TlsFailure tls;

  bool ok() const { return kind == Kind::kSuccess || kind == Kind::kWarning; }
  // True when trying again later may succeed: network trouble, timeouts,
  // aborts, transient rejections, and failure statuses 0xA7xx (out of
  // resources), 0x0213 (resource limitation) and 0x0110 (processing failure,
  // which archives use for passing trouble). False for successes and for
  // permanent refusals (0xA9xx, 0xCxxx, 0x0122, ..., kNoContext, kLocalError).
  bool IsTransient() const;
  // True for a permanent A-ASSOCIATE-RJ whose reason is our configuration,
  // not the objects (PS3.8 9.3.4, Table 9-21, source 1 service user):
  // application context name not supported (2), calling AE title not
  // recognized (3), called AE title not recognized (7). "No reason given"
  // (1) and the provider's reasons are not: they say nothing of the setup.
  // Also true for a TLS failure that only a change of certificates or of
  // the destination can fix (TlsFailure::IsConfiguration: a certificate
  // that does not name the host, is not signed by our CA, is out of date,
  // or ours refused by the peer); not for a handshake cut by the network.
  bool IsMisconfiguration() const;
  std::string ToString() const;  // "failure status=0xA900: ..."
};
const char* OutcomeKindName(Outcome::Kind kind);

// Classifies a DIMSE response status (PS3.7 Annex C, PS3.4 B.2.3) into
// kSuccess, kWarning or kFailure.
Outcome::Kind ClassifyStatus(uint16_t status);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_OUTCOME_H_
