// Graceful stop (issue 6): SIGTERM stops accepting at once, lets the
// associations in flight finish for at most [listener] drain_timeout_s, then
// aborts what is left and exits 0. Nothing acknowledged is lost, and a sender
// in the middle of its association is not cut off.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace relais::itest {
namespace {

// A-ASSOCIATE-RQ (PS3.8 9.3.2) proposing Verification in Implicit VR LE.
std::string AssociateRq(const std::string& called) {
  auto item = [](uint8_t type, const std::string& body) {
    std::string out;
    out += static_cast<char>(type);
    out += '\0';
    out += static_cast<char>(body.size() >> 8);
    out += static_cast<char>(body.size() & 0xFF);
    return out + body;
  };
  auto ae = [](std::string s) {
    s.resize(16, ' ');
    return s;
  };
  std::string b;
  b += std::string("\x00\x01\x00\x00", 4);  // protocol version 1, reserved
  b += ae(called) + ae("IDLE_SCU") + std::string(32, '\0');
  b += item(0x10, "1.2.840.10008.3.1.1.1");
  b += item(0x20,
            std::string("\x01\x00\x00\x00", 4) + item(0x30, "1.2.840.10008.1.1") + item(0x40, "1.2.840.10008.1.2"));
  std::string max_len("\x00\x00\x40\x00", 4);  // 16384
  b += item(0x50, item(0x51, max_len) + item(0x52, "1.2.3.4.5.6"));
  std::string pdu;
  pdu += '\x01';
  pdu += '\0';
  for (int shift = 24; shift >= 0; shift -= 8) pdu += static_cast<char>((b.size() >> shift) & 0xFF);
  return pdu + b;
}

// Reads one byte (the PDU type) within timeout_ms; -1 on EOF/timeout/error.
int ReadPduType(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return -1;
  uint8_t b = 0;
  return recv(fd, &b, 1, 0) == 1 ? b : -1;
}

TEST(GracefulStopTest, SigtermLetsTheSenderInFlightFinishAndLosesNothing) {
  TempDir dir;
  std::vector<std::string> uids;
  ASSERT_EQ(mkdir((dir / "in").c_str(), 0755), 0);
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", dir / "in", 400, &uids);
  ASSERT_EQ(files.size(), 400u);
  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> argv = {"storescu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  Child sender;
  ASSERT_TRUE(sender.Start(argv, dir / "storescu.log"));
  // SIGTERM once some objects are acknowledged: the rest are in flight.
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && ParseStorescuVerbose(sender.ReadLog()).acknowledged.size() < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(ParseStorescuVerbose(sender.ReadLog()).acknowledged.size(), 20u) << sender.ReadLog();
  ASSERT_EQ(kill(relais.pid(), SIGTERM), 0);
  // No new association while draining.
  bool refused = false;
  for (int i = 0; i < 50 && !refused; ++i) {
    int fd = ConnectLoopback(relais.port());
    if (fd < 0) refused = true;
    else close(fd);
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int sender_status = sender.Wait(120);
  int relais_code = relais.Terminate();  // already stopping: waits for the exit
  std::string log = relais.Log();
  EXPECT_TRUE(refused) << "new connections were still accepted after SIGTERM";
  ASSERT_TRUE(WIFEXITED(sender_status) && WEXITSTATUS(sender_status) == 0) << sender.ReadLog();
  StorescuReport report = ParseStorescuVerbose(sender.ReadLog());
  EXPECT_EQ(report.acknowledged.size(), files.size()) << "the association in flight was cut off";
  EXPECT_EQ(relais_code, 0) << log;
  EXPECT_NE(log.find("event=draining"), std::string::npos) << log;
  EXPECT_NE(log.find("event=drained reason=\"every association ended\""), std::string::npos) << log;

  // Every acknowledged object is in the store.
  std::map<std::string, std::string> listed = relais.StoreList();
  std::set<std::string> acked(report.acknowledged.begin(), report.acknowledged.end());
  size_t missing = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    if (acked.count(files[i]) && !listed.count(uids[i])) ++missing;
  }
  EXPECT_EQ(missing, 0u);
}

TEST(GracefulStopTest, DrainDeadlineAbortsAnIdleAssociationAndExits) {
  TempDir dir;
  RelaisProcess relais(dir.path());
  // A short drain deadline ([listener] key, so into that table).
  std::string cfg = ReadFile(relais.config_path());
  size_t at = cfg.find("[listener]\n");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.insert(at + 11, "drain_timeout_s = 2\n");
  WriteFile(relais.config_path(), cfg);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  int fd = ConnectLoopback(relais.port());
  ASSERT_GE(fd, 0);
  std::string rq = AssociateRq("RELAIS");
  ASSERT_EQ(send(fd, rq.data(), rq.size(), 0), static_cast<ssize_t>(rq.size()));
  ASSERT_EQ(ReadPduType(fd, 10000), 0x02) << "no A-ASSOCIATE-AC";
  // Drain the rest of the AC.
  char buf[4096];
  (void)recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

  ASSERT_EQ(kill(relais.pid(), SIGTERM), 0);
  // The idle association is left alone until the deadline, then aborted.
  int type = -1;
  int64_t until = NowMs() + 30000;
  while (NowMs() < until) {
    type = ReadPduType(fd, 500);
    if (type != -1) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1) break;  // EOF
  }
  EXPECT_EQ(type, 0x07) << "expected an A-ABORT after the drain deadline";
  close(fd);
  EXPECT_EQ(relais.Terminate(), 0);
  std::string log = relais.Log();
  EXPECT_NE(log.find("event=drain-deadline associations=1"), std::string::npos) << log;
}

}  // namespace
}  // namespace relais::itest
