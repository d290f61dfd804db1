// The admin HTTP API end to end (docs/admin-api.md): a real `relais serve`
// with an [admin] table and three tokens (viewer, operator, admin), driven
// with curl and with raw sockets. Every endpoint with each role allowed and
// refused, refusals in the audit trail; malformed requests (bad JSON, a
// 100 KB header, a 1 MB body, a slow client, connections closed mid-request)
// each get a clean answer or a close and relais stays healthy; retry, purge,
// pause, resume and reload really act on a storescp peer that is stopped
// then started; /metrics counts what storescu sent.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using nlohmann::json;

// Tokens and the SHA-256 of each (sha256sum of the token, no newline).
constexpr char kViewerToken[] = "viewer-9f2c1d7e5b3a";
constexpr char kOperatorToken[] = "operator-4b8e2a6c0d1f";
constexpr char kAdminToken[] = "admin-7d3f9b1e5c2a";

std::string Sha256(const std::string& s, const std::string& dir) {
  WriteFile(dir + "/tok", s);
  RunResult r = RunCommand({"sha256sum", dir + "/tok"}, 30);
  return r.output.substr(0, 64);
}

struct HttpResult {
  int status = 0;  // 0: no answer
  std::string body;
  std::string headers;
  json Json() const { return json::parse(body, nullptr, false); }
};

class AdminClient {
 public:
  AdminClient(uint16_t port, std::string dir) : port_(port), dir_(std::move(dir)) {}

  HttpResult Call(const std::string& method, const std::string& path, const std::string& token = "",
                  const std::string& body = "", bool send_body = false) {
    std::vector<std::string> argv = {"curl", "-s",           "-m", "30",  "-o", dir_ + "/body", "-D", dir_ + "/headers",
                                     "-w",   "%{http_code}", "-X", method};
    if (!token.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    if (send_body || !body.empty()) {
      WriteFile(dir_ + "/req", body);
      argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", "@" + dir_ + "/req"});
    }
    argv.push_back("http://127.0.0.1:" + std::to_string(port_) + path);
    WriteFile(dir_ + "/body", "");
    WriteFile(dir_ + "/headers", "");
    RunResult r = RunCommand(argv, 60);
    HttpResult out;
    out.status = std::atoi(r.output.c_str());
    out.body = ReadFile(dir_ + "/body");
    out.headers = ReadFile(dir_ + "/headers");
    return out;
  }

 private:
  uint16_t port_;
  std::string dir_;
};

// A raw TCP exchange: sends `chunks` with `gap_ms` between them, then
// reads until the peer closes or `read_ms` pass. `closed` tells whether the
// peer closed (EOF or reset).
struct RawResult {
  std::string response;
  bool closed = false;
  bool send_failed = false;
};

int Connect(uint16_t port) { return ConnectLoopback(port); }

RawResult Raw(uint16_t port, const std::vector<std::string>& chunks, int gap_ms, int read_ms,
              bool close_after_send = false) {
  RawResult out;
  int fd = Connect(port);
  if (fd < 0) return out;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i > 0 && gap_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    // Stop sending once the server has answered or closed.
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0) break;
    const std::string& c = chunks[i];
    size_t off = 0;
    while (off < c.size()) {
      ssize_t n = send(fd, c.data() + off, c.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        out.send_failed = true;
        break;
      }
      off += n;
    }
    if (out.send_failed) break;
  }
  if (close_after_send) {
    close(fd);
    return out;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(read_ms);
  char buf[65536];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      out.closed = true;
      break;
    }
    out.response.append(buf, n);
  }
  close(fd);
  return out;
}

int RawStatus(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::atoi(response.c_str() + 9);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

std::vector<std::string> QueueLs(const RelaisProcess& relais, bool dead) {
  std::vector<std::string> argv = {RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"};
  if (dead) argv.push_back("--dead");
  RunResult r = RunCommand(argv, 120);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> out;
  for (const std::string& l : Lines(r.output)) {
    if (!l.empty() && l[0] == '{') out.push_back(l);
  }
  return out;
}

std::string SmallCt() { return CorpusDir() + "/pydicom__77654033_CT2_17106.dcm"; }

// One relais with [admin] (three tokens), [audit] and rules forwarding
// everything to "archive" = a storescp peer (not started by this fixture).
class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"peer", "relais", "http", "copies"}) ASSERT_EQ(mkdir((tmp_ / d).c_str(), 0755), 0);
    StorescpOptions opts;
    opts.ae_title = "ARCHIVE";
    peer_ = std::make_unique<StorescpPeer>(tmp_ / "peer", opts);
    rules_path_ = tmp_ / "rules.toml";
    WriteRules(true);
    admin_port_ = FreePort();
    RelaisOptions options;
    options.extra =
        "\n[delivery]\ndown_after_failures = 2\nconnect_timeout_s = 2\nidle_release_s = 1\n"
        "\n[rules]\npath = \"" +
        rules_path_ + "\"\n\n[audit]\npath = \"" + (tmp_ / "audit.jsonl") +
        "\"\n\n[admin]\nhost = \"127.0.0.1\"\nport = " + std::to_string(admin_port_) +
        "\n\n[[admin.token]]\nname = \"nurse\"\nrole = \"viewer\"\nsha256 = \"" + Sha256(kViewerToken, tmp_.path()) +
        "\"\n\n[[admin.token]]\nname = \"tech\"\nrole = \"operator\"\nsha256 = \"" +
        Sha256(kOperatorToken, tmp_.path()) + "\"\n\n[[admin.token]]\nname = \"boss\"\nrole = \"admin\"\nsha256 = \"" +
        Sha256(kAdminToken, tmp_.path()) + "\"\n";
    relais_ = std::make_unique<RelaisProcess>(tmp_ / "relais", options);
    ASSERT_TRUE(relais_->Start()) << relais_->Log();
    ASSERT_TRUE(WaitForPort(admin_port_, 10000)) << relais_->Log();
    http_ = std::make_unique<AdminClient>(admin_port_, tmp_ / "http");
  }

  void TearDown() override {
    if (relais_ && relais_->running()) {
      EXPECT_EQ(relais_->Terminate(), 0) << "relais did not stop cleanly:\n" << relais_->Log();
      // A clean stop closes every handle: uv_loop_close succeeds.
      EXPECT_EQ(relais_->Log().find("loop-close-failed"), std::string::npos) << relais_->Log();
    }
  }

  void WriteRules(bool valid) {
    std::string dest = "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer_->port()) +
                       "\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n\n";
    WriteFile(rules_path_, dest + (valid ? "[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n"
                                         : "[[rule]]\nname = \"all\"\nforward = [\"nowhere\"]\n"));
  }

  void ExpectHealthy() {
    HttpResult h = http_->Call("GET", "/healthz");
    EXPECT_EQ(h.status, 200) << h.body << relais_->Log();
    EXPECT_EQ(h.Json(), json({{"status", "ok"}}));
    EXPECT_TRUE(relais_->running());
  }

  std::vector<json> AuditAdmin() {
    std::vector<json> out;
    for (const std::string& l : Lines(ReadFile(tmp_ / "audit.jsonl"))) {
      json j = json::parse(l, nullptr, false);
      if (!j.is_discarded() && j.value("kind", "") == "admin") out.push_back(j);
    }
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<StorescpPeer> peer_;
  std::string rules_path_;
  uint16_t admin_port_ = 0;
  std::unique_ptr<RelaisProcess> relais_;
  std::unique_ptr<AdminClient> http_;
};

TEST_F(AdminTest, EveryEndpointWithEachRoleAllowedAndRefused) {
  // Probes and the page: no token.
  EXPECT_EQ(http_->Call("GET", "/healthz").status, 200);
  HttpResult r = http_->Call("GET", "/readyz");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["ready"], true) << r.body;
  r = http_->Call("GET", "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("text/html"), std::string::npos) << r.headers;

  struct Case {
    const char* method;
    const char* path;
    int needs;  // 1 viewer, 2 operator, 3 admin
    const char* body;
  };
  const Case cases[] = {
      {"GET", "/api/status", 1, ""},
      {"GET", "/api/destinations", 1, ""},
      {"GET", "/api/destinations/archive", 1, ""},
      {"GET", "/api/queue", 1, ""},
      {"GET", "/api/dead", 1, ""},
      {"GET", "/api/failures", 1, ""},
      {"GET", "/api/throughput", 1, ""},
      {"GET", "/metrics", 1, ""},
      {"POST", "/api/queue/retry", 2, R"({"dead":true})"},
      {"POST", "/api/destinations/archive/pause", 2, "{}"},
      {"POST", "/api/destinations/archive/resume", 2, ""},
      {"POST", "/api/rules/reload", 2, ""},
      {"POST", "/api/queue/purge", 3, R"({"dead":true})"},
  };
  const std::pair<const char*, int> tokens[] = {
      {"", 0}, {"wrong-token", 0}, {kViewerToken, 1}, {kOperatorToken, 2}, {kAdminToken, 3}};
  int refused = 0;
  for (const Case& c : cases) {
    for (const auto& [token, level] : tokens) {
      SCOPED_TRACE(std::string(c.method) + " " + c.path + " token=" + token);
      r = http_->Call(c.method, c.path, token, c.body, c.method == std::string("POST"));
      const bool text_page = r.status == 200 && c.path == std::string("/metrics");
      if (!text_page) {
        ASSERT_TRUE(r.Json().is_object()) << r.status << " " << r.body.substr(0, 200);
        EXPECT_NE(r.headers.find("application/json"), std::string::npos) << r.headers;
      }
      if (level == 0) {
        EXPECT_EQ(r.status, 401) << r.body;
        EXPECT_NE(r.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << r.headers;
        ++refused;
      } else if (level < c.needs) {
        EXPECT_EQ(r.status, 403) << r.body;
        ++refused;
      } else {
        EXPECT_EQ(r.status, 200) << r.body;
      }
    }
  }
  // Shapes over HTTP.
  json st = http_->Call("GET", "/api/status", kViewerToken).Json();
  EXPECT_EQ(st["ae_title"], "RELAIS");
  EXPECT_EQ(st["rules"]["loaded"], true);
  EXPECT_EQ(st["rules"]["destinations"], 1);
  EXPECT_EQ(st["intake"], "open");
  EXPECT_GT(st["store"]["capacity_bytes"].get<uint64_t>(), 0u);
  json d = http_->Call("GET", "/api/destinations", kViewerToken).Json();
  ASSERT_EQ(d["destinations"].size(), 1u);
  EXPECT_EQ(d["destinations"][0]["name"], "archive");
  EXPECT_EQ(d["destinations"][0]["ae_title"], "ARCHIVE");
  EXPECT_EQ(d["destinations"][0]["configured"], true);
  // Adaptive concurrency by default: its target and the reason for it.
  const json& cc = d["destinations"][0]["concurrency"];
  EXPECT_EQ(cc["mode"], "adaptive") << cc.dump();
  EXPECT_GE(cc["target"].get<int>(), 1) << cc.dump();
  EXPECT_FALSE(cc["reason"].get<std::string>().empty()) << cc.dump();
  EXPECT_EQ(cc["max_associations"], 64) << cc.dump();
  // No bandwidth_limit nor bandwidth windows: unlimited.
  const json& bw = d["destinations"][0]["bandwidth"];
  EXPECT_EQ(bw["limit_bps"], 0) << bw.dump();
  EXPECT_EQ(bw["windows"], 0) << bw.dump();
  EXPECT_EQ(http_->Call("GET", "/api/destinations/nowhere", kViewerToken).status, 404);
  EXPECT_EQ(http_->Call("GET", "/api/objects/1.2.3.4", kViewerToken).status, 404);
  r = http_->Call("DELETE", "/api/status", kAdminToken);
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.headers.find("Allow: GET"), std::string::npos) << r.headers;

  // Every refusal is in the audit trail, with the token name when known:
  // a record of its own, or counted in the summary of its repeats (written
  // at the latest when relais stops); every action with its token.
  EXPECT_EQ(relais_->Terminate(), 0) << relais_->Log();
  std::vector<json> audit = AuditAdmin();
  int audited_refusals = 0, forbidden_named = 0, actions_ok = 0;
  for (const json& a : audit) {
    if (a.value("result", "") == "refused" && (a.value("status", "") == "401" || a.value("status", "") == "403")) {
      const int n = a.contains("repeated") ? std::stoi(a.value("repeated", "0")) : 1;
      audited_refusals += n;
      if (a.contains("repeated")) {
        EXPECT_EQ(a.value("address", ""), "127.0.0.1") << a.dump();
      } else {
        EXPECT_EQ(a.value("client", "").rfind("127.0.0.1:", 0), 0u) << a.dump();
      }
      if (a.value("status", "") == "403") forbidden_named += a.value("token", "").empty() ? 0 : n;
    }
    if (a.value("result", "") == "ok") {
      ++actions_ok;
      EXPECT_TRUE(a.value("token", "") == "tech" || a.value("token", "") == "boss") << a.dump();
    }
  }
  EXPECT_EQ(audited_refusals, refused);
  EXPECT_EQ(forbidden_named, 4 + 2);  // the viewer on 4 operator actions; viewer and operator on purge
  EXPECT_EQ(actions_ok, 4 * 2 + 1);   // operator actions by tech and boss, purge by boss
  // One log line per request.
  EXPECT_NE(relais_->Log().find("event=admin-request method=GET path=\"/api/status\" status=200 token=\"nurse\""),
            std::string::npos);
}

TEST_F(AdminTest, MalformedRequestsGetACleanAnswerOrCloseAndRelaisStaysHealthy) {
  // Bad JSON bodies.
  for (const char* b : {"{", "not json", "[1,2]", "{\"dead\":\"yes\"}", "{\"dead\":true,\"x\":1}"}) {
    HttpResult r = http_->Call("POST", "/api/queue/retry", kOperatorToken, b);
    EXPECT_EQ(r.status, 400) << b << " " << r.body;
    EXPECT_TRUE(r.Json().contains("error")) << r.body;
  }
  // A 100 KB header: under h2o's request limit (H2O_MAX_REQLEN, 8 KiB +
  // 4 KiB per header for 100 headers, about 408 KB): a clean answer.
  std::string big = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100 * 1024, 'a') + "\r\n\r\n";
  RawResult rr = Raw(admin_port_, {big}, 0, 5000);
  EXPECT_TRUE(RawStatus(rr.response) == 200 || RawStatus(rr.response) == 400 || RawStatus(rr.response) == 431 ||
              rr.closed)
      << rr.response.substr(0, 200);
  ExpectHealthy();
  // A 1 MB header: over it, refused (400/431) or closed, never 200.
  big = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(1024 * 1024, 'a') + "\r\n\r\n";
  rr = Raw(admin_port_, {big}, 0, 5000);
  EXPECT_TRUE(rr.closed || rr.send_failed || RawStatus(rr.response) == 400 || RawStatus(rr.response) == 431)
      << rr.response.substr(0, 200);
  EXPECT_NE(RawStatus(rr.response), 200);
  ExpectHealthy();
  // A 1 MB body: 413 (or closed) without buffering it all.
  std::string head = "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     std::string(kOperatorToken) + "\r\nContent-Length: 1048576\r\n\r\n";
  rr = Raw(admin_port_, {head, std::string(1 << 20, '{')}, 0, 5000);
  EXPECT_TRUE(rr.closed || RawStatus(rr.response) == 413) << rr.response.substr(0, 200);
  if (RawStatus(rr.response) != 0) {
    EXPECT_EQ(RawStatus(rr.response), 413) << rr.response.substr(0, 200);
  }
  ExpectHealthy();
  // Same with curl (chunked upload of 1 MB).
  HttpResult r = http_->Call("POST", "/api/queue/retry", kOperatorToken, std::string(1 << 20, ' '));
  EXPECT_TRUE(r.status == 413 || r.status == 0) << r.status;
  ExpectHealthy();
  // Connections closed mid-request: in the headers, and in the body.
  Raw(admin_port_, {"GET /api/sta"}, 0, 0, /*close_after_send=*/true);
  Raw(admin_port_, {head, std::string(1000, '{')}, 0, 0, /*close_after_send=*/true);
  std::string small_head = "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                           std::string(kOperatorToken) + "\r\nContent-Length: 100\r\n\r\n";
  Raw(admin_port_, {small_head, "{\"dead\":"}, 0, 0, /*close_after_send=*/true);
  ExpectHealthy();
  // Not HTTP at all.
  rr = Raw(admin_port_, {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + std::string(500, '\0')}, 0,
           3000);
  EXPECT_TRUE(rr.closed || RawStatus(rr.response) == 400) << rr.response.substr(0, 100);
  ExpectHealthy();
  // A slow client, one byte per second: the loop keeps serving others
  // meanwhile, and h2o cuts it off after its request timeout (10 s).
  std::string slow_req =
      "GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kViewerToken) + "\r\n\r\n";
  std::vector<std::string> bytes;
  for (char ch : slow_req.substr(0, 16)) bytes.push_back(std::string(1, ch));
  RawResult slow;
  std::thread t([&] { slow = Raw(admin_port_, bytes, 1000, 3000); });
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto t0 = std::chrono::steady_clock::now();
  ExpectHealthy();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  t.join();
  EXPECT_TRUE(slow.closed || slow.send_failed || RawStatus(slow.response) >= 400)
      << "a client 16 s into a request was not cut off: " << slow.response.substr(0, 100);
  ExpectHealthy();
}

TEST_F(AdminTest, PauseRetryPurgeResumeAndReloadReallyAct) {
  // The peer is down: objects queue up.
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), tmp_ / "copies", 4, &uids);
  ASSERT_EQ(files.size(), 4u);
  ASSERT_EQ(StorescuAcked(relais_->port(), {files[0], files[1], files[2]}).size(), 3u) << relais_->Log();
  EXPECT_EQ(QueueLs(*relais_, false).size(), 3u);
  json q = http_->Call("GET", "/api/queue", kViewerToken).Json();
  ASSERT_EQ(q["rows"].size(), 3u) << q.dump();
  EXPECT_EQ(q["rows"][0]["destination"], "archive");
  json obj = http_->Call("GET", "/api/objects/" + uids[0], kViewerToken).Json();
  EXPECT_EQ(obj["object"]["sop_instance_uid"], uids[0]);
  EXPECT_EQ(obj["queued"].size(), 1u);

  // Pause; start the peer; nothing is sent while paused.
  HttpResult r = http_->Call("POST", "/api/destinations/archive/pause", kOperatorToken);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json(), json({{"destination", "archive"}, {"paused", true}}));
  json d = http_->Call("GET", "/api/destinations/archive", kViewerToken).Json();
  EXPECT_EQ(d["paused"], true);
  EXPECT_EQ(d["state"], "paused");
  ASSERT_TRUE(peer_->Start()) << peer_->Log();
  // Retry makes the rows due now; still paused, so still nothing sent.
  r = http_->Call("POST", "/api/queue/retry", kOperatorToken, "{\"uids\":[\"" + uids[0] + "\",\"" + uids[1] + "\"]}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["requeued"], 2);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(peer_->CountFiles(), 0u);
  EXPECT_EQ(QueueLs(*relais_, false).size(), 3u);

  // Purge one (admin only), then resume: the two others arrive.
  EXPECT_EQ(http_->Call("POST", "/api/queue/purge", kOperatorToken, "{\"uids\":[\"" + uids[2] + "\"]}").status, 403);
  r = http_->Call("POST", "/api/queue/purge", kAdminToken, "{\"uids\":[\"" + uids[2] + "\"]}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["purged"], 1);
  EXPECT_EQ(QueueLs(*relais_, false).size(), 2u);
  r = http_->Call("POST", "/api/destinations/archive/resume", kOperatorToken, "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["paused"], false);
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && (peer_->CountFiles() < 2 || !QueueLs(*relais_, false).empty()))
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_EQ(peer_->CountFiles(), 2u) << relais_->Log();
  EXPECT_TRUE(QueueLs(*relais_, false).empty());
  auto received = peer_->Received();
  EXPECT_EQ(received.count(uids[0]), 1u);
  EXPECT_EQ(received.count(uids[1]), 1u);
  EXPECT_EQ(received.count(uids[2]), 0u);

  // Reload: broken rules are refused with file:line:col and the old ones
  // stay; fixed rules load.
  WriteRules(false);
  r = http_->Call("POST", "/api/rules/reload", kOperatorToken);
  EXPECT_EQ(r.status, 400) << r.body;
  ASSERT_TRUE(r.Json()["errors"].is_array()) << r.body;
  ASSERT_FALSE(r.Json()["errors"].empty()) << r.body;
  EXPECT_NE(r.Json()["errors"][0].get<std::string>().find("rules.toml:"), std::string::npos) << r.body;
  EXPECT_EQ(http_->Call("GET", "/api/status", kViewerToken).Json()["rules"]["loaded"], true);
  WriteRules(true);
  r = http_->Call("POST", "/api/rules/reload", kOperatorToken, "{}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["reloaded"], true);
  EXPECT_EQ(r.Json()["destinations"], 1);
  // Still routing after the reload.
  ASSERT_EQ(StorescuAcked(relais_->port(), {files[3]}).size(), 1u);
  deadline = NowMs() + 60000;
  while (NowMs() < deadline && peer_->CountFiles() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_EQ(peer_->CountFiles(), 3u) << relais_->Log();
  ExpectHealthy();
}

TEST_F(AdminTest, MetricsCountWhatStorescuSent) {
  constexpr int kN = 5;
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), tmp_ / "copies", kN, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kN));
  uint64_t bytes = 0;
  for (const std::string& f : files) {
    std::string ds;
    ASSERT_TRUE(DatasetAfterMeta(ReadFile(f), &ds)) << f;
    bytes += ds.size();
  }
  ASSERT_EQ(StorescuAcked(relais_->port(), files).size(), static_cast<size_t>(kN)) << relais_->Log();
  HttpResult r = http_->Call("GET", "/metrics", kViewerToken);
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("text/plain; version=0.0.4"), std::string::npos) << r.headers;
  auto sample = [&](const std::string& name) -> std::string {
    for (const std::string& l : Lines(r.body)) {
      if (l.rfind(name + " ", 0) == 0 || l.rfind(name + "{", 0) == 0) return l.substr(l.rfind(' ') + 1);
    }
    return "";
  };
  EXPECT_EQ(sample("relais_objects_received_total"), std::to_string(kN)) << r.body.substr(0, 2000);
  EXPECT_EQ(sample("relais_received_bytes_total"), std::to_string(bytes)) << r.body.substr(0, 2000);
  EXPECT_EQ(sample("relais_destination_bandwidth_limit_bytes_per_second"), "0") << r.body.substr(0, 2000);
  json st = http_->Call("GET", "/api/status", kViewerToken).Json();
  EXPECT_EQ(st["objects_received"], kN);
  EXPECT_EQ(st["bytes_received"], bytes);
  json tp = http_->Call("GET", "/api/throughput", kViewerToken).Json();
  ASSERT_EQ(tp["minutes"].size(), 60u);
  uint64_t received = 0;
  for (const json& m : tp["minutes"]) received += m["received"].get<uint64_t>();
  EXPECT_EQ(received, static_cast<uint64_t>(kN));
}

TEST(AdminTokenCommandTest, PrintsARandomTokenAndItsSha256Lines) {
  TempDir tmp;
  RunResult a = RunCommand({RelaisBinary(), "admin", "token", "night-nurse", "--role", "operator"}, 30);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = RunCommand({RelaisBinary(), "admin", "token", "night-nurse"}, 30);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  auto token_of = [](const std::string& out) {
    size_t p = out.find("token: ");
    return p == std::string::npos ? std::string() : out.substr(p + 7, out.find('\n', p) - p - 7);
  };
  const std::string ta = token_of(a.output), tb = token_of(b.output);
  // 32 random bytes in base64url without padding: 43 characters.
  ASSERT_EQ(ta.size(), 43u) << a.output;
  EXPECT_EQ(ta.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_NE(ta, tb);
  EXPECT_NE(a.output.find("[[admin.token]]\nname = \"night-nurse\"\nrole = \"operator\"\nsha256 = \"" +
                          Sha256(ta, tmp.path()) + "\"\n"),
            std::string::npos)
      << a.output;
  EXPECT_NE(b.output.find("role = \"viewer\""), std::string::npos) << b.output;
  EXPECT_NE(RunCommand({RelaisBinary(), "admin", "token", "x", "--role", "root"}, 30).exit_code, 0);
  EXPECT_NE(RunCommand({RelaisBinary(), "admin", "token"}, 30).exit_code, 0);
}

}  // namespace
}  // namespace relais::itest
