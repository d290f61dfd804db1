// A misconfigured destination holds its queue (issue 14): a destination whose
// ae_title the peer does not know (a second real `relais serve` as the peer,
// which answers an unknown called AE title with A-ASSOCIATE-RJ permanent,
// "called AE title not recognized") dead-letters nothing, shows state
// "misconfigured" with the reason in the admin API, raises a
// "destination-misconfigured" alert (a real command); fixing ae_title in
// the rule file and SIGHUP delivers everything at once and resolves it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "peers.h"
#include "tls_certs.h"

namespace relais::itest {
namespace {

using nlohmann::json;

constexpr char kToken[] = "viewer-misconfigured-5e1a";

void SleepMs(int ms) { ::usleep(static_cast<useconds_t>(ms) * 1000); }

// Polls `done` every 250 ms: true once it holds, false after `timeout_ms`.
template <typename Done>
bool PollUntil(Done done, int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (!done()) {
    if (NowMs() >= deadline) return false;
    SleepMs(250);
  }
  return true;
}

std::vector<std::string> Lines(const std::string& path) {
  std::istringstream in(ReadFile(path));
  std::vector<std::string> out;
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

bool HasLine(const std::string& path, const std::string& line) {
  for (const std::string& l : Lines(path)) {
    if (l == line) return true;
  }
  return false;
}

// `relais queue ls --json [--dead]`, one JSON line per row.
std::vector<std::string> QueueRows(const RelaisProcess& relais, bool dead_only) {
  std::vector<std::string> argv = {RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"};
  if (dead_only) argv.push_back("--dead");
  RunResult r = RunCommand(argv, 120);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> out;
  std::istringstream in(r.output);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty() && l[0] == '{') out.push_back(l);
  }
  return out;
}

json Destination(uint16_t admin_port, const std::string& name) {
  RunResult r = RunCommand({"curl", "-s", "-m", "30", "-H", std::string("Authorization: Bearer ") + kToken,
                            "http://127.0.0.1:" + std::to_string(admin_port) + "/api/destinations/" + name},
                           60);
  return json::parse(r.output, nullptr, false);
}

std::string RulesWith(const std::string& ae, uint16_t port) {
  return "[[destination]]\nname = \"telerad\"\nae_title = \"" + ae +
         "\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) +
         "\nmax_associations = 1\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\", max_attempts = 3 }\n"
         "[[rule]]\nname = \"all\"\nforward = [\"telerad\"]\n";
}

// Writes DIR/alert.sh, an [alerts] command that appends each alert (its
// JSON, then "ENV alert|subject|state") to the returned file.
std::string MakeAlertRecorder(const TempDir& dir, std::string* script) {
  const std::string ran = dir / "ran.txt";
  *script = dir / "alert.sh";
  WriteFile(*script,
            "#!/bin/sh\n{ cat; echo; echo \"ENV $RELAIS_ALERT|$RELAIS_ALERT_SUBJECT|$RELAIS_ALERT_STATE\"; } >> '" +
                ran + "'\n");
  EXPECT_EQ(::chmod(script->c_str(), 0755), 0);
  return ran;
}

// The peer of the TLS cases, a second `relais serve` as TELERAD with a [tls]
// listener on `tls_port` presenting CERTS/peer.crt; requiring client
// certificates signed by CERTS/ca.crt when asked to.
RelaisOptions TlsPeerOptions(uint16_t tls_port, const std::string& certs, bool require_client_certificate) {
  RelaisOptions o;
  o.ae_title = "TELERAD";
  o.extra = TlsListenerToml(tls_port, certs + "/peer.crt", certs + "/peer.key",
                            require_client_certificate ? certs + "/ca.crt" : "");
  return o;
}

// Once the alert command recorded ALERT|SUBJECT raised (within 60 s): the
// message of the first alert it recorded, which must be that one. nullopt
// if it was not raised.
std::optional<std::string> RaisedAlert(const std::string& ran, const std::string& alert, const std::string& subject) {
  if (!PollUntil([&] { return HasLine(ran, "ENV " + alert + "|" + subject + "|raised"); }, 60000)) return std::nullopt;
  json raised = json::parse(Lines(ran)[0], nullptr, false);
  EXPECT_EQ(raised.value("alert", ""), alert) << raised.dump();
  return raised.value("message", "");
}

// The options of the relais under test: fast retries, `rules`, an admin
// listener on `admin_port` with kToken as a viewer, and the alert command
// `script` if not empty.
RelaisOptions MainOptions(const TempDir& dir, const std::string& rules, uint16_t admin_port,
                          const std::string& script) {
  WriteFile(dir / "tok", kToken);
  const std::string sha = RunCommand({"sha256sum", dir / "tok"}, 30).output.substr(0, 64);
  std::string extra = "\n[delivery]\nconnect_timeout_s = 2\nidle_release_s = 1\n\n[rules]\npath = \"" + rules +
                      "\"\n\n[admin]\nhost = \"127.0.0.1\"\nport = " + std::to_string(admin_port) +
                      "\n\n[[admin.token]]\nname = \"nurse\"\nrole = \"viewer\"\nsha256 = \"" + sha + "\"\n";
  if (!script.empty()) extra += "\n[alerts]\ncommand = \"" + script + "\"\nrepeat = 0\n";
  RelaisOptions options;
  options.extra = extra;
  return options;
}

// Sends `n` copies (new SOP Instance UIDs) of the corpus file `name` to
// `relais` with storescu; returns the UIDs, all acknowledged, or none.
std::vector<std::string> SendCopies(const RelaisProcess& relais, const TempDir& dir, const std::string& name, int n) {
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/" + name, dir / "copies", n, &uids);
  if (files.size() != static_cast<size_t>(n)) return {};
  std::vector<std::string> argv = {"storescu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult sent = RunCommand(argv);
  if (ParseStorescuVerbose(sent.output).acknowledged.size() != static_cast<size_t>(n)) {
    ADD_FAILURE() << sent.output;
    return {};
  }
  return uids;
}

TEST(MisconfiguredTest, WrongAeTitleHoldsTheQueueAlertsAndAReloadDeliversEverything) {
  TempDir dir;
  ASSERT_EQ(::mkdir((dir / "copies").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "peer").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "main").c_str(), 0755), 0);

  RelaisOptions peer_options;
  peer_options.ae_title = "TELERAD";
  RelaisProcess peer(dir / "peer", peer_options);
  ASSERT_TRUE(peer.Start()) << peer.Log();

  std::string script;
  const std::string ran = MakeAlertRecorder(dir, &script);

  const std::string rules = dir / "rules.toml";
  // max_attempts = 3: without the hold, every row would be dead after three
  // rejections (about 4 s).
  WriteFile(rules, RulesWith("WRONG", peer.port()));
  const uint16_t admin_port = FreePort();
  RelaisProcess relais(dir / "main", MainOptions(dir, rules, admin_port, script));
  ASSERT_TRUE(relais.Start() && WaitForPort(admin_port, 10000)) << relais.Log();

  const std::vector<std::string> uids = SendCopies(relais, dir, "pydicom__CT_small.dcm", 3);
  ASSERT_EQ(uids.size(), 3u);

  // Misconfigured: the alert is raised (evaluations every 10 s), and by then
  // the destination has been refused several times (every ~2 s).
  const std::optional<std::string> message = RaisedAlert(ran, "destination-misconfigured", "telerad");
  ASSERT_TRUE(message.has_value()) << "no destination-misconfigured alert\n" << relais.Log();
  EXPECT_NE(message->find("called AE title not recognized"), std::string::npos) << *message;
  EXPECT_NE(message->find("ae_title"), std::string::npos) << *message;
  EXPECT_NE(message->find("'WRONG'"), std::string::npos) << *message;
  SleepMs(5000);  // more refusals: still nothing dead
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u) << relais.Log();
  std::vector<std::string> rows = QueueRows(relais, /*dead_only=*/false);
  EXPECT_EQ(rows.size(), 3u);
  for (const std::string& r : rows) EXPECT_EQ(JsonField(r, "state"), "queued") << r;
  json d = Destination(admin_port, "telerad");
  EXPECT_EQ(d.value("state", ""), "misconfigured") << d.dump();
  ASSERT_TRUE(d["misconfigured"].is_string()) << d.dump();
  EXPECT_NE(d["misconfigured"].get<std::string>().find("called AE title not recognized"), std::string::npos)
      << d.dump();
  EXPECT_NE(relais.Log().find("event=destination-misconfigured"), std::string::npos) << relais.Log();
  EXPECT_EQ(relais.Log().find("event=dead-letter"), std::string::npos) << relais.Log();

  // The admin fixes the ae_title and reloads: delivered at once.
  WriteFile(rules, RulesWith("TELERAD", peer.port()));
  ASSERT_EQ(::kill(relais.pid(), SIGHUP), 0);
  ASSERT_TRUE(PollUntil([&] { return QueueRows(relais, /*dead_only=*/false).empty(); }, 30000))
      << "not delivered after the reload\n"
      << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u);
  std::map<std::string, std::string> stored = peer.StoreList();
  for (const std::string& uid : uids) EXPECT_EQ(stored.count(uid), 1u) << uid;
  ASSERT_TRUE(PollUntil([&] { return HasLine(ran, "ENV destination-misconfigured|telerad|resolved"); }, 30000))
      << "the alert was not resolved\n"
      << relais.Log();
  d = Destination(admin_port, "telerad");
  EXPECT_NE(d.value("state", ""), "misconfigured") << d.dump();
  EXPECT_TRUE(d["misconfigured"].is_null()) << d.dump();

  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  EXPECT_EQ(peer.Terminate(), 0) << peer.Log();
}

// The same hold for DICOM TLS (issue 14): the peer, a second `relais serve`
// with a [tls] listener, presents a certificate for "localhost" only, and
// the destination names it 127.0.0.1. The handshake fails on the name: the
// destination is misconfigured (admin API, alert naming the fix, `relais
// queue ls` with the live state), nothing is dead-lettered although
// max_attempts is 3; a reload naming the host "localhost" delivers it all.
TEST(MisconfiguredTest, TlsCertificateForAnotherNameHoldsTheQueueAndAReloadDelivers) {
  TempDir dir;
  for (const char* d : {"copies", "peer", "main", "certs"}) ASSERT_EQ(::mkdir((dir / d).c_str(), 0755), 0) << d;
  const std::string c = dir / "certs";
  std::string log;
  ASSERT_TRUE(MakeTestCertificates(c, {{"ca", "", ""}, {"peer", "ca", "DNS:localhost"}}, &log)) << log;

  const uint16_t tls_port = FreePort();
  RelaisProcess peer(dir / "peer", TlsPeerOptions(tls_port, c, /*require_client_certificate=*/false));
  ASSERT_TRUE(peer.Start() && WaitForPort(tls_port, 10000)) << peer.Log();

  std::string script;
  const std::string ran = MakeAlertRecorder(dir, &script);
  const std::string rules = dir / "rules.toml";
  auto rules_with = [&](const std::string& host) {
    return "[[destination]]\nname = \"telerad\"\nae_title = \"TELERAD\"\nhost = \"" + host +
           "\"\nport = " + std::to_string(tls_port) + "\n" + TlsDestinationToml(c + "/ca.crt") +
           "max_associations = 1\n"
           "retry = { initial_backoff = \"1s\", max_backoff = \"2s\", max_attempts = 3 }\n"
           "[[rule]]\nname = \"all\"\nforward = [\"telerad\"]\n";
  };
  WriteFile(rules, rules_with("127.0.0.1"));
  const uint16_t admin_port = FreePort();
  RelaisProcess relais(dir / "main", MainOptions(dir, rules, admin_port, script));
  ASSERT_TRUE(relais.Start() && WaitForPort(admin_port, 10000)) << relais.Log();

  const std::vector<std::string> uids = SendCopies(relais, dir, "pydicom__CT_small.dcm", 3);
  ASSERT_EQ(uids.size(), 3u);

  const std::optional<std::string> message = RaisedAlert(ran, "destination-misconfigured", "telerad");
  ASSERT_TRUE(message.has_value()) << "no destination-misconfigured alert\n" << relais.Log();
  const std::string where = "127.0.0.1:" + std::to_string(tls_port);
  EXPECT_NE(message->find("the certificate of " + where + " does not name '127.0.0.1'"), std::string::npos) << *message;
  EXPECT_NE(message->find("host"), std::string::npos) << "names what to change: " << *message;
  json d = Destination(admin_port, "telerad");
  EXPECT_EQ(d.value("state", ""), "misconfigured") << d.dump();
  EXPECT_NE(relais.Log().find("event=destination-misconfigured"), std::string::npos) << relais.Log();
  EXPECT_NE(relais.Log().find("tls=peer-name"), std::string::npos) << relais.Log();

  // `relais queue ls` shows the live state beside the rows (serve-state.json
  // is rewritten within a second of a change).
  RunResult ls;
  ASSERT_TRUE(PollUntil(
      [&] {
        ls = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--dest", "telerad"}, 60);
        return ls.output.find("destination misconfigured since") != std::string::npos;
      },
      30000))
      << ls.output;
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_NE(ls.output.find("live state: from relais serve (pid " + std::to_string(relais.pid()) + ", running)"),
            std::string::npos)
      << ls.output;
  EXPECT_NE(ls.output.find("does not name '127.0.0.1'"), std::string::npos) << ls.output;
  std::vector<std::string> rows = QueueRows(relais, /*dead_only=*/false);
  ASSERT_EQ(rows.size(), 3u);
  for (const std::string& r : rows) {
    EXPECT_EQ(JsonField(r, "state"), "queued") << r;
    EXPECT_EQ(JsonField(r, "destination_state"), "misconfigured") << r;
  }
  // Several more handshakes (every ~2 s): still nothing dead.
  ASSERT_TRUE(PollUntil([&] { return relais.Log().find("event=still-misconfigured") != std::string::npos; }, 30000))
      << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u) << relais.Log();
  EXPECT_EQ(relais.Log().find("event=dead-letter"), std::string::npos) << relais.Log();

  // The admin names the host as the certificate does and reloads.
  WriteFile(rules, rules_with("localhost"));
  ASSERT_EQ(::kill(relais.pid(), SIGHUP), 0);
  ASSERT_TRUE(PollUntil([&] { return QueueRows(relais, /*dead_only=*/false).empty(); }, 30000))
      << "not delivered after the reload\n"
      << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u);
  std::map<std::string, std::string> stored = peer.StoreList();
  for (const std::string& uid : uids) EXPECT_EQ(stored.count(uid), 1u) << uid;
  ASSERT_TRUE(PollUntil([&] { return HasLine(ran, "ENV destination-misconfigured|telerad|resolved"); }, 30000))
      << "the alert was not resolved\n"
      << relais.Log();
  EXPECT_NE(Destination(admin_port, "telerad").value("state", ""), "misconfigured");

  // After serve stops, queue ls says its state is old.
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  ls = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path()}, 60);
  EXPECT_NE(ls.output.find("is not running"), std::string::npos) << ls.output;
  EXPECT_EQ(peer.Terminate(), 0) << peer.Log();
}

// Mutual TLS: the peer (a second relais requiring client certificates signed
// by its CA) refuses the certificate we send, which another CA signed. Its
// TLS alert makes the destination misconfigured, naming tls.cert_file;
// a reload with a certificate the peer trusts delivers everything.
TEST(MisconfiguredTest, TlsPeerRefusingOurCertificateHoldsTheQueueAndAReloadDelivers) {
  TempDir dir;
  for (const char* d : {"copies", "peer", "main", "certs"}) ASSERT_EQ(::mkdir((dir / d).c_str(), 0755), 0) << d;
  const std::string c = dir / "certs";
  std::string log;
  ASSERT_TRUE(MakeTestCertificates(c,
                                   {{"ca", "", ""},
                                    {"rogue", "", ""},
                                    {"peer", "ca", "IP:127.0.0.1"},
                                    {"us", "ca", "DNS:relais"},
                                    {"stranger", "rogue", "DNS:relais"}},
                                   &log))
      << log;

  const uint16_t tls_port = FreePort();
  RelaisProcess peer(dir / "peer", TlsPeerOptions(tls_port, c, /*require_client_certificate=*/true));
  ASSERT_TRUE(peer.Start() && WaitForPort(tls_port, 10000)) << peer.Log();

  const std::string rules = dir / "rules.toml";
  auto rules_with = [&](const std::string& cert) {
    return "[[destination]]\nname = \"telerad\"\nae_title = \"TELERAD\"\nhost = \"127.0.0.1\"\nport = " +
           std::to_string(tls_port) + "\n" +
           TlsDestinationToml(c + "/ca.crt", c + "/" + cert + ".crt", c + "/" + cert + ".key") +
           "max_associations = 1\n"
           "retry = { initial_backoff = \"1s\", max_backoff = \"2s\", max_attempts = 3 }\n"
           "[[rule]]\nname = \"all\"\nforward = [\"telerad\"]\n";
  };
  WriteFile(rules, rules_with("stranger"));
  const uint16_t admin_port = FreePort();
  RelaisProcess relais(dir / "main", MainOptions(dir, rules, admin_port, ""));
  ASSERT_TRUE(relais.Start() && WaitForPort(admin_port, 10000)) << relais.Log();

  const std::vector<std::string> uids = SendCopies(relais, dir, "pydicom__CT_small.dcm", 2);
  ASSERT_EQ(uids.size(), 2u);

  json d;
  ASSERT_TRUE(PollUntil(
      [&] {
        d = Destination(admin_port, "telerad");
        return d.value("state", "") == "misconfigured";
      },
      60000))
      << d.dump() << "\n"
      << relais.Log();
  ASSERT_TRUE(d["misconfigured"].is_string()) << d.dump();
  const std::string why = d["misconfigured"].get<std::string>();
  EXPECT_NE(why.find("refused our client certificate"), std::string::npos) << why;
  EXPECT_NE(why.find(c + "/stranger.crt"), std::string::npos) << "names tls.cert_file: " << why;
  // More handshakes: nothing dead although max_attempts is 3.
  ASSERT_TRUE(PollUntil([&] { return relais.Log().find("event=still-misconfigured") != std::string::npos; }, 30000))
      << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u) << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/false).size(), 2u) << relais.Log();

  WriteFile(rules, rules_with("us"));
  ASSERT_EQ(::kill(relais.pid(), SIGHUP), 0);
  ASSERT_TRUE(PollUntil([&] { return QueueRows(relais, /*dead_only=*/false).empty(); }, 30000))
      << "not delivered after the reload\n"
      << relais.Log();
  std::map<std::string, std::string> stored = peer.StoreList();
  for (const std::string& uid : uids) EXPECT_EQ(stored.count(uid), 1u) << uid;
  EXPECT_NE(Destination(admin_port, "telerad").value("state", ""), "misconfigured");
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
  EXPECT_EQ(peer.Terminate(), 0) << peer.Log();
}

// A refusal that is the object's (a CT-only storescp and an MR) still
// dead-letters: one log line per row, and a "dead-letters" alert for the
// destination with the count and the reason; resolved when they are
// requeued and delivered.
TEST(MisconfiguredTest, DeadLettersAreLoggedPerRowAndAlerted) {
  TempDir dir;
  ASSERT_EQ(::mkdir((dir / "copies").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "scp").c_str(), 0755), 0);
  StorescpOptions so;
  so.ae_title = "CTONLY";
  so.only_sop_classes = {kCtImageStorage};
  StorescpPeer scp(dir / "scp", so);
  ASSERT_TRUE(scp.Start()) << scp.Log();
  std::string script;
  const std::string ran = MakeAlertRecorder(dir, &script);
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"ctonly\"\nae_title = \"CTONLY\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(scp.port()) +
                       "\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n"
                       "[[rule]]\nname = \"all\"\nforward = [\"ctonly\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n\n[alerts]\ncommand = \"" + script + "\"\nrepeat = 0\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  const std::vector<std::string> uids = SendCopies(relais, dir, "pydicom__MR_small.dcm", 2);
  ASSERT_EQ(uids.size(), 2u);

  const std::optional<std::string> message = RaisedAlert(ran, "dead-letters", "ctonly");
  ASSERT_TRUE(message.has_value()) << "no dead-letters alert\n" << relais.Log();
  EXPECT_NE(message->find("2 object(s)"), std::string::npos) << *message;
  EXPECT_NE(message->find("ctonly"), std::string::npos) << *message;
  EXPECT_NE(message->find("1.2.840.10008.5.1.4.1.1.4"), std::string::npos)
      << "the reason names the SOP class: " << *message;
  const std::string log = relais.Log();
  for (const std::string& uid : uids) {
    const size_t at = log.find("event=dead-letter dest=ctonly sop=" + uid + " object=");
    ASSERT_NE(at, std::string::npos) << uid << "\n" << log;
    const std::string line = log.substr(at, log.find('\n', at) - at);
    EXPECT_NE(line.find(" attempts="), std::string::npos) << line;
    EXPECT_NE(line.find(" status="), std::string::npos) << line;
    EXPECT_NE(line.find(" reason=\""), std::string::npos) << line;
    EXPECT_EQ(log.find("event=dead-letter dest=ctonly sop=" + uid + " ", at + 1), std::string::npos)
        << "one line per row\n"
        << log;
  }

  // The peer takes MR now; the dead letters are requeued and delivered.
  StorescpOptions all;
  all.ae_title = "CTONLY";
  all.port = scp.port();
  ASSERT_TRUE(scp.Restart(all)) << scp.Log();
  RunResult r = RunCommand({RelaisBinary(), "queue", "retry", "--config", relais.config_path(), "--dead"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(PollUntil([&] { return HasLine(ran, "ENV dead-letters|ctonly|resolved"); }, 60000))
      << "the dead-letters alert was not resolved\n"
      << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
