// The user-space WAN link (tests/tools/wanlink.cc driven by
// tests/tools/wan_env.sh) between two network namespaces: it delays, drops
// while down, loses at random, and DICOM still gets through intact when
// storescu retries what was not acknowledged. Needs root, `ip netns` and
// /dev/net/tun; skips with the reason otherwise. Timing is checked only from
// below (a round trip cannot be shorter than twice the one-way delay), never
// against the speed of the machine.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <thread>

#include "harness.h"

namespace relais::itest {
namespace {

constexpr char kAddrB[] = "10.77.0.2";
constexpr int kDelayMs = 50;

std::string WanEnvScript() { return std::string(RELAIS_SOURCE_DIR) + "/tests/tools/wan_env.sh"; }

// Runs `fn` on a fresh thread that has entered network namespace `ns`
// (setns(2) changes only the calling thread's namespace, so the test's own
// thread stays where it was). False if the namespace cannot be entered.
bool InNetns(const std::string& ns, const std::function<void()>& fn) {
  bool entered = false;
  std::thread t([&] {
    int fd = open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    entered = setns(fd, CLONE_NEWNET) == 0;
    close(fd);
    if (entered) fn();
  });
  t.join();
  return entered;
}

// A listening TCP socket on kAddrB:0 inside `ns`; the kernel completes
// handshakes without accept(2), so a connect measures one round trip.
int ListenIn(const std::string& ns, uint16_t* port) {
  int fd = -1;
  InNetns(ns, [&] {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, kAddrB, &a.sin_addr);
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      close(fd);
      fd = -1;
      return;
    }
    *port = ntohs(a.sin_port);
  });
  return fd;
}

// Milliseconds a TCP connect from `ns` to kAddrB:port took, or -1 if it did
// not complete within timeout_ms.
int64_t ConnectMs(const std::string& ns, uint16_t port, int timeout_ms) {
  int64_t ms = -1;
  InNetns(ns, [&] {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, kAddrB, &a.sin_addr);
    int64_t t0 = NowMs();
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      if (poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) rc = 0;
    }
    if (rc == 0) ms = NowMs() - t0;
    close(fd);
  });
  return ms;
}

// The number after `key` in the "a->b: ..." part of a `stats` reply.
uint64_t StatAB(const std::string& stats, const std::string& key) {
  size_t ab = stats.find("a->b:");
  if (ab == std::string::npos) return 0;
  std::string part = stats.substr(ab, stats.find("b->a:") - ab);
  size_t k = part.find(" " + key + " ");
  return k == std::string::npos ? 0 : std::strtoull(part.c_str() + k + key.size() + 2, nullptr, 10);
}

// "" when storescu and storescp are installed, else what is missing.
std::string MissingDcmtkTool() {
  for (const char* tool : {"storescu", "storescp"}) {
    if (RunCommand({"sh", "-c", std::string("command -v ") + tool}, 10).exit_code != 0)
      return std::string(tool) + " not installed (package dcmtk)";
  }
  return "";
}

// The file of `files` that storescp wrote for `uid` (it names them
// MODALITY.UID), or "".
std::string ReceivedFile(const std::vector<std::string>& files, const std::string& uid) {
  for (const std::string& path : files) {
    if (path.size() > uid.size() && path.compare(path.size() - uid.size(), uid.size(), uid) == 0) return path;
  }
  return "";
}

// iperf3's receiver rate (MB/s, 1e6 bytes) with `streams` parallel TCP
// streams from namespace a to b for `seconds`, or 0 if it did not run.
double Iperf3MBps(const std::string& ns_a, const std::string& ns_b, int streams, int seconds) {
  Child server;
  TempDir tmp;
  if (!server.Start({"ip", "netns", "exec", ns_b, "iperf3", "-s", "-1", "-p", "5201"}, tmp / "iperf3-server.log"))
    return 0;
  RunResult r;
  for (int i = 0; i < 50; ++i) {  // until the server listens
    r = RunCommand({"ip", "netns", "exec", ns_a, "iperf3", "-c", kAddrB, "-p", "5201", "-P", std::to_string(streams),
                    "-t", std::to_string(seconds), "-J"},
                   seconds + 60);
    if (r.output.find("\"sum_received\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  server.Stop(SIGTERM, 10);
  size_t at = r.output.find("\"sum_received\"");
  if (at == std::string::npos) return 0;
  at = r.output.find("\"bits_per_second\":", at);
  if (at == std::string::npos) return 0;
  return std::strtod(r.output.c_str() + at + std::strlen("\"bits_per_second\":"), nullptr) / 8e6;
}

class WanLinkTest : public testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, TUN devices)";
    int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (tun < 0) GTEST_SKIP() << "/dev/net/tun unavailable: " << std::strerror(errno);
    close(tun);
    if (access(RELAIS_WANLINK_BINARY, X_OK) != 0) GTEST_SKIP() << RELAIS_WANLINK_BINARY << " not built";
    // Links are named after the test process; remove those of crashed runs.
    Env({"sweep", "rwt"});
    prefix_ = "rwt" + std::to_string(getpid());
    std::string probe = prefix_ + "p";
    RunResult add = RunCommand({"ip", "netns", "add", probe}, 30);
    RunCommand({"ip", "netns", "del", probe}, 30);
    if (add.exit_code != 0) GTEST_SKIP() << "`ip netns add` does not work here: " << add.output;
    ns_a_ = prefix_ + "a";
    ns_b_ = prefix_ + "b";
  }

  void TearDown() override {
    if (!prefix_.empty()) {
      RunResult r = Env({"down", prefix_});
      EXPECT_EQ(r.exit_code, 0) << r.output;
    }
  }

  RunResult Env(std::vector<std::string> args) {
    args.insert(args.begin(), {"bash", WanEnvScript()});
    return RunCommand(args, 60, {{"WANLINK", RELAIS_WANLINK_BINARY}});
  }
  bool Up(double loss) {
    RunResult r = Env({"up", prefix_, std::to_string(kDelayMs), std::to_string(loss), "0"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0;
  }
  std::string Ctl(const std::string& cmd) {
    RunResult r = Env({"ctl", prefix_, cmd});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.output;
    return r.output;
  }

  // True once something listens on `port` in namespace `ns` (15 s at most).
  bool ListeningIn(const std::string& ns, int port) {
    for (int i = 0; i < 150; ++i) {
      RunResult ss = RunCommand({"ip", "netns", "exec", ns, "ss", "-Htln", "sport = :" + std::to_string(port)}, 10);
      if (ss.exit_code == 0 && ss.output.find(std::to_string(port)) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // Files per second between the first and the last of `n` files to appear
  // in `dir` (polled every 50 ms), or 0 if they did not all come.
  static double RateInto(const std::string& dir, size_t n, int timeout_s) {
    int64_t first = 0, deadline = NowMs() + timeout_s * 1000LL;
    size_t got = 0;
    while (NowMs() < deadline) {
      got = ListFiles(dir).size();
      if (got > 0 && first == 0) first = NowMs();
      if (got >= n) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    int64_t last = NowMs();
    if (got < n || last <= first) return 0.0;
    return static_cast<double>(n - 1) * 1000.0 / static_cast<double>(last - first);
  }

  // Starts `relais` in namespace a (config and store in `tmp`) forwarding
  // everything to the default destination "farsite" (FARSITE at
  // kAddrB:11112, nothing but name, AE title, host and port), takes the link
  // down, queues `files` there with one storescu (a backlog, as after a
  // night offline), and brings the link up again.
  void QueueBehindDownLink(const TempDir& tmp, const std::vector<std::string>& files, Child* relais) {
    const std::string config = tmp / "relais.toml", rules = tmp / "rules.toml";
    WriteFile(rules, "[[destination]]\nname = \"farsite\"\nae_title = \"FARSITE\"\nhost = \"" + std::string(kAddrB) +
                         "\"\nport = 11112\n\n[[rule]]\nname = \"all\"\nforward = [\"farsite\"]\n");
    WriteFile(config,
              "[listener]\nae_title = \"RELAIS\"\nhost = \"127.0.0.1\"\nport = 11112\n"
              "[store]\npath = \"" +
                  tmp / "store" +
                  "\"\n"
                  "[delivery]\nconnect_timeout_s = 5\n"
                  "[rules]\npath = \"" +
                  rules + "\"\n");
    Ctl("down");
    ASSERT_TRUE(relais->Start({"ip", "netns", "exec", ns_a_, RelaisBinary(), "serve", "--config", config},
                              tmp / "relais->log"));
    ASSERT_TRUE(ListeningIn(ns_a_, 11112)) << relais->ReadLog();
    std::vector<std::string> in = {"ip", "netns", "exec", ns_a_, "storescu", "-aec", "RELAIS", "127.0.0.1", "11112"};
    in.insert(in.end(), files.begin(), files.end());
    RunResult sent = RunCommand(in, 600);
    ASSERT_EQ(sent.exit_code, 0) << sent.output;
    Ctl("up");
  }

  std::string prefix_, ns_a_, ns_b_;
};

TEST_F(WanLinkTest, RoundTripIsTwiceTheDelayAndDownOrLossDropsPackets) {
  ASSERT_TRUE(Up(0));
  uint16_t port = 0;
  int listener = ListenIn(ns_b_, &port);
  ASSERT_GE(listener, 0);
  // A connect completes after SYN and SYN-ACK crossed the link: one RTT.
  int64_t best = -1;
  for (int i = 0; i < 3; ++i) {
    int64_t ms = ConnectMs(ns_a_, port, 10000);
    ASSERT_GE(ms, 0) << "connect through the link failed";
    best = best < 0 ? ms : std::min(best, ms);
  }
  EXPECT_GE(best, 2 * kDelayMs - 10) << "RTT shorter than twice the one-way delay";

  Ctl("down");
  EXPECT_EQ(ConnectMs(ns_a_, port, 1500), -1) << "connected through a link that is down";
  std::string stats = Ctl("stats");
  EXPECT_GT(StatAB(stats, "down"), 0u) << stats;
  Ctl("up");
  EXPECT_GE(ConnectMs(ns_a_, port, 10000), 0) << "link did not come back up";

  Ctl("loss 1");
  EXPECT_EQ(ConnectMs(ns_a_, port, 1500), -1) << "connected through a link that loses everything";
  stats = Ctl("stats");
  EXPECT_GT(StatAB(stats, "loss"), 0u) << stats;
  close(listener);
}

TEST_F(WanLinkTest, StorescuDeliversIntactThroughLossAndOutageWithRetries) {
  if (std::string missing = MissingDcmtkTool(); !missing.empty()) GTEST_SKIP() << missing;
  TempDir tmp;
  std::string src = tmp / "src", out = tmp / "out";
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(out.c_str(), 0755), 0);
  // ~530 KB CT slices: long enough a transfer at 2% loss that the outage
  // falls in the middle of it.
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", src, 4, &uids);
  ASSERT_EQ(files.size(), 4u);
  ASSERT_TRUE(Up(0.02));

  // storescp in namespace b; +B writes each data set exactly as received.
  Child scp;
  ASSERT_TRUE(scp.Start({"ip", "netns", "exec", ns_b_, "storescp", "-aet", "STORESCP", "+B", "-od", out, "11112"},
                        tmp / "storescp.log"));
  bool listening = false;
  for (int i = 0; i < 100 && !listening; ++i) {
    RunResult ss = RunCommand({"ip", "netns", "exec", ns_b_, "ss", "-Htln", "sport = :11112"}, 10);
    listening = ss.exit_code == 0 && ss.output.find("11112") != std::string::npos;
    if (!listening) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(listening) << scp.ReadLog();

  auto storescu = [&](const std::vector<std::string>& send) {
    std::vector<std::string> argv = {"ip",     "netns", "exec",     ns_a_, "storescu", "-v",   "-aet",
                                     "WANSCU", "-aec",  "STORESCP", "-td", "120",      kAddrB, "11112"};
    argv.insert(argv.end(), send.begin(), send.end());
    return argv;
  };

  // First attempt: take the link down for 3 s once the first file is on its way.
  Child scu;
  ASSERT_TRUE(scu.Start(storescu(files), tmp / "storescu-1.log"));
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && scu.ReadLog().find("Sending file:") == std::string::npos && scu.running())
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Ctl("down");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  Ctl("up");
  if (scu.Wait(300) == -1) scu.Stop(SIGKILL);
  std::set<std::string> acked;
  for (const auto& [file, outcome] : ParseStorescuOutcomes(scu.ReadLog()))
    if (outcome.acknowledged) acked.insert(file);

  std::printf("first storescu run: %zu of %zu acknowledged\n", acked.size(), files.size());
  // Retries: send again whatever was not acknowledged.
  int attempt = 2;
  for (; attempt <= 6 && acked.size() < files.size(); ++attempt) {
    std::vector<std::string> rest;
    for (const std::string& f : files)
      if (!acked.count(f)) rest.push_back(f);
    RunResult r = RunCommand(storescu(rest), 300);
    for (const auto& [file, outcome] : ParseStorescuOutcomes(r.output))
      if (outcome.acknowledged) acked.insert(file);
  }
  ASSERT_EQ(acked.size(), files.size()) << "storescu never got every file acknowledged";

  std::string stats = Ctl("stats");
  std::printf("%d storescu run(s); wanlink %s", attempt - 1, stats.c_str());
  EXPECT_GT(StatAB(stats, "loss"), 0u) << stats;
  EXPECT_GT(StatAB(stats, "down"), 0u) << stats;

  // Every object arrived once, byte for byte. storescp names files MODALITY.UID.
  std::vector<std::string> received = ListFiles(out);
  for (size_t i = 0; i < files.size(); ++i) {
    std::string got = ReceivedFile(received, uids[i]);
    ASSERT_FALSE(got.empty()) << "storescp did not keep " << uids[i] << "\n" << scp.ReadLog();
    std::string why;
    EXPECT_TRUE(SameDataSet(files[i], got, &why)) << files[i] << ": " << why;
  }
  scp.Stop(SIGTERM, 10);
}

// Relais in namespace a delivers to a storescp in namespace b across the
// emulated WAN: 100 ms RTT, 2 % loss, and the link taken down and up three
// times while it sends. Every object arrives intact, the queue drains, and
// the attempt log shows the retries. Nothing here depends on speed: the
// flaps happen at fixed moments, and the final wait only bounds a hang.
TEST_F(WanLinkTest, RelaisDeliversEverythingThroughLossAndFlaps) {
  if (std::string missing = MissingDcmtkTool(); !missing.empty()) GTEST_SKIP() << missing;
  TempDir tmp;
  std::string src = tmp / "src", out = tmp / "out";
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(out.c_str(), 0755), 0);
  constexpr int kObjects = 40;  // ~21 MB: seconds of sending at 100 ms RTT
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  ASSERT_TRUE(Up(0.02));

  Child scp;
  ASSERT_TRUE(scp.Start({"ip", "netns", "exec", ns_b_, "storescp", "-aet", "FARSITE", "+B", "-od", out, "11112"},
                        tmp / "storescp.log"));
  ASSERT_TRUE(ListeningIn(ns_b_, 11112)) << scp.ReadLog();

  // Relais inside namespace a: it listens on that namespace's loopback and
  // reaches the far site only through the emulated link.
  const std::string config = tmp / "relais.toml", rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"farsite\"\nae_title = \"FARSITE\"\nhost = \"" + std::string(kAddrB) +
                       "\"\nport = 11112\nmax_associations = 4\n"
                       "retry = { initial_backoff = \"1s\", max_backoff = \"4s\" }\n\n"
                       "[[rule]]\nname = \"all\"\nforward = [\"farsite\"]\n");
  WriteFile(config,
            "[listener]\nae_title = \"RELAIS\"\nhost = \"127.0.0.1\"\nport = 11112\n"
            "[store]\npath = \"" +
                tmp / "store" +
                "\"\n"
                "[delivery]\nconnect_timeout_s = 5\nresponse_timeout_s = 20\n"
                "[rules]\npath = \"" +
                rules + "\"\n");
  Child relais;
  ASSERT_TRUE(
      relais.Start({"ip", "netns", "exec", ns_a_, RelaisBinary(), "serve", "--config", config}, tmp / "relais.log"));
  ASSERT_TRUE(ListeningIn(ns_a_, 11112)) << relais.ReadLog();

  // Ingest is local (loopback of namespace a): every object is acknowledged.
  RunResult sent = RunCommand(
      [&] {
        std::vector<std::string> argv = {"ip", "netns", "exec",   ns_a_,       "storescu",
                                         "-v", "-aec",  "RELAIS", "127.0.0.1", "11112"};
        argv.insert(argv.end(), files.begin(), files.end());
        return argv;
      }(),
      300);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;

  // Three outages while Relais delivers.
  for (int flap = 0; flap < 3; ++flap) {
    std::this_thread::sleep_for(std::chrono::milliseconds(flap == 0 ? 300 : 2000));
    Ctl("down");
    std::this_thread::sleep_for(std::chrono::seconds(3));
    Ctl("up");
  }

  // Everything arrives, and the queue is empty.
  auto queue_empty = [&] {
    RunResult q = RunCommand({RelaisBinary(), "queue", "ls", "--config", config, "--json"}, 60);
    return q.exit_code == 0 && q.output.find("\"destination\"") == std::string::npos;
  };
  auto arrived = [&] {
    std::vector<std::string> got = ListFiles(out);
    size_t n = 0;
    for (const std::string& uid : uids) n += !ReceivedFile(got, uid).empty();
    return n;
  };
  int64_t deadline = NowMs() + 300000;
  while (NowMs() < deadline && (arrived() < uids.size() || !queue_empty())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::string stats = Ctl("stats");
  std::printf("wanlink %s", stats.c_str());
  EXPECT_GT(StatAB(stats, "down"), 0u) << stats;
  ASSERT_EQ(arrived(), uids.size()) << relais.ReadLog();
  EXPECT_TRUE(queue_empty()) << relais.ReadLog();

  // Intact: the data set storescp wrote is the one storescu sent (stored
  // and forwarded as received, Explicit VR Little Endian).
  std::vector<std::string> received = ListFiles(out);
  for (size_t i = 0; i < files.size(); ++i) {
    std::string got = ReceivedFile(received, uids[i]);
    ASSERT_FALSE(got.empty());
    std::string why;
    EXPECT_TRUE(SameDataSet(files[i], got, &why)) << files[i] << ": " << why;
  }
  std::string log = relais.ReadLog();
  size_t failures = 0;
  for (size_t at = log.find("event=link-failure"); at != std::string::npos; at = log.find("event=link-failure", at + 1))
    ++failures;
  for (size_t at = log.find("event=send-failed"); at != std::string::npos; at = log.find("event=send-failed", at + 1))
    ++failures;
  std::printf("relais logged %zu link/send failures during the outages\n", failures);
  relais.Stop(SIGTERM, 30);
  scp.Stop(SIGTERM, 10);
}

// Adaptive concurrency (router/deliver/concurrency.h) across the 100 ms
// link: a destination with only name, AE title, host and port delivers CT
// images at least 10 times faster than one storescu association, and its
// concurrency target rose well above the start of 2. The objects are
// queued while the link is down (so that a backlog waits, as after a night
// offline), then the link comes up. Rates are compared with each other,
// from the first to the last file storescp wrote, never against a clock.
TEST_F(WanLinkTest, DefaultDestinationIsTenTimesOneStorescuAssociation) {
  if (std::string missing = MissingDcmtkTool(); !missing.empty()) GTEST_SKIP() << missing;
  TempDir tmp;
  std::string src = tmp / "src", out_scu = tmp / "out-scu", out = tmp / "out";
  for (const std::string& d : {src, out_scu, out}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  constexpr int kObjects = 400;  // ~212 MB
  constexpr int kBaseline = 30;  // one storescu association: ~6 images/s
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  ASSERT_TRUE(Up(0));

  Child scp_scu, scp;
  ASSERT_TRUE(scp_scu.Start(
      {"ip", "netns", "exec", ns_b_, "storescp", "--fork", "-aet", "FARSITE", "+B", "-od", out_scu, "11113"},
      tmp / "storescp-scu.log"));
  // --fork: a process per association, as a PACS serves several at once.
  ASSERT_TRUE(
      scp.Start({"ip", "netns", "exec", ns_b_, "storescp", "--fork", "-aet", "FARSITE", "+B", "-od", out, "11112"},
                tmp / "storescp.log"));
  ASSERT_TRUE(ListeningIn(ns_b_, 11113)) << scp_scu.ReadLog();
  ASSERT_TRUE(ListeningIn(ns_b_, 11112)) << scp.ReadLog();

  // One storescu association across the link.
  Child scu;
  std::vector<std::string> argv = {"ip", "netns", "exec", ns_a_, "storescu", "-aec", "FARSITE", kAddrB, "11113"};
  argv.insert(argv.end(), files.begin(), files.begin() + kBaseline);
  ASSERT_TRUE(scu.Start(argv, tmp / "storescu.log"));
  const double scu_rate = RateInto(out_scu, kBaseline, 300);
  EXPECT_EQ(scu.Wait(60), 0) << scu.ReadLog();
  ASSERT_GT(scu_rate, 0) << scu.ReadLog();

  // Relais in namespace a, the default destination across the link.
  Child relais;
  ASSERT_NO_FATAL_FAILURE(QueueBehindDownLink(tmp, files, &relais));
  const double relais_rate = RateInto(out, kObjects, 600);
  const std::string log = relais.ReadLog();
  ASSERT_GT(relais_rate, 0) << log;
  int max_target = 2;
  std::string targets;
  for (size_t at = log.find("event=concurrency-target target="); at != std::string::npos;
       at = log.find("event=concurrency-target target=", at + 1)) {
    const char* p = log.c_str() + at + std::strlen("event=concurrency-target target=");
    max_target = std::max(max_target, std::atoi(p));
    const char* r = std::strstr(p, "reason=");
    targets += " " + std::to_string(std::atoi(p)) + "(" + (r ? std::string(r + 7, std::strcspn(r + 7, " ")) : "") + ")";
  }
  std::printf("concurrency targets:%s\n", targets.c_str());
  std::printf(
      "one storescu association %.1f images/s; relais (default destination) %.1f images/s (%.1fx); "
      "highest concurrency target %d\n",
      scu_rate, relais_rate, relais_rate / scu_rate, max_target);
  EXPECT_GE(relais_rate, 10 * scu_rate) << log;
  EXPECT_GT(max_target, 8) << log;
  EXPECT_EQ(log.find("event=dead-letter"), std::string::npos) << log;
  relais.Stop(SIGTERM, 30);
  scp.Stop(SIGTERM, 10);
  scp_scu.Stop(SIGTERM, 10);
  // storescp's forked children, which are not ours to wait for.
  RunCommand({"sh", "-c", "ip netns pids " + ns_b_ + " | xargs -r kill -9"}, 30);
}

// Adaptive concurrency across the same 100 ms link with 2 % loss, where one
// TCP connection carries little (every loss halves its window) and many
// must run side by side: the default destination (name, AE title, host,
// port) delivers 800 CT images at least half as fast as iperf3 with four
// streams on the same link in the same run (measured before and after
// Relais; their mean). Relative, so a loaded machine slows both. 800, not
// 400: Relais's run then lasts about as long as iperf3's 10 s. The ramp
// (2, 8, 16-32, 64 associations, a window of two object round trips each,
// about 6 s under loss) is in the figure; with 400 images it weighs half
// the run and the figure was 44-50 %, while 64 associations alone deliver
// more than iperf3's four streams.
TEST_F(WanLinkTest, DefaultDestinationGetsHalfOfIperf3FourStreamsAtTwoPercentLoss) {
  if (std::string missing = MissingDcmtkTool(); !missing.empty()) GTEST_SKIP() << missing;
  if (RunCommand({"sh", "-c", "command -v iperf3"}, 10).exit_code != 0)
    GTEST_SKIP() << "iperf3 not installed (scripts/setup.sh installs it)";
  TempDir tmp;
  std::string src = tmp / "src", out = tmp / "out";
  for (const std::string& d : {src, out}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  constexpr int kObjects = 800;  // ~424 MB
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/dicomparser__CT1_UNC.implicit_little_endian.dcm", src, kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  const double object_mb = static_cast<double>(ReadFile(files[0]).size()) / 1e6;
  ASSERT_TRUE(Up(0.02));
  const double iperf_before = Iperf3MBps(ns_a_, ns_b_, 4, 10);
  ASSERT_GT(iperf_before, 0) << "iperf3 did not run across the link";

  Child scp;
  ASSERT_TRUE(
      scp.Start({"ip", "netns", "exec", ns_b_, "storescp", "--fork", "-aet", "FARSITE", "+B", "-od", out, "11112"},
                tmp / "storescp.log"));
  ASSERT_TRUE(ListeningIn(ns_b_, 11112)) << scp.ReadLog();
  Child relais;
  ASSERT_NO_FATAL_FAILURE(QueueBehindDownLink(tmp, files, &relais));
  const double relais_mbps = RateInto(out, kObjects, 900) * object_mb;
  const std::string log = relais.ReadLog();
  ASSERT_GT(relais_mbps, 0) << log;
  relais.Stop(SIGTERM, 30);
  scp.Stop(SIGTERM, 10);
  RunCommand({"sh", "-c", "ip netns pids " + ns_b_ + " | xargs -r kill -9"}, 30);

  const double iperf_after = Iperf3MBps(ns_a_, ns_b_, 4, 10);
  const double iperf = iperf_after > 0 ? (iperf_before + iperf_after) / 2 : iperf_before;
  std::string targets;
  for (size_t at = log.find("event=concurrency-target target="); at != std::string::npos;
       at = log.find("event=concurrency-target target=", at + 1)) {
    const char* p = log.c_str() + at + std::strlen("event=concurrency-target target=");
    const char* r = std::strstr(p, "reason=");
    targets += " " + std::to_string(std::atoi(p)) + "(" + (r ? std::string(r + 7, std::strcspn(r + 7, " ")) : "") + ")";
  }
  std::printf("concurrency targets:%s\n", targets.c_str());
  std::printf(
      "2%% loss: iperf3 4 streams %.1f / %.1f MB/s (before / after); relais (default destination) %.1f MB/s "
      "(%.0f %% of their mean)\n",
      iperf_before, iperf_after, relais_mbps, 100.0 * relais_mbps / iperf);
  EXPECT_GE(relais_mbps, 0.5 * iperf) << log;
  EXPECT_EQ(log.find("event=dead-letter"), std::string::npos) << log;
}

}  // namespace
}  // namespace relais::itest
