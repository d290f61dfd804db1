// STAT overtakes a backlog (DeliveryScheduler, "priority lane"): routine CT
// objects queued on a slow peer that has every association busy, then a
// STAT MR study (another SOP class, not negotiated on the busy
// associations): the STAT study arrives complete long before the routine
// backlog is through. The peer (tests/tools/fake_scp.py) is slow per object
// and logs each object as it answers, so the test checks the order of
// arrival, not times.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

size_t CountIn(const std::vector<std::string>& lines, const std::set<std::string>& uids) {
  size_t n = 0;
  for (const std::string& l : lines) n += uids.count(l);
  return n;
}

TEST(PriorityLaneTest, StatStudyOvertakesARoutineBacklogOnABusyDestination) {
  constexpr int kRoutine = 2000;  // issue 16: 2,000 routine CT images queued
  constexpr int kStat = 20;
  constexpr size_t kMoreRoutineAllowed = 100;  // issue 16: before 100 more routine images
  TempDir tmp;
  for (const char* d : {"relais", "ct", "mr"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  std::vector<std::string> ct_uids, mr_uids;
  std::vector<std::string> ct =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", tmp / "ct", kRoutine, &ct_uids);
  std::vector<std::string> mr = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "mr", kStat, &mr_uids);
  ASSERT_EQ(ct.size(), static_cast<size_t>(kRoutine));
  ASSERT_EQ(mr.size(), static_cast<size_t>(kStat));
  const std::set<std::string> routine(ct_uids.begin(), ct_uids.end());
  const std::set<std::string> stat(mr_uids.begin(), mr_uids.end());

  // The slow peer: 20 ms per object and association.
  FakeScpOptions fo;
  fo.delay_ms = 20;
  FakeScp pacs(tmp.path(), fo);
  ASSERT_TRUE(pacs.Start()) << pacs.Log();

  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"pacs\"\nae_title = \"FAKEPACS\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(pacs.port()) +
                       "\nmax_associations = 2\n\n"
                       "[[rule]]\nname = \"routine\"\nforward = [\"pacs\"]\n[rule.match]\nModality = \"CT\"\n\n"
                       "[[rule]]\nname = \"stat\"\npriority = 10\nforward = [\"pacs\"]\n[rule.match]\n"
                       "Modality = \"MR\"\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), ct.begin(), ct.end());
  RunResult r = RunCommand(argv, 300);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The backlog is being sent on every association.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (CountIn(pacs.Received(), routine) < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(CountIn(pacs.Received(), routine), 4u) << relais.Log();

  argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), mr.begin(), mr.end());
  r = RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Every object is committed (acknowledged): count the routine ones the
  // peer had when the STAT study was queued.
  const size_t routine_before = CountIn(pacs.Received(), routine);

  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::vector<std::string> got = pacs.Received();
  while (CountIn(got, stat) < stat.size() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    got = pacs.Received();
  }
  ASSERT_EQ(CountIn(got, stat), stat.size()) << relais.Log();
  // Where the last STAT object landed in the order of arrival.
  size_t routine_at_last_stat = 0, stat_seen = 0;
  for (const std::string& uid : got) {
    if (stat.count(uid) != 0 && ++stat_seen == stat.size()) break;
    routine_at_last_stat += routine.count(uid);
  }
  std::fprintf(stderr, "routine objects at the peer: %zu when the STAT study was queued, %zu when it was complete\n",
               routine_before, routine_at_last_stat);
  EXPECT_LT(routine_at_last_stat - routine_before, kMoreRoutineAllowed)
      << "the STAT study waited behind the routine backlog (" << routine_before << " routine objects before it, "
      << routine_at_last_stat << " when it was complete)\n"
      << relais.Log();
  EXPECT_LT(routine_at_last_stat, static_cast<size_t>(kRoutine));
  EXPECT_NE(relais.Log().find("event=priority-lane"), std::string::npos) << relais.Log();

  // And the backlog itself is delivered in full.
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (CountIn(pacs.Received(), routine) < routine.size() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(CountIn(pacs.Received(), routine), routine.size()) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
