// DICOM TLS (PS3.15 B.9, the BCP 195 TLS profiles) with OpenSSL through
// memory BIOs, so that TLS runs on the libuv loop like everything else: the
// upper-layer connection (ul_connection.h) reads ciphertext from its
// transport, hands it to its TlsChannel, and gets plaintext PDU bytes back;
// what it sends goes through the channel and comes out as ciphertext to
// write. No thread, no blocking call.
//
// Profile (PS3.15 B.9, "Non-downgrading BCP 195 TLS Secure Transport
// Connection Profile", following RFC 9325 section 4.2): TLS 1.2 or 1.3 only;
// TLS 1.2 suites ECDHE/DHE with AES-GCM (TLS_ECDHE_ECDSA/RSA_WITH_AES_128/
// 256_GCM_SHA256/384, TLS_DHE_RSA_WITH_AES_128/256_GCM_SHA256/384); TLS 1.3
// with OpenSSL's default suites; no compression, no renegotiation, no
// session tickets.
//
// Peers are authenticated with certificates checked against `ca`:
// - server side: our certificate and key; clients' certificates are
//   required (mutual TLS) when require_client_certificate is set and `ca`
//   names who may connect;
// - client side: the server's certificate must chain to `ca` and name the
//   host (DNS name or IP address in its subjectAltName) we connected to; our
//   certificate and key, when given, are sent if the server asks.
//
// Thread: a TlsContext is immutable after Make and may be shared; a
// TlsChannel is used by one association on one thread.
#ifndef RELAIS_ROUTER_NET_TLS_H_
#define RELAIS_ROUTER_NET_TLS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "router/net/tls_failure.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace relais::router {

struct TlsSettings {
  std::string certificate;                  // PEM file: our certificate (chain)
  std::string private_key;                  // PEM file: its private key (unencrypted)
  std::string ca;                           // PEM file: trusted CA certificates for peers
  bool require_client_certificate = false;  // server side
  // Lowest protocol version: "1.2" (default) or "1.3".
  std::string min_version = "1.2";
};

class TlsContext {
 public:
  // Server side: certificate and private_key required; ca required when
  // require_client_certificate. InvalidArgument naming the file and
  // OpenSSL's reason when something cannot be loaded or does not match.
  static Result<std::shared_ptr<TlsContext>> MakeServer(const TlsSettings& settings);
  // Client side: ca required (a server we cannot authenticate is refused);
  // certificate/private_key optional (sent when the server asks).
  static Result<std::shared_ptr<TlsContext>> MakeClient(const TlsSettings& settings);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  bool is_server() const { return server_; }
  SSL_CTX* ctx() const { return ctx_; }

 private:
  TlsContext(SSL_CTX* ctx, bool server) : ctx_(ctx), server_(server) {}
  SSL_CTX* ctx_;
  bool server_;
};

class TlsChannel {
 public:
  // `peer_host`: client side, the host name or IP literal the server's
  // certificate must name (empty: only the chain is checked).
  TlsChannel(std::shared_ptr<TlsContext> context, const std::string& peer_host = "");
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  // Client side: starts the handshake (the ClientHello appears in the
  // output). Server side: nothing to do; the handshake starts on Receive.
  Status Start();
  // Ciphertext from the socket. Decrypted application bytes are appended to
  // *plain. Handshake messages and alerts to answer appear in the output.
  // A fatal TLS error (malformed record, failed handshake, certificate not
  // trusted, protocol version refused) returns InvalidArgument saying why;
  // the channel is then dead (its output may hold an alert to send).
  // Unavailable once the peer has sent close_notify.
  Status Receive(std::span<const uint8_t> cipher, std::vector<uint8_t>* plain);
  // Application bytes to send; held until the handshake is done.
  Status Send(std::span<const uint8_t> plain);
  // Appends the ciphertext waiting to be written to the socket to *out.
  void TakeOutput(std::vector<uint8_t>* out);
  bool has_output() const;
  // Sends close_notify (into the output).
  void Close();

  // After Receive or Send failed: why, typed (tls_failure.h); kNone before.
  const TlsFailure& failure() const { return failure_; }
  bool handshake_done() const { return handshake_done_; }
  bool peer_closed() const { return peer_closed_; }
  // After the handshake: "TLSv1.3 TLS_AES_256_GCM_SHA384", the peer
  // certificate's subject ("" when none).
  std::string Description() const;
  std::string PeerSubject() const;

 private:
  Status Pump(std::vector<uint8_t>* plain);
  Status Fail(const char* what, int ssl_error);

  std::shared_ptr<TlsContext> context_;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;             // ciphertext from the peer (we write, OpenSSL reads)
  BIO* out_ = nullptr;            // ciphertext to the peer (OpenSSL writes, we read)
  std::vector<uint8_t> pending_;  // plaintext held until the handshake is done
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool failed_ = false;
  TlsFailure failure_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_TLS_H_
