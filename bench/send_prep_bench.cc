// Send preparation throughput: one CT slice from the corpus (NEMA WG04 CT1,
// 512x512x16 bits, implicit VR little endian as stored) transcoded by
// PrepareDataset to JPEG-LS lossless and back to explicit VR little endian.
// Bytes processed are the input data set's bytes.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "router/deliver/send_prep.h"

namespace {

constexpr char kJpegLsLossless[] = "1.2.840.10008.1.2.4.80";

// Benchmarks get no RELAIS_CORPUS_DIR definition: take $RELAIS_CORPUS_DIR,
// else the corpus next to the source tree (../shared/corpus).
std::string CorpusDir() {
  if (const char* env = std::getenv("RELAIS_CORPUS_DIR")) return env;
  std::string here = __FILE__;  // .../main/bench/send_prep_bench.cc
  return here.substr(0, here.rfind('/')) + "/../../shared/corpus";
}

// The data set bytes of a Part 10 file: after the 128-byte preamble, "DICM"
// and group 0002 (PS3.10 7.1; explicit VR little endian).
std::vector<uint8_t> LoadDataSet(const std::string& name) {
  std::ifstream f(CorpusDir() + "/" + name, std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
  if (b.size() < 132) return {};
  size_t i = 132;
  auto u16 = [&](size_t at) { return static_cast<uint32_t>(b[at] | b[at + 1] << 8); };
  while (i + 8 <= b.size() && u16(i) == 0x0002) {
    std::string vr(b.begin() + i + 4, b.begin() + i + 6);
    bool long_vr = vr == "OB" || vr == "OW" || vr == "SQ" || vr == "UN" || vr == "UT";
    i += long_vr ? 12 + (u16(i + 8) | u16(i + 10) << 16) : 8 + u16(i + 6);
  }
  return i <= b.size() ? std::vector<uint8_t>(b.begin() + i, b.end()) : std::vector<uint8_t>{};
}

const std::vector<uint8_t>& CtSlice() {
  static const std::vector<uint8_t> bytes = LoadDataSet("dicomparser__CT1_UNC.implicit_little_endian.dcm");
  return bytes;
}

void BM_PrepareUncompressedToJpegLs(benchmark::State& state) {
  const std::vector<uint8_t>& in = CtSlice();
  if (in.empty()) return state.SkipWithError("cannot load the CT slice");
  size_t out_size = 0;
  for (auto _ : state) {
    auto r = relais::router::PrepareDataset(in, relais::router::kImplicitVrLittleEndian, kJpegLsLossless, {});
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    out_size = r->size();
    benchmark::DoNotOptimize(r->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
  state.counters["ratio"] = static_cast<double>(in.size()) / static_cast<double>(out_size);
}
BENCHMARK(BM_PrepareUncompressedToJpegLs)->Unit(benchmark::kMillisecond);

void BM_PrepareJpegLsToExplicitLittleEndian(benchmark::State& state) {
  const std::vector<uint8_t>& ct = CtSlice();
  if (ct.empty()) return state.SkipWithError("cannot load the CT slice");
  auto jls = relais::router::PrepareDataset(ct, relais::router::kImplicitVrLittleEndian, kJpegLsLossless, {});
  if (!jls.ok()) return state.SkipWithError(jls.status().ToString().c_str());
  const std::vector<uint8_t>& in = *jls;
  for (auto _ : state) {
    auto r = relais::router::PrepareDataset(in, kJpegLsLossless, relais::router::kExplicitVrLittleEndian, {});
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    benchmark::DoNotOptimize(r->data());
  }
  // Counted as the uncompressed size, so both directions compare in image MB/s.
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * ct.size()));
}
BENCHMARK(BM_PrepareJpegLsToExplicitLittleEndian)->Unit(benchmark::kMillisecond);

// Syntax change without a codec: implicit to explicit VR little endian.
void BM_PrepareImplicitToExplicit(benchmark::State& state) {
  const std::vector<uint8_t>& in = CtSlice();
  if (in.empty()) return state.SkipWithError("cannot load the CT slice");
  for (auto _ : state) {
    auto r = relais::router::PrepareDataset(in, relais::router::kImplicitVrLittleEndian,
                                            relais::router::kExplicitVrLittleEndian, {});
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    benchmark::DoNotOptimize(r->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_PrepareImplicitToExplicit)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
