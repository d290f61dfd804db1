// TlsChannel (router/net/tls.h): two channels talking through memory, with
// certificates made by the openssl command for this test: the BCP 195
// profile's versions and suites, mutual TLS, host/IP checks, refusals with
// a reason, and hostile bytes.
#include "router/net/tls.h"

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace relais::router {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "relais-tls-XXXXXX").string();
    dir_ = new std::string(mkdtemp(tmpl.data()));
    const std::string d = *dir_;
    // A CA, a server certificate for 127.0.0.1 and "relais.example", a
    // client certificate, and a rogue CA with a server certificate.
    const std::string script =
        "set -e; cd '" + d +
        "';"
        "gen() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "  -subj \"/CN=$1\" -keyout $1.key -out $1.crt >/dev/null 2>&1; };"
        "leaf() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj \"/CN=$1\" "
        "  -keyout $1.key -out $1.csr >/dev/null 2>&1;"
        "  printf 'subjectAltName=%s\\n' \"$3\" > $1.ext;"
        "  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -days 2 -extfile $1.ext "
        "  -out $1.crt >/dev/null 2>&1; };"
        "gen ca; gen rogue;"
        "leaf server ca 'IP:127.0.0.1,DNS:relais.example';"
        "leaf client ca 'DNS:ct-scanner';"
        "leaf impostor rogue 'IP:127.0.0.1';";
    ASSERT_EQ(std::system(("bash -c \"" + Escape(script) + "\"").c_str()), 0) << "openssl failed";
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(*dir_, ec);
    delete dir_;
  }
  static std::string Escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '"' || c == '$' || c == '\\' || c == '`') out += '\\';
      out += c;
    }
    return out;
  }
  static std::string F(const std::string& name) { return *dir_ + "/" + name; }

  static TlsSettings Server(bool mutual = false) {
    TlsSettings s;
    s.certificate = F("server.crt");
    s.private_key = F("server.key");
    s.ca = F("ca.crt");
    s.require_client_certificate = mutual;
    return s;
  }
  static TlsSettings Client(bool with_cert = false) {
    TlsSettings s;
    s.ca = F("ca.crt");
    if (with_cert) {
      s.certificate = F("client.crt");
      s.private_key = F("client.key");
    }
    return s;
  }

  // Runs the two channels until neither has output; returns the first error.
  static Status Shuttle(TlsChannel& a, TlsChannel& b, std::vector<uint8_t>* a_got, std::vector<uint8_t>* b_got,
                        size_t piece = 1 << 20) {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      for (int dir = 0; dir < 2; ++dir) {
        TlsChannel& from = dir == 0 ? a : b;
        TlsChannel& to = dir == 0 ? b : a;
        std::vector<uint8_t> bytes;
        from.TakeOutput(&bytes);
        for (size_t off = 0; off < bytes.size(); off += piece) {
          moved = true;
          size_t n = std::min(piece, bytes.size() - off);
          Status s = to.Receive(std::span<const uint8_t>(bytes.data() + off, n), dir == 0 ? b_got : a_got);
          if (!s.ok()) return s;
        }
      }
      if (!moved) return Status::OK();
    }
    return Status::Internal("no quiescence");
  }

  static std::string* dir_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, HandshakeAndDataBothWaysInPiecesOfEverySize) {
  auto server_ctx = TlsContext::MakeServer(Server());
  auto client_ctx = TlsContext::MakeClient(Client());
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status().ToString();
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status().ToString();
  std::mt19937 rng(7);
  std::vector<uint8_t> payload(100000);
  for (auto& b : payload) b = static_cast<uint8_t>(rng());
  for (size_t piece : {size_t{1}, size_t{5}, size_t{1000}, size_t{1} << 20}) {
    TlsChannel server(*server_ctx);
    TlsChannel client(*client_ctx, "127.0.0.1");
    ASSERT_TRUE(client.Start().ok());
    // Written before the handshake: held, then sent.
    ASSERT_TRUE(client.Send(std::span<const uint8_t>(payload.data(), 5000)).ok());
    std::vector<uint8_t> at_server, at_client;
    Status s = Shuttle(client, server, &at_client, &at_server, piece);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(server.handshake_done());
    ASSERT_TRUE(client.handshake_done());
    ASSERT_TRUE(client.Send(std::span<const uint8_t>(payload.data() + 5000, payload.size() - 5000)).ok());
    ASSERT_TRUE(server.Send(payload).ok());
    s = Shuttle(client, server, &at_client, &at_server, piece);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(at_server, payload) << "piece " << piece;
    EXPECT_EQ(at_client, payload) << "piece " << piece;
    EXPECT_EQ(client.Description().rfind("TLSv1.3 ", 0), 0u) << client.Description();
    EXPECT_NE(client.PeerSubject().find("CN=server"), std::string::npos) << client.PeerSubject();
    // close_notify reaches the other side.
    client.Close();
    s = Shuttle(client, server, &at_client, &at_server, piece);
    EXPECT_TRUE(server.peer_closed());
  }
}

TEST_F(TlsTest, Tls12UsesABcp195Suite) {
  TlsSettings ss = Server();
  auto server_ctx = TlsContext::MakeServer(ss);
  ASSERT_TRUE(server_ctx.ok());
  auto client_ctx = TlsContext::MakeClient(Client());
  ASSERT_TRUE(client_ctx.ok());
  SSL_CTX_set_max_proto_version((*client_ctx)->ctx(), TLS1_2_VERSION);
  TlsChannel server(*server_ctx);
  TlsChannel client(*client_ctx, "relais.example");
  ASSERT_TRUE(client.Start().ok());
  std::vector<uint8_t> a, b;
  ASSERT_TRUE(Shuttle(client, server, &a, &b).ok());
  ASSERT_TRUE(client.handshake_done());
  const std::string d = client.Description();
  EXPECT_TRUE(d == "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256" || d == "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384") << d;
  // A client offering only suites outside the profile gets nothing.
  auto weak_ctx = TlsContext::MakeClient(Client());
  ASSERT_TRUE(weak_ctx.ok());
  SSL_CTX_set_max_proto_version((*weak_ctx)->ctx(), TLS1_2_VERSION);
  ASSERT_EQ(SSL_CTX_set_cipher_list((*weak_ctx)->ctx(), "AES128-SHA:ECDHE-ECDSA-AES128-SHA"), 1);
  TlsChannel server2(*server_ctx);
  TlsChannel weak(*weak_ctx, "127.0.0.1");
  ASSERT_TRUE(weak.Start().ok());
  EXPECT_FALSE(Shuttle(weak, server2, &a, &b).ok());
  EXPECT_FALSE(server2.handshake_done());
}

TEST_F(TlsTest, OldProtocolVersionsAreRefused) {
  auto server_ctx = TlsContext::MakeServer(Server());
  auto client_ctx = TlsContext::MakeClient(Client());
  ASSERT_TRUE(server_ctx.ok() && client_ctx.ok());
  // A client that only speaks TLS 1.1 (BCP 195 forbids it).
  SSL_CTX_set_min_proto_version((*client_ctx)->ctx(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version((*client_ctx)->ctx(), TLS1_1_VERSION);
  SSL_CTX_set_security_level((*client_ctx)->ctx(), 0);
  TlsChannel server(*server_ctx);
  TlsChannel client(*client_ctx, "127.0.0.1");
  (void)client.Start();
  std::vector<uint8_t> a, b;
  Status s = Shuttle(client, server, &a, &b);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(server.handshake_done());
  EXPECT_NE(s.message().find("TLS handshake failed"), std::string::npos) << s.message();
}

TEST_F(TlsTest, ServerFromAnotherCaOrWrongNameIsRefused) {
  TlsSettings rogue = Server();
  rogue.certificate = F("impostor.crt");
  rogue.private_key = F("impostor.key");
  auto rogue_ctx = TlsContext::MakeServer(rogue);
  auto client_ctx = TlsContext::MakeClient(Client());
  ASSERT_TRUE(rogue_ctx.ok() && client_ctx.ok());
  {
    TlsChannel server(*rogue_ctx);
    TlsChannel client(*client_ctx, "127.0.0.1");
    ASSERT_TRUE(client.Start().ok());
    std::vector<uint8_t> a, b;
    Status s = Shuttle(client, server, &a, &b);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("peer certificate not accepted"), std::string::npos) << s.message();
  }
  auto server_ctx = TlsContext::MakeServer(Server());
  ASSERT_TRUE(server_ctx.ok());
  {
    TlsChannel server(*server_ctx);
    TlsChannel client(*client_ctx, "10.9.9.9");  // the certificate names 127.0.0.1
    ASSERT_TRUE(client.Start().ok());
    std::vector<uint8_t> a, b;
    Status s = Shuttle(client, server, &a, &b);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("IP address mismatch"), std::string::npos) << s.message();
  }
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  auto server_ctx = TlsContext::MakeServer(Server(/*mutual=*/true));
  ASSERT_TRUE(server_ctx.ok());
  auto anonymous = TlsContext::MakeClient(Client(false));
  auto with_cert = TlsContext::MakeClient(Client(true));
  ASSERT_TRUE(anonymous.ok() && with_cert.ok());
  {
    TlsChannel server(*server_ctx);
    TlsChannel client(*with_cert, "127.0.0.1");
    ASSERT_TRUE(client.Start().ok());
    std::vector<uint8_t> a, b;
    ASSERT_TRUE(Shuttle(client, server, &a, &b).ok());
    EXPECT_TRUE(server.handshake_done());
    EXPECT_NE(server.PeerSubject().find("CN=client"), std::string::npos) << server.PeerSubject();
  }
  {
    TlsChannel server(*server_ctx);
    TlsChannel client(*anonymous, "127.0.0.1");
    ASSERT_TRUE(client.Start().ok());
    std::vector<uint8_t> a, b;
    std::vector<uint8_t> ping = {1, 2, 3};
    ASSERT_TRUE(client.Send(ping).ok());
    Status s = Shuttle(client, server, &a, &b);
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(b.empty()) << "data reached the server without a client certificate";
  }
}

// The typed reason (tls_failure.h) tells certificates that do not fit,
// which only an admin can fix, from a link failure.
TEST_F(TlsTest, FailuresSayWhetherACertificateOrTheLinkIsAtFault) {
  auto client_ctx = TlsContext::MakeClient(Client());
  auto server_ctx = TlsContext::MakeServer(Server());
  ASSERT_TRUE(client_ctx.ok() && server_ctx.ok());
  // Runs a handshake to its first failure and returns the client's reason;
  // what the server sent last (an alert) is handed to the client first.
  auto client_failure = [&](std::shared_ptr<TlsContext> server_side, std::shared_ptr<TlsContext> client_side,
                            const std::string& host) {
    TlsChannel server(server_side);
    TlsChannel client(client_side, host);
    EXPECT_TRUE(client.Start().ok());
    std::vector<uint8_t> a, b;
    std::vector<uint8_t> ping = {1, 2, 3};
    EXPECT_TRUE(client.Send(ping).ok());
    Status s = Shuttle(client, server, &a, &b);
    EXPECT_FALSE(s.ok());
    if (!client.failure().failed()) {
      std::vector<uint8_t> alert;
      server.TakeOutput(&alert);
      EXPECT_FALSE(client.Receive(alert, &a).ok());
    }
    EXPECT_TRUE(b.empty()) << "data crossed a failed handshake";
    return client.failure();
  };

  TlsSettings rogue = Server();
  rogue.certificate = F("impostor.crt");
  rogue.private_key = F("impostor.key");
  auto rogue_ctx = TlsContext::MakeServer(rogue);
  ASSERT_TRUE(rogue_ctx.ok());
  TlsFailure f = client_failure(*rogue_ctx, *client_ctx, "127.0.0.1");
  EXPECT_EQ(f.kind, TlsFailure::Kind::kPeerNotTrusted) << TlsFailureKindName(f.kind) << " " << f.detail;
  EXPECT_TRUE(f.IsConfiguration());

  f = client_failure(*server_ctx, *client_ctx, "10.9.9.9");  // the certificate names 127.0.0.1
  EXPECT_EQ(f.kind, TlsFailure::Kind::kPeerName) << TlsFailureKindName(f.kind) << " " << f.detail;
  EXPECT_NE(f.detail.find("mismatch"), std::string::npos) << f.detail;
  f = client_failure(*server_ctx, *client_ctx, "pacs.example");  // ... and relais.example
  EXPECT_EQ(f.kind, TlsFailure::Kind::kPeerName) << TlsFailureKindName(f.kind) << " " << f.detail;
  EXPECT_TRUE(f.IsConfiguration());

  // Mutual TLS: our certificate from another CA, or none, is refused by the
  // server's alert.
  auto mutual_ctx = TlsContext::MakeServer(Server(/*mutual=*/true));
  TlsSettings stranger = Client();
  stranger.certificate = F("impostor.crt");
  stranger.private_key = F("impostor.key");
  auto stranger_ctx = TlsContext::MakeClient(stranger);
  ASSERT_TRUE(mutual_ctx.ok() && stranger_ctx.ok());
  f = client_failure(*mutual_ctx, *stranger_ctx, "127.0.0.1");
  EXPECT_EQ(f.kind, TlsFailure::Kind::kOurCertificateRefused) << TlsFailureKindName(f.kind) << " " << f.detail;
  EXPECT_NE(f.detail.find("TLS alert"), std::string::npos) << f.detail;
  f = client_failure(*mutual_ctx, *client_ctx, "127.0.0.1");
  EXPECT_EQ(f.kind, TlsFailure::Kind::kOurCertificateRefused) << TlsFailureKindName(f.kind) << " " << f.detail;
  EXPECT_TRUE(f.IsConfiguration());

  // Bytes that are not TLS: the link's trouble (or a peer without TLS), not
  // a certificate.
  TlsChannel client(*client_ctx, "127.0.0.1");
  ASSERT_TRUE(client.Start().ok());
  std::vector<uint8_t> plain;
  const std::vector<uint8_t> abort_pdu = {0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x00};
  EXPECT_FALSE(client.Receive(abort_pdu, &plain).ok());
  EXPECT_EQ(client.failure().kind, TlsFailure::Kind::kOther) << client.failure().detail;
  EXPECT_FALSE(client.failure().IsConfiguration());
  TlsChannel fresh(*client_ctx, "127.0.0.1");
  EXPECT_FALSE(fresh.failure().failed());
}

TEST_F(TlsTest, BadConfigurationIsExplained) {
  TlsSettings s = Server();
  s.certificate = F("missing.crt");
  auto r = TlsContext::MakeServer(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot load TLS certificate"), std::string::npos);
  s = Server();
  s.private_key = F("client.key");  // not the server certificate's key
  r = TlsContext::MakeServer(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not match"), std::string::npos) << r.status().message();
  s = Server();
  s.certificate.clear();
  s.private_key.clear();
  EXPECT_FALSE(TlsContext::MakeServer(s).ok());
  TlsSettings c = Client();
  c.ca.clear();
  r = TlsContext::MakeClient(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("[tls] ca"), std::string::npos);
  s = Server();
  s.min_version = "1.1";
  EXPECT_FALSE(TlsContext::MakeServer(s).ok());
}

TEST_F(TlsTest, HostileBytesGiveACleanError) {
  auto server_ctx = TlsContext::MakeServer(Server());
  ASSERT_TRUE(server_ctx.ok());
  std::mt19937 rng(11);
  // A DICOM A-ASSOCIATE-RQ in clear text on the TLS port, garbage, and a
  // TLS record header announcing 16 MiB.
  std::vector<std::vector<uint8_t>> inputs = {
      {0x01, 0x00, 0x00, 0x00, 0x00, 0xCD, 0x00, 0x01},
      {0x16, 0x03, 0x01, 0xFF, 0xFF, 0x01, 0xFF, 0xFF, 0xFF},
  };
  std::vector<uint8_t> noise(4096);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  inputs.push_back(noise);
  for (const auto& in : inputs) {
    TlsChannel server(*server_ctx);
    std::vector<uint8_t> plain;
    Status s = server.Receive(in, &plain);
    for (int i = 0; i < 3 && s.ok(); ++i) s = server.Receive(noise, &plain);
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(plain.empty());
    EXPECT_NE(s.message().find("TLS"), std::string::npos);
    EXPECT_FALSE(server.Receive(noise, &plain).ok()) << "a failed channel must stay failed";
  }
}

}  // namespace
}  // namespace relais::router
