// Connections cannot starve associations (issue 13). Idle TCP connections
// that never send an A-ASSOCIATE-RQ, from one address or past the listener's
// connection cap, are closed oldest first to make room; echoscu and
// storescu are answered throughout; established associations are never
// evicted.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "harness.h"

namespace relais::itest {
namespace {

// How many of `fds` the server has closed (a read returns 0 or an error).
size_t CountClosedByServer(const std::vector<int>& fds) {
  size_t closed = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1) {
      char b[64];
      ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
      if (n <= 0) ++closed;
      // n > 0: an A-ABORT arrived first; the close follows.
      else if (recv(fd, b, sizeof(b), 0) <= 0) ++closed;
    }
  }
  return closed;
}

TEST(ConnectionCapTest, IdleConnectionsFromOneAddressAreEvictedAndEchoscuIsAnswered) {
  TempDir dir;
  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) {
    int fd = ConnectLoopback(relais.port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())}, 60);
  EXPECT_EQ(echo.exit_code, 0) << echo.output << relais.Log();

  std::string src = dir / "objects";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/pydicom__CT_small.dcm", src, 20, &uids);
  std::vector<std::string> argv = {"storescu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  EXPECT_EQ(RunCommand(argv, 120).exit_code, 0) << relais.Log();
  EXPECT_EQ(relais.StoreList().size(), uids.size());

  // One address keeps at most 8 connections that have not associated: the
  // 192 older ones were closed, oldest first, each logged once.
  size_t closed = 0;
  for (int attempt = 0; attempt < 100 && closed < 192; ++attempt) {
    closed = CountClosedByServer(idle);
    if (closed < 192) usleep(50 * 1000);
  }
  EXPECT_GE(closed, 192u);
  std::string log = relais.Log();
  EXPECT_GE(CountOccurrences(log, "event=connection-evicted reason=peer-cap"), 192) << log.substr(0, 4000);
  EXPECT_EQ(log.find("event=connection-refused"), std::string::npos);
  for (int fd : idle) close(fd);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

TEST(ConnectionCapTest, AtTheCapTheOldestUnassociatedConnectionMakesRoom) {
  TempDir dir;
  RelaisOptions o;
  o.max_associations = 8;  // connection cap 8 * 2 + 16 = 32
  RelaisProcess relais(dir.path(), o);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  // 80 idle connections from 20 addresses, 4 each: under the per-address
  // cap, over the connection cap.
  std::vector<int> idle;
  for (int i = 0; i < 80; ++i) {
    int fd = ConnectFrom(2 + i % 20, relais.port());
    ASSERT_GE(fd, 0) << "connect from 127.0.0." << 2 + i % 20;
    idle.push_back(fd);
  }
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())}, 60);
  EXPECT_EQ(echo.exit_code, 0) << echo.output << relais.Log();
  size_t closed = 0;
  for (int attempt = 0; attempt < 100 && closed < 48; ++attempt) {
    closed = CountClosedByServer(idle);
    if (closed < 48) usleep(50 * 1000);
  }
  // 80 + echoscu's connection - 32 = at least 49 made room; the newest stay.
  EXPECT_GE(closed, 48u);
  size_t newest_closed = CountClosedByServer(std::vector<int>(idle.end() - 20, idle.end()));
  EXPECT_EQ(newest_closed, 0u) << "eviction is oldest first";
  std::string log = relais.Log();
  EXPECT_GE(CountOccurrences(log, "event=connection-evicted reason=connection-cap"), 48) << log.substr(0, 4000);
  EXPECT_EQ(log.find("event=connection-refused"), std::string::npos);
  for (int fd : idle) close(fd);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// A minimal A-ASSOCIATE-RQ (PS3.8 9.3.2) proposing Verification, Implicit
// VR Little Endian.
std::string AssociateRq(const std::string& called) {
  auto item = [](uint8_t type, const std::string& body) {
    std::string s{static_cast<char>(type), 0, static_cast<char>(body.size() >> 8), static_cast<char>(body.size())};
    return s + body;
  };
  auto ae = [](std::string a) { return a.append(16 - a.size(), ' '); };
  std::string pc = std::string("\x01\0\0\0", 4) + item(0x30, "1.2.840.10008.1.1") + item(0x40, "1.2.840.10008.1.2");
  std::string body = std::string("\0\x01\0\0", 4) + ae(called) + ae("HOLDER") + std::string(32, '\0') +
                     item(0x10, "1.2.840.10008.3.1.1.1") + item(0x20, pc) +
                     item(0x50, item(0x51, std::string("\0\x01\0\0", 4)));
  uint32_t n = body.size();
  std::string pdu{
      0x01, 0, static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
  return pdu + body;
}

// Connects and associates; the socket, or -1 when no A-ASSOCIATE-AC came.
int Associated(uint16_t port) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return -1;
  std::string rq = AssociateRq("RELAIS");
  timeval five{5, 0};  // a silent server fails the test, not hangs it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof(five));
  // The whole A-ASSOCIATE-AC: its 6-byte header, then its length.
  uint8_t head[6];
  bool ok = send(fd, rq.data(), rq.size(), 0) == static_cast<ssize_t>(rq.size()) &&
            recv(fd, head, sizeof(head), MSG_WAITALL) == 6 && head[0] == 0x02;
  if (ok) {
    std::string body((size_t{head[2]} << 24) | (size_t{head[3]} << 16) | (size_t{head[4]} << 8) | head[5], '\0');
    ok = recv(fd, body.data(), body.size(), MSG_WAITALL) == static_cast<ssize_t>(body.size());
  }
  if (!ok) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(ConnectionCapTest, EstablishedAssociationsAreNeverEvicted) {
  TempDir dir;
  RelaisOptions o;
  o.max_associations = 8;  // connection cap 32
  RelaisProcess relais(dir.path(), o);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::vector<int> held;
  for (int i = 0; i < 8; ++i) {
    int fd = Associated(relais.port());
    ASSERT_GE(fd, 0) << relais.Log();
    held.push_back(fd);
  }
  std::vector<int> idle;
  for (int i = 0; i < 60; ++i) {
    int fd = ConnectFrom(2 + i % 15, relais.port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  usleep(300 * 1000);
  std::string log = relais.Log();
  EXPECT_GE(CountOccurrences(log, "event=connection-evicted"), 36) << log.substr(0, 4000);
  // Every held association is still open: nothing arrived on it (no A-ABORT,
  // no close).
  for (int fd : held) {
    pollfd p{fd, POLLIN, 0};
    char b[256];
    int ready = poll(&p, 1, 0);
    ssize_t n = ready == 1 ? recv(fd, b, sizeof(b), MSG_DONTWAIT) : 1;
    EXPECT_EQ(ready, 0) << "an established association got " << (n <= 0 ? "closed" : "data") << "\n" << log;
  }
  for (int fd : held) close(fd);
  for (int fd : idle) close(fd);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
