// Chunk compression speed and ratio at the levels worth considering.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "router/receive/dataset_header.h"
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

// A data set as the store gets it, with the pixel layout the receive path
// finds (router/receive/dataset_header.h).
struct DataSet {
  std::vector<uint8_t> bytes;
  uint64_t pixel_offset = 0;
  uint32_t sample_bytes = 0;
};

// The data sets of the Part 10 files under `dir` (recursively) whose pixel
// data is native little endian with Bits Allocated 16.
std::vector<DataSet> LoadSixteenBit(const std::string& dir) {
  std::vector<DataSet> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".dcm") continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), {});
    // PS3.10 7.1: preamble, "DICM", (0002,0000) UL group length, the group.
    if (file.size() < 144 || std::memcmp(file.data() + 128, "DICM\x02\x00\x00\x00UL", 10) != 0) continue;
    uint32_t glen = file[140] | file[141] << 8 | file[142] << 16 | static_cast<uint32_t>(file[143]) << 24;
    if (144 + uint64_t{glen} > file.size()) continue;
    // (0002,0010) Transfer Syntax UID: found by its tag in the group.
    std::string ts;
    // PS3.5 7.1.2: OB, OW, UN, SQ, UT have a reserved u16 and a u32 length.
    for (size_t p = 144; p + 12 <= 144 + glen;) {
      uint16_t el = file[p + 2] | file[p + 3] << 8;
      std::string vr(reinterpret_cast<const char*>(file.data() + p + 4), 2);
      bool long_form = vr == "OB" || vr == "OW" || vr == "UN" || vr == "SQ" || vr == "UT";
      size_t head = long_form ? 12 : 8;
      size_t len = long_form ? (file[p + 8] | file[p + 9] << 8 | file[p + 10] << 16 | size_t{file[p + 11]} << 24)
                             : (file[p + 6] | file[p + 7] << 8);
      if (p + head + len > 144 + glen) break;
      if (el == 0x0010) ts.assign(reinterpret_cast<const char*>(file.data() + p + head), len);
      p += head + len;
    }
    while (!ts.empty() && (ts.back() == '\0' || ts.back() == ' ')) ts.pop_back();
    DataSet d;
    d.bytes.assign(file.begin() + 144 + glen, file.end());
    dicom::HeaderParser parser(ts);
    parser.Feed(d.bytes, true);
    Result<dicom::HeaderInfo> info = parser.result();
    if (!info.ok() || info->sample_bytes != 2) continue;
    d.pixel_offset = info->pixel_offset;
    d.sample_bytes = info->sample_bytes;
    out.push_back(std::move(d));
  }
  return out;
}

// Stores every data set of $RELAIS_BENCH_SET (a directory, default the
// corpus) as the store does: 256 KiB chunks, shuffled from the pixel start
// when range(1) is 1, at zstd level range(0). Counters: stored/raw, and the
// number of data sets.
void BM_StoreDataSets(benchmark::State& state) {
  const char* set = std::getenv("RELAIS_BENCH_SET");
  static const std::vector<DataSet> sets = LoadSixteenBit(set != nullptr ? set : RELAIS_SOURCE_DIR "/../shared/corpus");
  if (sets.empty()) {
    state.SkipWithError("no 16-bit native data sets found");
    return;
  }
  const int level = static_cast<int>(state.range(0));
  const bool shuffle = state.range(1) != 0;
  constexpr size_t kChunk = 256 << 10;
  ChunkCompressor compressor(level);
  uint64_t raw = 0, stored = 0;
  for (auto _ : state) {
    raw = stored = 0;
    for (const DataSet& d : sets) {
      for (size_t pos = 0; pos < d.bytes.size(); pos += kChunk) {
        size_t n = std::min(kChunk, d.bytes.size() - pos);
        ChunkFilter f = shuffle ? ChunkFilter::ForChunk(pos, n, d.pixel_offset, d.sample_bytes) : ChunkFilter{};
        std::vector<uint8_t> v = compressor.Encode(std::span<const uint8_t>(d.bytes.data() + pos, n), f);
        raw += n;
        stored += v.size();
      }
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * raw));
  state.counters["stored_over_raw"] = static_cast<double>(stored) / static_cast<double>(raw);
  state.counters["data_sets"] = static_cast<double>(sets.size());
  state.counters["raw_MB"] = static_cast<double>(raw) / 1e6;
}
BENCHMARK(BM_StoreDataSets)
    ->ArgsProduct({{-5, -3, -1, 1, 3}, {0, 1}})
    ->ArgNames({"level", "shuffle"})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace relais::store

BENCHMARK_MAIN();
