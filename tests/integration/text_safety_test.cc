// Every byte from outside is data, end to end: a destination that answers
// 0xA700 with a Latin-1 Error Comment holding 0xFF (tests/tools/fake_scp.py,
// a PS3.8 peer written with no DICOM library), objects in ISO_IR 100 and the
// corpus character set files, with [alerts] and [admin] on. Relais stays up,
// the alert goes out, rules written in UTF-8 route the objects, and every
// admin endpoint, CLI JSON line, audit record and log line that names them
// is valid UTF-8 (JSON that parses).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/text.h"
#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using nlohmann::json;

void SleepMs(int ms) { ::usleep(static_cast<useconds_t>(ms) * 1000); }

std::vector<std::string> TextLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

bool IsUtf8Text(const std::string& text) { return IsUtf8(text); }

struct Http {
  int status = 0;
  std::string body;
};

Http Get(uint16_t port, const std::string& path, const std::string& token, const std::string& dir) {
  RunResult r = RunCommand({"curl", "-s", "-m", "30", "-o", dir + "/body", "-w", "%{http_code}", "-H",
                            "Authorization: Bearer " + token, "http://127.0.0.1:" + std::to_string(port) + path},
                           60);
  return Http{std::atoi(r.output.c_str()), ReadFile(dir + "/body")};
}

// The UTF-8 names of the corpus character set files, as rules are written.
struct Named {
  const char* file;
  const char* rule;
  const char* name;
};
const Named kNamed[] = {
    {"pydicom__chrFren.dcm", "fren", "Buc^J\xC3\xA9r\xC3\xB4me"},
    {"pydicom__chrGerm.dcm", "germ",
     "\xC3\x84neas^R\xC3\xBC"
     "diger"},
    {"pydicom__chrRuss.dcm", "russ",
     "\xD0\x9B\xD1\x8E\xD0\xBA"
     "ce\xD0\xBC\xD0\xB1yp\xD0\xB3"},
    {"pydicom__chrArab.dcm", "arab",
     "\xD9\x82\xD8\xA8\xD8\xA7\xD9\x86\xD9\x8A^\xD9\x84\xD9\x86\xD8\xB2\xD8\xA7\xD8\xB1"},
    {"pydicom__chrHbrw.dcm", "hbrw", "\xD7\xA9\xD7\xA8\xD7\x95\xD7\x9F^\xD7\x93\xD7\x91\xD7\x95\xD7\xA8\xD7\x94"},
    {"pydicom__chrX2.dcm", "x2", "Wang^XiaoDong=\xE7\x8E\x8B^\xE5\xB0\x8F\xE4\xB8\x9C="},
    {"pydicom__chrI2.dcm", "i2",
     "Hong^Gildong=\xE6\xB4\xAA^\xE5\x90\x89\xE6\xB4\x9E=\xED\x99\x8D^\xEA\xB8\xB8\xEB\x8F\x99"},
    {"fodicom__chrGB2312.dcm", "gb", "Zhang^XiaoDong=\xE5\xBC\xA0^\xE5\xB0\x8F\xE4\xB8\x9C="},
    {"pydicom__chrJapMulti.dcm", "jap", "\xE3\x82\x84\xE3\x81\xBE\xE3\x81\xA0^\xE3\x81\x9F\xE3\x82\x8D\xE3\x81\x86"},
};

TEST(TextSafetyTest, LatinOneErrorCommentsAndNamesLeaveRelaisAsUtf8) {
  TempDir dir;
  ASSERT_EQ(::mkdir((dir / "copies").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "http").c_str(), 0755), 0);

  // The destination: every C-STORE answered 0xA700, Error Comment in Latin-1.
  FakeScpOptions fo;
  fo.status_hex = "A700";
  fo.error_comment_hex = "506c65696e20e0206372617175657220ff";  // "Plein \xE0 craquer \xFF"
  FakeScp pacs(dir.path(), fo);
  ASSERT_TRUE(pacs.Start()) << pacs.Log();

  // An alert command that keeps what it is given.
  const std::string ran = dir / "ran.txt";
  const std::string script = dir / "alert.sh";
  WriteFile(script, "#!/bin/sh\n{ cat; echo; } >> '" + ran + "'\n");
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);

  std::string rules = "[[destination]]\nname = \"pacs\"\nae_title = \"FAKEPACS\"\nhost = \"127.0.0.1\"\nport = " +
                      std::to_string(pacs.port()) +
                      "\nretry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n"
                      "[[rule]]\nname = \"elodie\"\nforward = [\"pacs\"]\n[rule.match]\n"
                      "PatientName = { regex = \"(?i)^ngono\\\\^\" }\n"
                      "InstitutionName = \"H\xC3\xB4pital Central\"\n";
  for (const Named& n : kNamed) {
    rules += std::string("[[rule]]\nname = \"") + n.rule + "\"\nforward = [\"pacs\"]\n[rule.match]\nPatientName = \"" +
             n.name + "\"\n";
  }
  WriteFile(dir / "rules.toml", rules);
  const std::string token = "viewer-text-safety-1";
  WriteFile(dir / "tok", token);
  const std::string sha = RunCommand({"sha256sum", dir / "tok"}, 30).output.substr(0, 64);
  const uint16_t admin_port = FreePort();
  const std::string audit = dir / "audit.jsonl";
  RelaisOptions options;
  options.extra =
      "\n[delivery]\ndown_after_failures = 1\nconnect_timeout_s = 2\nidle_release_s = 1\n"
      "\n[rules]\npath = \"" +
      dir / "rules.toml" +
      "\"\n"
      "\n[audit]\npath = \"" +
      audit +
      "\"\n"
      "\n[alerts]\ncommand = \"" +
      script +
      "\"\ndestination_down = 1\nrepeat = 0\n"
      "\n[admin]\nhost = \"127.0.0.1\"\nport = " +
      std::to_string(admin_port) + "\n\n[[admin.token]]\nname = \"nurse\"\nrole = \"viewer\"\nsha256 = \"" + sha +
      "\"\n";
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // An ISO_IR 100 CT with a French name, ID and institution.
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", dir / "copies", 1, &uids);
  ASSERT_EQ(files.size(), 1u);
  RunResult mod = RunCommand({"dcmodify", "-nb", "-i", "(0008,0005)=ISO_IR 100", "-i", "(0010,0010)=Ngono^\xC9lodie",
                              "-i", "(0010,0020)=\xC9L-0042", "-i", "(0008,0080)=H\xF4pital Central", files[0]});
  ASSERT_EQ(mod.exit_code, 0) << mod.output;
  std::vector<std::string> argv = {
      "storescu", "-v", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), files[0]};
  for (const Named& n : kNamed) argv.push_back(CorpusDir() + "/" + n.file);
  RunResult sent = RunCommand(argv, 300);
  ASSERT_EQ(ParseStorescuVerbose(sent.output).acknowledged.size(), 1 + std::size(kNamed)) << sent.output;

  // The alert goes out (destination-down after the 0xA700 answers), as
  // valid JSON naming the comment visibly; Relais is still up.
  int64_t deadline = NowMs() + 90000;
  while (TextLines(ReadFile(ran)).empty()) {
    ASSERT_TRUE(relais.running()) << "relais died\n" << relais.Log();
    ASSERT_LT(NowMs(), deadline) << "no alert ran\n" << relais.Log();
    SleepMs(250);
  }
  json alert = json::parse(TextLines(ReadFile(ran))[0], nullptr, false);
  ASSERT_FALSE(alert.is_discarded()) << ReadFile(ran);
  EXPECT_EQ(alert.value("alert", ""), "destination-down");
  EXPECT_NE(alert.value("message", "").find("Plein \\xE0 craquer \\xFF"), std::string::npos) << alert.dump();
  ASSERT_TRUE(relais.running()) << relais.Log();

  // Rules written in UTF-8 routed every object by its decoded name.
  std::map<std::string, std::string> listed = relais.StoreList();
  ASSERT_EQ(listed.size(), 1 + std::size(kNamed));
  std::set<std::string> rules_matched;
  for (const auto& [uid, line] : listed) {
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    for (const auto& r : j["matched_rules"]) rules_matched.insert(r.get<std::string>());
    if (uid == uids[0]) {
      EXPECT_EQ(j.value("patient_id", ""), "\xC3\x89L-0042") << line;
    }
  }
  EXPECT_TRUE(rules_matched.count("elodie")) << relais.Log();
  for (const Named& n : kNamed) EXPECT_TRUE(rules_matched.count(n.rule)) << n.file;

  // Every admin endpoint answers 200 with JSON that parses.
  std::vector<std::string> paths = {"/api/status",   "/api/destinations", "/api/queue", "/api/dead",
                                    "/api/failures", "/api/throughput",   "/readyz"};
  for (const auto& [uid, line] : listed) paths.push_back("/api/objects/" + uid);
  for (const std::string& p : paths) {
    Http h = Get(admin_port, p, token, dir / "http");
    EXPECT_EQ(h.status, 200) << p << ": " << h.body;
    EXPECT_FALSE(json::parse(h.body, nullptr, false).is_discarded()) << p << ": " << h.body;
  }
  Http failures = Get(admin_port, "/api/failures", token, dir / "http");
  EXPECT_NE(failures.body.find("Plein \\\\xE0 craquer \\\\xFF"), std::string::npos) << failures.body;
  Http object = Get(admin_port, "/api/objects/" + uids[0], token, dir / "http");
  EXPECT_NE(object.body.find("\xC3\x89L-0042"), std::string::npos) << object.body;
  Http metrics = Get(admin_port, "/metrics", token, dir / "http");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_TRUE(IsUtf8Text(metrics.body));

  // CLI JSON: object show and queue ls, one JSON document each line.
  for (const auto& [uid, line] : listed) {
    RunResult show =
        RunCommand({RelaisBinary(), "object", "show", "--config", relais.config_path(), uid, "--json"}, 60);
    EXPECT_EQ(show.exit_code, 0) << show.output;
    EXPECT_FALSE(json::parse(show.output, nullptr, false).is_discarded()) << show.output;
  }
  RunResult queue = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"}, 60);
  for (const std::string& l : TextLines(queue.output)) {
    if (l[0] == '{') {
      EXPECT_FALSE(json::parse(l, nullptr, false).is_discarded()) << l;
    }
  }
  RunResult table = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path()}, 60);
  EXPECT_TRUE(IsUtf8Text(table.output)) << table.output;

  // `rules test --explain` shows the decoded value, in text and in JSON.
  RunResult explain =
      RunCommand({RelaisBinary(), "rules", "test", "--rules", dir / "rules.toml", "--explain", files[0]}, 60);
  EXPECT_EQ(explain.exit_code, 0) << explain.output;
  EXPECT_NE(explain.output.find("'Ngono^\xC3\x89lodie'"), std::string::npos) << explain.output;
  EXPECT_NE(explain.output.find("rule elodie: MATCHED"), std::string::npos) << explain.output;
  RunResult explain_json =
      RunCommand({RelaisBinary(), "rules", "test", "--rules", dir / "rules.toml", "--explain", "--json", files[0]}, 60);
  json ej = json::parse(explain_json.output, nullptr, false);
  ASSERT_FALSE(ej.is_discarded()) << explain_json.output;
  EXPECT_NE(ej.dump().find("Ngono^\xC3\x89lodie"), std::string::npos) << explain_json.output;

  // The audit trail: every record parses, and the chain verifies.
  std::vector<std::string> records = TextLines(ReadFile(audit));
  ASSERT_FALSE(records.empty());
  for (const std::string& r : records) EXPECT_FALSE(json::parse(r, nullptr, false).is_discarded()) << r;
  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;

  // The log: valid UTF-8, one event per line.
  const std::string log = relais.Log();
  EXPECT_TRUE(IsUtf8Text(log));
  for (const std::string& l : TextLines(log)) EXPECT_EQ(l.rfind("20", 0), 0u) << "not a log line: " << l;
  EXPECT_NE(log.find("Plein \\xE0 craquer \\xFF"), std::string::npos);

  ASSERT_TRUE(relais.running()) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
