// systemd integration (appliance/relais.service is Type=notify with
// WatchdogSec): `relais serve` under a NOTIFY_SOCKET the test owns says
// READY=1 once it listens, pings WATCHDOG=1 from its event loop at half the
// interval systemd asks for, and says STOPPING=1 (with more stop time for
// the drain) on SIGTERM.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "harness.h"

namespace relais::itest {
namespace {

// A datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    ok_ = fd_ >= 0 && path.size() < sizeof(a.sun_path) && bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return ok_; }
  // Messages received until `done(messages)` or timeout_ms.
  template <typename Done>
  void ReadUntil(Done done, int timeout_ms) {
    int64_t deadline = NowMs() + timeout_ms;
    while (!done(messages) && NowMs() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) != 1) continue;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) messages.emplace_back(buf, static_cast<size_t>(n));
    }
  }
  std::vector<std::string> messages;

 private:
  std::string path_;
  int fd_ = -1;
  bool ok_ = false;
};

size_t CountWith(const std::vector<std::string>& messages, const std::string& what) {
  size_t n = 0;
  for (const auto& m : messages) n += m.find(what) != std::string::npos ? 1 : 0;
  return n;
}

TEST(ServiceNotifyTest, ReadyWatchdogPingsAndStoppingReachSystemd) {
  TempDir dir;
  NotifySocket systemd(dir / "notify");
  ASSERT_TRUE(systemd.ok()) << std::strerror(errno);
  RelaisOptions options;
  options.env = {{"NOTIFY_SOCKET", dir / "notify"}, {"WATCHDOG_USEC", "300000"}};
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  systemd.ReadUntil([](const auto& m) { return CountWith(m, "WATCHDOG=1") >= 3; }, 20000);
  ASSERT_FALSE(systemd.messages.empty()) << relais.Log();
  // READY first, with a status naming the AE title and the port.
  EXPECT_NE(systemd.messages[0].find("READY=1"), std::string::npos) << systemd.messages[0];
  EXPECT_NE(systemd.messages[0].find("STATUS=AE RELAIS listening on 127.0.0.1:" + std::to_string(relais.port())),
            std::string::npos)
      << systemd.messages[0];
  EXPECT_GE(CountWith(systemd.messages, "WATCHDOG=1"), 3u);
  EXPECT_NE(relais.Log().find("event=watchdog interval_ms=300"), std::string::npos) << relais.Log();

  // Serving while pinged.
  RunResult echo = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())}, 30);
  EXPECT_EQ(echo.exit_code, 0) << echo.output;

  ASSERT_EQ(relais.Terminate(), 0) << relais.Log();
  systemd.ReadUntil([](const auto& m) { return CountWith(m, "STOPPING=1") >= 1; }, 5000);
  ASSERT_EQ(CountWith(systemd.messages, "STOPPING=1"), 1u);
  for (const auto& m : systemd.messages) {
    if (m.find("STOPPING=1") == std::string::npos) continue;
    // The default drain (20 s) plus 10 s of margin.
    EXPECT_NE(m.find("EXTEND_TIMEOUT_USEC=30000000"), std::string::npos) << m;
  }
}

TEST(ServiceNotifyTest, WithoutAWatchdogThereAreNoPings) {
  TempDir dir;
  NotifySocket systemd(dir / "notify");
  ASSERT_TRUE(systemd.ok());
  RelaisOptions options;
  options.env = {{"NOTIFY_SOCKET", dir / "notify"}};
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  systemd.ReadUntil([](const auto& m) { return CountWith(m, "READY=1") >= 1; }, 20000);
  ASSERT_EQ(CountWith(systemd.messages, "READY=1"), 1u);
  ASSERT_EQ(relais.Terminate(), 0) << relais.Log();
  systemd.ReadUntil([](const auto& m) { return CountWith(m, "STOPPING=1") >= 1; }, 5000);
  EXPECT_EQ(CountWith(systemd.messages, "WATCHDOG=1"), 0u);
  EXPECT_EQ(relais.Log().find("event=watchdog"), std::string::npos);
}

}  // namespace
}  // namespace relais::itest
