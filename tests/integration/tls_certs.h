// Certificates and TLS settings for the DICOM TLS integration tests
// (tls_test, misconfigured_test): a small PKI made with the openssl command
// in a test's temp directory, and the relais.toml text that uses it.
#ifndef RELAIS_TESTS_INTEGRATION_TLS_CERTS_H_
#define RELAIS_TESTS_INTEGRATION_TLS_CERTS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace relais::itest {

// One certificate: its key and certificate go to DIR/NAME.key and
// DIR/NAME.crt, its subject is CN=NAME. EC P-256, valid for two days.
struct TestCert {
  std::string name;
  // "": a self-signed CA. Otherwise the name of the CA that signs this leaf
  // (made earlier in the same list).
  std::string issuer;
  // The leaf's subjectAltName, e.g. "IP:127.0.0.1" or "DNS:localhost".
  std::string subject_alt_name;
};

// Makes `certs` in order in `dir` (which must exist). False on failure;
// *log holds openssl's output either way.
bool MakeTestCertificates(const std::string& dir, const std::vector<TestCert>& certs, std::string* log);

// The [tls] listener section of a relais.toml (with a leading newline):
// `port`, the server's `certificate` and `private_key`; with a `ca`, client
// certificates are required and checked against it.
std::string TlsListenerToml(uint16_t port, const std::string& certificate, const std::string& private_key,
                            const std::string& ca = "");

// The `tls = { ... }` line of a [[destination]] (with its newline): the CA
// that signs the peer's certificate and, for mutual TLS, our certificate and
// key.
std::string TlsDestinationToml(const std::string& ca_file, const std::string& cert_file = "",
                               const std::string& key_file = "");

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_TLS_CERTS_H_
