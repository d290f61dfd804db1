// The audit trail that cannot be written ([audit] on_failure): the audit
// file lives on a small tmpfs the test fills up. With "refuse" (the
// default) intake answers 0xA700 and never acknowledges an object whose
// audit record failed, then resumes by itself once space is freed; with
// "continue" objects are received unaudited and the failure is logged.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>

#include "harness.h"
#include "tmpfs.h"

namespace relais::itest {
namespace {

constexpr int kObjects = 24;

struct Fixture {
  TempDir dir;
  std::vector<std::string> files, uids;
  std::string filler;
};

// Copies of CT_small under dir/objects.
bool MakeObjects(Fixture* s, int count) {
  std::string src = s->dir / "objects";
  ::mkdir(src.c_str(), 0755);
  s->files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, count, &s->uids);
  return s->files.size() == static_cast<size_t>(count);
}

std::string AuditConfig(const std::string& path, const std::string& on_failure) {
  std::string c = "\n[audit]\npath = \"" + path + "\"\n";
  if (!on_failure.empty()) c += "on_failure = \"" + on_failure + "\"\n";
  return c;
}

std::map<std::string, StorescuOutcome> Send(uint16_t port, const std::vector<std::string>& files, std::string* output) {
  std::vector<std::string> argv = {"storescu", "-d", "-nh", "-aec", "RELAIS", "127.0.0.1", std::to_string(port)};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 300);
  *output = r.output;
  return ParseStorescuOutcomes(r.output);
}

TEST(AuditFailureTest, RefuseModeAnswersOutOfResourcesWhileTheTrailFailsAndResumes) {
  Fixture s;
  TmpfsMount fs(s.dir / "auditfs", "1m");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (" << fs.error() << "): this test needs root (CI has it)";
  ASSERT_TRUE(MakeObjects(&s, kObjects + 3));
  RelaisOptions options;
  options.extra = AuditConfig(s.dir / "auditfs/audit.jsonl", "");  // the default: refuse
  RelaisProcess relais(s.dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // The audit file's disk fills up.
  const std::string filler = s.dir / "auditfs/filler.bin";
  WriteFiller(filler, SIZE_MAX);
  std::vector<std::string> first(s.files.begin(), s.files.begin() + kObjects);
  std::string out;
  std::map<std::string, StorescuOutcome> outcomes = Send(relais.port(), first, &out);
  ASSERT_TRUE(relais.running()) << relais.Log();
  // A few records may still fit in the audit file's last page; from the
  // first failed record on, nothing is acknowledged.
  int refused = 0;
  for (const std::string& f : first) {
    const StorescuOutcome& o = outcomes[f];
    ASSERT_TRUE(o.sent) << f << ": " << o.reason << "\n" << out;
    if (refused > 0) {
      EXPECT_FALSE(o.acknowledged) << f << " acknowledged after a refusal\n" << out;
    }
    if (!o.acknowledged) {
      ++refused;
      EXPECT_EQ(o.status, 0xA700) << f << ": " << o.response << "\n" << out;
    }
  }
  ASSERT_GT(refused, 0) << "the audit trail never failed\n" << out << relais.Log();
  std::string log = relais.Log();
  EXPECT_NE(log.find("event=audit-write-failed"), std::string::npos) << log;
  EXPECT_NE(log.find("audit trail cannot be written"), std::string::npos) << log;

  // C-ECHO still answers; the refusal goes on on a new association.
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(echo.exit_code, 0) << echo.output;
  std::map<std::string, StorescuOutcome> again = Send(relais.port(), std::vector<std::string>{s.files[kObjects]}, &out);
  EXPECT_EQ(again[s.files[kObjects]].status, 0xA700) << out;

  // Space freed: the same relais takes objects again (the refusal that
  // probes the trail may cost one more 0xA700), and they are audited.
  ASSERT_EQ(::unlink(filler.c_str()), 0);
  std::vector<std::string> last(s.files.begin() + kObjects + 1, s.files.end());
  std::map<std::string, StorescuOutcome> resumed = Send(relais.port(), last, &out);
  EXPECT_TRUE(resumed[last.back()].acknowledged) << out << relais.Log();
  std::string trail = ReadFile(s.dir / "auditfs/audit.jsonl");
  EXPECT_NE(trail.find(s.uids.back()), std::string::npos) << "the object received after the failure is not audited";
  // The trail still verifies: the torn record is ended and said so.
  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", s.dir / "auditfs/audit.jsonl"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output << trail;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

TEST(AuditFailureTest, ContinueModeReceivesUnauditedAndLogsIt) {
  Fixture s;
  TmpfsMount fs(s.dir / "auditfs", "1m");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (" << fs.error() << "): this test needs root (CI has it)";
  ASSERT_TRUE(MakeObjects(&s, kObjects));
  RelaisOptions options;
  options.extra = AuditConfig(s.dir / "auditfs/audit.jsonl", "continue");
  RelaisProcess relais(s.dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  WriteFiller(s.dir / "auditfs/filler.bin", SIZE_MAX);
  std::string out;
  std::map<std::string, StorescuOutcome> outcomes = Send(relais.port(), s.files, &out);
  for (const std::string& f : s.files) EXPECT_TRUE(outcomes[f].acknowledged) << f << "\n" << out;
  std::string log = relais.Log();
  EXPECT_NE(log.find("event=audit-write-failed"), std::string::npos) << log;
  EXPECT_EQ(relais.StoreList().size(), s.files.size());
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
