// Bandwidth by time of day (rules/README.md, "Bandwidth by time of day"): a
// destination with two windows, 400 KB/s until a boundary a few seconds
// ahead (local time, "HH:MM:SS") and 1.6 MB/s after it, switching while
// objects are being sent. A TCP relay in the test between Relais and storescp
// counts the bytes Relais sends as they pass; the rate over 5-6 seconds
// inside each window must follow that window's cap within 5 % (slow label:
// about 30 s).
//
// Timing: the rates are low enough for a loaded 2-core machine to keep up
// (the limiter, not the machine, sets the pace); the measured spans keep
// half a second away from the boundary (the limiter's quarter-second
// bucket) and start seconds after Relais began sending (its first burst).
// If the backlog were sent before the boundary the test says so.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using ::relais::NowUnixMs;  // wall time: the windows are in local time

// Forwards every connection to 127.0.0.1:`target` and records (time, bytes)
// of what flows from the client (Relais) to the target.
class CountingRelay {
 public:
  explicit CountingRelay(uint16_t target) : target_(target) {
    listen_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listen_, 16);
    socklen_t len = sizeof(a);
    getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] { AcceptLoop(); });
  }
  ~CountingRelay() {
    stop_ = true;
    accept_.join();
    for (auto& t : pumps_) t.join();
    close(listen_);
  }
  uint16_t port() const { return port_; }

  uint64_t TotalBytes() {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t n = 0;
    for (const auto& [at, bytes] : log_) n += bytes;
    return n;
  }

  // The rate Relais sent at in [from_ms, to_ms), bytes/s: the bytes that
  // reached the relay (the receiving side) in the span over its length.
  // Relais paces in slices of ~20 ms of the rate (scu_association.cc), so
  // over seconds the slice cut at either end is within a percent or two.
  double RateBetween(int64_t from_ms, int64_t to_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t bytes = 0;
    for (const auto& [at, n] : log_) {
      if (at >= from_ms && at < to_ms) bytes += n;
    }
    return static_cast<double>(bytes) * 1000.0 / static_cast<double>(to_ms - from_ms);
  }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int c = accept(listen_, nullptr, nullptr);
      if (c < 0) continue;
      int s = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_);
      if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        close(c);
        close(s);
        continue;
      }
      pumps_.emplace_back([this, c, s] { Pump(c, s); });
    }
  }
  void Pump(int c, int s) {
    char buf[65536];
    while (!stop_) {
      pollfd p[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
      if (poll(p, 2, 100) <= 0) continue;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        ssize_t n = read(p[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          done = true;
          break;
        }
        if (i == 0) {
          std::lock_guard<std::mutex> lock(mu_);
          log_.emplace_back(NowUnixMs(), static_cast<uint64_t>(n));
        }
        for (ssize_t off = 0; off < n;) {
          ssize_t w = write(i == 0 ? s : c, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) {
            done = true;
            break;
          }
          off += w;
        }
      }
      if (done) break;
    }
    close(c);
    close(s);
  }

  uint16_t target_;
  uint16_t port_ = 0;
  int listen_ = -1;
  std::atomic<bool> stop_{false};
  std::thread accept_;
  std::vector<std::thread> pumps_;  // appended by the accept thread only; joined after it
  std::mutex mu_;
  std::vector<std::pair<int64_t, uint64_t>> log_;
};

std::string LocalClock(int64_t unix_ms) {
  time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm lt {};
  localtime_r(&t, &lt);
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d", lt.tm_hour, lt.tm_min, lt.tm_sec);
  return buf;
}

TEST(BandwidthScheduleTest, RateFollowsEachWindowAcrossABoundaryWhileSending) {
  constexpr double kSlow = 400e3, kFast = 1600e3;  // bytes/s
  constexpr int64_t kLeadMs = 14000;               // boundary this far after the rules are written
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  StorescpOptions opts;
  opts.ae_title = "TELERAD";
  StorescpPeer peer(tmp / "peer", opts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  CountingRelay relay(peer.port());

  // The boundary on a whole second (windows are in seconds of local time).
  const int64_t boundary = (NowUnixMs() + kLeadMs) / 1000 * 1000;
  const std::string start = LocalClock(boundary - 3600 * 1000), end = LocalClock(boundary);
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"telerad\"\nae_title = \"TELERAD\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(relay.port()) + "\nbandwidth = [ { limit = \"400KB/s\", from = \"" + start +
                       "\", to = \"" + end + "\" },\n  { limit = \"1600KB/s\" } ]\n\n" +
                       "[[rule]]\nname = \"all\"\nforward = [\"telerad\"]\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // 40 CT slices (~21 MB): more than 14 s at 400 KB/s plus 6.5 s at 1.6 MB/s.
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(
      CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", tmp / "copies", 40, &uids);
  ASSERT_EQ(files.size(), 40u);
  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const int64_t slow_from = boundary - 6000, slow_to = boundary - 500;
  const int64_t fast_from = boundary + 500, fast_to = boundary + 6500;
  ASSERT_LT(NowUnixMs(), slow_from) << "Relais and storescu took longer than the lead before the boundary; nothing to "
                                       "measure in the first window";
  while (NowUnixMs() < fast_to + 100) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LT(peer.CountFiles(), files.size()) << "the backlog was all sent before the second span ended";
  const double slow = relay.RateBetween(slow_from, slow_to);
  const double fast = relay.RateBetween(fast_from, fast_to);
  std::printf("window 1 (400 KB/s): %.0f B/s (%.1f %%); window 2 (1.6 MB/s): %.0f B/s (%.1f %%)\n", slow,
              100.0 * slow / kSlow, fast, 100.0 * fast / kFast);
  EXPECT_NEAR(slow, kSlow, kSlow * 0.05) << relais.Log();
  EXPECT_NEAR(fast, kFast, kFast * 0.05) << relais.Log();
  EXPECT_NE(relais.Log().find("event=bandwidth-cap from_bps=400000 to_bps=1600000"), std::string::npos) << relais.Log();

  // Everything arrives.
  int64_t deadline = NowUnixMs() + 60000;
  while (NowUnixMs() < deadline && peer.CountFiles() < files.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(peer.CountFiles(), files.size()) << relais.Log();
}

// priority_above_limit: a STAT study (priority 10) on a destination capped
// at 20 KB/s whose only association is busy with a routine CT backlog goes
// out on the priority lane unpaced. Its 10 MR objects (1.3 MB) would need
// more than 66 s at the cap; they arrive while the routine backlog has not
// yet put 300 kB more on the wire (15 s at the cap), an order of bytes, not
// of time, so a slow machine cannot make it pass wrongly.
TEST(BandwidthScheduleTest, PriorityAboveLimitSendsStatUnpaced) {
  TempDir tmp;
  for (const char* d : {"peer", "relais", "ct", "mr"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  // tests/tools/fake_scp.py: it takes several associations at once (the
  // lane is a second one) and logs each object's UID as it answers.
  FakeScp pacs(tmp.path());
  ASSERT_TRUE(pacs.Start()) << pacs.Log();
  CountingRelay relay(pacs.port());
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"telerad\"\nae_title = \"FAKEPACS\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(relay.port()) +
                       "\nconcurrency = \"fixed\"\nmax_associations = 1\npriority_above_limit = true\n"
                       "bandwidth = [ { limit = \"20KB/s\" } ]\n\n"
                       "[[rule]]\nname = \"routine\"\nforward = [\"telerad\"]\n[rule.match]\nModality = \"CT\"\n\n"
                       "[[rule]]\nname = \"stat\"\npriority = 10\nforward = [\"telerad\"]\n[rule.match]\n"
                       "Modality = \"MR\"\n");
  RelaisOptions options;
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> ct_uids, mr_uids;
  std::vector<std::string> ct =
      MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", tmp / "ct", 2, &ct_uids);
  std::vector<std::string> mr = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "mr", 10, &mr_uids);
  ASSERT_EQ(ct.size(), 2u);
  ASSERT_EQ(mr.size(), 10u);
  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), ct.begin(), ct.end());
  RunResult r = RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The routine backlog is on the wire (past the first burst of the bucket).
  int64_t deadline = NowUnixMs() + 60000;
  while (NowUnixMs() < deadline && relay.TotalBytes() < 80000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(relay.TotalBytes(), 80000u) << relais.Log();

  argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), mr.begin(), mr.end());
  r = RunCommand(argv, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const uint64_t queued_at = relay.TotalBytes();
  deadline = NowUnixMs() + 120000;
  size_t stat_got = 0;
  while (NowUnixMs() < deadline) {
    const std::vector<std::string> got = pacs.Received();
    const std::set<std::string> seen(got.begin(), got.end());
    stat_got = 0;
    for (const std::string& uid : mr_uids) stat_got += seen.count(uid);
    if (stat_got == mr_uids.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(stat_got, mr_uids.size()) << relais.Log();
  const uint64_t stat_bytes = 10 * ReadFile(mr[0]).size();
  const uint64_t routine_meanwhile =
      relay.TotalBytes() - queued_at - std::min(relay.TotalBytes() - queued_at, stat_bytes);
  std::printf("STAT study (%llu bytes) complete while the routine backlog sent %llu bytes more\n",
              static_cast<unsigned long long>(stat_bytes), static_cast<unsigned long long>(routine_meanwhile));
  EXPECT_LT(routine_meanwhile, 300000u) << "the STAT study was paced by the 20 KB/s cap\n" << relais.Log();
  EXPECT_LT(pacs.Received().size(), 12u) << "the routine backlog went through first";
  EXPECT_NE(relais.Log().find("event=priority-lane"), std::string::npos) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
