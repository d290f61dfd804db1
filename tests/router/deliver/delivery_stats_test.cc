// DeliveryScheduler's operations surface (router/deliver/delivery.h): Stats(),
// Pause/Resume, RecentFailures and the throughput fed to Metrics, with the
// scheduler on a libuv loop in this process, a real store in a temp dir,
// and real peers: DCMTK's storescp (fork/exec) and a port nobody listens on.
// Every test closes every handle (uv_loop_close == 0).
//
// (In router_test rather than integration_test: it links relais_router.)
#include "base/clock.h"
#include "router/deliver/delivery.h"
#include "tests/router/loopback.h"
#include "tests/router/part10.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "router/operate/prometheus.h"
#include "router/record/metrics.h"
#include "rules/routing.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

namespace fs = std::filesystem;
using store::testing::TempDir;

using relais::testing::FreePort;

using relais::testing::PortOpen;

// storescp writing what it receives into `out`; killed on destruction.
class Storescp {
 public:
  bool Start(const std::string& dir, uint16_t port, std::vector<std::string> extra = {}) {
    out_ = dir + "/received";
    log_ = dir + "/storescp.log";
    fs::create_directories(out_);
    std::vector<std::string> argv = {"storescp", "-aet", "STORESCP", "-od", out_, "+B"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(std::to_string(port));
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    for (int i = 0; i < 300; ++i) {
      if (PortOpen(port)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  ~Storescp() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  size_t Files() const {
    size_t n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator(out_, ec); !ec && it != fs::directory_iterator(); ++it) ++n;
    return n;
  }
  std::string Log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  std::string out_, log_;
};

// The data set bytes of a Part 10 file and its UIDs. PS3.10 7.1: 128-byte
// preamble, "DICM", then the File Meta group (0002,xxxx) in Explicit VR
// Little Endian, (0002,0000) first giving the group's remaining length.
using relais::testing::Part10;
using relais::testing::ReadPart10;

std::string Corpus(const std::string& name) { return std::string(RELAIS_CORPUS_DIR) + "/" + name; }

class DeliveryStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_async_init(&loop_, &async_, [](uv_async_t* a) noexcept {
      auto* self = static_cast<DeliveryStatsTest*>(a->data);
      std::vector<std::function<void()>> run;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        run.swap(self->posted_);
      }
      for (auto& fn : run) fn();
    });
    async_.data = this;
    store::Options o;
    o.path = dir_.Sub("store");
    o.compression_level = 0;
    auto s = store::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    DeliverySettings settings;
    settings.idle_release_ms = 300;
    settings.rescan_ms = 300;
    settings.connect_timeout_ms = 2000;
    settings.down_after_failures = 2;
    sched_ = std::make_unique<DeliveryScheduler>(&loop_, store_.get(), settings, [this](std::function<void()> fn) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        posted_.push_back(std::move(fn));
      }
      uv_async_send(&async_);
    });
    sched_->SetMetrics(&metrics_);
    store_->SetQueueCallback([this](const std::vector<std::string>& dests) { sched_->Wake(dests); });
  }

  void TearDown() override {
    if (sched_) {
      bool done = false;
      sched_->Shutdown([&done] { done = true; });
      while (!done) uv_run(&loop_, UV_RUN_ONCE);
    }
    store_.reset();  // drains the writer: its callbacks post while the async handle is open
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
    sched_.reset();
  }

  void SetRules(const std::string& text) {
    auto rules = rules::RuleSet::Parse(text, "test.toml");
    ASSERT_TRUE(rules.ok()) << rules.status().ToString();
    sched_->SetRules(*rules);
  }

  // Stores a corpus file routed to `destinations` (queue rows in the same
  // commit; the queue callback wakes the scheduler). Returns its raw size.
  uint64_t Put(const std::string& corpus_file, const std::vector<std::string>& destinations) {
    Part10 f;
    EXPECT_TRUE(ReadPart10(Corpus(corpus_file), &f)) << corpus_file;
    store::ObjectMeta meta = store::testing::MakeMeta(f.sop_instance);
    meta.sop_class_uid = f.sop_class;
    meta.transfer_syntax_uid = f.transfer_syntax;
    meta.received_unix_ms = NowUnixMs();
    meta.routing = "routed";
    for (const std::string& d : destinations) meta.routes.push_back(store::Route{d, 0, "all", ""});
    std::vector<uint8_t> bytes(f.data_set.begin(), f.data_set.end());
    store::testing::PutResult r = store::testing::PutObject(*store_, meta, bytes);
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    return bytes.size();
  }

  // Runs the loop until `done` holds or `timeout_ms` passes.
  bool RunUntil(const std::function<bool()>& done, int64_t timeout_ms) {
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) noexcept {}, 20, 20);
    int64_t end = NowUnixMs() + timeout_ms;
    bool ok = false;
    while (NowUnixMs() < end) {
      if (done()) {
        ok = true;
        break;
      }
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return ok;
  }

  DeliveryScheduler::DestinationStats StatsOf(const std::string& name) {
    for (auto& st : sched_->Stats()) {
      if (st.name == name) return st;
    }
    ADD_FAILURE() << "no stats for " << name;
    return {};
  }

  TempDir dir_;
  uv_loop_t loop_;
  uv_async_t async_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  std::unique_ptr<store::Store> store_;
  Metrics metrics_;
  std::unique_ptr<DeliveryScheduler> sched_;
};

std::string Dest(const std::string& name, uint16_t port, const std::string& more = "") {
  return "[[destination]]\nname = \"" + name +
         "\"\nae_title = \"STORESCP\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) + "\n" + more + "\n";
}

TEST_F(DeliveryStatsTest, PauseHoldsObjectsAndResumeSendsThemAtOnce) {
  const uint16_t port = FreePort();
  Storescp scp;
  ASSERT_TRUE(scp.Start(dir_.path(), port));
  SetRules(Dest("scp", port) + "[[rule]]\nname = \"all\"\nforward = [\"scp\"]\n");
  EXPECT_TRUE(sched_->Pause("nope").IsNotFound());
  EXPECT_TRUE(sched_->Resume("nope").IsNotFound());
  ASSERT_TRUE(sched_->Pause("scp").ok());
  uint64_t bytes = 0;
  for (const char* f : {"dcm4che__MR01.dcm", "dcm4che__MR02.dcm", "dcm4che__MR03.dcm"}) bytes += Put(f, {"scp"});

  // Paused: rows queue, nothing goes out.
  RunUntil([] { return false; }, 1500);
  DeliveryScheduler::DestinationStats st = StatsOf("scp");
  EXPECT_TRUE(st.paused);
  EXPECT_EQ(st.state, "paused");
  EXPECT_EQ(st.sent, 0u);
  EXPECT_EQ(st.ae_title, "STORESCP");
  EXPECT_EQ(st.host, "127.0.0.1");
  EXPECT_EQ(st.port, port);
  EXPECT_EQ(scp.Files(), 0u) << scp.Log();

  const int64_t resumed = NowUnixMs();
  ASSERT_TRUE(sched_->Resume("scp").ok());
  ASSERT_TRUE(RunUntil([&] { return StatsOf("scp").sent == 3; }, 20000)) << scp.Log();
  EXPECT_LT(NowUnixMs() - resumed, 10000) << "Resume sends at once";
  ASSERT_TRUE(RunUntil([&] { return StatsOf("scp").state == "idle"; }, 5000)) << StatsOf("scp").state;
  st = StatsOf("scp");
  EXPECT_FALSE(st.paused);
  EXPECT_EQ(st.bytes_sent, bytes);
  EXPECT_DOUBLE_EQ(st.sent_bytes_per_s, static_cast<double>(bytes) / 60.0);
  EXPECT_TRUE(st.failures_by_class.empty());
  EXPECT_EQ(st.retries, 0u);
  EXPECT_EQ(st.last_error, "");
  EXPECT_EQ(st.failing_since_unix_ms, 0);
  EXPECT_TRUE(sched_->RecentFailures().empty());
  EXPECT_EQ(scp.Files(), 3u);
  // The throughput history saw the same objects (the last two minutes, in
  // case a minute ended meanwhile).
  std::vector<Metrics::Minute> h = metrics_.LastHour(NowUnixMs());
  EXPECT_EQ(h[58].sent + h[59].sent, 3u);
  EXPECT_EQ(h[58].sent_bytes + h[59].sent_bytes, bytes);
}

TEST_F(DeliveryStatsTest, LinkFailuresAreCountedClassifiedAndListedNewestFirst) {
  const uint16_t dead_port = FreePort();  // nobody listens there
  SetRules(Dest("nowhere", dead_port, "retry = { initial_backoff = \"1s\", max_backoff = \"1s\" }") +
           Dest("gone", dead_port, "retry = { initial_backoff = \"1s\", max_backoff = \"1s\", max_attempts = 1 }") +
           "[[rule]]\nname = \"all\"\nforward = [\"nowhere\", \"gone\"]\n");
  const int64_t start = NowUnixMs();
  Put("dcm4che__MR01.dcm", {"nowhere", "gone"});
  ASSERT_TRUE(RunUntil(
      [&] {
        auto st = StatsOf("nowhere");
        return st.failures_by_class["link"] >= 3 && StatsOf("gone").dead == 1;
      },
      20000));
  DeliveryScheduler::DestinationStats st = StatsOf("nowhere");
  EXPECT_EQ(st.sent, 0u);
  EXPECT_GE(st.consecutive_failures, 2u);
  EXPECT_TRUE(st.down);
  EXPECT_TRUE(st.state == "down") << st.state;
  EXPECT_GE(st.failing_since_unix_ms, start);
  EXPECT_LE(st.failing_since_unix_ms, st.last_error_unix_ms);
  EXPECT_FALSE(st.last_error.empty());
  EXPECT_GE(st.retries, 1u);
  EXPECT_EQ(st.failures_by_class.size(), 1u) << "only link failures";
  // Failed attempts are the sum of the classes (the dashboard showed
  // "0 failed attempts, 8 retries" for a destination that refused connections).
  EXPECT_EQ(st.failed, st.failures_by_class["link"]);
  EXPECT_GE(st.failed, st.retries);

  // The object given up after one attempt counts as "limit", dead.
  DeliveryScheduler::DestinationStats gone = StatsOf("gone");
  EXPECT_EQ(gone.failures_by_class["limit"], 1u);
  EXPECT_EQ(gone.failed, 1u);
  EXPECT_EQ(gone.dead, 1u);

  std::vector<DeliveryScheduler::FailureEvent> recent = sched_->RecentFailures();
  ASSERT_GE(recent.size(), 4u);
  EXPECT_LE(recent.size(), 100u);
  for (size_t i = 1; i < recent.size(); ++i) EXPECT_GE(recent[i - 1].unix_ms, recent[i].unix_ms) << i;
  bool saw_dead = false;
  for (const auto& f : recent) {
    EXPECT_TRUE(f.destination == "nowhere" || f.destination == "gone") << f.destination;
    EXPECT_FALSE(f.error.empty());
    EXPECT_FALSE(f.association.empty());
    EXPECT_EQ(f.status, 0) << "no DIMSE status on a refused connection";
    if (f.destination == "gone" && f.result == "dead") {
      saw_dead = true;
      EXPECT_FALSE(f.sop_instance_uid.empty()) << "the head row carried the attempt";
    }
    if (f.destination == "nowhere") {
      EXPECT_TRUE(f.result == "retry") << f.result;
    }
  }
  EXPECT_TRUE(saw_dead);

  // The same figures on the /metrics page.
  MetricsSources src;
  src.delivery = sched_.get();
  std::string page = RenderPrometheus(src);
  EXPECT_NE(page.find("relais_destination_state{destination=\"nowhere\",state=\"down\"} 1\n"), std::string::npos)
      << page;
  EXPECT_NE(page.find("relais_destination_failures_total{destination=\"gone\",class=\"limit\"} 1\n"), std::string::npos)
      << page;
}

TEST_F(DeliveryStatsTest, PausedDestinationIsNotProbedAndResumeProbesAgain) {
  const uint16_t port = FreePort();
  SetRules(Dest("later", port, "retry = { initial_backoff = \"1s\", max_backoff = \"1s\" }") +
           "[[rule]]\nname = \"all\"\nforward = [\"later\"]\n");
  Put("dcm4che__MR01.dcm", {"later"});
  ASSERT_TRUE(RunUntil([&] { return StatsOf("later").down; }, 20000));
  ASSERT_TRUE(sched_->Pause("later").ok());
  // Let any attempt already under way end, then count: no more while paused.
  RunUntil([] { return false; }, 500);
  uint64_t before = StatsOf("later").failures_by_class["link"];
  RunUntil([] { return false; }, 2500);
  EXPECT_EQ(StatsOf("later").failures_by_class["link"], before) << "a paused destination is left alone";
  EXPECT_EQ(StatsOf("later").state, "paused");

  // The peer comes up; resume: the probe answers and the object goes.
  Storescp scp;
  ASSERT_TRUE(scp.Start(dir_.path(), port));
  ASSERT_TRUE(sched_->Resume("later").ok());
  ASSERT_TRUE(RunUntil([&] { return StatsOf("later").sent == 1; }, 20000)) << scp.Log();
  DeliveryScheduler::DestinationStats st = StatsOf("later");
  EXPECT_FALSE(st.down);
  EXPECT_EQ(st.failing_since_unix_ms, 0) << "the streak ended";
  EXPECT_FALSE(st.last_error.empty()) << "the last error is kept after recovery";
}

TEST_F(DeliveryStatsTest, SopClassThePeerRefusesIsUnsupportedAndDeadAtOnce) {
  // A DCMTK association profile (dcmnet/docs/asconfig.txt) accepting only
  // Verification and CT Image Storage: the MR context is rejected.
  const std::string profile = dir_.Sub("ct-only.cfg");
  {
    std::ofstream c(profile);
    c << "[[TransferSyntaxes]]\n[All]\nTransferSyntax1 = 1.2.840.10008.1.2\n"
         "TransferSyntax2 = 1.2.840.10008.1.2.1\n"
         "[[PresentationContexts]]\n[Accepted]\n"
         "PresentationContext1 = 1.2.840.10008.1.1\\All\n"
         "PresentationContext2 = 1.2.840.10008.5.1.4.1.1.2\\All\n"
         "[[Profiles]]\n[Restricted]\nPresentationContexts = Accepted\n";
  }
  const uint16_t port = FreePort();
  Storescp scp;
  ASSERT_TRUE(scp.Start(dir_.path(), port, {"-xf", profile, "Restricted"}));
  SetRules(Dest("ctonly", port) + "[[rule]]\nname = \"all\"\nforward = [\"ctonly\"]\n");
  Put("dcm4che__MR01.dcm", {"ctonly"});
  ASSERT_TRUE(RunUntil([&] { return StatsOf("ctonly").dead == 1; }, 20000)) << scp.Log();
  DeliveryScheduler::DestinationStats st = StatsOf("ctonly");
  EXPECT_EQ(st.failures_by_class["unsupported"], 1u);
  EXPECT_EQ(st.failures_by_class.size(), 1u);
  EXPECT_EQ(st.retries, 0u) << "no conversion helps: dead at once";
  EXPECT_EQ(st.sent, 0u);
  EXPECT_NE(st.last_error.find("not supported"), std::string::npos) << st.last_error;
  std::vector<DeliveryScheduler::FailureEvent> recent = sched_->RecentFailures();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].result, "dead");
  EXPECT_EQ(recent[0].destination, "ctonly");
  EXPECT_FALSE(recent[0].sop_instance_uid.empty());
  EXPECT_EQ(scp.Files(), 0u);
}

}  // namespace
}  // namespace relais::router
