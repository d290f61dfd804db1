// DICOM TLS end to end (issue 6), with DCMTK's TLS-enabled storescu and
// storescp and certificates made by the openssl command for the test:
//   storescu +tls (client certificate) -> Relais [tls] listener (mutual TLS)
//   -> Relais -> storescp +tls (requires Relais's client certificate).
// Objects arrive intact; a client without a trusted certificate, a client
// speaking clear text on the TLS port, and a destination that does not
// speak TLS are all refused with a reason, and nothing crosses in clear.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "peers.h"
#include "tls_certs.h"

namespace relais::itest {
namespace {

// ca, rogue (another CA), and leaves signed by them: relais (IP 127.0.0.1;
// server and client), scu, scp (IP 127.0.0.1), impostor (signed by rogue).
const std::vector<TestCert> kCertificates = {{"ca", "", ""},
                                             {"rogue", "", ""},
                                             {"relais", "ca", "IP:127.0.0.1"},
                                             {"scu", "ca", "DNS:ct-scanner"},
                                             {"scp", "ca", "IP:127.0.0.1"},
                                             {"impostor", "rogue", "DNS:ct-scanner"}};

size_t WaitForFiles(StorescpPeer& peer, size_t n, int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline && peer.CountFiles() < n) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return peer.CountFiles();
}

TEST(TlsEndToEndTest, MutualTlsInAndOutDeliversIntactAndRefusesStrangers) {
  TempDir tmp;
  for (const char* d : {"certs", "scp", "plain-scp", "relais"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  const std::string c = tmp / "certs";
  std::string log;
  ASSERT_TRUE(MakeTestCertificates(c, kCertificates, &log)) << log;

  // The destination: storescp speaking TLS, requiring a client certificate.
  StorescpOptions so;
  so.ae_title = "SECURE";
  so.prefer = {"+xa", "+tls", c + "/scp.key", c + "/scp.crt", "+cf", c + "/ca.crt", "-rc"};
  StorescpPeer scp(tmp / "scp", so);
  ASSERT_TRUE(scp.Start()) << scp.Log();
  // A destination that claims TLS but speaks clear text.
  StorescpOptions po;
  po.ae_title = "PLAINTEXT";
  StorescpPeer plain(tmp / "plain-scp", po);
  ASSERT_TRUE(plain.Start()) << plain.Log();

  const std::string rules = tmp / "rules.toml";
  const std::string tls_dest = TlsDestinationToml(c + "/ca.crt", c + "/relais.crt", c + "/relais.key");
  WriteFile(rules, "[[destination]]\nname = \"secure\"\nae_title = \"SECURE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(scp.port()) + "\n" + tls_dest + "\n" +
                       "[[destination]]\nname = \"fake\"\nae_title = \"PLAINTEXT\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(plain.port()) + "\n" + tls_dest + "\n" +
                       "[[rule]]\nname = \"both\"\nforward = [\"secure\", \"fake\"]\n");
  const uint16_t tls_port = FreePort();
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n" +
                  TlsListenerToml(tls_port, c + "/relais.crt", c + "/relais.key", c + "/ca.crt") +
                  "\n[audit]\npath = \"" + (tmp / "audit.jsonl") + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  ASSERT_TRUE(WaitForPort(tls_port, 10000)) << relais.Log();

  const std::vector<std::string> files = {CorpusDir() + "/pydicom__CT_small.dcm", CorpusDir() + "/dcm4che__MR01.dcm",
                                          CorpusDir() + "/pydicom__SC_rgb_small_odd.dcm"};
  std::vector<std::string> argv = {"storescu",     "-aec", "RELAIS",      "+tls",      c + "/scu.key",
                                   c + "/scu.crt", "+cf",  c + "/ca.crt", "127.0.0.1", std::to_string(tls_port)};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult sent = RunCommand(argv, 120);
  ASSERT_EQ(sent.exit_code, 0) << sent.output << relais.Log();

  ASSERT_EQ(WaitForFiles(scp, files.size(), 60000), files.size()) << relais.Log() << scp.Log();
  // Each received file's data set equals one sent (bit-preserving storescp).
  std::map<std::string, std::vector<std::string>> got = scp.Received();
  EXPECT_EQ(got.size(), files.size());
  EXPECT_EQ(got.count(""), 0u);
  for (const auto& [uid, received] : got) {
    // Relais's stored copy (what storescu sent over TLS) is what arrived.
    const std::string exported = tmp / ("exported-" + uid + ".dcm");
    ASSERT_TRUE(relais.Export(uid, exported)) << uid;
    std::string why;
    EXPECT_TRUE(SameDataSet(exported, received.front(), &why)) << uid << ": " << why;
  }
  std::string rlog = relais.Log();
  EXPECT_NE(rlog.find("event=tls-established protocol=\"TLSv1."), std::string::npos) << rlog;
  EXPECT_NE(rlog.find("CN=scu"), std::string::npos) << "the client certificate's subject is logged";

  // The fake destination never gets clear text: the handshake fails and
  // its rows wait with the reason.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  EXPECT_EQ(plain.CountFiles(), 0u);
  EXPECT_EQ(plain.Log().find("Association Acknowledged"), std::string::npos) << plain.Log();
  RunResult q = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--dest", "fake"}, 60);
  EXPECT_NE(q.output.find("TLS"), std::string::npos) << q.output;

  // A client whose certificate comes from another CA: refused.
  RunResult rogue = RunCommand({"storescu", "-aec", "RELAIS", "+tls", c + "/impostor.key", c + "/impostor.crt", "+cf",
                                c + "/ca.crt", "127.0.0.1", std::to_string(tls_port), files[0]},
                               60);
  EXPECT_NE(rogue.exit_code, 0) << rogue.output;
  // Clear text on the TLS port: refused.
  RunResult clear = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(tls_port)}, 60);
  EXPECT_NE(clear.exit_code, 0) << clear.output;
  // Relais is still serving both ports.
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())}, 60);
  EXPECT_EQ(echo.exit_code, 0) << echo.output;
  RunResult echo_tls = RunCommand({"echoscu", "-aec", "RELAIS", "+tls", c + "/scu.key", c + "/scu.crt", "+cf",
                                   c + "/ca.crt", "127.0.0.1", std::to_string(tls_port)},
                                  60);
  EXPECT_EQ(echo_tls.exit_code, 0) << echo_tls.output;
  rlog = relais.Log();
  EXPECT_NE(rlog.find("event=tls-failed"), std::string::npos) << rlog;
  std::string audit = ReadFile(tmp / "audit.jsonl");
  EXPECT_NE(audit.find("\"tls\":\"1\""), std::string::npos) << "refused TLS connections are audited";
  EXPECT_EQ(relais.Terminate(), 0);
}

}  // namespace
}  // namespace relais::itest
