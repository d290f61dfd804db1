// Finding studies in the delivery history: name folding, each key of the
// query, the date range, and the JSON both `relais find` and /api/studies
// print.
#include "router/operate/study_search.h"

#include <gtest/gtest.h>

namespace relais::router {
namespace {

store::StudyHistory Study() {
  store::StudyHistory h;
  h.study_instance_uid = "1.2.250.1";
  h.patient_id = "PAT-42";
  h.patient_name = "Lefèvre^Hélène^Marie";
  h.accession_number = "ACC-7";
  h.study_date = "20261207";
  h.modalities = {"CT", "SR"};
  h.calling_aes = {"CTSCAN1"};
  h.first_received_unix_ms = 1'800'000'000'000;
  return h;
}

bool Matches(const StudyQuery& q) { return StudyMatches(q, Study()); }

TEST(StudySearch, FoldsCaseAccentsAndPersonNameSeparators) {
  EXPECT_EQ(FoldText("Lefèvre^Hélène"), "lefevre helene");
  EXPECT_EQ(FoldText("ÆSØP^Çà=ŁÓDŹ"), "aesop ca lodz");
  EXPECT_EQ(FoldText("MÜLLER"), "muller");
  EXPECT_EQ(FoldText("山田^太郎"), "山田 太郎");  // other scripts kept
}

TEST(StudySearch, NameMatchesEveryWordWhateverTheCaseAndAccents) {
  StudyQuery q;
  q.name = "helene";
  EXPECT_TRUE(Matches(q));
  q.name = "HÉLÈNE lefevre";
  EXPECT_TRUE(Matches(q));
  q.name = "lefevre^helene";
  EXPECT_TRUE(Matches(q));
  q.name = "helene dupont";
  EXPECT_FALSE(Matches(q));
}

TEST(StudySearch, EachKeyFilters) {
  StudyQuery q;
  EXPECT_TRUE(Matches(q));
  q.patient_id = "PAT-42";
  EXPECT_TRUE(Matches(q));
  q.patient_id = "PAT-4";
  EXPECT_FALSE(Matches(q));
  q = {};
  q.accession = "ACC-7";
  EXPECT_TRUE(Matches(q));
  q.accession = "ACC";
  EXPECT_FALSE(Matches(q));
  q = {};
  q.study = "1.2.250.1";
  EXPECT_TRUE(Matches(q));
  q.study = "1.2.250";
  EXPECT_FALSE(Matches(q));
  q = {};
  q.modality = "sr";
  EXPECT_TRUE(Matches(q));
  q.modality = "MR";
  EXPECT_FALSE(Matches(q));
  q = {};
  q.calling_ae = "ctscan1";
  EXPECT_TRUE(Matches(q));
  q.calling_ae = "MRI";
  EXPECT_FALSE(Matches(q));
}

TEST(StudySearch, DateRangeIsInclusiveOnTheStudyDateElseTheDayReceived) {
  StudyQuery q;
  ASSERT_TRUE(ParseQueryDate("2026-12-07", &q.from).ok());
  ASSERT_TRUE(ParseQueryDate("20261207", &q.to).ok());
  EXPECT_TRUE(Matches(q));
  q.from = "20261208";
  q.to = "";
  EXPECT_FALSE(Matches(q));
  store::StudyHistory no_date = Study();
  no_date.study_date.clear();  // received 2027-01-15 (UTC)
  q.from = "20270115";
  q.to = "20270115";
  EXPECT_TRUE(StudyMatches(q, no_date));
  std::string d;
  EXPECT_FALSE(ParseQueryDate("7/12/2026", &d).ok());
  EXPECT_FALSE(ParseQueryDate("2026-1207", &d).ok());
}

TEST(StudySearch, JsonHasTheStudyAndEachDestination) {
  store::StudyHistory h = Study();
  store::StudyDestination d;
  d.destination = "PACS";
  d.sent = 3;
  d.attempts = 4;
  d.last_sent_unix_ms = 1'800'000'000'000;
  h.destinations.push_back(d);
  std::string j = StudiesJson({h}, false);
  EXPECT_NE(j.find("\"patient_name\":\"Lefèvre^Hélène^Marie\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"destination\":\"PACS\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"sent\":3"), std::string::npos) << j;
  EXPECT_NE(j.find("\"last_sent\":\"2027-01-15T08:00:00.000Z\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"truncated\":false"), std::string::npos) << j;
}

}  // namespace
}  // namespace relais::router
