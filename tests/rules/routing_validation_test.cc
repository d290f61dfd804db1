// Validation errors of rule files, each at its exact FILE:LINE:COLUMN, and
// the limits against hostile files (size, nesting, rule count, regex size).
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rules/routing.h"

namespace relais::rules {
namespace {

using ::testing::HasSubstr;

// Lines 1-4: one destination "archive"; a rule starts on line 5, its
// forward is line 7 and its first condition line 9 (after [rule.match]).
constexpr char kDest[] =
    "[[destination]]\n"
    "name = \"archive\"\n"
    "ae_title = \"ARCHIVE\"\n"
    "host = \"10.1.0.20\"\n";

std::string Rule(const std::string& match_body) {
  return std::string(kDest) + "[[rule]]\nname = \"r\"\nforward = [\"archive\"]\n[rule.match]\n" + match_body;
}

std::string ErrorOf(const std::string& text) {
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(text, "rules.toml");
  EXPECT_FALSE(r.ok()) << "parsed although it should not:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

TEST(RoutingValidationTest, UnknownKeywordWithSuggestion) {
  EXPECT_EQ(ErrorOf(Rule("Modalty = \"CT\"\n")),
            "rules.toml:9:1: unknown DICOM keyword 'Modalty', did you mean 'Modality'?");
  EXPECT_EQ(ErrorOf(Rule("caling_ae = \"X\"\n")),
            "rules.toml:9:1: unknown condition 'caling_ae', did you mean 'calling_ae'?");
  EXPECT_EQ(ErrorOf(Rule("\"(00zz,0010)\" = \"X\"\n")),
            "rules.toml:9:1: '(00zz,0010)' is neither a DICOM keyword nor a tag (gggg,eeee)");
  EXPECT_EQ(ErrorOf(Rule("\"Modality.PatientID\" = \"X\"\n")),
            "rules.toml:9:1: 'Modality' is not a sequence, so 'Modality.PatientID' cannot look inside it");
  EXPECT_EQ(ErrorOf(Rule("\"ReferencedStudySequence.ReferencedSOPClasUID\" = \"1\"\n")),
            "rules.toml:9:1: unknown DICOM keyword 'ReferencedSOPClasUID', did you mean 'ReferencedSOPClassUID'?");
}

// A name quoted from the file may hold a newline (a TOML "\n" escape): it
// is shown escaped, so that every problem stays one FILE:LINE:COL line (the
// config fuzzer found this).
TEST(RoutingValidationTest, ControlCharactersInQuotedNamesStayOnOneLine) {
  std::string e = ErrorOf("[[destination]]\nname = \"tp-test-pati\\nts\"\ndrop = true\n");
  EXPECT_THAT(e, HasSubstr("destination name 'tp-test-pati\\nts' must be"));
  size_t start = 0;
  while (start < e.size()) {
    EXPECT_EQ(e.compare(start, 11, "rules.toml:"), 0) << e;
    size_t end = e.find('\n', start);
    start = end == std::string::npos ? e.size() : end + 1;
  }
}

TEST(RoutingValidationTest, UnknownDestination) {
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"r\"\nforward = [\"archiv\"]\n"),
            "rules.toml:7:12: unknown destination 'archiv', did you mean 'archive'?");
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[settings]\nunmatched = { forward = [\"nas\"] }\n"),
            "rules.toml:6:26: unknown destination 'nas' (known: archive)");
}

TEST(RoutingValidationTest, BadRegexCarriesRe2Text) {
  EXPECT_EQ(ErrorOf(Rule("StudyDescription = { regex = \"(unclosed\" }\n")),
            "rules.toml:9:30: bad regex '(unclosed': missing ): (unclosed");
}

TEST(RoutingValidationTest, WrongValueTypes) {
  EXPECT_EQ(ErrorOf(Rule("Modality = true\n")),
            "rules.toml:9:12: Modality must be a string, a number, a list of them, or an operator table such as "
            "{ regex = \"...\" }, got boolean");
  EXPECT_EQ(ErrorOf(Rule("Modality = [\"CT\", 1.5, false]\n")),
            "rules.toml:9:24: Modality values must be strings or numbers, got boolean");
  EXPECT_EQ(ErrorOf(Rule("SliceThickness = { min = \"a\" }\n")),
            "rules.toml:9:26: SliceThickness min must be a number, got string");
  EXPECT_EQ(ErrorOf(Rule("StudyDate = { from = \"2024-13-01\" }\n")),
            "rules.toml:9:22: StudyDate from must be a date \"YYYYMMDD\" (DICOM DA) or 2024-01-31");
  EXPECT_EQ(ErrorOf(Rule("Modality = { regexp = \"CT\" }\n")),
            "rules.toml:9:14: unknown operator 'regexp' for Modality, did you mean 'regex'?");
  EXPECT_EQ(ErrorOf(Rule("Modality = { regex = \"CT\", wildcard = \"C*\" }\n")),
            "rules.toml:9:12: Modality has more than one operator; combine them with all = [...]");
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"r\"\nforward = [\"archive\"]\nstop = \"yes\"\n"),
            "rules.toml:8:8: rule 'r'.stop must be a boolean, got string");
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"r\"\nforward = [\"archive\"]\nstpo = true\n"),
            "rules.toml:8:1: unknown key 'stpo' in [rule 'r'], did you mean 'stop'?");
  EXPECT_EQ(ErrorOf("[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\nport = 70000\n"),
            "rules.toml:5:8: destination 'a'.port must be between 1 and 65535, got 70000");
  EXPECT_EQ(
      ErrorOf("[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\nretry = { max_age = \"7 days\" }\n"),
      "rules.toml:5:21: destination 'a'.retry.max_age must be a duration such as \"10s\", \"30m\", \"12h\" or "
      "\"7d\", got '7 days'");
  EXPECT_EQ(
      ErrorOf(
          "[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\ntransfer_syntaxes = [\"JPEGLSLosless\"]\n"),
      "rules.toml:5:22: unknown transfer syntax 'JPEGLSLosless', did you mean 'JPEGLSLossless'?");
  EXPECT_EQ(ErrorOf("[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\nbandwidth_limit = \"fast\"\n"),
            "rules.toml:5:19: bandwidth_limit must be a rate such as \"2MB/s\" or \"500KiB/s\", got 'fast'");
  EXPECT_EQ(ErrorOf("[[destnation]]\nname = \"a\"\n"),
            "rules.toml:1:3: unknown top-level key 'destnation', did you mean 'destination'?");
}

TEST(RoutingValidationTest, ResendPolicyAndWindow) {
  const std::string d = "[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\n";
  EXPECT_EQ(ErrorOf(d + "resend = \"if_changed\"\n"),
            "rules.toml:5:10: destination 'a'.resend must be one of if-changed, never, always, got 'if_changed', did "
            "you mean 'if-changed'?");
  EXPECT_EQ(ErrorOf(d + "resend = true\n"), "rules.toml:5:10: destination 'a'.resend must be a string, got boolean");
  EXPECT_EQ(ErrorOf(d + "resend_window = \"a month\"\n"),
            "rules.toml:5:17: destination 'a'.resend_window must be a duration such as \"10s\", \"30m\", \"12h\" or "
            "\"7d\", got 'a month'");
  EXPECT_EQ(ErrorOf(d + "resend_window = -5\n"),
            "rules.toml:5:17: destination 'a'.resend_window must not be negative, got -5");
  EXPECT_EQ(ErrorOf(d + "resend_window = \"400d\"\n"),
            "rules.toml:5:17: destination 'a'.resend_window must be at most 365d, got 34560000 seconds");
  EXPECT_EQ(ErrorOf(d + "resend_windw = \"7d\"\n"),
            "rules.toml:5:1: unknown key 'resend_windw' in [destination 'a'], did you mean 'resend_window'?");
}

TEST(RoutingValidationTest, ConcurrencyFixedNeedsMaxAssociations) {
  const std::string d = "[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\n";
  EXPECT_EQ(ErrorOf(d + "concurrency = \"fixed\"\n"),
            "rules.toml:5:15: destination 'a': concurrency = \"fixed\" needs max_associations (the number of "
            "associations to keep)");
  EXPECT_EQ(ErrorOf(d + "concurrency = \"auto\"\n"),
            "rules.toml:5:15: destination 'a'.concurrency must be one of adaptive, fixed, got 'auto' (known: adaptive, "
            "fixed)");
  Result<std::shared_ptr<const RuleSet>> r =
      RuleSet::Parse(d + "concurrency = \"fixed\"\nmax_associations = 16\n", "rules.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Destination* a = (*r)->FindDestination("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->concurrency, Destination::Concurrency::kFixed);
  EXPECT_EQ(a->max_associations, 16u);
}

TEST(RoutingValidationTest, DuplicateNames) {
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"r\"\nforward = [\"archive\"]\n"
                                         "[[rule]]\nname = \"r\"\nforward = [\"archive\"]\n"),
            "rules.toml:9:8: duplicate rule 'r' (first defined at rules.toml:5:1)");
  EXPECT_EQ(ErrorOf(std::string(kDest) + kDest),
            "rules.toml:6:8: duplicate destination 'archive' (first defined at rules.toml:1:1)");
}

TEST(RoutingValidationTest, UnreachableRuleAfterCatchAll) {
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"all\"\nforward = [\"archive\"]\nstop = true\n"
                                         "[[rule]]\nname = \"never\"\nforward = [\"archive\"]\n"),
            "rules.toml:9:1: unreachable rule after catch-all 'all' at rules.toml:5:1");
  // drop implies stop.
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"nothing\"\ndrop = true\n[rule.match]\n"
                                         "[[rule]]\nname = \"never\"\nforward = [\"archive\"]\n"),
            "rules.toml:9:1: unreachable rule after catch-all 'nothing' at rules.toml:5:1");
  // A catch-all without stop is fine, and so is a conditional stop.
  Result<std::shared_ptr<const RuleSet>> ok =
      RuleSet::Parse(std::string(kDest) +
                         "[[rule]]\nname = \"a\"\nforward = [\"archive\"]\n"
                         "[[rule]]\nname = \"b\"\nforward = [\"archive\"]\nstop = true\n"
                         "[rule.match]\nModality = \"CT\"\n"
                         "[[rule]]\nname = \"c\"\nforward = [\"archive\"]\n",
                     "rules.toml");
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST(RoutingValidationTest, BadCidrAndBadTimeRange) {
  EXPECT_EQ(ErrorOf(Rule("peer = \"10.0.0.1/33\"\n")),
            "rules.toml:9:8: bad CIDR '10.0.0.1/33': expected an IPv4/IPv6 address or network such as "
            "\"10.1.0.0/16\" (host bits zero)");
  EXPECT_THAT(ErrorOf(Rule("peer = [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n")),
              HasSubstr("rules.toml:9:23: bad CIDR '10.1.2.3/8'"));
  EXPECT_THAT(ErrorOf(Rule("peer = \"ct-scanner\"\n")), HasSubstr("rules.toml:9:8: bad CIDR 'ct-scanner'"));
  EXPECT_EQ(
      ErrorOf(Rule("time = { hours = \"18:00-25:00\" }\n")),
      "rules.toml:9:18: bad time range: time.hours must be \"HH:MM-HH:MM\" such as \"18:00-07:00\" (24-hour clock)");
  EXPECT_THAT(ErrorOf(Rule("time = { hours = \"07:00-07:00\" }\n")),
              HasSubstr("rules.toml:9:18: bad time range '07:00-07:00': start equals end"));
  EXPECT_EQ(ErrorOf(Rule("time = { days = [\"sat\", \"sunday\"] }\n")),
            "rules.toml:9:25: unknown day 'sunday', did you mean 'sun'?");
}

TEST(RoutingValidationTest, MissingRequiredKeys) {
  EXPECT_EQ(ErrorOf("[[destination]]\nname = \"x\"\n"),
            "rules.toml:1:1: missing required key 'ae_title' in [destination 'x']\n"
            "rules.toml:1:1: missing required key 'host' in [destination 'x']");
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nname = \"r\"\n"),
            "rules.toml:5:1: missing required key 'forward' in rule 'r' (or drop = true)");
  EXPECT_EQ(ErrorOf(std::string(kDest) + "[[rule]]\nforward = [\"archive\"]\n"),
            "rules.toml:5:1: missing required key 'name' in [rule]");
}

TEST(RoutingValidationTest, EveryErrorIsReportedInFileOrder) {
  EXPECT_EQ(ErrorOf(Rule("Modalty = \"CT\"\npeer = \"x\"\n") + "[[rule]]\nname = \"r\"\nforward = [\"nas\"]\n"),
            "rules.toml:9:1: unknown DICOM keyword 'Modalty', did you mean 'Modality'?\n"
            "rules.toml:10:8: bad CIDR 'x': expected an IPv4/IPv6 address or network such as \"10.1.0.0/16\" (host "
            "bits zero)\n"
            "rules.toml:12:8: duplicate rule 'r' (first defined at rules.toml:5:1)\n"
            "rules.toml:13:12: unknown destination 'nas' (known: archive)");
}

TEST(RoutingValidationTest, BadEdits) {
  EXPECT_EQ(ErrorOf(std::string(kDest) +
                    "[[rule]]\nname = \"r\"\nforward = [{ to = \"archive\", edits = [{ set = \"PixelData\", value = "
                    "\"1\" }, { remove = \"Foo\" }, { set = \"PatientName\" }] }]\n"),
            "rules.toml:7:47: cannot edit (7FE0,0010) (group 0000/0002, group lengths, items and Pixel Data are "
            "not editable)\n"
            "rules.toml:7:86: unknown DICOM keyword 'Foo'\n"
            "rules.toml:7:95: missing required key 'value' in [rule 'r' forward edit]");
}

TEST(RoutingValidationTest, MalformedToml) {
  EXPECT_EQ(ErrorOf("[[rule]\nname = 1\n"),
            "rules.toml:1:8: Error while parsing table header: expected ']', saw '\\n'");
  EXPECT_THAT(ErrorOf("[[rule]]\nname = \"a\nforward = []\n"), HasSubstr("rules.toml:2:"));
  EXPECT_THAT(ErrorOf("x = \"\xff\xfe\"\n"), HasSubstr("rules.toml:1:"));
  // Truncating a valid file anywhere gives a clean error or a valid set.
  const std::string full =
      Rule("Modality = [\"CT\", \"MR\"]\nany = [{ calling_ae = \"A\" }, { not = { peer = \"10.0.0.0/8\" } }]\n");
  for (size_t n = 0; n < full.size(); ++n) {
    Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(full.substr(0, n), "rules.toml");
    if (!r.ok()) {
      EXPECT_THAT(r.status().message(), HasSubstr("rules.toml:")) << n;
    }
  }
}

TEST(RoutingValidationTest, HugeFileIsRefusedUpFront) {
  std::string text = "# " + std::string(4 << 20, 'x') + "\n";
  EXPECT_THAT(ErrorOf(text), HasSubstr("rules.toml:1:1: file is too large"));
}

TEST(RoutingValidationTest, DeepNestingIsRefused) {
  std::string cond = "Modality = \"CT\"";
  for (int i = 0; i < 40; ++i) cond = "not = { " + cond + " }";
  EXPECT_THAT(ErrorOf(Rule(cond + "\n")), HasSubstr("conditions nested deeper than 32 levels of all/any/not"));
  std::string ok = "Modality = \"CT\"";
  for (int i = 0; i < 30; ++i) ok = "not = { " + ok + " }";
  EXPECT_TRUE(RuleSet::Parse(Rule(ok + "\n"), "rules.toml").ok());
}

// Regression: `relais rules check` and a reload in `relais serve` crashed
// (stack overflow in toml++) on a dotted key of 40,000 parts; the file is
// now refused at the 65th part, before toml++ sees it.
TEST(RoutingValidationTest, FortyThousandPartDottedKeyIsRefused) {
  std::string key = "Modality";
  for (int i = 0; i < 40000; ++i) key += ".a";
  EXPECT_EQ(ErrorOf(Rule(key + " = 1\n")),
            "rules.toml:9:136: nesting deeper than 64 levels (a dotted key of more than 64 parts)");
  std::string header = "[rule.match";
  for (int i = 0; i < 40000; ++i) header += ".a";
  EXPECT_EQ(ErrorOf(std::string(kDest) + header + "]\n"),
            "rules.toml:5:137: nesting deeper than 64 levels (a [table.header] of more than 64 parts)");
  std::string nested = "any = ";
  for (int i = 0; i < 40000; ++i) nested += "[{any = ";
  EXPECT_EQ(ErrorOf(Rule(nested + "\n")),
            "rules.toml:9:263: nesting deeper than 64 levels (arrays and inline tables inside each other)");
}

// The scanner's 64 levels leave room for the documented 32 levels of
// all/any (two brackets each).
TEST(RoutingValidationTest, ThirtyTwoLevelsOfAnyStillParse) {
  std::string cond = "Modality = \"CT\"";
  for (int i = 0; i < 32; ++i) cond = "any = [{ " + cond + " }]";
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(Rule(cond + "\n"), "rules.toml");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(RoutingValidationTest, BracketsInStringsAndCommentsAreNotNesting) {
  const std::string noise = std::string(70, '[') + std::string(70, '{') + std::string(70, '.');
  std::string text = Rule("# " + noise + "\nStudyDescription = { wildcard = \"" + noise + "*\" }  # " + noise +
                          "\nSeriesDescription = '''\n" + noise + "'''\n");
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(text, "rules.toml");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(RoutingValidationTest, TooManyRules) {
  std::string text = kDest;
  for (int i = 0; i <= 10000; ++i) {
    text += "[[rule]]\nname = \"r" + std::to_string(i) + "\"\nforward = [\"archive\"]\n";
  }
  std::string err = ErrorOf(text);
  EXPECT_THAT(err, HasSubstr("rules.toml:30005:1: too many rules (at most 10000)"));
}

TEST(RoutingValidationTest, RegexProgramSizeIsLimited) {
  std::string err = ErrorOf(Rule("StudyDescription = { regex = \"\\\\pL{1000}\" }\n"));
  EXPECT_THAT(err, HasSubstr("rules.toml:9:30: bad regex"));
  EXPECT_THAT(err, HasSubstr("pattern too large"));
}

// `count` rules after kDest, rule i on line 5 + 4 * i, each with
// `condition` (may be empty) as its only match.
std::string ManyRules(int count, const std::string& condition) {
  std::string text = kDest;
  for (int i = 0; i < count; ++i) {
    text += "[[rule]]\nname = \"r" + std::to_string(i) + "\"\nforward = [\"archive\"]\nmatch = { " + condition + " }\n";
  }
  return text;
}

// Every regex fits the per-regex limit; together they do not fit the
// set's budget. \pL{20} compiles to ~24,000 instructions (~190 KiB), so the
// third crosses 512 KiB: the error is at that rule (line 5 + 4 * 2).
TEST(RoutingValidationTest, RegexesOverTheMemoryBudgetAreRefusedAtTheRule) {
  CompileBudget budget;
  budget.max_regex_memory = 512 << 10;
  const std::string text = ManyRules(6, "StudyDescription = { regex = \"\\\\pL{20}\" }");
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(text, "rules.toml", budget);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              testing::ContainsRegex("^rules\\.toml:13:1: the regexes of the rules up to this one need about "
                                     "5[5-9][0-9] KiB, more than the budget of 512 KiB for all rules"));
  EXPECT_THAT(r.status().message(), HasSubstr("raise [rules] max_regex_memory"));
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << "one error, then it stops";
  // The default budget (128 MiB) takes them.
  EXPECT_TRUE(RuleSet::Parse(text, "rules.toml").ok());
}

// The time budget, on a fake clock that moves one second at every look:
// the load starts at 1 s, rule i is checked at 2 + i s, so rule 10 (index)
// is the first past 10 s.
TEST(RoutingValidationTest, CompilingPastTheTimeBudgetIsRefusedAtTheRule) {
  uint64_t now = 0;
  CompileBudget budget;
  budget.max_compile_ms = 10000;
  budget.now_ms = [&now] { return now += 1000; };
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(ManyRules(20, "Modality = \"CT\""), "rules.toml", budget);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "rules.toml:45:1: compiling the rules took longer than 10000 ms, counted up to this rule (rule 11): "
            "simplify the regexes (counted repeats such as \\pL{50} are slow to compile), use fewer rules, or raise "
            "[rules] max_compile_time");
  now = 0;
  budget.max_compile_ms = 0;  // no limit
  EXPECT_TRUE(RuleSet::Parse(ManyRules(20, "Modality = \"CT\""), "rules.toml", budget).ok());
}

TEST(RoutingValidationTest, CancelledLoadStopsBetweenRules) {
  std::atomic<bool> cancel{true};
  CompileBudget budget;
  budget.cancel = &cancel;
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(ManyRules(3, "Modality = \"CT\""), "rules.toml", budget);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
}

}  // namespace
}  // namespace relais::rules

namespace relais::rules {
namespace {

TEST(RoutingValidationTest, BandwidthWindows) {
  const std::string d = "[[destination]]\nname = \"a\"\nae_title = \"A\"\nhost = \"h\"\n";
  EXPECT_EQ(ErrorOf(d + "bandwidth = [ { limit = \"fast\" } ]\n"),
            "rules.toml:5:25: destination 'a'.bandwidth[0].limit must be a rate such as \"2MB/s\" or \"500KiB/s\" or "
            "\"unlimited\", got 'fast'");
  EXPECT_EQ(ErrorOf(d + "bandwidth = [ { limit = \"1MB/s\", days = \"mon-fry\" } ]\n"),
            "rules.toml:5:41: destination 'a'.bandwidth[0].days must be days such as \"mon-fri\" or \"sat,sun\" (sun "
            "mon tue wed thu fri sat), got 'mon-fry'");
  EXPECT_EQ(ErrorOf(d + "bandwidth = [ { limit = \"1MB/s\", from = \"7:00\", to = \"19:00\" } ]\n"),
            "rules.toml:5:41: destination 'a'.bandwidth[0].from must be a local time \"HH:MM\" or \"HH:MM:SS\", got "
            "'7:00'");
  EXPECT_EQ(ErrorOf(d + "bandwidth = [ { limit = \"1MB/s\" },\n  { limit = 5, from = \"07:00\" } ]\n"),
            "rules.toml:6:3: destination 'a'.bandwidth[1] needs both from and to (or neither for the whole day)");
  EXPECT_EQ(
      ErrorOf(d + "bandwidth = [ { limit = 5, from = \"07:00\", to = \"07:00\" } ]\n"),
      "rules.toml:5:15: destination 'a'.bandwidth[0]: from and to must differ (leave both out for the whole day)");
  EXPECT_EQ(ErrorOf(d + "bandwidth = [ { limit = 5, form = \"07:00\" } ]\n"),
            "rules.toml:5:28: unknown key 'form' in [destination 'a'.bandwidth[0]], did you mean 'from'?");
  EXPECT_EQ(ErrorOf(d + "bandwidth = [ { days = \"sat\" } ]\n"),
            "rules.toml:5:15: missing required key 'limit' in [destination 'a'.bandwidth[0]]");
  EXPECT_EQ(ErrorOf(d + "bandwidth = []\n"),
            "rules.toml:5:13: destination 'a'.bandwidth must list at least one window");
  EXPECT_EQ(
      ErrorOf(d + "bandwidth = \"2MB/s\"\n"),
      "rules.toml:5:13: destination 'a'.bandwidth must be a list of windows such as [ { limit = \"2MB/s\", from = "
      "\"07:00\", to = \"19:00\" } ], got string");
  EXPECT_THAT(ErrorOf(d + "bandwidth_limit = \"1MB/s\"\nbandwidth = [ { limit = 5 } ]\n"),
              HasSubstr("rules.toml:5:19: destination 'a': bandwidth_limit and bandwidth go not together"));
  EXPECT_EQ(ErrorOf(d + "priority_above_limit = \"yes\"\n"),
            "rules.toml:5:24: destination 'a'.priority_above_limit must be a boolean, got string");
}

}  // namespace
}  // namespace relais::rules
