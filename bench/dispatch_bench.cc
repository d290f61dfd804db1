// Dispatch cost per object against a backlog: the scheduler's queue reads
// (ScanQueue, router/deliver/queue_scan.h, triggered the way
// DeliveryScheduler::Run triggers them) and the store commit that finishes
// each row (UpdateQueue kDelivered), on a real store in a temp dir holding
// 1k, 100k or 1M queued rows (a week offline), for a plain destination and
// a hold_study one.
//
// Time is simulated: each object takes kSimulatedSendMs to "send", so the
// periodic rescans (DeliverySettings::rescan_ms) happen as often per object
// as with a peer taking 100 objects/s. `rows_read_per_object` counts queue
// rows the scans read per dispatched object: the figure that must not grow
// with the backlog. `first_scan_ms` and `ready_rows` are serve's start: the
// time of its first scan and the rows it then holds in memory.
//
// The stores are generated once per size through Store::NewObject (what
// `relais serve` writes), 1024 objects per commit, each object routed to
// both destinations; N + kIterations rows each, so that the backlog stays
// between N and N + kIterations while a case runs.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "router/deliver/queue_scan.h"
#include "store/store.h"

namespace relais::router {
namespace {

constexpr int kIterations = 2000;
constexpr int64_t kSimulatedSendMs = 10;
constexpr int64_t kRescanMs = 2000;  // DeliverySettings::rescan_ms
constexpr size_t kBatchRows = 256;   // DeliverySettings::batch_rows
constexpr int kWindow = 32;          // updates in flight (associations)
constexpr int kObjectsPerStudy = 100;
// New objects keep arriving while the backlog drains (10/s): each commit
// wakes the scheduler, which scans at once (a STAT object overtakes).
constexpr int kWakeEvery = 10;
constexpr const char* kPlain = "plain";
constexpr const char* kHeld = "held";

struct Backlog {
  std::string dir;
  std::unique_ptr<store::Store> store;
  std::map<std::string, int64_t> left;  // rows per destination
};

std::map<int64_t, std::unique_ptr<Backlog>>& Backlogs() {
  static auto* backlogs = new std::map<int64_t, std::unique_ptr<Backlog>>();
  return *backlogs;
}

store::Options StoreOptions(const std::string& dir) {
  store::Options o;
  o.path = dir;
  o.max_size = 32ull << 30;
  o.compression_level = 0;
  o.max_batch = 1024;
  return o;
}

Backlog* Generate(int64_t n) {
  auto b = std::make_unique<Backlog>();
  std::string tmpl = (std::filesystem::temp_directory_path() / "relais-dispatch-bench-XXXXXX").string();
  b->dir = mkdtemp(tmpl.data());
  b->store = std::move(store::Store::Open(StoreOptions(b->dir)).value());
  const int64_t rows = n + kIterations;
  const int64_t week_ago = NowUnixMs() - 7 * 24 * 3600 * 1000LL;
  const std::vector<uint8_t> data(256, 0x5a);
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  uint64_t failures = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < rows; ++i) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < 2048; });
      ++in_flight;
    }
    store::ObjectMeta m;
    m.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
    m.transfer_syntax_uid = "1.2.840.10008.1.2.1";
    m.sop_instance_uid = "1.2.826.0.1.3680043.9.7." + std::to_string(i + 1);
    m.study_instance_uid = "1.2.826.0.1.3680043.9.8." + std::to_string(i / kObjectsPerStudy + 1);
    m.series_instance_uid = m.study_instance_uid + ".1";
    m.patient_id = "P" + std::to_string(i / kObjectsPerStudy);
    m.modality = "CT";
    m.calling_ae = "CT1";
    m.called_ae = "RELAIS";
    m.received_unix_ms = week_ago + i;
    m.routing = "routed";
    m.routes = {store::Route{kPlain, 0, "r", ""}, store::Route{kHeld, 0, "r", ""}};
    auto w = b->store->NewObject();
    w->Append(data);
    w->Finish(std::move(m), [&](Status s, const store::ObjectMeta&) {
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok()) ++failures;
      --in_flight;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "dispatch_bench: %lld objects (%lld queued rows) written in %.1f s, %llu failed\n",
               static_cast<long long>(rows), static_cast<long long>(2 * rows), s,
               static_cast<unsigned long long>(failures));
  b->left[kPlain] = b->left[kHeld] = rows;
  Backlog* out = b.get();
  Backlogs()[n] = std::move(b);
  return out;
}

// A backlog of n rows with `need` more for `dest` to take.
Backlog* BacklogOf(int64_t n, const std::string& dest, int64_t need) {
  auto& all = Backlogs();
  auto it = all.find(n);
  if (it != all.end() && it->second->left[dest] >= n + need) return it->second.get();
  if (it != all.end()) {
    it->second->store.reset();
    std::filesystem::remove_all(it->second->dir);
    all.erase(it);
  }
  // One backlog on disk at a time: the 1M one is about a gigabyte.
  for (auto& [size, b] : all) {
    b->store.reset();
    std::filesystem::remove_all(b->dir);
  }
  all.clear();
  return Generate(n);
}

struct Key {
  int32_t priority;
  uint64_t id;
  bool operator<(const Key& o) const {
    if (priority != o.priority) return priority > o.priority;
    return id < o.id;
  }
};

void RunDispatch(benchmark::State& state, const std::string& dest, int64_t hold_ms) {
  const int64_t n = state.range(0);
  Backlog* b = BacklogOf(n, dest, kIterations);
  store::Store& st = *b->store;
  std::map<Key, ScannedRow> ready;
  std::set<Key> in_flight;
  std::set<std::tuple<int32_t, uint64_t, uint32_t>> send_now_seen;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Key> done;  // committed, not yet taken out of in_flight
  uint64_t failures = 0;
  int64_t now = NowUnixMs();
  int64_t last_scan = 0, next_due = 0;
  bool more = false, scan_wanted = true;
  uint64_t examined = 0, scans = 0, objects = 0;

  auto refill = [&] {
    scan_wanted = false;
    last_scan = now;
    ScanRequest req;
    req.destination = dest;
    req.now = now;
    req.hold_ms = hold_ms;
    req.want = std::max<size_t>(kBatchRows - std::min(kBatchRows, ready.size()), 16);
    ScanResult r;
    Status s = ScanQueue(
        st, req,
        [&](int32_t p, uint64_t id) {
          return ready.count(Key{p, id}) != 0 || in_flight.count(Key{p, id}) != 0;
        },
        &send_now_seen, &r);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    next_due = r.next_due;
    more = r.more;
    examined += r.examined;
    ++scans;
    for (ScannedRow& row : r.found) {
      Key k{row.q.priority, row.q.object_id};
      ready.emplace(k, std::move(row));
    }
  };
  auto drain = [&](int window) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return static_cast<int>(in_flight.size() - done.size()) < window; });
    for (const Key& k : done) in_flight.erase(k);
    done.clear();
  };
  // Serve starts: its first scan is not part of the steady state.
  auto t0 = std::chrono::steady_clock::now();
  refill();
  state.counters["first_scan_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  state.counters["ready_rows"] = static_cast<double>(ready.size());
  examined = 0;
  scans = 0;
  for (auto _ : state) {
    now += kSimulatedSendMs;
    drain(kWindow);
    if (objects % kWakeEvery == 0) scan_wanted = true;
    // DeliveryScheduler::Run's conditions.
    bool periodic = now - last_scan >= kRescanMs;
    bool due_passed = next_due != 0 && now >= next_due;
    bool low = ready.size() < kBatchRows / 2 + 1;
    if (scan_wanted || ((more || periodic || due_passed) && low)) refill();
    if (ready.empty()) {
      state.SkipWithError("no row ready");
      break;
    }
    auto it = ready.begin();
    Key k = it->first;
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDelivered;
    u.destination = dest;
    u.priority = it->second.q.priority;
    u.object_id = it->second.q.object_id;
    u.attempts = 1;
    ready.erase(it);
    {
      std::lock_guard<std::mutex> lock(mu);
      in_flight.insert(k);
    }
    st.UpdateQueue({std::move(u)}, [&, k](Status s) {
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok()) ++failures;
      done.push_back(k);
      cv.notify_all();
    });
    ++objects;
  }
  drain(1);
  b->left[dest] -= static_cast<int64_t>(objects);
  state.SetItemsProcessed(static_cast<int64_t>(objects));
  state.counters["rows_read_per_object"] = objects ? static_cast<double>(examined) / objects : 0;
  state.counters["scans"] = static_cast<double>(scans);
  state.counters["failures"] = static_cast<double>(failures);
}

void BM_DispatchPlain(benchmark::State& state) { RunDispatch(state, kPlain, 0); }
// hold_study 60 s; every study of the backlog went quiet long ago.
void BM_DispatchHeldStudy(benchmark::State& state) { RunDispatch(state, kHeld, 60000); }

// The queue summary the alerts compute every 10 s on the loop (oldest
// queued row, rows per destination).
void BM_SummarizeQueues(benchmark::State& state) {
  Backlog* b = BacklogOf(state.range(0), kPlain, 0);
  for (auto _ : state) {
    auto q = b->store->SummarizeQueues();
    if (!q.ok()) state.SkipWithError(q.status().ToString().c_str());
    benchmark::DoNotOptimize(q);
  }
}

}  // namespace
}  // namespace relais::router

// Registered size by size, so that each backlog is written once.
int main(int argc, char** argv) {
  using relais::router::BM_DispatchHeldStudy;
  using relais::router::BM_DispatchPlain;
  using relais::router::BM_SummarizeQueues;
  for (int64_t n : {1000, 100000, 1000000}) {
    benchmark::RegisterBenchmark("BM_DispatchPlain", BM_DispatchPlain)
        ->Arg(n)
        ->Iterations(relais::router::kIterations)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DispatchHeldStudy", BM_DispatchHeldStudy)
        ->Arg(n)
        ->Iterations(relais::router::kIterations)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_SummarizeQueues", BM_SummarizeQueues)
        ->Arg(n)
        ->Iterations(3)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
