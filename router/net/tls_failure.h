// TlsFailure: why a DICOM TLS channel (tls.h) failed, as a value the layers
// above can act on without reading OpenSSL's words. The delivery scheduler
// reads IsConfiguration() to tell a destination whose certificates do not
// fit (held as "misconfigured": retrying changes nothing until an admin
// does) from a link that failed (retried after the backoff).
//
// Which is which (client side, the only side that acts on it):
// - configuration: the server's certificate fails verification against our
//   CA file: it does not name the host we connected to (kPeerName), it does
//   not chain to a CA we trust (kPeerNotTrusted), it is expired or not yet
//   valid (kPeerDates), or another verification error (kPeerCertificate);
//   or the server refused our certificate with a TLS alert (bad_certificate,
//   unknown_ca, certificate_expired, certificate_unknown, certificate_revoked,
//   unsupported_certificate, certificate_required, access_denied:
//   kOurCertificateRefused);
// - link: anything else (kOther): a malformed record, a handshake cut by a
//   reset, a close or a timeout (these never reach the channel as a TLS
//   error: the transport reports them), a handshake_failure alert, which
//   says nothing about whose fault.
//
// Thread: any (plain data).
#ifndef RELAIS_ROUTER_NET_TLS_FAILURE_H_
#define RELAIS_ROUTER_NET_TLS_FAILURE_H_

#include <string>

namespace relais::router {

struct TlsFailure {
  enum class Kind {
    kNone,                   // no TLS failure
    kPeerName,               // the peer's certificate does not name the host (X509_V_ERR_HOSTNAME/IP_ADDRESS_MISMATCH)
    kPeerNotTrusted,         // the peer's certificate does not chain to our CA (unknown issuer, self-signed)
    kPeerDates,              // the peer's certificate is expired or not yet valid
    kPeerCertificate,        // the peer's certificate failed verification otherwise (signature, purpose, ...)
    kOurCertificateRefused,  // the peer refused our certificate (or its absence) with a TLS alert
    kOther,                  // any other TLS error: the link's, not the configuration's
  };
  Kind kind = Kind::kNone;
  // The verification error (OpenSSL's X509_V_ERR_* code and words) for the
  // kPeer* kinds; the alert's description for kOurCertificateRefused;
  // OpenSSL's words for kOther.
  std::string detail;

  bool failed() const { return kind != Kind::kNone; }
  // True for the kinds that only an admin's change can fix.
  bool IsConfiguration() const { return kind != Kind::kNone && kind != Kind::kOther; }
};

// "peer-name", "peer-not-trusted", "peer-dates", "peer-certificate",
// "our-certificate-refused", "other", "none".
const char* TlsFailureKindName(TlsFailure::Kind kind);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_TLS_FAILURE_H_
