// The asynchronous operations window (PS3.7 D.3.3.3, issue 16) between real
// processes: Relais delivering to Relais (both sides of the window), to
// peers that do not accept it (storescp, Orthanc), and kill -9 of either
// Relais while a window is open. Every wait is for an event (files, rows,
// log lines), never for a time.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string SmallCt() { return CorpusDir() + "/pydicom__77654033_CT2_17106.dcm"; }

std::string Destination(const std::string& name, const std::string& ae, uint16_t port) {
  return "[[destination]]\nname = \"" + name + "\"\nae_title = \"" + ae +
         "\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) +
         "\nretry = { initial_backoff = \"1s\", max_backoff = \"1s\" }\n";
}

// A Relais in `dir` whose rules forward everything to `destinations`.
RelaisOptions Forwarding(const std::string& dir, const std::string& destinations, const std::string& forward) {
  WriteFile(dir + "/rules.toml", destinations + "[[rule]]\nname = \"all\"\nforward = [" + forward + "]\n");
  RelaisOptions o;
  o.extra = "\n[rules]\npath = \"" + dir + "/rules.toml\"\n";
  return o;
}

// `relais queue ls --json`: rows still "queued".
size_t QueuedRows(const RelaisProcess& relais) {
  RunResult r = RunCommand({RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"}, 120);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return static_cast<size_t>(CountOccurrences(r.output, "\"state\":\"queued\""));
}

bool WaitNoQueuedRows(const RelaisProcess& relais, int timeout_s) {
  const int64_t deadline = NowMs() + timeout_s * 1000LL;
  while (QueuedRows(relais) != 0) {
    if (NowMs() > deadline) return false;
    SleepMs(250);
  }
  return true;
}

// Every `key=N` of `log`, as numbers.
std::vector<int> Values(const std::string& log, const std::string& key) {
  std::vector<int> out;
  std::regex re("[ ]" + key + "=([0-9]+)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back(std::stoi((*it)[1].str()));
  }
  return out;
}

// SOP Instance UIDs the log of the sending Relais says `dest` acknowledged.
std::set<std::string> Delivered(const std::string& log, const std::string& dest) {
  std::set<std::string> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("dest=" + dest + " ") == std::string::npos || line.find("event=delivered") == std::string::npos) {
      continue;
    }
    size_t p = line.find(" sop=");
    if (p == std::string::npos) continue;
    p += 5;
    out.insert(line.substr(p, line.find(' ', p) - p));
  }
  return out;
}

// The window= of each outgoing association the log says was established.
std::vector<int> Windows(const std::string& log) {
  std::string established;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("event=association-established") != std::string::npos) established += line + "\n";
  }
  return Values(established, "window");
}

// Lines of `log` containing "event=stored".
int StoredEvents(const std::string& log) { return CountOccurrences(log, "event=stored"); }

// Each of `uids` is in `relais`'s store with the data set bytes of its
// original file (`file_of`). Returns how many were checked.
size_t ExpectStoredByteExact(const RelaisProcess& relais, const std::set<std::string>& uids,
                             const std::map<std::string, std::string>& file_of, const std::string& tmp) {
  std::map<std::string, std::string> listed = relais.StoreList();
  size_t checked = 0;
  for (const std::string& uid : uids) {
    if (listed.count(uid) == 0) {
      ADD_FAILURE() << uid << " was acknowledged but is not in the receiving store";
      continue;
    }
    EXPECT_TRUE(relais.Export(uid, tmp)) << uid;
    std::string why;
    EXPECT_TRUE(SameDataSet(file_of.at(uid), tmp, &why)) << uid << ": " << why;
    ++checked;
  }
  return checked;
}

struct Copies {
  std::vector<std::string> files;
  std::vector<std::string> uids;
  std::map<std::string, std::string> file_of;  // uid -> file
};

Copies MakeCopies(const std::string& dir, int n) {
  Copies c;
  EXPECT_EQ(mkdir(dir.c_str(), 0755), 0);
  c.files = MakeCopiesWithNewUids(SmallCt(), dir, n, &c.uids);
  EXPECT_EQ(c.files.size(), static_cast<size_t>(n));
  for (size_t i = 0; i < c.files.size() && i < c.uids.size(); ++i) c.file_of[c.uids[i]] = c.files[i];
  return c;
}

// Relais A (sender) and Relais B (receiver, keeps what it gets): A's
// objects are queued while B is down, so that a whole backlog waits when
// the association opens.
class RelaisToRelais : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir((dir_ / "a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir_ / "b").c_str(), 0755), 0);
    RelaisOptions bo;
    bo.ae_title = "RELAISB";
    b_ = std::make_unique<RelaisProcess>(dir_ / "b", bo);
    a_ = std::make_unique<RelaisProcess>(dir_ / "a",
                                         Forwarding(dir_ / "a", Destination("b", "RELAISB", b_->port()), "\"b\""));
    ASSERT_TRUE(a_->Start()) << a_->Log();
  }
  void TearDown() override {
    if (a_ && a_->running()) {
      EXPECT_EQ(a_->Terminate(), 0) << a_->Log();
    }
    if (b_ && b_->running()) {
      EXPECT_EQ(b_->Terminate(), 0) << b_->Log();
    }
  }
  // Queues `n` copies at A (B is down): all acknowledged.
  void Queue(int n) {
    copies_ = MakeCopies(dir_ / "copies", n);
    ASSERT_EQ(StorescuAcked(a_->port(), copies_.files).size(), static_cast<size_t>(n)) << a_->Log();
  }
  std::set<std::string> AllUids() const { return {copies_.uids.begin(), copies_.uids.end()}; }

  TempDir dir_;
  std::unique_ptr<RelaisProcess> a_, b_;
  Copies copies_;
};

TEST_F(RelaisToRelais, WindowKeepsSeveralOutstandingAndEveryObjectArrivesByteExact) {
  constexpr int kObjects = 60;
  Queue(kObjects);
  ASSERT_TRUE(b_->Start()) << b_->Log();
  ASSERT_TRUE(WaitNoQueuedRows(*a_, 180)) << a_->Log();
  EXPECT_EQ(Delivered(a_->Log(), "b").size(), static_cast<size_t>(kObjects)) << a_->Log();
  // A's associations negotiated the window Relais grants.
  std::vector<int> windows = Windows(a_->Log());
  ASSERT_FALSE(windows.empty()) << a_->Log();
  for (int w : windows) EXPECT_EQ(w, 16) << a_->Log();
  // B saw more than one C-STORE outstanding on one association (logged when
  // each association closes; A's stop closes them).
  EXPECT_EQ(a_->Terminate(), 0) << a_->Log();
  const int64_t deadline = NowMs() + 30000;
  while (Values(b_->Log(), "max_outstanding").size() < windows.size() && NowMs() < deadline) SleepMs(50);
  std::vector<int> outstanding = Values(b_->Log(), "max_outstanding");
  ASSERT_FALSE(outstanding.empty()) << b_->Log();
  const int most = *std::max_element(outstanding.begin(), outstanding.end());
  std::printf("relais -> relais: %d objects, %zu associations, most outstanding on one: %d\n", kObjects, windows.size(),
              most);
  EXPECT_GT(most, 1) << b_->Log();
  EXPECT_LE(most, 16) << b_->Log();
  EXPECT_EQ(ExpectStoredByteExact(*b_, AllUids(), copies_.file_of, dir_ / "out.dcm"), static_cast<size_t>(kObjects));
}

// kill -9 of the receiving Relais while a window is open: whatever the
// sender had been answered Success for is in B's store, byte-exact; after
// B comes back, everything arrives.
TEST_F(RelaisToRelais, KillNineOfTheReceiverLosesNothingAcknowledged) {
  constexpr int kObjects = 200;
  Queue(kObjects);
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(b_->Start()) << b_->Log();
    const int before = StoredEvents(b_->Log());
    const int64_t deadline = NowMs() + 120000;
    while (StoredEvents(b_->Log()) < before + 15 && NowMs() < deadline) SleepMs(2);
    b_->Kill9();
    // What A logged delivered so far was answered Success by B before the kill.
    std::set<std::string> acked = Delivered(a_->Log(), "b");
    size_t checked = ExpectStoredByteExact(*b_, acked, copies_.file_of, dir_ / "out.dcm");
    std::printf("kill -9 of the receiver #%d: %zu acknowledged objects all stored byte-exact\n", k + 1, checked);
  }
  ASSERT_TRUE(b_->Start()) << b_->Log();
  ASSERT_TRUE(WaitNoQueuedRows(*a_, 240)) << a_->Log();
  EXPECT_EQ(ExpectStoredByteExact(*b_, AllUids(), copies_.file_of, dir_ / "out.dcm"), static_cast<size_t>(kObjects));
}

// kill -9 of the sending Relais mid-window: every object arrives at least
// once (the receiver keeps one copy per SOP Instance UID), none corrupted.
TEST_F(RelaisToRelais, KillNineOfTheSenderDeliversEveryObjectAtLeastOnce) {
  constexpr int kObjects = 200;
  Queue(kObjects);
  ASSERT_TRUE(b_->Start()) << b_->Log();
  int kills_mid_delivery = 0;
  for (int k = 0; k < 3; ++k) {
    const int before = StoredEvents(b_->Log());
    const int64_t deadline = NowMs() + 120000;
    while (StoredEvents(b_->Log()) < before + 20 && NowMs() < deadline) SleepMs(2);
    kills_mid_delivery += StoredEvents(b_->Log()) < kObjects;
    a_->Kill9();
    ASSERT_TRUE(a_->Start()) << "restart " << k << ":\n" << a_->Log();
  }
  ASSERT_TRUE(WaitNoQueuedRows(*a_, 240)) << a_->Log();
  EXPECT_GT(kills_mid_delivery, 0);
  EXPECT_EQ(ExpectStoredByteExact(*b_, AllUids(), copies_.file_of, dir_ / "out.dcm"), static_cast<size_t>(kObjects));
  // An object sent again after a kill arrives as an identical duplicate.
  std::printf("kill -9 of the sender x3 (%d mid-delivery): %d objects, %d stored, %d sent again (identical)\n",
              kills_mid_delivery, kObjects, StoredEvents(b_->Log()),
              CountOccurrences(b_->Log(), "event=duplicate-identical"));
}

// Objects Relais rewrites in memory before sending (tag edits here) go one
// at a time even with a window, so that memory holds at most one rewritten
// object per association; they all arrive, edited.
TEST(AsyncWindowEditsTest, RewrittenObjectsGoOneAtATimeAndArriveEdited) {
  TempDir dir;
  for (const char* d : {"a", "b"}) ASSERT_EQ(mkdir((dir / d).c_str(), 0755), 0);
  RelaisOptions bo;
  bo.ae_title = "RELAISB";
  RelaisProcess b(dir / "b", bo);
  ASSERT_TRUE(b.Start()) << b.Log();
  WriteFile(dir / "a/rules.toml", Destination("b", "RELAISB", b.port()) +
                                      "[[rule]]\nname = \"all\"\nforward = [{ to = \"b\", edits = [{ set = "
                                      "\"InstitutionName\", value = \"Async Edit\" }] }]\n");
  RelaisOptions ao;
  ao.extra = "\n[rules]\npath = \"" + (dir / "a/rules.toml") + "\"\n";
  RelaisProcess a(dir / "a", ao);
  ASSERT_TRUE(a.Start()) << a.Log();
  constexpr int kObjects = 30;
  Copies copies = MakeCopies(dir / "copies", kObjects);
  ASSERT_EQ(StorescuAcked(a.port(), copies.files).size(), static_cast<size_t>(kObjects)) << a.Log();
  ASSERT_TRUE(WaitNoQueuedRows(a, 180)) << a.Log();
  for (int w : Windows(a.Log())) EXPECT_EQ(w, 16) << a.Log();
  EXPECT_EQ(a.Terminate(), 0) << a.Log();
  const int64_t deadline = NowMs() + 30000;
  while (Values(b.Log(), "max_outstanding").empty() && NowMs() < deadline) SleepMs(50);
  std::vector<int> outstanding = Values(b.Log(), "max_outstanding");
  ASSERT_FALSE(outstanding.empty()) << b.Log();
  EXPECT_EQ(*std::max_element(outstanding.begin(), outstanding.end()), 1) << b.Log();
  std::map<std::string, std::string> listed = b.StoreList();
  EXPECT_EQ(listed.size(), static_cast<size_t>(kObjects));
  for (const std::string& uid : copies.uids) {
    ASSERT_TRUE(b.Export(uid, dir / "out.dcm")) << uid;
    EXPECT_EQ(TagValue(dir / "out.dcm", "InstitutionName"), "Async Edit") << uid;
  }
  EXPECT_EQ(b.Terminate(), 0) << b.Log();
}

// Peers that answer no window (storescp, Orthanc: DCMTK's association
// layer) get one C-STORE at a time, and everything arrives.
TEST(AsyncWindowFallbackTest, StorescpAndOrthancGetOneAtATime) {
  TempDir dir;
  for (const char* d : {"a", "scp", "orthanc"}) ASSERT_EQ(mkdir((dir / d).c_str(), 0755), 0);
  StorescpOptions so;
  so.ae_title = "SINK";
  StorescpPeer scp(dir / "scp", so);
  ASSERT_TRUE(scp.Start()) << scp.Log();
  OrthancPeer orthanc(dir / "orthanc", "ORTHANC");
  ASSERT_TRUE(orthanc.Start()) << orthanc.Log();
  RelaisProcess a(dir / "a", Forwarding(dir / "a",
                                        Destination("scp", "SINK", scp.port()) +
                                            Destination("orthanc", "ORTHANC", orthanc.dicom_port()),
                                        "\"scp\", \"orthanc\""));
  ASSERT_TRUE(a.Start()) << a.Log();
  constexpr int kObjects = 30;
  Copies copies = MakeCopies(dir / "copies", kObjects);
  ASSERT_EQ(StorescuAcked(a.port(), copies.files).size(), static_cast<size_t>(kObjects)) << a.Log();
  ASSERT_TRUE(WaitNoQueuedRows(a, 180)) << a.Log();
  std::vector<int> windows = Windows(a.Log());
  ASSERT_FALSE(windows.empty()) << a.Log();
  for (int w : windows) EXPECT_EQ(w, 1) << a.Log();
  auto received = scp.Received();
  for (const std::string& uid : copies.uids) EXPECT_GE(received[uid].size(), 1u) << uid << " not at storescp";
  std::vector<std::string> ids;
  ASSERT_TRUE(orthanc.InstanceIds(&ids));
  EXPECT_EQ(ids.size(), static_cast<size_t>(kObjects));
  EXPECT_EQ(Delivered(a.Log(), "scp").size(), static_cast<size_t>(kObjects));
  EXPECT_EQ(Delivered(a.Log(), "orthanc").size(), static_cast<size_t>(kObjects));
  EXPECT_EQ(a.Terminate(), 0) << a.Log();
}

}  // namespace
}  // namespace relais::itest
