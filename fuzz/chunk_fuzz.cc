// libFuzzer target: stored chunk values (store/chunk_codec.h, FORMAT.md
// "chunks"). Any bytes decode to OK or Corruption, never a crash or an
// allocation past the bound; a value that decodes re-encodes (with the
// filter it names) to a value that decodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "store/chunk_codec.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace relais::store;
  constexpr uint64_t kBound = 1 << 20;
  std::vector<uint8_t> out;
  relais::Status s = DecodeChunk(std::span<const uint8_t>(data, size), kBound, &out);
  if (!s.ok()) {
    Check(s.code() == relais::Status::Code::kCorruption);
    return 0;
  }
  Check(out.size() <= kBound);
  ChunkFilter f;
  if (size >= 1 + kShuffleHeaderBytes && data[0] == static_cast<uint8_t>(ChunkFlag::kShuffleZstd)) {
    f.sample_bytes = data[1];
    f.start = data[2] | data[3] << 8 | data[4] << 16 | static_cast<uint32_t>(data[5]) << 24;
  }
  static ChunkCompressor compressor(1);
  std::vector<uint8_t> again = compressor.Encode(out, f);
  std::vector<uint8_t> back;
  Check(DecodeChunk(again, kBound, &back).ok());
  Check(back == out);
  return 0;
}
