// Tests for the appliance configuration loader (rules/rules.h).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rules/rules.h"

namespace relais::rules {
namespace {

using ::testing::HasSubstr;

// Returns the error message of a failed parse (fails the test on success).
std::string ErrorOf(const std::string& text) {
  Result<AppConfig> r = ParseAppConfig(text, "relais.toml");
  EXPECT_FALSE(r.ok()) << "parsed although it should not:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

constexpr char kMinimal[] =
    "[listener]\n"
    "ae_title = \"RELAIS\"\n"
    "[store]\n"
    "path = \"/var/lib/relais\"\n";

TEST(ConfigTest, FullFileParses) {
  const std::string text =
      "# Relais appliance\n"
      "[listener]\n"
      "ae_title = \"RELAIS_SCP\"\n"
      "host = \"::1\"\n"
      "port = 104\n"
      "max_associations = 32\n"
      "max_pdu = 65536\n"
      "artim_timeout_s = 10\n"
      "idle_timeout_s = 600\n"
      "drain_timeout_s = 45\n"
      "accept_unknown_sop_classes = false\n"
      "\n"
      "[store]\n"
      "path = \"/srv/relais\"\n"
      "max_size = \"10 MiB\"\n"
      "compression_level = -3\n"
      "compression_threads = 4\n"
      "\n"
      "[log]\n"
      "level = \"debug\"\n"
      "\n"
      "[rules]\n"
      "path = \"/etc/relais/rules.toml\"\n";
  Result<AppConfig> r = ParseAppConfig(text, "/etc/relais/relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const AppConfig& c = *r;
  EXPECT_EQ(c.source_path, "/etc/relais/relais.toml");
  EXPECT_EQ(c.listener.ae_title, "RELAIS_SCP");
  EXPECT_EQ(c.listener.host, "::1");
  EXPECT_EQ(c.listener.port, 104);
  EXPECT_EQ(c.listener.max_associations, 32u);
  EXPECT_EQ(c.listener.max_pdu, 65536u);
  EXPECT_EQ(c.listener.artim_timeout_s, 10u);
  EXPECT_EQ(c.listener.idle_timeout_s, 600u);
  EXPECT_EQ(c.listener.drain_timeout_s, 45u);
  EXPECT_FALSE(c.listener.accept_unknown_sop_classes);
  EXPECT_EQ(c.store.path, "/srv/relais");
  EXPECT_EQ(c.store.max_size, 10u << 20);
  EXPECT_EQ(c.store.compression_level, -3);
  EXPECT_FALSE(c.store.compression_auto);
  EXPECT_EQ(c.store.compression_threads, 4);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.rules_path, "/etc/relais/rules.toml");
}

TEST(ConfigTest, MinimalFileGetsDefaults) {
  Result<AppConfig> r = ParseAppConfig(kMinimal, "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const AppConfig& c = *r;
  ListenerConfig defaults;
  EXPECT_EQ(c.listener.ae_title, "RELAIS");
  EXPECT_EQ(c.listener.host, defaults.host);
  EXPECT_EQ(c.listener.port, defaults.port);
  EXPECT_EQ(c.listener.max_pdu, defaults.max_pdu);
  EXPECT_EQ(c.store.max_size, 64ull << 30);
  EXPECT_EQ(c.store.compression_level, 1);
  EXPECT_TRUE(c.store.compression_auto);
  EXPECT_EQ(c.store.compression_level_min, -1);
  EXPECT_EQ(c.store.compression_level_max, 1);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.rules_path, "");
}

TEST(ConfigTest, SizesAcceptUnits) {
  struct Case {
    const char* value;
    uint64_t bytes;
  } cases[] = {
      {"1048576", 1048576},        {"\"64GiB\"", 64ull << 30}, {"\"500MB\"", 500'000'000},
      {"\"10 MiB\"", 10ull << 20}, {"\"2tib\"", 2ull << 40},   {"\"1.5 GiB\"", (3ull << 30) / 2},
      {"\"2000000 B\"", 2000000},
  };
  for (const Case& c : cases) {
    std::string text = std::string(kMinimal) + "max_size = " + c.value + "\n";
    Result<AppConfig> r = ParseAppConfig(text, "relais.toml");
    ASSERT_TRUE(r.ok()) << c.value << ": " << r.status().ToString();
    EXPECT_EQ(r->store.max_size, c.bytes) << c.value;
  }
}

TEST(ConfigTest, BadSizesAreRejected) {
  // Line 5 is the max_size line; the value starts at column 12.
  for (const char* v :
       {"\"64 GiBs\"", "\"GiB\"", "\"-5MB\"", "\"1.5 B\"", "\"99999999999999999999\"", "\"20000000 TiB\""}) {
    std::string err = ErrorOf(std::string(kMinimal) + "max_size = " + v + "\n");
    EXPECT_THAT(err, HasSubstr("relais.toml:5:12: store.max_size must be a size")) << v;
  }
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "max_size = 1000\n"),
            "relais.toml:5:12: store.max_size must be at least 1048576 bytes (1MiB), got 1000");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "max_size = -1\n"),
            "relais.toml:5:12: store.max_size must be at least 1048576 bytes (1MiB), got -1");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "max_size = 1.5\n"),
              HasSubstr("relais.toml:5:12: store.max_size must be an integer (bytes) or a size string"));
}

TEST(ConfigTest, UnknownKeySuggestsClosest) {
  const std::string text =
      "[listener]\n"
      "ae_title = \"RELAIS\"\n"
      "  max_pud = 65536\n"
      "[store]\n"
      "path = \"/x\"\n";
  EXPECT_EQ(ErrorOf(text), "relais.toml:3:3: unknown key 'max_pud' in [listener], did you mean 'max_pdu'?");
}

TEST(ConfigTest, UnknownKeyFarFromAnyListsKnownKeys) {
  std::string err = ErrorOf(std::string(kMinimal) + "zzzzzzzzzzzz = 1\n");
  EXPECT_THAT(err, HasSubstr("relais.toml:5:1: unknown key 'zzzzzzzzzzzz' in [store] (known: path, max_size, "));
}

TEST(ConfigTest, UnknownTableSuggestsClosest) {
  std::string err = ErrorOf(std::string(kMinimal) + "[lgo]\nlevel = \"info\"\n");
  EXPECT_EQ(err, "relais.toml:5:2: unknown table [lgo], did you mean 'log'?");
}

TEST(ConfigTest, WrongTypeNamesKeyAndTypes) {
  const std::string text =
      "[listener]\n"
      "ae_title = \"RELAIS\"\n"
      "port = \"104\"\n"
      "[store]\n"
      "path = \"/x\"\n";
  EXPECT_EQ(ErrorOf(text), "relais.toml:3:8: listener.port must be an integer, got string");
}

TEST(ConfigTest, EveryWrongTypeIsReported) {
  const std::string text =
      "[listener]\n"
      "ae_title = 5\n"                          // 2:12
      "host = 127\n"                            // 3:8
      "accept_unknown_sop_classes = \"yes\"\n"  // 4:30
      "[store]\n"
      "path = [\"/x\"]\n"          // 6:8
      "compression_level = 1.0\n"  // 7:21
      "[log]\n"
      "level = true\n";  // 9:9
  EXPECT_EQ(ErrorOf(text),
            "relais.toml:2:12: listener.ae_title must be a string, got integer\n"
            "relais.toml:3:8: listener.host must be a string, got integer\n"
            "relais.toml:4:30: listener.accept_unknown_sop_classes must be a boolean, got string\n"
            "relais.toml:6:8: store.path must be a string, got array\n"
            "relais.toml:7:21: store.compression_level must be an integer, got float\n"
            "relais.toml:9:9: log.level must be a string, got boolean");
}

TEST(ConfigTest, OutOfRangeNamesKeyAndRange) {
  struct Case {
    const char* line;
    const char* message;
  } cases[] = {
      {"port = 0", "relais.toml:3:8: listener.port must be between 1 and 65535, got 0"},
      {"port = 70000", "relais.toml:3:8: listener.port must be between 1 and 65535, got 70000"},
      {"max_associations = 10001",
       "relais.toml:3:20: listener.max_associations must be between 1 and 10000, got 10001"},
      {"max_pdu = 4095", "relais.toml:3:11: listener.max_pdu must be between 4096 and 16777216, got 4095"},
      {"max_pdu = 16777217", "relais.toml:3:11: listener.max_pdu must be between 4096 and 16777216, got 16777217"},
      {"artim_timeout_s = 0", "relais.toml:3:19: listener.artim_timeout_s must be between 1 and 3600, got 0"},
      {"idle_timeout_s = 86401", "relais.toml:3:18: listener.idle_timeout_s must be between 1 and 86400, got 86401"},
      {"port = -9223372036854775808",
       "relais.toml:3:8: listener.port must be between 1 and 65535, got -9223372036854775808"},
  };
  for (const Case& c : cases) {
    std::string text = std::string("[listener]\nae_title = \"A\"\n") + c.line + "\n[store]\npath = \"/x\"\n";
    EXPECT_EQ(ErrorOf(text), c.message) << c.line;
  }
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "compression_level = \"fast\"\n"),
            "relais.toml:5:21: store.compression_level must be \"auto\" or an integer between -7 and 19, got \"fast\"");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "compression_level_min = 4\n"),
            "relais.toml:5:25: store.compression_level_min (4) must not be above store.compression_level_max (1)");
  {
    Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) +
                                             "compression_level = \"auto\"\ncompression_level_min = -7\n"
                                             "compression_level_max = 9\n",
                                         "relais.toml");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->store.compression_auto);
    EXPECT_EQ(r->store.compression_level_min, -7);
    EXPECT_EQ(r->store.compression_level_max, 9);
  }
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "compression_level = 20\n"),
            "relais.toml:5:21: store.compression_level must be between -7 and 19, got 20");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "compression_level = -8\n"),
            "relais.toml:5:21: store.compression_level must be between -7 and 19, got -8");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "compression_threads = 65\n"),
            "relais.toml:5:23: store.compression_threads must be between 1 and 64, got 65");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[log]\nlevel = \"warning\"\n"),
            "relais.toml:6:9: log.level must be one of debug, info, warn, error, got 'warning', "
            "did you mean 'warn'?");
}

TEST(ConfigTest, AeTitleRules) {
  struct Case {
    const char* value;
    const char* why;  // nullptr: valid
  } cases[] = {
      {"\"A\"", nullptr},
      {"\"SIXTEEN_CHARS_AE\"", nullptr},
      {"\" AE WITH SPACE\"", nullptr},
      {"\"\"", "must be 1-16 characters, got 0"},
      {"\"SEVENTEEN_CHARS_A\"", "must be 1-16 characters, got 17"},
      {"\"A\\\\B\"", "must not contain a backslash"},
      {"\"A\\tB\"", "must contain only printable ASCII characters"},
      {"\"A\\u00e9\"", "must contain only printable ASCII characters"},
      {"\"    \"", "must not be all spaces"},
  };
  for (const Case& c : cases) {
    std::string text = std::string("[listener]\nae_title = ") + c.value + "\n[store]\npath = \"/x\"\n";
    Result<AppConfig> r = ParseAppConfig(text, "relais.toml");
    if (c.why == nullptr) {
      EXPECT_TRUE(r.ok()) << c.value << ": " << r.status().ToString();
    } else {
      ASSERT_FALSE(r.ok()) << c.value;
      EXPECT_EQ(r.status().message(), std::string("relais.toml:2:12: listener.ae_title ") + c.why + " (PS3.5 AE)")
          << c.value;
    }
  }
}

TEST(ConfigTest, HostMustBeIpLiteral) {
  for (const char* ok : {"0.0.0.0", "127.0.0.1", "::", "fe80::1", "::ffff:10.0.0.1"}) {
    std::string text = std::string(kMinimal) + "[log]\n";
    text = std::string("[listener]\nae_title = \"A\"\nhost = \"") + ok + "\"\n[store]\npath = \"/x\"\n";
    EXPECT_TRUE(ParseAppConfig(text, "relais.toml").ok()) << ok;
  }
  for (const char* bad : {"localhost", "256.1.1.1", "1.2.3", "", "10.0.0.1:104", "[::1]"}) {
    std::string text = std::string("[listener]\nae_title = \"A\"\nhost = \"") + bad + "\"\n[store]\npath = \"/x\"\n";
    EXPECT_THAT(ErrorOf(text), HasSubstr("relais.toml:3:8: listener.host must be an IPv4 or IPv6 literal")) << bad;
  }
}

TEST(ConfigTest, MissingRequiredKeyPointsAtItsTable) {
  const std::string text =
      "[log]\n"
      "level = \"info\"\n"
      "\n"
      "[listener]\n"
      "port = 104\n"
      "[store]\n"
      "path = \"/x\"\n";
  EXPECT_EQ(ErrorOf(text), "relais.toml:4:1: missing required key 'ae_title' in [listener]");
}

TEST(ConfigTest, MissingRequiredTableIsReported) {
  EXPECT_EQ(ErrorOf("[listener]\nae_title = \"A\"\n"), "relais.toml:1:1: missing required table [store]");
}

TEST(ConfigTest, NonTableSectionIsReported) {
  EXPECT_EQ(ErrorOf("log = \"debug\"\n" + std::string(kMinimal)), "relais.toml:1:7: log must be a table, got string");
}

TEST(ConfigTest, SeveralErrorsAreAllReportedInFileOrder) {
  const std::string text =
      "[listener]\n"
      "ae_title = \"THIS_AE_TITLE_IS_TOO_LONG\"\n"
      "port = 0\n"
      "max_pud = 1\n"
      "[store]\n"
      "compression_level = \"fast\"\n"
      "[lgo]\n";
  EXPECT_EQ(ErrorOf(text),
            "relais.toml:2:12: listener.ae_title must be 1-16 characters, got 25 (PS3.5 AE)\n"
            "relais.toml:3:8: listener.port must be between 1 and 65535, got 0\n"
            "relais.toml:4:1: unknown key 'max_pud' in [listener], did you mean 'max_pdu'?\n"
            "relais.toml:5:1: missing required key 'path' in [store]\n"
            "relais.toml:6:21: store.compression_level must be \"auto\" or an integer between -7 and 19, got \"fast\"\n"
            "relais.toml:7:2: unknown table [lgo], did you mean 'log'?");
}

TEST(ConfigTest, RelativePathsResolveAgainstConfigDirectory) {
  const std::string text =
      "[listener]\nae_title = \"A\"\n[store]\npath = \"data/store\"\n[rules]\npath = \"../rules.toml\"\n";
  Result<AppConfig> r = ParseAppConfig(text, "/etc/relais/relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->store.path, "/etc/relais/data/store");
  EXPECT_EQ(r->rules_path, "/etc/rules.toml");
  // No directory in the name: relative to the working directory, unchanged.
  r = ParseAppConfig(text, "relais.toml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->store.path, "data/store");
}

TEST(ConfigTest, RulesTableRejectsUnknownKeys) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[rules]\npaht = \"r.toml\"\n"),
            "relais.toml:5:1: missing required key 'path' in [rules]\n"
            "relais.toml:6:1: unknown key 'paht' in [rules], did you mean 'path'?");
}

TEST(ConfigTest, RulesCompileBudget) {
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) + "[rules]\npath = \"r.toml\"\n", "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rules_max_regex_memory, 128u << 20);
  EXPECT_EQ(r->rules_max_compile_s, 10u);
  r = ParseAppConfig(
      std::string(kMinimal) + "[rules]\npath = \"r.toml\"\nmax_regex_memory = \"1GiB\"\nmax_compile_time = \"2m\"\n",
      "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rules_max_regex_memory, 1u << 30);
  EXPECT_EQ(r->rules_max_compile_s, 120u);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "[rules]\npath = \"r.toml\"\nmax_regex_memory = \"1KiB\"\nmax_compile_time = \"2h\"\n"),
            "relais.toml:7:20: rules.max_regex_memory must be at least 1048576 bytes (1MiB), got '1KiB'\n"
            "relais.toml:8:20: rules.max_compile_time must be 1s-1h");
}

TEST(ConfigTest, AuditTableIsOptionalAndResolvesItsPath) {
  Result<AppConfig> r = ParseAppConfig(kMinimal, "/etc/relais/relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->audit.path, "");  // no [audit]: no audit trail
  r = ParseAppConfig(std::string(kMinimal) + "[audit]\npath = \"audit.jsonl\"\n", "/etc/relais/relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->audit.path, "/etc/relais/audit.jsonl");
  r = ParseAppConfig(std::string(kMinimal) + "[audit]\npath = \"/var/log/relais/audit.jsonl\"\n", "relais.toml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->audit.path, "/var/log/relais/audit.jsonl");
}

TEST(ConfigTest, AuditTableRejectsEmptyPathAndUnknownKeys) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[audit]\npath = \"\"\n"), "relais.toml:6:8: audit.path must not be empty");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[audit]\npaht = \"a.jsonl\"\n"),
            "relais.toml:5:1: missing required key 'path' in [audit]\n"
            "relais.toml:6:1: unknown key 'paht' in [audit], did you mean 'path'?");
}

TEST(ConfigTest, AdminTableWithTokens) {
  const std::string h(64, 'a');
  Result<AppConfig> r = ParseAppConfig(kMinimal, "relais.toml");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->admin.enabled);  // no [admin]: no admin API
  r = ParseAppConfig(std::string(kMinimal) +
                         "[admin]\nport = 9000\n"
                         "[[admin.token]]\nname = \"nagios\"\nrole = \"viewer\"\nsha256 = \"" +
                         h +
                         "\"\n"
                         "[[admin.token]]\nname = \"pacs-admin\"\nrole = \"admin\"\nsha256 = \"" +
                         h + "\"\n",
                     "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->admin.enabled);
  EXPECT_EQ(r->admin.host, "127.0.0.1");  // loopback unless told otherwise
  EXPECT_EQ(r->admin.port, 9000);
  ASSERT_EQ(r->admin.tokens.size(), 2u);
  EXPECT_EQ(r->admin.tokens[0].name, "nagios");
  EXPECT_EQ(r->admin.tokens[0].role, "viewer");
  EXPECT_EQ(r->admin.tokens[1].role, "admin");
  EXPECT_EQ(r->admin.tokens[1].sha256, h);
}

TEST(ConfigTest, AdminTableRejectsBadTokens) {
  std::string err = ErrorOf(std::string(kMinimal) +
                            "[admin]\nhost = \"localhost\"\n"
                            "[[admin.token]]\nname = \"a\"\nrole = \"root\"\nsha256 = \"abc\"\n"
                            "[[admin.token]]\nname = \"a\"\nsha256 = \"" +
                            std::string(64, 'F') + "\"\n");
  EXPECT_THAT(err, HasSubstr("relais.toml:6:8: admin.host must be an IPv4 or IPv6 literal"));
  EXPECT_THAT(err, HasSubstr("relais.toml:9:8: admin.token.role must be one of"));
  EXPECT_THAT(err, HasSubstr("relais.toml:10:10: admin.token.sha256 must be the token's SHA-256"));
  EXPECT_THAT(err, HasSubstr("missing required key 'role'"));
  EXPECT_THAT(err, HasSubstr("relais.toml:12:8: admin.token name 'a' is used twice"));
  EXPECT_THAT(err, HasSubstr("relais.toml:13:10: admin.token.sha256 must be"));  // upper case is refused
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[admin]\ntoken = \"secret\"\n"),
              HasSubstr("admin.token must be an array of tables"));
}

TEST(ConfigTest, StoreWaterMarks) {
  Result<AppConfig> r = ParseAppConfig(kMinimal, "relais.toml");
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->store.high_water, 0.90);
  EXPECT_DOUBLE_EQ(r->store.low_water, 0.80);
  r = ParseAppConfig(std::string(kMinimal) + "high_water = \"95%\"\nlow_water = 0.5\n", "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_DOUBLE_EQ(r->store.high_water, 0.95);
  EXPECT_DOUBLE_EQ(r->store.low_water, 0.5);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "high_water = \"70%\"\nlow_water = \"80%\"\n"),
            "relais.toml:6:13: store.low_water (80%) must be below store.high_water (70%)");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "high_water = \"120%\"\n"),
              HasSubstr("relais.toml:5:14: store.high_water must be a percentage such as \"90%\""));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "high_water = \"ninety\"\n"), HasSubstr("store.high_water must be"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "low_water = -0.1\n"), HasSubstr("store.low_water must be"));
}

TEST(ConfigTest, AuditRotationAndSyslog) {
  Result<AppConfig> r =
      ParseAppConfig(std::string(kMinimal) +
                         "[audit]\npath = \"a.jsonl\"\nrotate_size = \"100MiB\"\nsyslog = \"udp://10.0.0.9:514\"\n",
                     "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->audit.rotate_size, 100ull << 20);
  EXPECT_EQ(r->audit.syslog, "udp://10.0.0.9:514");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[audit]\npath = \"a\"\nsyslog = \"10.0.0.9:514\"\n"),
              HasSubstr("relais.toml:7:10: audit.syslog must look like udp://HOST:PORT or tcp://HOST:PORT"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[audit]\npath = \"a\"\nsyslog = \"tcp://h:0\"\n"),
              HasSubstr("audit.syslog has an invalid port '0'"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[audit]\npath = \"a\"\nsyslog = \"tcp://h:514/x\"\n"),
              HasSubstr("audit.syslog must not have a path"));
}

TEST(ConfigTest, AuditOnFailureDefaultsToRefuse) {
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) + "[audit]\npath = \"a.jsonl\"\n", "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->audit.on_failure, "refuse");
  Result<AppConfig> c =
      ParseAppConfig(std::string(kMinimal) + "[audit]\npath = \"a.jsonl\"\non_failure = \"continue\"\n", "relais.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->audit.on_failure, "continue");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[audit]\npath = \"a\"\non_failure = \"ignore\"\n"),
              HasSubstr("relais.toml:7:14: audit.on_failure must be one of refuse, continue"));
}

TEST(ConfigTest, StoreScrubRate) {
  Result<AppConfig> d = ParseAppConfig(std::string(kMinimal), "relais.toml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->store.scrub_rate, 4ull << 20);
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) + "scrub_rate = \"8MB/s\"\n", "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->store.scrub_rate, 8000000u);
  Result<AppConfig> off = ParseAppConfig(std::string(kMinimal) + "scrub_rate = 0\n", "relais.toml");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->store.scrub_rate, 0u);
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "scrub_rate = \"fast\"\n"),
              HasSubstr("relais.toml:5:14: store.scrub_rate must be a rate such as \"8MB/s\""));
}

TEST(ConfigTest, StoreHistoryRetention) {
  Result<AppConfig> d = ParseAppConfig(std::string(kMinimal), "relais.toml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->store.history_retention_s, 365u * 86400);
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) + "history_retention = \"90d\"\n", "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->store.history_retention_s, 90u * 86400);
}

TEST(ConfigTest, AlertsTable) {
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) +
                                           "[alerts]\nwebhook = \"http://127.0.0.1:9099/hook\"\n"
                                           "command = \"/usr/local/bin/page-me\"\ndestination_down = \"5m\"\n"
                                           "oldest_queued = \"1h\"\nrepeat = 0\n",
                                       "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->alerts.webhook, "http://127.0.0.1:9099/hook");
  EXPECT_EQ(r->alerts.command, "/usr/local/bin/page-me");
  EXPECT_EQ(r->alerts.destination_down_s, 300u);
  EXPECT_EQ(r->alerts.oldest_queued_s, 3600u);
  EXPECT_EQ(r->alerts.repeat_s, 0u);
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[alerts]\nwebhook = \"https://x:1/\"\ncommand = \"page-me\"\n"),
              HasSubstr("alerts.webhook must look like http://HOST:PORT[/PATH]"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[alerts]\ncommand = \"page-me\"\n"),
              HasSubstr("relais.toml:6:11: alerts.command must be an absolute path"));
}

TEST(ConfigTest, ListenerAllowListAndUsers) {
  const std::string h(64, 'b');
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) +
                                           "[[listener.allow]]\ncalling_ae = \"CT1\"\nfrom = \"10.1.2.0/24\"\n"
                                           "[[listener.allow]]\ncalling_ae = \"*\"\nfrom = \"fd00::/8\"\n"
                                           "[[listener.allow]]\ncalling_ae = \"MR1\"\n"
                                           "[[listener.user]]\nusername = \"modality\"\npasscode_sha256 = \"" +
                                           h +
                                           "\"\n"
                                           "[[listener.user]]\nusername = \"legacy\"\n",
                                       "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->listener.allow.size(), 3u);
  EXPECT_EQ(r->listener.allow[0].calling_ae, "CT1");
  EXPECT_EQ(r->listener.allow[0].from, "10.1.2.0/24");
  EXPECT_EQ(r->listener.allow[1].calling_ae, "*");
  EXPECT_EQ(r->listener.allow[2].from, "");
  ASSERT_EQ(r->listener.users.size(), 2u);
  EXPECT_EQ(r->listener.users[0].passcode_sha256, h);
  EXPECT_EQ(r->listener.users[1].passcode_sha256, "");
}

TEST(ConfigTest, ListenerAllowListRejectsBadEntries) {
  std::string err = ErrorOf(std::string(kMinimal) +
                            "[[listener.allow]]\ncalling_ae = \"CT1\"\nfrom = \"10.1.2.3/24\"\n"
                            "[[listener.allow]]\nfrom = \"300.1.1.1\"\n"
                            "[[listener.allow]]\ncalling_ae = \"A\\\\B\"\nfrom = \"10.0.0.0/33\"\nport = 4\n"
                            "[[listener.user]]\nusername = \"u\"\npasscode_sha256 = \"secret\"\n"
                            "[[listener.user]]\nusername = \"u\"\n");
  EXPECT_THAT(err, HasSubstr("relais.toml:7:8: listener.allow.from must be an IP address or a CIDR block"));
  EXPECT_THAT(err, HasSubstr("missing required key 'calling_ae'"));
  EXPECT_THAT(err, HasSubstr("relais.toml:9:8: listener.allow.from must be"));
  EXPECT_THAT(err, HasSubstr("relais.toml:11:14: listener.allow.calling_ae"));
  EXPECT_THAT(err, HasSubstr("relais.toml:12:8: listener.allow.from must be"));
  EXPECT_THAT(err, HasSubstr("relais.toml:13:1: unknown key 'port' in [listener.allow]"));
  EXPECT_THAT(err, HasSubstr("relais.toml:16:19: listener.user.passcode_sha256 must be the passcode's SHA-256"));
  EXPECT_THAT(err, HasSubstr("relais.toml:18:12: listener.user 'u' is listed twice"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "[listener.allow]\ncalling_ae = \"X\"\n"),
              HasSubstr("listener.allow must be an array of tables ([[listener.allow]])"));
}

TEST(ConfigTest, TlsTable) {
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) +
                                           "[tls]\ncertificate = \"tls/relais.crt\"\nprivate_key = \"tls/relais.key\"\n"
                                           "ca = \"/etc/ssl/hospital-ca.pem\"\nrequire_client_certificate = true\n",
                                       "/etc/relais/relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->tls.enabled);
  EXPECT_EQ(r->tls.port, 2762);
  EXPECT_EQ(r->tls.certificate, "/etc/relais/tls/relais.crt");
  EXPECT_EQ(r->tls.private_key, "/etc/relais/tls/relais.key");
  EXPECT_EQ(r->tls.ca, "/etc/ssl/hospital-ca.pem");
  EXPECT_TRUE(r->tls.require_client_certificate);
  EXPECT_EQ(r->tls.min_version, "1.2");
  std::string err = ErrorOf(std::string(kMinimal) +
                            "[tls]\nport = 11112\nrequire_client_certificate = true\nmin_version = \"1.1\"\n");
  EXPECT_THAT(err, HasSubstr("missing required key 'certificate' in [tls]"));
  EXPECT_THAT(err, HasSubstr("missing required key 'private_key' in [tls]"));
  EXPECT_THAT(err, HasSubstr("relais.toml:7:30: tls.require_client_certificate needs tls.ca"));
  EXPECT_THAT(err, HasSubstr("tls.min_version must be one of"));
  EXPECT_THAT(err, HasSubstr("tls.port (11112) must differ from listener.port"));
}

// Found by config_fuzz: toml++ quotes the offending input, newline included;
// each error must still be one FILE:LINE:COLUMN line.
TEST(ConfigTest, ParseErrorQuotingANewlineStaysOneLine) {
  std::string err = ErrorOf("[listener]\nae_title = \"A\"\naccept_unknown_sop_classes = t\n");
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  EXPECT_EQ(err.rfind("relais.toml:3:", 0), 0u) << err;
}

// Malformed TOML: a clean error at the parser's position, never a crash.
TEST(ConfigTest, UnterminatedStringIsAParseError) {
  std::string err = ErrorOf("[listener]\nae_title = \"RELAIS\n[store]\n");
  EXPECT_THAT(err, testing::StartsWith("relais.toml:2:"));
}

TEST(ConfigTest, TruncatedFilesAreCleanErrors) {
  const std::string full = std::string(kMinimal) + "[log]\nlevel = \"info\"\n";
  for (size_t n = 0; n < full.size(); ++n) {
    Result<AppConfig> r = ParseAppConfig(full.substr(0, n), "relais.toml");
    if (!r.ok()) {
      EXPECT_THAT(r.status().message(), testing::StartsWith("relais.toml:")) << n;
    }
  }
}

TEST(ConfigTest, BinaryGarbageIsACleanError) {
  std::string garbage;
  uint32_t x = 12345;
  for (int i = 0; i < 4096; ++i) {
    x = x * 1103515245 + 12345;
    garbage += static_cast<char>(x >> 24);
  }
  garbage[100] = '\0';
  EXPECT_THAT(ErrorOf(garbage), testing::MatchesRegex("relais\\.toml:[0-9]+:[0-9]+: .+"));
}

TEST(ConfigTest, FiveMegabyteFileIsRefused) {
  std::string big(5 << 20, '#');
  EXPECT_THAT(ErrorOf(big), HasSubstr("relais.toml:1:1: file is too large (5242880 bytes"));
}

TEST(ConfigTest, LargeCommentBlockBelowLimitStillParses) {
  std::string text = std::string(kMinimal);
  for (int i = 0; i < 20000; ++i) text += "# filler comment line\n";
  EXPECT_TRUE(ParseAppConfig(text, "relais.toml").ok());
}

TEST(ConfigTest, DeeplyNestedArraysAreACleanError) {
  std::string text = "x = " + std::string(10000, '[') + std::string(10000, ']') + "\n";
  EXPECT_THAT(ErrorOf(text), testing::MatchesRegex("relais\\.toml:1:[0-9]+: .+"));
}

TEST(ConfigTest, DeeplyNestedInlineTablesAreACleanError) {
  std::string text = "x = ";
  for (int i = 0; i < 10000; ++i) text += "{a=";
  text += "1";
  for (int i = 0; i < 10000; ++i) text += "}";
  EXPECT_THAT(ErrorOf(text + "\n"), testing::MatchesRegex("relais\\.toml:1:[0-9]+: .+"));
}

// The 65th part of the header, at column 2 + 2 * 64: refused before
// toml++ sees it (40,000 parts overflowed its stack).
TEST(ConfigTest, TenThousandNestedTableHeadersAreACleanError) {
  std::string header = "[a";
  for (int i = 0; i < 10000; ++i) header += ".a";
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + header + "]\nx = 1\n"),
            "relais.toml:5:130: nesting deeper than 64 levels (a [table.header] of more than 64 parts)");
}

// Regression: `relais config check` crashed (exit 139, stack overflow in
// toml++) on an 80 KB file of one dotted key with 40,000 parts.
TEST(ConfigTest, FortyThousandPartDottedKeyIsACleanError) {
  std::string key = "x";
  for (int i = 0; i < 40000; ++i) key += ".a";
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + key + " = 1\n"),
            "relais.toml:5:129: nesting deeper than 64 levels (a dotted key of more than 64 parts)");
  std::string inline_key = "x = { y";
  for (int i = 0; i < 40000; ++i) inline_key += ".a";
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + inline_key + " = 1 }\n"),
            "relais.toml:5:135: nesting deeper than 64 levels (a dotted key of more than 64 parts)");
}

TEST(ConfigTest, NestingIsCountedUpToSixtyFourLevels) {
  // 64 levels of arrays, and a 64-part key: past the scanner (toml++ then
  // parses them; they are unknown keys here).
  std::string deep = "x = " + std::string(64, '[') + std::string(64, ']') + "\n";
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + deep), HasSubstr("relais.toml:5:1: unknown"));
  std::string key = "y";
  for (int i = 1; i < 64; ++i) key += ".\"a\"";
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + key + " = 1\n"), HasSubstr("relais.toml:5:1: unknown"));
  // 65: the 65th bracket, at column 5 + 64.
  std::string deeper = "x = " + std::string(65, '[') + std::string(65, ']') + "\n";
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + deeper),
            "relais.toml:5:69: nesting deeper than 64 levels (arrays and inline tables inside each other)");
}

// Brackets, braces and dots inside strings and comments are text, not
// nesting; nor do they hide the real nesting that follows them.
TEST(ConfigTest, NestingIgnoresStringsAndComments) {
  const std::string noise = std::string(100, '[') + std::string(100, '{') + std::string(100, '.');
  std::string text = "# " + noise + "\n" + "[listener] # " + noise + "\n" + "ae_title = \"RELAIS\"\n" + "[store]\n" +
                     "path = '/var/lib/" + noise + "'\n" + "[log]\n" + "\"level\" = \"debug\" # " + noise + "\n";
  Result<AppConfig> r = ParseAppConfig(text, "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->store.path, "/var/lib/" + noise);
  // Multi-line strings (an escaped quote, closing quotes that belong to the
  // content) end where TOML says, and what follows them is counted again.
  std::string after = std::string(kMinimal) + "a = \"\"\"\n" + noise + "\\\"\"\" \"\"\"\"\"\n" +  // lines 5-6
                      "b = '''\n" + noise + "\n''''\n" +                                          // lines 7-9
                      "c = " + std::string(65, '[') + std::string(65, ']') + "\n";
  EXPECT_THAT(ErrorOf(after), HasSubstr("relais.toml:10:69: nesting deeper than 64 levels"));
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("relais_config_test_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ConfigFileTest, LoadsFileAndResolvesStorePath) {
  std::string path = (dir_ / "relais.toml").string();
  std::ofstream(path) << "[listener]\nae_title = \"A\"\n[store]\npath = \"store\"\n";
  Result<AppConfig> r = LoadAppConfig(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->source_path, path);
  EXPECT_EQ(r->store.path, (dir_ / "store").string());
}

TEST_F(ConfigFileTest, ErrorsNameTheFile) {
  std::string path = (dir_ / "relais.toml").string();
  std::ofstream(path) << "[listener]\nae_title = \"A\"\nport = 0\n[store]\npath = \"store\"\n";
  Result<AppConfig> r = LoadAppConfig(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), path + ":3:8: listener.port must be between 1 and 65535, got 0");
}

TEST_F(ConfigFileTest, MissingFileIsAClearError) {
  std::string path = (dir_ / "nope.toml").string();
  Result<AppConfig> r = LoadAppConfig(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_EQ(r.status().message(), "cannot open configuration file '" + path + "': No such file or directory");
}

TEST_F(ConfigFileTest, FiveMegabyteFileOnDiskIsRefused) {
  std::string path = (dir_ / "big.toml").string();
  std::ofstream(path) << std::string(5 << 20, 'x');
  Result<AppConfig> r = LoadAppConfig(path);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path + ":1:1: file is too large"));
}

}  // namespace
}  // namespace relais::rules

namespace relais::rules {
namespace {

TEST(ConfigDeliveryTest, DefaultsFollowTheListener) {
  Result<AppConfig> r = ParseAppConfig(kMinimal, "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->delivery.calling_ae_title, "RELAIS");
  EXPECT_EQ(r->delivery.idle_release_s, 5u);
  EXPECT_EQ(r->delivery.down_after_failures, 3u);
  EXPECT_EQ(r->delivery.retention_s, 0u);
  // Every stored object has an owner that ends (README, "Configuration").
  EXPECT_EQ(r->delivery.unrouted_retention_s, 7u * 86400);
  EXPECT_EQ(r->delivery.dead_letter_retention_s, 30u * 86400);
  EXPECT_EQ(r->delivery.dropped_retention_s, 0u);
}

TEST(ConfigDeliveryTest, EverySettingParses) {
  Result<AppConfig> r = ParseAppConfig(std::string(kMinimal) +
                                           "[delivery]\n"
                                           "calling_ae_title = \"RELAIS_OUT\"\n"
                                           "connect_timeout_s = 5\n"
                                           "response_timeout_s = 600\n"
                                           "idle_release_s = 30\n"
                                           "down_after_failures = 5\n"
                                           "retention = \"7d\"\n"
                                           "unrouted_retention = \"3d\"\n"
                                           "dead_letter_retention = \"60d\"\n"
                                           "dropped_retention = \"1h\"\n",
                                       "relais.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->delivery.calling_ae_title, "RELAIS_OUT");
  EXPECT_EQ(r->delivery.connect_timeout_s, 5u);
  EXPECT_EQ(r->delivery.response_timeout_s, 600u);
  EXPECT_EQ(r->delivery.idle_release_s, 30u);
  EXPECT_EQ(r->delivery.down_after_failures, 5u);
  EXPECT_EQ(r->delivery.retention_s, 7u * 86400);
  EXPECT_EQ(r->delivery.unrouted_retention_s, 3u * 86400);
  EXPECT_EQ(r->delivery.dead_letter_retention_s, 60u * 86400);
  EXPECT_EQ(r->delivery.dropped_retention_s, 3600u);
}

TEST(ConfigDeliveryTest, BadValuesNamePositionAndRule) {
  std::string e = ErrorOf(std::string(kMinimal) +
                          "[delivery]\n"
                          "calling_ae_title = \"THIS_TITLE_IS_TOO_LONG\"\n"
                          "down_after_failures = 0\n"
                          "retention = \"forever\"\n"
                          "idle_relase_s = 3\n");
  EXPECT_THAT(e, HasSubstr("relais.toml:6:20: delivery.calling_ae_title must be 1-16"));
  EXPECT_THAT(e, HasSubstr("relais.toml:7:23:"));
  EXPECT_THAT(e, HasSubstr("down_after_failures"));
  EXPECT_THAT(e, HasSubstr("relais.toml:8:13:"));
  EXPECT_THAT(e, HasSubstr("idle_release_s"));  // did you mean
}

}  // namespace
}  // namespace relais::rules
