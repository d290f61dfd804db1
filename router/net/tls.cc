// DICOM TLS with memory BIOs (router/net/tls.h).
#include "router/net/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>

namespace relais::router {
namespace {

// PS3.15 B.9 / RFC 9325 4.2: TLS 1.2 suites of the non-downgrading BCP 195
// profile (OpenSSL names). TLS 1.3 suites: OpenSSL's defaults (all AEAD).
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

// True for the errors OpenSSL raises when a private key does not belong to
// the certificate already loaded (X509_check_private_key, ssl_set_pkey).
bool IsKeyMismatch(unsigned long e) {
  const int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
  return (lib == ERR_LIB_X509 && (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH)) ||
         (lib == ERR_LIB_SSL && reason == SSL_R_PRIVATE_KEY_MISMATCH);
}

// The TLS alert (RFC 8446 6.2) carried by an OpenSSL error, when it is one
// by which a peer refuses the certificate we sent (or its absence); 0
// otherwise. OpenSSL reports a received alert as SSL_AD_REASON_OFFSET +
// its description.
int CertificateAlert(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return 0;
  const int reason = ERR_GET_REASON(e);
  if (reason <= SSL_AD_REASON_OFFSET) return 0;
  const int alert = reason - SSL_AD_REASON_OFFSET;
  switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED: return alert;
    default: return 0;
  }
}

// What a failed verification of the peer's certificate means (tls_failure.h).
TlsFailure ClassifyVerifyError(long verify) {
  TlsFailure f;
  f.detail = X509_verify_cert_error_string(verify);
  switch (verify) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH: f.kind = TlsFailure::Kind::kPeerName; break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED: f.kind = TlsFailure::Kind::kPeerNotTrusted; break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: f.kind = TlsFailure::Kind::kPeerDates; break;
    default: f.kind = TlsFailure::Kind::kPeerCertificate; break;
  }
  return f;
}

// OpenSSL's error queue as one line (and cleared). `key_mismatch`, when
// given, tells whether one of the errors was IsKeyMismatch; `alert`, when
// given, gets the first CertificateAlert among them (0: none).
std::string OpenSslErrors(bool* key_mismatch = nullptr, int* alert = nullptr) {
  std::string out;
  unsigned long e;
  if (key_mismatch != nullptr) *key_mismatch = false;
  if (alert != nullptr) *alert = 0;
  while ((e = ERR_get_error()) != 0) {
    if (key_mismatch != nullptr && IsKeyMismatch(e)) *key_mismatch = true;
    if (alert != nullptr && *alert == 0) *alert = CertificateAlert(e);
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

Result<SSL_CTX*> NewContext(const TlsSettings& s, bool server) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return Status::Internal("SSL_CTX_new: " + OpenSslErrors());
  auto fail = [&](std::string msg) -> Result<SSL_CTX*> {
    SSL_CTX_free(ctx);
    return Status::InvalidArgument(std::move(msg));
  };
  int min = TLS1_2_VERSION;
  if (s.min_version == "1.3") {
    min = TLS1_3_VERSION;
  } else if (s.min_version != "1.2") {
    return fail("TLS min_version must be \"1.2\" or \"1.3\", got '" + s.min_version + "'");
  }
  SSL_CTX_set_min_proto_version(ctx, min);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return fail("TLS cipher list: " + OpenSslErrors());
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (!s.certificate.empty() || !s.private_key.empty()) {
    if (s.certificate.empty() || s.private_key.empty()) {
      return fail("TLS needs both a certificate and its private key (got only one)");
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, s.certificate.c_str()) != 1) {
      return fail("cannot load TLS certificate '" + s.certificate + "': " + OpenSslErrors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, s.private_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      bool key_mismatch = false;
      std::string why = OpenSslErrors(&key_mismatch);
      if (key_mismatch) {
        return fail("TLS private key '" + s.private_key + "' does not match certificate '" + s.certificate + "'");
      }
      return fail("cannot load TLS private key '" + s.private_key + "': " + why);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return fail("TLS private key '" + s.private_key + "' does not match certificate '" + s.certificate + "'");
    }
  } else if (server) {
    return fail("a TLS listener needs a certificate and a private key ([tls] certificate, private_key)");
  }
  if (!s.ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, s.ca.c_str(), nullptr) != 1) {
      return fail("cannot load TLS CA certificates '" + s.ca + "': " + OpenSslErrors());
    }
    if (server) {
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.ca.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    }
  } else if (!server) {
    return fail("TLS towards a destination needs [tls] ca: the CA certificates that signed the peers' certificates");
  } else if (s.require_client_certificate) {
    return fail("[tls] require_client_certificate needs [tls] ca to check the clients' certificates");
  }
  int mode = SSL_VERIFY_NONE;
  if (!server) mode = SSL_VERIFY_PEER;
  if (server && s.require_client_certificate) mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, mode, nullptr);
  return ctx;
}

}  // namespace

const char* TlsFailureKindName(TlsFailure::Kind kind) {
  switch (kind) {
    case TlsFailure::Kind::kNone: return "none";
    case TlsFailure::Kind::kPeerName: return "peer-name";
    case TlsFailure::Kind::kPeerNotTrusted: return "peer-not-trusted";
    case TlsFailure::Kind::kPeerDates: return "peer-dates";
    case TlsFailure::Kind::kPeerCertificate: return "peer-certificate";
    case TlsFailure::Kind::kOurCertificateRefused: return "our-certificate-refused";
    case TlsFailure::Kind::kOther: return "other";
  }
  return "?";
}

Result<std::shared_ptr<TlsContext>> TlsContext::MakeServer(const TlsSettings& settings) {
  Result<SSL_CTX*> ctx = NewContext(settings, true);
  if (!ctx.ok()) return ctx.status();
  return std::shared_ptr<TlsContext>(new TlsContext(*ctx, true));
}

Result<std::shared_ptr<TlsContext>> TlsContext::MakeClient(const TlsSettings& settings) {
  Result<SSL_CTX*> ctx = NewContext(settings, false);
  if (!ctx.ok()) return ctx.status();
  return std::shared_ptr<TlsContext>(new TlsContext(*ctx, false));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsChannel::TlsChannel(std::shared_ptr<TlsContext> context, const std::string& peer_host)
    : context_(std::move(context)) {
  ssl_ = SSL_new(context_->ctx());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) {
    failed_ = true;
    return;
  }
  BIO_set_mem_eof_return(in_, -1);  // empty input: "retry", not EOF
  SSL_set_bio(ssl_, in_, out_);     // ssl_ owns both BIOs now
  if (context_->is_server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!peer_host.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      unsigned char ip[16];
      if (inet_pton(AF_INET, peer_host.c_str(), ip) == 1 || inet_pton(AF_INET6, peer_host.c_str(), ip) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(param, peer_host.c_str());
      } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, peer_host.c_str(), 0);
        SSL_set_tlsext_host_name(ssl_, peer_host.c_str());
      }
    }
  }
}

TlsChannel::~TlsChannel() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);  // frees the BIOs
  } else {
    if (in_ != nullptr) BIO_free(in_);
    if (out_ != nullptr) BIO_free(out_);
  }
}

Status TlsChannel::Fail(const char* what, int ssl_error) {
  failed_ = true;
  std::string why;
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    why = std::string("peer certificate not accepted: ") + X509_verify_cert_error_string(verify);
    failure_ = ClassifyVerifyError(verify);
    ERR_clear_error();
  } else {
    int alert = 0;
    why = OpenSslErrors(nullptr, &alert);
    failure_.kind = TlsFailure::Kind::kOther;
    failure_.detail = why;
    if (alert != 0) {
      failure_.kind = TlsFailure::Kind::kOurCertificateRefused;
      failure_.detail = std::string("TLS alert ") + SSL_alert_desc_string_long(alert);
    }
  }
  return Status::InvalidArgument(std::string("TLS ") + what + " failed (" + std::to_string(ssl_error) + "): " + why);
}

Status TlsChannel::Start() {
  if (failed_) return Status::Internal("TLS channel could not be created");
  if (context_->is_server()) return Status::OK();
  return Pump(nullptr);
}

// Drives the handshake, then reads every decrypted byte into *plain.
Status TlsChannel::Pump(std::vector<uint8_t>* plain) {
  ERR_clear_error();
  if (!handshake_done_) {
    int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::OK();
      return Fail("handshake", err);
    }
    handshake_done_ = true;
    if (!pending_.empty()) {
      std::vector<uint8_t> held = std::move(pending_);
      pending_.clear();
      RELAIS_RETURN_IF_ERROR(Send(held));
    }
  }
  if (plain == nullptr) return Status::OK();
  uint8_t buf[16384];
  for (;;) {
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      plain->insert(plain->end(), buf, buf + n);
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::OK();
    if (err == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return Status::OK();
    }
    return Fail("read", err);
  }
}

Status TlsChannel::Receive(std::span<const uint8_t> cipher, std::vector<uint8_t>* plain) {
  if (failed_) return Status::InvalidArgument("TLS channel already failed");
  if (peer_closed_) return Status::Unavailable("TLS peer sent close_notify");
  size_t off = 0;
  while (off < cipher.size()) {
    int n = BIO_write(in_, cipher.data() + off, static_cast<int>(std::min<size_t>(cipher.size() - off, 1 << 30)));
    if (n <= 0) return Status::Internal("TLS: BIO_write failed");
    off += static_cast<size_t>(n);
  }
  return Pump(plain);
}

Status TlsChannel::Send(std::span<const uint8_t> plain) {
  if (failed_) return Status::InvalidArgument("TLS channel already failed");
  if (!handshake_done_) {
    pending_.insert(pending_.end(), plain.begin(), plain.end());
    return Status::OK();
  }
  ERR_clear_error();
  size_t off = 0;
  while (off < plain.size()) {
    int n = SSL_write(ssl_, plain.data() + off, static_cast<int>(std::min<size_t>(plain.size() - off, 1 << 20)));
    if (n <= 0) return Fail("write", SSL_get_error(ssl_, n));
    off += static_cast<size_t>(n);
  }
  return Status::OK();
}

void TlsChannel::TakeOutput(std::vector<uint8_t>* out) {
  char* data = nullptr;
  long n = BIO_get_mem_data(out_, &data);
  if (n > 0) {
    out->insert(out->end(), data, data + n);
    (void)BIO_reset(out_);
  }
}

bool TlsChannel::has_output() const { return BIO_ctrl_pending(out_) > 0; }

void TlsChannel::Close() {
  if (ssl_ != nullptr && handshake_done_ && !failed_) {
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);
  }
}

std::string TlsChannel::Description() const {
  if (!handshake_done_) return "";
  return std::string(SSL_get_version(ssl_)) + " " + SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_));
}

std::string TlsChannel::PeerSubject() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr) return "";
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  X509_free(cert);
  return buf;
}

}  // namespace relais::router
