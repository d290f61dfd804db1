// Chunk compression speed and ratio at the levels worth considering.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "store/chunk_codec.h"

namespace relais::store {
namespace {

// One 1 MiB chunk of 16-bit CT-like samples (body disc + noise over air).
std::vector<uint8_t> CtChunk() {
  std::mt19937 rng(42);
  std::vector<uint8_t> out(1 << 20);
  for (size_t i = 0; i + 1 < out.size(); i += 2) {
    size_t px = i / 2, x = px % 512, y = (px / 512) % 512;
    int r2 = static_cast<int>((x - 256) * (x - 256) + (y - 256) * (y - 256));
    int v = (r2 < 200 * 200 ? 1040 + static_cast<int>(x / 8) : 24) + static_cast<int>(rng() % 40);
    out[i] = static_cast<uint8_t>(v);
    out[i + 1] = static_cast<uint8_t>(v >> 8);
  }
  return out;
}

void BM_CompressChunk(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  std::vector<uint8_t> chunk = CtChunk();
  ChunkCompressor compressor(level);
  size_t encoded = 0;
  for (auto _ : state) {
    std::vector<uint8_t> out = compressor.Encode(chunk);
    encoded = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk.size()));
  state.counters["ratio"] = static_cast<double>(chunk.size()) / static_cast<double>(encoded);
}
BENCHMARK(BM_CompressChunk)->Arg(-1)->Arg(1)->Arg(3)->Unit(benchmark::kMicrosecond);

void BM_DecompressChunk(benchmark::State& state) {
  std::vector<uint8_t> chunk = CtChunk();
  ChunkCompressor compressor(static_cast<int>(state.range(0)));
  std::vector<uint8_t> encoded = compressor.Encode(chunk);
  std::vector<uint8_t> out;
  for (auto _ : state) {
    Status s = DecodeChunk(encoded, chunk.size(), &out);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk.size()));
}
BENCHMARK(BM_DecompressChunk)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace relais::store

BENCHMARK_MAIN();
