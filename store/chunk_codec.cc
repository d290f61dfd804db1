#include "store/chunk_codec.h"

#include <zstd.h>

#include <cstring>
#include <string>

namespace relais::store {

ChunkCompressor::ChunkCompressor(int level) : level_(level) {
  if (level_ != 0) cctx_ = ZSTD_createCCtx();
}

ChunkCompressor::~ChunkCompressor() { ZSTD_freeCCtx(cctx_); }

std::vector<uint8_t> ChunkCompressor::Encode(std::span<const uint8_t> raw) {
  std::vector<uint8_t> out;
  if (cctx_ != nullptr && !raw.empty()) {
    // Only worth it when the output is at most raw - raw/32: give zstd exactly
    // that much room, and let it fail (dstSize_tooSmall) otherwise.
    size_t budget = raw.size() - raw.size() / kMinSavingDenominator;
    if (budget > 0 && budget < raw.size()) {
      out.resize(1 + budget);
      size_t n = ZSTD_compressCCtx(cctx_, out.data() + 1, budget, raw.data(), raw.size(), level_);
      if (!ZSTD_isError(n)) {
        out[0] = static_cast<uint8_t>(ChunkFlag::kZstd);
        out.resize(1 + n);
        out.shrink_to_fit();
        return out;
      }
    }
  }
  out.resize(1 + raw.size());
  out[0] = static_cast<uint8_t>(ChunkFlag::kRaw);
  if (!raw.empty()) std::memcpy(out.data() + 1, raw.data(), raw.size());
  return out;
}

Status DecodeChunk(std::span<const uint8_t> value, uint64_t max_raw_size, std::vector<uint8_t>* out) {
  if (value.empty()) return Status::Corruption("empty chunk value (no flag byte)");
  std::span<const uint8_t> payload = value.subspan(1);
  switch (static_cast<ChunkFlag>(value[0])) {
    case ChunkFlag::kRaw:
      if (payload.size() > max_raw_size) return Status::Corruption("raw chunk larger than the chunk size");
      out->assign(payload.begin(), payload.end());
      return Status::OK();
    case ChunkFlag::kZstd: {
      unsigned long long size = ZSTD_getFrameContentSize(payload.data(), payload.size());
      if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
        return Status::Corruption("zstd chunk has no valid frame header");
      }
      if (size > max_raw_size) {
        return Status::Corruption("zstd chunk declares " + std::to_string(size) + " bytes, more than the chunk size");
      }
      out->resize(size);
      size_t n = ZSTD_decompress(out->data(), out->size(), payload.data(), payload.size());
      if (ZSTD_isError(n)) return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(n));
      if (n != size) return Status::Corruption("zstd chunk shorter than its declared size");
      return Status::OK();
    }
  }
  return Status::Corruption("unknown chunk flag " + std::to_string(value[0]));
}

}  // namespace relais::store
