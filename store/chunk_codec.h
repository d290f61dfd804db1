// Encoding of one chunk value of the `chunks` database (FORMAT.md):
//   byte 0     flag: 0 = raw, 1 = one zstd frame, 2 = byte-shuffled samples
//              in one zstd frame (format version 2)
//   bytes 1..  payload
// Internal to store/.
#ifndef RELAIS_STORE_CHUNK_CODEC_H_
#define RELAIS_STORE_CHUNK_CODEC_H_

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

typedef struct ZSTD_CCtx_s ZSTD_CCtx;

namespace relais::store {

enum class ChunkFlag : uint8_t { kRaw = 0, kZstd = 1, kShuffleZstd = 2 };

// A chunk is stored raw unless zstd saves at least 1/kMinSavingDenominator
// (about 3%) of it: JPEG and other compressed pixel data do not compress,
// and decompressing them would be wasted time on every read.
inline constexpr size_t kMinSavingDenominator = 32;

// Bytes of a kShuffleZstd payload before its zstd frame: sample size (1)
// and start (u32 LE).
inline constexpr size_t kShuffleHeaderBytes = 5;

// The byte shuffle of one chunk (FORMAT.md "chunks"). The chunk's bytes
// [start, start + n * sample_bytes), n as many whole samples as fit, are
// regrouped by byte position: every sample's byte 0, then every byte 1, ...
// (as Blosc's shuffle). Bytes before `start` (the data set header, or the
// end of a sample cut by the previous chunk) and after the last whole
// sample are kept as they are. No shuffle when sample_bytes < 2.
struct ChunkFilter {
  uint8_t sample_bytes = 0;  // 0: none; 2, 4 or 8
  uint32_t start = 0;

  // The filter of chunk [chunk_begin, chunk_begin + chunk_size) of an object
  // whose pixel samples of `sample_bytes` start at `pixel_offset` (data set
  // bytes): none when the chunk ends at or before the pixels; otherwise the
  // start that keeps every sample whole and aligned to the pixel start.
  static ChunkFilter ForChunk(uint64_t chunk_begin, uint64_t chunk_size, uint64_t pixel_offset, uint32_t sample_bytes);
};

// True for the sample sizes a kShuffleZstd chunk may record.
inline bool ValidSampleBytes(uint32_t n) { return n == 2 || n == 4 || n == 8; }

// Shuffles / unshuffles `n` bytes from `src` to `dst` (not overlapping) as
// ChunkFilter says. Exposed for tests and benchmarks.
void ShuffleBytes(const uint8_t* src, uint8_t* dst, size_t n, ChunkFilter filter);
void UnshuffleBytes(const uint8_t* src, uint8_t* dst, size_t n, ChunkFilter filter);

// Owns a zstd compression context. Not thread-safe: one per thread.
class ChunkCompressor {
 public:
  // `level` 0 stores every chunk raw; negative levels are zstd's fast modes.
  explicit ChunkCompressor(int level);
  ~ChunkCompressor();
  ChunkCompressor(const ChunkCompressor&) = delete;
  ChunkCompressor& operator=(const ChunkCompressor&) = delete;

  // The level of the next Encode calls (the adaptive level changes it).
  void set_level(int level) { level_ = level; }
  int level() const { return level_; }

  // Returns the encoded value (flag byte + payload) for `raw`: kShuffleZstd
  // when `filter` shuffles and that saves enough, else kZstd when that
  // saves enough, else kRaw. `allow_shuffle` false (a store of format
  // version 1) never writes kShuffleZstd.
  std::vector<uint8_t> Encode(std::span<const uint8_t> raw, ChunkFilter filter = {}, bool allow_shuffle = true);

 private:
  // Compresses `src` into out[offset..] within budget; false when zstd needs more.
  bool Compress(std::span<const uint8_t> src, size_t budget, size_t offset, std::vector<uint8_t>* out);

  int level_;
  ZSTD_CCtx* cctx_ = nullptr;
  std::vector<uint8_t> scratch_;  // the shuffled chunk
};

// Decodes one stored chunk value into `out` (replacing its contents).
// `max_raw_size` bounds the decoded size (the store's chunk size for all but
// the last chunk); a larger declared size is Corruption, never allocated.
// Corruption on an unknown flag, a bad zstd frame, a size over the bound, or
// a kShuffleZstd header that is truncated, names another sample size or a
// start past the chunk's end.
Status DecodeChunk(std::span<const uint8_t> value, uint64_t max_raw_size, std::vector<uint8_t>* out);

}  // namespace relais::store

#endif  // RELAIS_STORE_CHUNK_CODEC_H_
