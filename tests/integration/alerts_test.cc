// Alerts end to end ([alerts], router/operate/alerts.h): `relais serve` with a
// destination that is down posts a "destination-down" alert to a real HTTP
// receiver (a python3 http.server started by the test) and runs a real
// command (a shell script appending its stdin and environment to a file);
// when the destination comes up and takes its object, both get "resolved".
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using nlohmann::json;

void SleepMs(int ms) { ::usleep(static_cast<useconds_t>(ms) * 1000); }

// Appends the body of every POST, as one line, to argv[2]; answers 204.
constexpr char kReceiver[] = R"(import http.server, sys
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('Content-Length', '0'))
        body = self.rfile.read(n)
        with open(out, 'ab') as f:
            f.write(self.path.encode() + b' ' + body.replace(b'\n', b' ') + b'\n')
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
)";

std::vector<std::string> Lines(const std::string& path) {
  std::istringstream in(ReadFile(path));
  std::vector<std::string> out;
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

// The JSON notices posted so far (the path before each body is checked).
std::vector<json> Posted(const std::string& path) {
  std::vector<json> out;
  for (const std::string& l : Lines(path)) {
    EXPECT_EQ(l.rfind("/hooks/relais ", 0), 0u) << l;
    out.push_back(json::parse(l.substr(l.find(' ') + 1), nullptr, false));
  }
  return out;
}

bool HasNotice(const std::vector<json>& posted, const std::string& alert, const std::string& subject,
               const std::string& state) {
  for (const json& j : posted) {
    if (j.is_object() && j.value("alert", "") == alert && j.value("subject", "") == subject &&
        j.value("state", "") == state) {
      return true;
    }
  }
  return false;
}

TEST(AlertsTest, DestinationDownIsPostedAndRunThenResolved) {
  TempDir dir;
  ASSERT_EQ(::mkdir((dir / "copies").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "peer").c_str(), 0755), 0);
  const std::string posted = dir / "posted.txt";
  const std::string ran = dir / "ran.txt";
  WriteFile(dir / "receiver.py", kReceiver);
  const uint16_t hook_port = FreePort();
  Child receiver;
  ASSERT_TRUE(
      receiver.Start({"python3", dir / "receiver.py", std::to_string(hook_port), posted}, dir / "receiver.log"));
  ASSERT_TRUE(WaitForPort(hook_port, 20000)) << receiver.ReadLog();
  const std::string script = dir / "alert.sh";
  WriteFile(script,
            "#!/bin/sh\n{ cat; echo; echo \"ENV $RELAIS_ALERT|$RELAIS_ALERT_SUBJECT|$RELAIS_ALERT_STATE\"; } >> '" +
                ran + "'\n");
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);

  const uint16_t peer_port = FreePort();  // nothing listens there yet
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"telerad\"\nae_title = \"TELERAD\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer_port) +
                       "\nmax_associations = 1\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n"
                       "[[rule]]\nname = \"all\"\nforward = [\"telerad\"]\n");
  const std::string audit = dir / "audit.jsonl";
  RelaisOptions options;
  options.ae_title = "RELAIS";
  options.extra =
      "\n[delivery]\ndown_after_failures = 2\nconnect_timeout_s = 2\nidle_release_s = 1\n"
      "\n[rules]\npath = \"" +
      rules +
      "\"\n"
      "\n[audit]\npath = \"" +
      audit +
      "\"\n"
      "\n[alerts]\nwebhook = \"http://127.0.0.1:" +
      std::to_string(hook_port) +
      "/hooks/relais\"\n"
      "command = \"" +
      script + "\"\ndestination_down = 1\nrepeat = 0\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", dir / "copies", 1, &uids);
  ASSERT_EQ(files.size(), 1u);
  RunResult sent =
      RunCommand({"storescu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), files[0]});
  ASSERT_EQ(ParseStorescuVerbose(sent.output).acknowledged.size(), 1u) << sent.output;

  // Raised: evaluations run every 10 s, the condition holds after 1 s.
  int64_t deadline = NowMs() + 60000;
  while (!HasNotice(Posted(posted), "destination-down", "telerad", "raised")) {
    ASSERT_LT(NowMs(), deadline) << "no destination-down alert posted\n" << relais.Log();
    SleepMs(250);
  }
  json raised;
  for (const json& j : Posted(posted)) {
    if (j.value("alert", "") == "destination-down") raised = j;
  }
  EXPECT_EQ(raised["ae_title"], "RELAIS");
  EXPECT_FALSE(raised.value("host", "").empty());
  EXPECT_NE(raised.value("since", "").find('T'), std::string::npos) << raised.dump();
  const std::string message = raised.value("message", "");
  EXPECT_NE(message.find("telerad"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(peer_port)), std::string::npos) << message;
  // The command ran with the same notice and its environment.
  deadline = NowMs() + 30000;
  while (Lines(ran).size() < 2) {
    ASSERT_LT(NowMs(), deadline) << "the alert command did not run\n" << relais.Log();
    SleepMs(100);
  }
  EXPECT_EQ(json::parse(Lines(ran)[0], nullptr, false), raised);
  EXPECT_EQ(Lines(ran)[1], "ENV destination-down|telerad|raised");
  EXPECT_NE(relais.Log().find("event=alert alert=destination-down subject=telerad state=raised"), std::string::npos);

  // The destination comes up: the object arrives, the alert resolves.
  StorescpPeer peer(dir / "peer", [&] {
    StorescpOptions o;
    o.ae_title = "TELERAD";
    o.port = peer_port;
    return o;
  }());
  ASSERT_TRUE(peer.Start()) << peer.Log();
  deadline = NowMs() + 90000;
  while (!HasNotice(Posted(posted), "destination-down", "telerad", "resolved")) {
    ASSERT_LT(NowMs(), deadline) << "no resolved notice\n" << relais.Log();
    SleepMs(250);
  }
  EXPECT_EQ(peer.Received()[uids[0]].size(), 1u);
  deadline = NowMs() + 30000;
  while (Lines(ran).size() < 4) {
    ASSERT_LT(NowMs(), deadline) << "the alert command did not run for the resolution\n" << relais.Log();
    SleepMs(100);
  }
  EXPECT_EQ(Lines(ran)[3], "ENV destination-down|telerad|resolved");
  // repeat = 0 and one outage: exactly one raised and one resolved notice.
  size_t raised_count = 0, resolved_count = 0;
  for (const json& j : Posted(posted)) {
    if (j.value("alert", "") != "destination-down") continue;
    (j.value("state", "") == "raised" ? raised_count : resolved_count)++;
  }
  EXPECT_EQ(raised_count, 1u);
  EXPECT_EQ(resolved_count, 1u);

  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  const std::string trail = ReadFile(audit);
  size_t alerts = 0;
  for (size_t p = trail.find("\"kind\":\"alert\""); p != std::string::npos;
       p = trail.find("\"kind\":\"alert\"", p + 1)) {
    ++alerts;
  }
  EXPECT_EQ(alerts, 2u) << "raised and resolved, each audited once";
  receiver.Stop(SIGTERM, 10);
}

}  // namespace
}  // namespace relais::itest
