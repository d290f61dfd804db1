// "Find anything" (issue 14): storescu sends corpus objects (an MR study of
// two objects, an ISO_IR 100 object with a French name, and a CT made ISO_IR
// 100 with an accented name) to relais, which delivers them to a storescp
// PACS and keeps a second destination's rows queued (nothing listens there).
// `relais find` by each key, and GET /api/studies, give the same grouped
// answer: per study, per destination, queued / sent.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using nlohmann::json;

json Find(const RelaisProcess& relais, std::vector<std::string> args) {
  std::vector<std::string> argv = {RelaisBinary(), "find", "--config", relais.config_path(), "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult r = RunCommand(argv, 60);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  json j = json::parse(r.output, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.output;
  return j;
}

std::vector<std::string> StudyUids(const json& j) {
  std::vector<std::string> out;
  if (!j.contains("studies")) return out;
  for (const auto& s : j["studies"]) out.push_back(s.value("study_instance_uid", ""));
  return out;
}

json Dest(const json& study, const std::string& name) {
  for (const auto& d : study["destinations"]) {
    if (d.value("destination", "") == name) return d;
  }
  return json();
}

TEST(FindTest, FindAndApiStudiesAnswerByEachKeyGroupedByStudy) {
  TempDir dir;
  for (const char* d : {"pacs", "relais", "copies", "http"}) ASSERT_EQ(::mkdir((dir / d).c_str(), 0755), 0);
  StorescpOptions po;
  po.ae_title = "PACS";
  StorescpPeer pacs(dir / "pacs", po);
  ASSERT_TRUE(pacs.Start()) << pacs.Log();
  const uint16_t closed = FreePort();
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"PACS\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(pacs.port()) +
                       "\n\n[[destination]]\nname = \"TELERAD\"\nae_title = \"TELE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(closed) + "\n\n[[rule]]\nname = \"all\"\nforward = [\"PACS\", \"TELERAD\"]\n");
  const std::string token = "viewer-find-test-1";
  WriteFile(dir / "tok", token);
  const std::string sha = RunCommand({"sha256sum", dir / "tok"}, 30).output.substr(0, 64);
  const uint16_t admin_port = FreePort();
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules +
                  "\"\n\n[admin]\nhost = \"127.0.0.1\"\nport = " + std::to_string(admin_port) +
                  "\n\n[[admin.token]]\nname = \"v\"\nrole = \"viewer\"\nsha256 = \"" + sha + "\"\n";
  RelaisProcess relais(dir / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // A CT made ISO_IR 100 with an accented French name (Latin-1 bytes).
  std::vector<std::string> uids;
  std::vector<std::string> ct = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", dir / "copies", 1, &uids);
  ASSERT_EQ(ct.size(), 1u);
  const std::string ct_study = "1.2.826.0.1.3680043.2.1143.4242";
  RunResult mod =
      RunCommand({"dcmodify", "-nb", "-i", "(0008,0005)=ISO_IR 100", "-i", "(0010,0010)=Lef\xE8vre^H\xE9l\xE8ne", "-i",
                  "(0010,0020)=FR-0042", "-i", "(0008,0050)=ACC-FR-1", "-i", "(0008,0020)=20261207", "-i",
                  "(0020,000D)=" + ct_study, ct[0]});
  ASSERT_EQ(mod.exit_code, 0) << mod.output;
  RunResult sent = RunCommand(
      {"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), ct[0],
       CorpusDir() + "/dcm4che__MR01.dcm", CorpusDir() + "/dcm4che__MR02.dcm", CorpusDir() + "/pydicom__chrFren.dcm"},
      120);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;

  // Wait until the PACS has all four and the history says so.
  const std::string mr_study = "1.113654.3.13.1026";
  int64_t deadline = NowMs() + 60000;
  json all;
  for (;;) {
    all = Find(relais, {});
    int sent_total = 0;
    for (const auto& s : all["studies"]) sent_total += Dest(s, "PACS").value("sent", 0);
    if (sent_total == 4) break;
    ASSERT_LT(NowMs(), deadline) << all.dump() << "\n" << relais.Log();
    ::usleep(200 * 1000);
  }
  ASSERT_EQ(all["studies"].size(), 3u) << all.dump();

  // By each key.
  json mr = Find(relais, {"--patient-id", "583295"});
  ASSERT_EQ(StudyUids(mr), std::vector<std::string>{mr_study}) << mr.dump();
  const json& m = mr["studies"][0];
  EXPECT_EQ(m.value("objects", 0), 2);
  EXPECT_EQ(m.value("accession_number", ""), "MOF5026");
  EXPECT_EQ(Dest(m, "PACS").value("sent", 0), 2);
  EXPECT_EQ(Dest(m, "PACS").value("attempts", 0), 2);  // each sent at its first attempt
  EXPECT_EQ(Dest(m, "PACS").value("queued", -1), 0);
  EXPECT_EQ(Dest(m, "TELERAD").value("queued", 0), 2);  // nothing listens there
  EXPECT_EQ(StudyUids(Find(relais, {"--accession", "MOF5026"})), std::vector<std::string>{mr_study});
  EXPECT_EQ(StudyUids(Find(relais, {"--study", mr_study})), std::vector<std::string>{mr_study});
  EXPECT_EQ(StudyUids(Find(relais, {"--modality", "mr"})), std::vector<std::string>{mr_study});
  EXPECT_EQ(StudyUids(Find(relais, {"--from", "2017-07-16", "--to", "2017-07-16"})),
            std::vector<std::string>{mr_study});
  EXPECT_EQ(StudyUids(Find(relais, {"--calling-ae", "modality1"})).size(), 3u);
  EXPECT_TRUE(StudyUids(Find(relais, {"--calling-ae", "OTHER"})).empty());

  // Names, decoded from ISO_IR 100, without case or accents.
  json fr = Find(relais, {"--name", "HELENE lefevre"});
  ASSERT_EQ(StudyUids(fr), std::vector<std::string>{ct_study}) << fr.dump();
  EXPECT_EQ(fr["studies"][0].value("patient_name", ""), "Lef\xC3\xA8vre^H\xC3\xA9l\xC3\xA8ne");
  EXPECT_EQ(fr["studies"][0].value("accession_number", ""), "ACC-FR-1");
  json jerome = Find(relais, {"--name", "jerome"});
  ASSERT_EQ(jerome["studies"].size(), 1u) << jerome.dump();
  EXPECT_EQ(jerome["studies"][0].value("patient_name", ""), "Buc^J\xC3\xA9r\xC3\xB4me");
  EXPECT_EQ(jerome["studies"][0].value("patient_id", ""), "SCSFREN");

  // The admin API gives the same answer.
  RunResult api =
      RunCommand({"curl", "-s", "-m", "30", "-H", "Authorization: Bearer " + token,
                  "http://127.0.0.1:" + std::to_string(admin_port) + "/api/studies?name=helene%20LEF%C3%88VRE"},
                 60);
  json aj = json::parse(api.output, nullptr, false);
  ASSERT_FALSE(aj.is_discarded()) << api.output;
  EXPECT_EQ(aj, fr);
  RunResult one = RunCommand({"curl", "-s", "-m", "30", "-H", "Authorization: Bearer " + token,
                              "http://127.0.0.1:" + std::to_string(admin_port) + "/api/studies/" + mr_study},
                             60);
  json oj = json::parse(one.output, nullptr, false);
  ASSERT_FALSE(oj.is_discarded()) << one.output;
  EXPECT_EQ(oj.value("study_instance_uid", ""), mr_study);
  EXPECT_EQ(oj["stored_objects"].size(), 2u) << oj.dump();  // kept: TELERAD still owes them
  EXPECT_EQ(oj["destinations"], m["destinations"]);
  RunResult bad = RunCommand(
      {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "30", "-H", "Authorization: Bearer " + token,
       "http://127.0.0.1:" + std::to_string(admin_port) + "/api/studies?accesion=x"},
      60);
  EXPECT_EQ(bad.output, "400");

  // Text output, for people.
  RunResult text = RunCommand({RelaisBinary(), "find", "--config", relais.config_path(), "--name", "jérôme"}, 60);
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("-> PACS: sent 1"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("-> TELERAD: queued 1"), std::string::npos) << text.output;

  // The dashboard's study page, in headless Chromium, shows the same history.
  if (::access("/usr/bin/chromium", X_OK) == 0) {
    const std::string dom = dir / "dom.html";
    const std::string cmd =
        "exec timeout -k 5 90 /usr/bin/chromium --headless --no-sandbox --disable-gpu --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync --user-data-dir='" +
        dir / "profile" + "' --virtual-time-budget=10000 --dump-dom 'http://127.0.0.1:" + std::to_string(admin_port) +
        "/#token=" + token + "&study=" + mr_study + "' > '" + dom + "' 2> '" + dir / "chromium.err" + "'";
    RunResult chrome = RunCommand({"sh", "-c", cmd}, 120, {{"HOME", dir.path()}});
    ASSERT_EQ(chrome.exit_code, 0) << ReadFile(dir / "chromium.err").substr(0, 2000);
    const std::string html = ReadFile(dom);
    EXPECT_NE(html.find("Study " + mr_study), std::string::npos) << html.substr(0, 4000);
    EXPECT_NE(html.find("data-dest=\"PACS\">PACS: sent 2"), std::string::npos) << html.substr(0, 4000);
    EXPECT_NE(html.find("data-dest=\"TELERAD\">TELERAD: queued 2"), std::string::npos) << html.substr(0, 4000);
    EXPECT_NE(html.find("data-value=\"2\">2 objects still stored."), std::string::npos);
  }
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
