// Tests for the audit record of CLI actions (router/cli/cli_audit.h) and
// destination names on the command line (router/cli/dest_name.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "router/cli/cli_audit.h"
#include "router/cli/dest_name.h"
#include "router/record/audit.h"

namespace relais::router {
namespace {

using ::testing::HasSubstr;

TEST(DestNameTest, ExactThenCaseInsensitiveElseNamesTheKnownOnes) {
  const std::set<std::string> known = {"TELERAD", "archive"};
  EXPECT_EQ(*MatchDestinationName("TELERAD", known), "TELERAD");
  EXPECT_EQ(*MatchDestinationName("telerad", known), "TELERAD");
  EXPECT_EQ(*MatchDestinationName("Archive", known), "archive");
  Result<std::string> r = MatchDestinationName("pacs", known);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);  // exit 2
  EXPECT_EQ(r.status().message(), "no destination 'pacs' (known: TELERAD, archive)");
  // Two names that differ only in case: the exact one, or none.
  const std::set<std::string> twins = {"Pacs", "PACS"};
  EXPECT_EQ(*MatchDestinationName("PACS", twins), "PACS");
  EXPECT_FALSE(MatchDestinationName("pacs", twins).ok());
}

TEST(CliAuditTest, ListsAreBoundedWithACount) {
  std::vector<std::string> many;
  for (int i = 0; i < 25; ++i) many.push_back("1.2." + std::to_string(i));
  std::string text = CliAuditList(many);
  EXPECT_THAT(text, HasSubstr("1.2.19,... (5 more)"));
  EXPECT_EQ(text.find("1.2.20"), std::string::npos);
  EXPECT_EQ(CliAuditList({"a", "b"}), "a,b");
}

TEST(CliAuditTest, RecordNamesTheOsUserTheSelectorAndTheUidsAndTheChainVerifies) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("relais_cli_audit_" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/audit.jsonl";
  {
    auto serve = AuditLog::Open(path);  // another writer holds the file open meanwhile
    ASSERT_TRUE(serve.ok());
    ASSERT_TRUE((*serve)->Record("object", {{"uid", "1.2.3"}}));
    ::setenv("SUDO_USER", "alice", 1);
    SetCliAuditPath(path);
    EXPECT_TRUE(
        RecordCliAction({"queue purge", "--dest TELERAD", "ok", "purged 2 rows", 2, {"1.2.3", "1.2.4"}, {"P1"}}));
    SetCliAuditPath("");
    ::unsetenv("SUDO_USER");
    ASSERT_TRUE((*serve)->Record("object", {{"uid", "1.2.5"}}));
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const CliActor me = CurrentCliActor();
  EXPECT_THAT(text, HasSubstr("\"kind\":\"cli\",\"user\":\"" + me.user + "\",\"uid\":\"" + std::to_string(getuid()) +
                              "\",\"sudo_user\":\"alice\",\"action\":\"queue purge\",\"selector\":\"--dest TELERAD\","
                              "\"result\":\"ok\",\"count\":\"2\",\"detail\":\"purged 2 rows\",\"uids\":\"1.2.3,1.2.4\","
                              "\"patient_ids\":\"P1\""));
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bad_line, 0u) << r->error << "\n" << text;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace relais::router
