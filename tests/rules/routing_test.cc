// Tests for the routing rules engine (rules/routing.h): syntax, every
// operator and combinator, validation errors with their exact positions,
// limits against hostile files, evaluation and tag edits.
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rules/routing.h"

namespace relais::rules {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Local time is UTC for every test, so that time windows are exact.
class UtcEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    setenv("TZ", "UTC", 1);
    tzset();
  }
};
const auto* const kUtc = ::testing::AddGlobalTestEnvironment(new UtcEnvironment);

std::time_t At(int year, int month, int day, int hour, int minute) {
  struct tm t = {};
  t.tm_year = year - 1900;
  t.tm_mon = month - 1;
  t.tm_mday = day;
  t.tm_hour = hour;
  t.tm_min = minute;
  return timegm(&t);
}
// 2024-06-04 is a Tuesday, 2024-06-01 a Saturday.
const std::time_t kTuesdayNoon = At(2024, 6, 4, 12, 0);

constexpr char kDestinations[] =
    "[[destination]]\n"
    "name = \"archive\"\n"
    "ae_title = \"ARCHIVE\"\n"
    "host = \"10.1.0.20\"\n"
    "[[destination]]\n"
    "name = \"telerad\"\n"
    "ae_title = \"TELERAD\"\n"
    "host = \"10.2.0.7\"\n";

std::shared_ptr<const RuleSet> MustParse(const std::string& text) {
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(text, "rules.toml");
  EXPECT_TRUE(r.ok()) << r.status().ToString() << "\n" << text;
  return r.ok() ? *r : nullptr;
}

// The error message of a parse that must fail.
[[maybe_unused]] std::string ErrorOf(const std::string& text) {
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(text, "rules.toml");
  EXPECT_FALSE(r.ok()) << "parsed although it should not:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

// One rule forwarding to archive when the given [rule.match] body holds.
std::string OneRule(const std::string& match_body) {
  return std::string(kDestinations) +
         "[[rule]]\n"
         "name = \"r\"\n"
         "forward = [\"archive\"]\n"
         "[rule.match]\n" +
         match_body;
}

struct Object {
  DcmDataset ds;
  AssociationFacts facts{"CTSCAN1", "RELAIS", "10.1.2.3", "default"};
  Object& Put(const DcmTagKey& key, const char* value) {
    EXPECT_TRUE(ds.putAndInsertString(DcmTag(key), value).good());
    return *this;
  }
};

bool Matches(const std::string& match_body, Object& o, std::time_t now = kTuesdayNoon) {
  auto set = MustParse(OneRule(match_body));
  if (set == nullptr) return false;
  Decision d;
  set->Evaluate(&o.ds, o.facts, now, &d);
  EXPECT_EQ(d.unmatched, d.targets.empty());
  return !d.unmatched;
}

// ---- Operators ---------------------------------------------------------

TEST(RoutingMatchTest, StringEqualsIgnoresPaddingAndListMeansAnyOf) {
  Object o;
  o.Put(DCM_Modality, "CT ");
  EXPECT_TRUE(Matches("Modality = \"CT\"\n", o));
  EXPECT_TRUE(Matches("Modality = \" CT \"\n", o));
  EXPECT_FALSE(Matches("Modality = \"MR\"\n", o));
  EXPECT_FALSE(Matches("Modality = \"ct\"\n", o));  // case-sensitive
  EXPECT_TRUE(Matches("Modality = [\"MR\", \"CT\"]\n", o));
  EXPECT_FALSE(Matches("Modality = [\"MR\", \"US\"]\n", o));
  EXPECT_FALSE(Matches("StationName = \"CT\"\n", o));  // absent never equals
}

TEST(RoutingMatchTest, MultiValuedMatchesWhenAnyValueDoes) {
  Object o;
  o.Put(DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
  EXPECT_TRUE(Matches("ImageType = \"PRIMARY\"\n", o));
  EXPECT_TRUE(Matches("ImageType = { wildcard = \"AX*\" }\n", o));
  EXPECT_FALSE(Matches("ImageType = \"DERIVED\"\n", o));
  // LT is free text: a backslash is not a separator.
  o.Put(DCM_AdditionalPatientHistory, "a\\b");
  EXPECT_FALSE(Matches("AdditionalPatientHistory = \"b\"\n", o));
  EXPECT_TRUE(Matches("AdditionalPatientHistory = \"a\\\\b\"\n", o));
}

TEST(RoutingMatchTest, RegexIsPartialMatchUnlessAnchored) {
  Object o;
  o.Put(DCM_StudyDescription, "CT HEAD W/O CONTRAST");
  EXPECT_TRUE(Matches("StudyDescription = { regex = \"(?i)head|brain\" }\n", o));
  EXPECT_FALSE(Matches("StudyDescription = { regex = \"^HEAD\" }\n", o));
  EXPECT_TRUE(Matches("StudyDescription = { regex = \"^CT HEAD.*CONTRAST$\" }\n", o));
  EXPECT_FALSE(Matches("StudyDescription = { regex = \"brain\" }\n", o));
}

TEST(RoutingMatchTest, WildcardStarAndQuestionMark) {
  Object o;
  o.Put(DCM_PatientName, "DOE^JOHN");
  EXPECT_TRUE(Matches("PatientName = { wildcard = \"DOE^*\" }\n", o));
  EXPECT_TRUE(Matches("PatientName = { wildcard = \"D?E^J*N\" }\n", o));
  EXPECT_TRUE(Matches("PatientName = { wildcard = \"*\" }\n", o));
  EXPECT_FALSE(Matches("PatientName = { wildcard = \"DOE^?\" }\n", o));
  EXPECT_FALSE(Matches("PatientName = { wildcard = \"SMITH*\" }\n", o));
  EXPECT_FALSE(Matches("PatientName = { wildcard = \"DOE\" }\n", o));
}

TEST(RoutingMatchTest, PresentAndAbsentIncludingPrivateTags) {
  Object o;
  o.Put(DcmTagKey(0x0009, 0x0010), "ACME 1.0");
  EXPECT_TRUE(o.ds.putAndInsertString(DcmTag(0x0009, 0x1010, DcmVR(EVR_LO)), "secret").good());
  EXPECT_TRUE(Matches("\"(0009,1010)\" = { present = true }\n", o));
  EXPECT_TRUE(Matches("\"0009,1010\" = { present = true }\n", o));
  EXPECT_TRUE(Matches("\"(0009,1010)\" = \"secret\"\n", o));
  EXPECT_FALSE(Matches("\"(0009,1010)\" = { present = false }\n", o));
  EXPECT_FALSE(Matches("\"(0009,1011)\" = { present = true }\n", o));
  EXPECT_TRUE(Matches("\"(0009,1011)\" = { present = false }\n", o));
  EXPECT_TRUE(Matches("PatientID = { present = false }\n", o));
}

TEST(RoutingMatchTest, NumericRangeOnDecimalStringAndBinaryVr) {
  Object o;
  o.Put(DCM_SliceThickness, "2.5");
  EXPECT_TRUE(o.ds.putAndInsertUint16(DCM_Rows, 512).good());
  EXPECT_TRUE(Matches("SliceThickness = { min = 0.5, max = 5 }\n", o));
  EXPECT_TRUE(Matches("SliceThickness = { min = 2.5 }\n", o));  // inclusive
  EXPECT_FALSE(Matches("SliceThickness = { max = 2 }\n", o));
  EXPECT_TRUE(Matches("SliceThickness = 2.5\n", o));
  EXPECT_TRUE(Matches("Rows = { min = 256, max = 1024 }\n", o));
  EXPECT_TRUE(Matches("Rows = 512\n", o));
  EXPECT_FALSE(Matches("Rows = 256\n", o));
  EXPECT_FALSE(Matches("Rows = { max = 511 }\n", o));
}

TEST(RoutingMatchTest, DateRangeIsInclusive) {
  Object o;
  o.Put(DCM_StudyDate, "20240601");
  EXPECT_TRUE(Matches("StudyDate = { from = \"20240101\", to = \"20241231\" }\n", o));
  EXPECT_TRUE(Matches("StudyDate = { from = \"20240601\", to = \"20240601\" }\n", o));
  EXPECT_TRUE(Matches("StudyDate = { from = 2024-06-01 }\n", o));  // TOML dates too
  EXPECT_FALSE(Matches("StudyDate = { to = \"20240531\" }\n", o));
  EXPECT_FALSE(Matches("StudyDate = { from = \"20240602\" }\n", o));
}

TEST(RoutingMatchTest, SequencePathMatchesAnyItem) {
  Object o;
  DcmItem* item = nullptr;
  ASSERT_TRUE(o.ds.findOrCreateSequenceItem(DCM_ReferencedStudySequence, item, -2).good());
  item->putAndInsertString(DCM_ReferencedSOPClassUID, "1.2.3");
  ASSERT_TRUE(o.ds.findOrCreateSequenceItem(DCM_ReferencedStudySequence, item, -2).good());
  item->putAndInsertString(DCM_ReferencedSOPClassUID, "1.2.4");
  EXPECT_TRUE(Matches("\"ReferencedStudySequence.ReferencedSOPClassUID\" = \"1.2.4\"\n", o));
  EXPECT_TRUE(Matches("\"ReferencedStudySequence.ReferencedSOPClassUID\" = \"1.2.3\"\n", o));
  EXPECT_FALSE(Matches("\"ReferencedStudySequence.ReferencedSOPClassUID\" = \"1.2.5\"\n", o));
  EXPECT_TRUE(Matches("\"(0008,1110).(0008,1150)\" = { present = true }\n", o));
  EXPECT_FALSE(Matches("\"ReferencedStudySequence.ReferencedSOPInstanceUID\" = { present = true }\n", o));
}

TEST(RoutingMatchTest, AssociationConditions) {
  Object o;
  EXPECT_TRUE(Matches("calling_ae = \"CTSCAN1\"\n", o));
  EXPECT_FALSE(Matches("calling_ae = \"CTSCAN2\"\n", o));
  EXPECT_TRUE(Matches("calling_ae = { wildcard = \"CTSCAN?\" }\n", o));
  EXPECT_TRUE(Matches("called_ae = [\"X\", \"RELAIS\"]\n", o));
  EXPECT_TRUE(Matches("listener = \"default\"\n", o));
  EXPECT_TRUE(Matches("peer = \"10.1.0.0/16\"\n", o));
  EXPECT_TRUE(Matches("peer = [\"192.168.0.0/16\", \"10.1.2.3\"]\n", o));
  EXPECT_FALSE(Matches("peer = \"10.2.0.0/16\"\n", o));
  o.facts.peer_ip = "fd00::5";
  EXPECT_TRUE(Matches("peer = \"fd00::/8\"\n", o));
  EXPECT_FALSE(Matches("peer = \"10.0.0.0/8\"\n", o));
  o.facts.peer_ip = "::ffff:10.1.2.3";  // IPv4-mapped, as from a dual-stack socket
  EXPECT_TRUE(Matches("peer = \"10.0.0.0/8\"\n", o));
}

TEST(RoutingMatchTest, TimeWindowAcrossMidnightAndDays) {
  Object o;
  const std::string night = "time = { hours = \"18:00-07:00\" }\n";
  EXPECT_TRUE(Matches(night, o, At(2024, 6, 4, 18, 0)));
  EXPECT_TRUE(Matches(night, o, At(2024, 6, 4, 23, 59)));
  EXPECT_TRUE(Matches(night, o, At(2024, 6, 5, 0, 0)));
  EXPECT_TRUE(Matches(night, o, At(2024, 6, 5, 6, 59)));
  EXPECT_FALSE(Matches(night, o, At(2024, 6, 5, 7, 0)));
  EXPECT_FALSE(Matches(night, o, At(2024, 6, 4, 17, 59)));
  const std::string day = "time = { days = [\"mon\", \"tue\"], hours = \"08:00-17:00\" }\n";
  EXPECT_TRUE(Matches(day, o, At(2024, 6, 4, 8, 0)));
  EXPECT_FALSE(Matches(day, o, At(2024, 6, 4, 17, 0)));
  EXPECT_FALSE(Matches(day, o, At(2024, 6, 5, 9, 0)));  // Wednesday
  EXPECT_TRUE(Matches("time = { days = [\"weekend\"] }\n", o, At(2024, 6, 1, 12, 0)));
  EXPECT_FALSE(Matches("time = { days = [\"weekend\"] }\n", o, kTuesdayNoon));
  EXPECT_TRUE(Matches("time = { hours = \"00:00-24:00\" }\n", o, At(2024, 6, 4, 23, 59)));
}

TEST(RoutingMatchTest, CombinatorsNest) {
  Object o;
  o.Put(DCM_Modality, "MR").Put(DCM_StationName, "MR1");
  EXPECT_TRUE(Matches("any = [ { Modality = \"CT\" }, { Modality = \"MR\" } ]\n", o));
  EXPECT_FALSE(Matches("any = [ { Modality = \"CT\" }, { Modality = \"US\" } ]\n", o));
  EXPECT_TRUE(Matches("all = [ { Modality = \"MR\" }, { StationName = \"MR1\" } ]\n", o));
  EXPECT_FALSE(Matches("all = [ { Modality = \"MR\" }, { StationName = \"MR2\" } ]\n", o));
  EXPECT_TRUE(Matches("not = { calling_ae = \"TEST\" }\n", o));
  EXPECT_FALSE(Matches("not = { calling_ae = \"CTSCAN1\" }\n", o));
  // not of two conditions is "not (a and b)".
  EXPECT_TRUE(Matches("not = { Modality = \"MR\", StationName = \"MR2\" }\n", o));
  EXPECT_TRUE(
      Matches("any = [ { not = { Modality = \"MR\" } }, { all = [ { StationName = \"MR1\" }, "
              "{ any = [ { calling_ae = \"X\" }, { peer = \"10.0.0.0/8\" } ] } ] } ]\n",
              o));
  // Every top-level condition must hold.
  EXPECT_FALSE(Matches("Modality = \"MR\"\nStationName = \"MR2\"\n", o));
}

TEST(RoutingMatchTest, PathologicalRegexIsLinear) {
  // "(a*)*b" backtracks exponentially in Perl-style engines; RE2 is linear.
  Object o;
  std::string value(100 * 1024, 'a');
  o.Put(DCM_StudyDescription, value.c_str());
  o.Put(DCM_ImageComments, value.c_str());
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(Matches("StudyDescription = { regex = \"(a*)*b\" }\n", o));
  EXPECT_FALSE(Matches("ImageComments = { wildcard = \"*a*a*a*a*b\" }\n", o));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(RoutingMatchTest, LongWildcardOnMultiMebibyteValueFinishes) {
  // The old backtracking matcher was O(value x pattern): this pair took
  // seconds per evaluation (8.8 s for an 8 MiB value). Compiled to RE2 it
  // is linear in the value. No timing assertion: it must simply finish.
  std::string pattern;
  while (pattern.size() < 998) pattern += "*a";
  pattern += "*b";
  ASSERT_EQ(pattern.size(), 1000u);
  Object o;
  std::string value(4 << 20, 'a');
  o.Put(DCM_ImageComments, value.c_str());
  EXPECT_FALSE(Matches("ImageComments = { wildcard = \"" + pattern + "\" }\n", o));
  value.back() = 'b';
  o.Put(DCM_ImageComments, value.c_str());
  EXPECT_TRUE(Matches("ImageComments = { wildcard = \"" + pattern + "\" }\n", o));
}

TEST(RoutingMatchTest, WildcardTreatsRegexCharactersAsText) {
  Object o;
  o.Put(DCM_StudyDescription, "CT (HEAD)+[1].x|y\\z");
  o.Put(DCM_PatientName, "A.C");
  EXPECT_TRUE(Matches("StudyDescription = { wildcard = \"CT (HEAD)+[1].x|y*\" }\n", o));
  EXPECT_TRUE(Matches("StudyDescription = { wildcard = \"CT (HEAD)+[1]?x|y\" }\n", o));
  EXPECT_FALSE(Matches("StudyDescription = { wildcard = \"CT (HEAD)+[1]x|y\" }\n", o));
  EXPECT_TRUE(Matches("PatientName = { wildcard = \"A?C\" }\n", o));
  EXPECT_FALSE(Matches("PatientName = { wildcard = \"A.\" }\n", o));
  EXPECT_FALSE(Matches("PatientName = { wildcard = \"^A.C$\" }\n", o));
}

// ---- Actions -----------------------------------------------------------

TEST(RoutingEvalTest, StopDropPriorityAndFirstRuleWins) {
  auto set = MustParse(std::string(kDestinations) +
                       "[[rule]]\n"
                       "name = \"drop-test\"\n"
                       "drop = true\n"
                       "[rule.match]\n"
                       "PatientID = \"TEST\"\n"
                       "[[rule]]\n"
                       "name = \"all-archive\"\n"
                       "forward = [{ to = \"archive\", edits = [{ set = \"InstitutionName\", value = \"A\" }] }]\n"
                       "[[rule]]\n"
                       "name = \"ct-stat\"\n"
                       "priority = 10\n"
                       "stop = true\n"
                       "forward = [\"telerad\", { to = \"archive\", edits = [{ remove = \"PatientName\" }] }]\n"
                       "[rule.match]\n"
                       "Modality = \"CT\"\n"
                       "[[rule]]\n"
                       "name = \"after-stop\"\n"
                       "forward = [\"telerad\"]\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->rule_count(), 4u);
  Decision d;
  Object ct;
  ct.Put(DCM_Modality, "CT");
  set->Evaluate(&ct.ds, ct.facts, kTuesdayNoon, &d);
  ASSERT_EQ(d.matched_rules.size(), 2u);
  EXPECT_EQ(*d.matched_rules[0], "all-archive");
  EXPECT_EQ(*d.matched_rules[1], "ct-stat");
  ASSERT_EQ(d.targets.size(), 2u);
  EXPECT_EQ(d.targets[0].destination->name, "archive");
  EXPECT_EQ(*d.targets[0].rule, "all-archive");  // first rule that names it wins, with its edits
  ASSERT_EQ(d.targets[0].edits->size(), 1u);
  EXPECT_EQ((*d.targets[0].edits)[0].value, "A");
  EXPECT_EQ(d.targets[0].priority, 10);  // a later STAT rule still raises it
  EXPECT_EQ(d.targets[1].destination->name, "telerad");
  EXPECT_EQ(d.targets[1].priority, 10);
  EXPECT_TRUE(d.targets[1].edits->empty());
  EXPECT_FALSE(d.dropped);
  EXPECT_FALSE(d.unmatched);

  Object mr;
  mr.Put(DCM_Modality, "MR");
  set->Evaluate(&mr.ds, mr.facts, kTuesdayNoon, &d);  // reuses d
  ASSERT_EQ(d.targets.size(), 2u);
  EXPECT_EQ(*d.matched_rules.back(), "after-stop");

  Object test;
  test.Put(DCM_PatientID, "TEST").Put(DCM_Modality, "CT");
  set->Evaluate(&test.ds, test.facts, kTuesdayNoon, &d);
  EXPECT_TRUE(d.dropped);
  EXPECT_TRUE(d.targets.empty());
  EXPECT_FALSE(d.unmatched);
  ASSERT_EQ(d.matched_rules.size(), 1u);
  EXPECT_EQ(*d.matched_rules[0], "drop-test");
}

TEST(RoutingEvalTest, UnmatchedPolicies) {
  const std::string rule = "[[rule]]\nname = \"ct\"\nforward = [\"telerad\"]\n[rule.match]\nModality = \"CT\"\n";
  auto keep = MustParse(std::string(kDestinations) + rule);
  ASSERT_NE(keep, nullptr);
  EXPECT_EQ(keep->unmatched_policy(), RuleSet::Unmatched::kKeep);  // default: nothing is lost
  Object us;
  us.Put(DCM_Modality, "US");
  Decision d;
  keep->Evaluate(&us.ds, us.facts, kTuesdayNoon, &d);
  EXPECT_TRUE(d.unmatched);
  EXPECT_TRUE(d.targets.empty());

  auto reject = MustParse(std::string(kDestinations) + rule + "[settings]\nunmatched = \"reject\"\n");
  ASSERT_NE(reject, nullptr);
  EXPECT_EQ(reject->unmatched_policy(), RuleSet::Unmatched::kReject);

  auto fwd = MustParse(std::string(kDestinations) + rule + "[settings]\nunmatched = { forward = [\"archive\"] }\n");
  ASSERT_NE(fwd, nullptr);
  EXPECT_EQ(fwd->unmatched_policy(), RuleSet::Unmatched::kForward);
  ASSERT_EQ(fwd->unmatched_destinations().size(), 1u);
  EXPECT_EQ(fwd->unmatched_destinations()[0], fwd->FindDestination("archive"));
}

TEST(RoutingEvalTest, ExplanationSaysWhy) {
  auto set = MustParse(OneRule("Modality = [\"CT\", \"MR\"]\ncalling_ae = \"CTSCAN1\"\n"));
  ASSERT_NE(set, nullptr);
  Object o;
  o.Put(DCM_Modality, "US");
  Decision d;
  Explanation e;
  set->Evaluate(&o.ds, o.facts, kTuesdayNoon, &d, &e);
  ASSERT_EQ(e.rules.size(), 1u);
  EXPECT_FALSE(e.rules[0].matched);
  EXPECT_THAT(e.rules[0].reasons, ElementsAre("Modality = any of [CT, MR]: no (value 'US')",
                                              "calling_ae = 'CTSCAN1': yes (calling AE 'CTSCAN1')"));
}

TEST(RoutingEvalTest, DestinationSettingsParsed) {
  auto set = MustParse(
      "[[destination]]\n"
      "name = \"telerad\"\n"
      "ae_title = \"TELERAD\"\n"
      "host = \"10.2.0.7\"\n"
      "port = 11112\n"
      "max_associations = 3\n"
      "transfer_syntaxes = [\"JPEGLSLossless\", \"1.2.840.10008.1.2.1\"]\n"
      "bandwidth_limit = \"2MB/s\"\n"
      "retry = { max_attempts = 5, max_age = \"2d\", initial_backoff = \"30s\", max_backoff = \"1h\" }\n"
      "tls = { ca_file = \"ca.pem\", cert_file = \"/etc/c.pem\", key_file = \"/etc/k.pem\" }\n"
      "hold_study = \"5m\"\n"
      "resend = \"never\"\n"
      "resend_window = \"7d\"\n"
      "[[destination]]\n"
      "name = \"plain\"\n"
      "ae_title = \"PLAIN\"\n"
      "host = \"10.2.0.8\"\n");
  ASSERT_NE(set, nullptr);
  const Destination* d = set->FindDestination("telerad");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->port, 11112);
  EXPECT_EQ(d->max_associations, 3u);
  EXPECT_THAT(d->transfer_syntaxes, ElementsAre("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1"));
  EXPECT_EQ(d->bandwidth_limit_bps, 2000000u);
  EXPECT_EQ(d->retry.max_attempts, 5u);
  EXPECT_EQ(d->retry.max_age_s, 2u * 86400);
  EXPECT_EQ(d->retry.initial_backoff_s, 30u);
  EXPECT_EQ(d->retry.max_backoff_s, 3600u);
  EXPECT_TRUE(d->tls);
  EXPECT_EQ(d->tls_ca_file, "ca.pem");
  EXPECT_EQ(d->tls_key_file, "/etc/k.pem");
  EXPECT_EQ(d->hold_study_s, 300u);
  EXPECT_EQ(d->resend, Destination::Resend::kNever);
  EXPECT_EQ(d->resend_window_s, 7u * 86400);
  EXPECT_EQ(d->where, "rules.toml:1:1");
  // The defaults: send again only what changed, within 30 days.
  const Destination* plain = set->FindDestination("plain");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->resend, Destination::Resend::kIfChanged);
  EXPECT_EQ(plain->resend_window_s, 30u * 86400);
  // Adaptive concurrency, capped at 64; max_associations alone caps it.
  EXPECT_EQ(plain->concurrency, Destination::Concurrency::kAdaptive);
  EXPECT_EQ(plain->max_associations, 64u);
  EXPECT_EQ(d->concurrency, Destination::Concurrency::kAdaptive);
  EXPECT_EQ(set->rule_count(), 0u);
}

TEST(RoutingEvalTest, ExampleFileLoadsAndRoutesAfterHours) {
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Load(RELAIS_SOURCE_DIR "/appliance/rules-example.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const RuleSet& set = **r;
  Object ct;
  ct.Put(DCM_Modality, "CT").Put(DCM_PatientName, "DOE^JOHN");
  Decision d;
  set.Evaluate(&ct.ds, ct.facts, kTuesdayNoon, &d);
  ASSERT_EQ(d.targets.size(), 1u);
  EXPECT_EQ(d.targets[0].destination->name, "archive");
  set.Evaluate(&ct.ds, ct.facts, At(2024, 6, 4, 22, 0), &d);
  ASSERT_EQ(d.targets.size(), 2u);
  EXPECT_EQ(d.targets[1].destination->name, "telerad");
  EXPECT_EQ(d.targets[1].priority, 10);
  ASSERT_EQ(d.targets[1].edits->size(), 2u);
  EXPECT_EQ((*d.targets[1].edits)[0].tag, 0x00091010u);
  set.Evaluate(&ct.ds, ct.facts, At(2024, 6, 1, 12, 0), &d);  // Saturday noon
  EXPECT_EQ(d.targets.size(), 2u);
  Object test;
  test.Put(DCM_PatientName, "TEST^PHANTOM").Put(DCM_Modality, "CT");
  set.Evaluate(&test.ds, test.facts, At(2024, 6, 4, 22, 0), &d);
  EXPECT_TRUE(d.dropped);
  EXPECT_TRUE(d.targets.empty());
}

TEST(RoutingEvalTest, DirectoryLoadsFilesInNameOrder) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("relais-rules-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "20-rules.toml") << "[[rule]]\nname = \"second\"\nforward = [\"archive\"]\n";
  std::ofstream(dir / "10-dest.toml") << kDestinations << "[[rule]]\nname = \"first\"\nforward = [\"telerad\"]\n";
  std::ofstream(dir / "notes.txt") << "not toml";
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Load(dir.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->source_files().size(), 2u);
  Object o;
  Decision d;
  (*r)->Evaluate(&o.ds, o.facts, kTuesdayNoon, &d);
  ASSERT_EQ(d.matched_rules.size(), 2u);
  EXPECT_EQ(*d.matched_rules[0], "first");
  EXPECT_EQ(*d.matched_rules[1], "second");
  // An error in one file names that file.
  std::ofstream(dir / "30-bad.toml") << "[[rule]]\nname = \"x\"\nforward = [\"nowhere\"]\n";
  r = RuleSet::Load(dir.string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("30-bad.toml:3:12: unknown destination 'nowhere'"));
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(RuleSet::Load(dir.string()).status().IsNotFound());
}

TEST(RoutingTest, BandwidthWindowsAndPriorityAboveLimit) {
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(
      "[[destination]]\n"
      "name = \"telerad\"\n"
      "ae_title = \"TELERAD\"\n"
      "host = \"10.2.0.7\"\n"
      "priority_above_limit = true\n"
      "bandwidth = [ { limit = \"2MB/s\", days = \"mon-fri\", from = \"07:00\", to = \"19:00\" },\n"
      "              { limit = \"500KiB/s\", days = \"fri-mon,wed\", from = \"19:00:30\", to = \"24:00\" },\n"
      "              { limit = \"unlimited\" } ]\n",
      "rules.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Destination* d = (*r)->FindDestination("telerad");
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->priority_above_limit);
  EXPECT_EQ(d->bandwidth_limit_bps, 0u);
  ASSERT_EQ(d->bandwidth.size(), 3u);
  EXPECT_EQ(d->bandwidth[0].limit_bps, 2000000u);
  EXPECT_EQ(d->bandwidth[0].days, 0b0111110);
  EXPECT_EQ(d->bandwidth[0].from_s, 7u * 3600);
  EXPECT_EQ(d->bandwidth[0].to_s, 19u * 3600);
  EXPECT_EQ(d->bandwidth[1].limit_bps, 512000u);
  EXPECT_EQ(d->bandwidth[1].days, 0b1101011);  // fri sat sun mon, wed
  EXPECT_EQ(d->bandwidth[1].from_s, 19u * 3600 + 30);
  EXPECT_EQ(d->bandwidth[1].to_s, 0u);  // 24:00 is midnight
  EXPECT_EQ(d->bandwidth[2].limit_bps, 0u);
  EXPECT_EQ(d->bandwidth[2].days, 0x7F);
}

}  // namespace
}  // namespace relais::rules
