// Encoding of one chunk value of the `chunks` database (FORMAT.md):
//   byte 0     flag: 0 = raw, 1 = one zstd frame
//   bytes 1..  payload
// Internal to store/.
#ifndef RELAIS_STORE_CHUNK_CODEC_H_
#define RELAIS_STORE_CHUNK_CODEC_H_

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;

namespace relais::store {

enum class ChunkFlag : uint8_t { kRaw = 0, kZstd = 1 };

// A chunk is stored raw unless zstd saves at least 1/kMinSavingDenominator
// (about 3%) of it: JPEG and other compressed pixel data do not compress,
// and decompressing them would be wasted time on every read.
inline constexpr size_t kMinSavingDenominator = 32;

// Owns a zstd compression context. Not thread-safe: one per thread.
class ChunkCompressor {
 public:
  // `level` 0 stores every chunk raw; negative levels are zstd's fast modes.
  explicit ChunkCompressor(int level);
  ~ChunkCompressor();
  ChunkCompressor(const ChunkCompressor&) = delete;
  ChunkCompressor& operator=(const ChunkCompressor&) = delete;

  // Returns the encoded value (flag byte + payload) for `raw`.
  std::vector<uint8_t> Encode(std::span<const uint8_t> raw);

 private:
  int level_;
  ZSTD_CCtx* cctx_ = nullptr;
};

// Decodes one stored chunk value into `out` (replacing its contents).
// `max_raw_size` bounds the decoded size (the store's chunk size for all but
// the last chunk); a larger declared size is Corruption, never allocated.
// Corruption on an unknown flag, a bad zstd frame or a size over the bound.
Status DecodeChunk(std::span<const uint8_t> value, uint64_t max_raw_size, std::vector<uint8_t>* out);

}  // namespace relais::store

#endif  // RELAIS_STORE_CHUNK_CODEC_H_
