// Tests for router/operate/alerts.h: real notices to a real HTTP receiver (a socket
// server on its own thread, answering with scripted statuses) and a real
// command (a shell script that appends its stdin and environment to a file),
// on a uv loop; conditions from a real Store and a StorageWatch.
#include "router/operate/alerts.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "router/record/audit.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A minimal HTTP/1.1 receiver: one request per connection, answered with
// the next scripted status (the last one repeats), or never answered.
class HookServer {
 public:
  struct Request {
    std::string request_line;
    std::string headers;
    std::string body;
  };

  explicit HookServer(std::vector<int> statuses, bool answer = true) : statuses_(std::move(statuses)), answer_(answer) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~HookServer() {
    stop_ = true;
    thread_.join();
    for (int c : held_) close(c);
    close(fd_);
  }
  uint16_t port() const { return port_; }
  std::string url(const std::string& host = "127.0.0.1") const {
    return "http://" + host + ":" + std::to_string(port_) + "/relais/alerts";
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_.size();
  }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      Serve(c);
    }
  }
  void Serve(int c) {
    std::string in;
    char buf[4096];
    size_t head_end = std::string::npos;
    size_t want = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        std::string lower = in.substr(0, head_end);
        for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t cl = lower.find("content-length:");
        want = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 15));
      }
      if (head_end != std::string::npos && in.size() >= head_end + 4 + want) break;
    }
    Request r;
    if (head_end != std::string::npos) {
      size_t line_end = in.find("\r\n");
      r.request_line = in.substr(0, line_end);
      r.headers = in.substr(line_end + 2, head_end - line_end - 2);
      r.body = in.substr(head_end + 4);
    }
    int status;
    {
      std::lock_guard<std::mutex> l(mu_);
      size_t i = requests_.size();
      status = statuses_[std::min(i, statuses_.size() - 1)];
      requests_.push_back(std::move(r));
    }
    if (!answer_) {
      held_.push_back(c);
      return;
    }
    std::string rsp =
        "HTTP/1.1 " + std::to_string(status) + " Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    (void)!write(c, rsp.data(), rsp.size());
    close(c);
  }

  std::vector<int> statuses_;
  bool answer_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Request> requests_;
  std::vector<int> held_;  // connections never answered (thread-only until join)
};

class AlertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // as relais serve does
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    out_ = dir_.Sub("command.out");
    script_ = dir_.Sub("alert.sh");
    std::ofstream(script_)
        << "#!/bin/sh\n"
           "{ cat; echo; echo \"ENV $RELAIS_ALERT|$RELAIS_ALERT_SUBJECT|$RELAIS_ALERT_STATE\"; } >> '"
        << out_ << "'\n";
    chmod(script_.c_str(), 0755);
    Result<std::unique_ptr<AuditLog>> a = AuditLog::Open(dir_.Sub("audit.jsonl"));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    audit_ = std::move(*a);
  }
  void TearDown() override {
    if (alerts_) alerts_->Shutdown();
    RunUntil([] { return false; }, std::chrono::milliseconds(0));
    uv_run(&loop_, UV_RUN_DEFAULT);
    alerts_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    store_.reset();
  }

  void MakeAlerts(rules::AlertsConfig c) {
    alerts_ = std::make_unique<Alerts>(&loop_, std::move(c), "RELAIS_T", audit_.get(), nullptr);
  }
  void OpenStore() {
    Result<std::unique_ptr<store::Store>> s = store::Store::Open(store::testing::TestOptions(dir_.Sub("store")));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  uint64_t Queue(const std::string& uid, const std::string& dest) {
    store::ObjectMeta m = store::testing::MakeMeta(uid);
    m.routing = "routed";
    m.routes = {store::Route{dest, 0, "r1", ""}};
    store::testing::PutResult r = store::testing::PutObject(*store_, m, store::testing::RandomBytes(1000, 1));
    EXPECT_TRUE(r.status.ok());
    return r.meta.id;
  }
  void Deliver(uint64_t id, const std::string& dest) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDelivered;
    u.destination = dest;
    u.object_id = id;
    ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  }

  // Runs the loop until `done` holds or `limit` passes; true if it held.
  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(15),
                const std::function<void()>& each = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (done()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (each) each();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::vector<std::string> CommandLines() {
    std::ifstream in(out_);
    std::vector<std::string> out;
    std::string l;
    while (std::getline(in, l)) {
      if (!l.empty()) out.push_back(l);
    }
    return out;
  }
  std::vector<std::string> AlertRecords() {
    std::ifstream in(dir_.Sub("audit.jsonl"));
    std::vector<std::string> out;
    std::string l;
    while (std::getline(in, l)) {
      if (l.find("\"kind\":\"alert\"") != std::string::npos) out.push_back(l);
    }
    return out;
  }

  store::testing::TempDir dir_;
  uv_loop_t loop_;
  std::string out_, script_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Alerts> alerts_;
};

StorageWatch::Usage ClosedUsage() {
  StorageWatch::Usage u;
  u.used_bytes = 7700000;
  u.capacity_bytes = 8u << 20;
  u.map_size = 8u << 20;
  u.fraction = 7700000.0 / (8u << 20);
  u.intake_closed = true;
  u.closed_since_unix_ms = 1795854600123;  // 2026-11-28T08:30:00.123Z
  u.closings = 1;
  return u;
}

TEST_F(AlertsTest, StorageHighIsPostedAndRunThenResolved) {
  HookServer hook({204});
  rules::AlertsConfig c;
  c.webhook = hook.url();
  c.command = script_;
  MakeAlerts(c);

  alerts_->OnStorageChange(ClosedUsage());
  ASSERT_EQ(alerts_->active().size(), 1u);
  EXPECT_EQ(alerts_->active()[0].kind, "storage-high");
  EXPECT_EQ(alerts_->active()[0].subject, "store");
  ASSERT_TRUE(RunUntil([&] { return hook.count() == 1 && CommandLines().size() == 2; }))
      << hook.count() << " posts, " << CommandLines().size() << " command lines";

  HookServer::Request r = hook.requests()[0];
  EXPECT_EQ(r.request_line, "POST /relais/alerts HTTP/1.1");
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: application/json"));
  EXPECT_THAT(r.headers, HasSubstr("Host: 127.0.0.1:" + std::to_string(hook.port())));
  json j = json::parse(r.body);
  EXPECT_EQ(j["alert"], "storage-high");
  EXPECT_EQ(j["subject"], "store");
  EXPECT_EQ(j["state"], "raised");
  EXPECT_EQ(j["since"], "2026-11-28T08:30:00.123Z");
  EXPECT_EQ(j["ae_title"], "RELAIS_T");
  EXPECT_FALSE(j["host"].get<std::string>().empty());
  const std::string msg = j["message"];
  EXPECT_THAT(msg, HasSubstr("91% full"));
  EXPECT_THAT(msg, HasSubstr("0xA700"));

  std::vector<std::string> lines = CommandLines();
  EXPECT_EQ(json::parse(lines[0]), j) << "the command gets the same JSON on stdin";
  EXPECT_EQ(lines[1], "ENV storage-high|store|raised");

  // The same state again: nothing new (repeat_s is an hour).
  alerts_->OnStorageChange(ClosedUsage());
  RunUntil([] { return false; }, std::chrono::milliseconds(200));
  EXPECT_EQ(hook.count(), 1u);

  StorageWatch::Usage open = ClosedUsage();
  open.intake_closed = false;
  open.closed_since_unix_ms = 0;
  alerts_->OnStorageChange(open);
  EXPECT_TRUE(alerts_->active().empty());
  ASSERT_TRUE(RunUntil([&] { return hook.count() == 2 && CommandLines().size() == 4; }));
  json k = json::parse(hook.requests()[1].body);
  EXPECT_EQ(k["alert"], "storage-high");
  EXPECT_EQ(k["state"], "resolved");
  EXPECT_EQ(k["since"], "2026-11-28T08:30:00.123Z");
  EXPECT_EQ(CommandLines()[3], "ENV storage-high|store|resolved");

  std::vector<std::string> recs = AlertRecords();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_THAT(recs[0], HasSubstr("\"state\":\"raised\""));
  EXPECT_THAT(recs[1], HasSubstr("\"state\":\"resolved\""));
}

TEST_F(AlertsTest, OldestQueuedHoldsOnlyPastItsLimitAndResolvesWhenDelivered) {
  OpenStore();
  HookServer hook({200});
  rules::AlertsConfig c;
  c.webhook = hook.url("localhost");  // resolved on the thread pool
  c.oldest_queued_s = 1;
  c.repeat_s = 0;
  MakeAlerts(c);
  const uint64_t id = Queue("1.2.3.100", "TELERAD");
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 50);
  EXPECT_TRUE(alerts_->active().empty()) << "just received: under the 1 s limit";
  ASSERT_TRUE(RunUntil([&] { return hook.count() == 1; }));
  ASSERT_EQ(alerts_->active().size(), 1u);
  EXPECT_EQ(alerts_->active()[0].kind, "oldest-queued");
  EXPECT_EQ(alerts_->active()[0].subject, "TELERAD");
  json j = json::parse(hook.requests()[0].body);
  EXPECT_EQ(j["alert"], "oldest-queued");
  EXPECT_EQ(j["subject"], "TELERAD");
  EXPECT_THAT(j["message"].get<std::string>(), StartsWith("1 object(s) wait for destination TELERAD"));
  EXPECT_THAT(hook.requests()[0].headers, HasSubstr("Host: localhost:"));

  // repeat_s = 0: sent once while it holds.
  RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_EQ(hook.count(), 1u);

  Deliver(id, "TELERAD");
  ASSERT_TRUE(RunUntil([&] { return hook.count() == 2; }));
  EXPECT_EQ(json::parse(hook.requests()[1].body)["state"], "resolved");
  EXPECT_TRUE(alerts_->active().empty());
}

TEST_F(AlertsTest, OldestQueuedCountsTimeInTheQueueSoAReRoutedOldObjectDoesNotPage) {
  OpenStore();
  rules::AlertsConfig c;
  c.command = script_;
  c.oldest_queued_s = 3600;
  MakeAlerts(c);
  const int64_t two_days_ago = NowUnixMs() - 2 * 86400'000LL;
  // Received two days ago, unrouted then (kept), re-routed by an admin now.
  store::ObjectMeta old = store::testing::MakeMeta("1.2.3.700");
  old.routing = "unrouted";
  old.received_unix_ms = two_days_ago;
  store::testing::PutResult r = store::testing::PutObject(*store_, old, store::testing::RandomBytes(1000, 2));
  ASSERT_TRUE(r.status.ok());
  store::QueueUpdate u;
  u.kind = store::QueueUpdate::Kind::kRoute;
  u.destination = "TELERAD";
  u.object_id = r.meta.id;
  ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  // Queued at its commit two days ago and still waiting: that one pages.
  store::ObjectMeta stuck = store::testing::MakeMeta("1.2.3.701");
  stuck.routing = "routed";
  stuck.received_unix_ms = two_days_ago;
  stuck.routes = {store::Route{"ARCHIVE", 0, "r1", ""}};
  ASSERT_TRUE(store::testing::PutObject(*store_, stuck, store::testing::RandomBytes(1000, 3)).status.ok());
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 1000);
  ASSERT_EQ(alerts_->active().size(), 1u);
  EXPECT_EQ(alerts_->active()[0].kind, "oldest-queued");
  EXPECT_EQ(alerts_->active()[0].subject, "ARCHIVE");
}

TEST_F(AlertsTest, DeadLettersExpiringWithinADayAreAlertedWithTheirDestinations) {
  // Dead letters kept 12 h: every one expires within the next 24 h.
  store::Options o = store::testing::TestOptions(dir_.Sub("store"));
  o.dead_retention_ms = 12 * 3600'000;
  Result<std::unique_ptr<store::Store>> opened = store::Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(*opened);
  HookServer hook({200});
  rules::AlertsConfig c;
  c.webhook = hook.url("127.0.0.1");
  c.repeat_s = 0;
  c.oldest_queued_s = 86400;
  MakeAlerts(c);
  const uint64_t a = Queue("1.2.3.200", "TELERAD");
  const uint64_t b = Queue("1.2.3.201", "ARCHIVE");
  Queue("1.2.3.202", "ARCHIVE");  // stays queued: not a dead letter
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 50);
  RunUntil([] { return false; }, std::chrono::milliseconds(200));
  EXPECT_TRUE(alerts_->active().empty()) << "no dead letters yet";
  for (auto [id, dest] : {std::pair{a, "TELERAD"}, std::pair{b, "ARCHIVE"}}) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDeadLetter;
    u.destination = dest;
    u.object_id = id;
    ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  }
  // Posted notices of one kind (each destination with dead letters also
  // gets its own "dead-letters" alert).
  auto of_kind = [&](const std::string& kind) {
    std::vector<json> out;
    for (const HookServer::Request& r : hook.requests()) {
      json j = json::parse(r.body);
      if (j["alert"] == kind) out.push_back(j);
    }
    return out;
  };
  ASSERT_TRUE(
      RunUntil([&] { return of_kind("dead-letters-expiring").size() == 1 && of_kind("dead-letters").size() == 2; }));
  size_t expiring = 0;
  std::set<std::string> dead_subjects;
  for (const Alerts::Active& x : alerts_->active()) {
    if (x.kind == "dead-letters-expiring") {
      ++expiring;
      EXPECT_EQ(x.subject, "store");
    } else {
      EXPECT_EQ(x.kind, "dead-letters");
      dead_subjects.insert(x.subject);
    }
  }
  EXPECT_EQ(expiring, 1u);
  EXPECT_EQ(dead_subjects, (std::set<std::string>{"ARCHIVE", "TELERAD"}));
  json j = of_kind("dead-letters-expiring")[0];
  EXPECT_THAT(j["message"].get<std::string>(),
              StartsWith("Dead letters expire within 24 h: 2 object(s), destinations ARCHIVE, TELERAD"));
  EXPECT_THAT(of_kind("dead-letters")[0]["message"].get<std::string>(), StartsWith("1 object(s) for destination "));
  // Requeued: no longer dead letters; the alerts resolve.
  for (auto [id, dest] : {std::pair{a, "TELERAD"}, std::pair{b, "ARCHIVE"}}) {
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kRequeue;
    u.destination = dest;
    u.object_id = id;
    ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  }
  ASSERT_TRUE(
      RunUntil([&] { return of_kind("dead-letters-expiring").size() == 2 && of_kind("dead-letters").size() == 4; }));
  EXPECT_EQ(of_kind("dead-letters-expiring")[1]["state"], "resolved");
  EXPECT_TRUE(alerts_->active().empty());
}

TEST_F(AlertsTest, DeadLettersFarFromExpiryAreNotAlertedAsExpiring) {
  store::Options o = store::testing::TestOptions(dir_.Sub("store"));
  o.dead_retention_ms = 30ll * 24 * 3600'000;
  Result<std::unique_ptr<store::Store>> opened = store::Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(*opened);
  rules::AlertsConfig c;
  c.oldest_queued_s = 86400;
  MakeAlerts(c);
  store::QueueUpdate u;
  u.kind = store::QueueUpdate::Kind::kDeadLetter;
  u.destination = "TELERAD";
  u.object_id = Queue("1.2.3.210", "TELERAD");
  ASSERT_TRUE(store::testing::ApplyUpdates(*store_, {u}).ok());
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 50);
  RunUntil([] { return false; }, std::chrono::milliseconds(200));
  for (const Alerts::Active& x : alerts_->active()) {
    EXPECT_NE(x.kind, "dead-letters-expiring") << "30 days left";
  }
}

TEST_F(AlertsTest, FailedPostIsRetriedAtNextEvaluationWhileItHolds) {
  OpenStore();
  HookServer hook({500, 503, 204});
  rules::AlertsConfig c;
  c.webhook = hook.url();
  c.oldest_queued_s = 0;
  c.repeat_s = 0;
  MakeAlerts(c);
  Queue("1.2.3.200", "ARCHIVE");
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 30);
  ASSERT_TRUE(RunUntil([&] { return hook.count() == 3; }));
  RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_EQ(hook.count(), 3u) << "no more posts after the success";
  for (const HookServer::Request& r : hook.requests()) EXPECT_EQ(json::parse(r.body)["state"], "raised");
  EXPECT_EQ(AlertRecords().size(), 1u) << "one notice, audited once, posted three times";
}

TEST_F(AlertsTest, RepeatsWhileItHolds) {
  OpenStore();
  HookServer hook({204});
  rules::AlertsConfig c;
  c.webhook = hook.url();
  c.oldest_queued_s = 0;
  c.repeat_s = 1;
  MakeAlerts(c);
  Queue("1.2.3.300", "ARCHIVE");
  auto start = std::chrono::steady_clock::now();
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 20);
  ASSERT_TRUE(RunUntil([&] { return hook.count() >= 3; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "repeat_s = 1 between notices";
  for (const HookServer::Request& r : hook.requests()) EXPECT_EQ(json::parse(r.body)["state"], "raised");
}

TEST_F(AlertsTest, StorageSourceIsEvaluatedFromTheWatch) {
  OpenStore();
  // A watch with its marks at 0: any usage closes intake.
  StorageWatch watch(&loop_, store_.get(), nullptr, nullptr, dir_.Sub("store"), 1e-9, 1e-10);
  watch.SampleNow();
  ASSERT_TRUE(watch.usage().intake_closed);
  rules::AlertsConfig c;
  c.command = script_;
  MakeAlerts(c);
  alerts_->Evaluate();  // not started: no sources yet
  EXPECT_TRUE(alerts_->active().empty());
  alerts_->Start({nullptr, nullptr, &watch, nullptr}, 1000);
  ASSERT_EQ(alerts_->active().size(), 1u);
  EXPECT_EQ(alerts_->active()[0].kind, "storage-high");
  ASSERT_TRUE(RunUntil([&] { return CommandLines().size() == 2; }));
  EXPECT_EQ(CommandLines()[1], "ENV storage-high|store|raised");
  watch.Shutdown();
}

TEST_F(AlertsTest, BrokenChannelsAreLoggedNotFatal) {
  OpenStore();
  rules::AlertsConfig c;
  c.webhook = "http://127.0.0.1:1/nobody-listens";
  c.command = dir_.Sub("no-such-program");
  c.oldest_queued_s = 0;
  MakeAlerts(c);
  Queue("1.2.3.400", "ARCHIVE");
  alerts_->Start({nullptr, store_.get(), nullptr, nullptr}, 20);
  RunUntil([] { return false; }, std::chrono::milliseconds(300));
  ASSERT_EQ(alerts_->active().size(), 1u) << "the alert holds whatever its delivery did";
  EXPECT_EQ(AlertRecords().size(), 1u);
}

TEST_F(AlertsTest, InvalidWebhookUrlStillRunsTheCommand) {
  rules::AlertsConfig c;
  c.webhook = "https://example.invalid/hook";  // no TLS client here
  c.command = script_;
  MakeAlerts(c);
  alerts_->OnStorageChange(ClosedUsage());
  ASSERT_TRUE(RunUntil([&] { return CommandLines().size() == 2; }));
}

// Shutdown while a POST waits for an answer that never comes and while a
// command runs: both are cut, and the loop runs out at once.
TEST_F(AlertsTest, ShutdownAbortsPendingPostAndKillsCommand) {
  HookServer hook({200}, /*answer=*/false);
  const std::string slow = dir_.Sub("slow.sh");
  std::ofstream(slow) << "#!/bin/sh\nexec sleep 60\n";
  chmod(slow.c_str(), 0755);
  rules::AlertsConfig c;
  c.webhook = hook.url();
  c.command = slow;
  MakeAlerts(c);
  alerts_->OnStorageChange(ClosedUsage());
  ASSERT_TRUE(RunUntil([&] { return hook.count() == 1; }));
  auto start = std::chrono::steady_clock::now();
  alerts_->Shutdown();
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  alerts_.reset();
  EXPECT_EQ(uv_loop_close(&loop_), 0);
  ASSERT_EQ(uv_loop_init(&loop_), 0);  // for TearDown
}

}  // namespace
}  // namespace relais::router
