// The dashboard end to end (issue 5): a real `relais serve` with an [admin]
// table and a viewer token, two destinations (a storescp that is up and
// accepts only CT, and one where nothing listens), and traffic from
// storescu: CTs reach the peer, the MRs become dead letters there (context
// rejected), everything waits for the destination that is down. Headless
// Chromium then loads the page served at GET / with `/#token=...`; the
// numbers in its DOM (data-test / data-value attributes, see
// router/operate/dashboard.html) must be those of the JSON API read at the same
// moment. A screenshot is kept as an artefact:
// BUILD/test-artifacts/dashboard.png.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kChromium[] = "/usr/bin/chromium";

std::string RandomHex(size_t bytes) {
  std::random_device rd;
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += kHex[v >> 4];
    out += kHex[v & 15];
  }
  return out;
}

// SHA-256 of `text` as 64 lowercase hex digits, from sha256sum; "" on error.
std::string Sha256Hex(const TempDir& tmp, const std::string& text) {
  const std::string path = tmp / "token.txt";
  WriteFile(path, text);
  RunResult r = RunCommand({"sha256sum", path}, 30);
  if (r.exit_code != 0 || r.output.size() < 64) return "";
  return r.output.substr(0, 64);
}

// GET http://127.0.0.1:port/path with curl; the body, and the HTTP status in
// *code (0 when nothing answered).
std::string HttpGet(const TempDir& tmp, uint16_t port, const std::string& path, const std::string& token, int* code) {
  const std::string out = tmp / "curl.out";
  std::remove(out.c_str());
  std::vector<std::string> argv = {"curl", "-s", "--max-time", "10", "-o", out, "-w", "%{http_code}"};
  if (!token.empty()) {
    argv.push_back("-H");
    argv.push_back("Authorization: Bearer " + token);
  }
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + path);
  RunResult r = RunCommand(argv, 30);
  *code = std::atoi(r.output.c_str());
  struct stat st;
  return stat(out.c_str(), &st) == 0 ? ReadFile(out) : "";
}

json GetJson(const TempDir& tmp, uint16_t port, const std::string& path, const std::string& token) {
  int code = 0;
  std::string body = HttpGet(tmp, port, path, token, &code);
  if (code != 200) return json();
  return json::parse(body, nullptr, /*allow_exceptions=*/false);
}

// One headless Chromium run, stdout to `out`, stderr (noise) to `err`; at
// most 90 s (timeout kills its whole process group).
RunResult Chromium(const TempDir& tmp, const std::string& profile, const std::vector<std::string>& extra,
                   const std::string& url, const std::string& out) {
  mkdir(profile.c_str(), 0700);
  std::string cmd = "exec timeout -k 5 90 " + std::string(kChromium) +
                    " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                    " --disable-background-networking --disable-component-update --disable-sync"
                    " --user-data-dir='" +
                    profile + "' --virtual-time-budget=10000";
  for (const std::string& e : extra) cmd += " '" + e + "'";
  cmd += " '" + url + "' > '" + out + "' 2> '" + tmp / "chromium.err" + "'";
  return RunCommand({"sh", "-c", cmd}, 120, {{"HOME", tmp.path()}});
}

// The attribute `attr` of the tag that contains position `pos` of `html`
// (serialized DOM: attributes in double quotes); nullopt if absent.
std::optional<std::string> AttrOfTagAt(const std::string& html, size_t pos, const std::string& attr) {
  size_t open = html.rfind('<', pos);
  size_t close = html.find('>', pos);
  if (open == std::string::npos || close == std::string::npos) return std::nullopt;
  const std::string tag = html.substr(open, close - open);
  const std::string key = " " + attr + "=\"";
  size_t k = tag.find(key);
  if (k == std::string::npos) return std::nullopt;
  size_t v = k + key.size();
  size_t e = tag.find('"', v);
  if (e == std::string::npos) return std::nullopt;
  return tag.substr(v, e - v);
}

// data-value of the element data-test="test" in html[from, to); nullopt if none.
std::optional<std::string> TestValue(const std::string& html, const std::string& test, size_t from = 0,
                                     size_t to = std::string::npos) {
  size_t p = html.find("data-test=\"" + test + "\"", from);
  if (p == std::string::npos || (to != std::string::npos && p >= to)) return std::nullopt;
  return AttrOfTagAt(html, p, "data-value");
}

// [begin, end) of the card data-dest="name": up to the next card or the
// end of the destinations' section.
std::pair<size_t, size_t> DestCard(const std::string& html, const std::string& name) {
  size_t b = html.find("data-dest=\"" + name + "\"");
  if (b == std::string::npos) return {std::string::npos, std::string::npos};
  size_t e = html.find("data-dest=\"", b + 1);
  size_t section_end = html.find("</section>", b);
  if (e == std::string::npos || section_end < e) e = section_end;
  return {b, e};
}

std::string Str(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

// The PNG's width and height from its IHDR chunk (PS: PNG spec 5.2, 11.2.2);
// false if `data` does not start like a PNG.
bool PngSize(const std::string& data, uint32_t* w, uint32_t* h) {
  static const char kSig[] = "\x89PNG\r\n\x1a\n";
  if (data.size() < 33 || data.compare(0, 8, kSig, 8) != 0 || data.compare(12, 4, "IHDR") != 0) return false;
  auto be32 = [&](size_t o) {
    return (uint32_t(uint8_t(data[o])) << 24) | (uint32_t(uint8_t(data[o + 1])) << 16) |
           (uint32_t(uint8_t(data[o + 2])) << 8) | uint32_t(uint8_t(data[o + 3]));
  };
  *w = be32(16);
  *h = be32(20);
  return data.compare(data.size() - 8, 4, "IEND") == 0;
}

TEST(DashboardTest, PageShowsWhatTheApiSaysAndRendersAScreenshot) {
  struct stat st;
  if (stat(kChromium, &st) != 0) GTEST_SKIP() << kChromium << " is not installed (scripts/setup.sh installs it)";
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies", "copies/mr"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);

  StorescpOptions popts;
  popts.ae_title = "UPPEER";
  popts.only_sop_classes = {kCtImageStorage};  // MR: context rejected, dead letter
  StorescpPeer peer(tmp / "peer", popts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  const uint16_t down_port = FreePort();  // nothing listens there
  const uint16_t admin_port = FreePort();

  const std::string token = RandomHex(24);
  const std::string sha = Sha256Hex(tmp, token);
  ASSERT_EQ(sha.size(), 64u);

  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"UP\"\nae_title = \"UPPEER\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer.port()) +
                       "\n\n[[destination]]\nname = \"DOWN\"\nae_title = \"DOWNPEER\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(down_port) +
                       "\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n\n"
                       "[[rule]]\nname = \"all\"\nforward = [\"UP\", \"DOWN\"]\n");
  RelaisOptions options;
  options.extra =
      "\n[delivery]\ndown_after_failures = 2\nconnect_timeout_s = 2\nidle_release_s = 1\n"
      "\n[rules]\npath = \"" +
      rules +
      "\"\n"
      "\n[alerts]\ndestination_down = \"1s\"\n"
      "\n[admin]\nhost = \"127.0.0.1\"\nport = " +
      std::to_string(admin_port) +
      "\n"
      "\n[[admin.token]]\nname = \"night-viewer\"\nrole = \"viewer\"\nsha256 = \"" +
      sha + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  ASSERT_TRUE(WaitForPort(admin_port, 10000)) << relais.Log();

  // The page is the compiled-in router/operate/dashboard.html, served without a token.
  int code = 0;
  std::string page = HttpGet(tmp, admin_port, "/", "", &code);
  ASSERT_EQ(code, 200) << "relais " << (relais.running() ? "is running" : "exited") << "\n" << relais.Log();
  ASSERT_TRUE(relais.running()) << "a closed admin connection must not stop relais\n" << relais.Log();
  const std::string source = ReadFile(std::string(RELAIS_SOURCE_DIR) + "/router/operate/dashboard.html");
  EXPECT_TRUE(page == source) << "GET / (" << page.size() << " bytes) is not router/operate/dashboard.html ("
                              << source.size() << " bytes): is the binary older than the page?";
  // Self-contained: the only URL in it is the SVG namespace; nothing is loaded.
  for (size_t p = page.find("http"); p != std::string::npos; p = page.find("http", p + 1)) {
    if (page.compare(p, 4, "http") == 0 &&
        (page.compare(p, 7, "http://") == 0 || page.compare(p, 8, "https://") == 0)) {
      EXPECT_EQ(page.compare(p, 26, "http://www.w3.org/2000/svg"), 0) << page.substr(p, 60);
    }
  }
  for (const char* ext : {"<script src", "<link", "@import", "url(", "<img", "<iframe"}) {
    EXPECT_EQ(page.find(ext), std::string::npos) << ext;
  }
  // The API wants the token.
  HttpGet(tmp, admin_port, "/api/status", "", &code);
  EXPECT_EQ(code, 401);

  // Traffic: 3 CT (delivered to UP) and 2 MR (dead letters at UP); all 5 wait for DOWN.
  std::vector<std::string> ct_uids, mr_uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__77654033_CT2_17106.dcm", tmp / "copies", 3, &ct_uids);
  std::vector<std::string> mr =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__MR_small.dcm", tmp / "copies/mr", 2, &mr_uids);
  ASSERT_EQ(files.size(), 3u);
  ASSERT_EQ(mr.size(), 2u);
  files.insert(files.end(), mr.begin(), mr.end());
  std::vector<std::string> argv = {
      "storescu", "-aet", "MODALITY", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult sent = RunCommand(argv, 120);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;

  // Wait until the numbers settle: UP done (3 sent, 2 dead), DOWN down with 5 queued.
  auto find_dest = [](const json& dests, const std::string& name) -> json {
    if (!dests.is_object() || !dests["destinations"].is_array()) return json();
    for (const json& d : dests["destinations"]) {
      if (d.value("name", "") == name) return d;
    }
    return json();
  };
  json status, dests;
  int64_t deadline = NowMs() + 90000;
  while (NowMs() < deadline) {
    status = GetJson(tmp, admin_port, "/api/status", token);
    dests = GetJson(tmp, admin_port, "/api/destinations", token);
    json up = find_dest(dests, "UP"), down = find_dest(dests, "DOWN");
    if (status.is_object() && status.value("objects_received", 0) == 5 && up.is_object() && down.is_object() &&
        up.value("queued", -1) == 0 && up.value("dead", -1) == 2 && up.value("sent", -1) == 3 &&
        down.value("state", "") == "down" && down.value("queued", -1) == 5 && status["alerts"].is_array() &&
        !status["alerts"].empty()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ASSERT_EQ(find_dest(dests, "DOWN").value("state", ""), "down") << dests.dump() << "\n" << relais.Log();
  ASSERT_EQ(find_dest(dests, "UP").value("dead", -1), 2) << dests.dump() << "\n" << relais.Log();
  // [alerts] destination_down = "1s": raised at the next evaluation (every 10 s).
  ASSERT_FALSE(status["alerts"].empty()) << status.dump();

  // The page, read by Chromium between two reads of the API.
  const std::string url = "http://127.0.0.1:" + std::to_string(admin_port) + "/#token=" + token;
  std::string dom;
  json before_status, before_dests, after_status, after_dests;
  for (int attempt = 0; attempt < 3; ++attempt) {
    before_status = GetJson(tmp, admin_port, "/api/status", token);
    before_dests = GetJson(tmp, admin_port, "/api/destinations", token);
    RunResult r = Chromium(tmp, tmp / ("profile" + std::to_string(attempt)), {"--dump-dom"}, url, tmp / "dom.html");
    after_status = GetJson(tmp, admin_port, "/api/status", token);
    after_dests = GetJson(tmp, admin_port, "/api/destinations", token);
    dom = ReadFile(tmp / "dom.html");
    if (r.exit_code == 0 && dom.find("data-ready=\"1\"") != std::string::npos) break;
    ADD_FAILURE() << "attempt " << attempt << ": exit " << r.exit_code << ", no data in the page:\n"
                  << dom.substr(0, 2000) << "\n"
                  << ReadFile(tmp / "chromium.err").substr(0, 2000);
  }
  ASSERT_NE(dom.find("data-ready=\"1\""), std::string::npos);
  // The token left the address bar and was not written into the page.
  EXPECT_EQ(dom.find(token), std::string::npos);

  // A DOM value must equal the API's, read just before or just after.
  auto expect_same = [&](const std::string& what, const std::optional<std::string>& shown, const json& before,
                         const json& after) {
    ASSERT_TRUE(shown.has_value()) << what << " is not on the page";
    EXPECT_TRUE(*shown == Str(before) || *shown == Str(after))
        << what << ": page shows " << *shown << ", API said " << Str(before) << " then " << Str(after);
  };
  for (const std::string name : {"UP", "DOWN"}) {
    auto [b, e] = DestCard(dom, name);
    ASSERT_NE(b, std::string::npos) << name << " has no card";
    const json db = find_dest(before_dests, name), da = find_dest(after_dests, name);
    for (const char* field : {"state", "queued", "dead", "sent"}) {
      expect_same(name + " " + field, TestValue(dom, std::string("dest-") + field, b, e), db[field], da[field]);
    }
  }
  expect_same("objects received", TestValue(dom, "objects-received"), before_status["objects_received"],
              after_status["objects_received"]);
  expect_same("storage used", TestValue(dom, "storage-used"), before_status["store"]["used_bytes"],
              after_status["store"]["used_bytes"]);
  expect_same("intake", TestValue(dom, "intake"), before_status["intake"], after_status["intake"]);
  // What the numbers were expected to be (non-zero, so the comparison means something).
  EXPECT_EQ(TestValue(dom, "dest-queued", DestCard(dom, "DOWN").first), "5");
  EXPECT_EQ(TestValue(dom, "dest-dead", DestCard(dom, "UP").first), "2");
  EXPECT_EQ(TestValue(dom, "objects-received"), "5");
  EXPECT_NE(TestValue(dom, "storage-used"), "0");
  // Plain words for the destination that is down, its failures and its alert.
  {
    auto [b, e] = DestCard(dom, "DOWN");
    EXPECT_THAT(dom.substr(b, e - b), HasSubstr("Down since ")) << dom.substr(b, e - b);
  }
  EXPECT_NE(dom.find("data-failure-dest=\"DOWN\""), std::string::npos);
  EXPECT_NE(dom.find("data-failure-dest=\"UP\""), std::string::npos);
  EXPECT_THAT(dom, HasSubstr("presentation context rejected"));
  expect_same("alerts", TestValue(dom, "alerts-count"), before_status["alerts"].size(), after_status["alerts"].size());
  EXPECT_NE(dom.find("data-kind=\"destination-down\" data-subject=\"DOWN\""), std::string::npos);
  // The chart covers the traffic of the last hour: 5 received.
  EXPECT_EQ(TestValue(dom, "throughput-received"), "5");

  // The screenshot, kept in the build tree.
  // BUILD/router/relais -> BUILD/test-artifacts.
  std::string build_dir = RelaisBinary();
  for (int i = 0; i < 2; ++i) build_dir = build_dir.substr(0, build_dir.rfind('/'));
  const std::string artifacts = build_dir + "/test-artifacts";
  mkdir(artifacts.c_str(), 0755);
  const std::string png = artifacts + "/dashboard.png";
  std::remove(png.c_str());
  RunResult shot =
      Chromium(tmp, tmp / "profile-shot", {"--screenshot=" + png, "--window-size=1280,900"}, url, tmp / "shot.out");
  EXPECT_EQ(shot.exit_code, 0) << ReadFile(tmp / "chromium.err").substr(0, 2000);
  uint32_t w = 0, h = 0;
  ASSERT_TRUE(PngSize(ReadFile(png), &w, &h)) << png << " is not a PNG";
  EXPECT_EQ(w, 1280u);
  EXPECT_EQ(h, 900u);
  std::printf("dashboard screenshot: %s\n", png.c_str());

  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
