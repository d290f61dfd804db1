#include "store/chunk_codec.h"

#include <zstd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstring>
#include <string>

namespace relais::store {
namespace {

// Samples of N bytes: dst[b * count + i] = src[i * N + b]. Written per N so
// that the compiler unrolls the inner loop; `__restrict` (the buffers never
// overlap) lets it vectorize.
template <size_t N>
void Shuffle(const uint8_t* __restrict src, uint8_t* __restrict dst, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    for (size_t b = 0; b < N; ++b) dst[b * count + i] = src[i * N + b];
  }
}

template <size_t N>
void Unshuffle(const uint8_t* __restrict src, uint8_t* __restrict dst, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    for (size_t b = 0; b < N; ++b) dst[i * N + b] = src[b * count + i];
  }
}

#if defined(__SSE2__)
// 16-bit samples, the common case (CT, MR, CR...), 16 samples per step with
// SSE2 (every x86-64 CPU has it): g++ -O2 left the loops above scalar, and
// the unshuffle alone then cost twice the zstd decompression of the chunk.
// The same bytes as Shuffle<2> / Unshuffle<2>, which do the remainder.
template <>
void Shuffle<2>(const uint8_t* __restrict src, uint8_t* __restrict dst, size_t count) {
  const __m128i low_bytes = _mm_set1_epi16(0x00FF);
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i + 16));
    __m128i lo = _mm_packus_epi16(_mm_and_si128(a, low_bytes), _mm_and_si128(b, low_bytes));
    __m128i hi = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + count + i), hi);
  }
  for (; i < count; ++i) {
    dst[i] = src[2 * i];
    dst[count + i] = src[2 * i + 1];
  }
}

template <>
void Unshuffle<2>(const uint8_t* __restrict src, uint8_t* __restrict dst, size_t count) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + count + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm_unpacklo_epi8(lo, hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i + 16), _mm_unpackhi_epi8(lo, hi));
  }
  for (; i < count; ++i) {
    dst[2 * i] = src[i];
    dst[2 * i + 1] = src[count + i];
  }
}
#endif

// Copies the unshuffled head and tail of the chunk and runs `body` on the
// samples in between.
template <typename Body>
void Filter(const uint8_t* src, uint8_t* dst, size_t n, ChunkFilter f, Body body) {
  size_t start = f.start < n ? f.start : n;
  size_t count = ValidSampleBytes(f.sample_bytes) ? (n - start) / f.sample_bytes : 0;
  size_t end = start + count * f.sample_bytes;
  if (start > 0) std::memcpy(dst, src, start);
  if (count > 0) body(src + start, dst + start, count);
  if (end < n) std::memcpy(dst + end, src + end, n - end);
}

}  // namespace

ChunkFilter ChunkFilter::ForChunk(uint64_t chunk_begin, uint64_t chunk_size, uint64_t pixel_offset,
                                  uint32_t sample_bytes) {
  ChunkFilter f;
  if (!ValidSampleBytes(sample_bytes) || chunk_begin + chunk_size <= pixel_offset) return f;
  f.sample_bytes = static_cast<uint8_t>(sample_bytes);
  if (pixel_offset >= chunk_begin) {
    f.start = static_cast<uint32_t>(pixel_offset - chunk_begin);
  } else {
    uint64_t phase = (chunk_begin - pixel_offset) % sample_bytes;
    f.start = static_cast<uint32_t>((sample_bytes - phase) % sample_bytes);
  }
  return f;
}

void ShuffleBytes(const uint8_t* src, uint8_t* dst, size_t n, ChunkFilter f) {
  Filter(src, dst, n, f, [&](const uint8_t* s, uint8_t* d, size_t count) {
    switch (f.sample_bytes) {
      case 2: return Shuffle<2>(s, d, count);
      case 4: return Shuffle<4>(s, d, count);
      default: return Shuffle<8>(s, d, count);
    }
  });
}

void UnshuffleBytes(const uint8_t* src, uint8_t* dst, size_t n, ChunkFilter f) {
  Filter(src, dst, n, f, [&](const uint8_t* s, uint8_t* d, size_t count) {
    switch (f.sample_bytes) {
      case 2: return Unshuffle<2>(s, d, count);
      case 4: return Unshuffle<4>(s, d, count);
      default: return Unshuffle<8>(s, d, count);
    }
  });
}

ChunkCompressor::ChunkCompressor(int level) : level_(level) {}

ChunkCompressor::~ChunkCompressor() { ZSTD_freeCCtx(cctx_); }

bool ChunkCompressor::Compress(std::span<const uint8_t> src, size_t budget, size_t offset, std::vector<uint8_t>* out) {
  if (cctx_ == nullptr) cctx_ = ZSTD_createCCtx();
  if (cctx_ == nullptr) return false;
  out->resize(offset + budget);
  size_t n = ZSTD_compressCCtx(cctx_, out->data() + offset, budget, src.data(), src.size(), level_);
  if (ZSTD_isError(n)) return false;
  out->resize(offset + n);
  out->shrink_to_fit();
  return true;
}

std::vector<uint8_t> ChunkCompressor::Encode(std::span<const uint8_t> raw, ChunkFilter filter, bool allow_shuffle) {
  std::vector<uint8_t> out;
  if (level_ != 0 && !raw.empty()) {
    // Only worth it when the value is at most raw - raw/32 bytes (flag and
    // filter header included): give zstd exactly that much room, and let it
    // fail (dstSize_tooSmall) otherwise.
    const size_t limit = raw.size() - raw.size() / kMinSavingDenominator;
    const bool shuffle = allow_shuffle && ValidSampleBytes(filter.sample_bytes) && filter.start < raw.size() &&
                         raw.size() - filter.start >= filter.sample_bytes;
    if (shuffle && limit > 1 + kShuffleHeaderBytes) {
      scratch_.resize(raw.size());
      ShuffleBytes(raw.data(), scratch_.data(), raw.size(), filter);
      if (Compress(scratch_, limit - 1 - kShuffleHeaderBytes, 1 + kShuffleHeaderBytes, &out)) {
        out[0] = static_cast<uint8_t>(ChunkFlag::kShuffleZstd);
        out[1] = filter.sample_bytes;
        for (int i = 0; i < 4; ++i) out[2 + i] = static_cast<uint8_t>(filter.start >> (8 * i));
        return out;
      }
    } else if (!shuffle && limit > 1 && Compress(raw, limit - 1, 1, &out)) {
      out[0] = static_cast<uint8_t>(ChunkFlag::kZstd);
      return out;
    }
  }
  out.resize(1 + raw.size());
  out[0] = static_cast<uint8_t>(ChunkFlag::kRaw);
  if (!raw.empty()) std::memcpy(out.data() + 1, raw.data(), raw.size());
  return out;
}

namespace {

// Decompresses one zstd frame of at most max_raw_size bytes into `out`.
Status DecompressFrame(std::span<const uint8_t> frame, uint64_t max_raw_size, std::vector<uint8_t>* out) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Status::Corruption("zstd chunk has no valid frame header");
  }
  if (size > max_raw_size) {
    return Status::Corruption("zstd chunk declares " + std::to_string(size) + " bytes, more than the chunk size");
  }
  out->resize(size);
  size_t n = ZSTD_decompress(out->data(), out->size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(n));
  if (n != size) return Status::Corruption("zstd chunk shorter than its declared size");
  return Status::OK();
}

}  // namespace

Status DecodeChunk(std::span<const uint8_t> value, uint64_t max_raw_size, std::vector<uint8_t>* out) {
  if (value.empty()) return Status::Corruption("empty chunk value (no flag byte)");
  std::span<const uint8_t> payload = value.subspan(1);
  switch (static_cast<ChunkFlag>(value[0])) {
    case ChunkFlag::kRaw:
      if (payload.size() > max_raw_size) return Status::Corruption("raw chunk larger than the chunk size");
      out->assign(payload.begin(), payload.end());
      return Status::OK();
    case ChunkFlag::kZstd: return DecompressFrame(payload, max_raw_size, out);
    case ChunkFlag::kShuffleZstd: {
      if (payload.size() < kShuffleHeaderBytes) return Status::Corruption("shuffled chunk shorter than its header");
      ChunkFilter f;
      f.sample_bytes = payload[0];
      for (int i = 0; i < 4; ++i) f.start |= static_cast<uint32_t>(payload[1 + i]) << (8 * i);
      if (!ValidSampleBytes(f.sample_bytes)) {
        return Status::Corruption("shuffled chunk names sample size " + std::to_string(f.sample_bytes) +
                                  " (2, 4 or 8 expected)");
      }
      thread_local std::vector<uint8_t> shuffled;
      RELAIS_RETURN_IF_ERROR(DecompressFrame(payload.subspan(kShuffleHeaderBytes), max_raw_size, &shuffled));
      if (f.start > shuffled.size()) {
        return Status::Corruption("shuffled chunk starts its samples at " + std::to_string(f.start) + ", past its " +
                                  std::to_string(shuffled.size()) + " bytes");
      }
      out->resize(shuffled.size());
      UnshuffleBytes(shuffled.data(), out->data(), shuffled.size(), f);
      return Status::OK();
    }
  }
  return Status::Corruption("unknown chunk flag " + std::to_string(value[0]));
}

}  // namespace relais::store
