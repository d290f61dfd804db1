// Access control (issue 6) against DCMTK's echoscu/storescu: an allow-list
// of calling AE titles bound to addresses, and DICOM user identity
// negotiation (PS3.7 D.3.3.7). Refused associations get an
// A-ASSOCIATE-RJ (never a silent acceptance), are logged and audited.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.h"

namespace relais::itest {
namespace {

// SHA-256 of "s3cret" (printf %s s3cret | sha256sum).
constexpr char kS3cretSha256[] = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

RunResult Echo(uint16_t port, const std::string& calling, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {"echoscu", "-aet", calling, "-aec", "RELAIS"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("127.0.0.1");
  argv.push_back(std::to_string(port));
  return RunCommand(argv, 60);
}

TEST(AccessControlTest, AllowListBindsCallingAeTitlesToAddresses) {
  TempDir tmp;
  RelaisOptions o;
  o.extra = "\n[audit]\npath = \"" + (tmp / "audit.jsonl") + "\"\n";
  RelaisProcess relais(tmp.path(), o);
  // [[listener.allow]] entries belong to [listener]: append them after it.
  std::string cfg = ReadFile(relais.config_path());
  cfg +=
      "\n[[listener.allow]]\ncalling_ae = \"CT1\"\nfrom = \"127.0.0.0/8\"\n"
      "[[listener.allow]]\ncalling_ae = \"MR1\"\nfrom = \"10.9.0.0/16\"\n";
  WriteFile(relais.config_path(), cfg);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  RunResult ok = Echo(relais.port(), "CT1");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  RunResult stranger = Echo(relais.port(), "STRANGER");
  EXPECT_NE(stranger.exit_code, 0);
  EXPECT_NE(stranger.output.find("Association Rejected"), std::string::npos) << stranger.output;
  EXPECT_NE(stranger.output.find("Calling AE Title Not Recognized"), std::string::npos) << stranger.output;
  RunResult wrong_place = Echo(relais.port(), "MR1");  // allowed, but only from 10.9.0.0/16
  EXPECT_NE(wrong_place.exit_code, 0);
  EXPECT_NE(wrong_place.output.find("Association Rejected"), std::string::npos) << wrong_place.output;

  std::string log = relais.Log();
  EXPECT_NE(log.find("calling AE title 'STRANGER' from 127.0.0.1 is not in [[listener.allow]]"), std::string::npos)
      << log;
  EXPECT_NE(log.find("calling AE title 'MR1' is not allowed from 127.0.0.1"), std::string::npos) << log;
  std::string audit = ReadFile(tmp / "audit.jsonl");
  EXPECT_NE(audit.find("\"calling_ae\":\"STRANGER\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"result\":\"rejected\""), std::string::npos) << audit;
  EXPECT_EQ(relais.Terminate(), 0);
}

TEST(AccessControlTest, UserIdentityIsRequiredAndChecked) {
  TempDir tmp;
  RelaisProcess relais(tmp.path());
  std::string cfg = ReadFile(relais.config_path());
  cfg += std::string("\n[[listener.user]]\nusername = \"modality\"\npasscode_sha256 = \"") + kS3cretSha256 + "\"\n";
  WriteFile(relais.config_path(), cfg);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // (echoscu has no user identity options; storescu has.)
  const std::string file = CorpusDir() + "/pydicom__CT_small.dcm";
  auto store = [&](const std::vector<std::string>& identity) {
    std::vector<std::string> argv = {"storescu", "-aet", "CT1", "-aec", "RELAIS"};
    argv.insert(argv.end(), identity.begin(), identity.end());
    argv.insert(argv.end(), {"127.0.0.1", std::to_string(relais.port()), file});
    return RunCommand(argv, 60);
  };
  // -rsp: storescu insists on the positive response (PS3.7 D.3.3.7.2).
  RunResult stored = store({"-usr", "modality", "-pwd", "s3cret", "-rsp"});
  EXPECT_EQ(stored.exit_code, 0) << stored.output;
  EXPECT_EQ(relais.StoreList().size(), 1u);

  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {}, {"-usr", "modality", "-pwd", "wrong"}, {"-usr", "nobody", "-pwd", "s3cret"}, {"-usr", "modality"}}) {
    RunResult r = store(bad);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("Association Rejected"), std::string::npos) << r.output;
  }
  std::string log = relais.Log();
  EXPECT_NE(log.find("wrong passcode for user 'modality'"), std::string::npos) << log;
  EXPECT_NE(log.find("unknown user 'nobody'"), std::string::npos) << log;
  EXPECT_NE(log.find("no user identity"), std::string::npos) << log;
  EXPECT_EQ(log.find("s3cret"), std::string::npos) << "a passcode reached the log";
  EXPECT_EQ(relais.Terminate(), 0);
}

}  // namespace
}  // namespace relais::itest
