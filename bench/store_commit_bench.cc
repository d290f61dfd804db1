// Durable commits per second through the group-committing writer: many
// objects in flight, each acknowledged only after its fsync'd commit.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "store/store.h"

namespace relais::store {
namespace {

// 16-bit little-endian CT-like samples: smooth anatomy plus noise, not constant.
std::vector<uint8_t> CtLike(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i + 1 < n; i += 2) {
    size_t px = i / 2, x = px % 512, y = px / 512;
    int r2 = static_cast<int>((x - 256) * (x - 256) + (y - 256) * (y - 256));
    int v = (r2 < 200 * 200 ? 1040 : 24) + static_cast<int>(rng() % 40);
    out[i] = static_cast<uint8_t>(v);
    out[i + 1] = static_cast<uint8_t>(v >> 8);
  }
  return out;
}

void RunCommits(benchmark::State& state, size_t object_size) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "relais-bench-XXXXXX").string();
  std::string dir = mkdtemp(tmpl.data());
  Options options;
  options.path = dir;
  options.max_size = 8ull << 30;
  auto store = std::move(Store::Open(options).value());
  std::vector<std::vector<uint8_t>> inputs;
  for (uint32_t i = 0; i < 8; ++i) inputs.push_back(CtLike(object_size, i));

  constexpr int kInFlight = 32;  // as many associations sending at once
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  uint64_t n = 0, failures = 0;
  for (auto _ : state) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < kInFlight; });
      ++in_flight;
    }
    auto w = store->NewObject();
    w->Append(inputs[n % inputs.size()]);
    ObjectMeta meta;
    meta.sop_instance_uid = "1.2.826.0.1." + std::to_string(n++);
    w->Finish(std::move(meta), [&](Status s, const ObjectMeta&) {
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
  Store::Stats st = store->GetStats();
  state.SetItemsProcessed(static_cast<int64_t>(n));
  state.SetBytesProcessed(static_cast<int64_t>(n * object_size));
  state.counters["objects_per_commit"] = st.commits ? static_cast<double>(n) / st.commits : 0;
  state.counters["failures"] = static_cast<double>(failures);
  store.reset();
  std::filesystem::remove_all(dir);
}

void BM_CommitSmallObjects(benchmark::State& state) { RunCommits(state, 20 << 10); }
void BM_CommitCtObjects(benchmark::State& state) { RunCommits(state, 512 << 10); }

BENCHMARK(BM_CommitSmallObjects)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CommitCtObjects)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace relais::store

BENCHMARK_MAIN();
