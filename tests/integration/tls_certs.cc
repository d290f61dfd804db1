#include "tls_certs.h"

#include "harness.h"

namespace relais::itest {

bool MakeTestCertificates(const std::string& dir, const std::vector<TestCert>& certs, std::string* log) {
  std::string script =
      "set -e; cd '" + dir +
      "';"
      "gen() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "  -subj \"/CN=$1\" -keyout $1.key -out $1.crt; };"
      "leaf() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj \"/CN=$1\" "
      "  -keyout $1.key -out $1.csr; printf 'subjectAltName=%s\\n' \"$3\" > $1.ext;"
      "  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -days 2 -extfile $1.ext -out $1.crt; };";
  for (const TestCert& c : certs) {
    if (c.issuer.empty()) {
      script += "gen '" + c.name + "';";
    } else {
      script += "leaf '" + c.name + "' '" + c.issuer + "' '" + c.subject_alt_name + "';";
    }
  }
  RunResult r = RunCommand({"bash", "-c", script}, 60);
  *log = r.output;
  return r.exit_code == 0;
}

std::string TlsListenerToml(uint16_t port, const std::string& certificate, const std::string& private_key,
                            const std::string& ca) {
  std::string toml = "\n[tls]\nport = " + std::to_string(port) + "\ncertificate = \"" + certificate +
                     "\"\nprivate_key = \"" + private_key + "\"\n";
  if (!ca.empty()) toml += "ca = \"" + ca + "\"\nrequire_client_certificate = true\n";
  return toml;
}

std::string TlsDestinationToml(const std::string& ca_file, const std::string& cert_file, const std::string& key_file) {
  std::string toml = "tls = { ca_file = \"" + ca_file + "\"";
  if (!cert_file.empty()) toml += ", cert_file = \"" + cert_file + "\", key_file = \"" + key_file + "\"";
  return toml + " }\n";
}

}  // namespace relais::itest
