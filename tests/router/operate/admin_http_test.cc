// AdminServer on a real libuv loop (h2o for libuv): requests over raw
// sockets, h2o's own limits, and a shutdown that closes every handle
// (uv_loop_close succeeds) even with connections left open.
#include "router/operate/admin_http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "base/sha256.h"
#include "router/operate/admin_api.h"

namespace relais::router {
namespace {

class AdminHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    api_ = std::make_unique<AdminApi>(std::vector<rules::AdminToken>{{"t", "viewer", Sha256Hex("secret")}},
                                      AdminApi::Sources{});
    server_ = std::make_unique<AdminServer>(&loop_, api_.get());
    ASSERT_TRUE(server_->Listen("127.0.0.1", 0).ok());
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<AdminHttpTest*>(a->data);
      self->server_->Shutdown([self] { self->done_ = true; });
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_.data = this;
  }

  // Runs `client` on another thread while the loop runs on this one (h2o
  // keeps per-thread buffer caches: the loop's thread must outlive the test
  // for LeakSanitizer to see them reachable). When `client` returns, the
  // server is shut down from the loop thread; then every handle must be
  // closed and uv_loop_close succeed.
  void Run(std::function<void()> client) {
    std::thread t([this, client] {
      client();
      stop_requested_at_ = std::chrono::steady_clock::now();
      uv_async_send(&stop_);
    });
    uv_run(&loop_, UV_RUN_DEFAULT);
    stop_took_ = std::chrono::steady_clock::now() - stop_requested_at_.load();
    t.join();
    EXPECT_TRUE(done_);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
    server_.reset();
  }

  int Connect() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    return fd;
  }

  // Sends `req`, reads until the server closes or `ms` pass.
  std::string Exchange(const std::string& req, int ms = 3000, bool* closed = nullptr) {
    int fd = Connect();
    size_t off = 0;
    while (off < req.size()) {
      ssize_t n = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += n;
    }
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    char buf[4096];
    bool eof = false;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) {
        if (out.find("\r\n\r\n") != std::string::npos && !closed) break;
        continue;
      }
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        eof = true;
        break;
      }
      out.append(buf, n);
    }
    if (closed) *closed = eof;
    close(fd);
    return out;
  }

  uv_loop_t loop_;
  uv_async_t stop_;
  std::unique_ptr<AdminApi> api_;
  std::unique_ptr<AdminServer> server_;
  uint16_t port_ = 0;
  bool done_ = false;
  std::atomic<std::chrono::steady_clock::time_point> stop_requested_at_{};
  std::chrono::steady_clock::duration stop_took_{};
};

TEST_F(AdminHttpTest, AnswersHealthzAndRefusesWithoutToken) {
  Run([this] {
    std::string r = Exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
    EXPECT_NE(r.find("{\"status\":\"ok\"}"), std::string::npos) << r;
    EXPECT_NE(r.find("Content-Length: 15"), std::string::npos) << r;
    r = Exchange("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 401", 0), 0u) << r;
    EXPECT_NE(r.find("WWW-Authenticate: Bearer"), std::string::npos) << r;
    r = Exchange("GET /api/status?x=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
    // Dot segments are normalized before routing.
    r = Exchange("GET /api/../healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  });
}

TEST_F(AdminHttpTest, OversizedBodyGets413AndGarbageIsRefused) {
  Run([this] {
    bool closed = false;
    std::string r =
        Exchange("POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n", 3000, &closed);
    EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
    r = Exchange(std::string("\x00\x01\x02 garbage\r\n\r\n", 14), 3000, &closed);
    EXPECT_TRUE(closed || r.rfind("HTTP/1.1 400", 0) == 0) << r;
    r = Exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  });
}

size_t CountResponses(const std::string& r) {
  size_t n = 0;
  for (size_t at = r.find("HTTP/1.1 "); at != std::string::npos; at = r.find("HTTP/1.1 ", at + 1)) ++n;
  return n;
}

// RFC 9112 6.3: a request whose framing is ambiguous is refused with 400
// and the connection is closed, so that nothing after it (here a smuggled
// second request) is read. h2o 2.2.5 alone framed these (Transfer-Encoding
// wins, else the first Content-Length), answered, and then answered the
// smuggled request on the same connection.
TEST_F(AdminHttpTest, AmbiguousFramingGets400AndTheConnectionIsClosed) {
  const std::string smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string cases[] = {
      // Content-Length and Transfer-Encoding, both orders.
      "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n" +
          smuggled,
      "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n"
      "0\r\n\r\n" +
          smuggled,
      // Two Content-Length fields that differ.
      "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello" + smuggled,
      "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 0005\r\n"
      "CONTENT-LENGTH: 50\r\n\r\nhello" +
          smuggled,
      // A Content-Length list that differs (h2o refuses this one itself).
      "POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello" + smuggled,
      // A GET carries them too.
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
  };
  Run([&] {
    for (const std::string& c : cases) {
      SCOPED_TRACE(c);
      bool closed = false;
      std::string r = Exchange(c, 3000, &closed);
      EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
      EXPECT_TRUE(closed) << "the connection stayed open";
      EXPECT_EQ(CountResponses(r), 1u) << "the smuggled request was answered: " << r;
    }
    // The server goes on: a plain request on a new connection works.
    std::string r = Exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  });
}

TEST_F(AdminHttpTest, SoundFramingIsStillServedAndKeptAlive) {
  Run([this] {
    // One Content-Length (and the same value twice) with a body: routed.
    std::string r = Exchange("POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 3000);
    EXPECT_EQ(r.rfind("HTTP/1.1 401", 0), 0u) << r;
    r = Exchange("POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}");
    EXPECT_EQ(r.rfind("HTTP/1.1 401", 0), 0u) << r;
    // Chunked alone: routed.
    r = Exchange("POST /api/queue/retry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 401", 0), 0u) << r;
    // Two requests on one connection: both answered, the connection kept.
    bool closed = true;
    r = Exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1000, &closed);
    EXPECT_EQ(CountResponses(r), 2u) << r;
    EXPECT_FALSE(closed);
  });
}

TEST_F(AdminHttpTest, ShutdownClosesEveryHandleWithConnectionsOpen) {
  int idle = -1, half = -1, kept = -1;
  Run([&] {
    idle = Connect();  // nothing sent
    half = Connect();  // half a request
    ASSERT_EQ(send(half, "GET /hea", 8, 0), 8);
    kept = Connect();  // keep-alive after an answer
    const char kReq[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(kept, kReq, sizeof(kReq) - 1, 0), static_cast<ssize_t>(sizeof(kReq) - 1));
    char buf[512];
    pollfd p{kept, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 3000), 1);
    ASSERT_GT(recv(kept, buf, sizeof(buf), 0), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the half request is read
  });
  // Our ends of the three sockets were still open when the loop ended.
  EXPECT_LT(stop_took_, std::chrono::seconds(2));
  close(idle);
  close(half);
  close(kept);
}

}  // namespace
}  // namespace relais::router
