// The audit trail end to end (issue 5): a real `relais serve` with
// [audit] path = "audit.jsonl" records an accepted and a rejected
// association, the object received and its delivery to a storescp; the file
// verifies with `relais audit verify`, and editing one line makes it fail
// at that line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

// Index of the first line with kind `kind` and every key=value of `want`; -1 if none.
int FindRecord(const std::vector<std::string>& lines, const std::string& kind,
               const std::vector<std::pair<std::string, std::string>>& want) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (JsonField(lines[i], "kind") != kind) continue;
    bool all = true;
    for (const auto& [k, v] : want) all = all && JsonField(lines[i], k) == v;
    if (all) return static_cast<int>(i);
  }
  return -1;
}

TEST(AuditTrailTest, AssociationsObjectAndDeliveryAreRecordedAndAnEditIsFound) {
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  StorescpOptions opts;
  opts.ae_title = "ARCHIVE";
  StorescpPeer peer(tmp / "peer", opts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer.port()) + "\n\n[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n");
  RelaisOptions options;
  // A relative audit path: next to the configuration file.
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n\n[audit]\npath = \"audit.jsonl\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string config_dir = relais.config_path().substr(0, relais.config_path().rfind('/'));
  const std::string audit = config_dir + "/audit.jsonl";

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", 1, &uids);
  ASSERT_EQ(files.size(), 1u);
  RunResult ok = RunCommand({"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1",
                             std::to_string(relais.port()), files[0]}, 60);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  RunResult wrong = RunCommand({"storescu", "-aet", "MODALITY2", "-aec", "WRONG", "127.0.0.1",
                                std::to_string(relais.port()), files[0]}, 60);
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;

  // Wait for the delivery's record (written when the attempt is recorded).
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && ReadFile(audit).find("\"kind\":\"delivery\"") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(peer.Received().count(uids[0]), 1u) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  std::vector<std::string> lines = SplitLines(ReadFile(audit));
  ASSERT_GE(lines.size(), 6u) << ReadFile(audit);
  EXPECT_EQ(JsonField(lines[0], "kind"), "segment");
  EXPECT_EQ(JsonField(lines[0], "reason"), "new_file");
  EXPECT_GE(FindRecord(lines, "rules", {{"action", "load"}, {"result", "ok"}, {"path", rules}}), 0);

  int accepted = FindRecord(lines, "association", {{"calling_ae", "MODALITY1"}, {"called_ae", "RELAIS"},
                                                    {"result", "accepted"}});
  ASSERT_GE(accepted, 0) << ReadFile(audit);
  EXPECT_THAT(JsonField(lines[accepted], "peer"), StartsWith("127.0.0.1:"));

  int rejected = FindRecord(lines, "association", {{"calling_ae", "MODALITY2"}, {"called_ae", "WRONG"},
                                                    {"result", "rejected"}});
  ASSERT_GE(rejected, 0) << ReadFile(audit);
  EXPECT_THAT(JsonField(lines[rejected], "reason"), HasSubstr("called AE title 'WRONG' is not ours"));

  int object = FindRecord(lines, "object", {{"sop_instance_uid", uids[0]}, {"result", "stored"},
                                             {"calling_ae", "MODALITY1"}, {"to", "archive"}});
  ASSERT_GE(object, 0) << ReadFile(audit);
  EXPECT_NE(JsonField(lines[object], "patient_id"), "");
  EXPECT_NE(JsonField(lines[object], "study_instance_uid"), "");

  int delivery = FindRecord(lines, "delivery", {{"sop_instance_uid", uids[0]}, {"destination", "archive"},
                                                 {"result", "success"}, {"status", "0x0000"}});
  ASSERT_GE(delivery, 0) << ReadFile(audit);
  EXPECT_EQ(JsonField(lines[delivery], "patient_id"), JsonField(lines[object], "patient_id"));
  EXPECT_EQ(JsonField(lines[delivery], "study_instance_uid"), JsonField(lines[object], "study_instance_uid"));
  EXPECT_THAT(JsonField(lines[delivery], "association"), HasSubstr("ARCHIVE"));

  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr("OK: " + std::to_string(lines.size()) + " records"));

  // An auditor-unfriendly edit: the object went to another patient.
  std::string& line = lines[object];
  std::string pid = "\"patient_id\":\"" + JsonField(line, "patient_id") + "\"";
  line.replace(line.find(pid), pid.size(), "\"patient_id\":\"SOMEONE-ELSE\"");
  std::string edited;
  for (const std::string& l : lines) edited += l + "\n";
  WriteFile(audit, edited);
  verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr(audit + ":" + std::to_string(object + 1) + ": hash does not match"));
}

}  // namespace
}  // namespace relais::itest
