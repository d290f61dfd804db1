// The pixel-aware chunk codec (FORMAT.md "chunks", flag 2) and the adaptive
// compression level policy.
#include <gtest/gtest.h>

#include <algorithm>

#include "store/chunk_codec.h"
#include "store/compression_level.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {
using testing::CtLikeBytes;
using testing::RandomBytes;

std::vector<uint8_t> Decode(const std::vector<uint8_t>& enc, uint64_t bound) {
  std::vector<uint8_t> out;
  Status s = DecodeChunk(enc, bound, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(ChunkFilterTest, ShuffleGroupsBytesByPositionAndKeepsHeadAndTail) {
  // 3 header bytes, 3 samples of 2 bytes, 1 trailing byte.
  std::vector<uint8_t> in = {'h', 'd', 'r', 0x10, 0x11, 0x20, 0x21, 0x30, 0x31, 't'};
  ChunkFilter f{2, 3};
  std::vector<uint8_t> out(in.size());
  ShuffleBytes(in.data(), out.data(), in.size(), f);
  EXPECT_EQ(out, (std::vector<uint8_t>{'h', 'd', 'r', 0x10, 0x20, 0x30, 0x11, 0x21, 0x31, 't'}));
  std::vector<uint8_t> back(in.size());
  UnshuffleBytes(out.data(), back.data(), out.size(), f);
  EXPECT_EQ(back, in);
}

// The vectorized 16-bit path must give exactly the bytes of the format's
// definition (FORMAT.md "chunks"): every sample's byte 0, then every byte 1.
// Sizes around the 16-sample step and a whole 256 KiB chunk.
TEST(ChunkFilterTest, ShuffleIsTheFormatsDefinitionAtEverySize) {
  for (uint8_t es : {2, 4, 8}) {
    for (size_t n : {0u, 1u, 31u, 32u, 33u, 63u, 64u, 65u, 100u, 1000u, 4097u, 262144u}) {
      for (uint32_t start : {0u, 1u, 3u, 17u}) {
        std::vector<uint8_t> in = RandomBytes(n, static_cast<uint32_t>(n * 7 + start + es));
        const size_t s = std::min<size_t>(start, n);
        const size_t count = (n - s) / es;
        std::vector<uint8_t> want = in;
        for (size_t i = 0; i < count; ++i) {
          for (size_t b = 0; b < es; ++b) want[s + b * count + i] = in[s + i * es + b];
        }
        std::vector<uint8_t> out(n), back(n);
        ShuffleBytes(in.data(), out.data(), n, ChunkFilter{es, start});
        ASSERT_EQ(out, want) << int{es} << " " << n << " " << start;
        UnshuffleBytes(out.data(), back.data(), n, ChunkFilter{es, start});
        ASSERT_EQ(back, in) << int{es} << " " << n << " " << start;
      }
    }
  }
}

TEST(ChunkFilterTest, ForChunkKeepsSamplesAlignedToThePixelStart) {
  // Pixels start at 1001 with 2-byte samples; chunks of 1000 bytes.
  EXPECT_EQ(ChunkFilter::ForChunk(0, 1000, 1001, 2).sample_bytes, 0);  // all header
  EXPECT_EQ(ChunkFilter::ForChunk(0, 1001, 1001, 2).sample_bytes, 0);  // ends where pixels start
  ChunkFilter straddle = ChunkFilter::ForChunk(1000, 1000, 1001, 2);
  EXPECT_EQ(straddle.sample_bytes, 2);
  EXPECT_EQ(straddle.start, 1u);
  // Chunk 2 begins at 2000: 999 pixel bytes before it, so its first byte
  // ends a sample: skip 1.
  EXPECT_EQ(ChunkFilter::ForChunk(2000, 1000, 1001, 2).start, 1u);
  EXPECT_EQ(ChunkFilter::ForChunk(3000, 1000, 1000, 4).start, 0u);
  EXPECT_EQ(ChunkFilter::ForChunk(3001, 1000, 1000, 4).start, 3u);
  EXPECT_EQ(ChunkFilter::ForChunk(3000, 1000, 1000, 3).sample_bytes, 0);  // not a shuffle size
}

TEST(ChunkCodecTest, EveryFilterRoundTripsAtOddSizesAndStarts) {
  ChunkCompressor c(1);
  for (uint8_t es : {0, 2, 4, 8}) {
    for (size_t n : {1u, 2u, 3u, 7u, 64u, 1001u, 65537u}) {
      for (uint32_t start : {0u, 1u, 5u, 999u, 70000u}) {
        std::vector<uint8_t> raw = CtLikeBytes(n, static_cast<uint32_t>(n + start));
        std::vector<uint8_t> enc = c.Encode(raw, ChunkFilter{es, start});
        EXPECT_EQ(Decode(enc, n), raw) << int{es} << " " << n << " " << start;
      }
    }
  }
}

TEST(ChunkCodecTest, ShuffledSixteenBitSamplesAreSmallerThanPlainZstd) {
  ChunkCompressor c(1);
  std::vector<uint8_t> ct = CtLikeBytes(256 << 10, 4);
  std::vector<uint8_t> plain = c.Encode(ct);
  std::vector<uint8_t> shuffled = c.Encode(ct, ChunkFilter{2, 0});
  EXPECT_EQ(plain[0], static_cast<uint8_t>(ChunkFlag::kZstd));
  ASSERT_EQ(shuffled[0], static_cast<uint8_t>(ChunkFlag::kShuffleZstd));
  EXPECT_EQ(shuffled[1], 2);
  EXPECT_LT(shuffled.size(), plain.size());
  EXPECT_EQ(Decode(shuffled, ct.size()), ct);
}

TEST(ChunkCodecTest, VersionOneStoresNeverGetShuffledChunks) {
  ChunkCompressor c(1);
  std::vector<uint8_t> ct = CtLikeBytes(50000, 5);
  EXPECT_EQ(c.Encode(ct, ChunkFilter{2, 0}, /*allow_shuffle=*/false)[0], static_cast<uint8_t>(ChunkFlag::kZstd));
}

TEST(ChunkCodecTest, IncompressibleShuffledChunkIsRawAndLevelZeroIsRaw) {
  ChunkCompressor c(1);
  std::vector<uint8_t> random = RandomBytes(50000, 6);
  std::vector<uint8_t> enc = c.Encode(random, ChunkFilter{2, 0});
  EXPECT_EQ(enc[0], static_cast<uint8_t>(ChunkFlag::kRaw));
  EXPECT_EQ(Decode(enc, random.size()), random);
  ChunkCompressor off(0);
  EXPECT_EQ(off.Encode(CtLikeBytes(5000, 7), ChunkFilter{2, 0})[0], static_cast<uint8_t>(ChunkFlag::kRaw));
}

TEST(ChunkCodecTest, NegativeLevelsRoundTrip) {
  ChunkCompressor c(-5);
  std::vector<uint8_t> ct = CtLikeBytes(100000, 8);
  std::vector<uint8_t> enc = c.Encode(ct, ChunkFilter{2, 1});
  EXPECT_EQ(enc[0], static_cast<uint8_t>(ChunkFlag::kShuffleZstd));
  EXPECT_EQ(Decode(enc, ct.size()), ct);
}

TEST(ChunkCodecTest, HostileShuffledValuesAreCorruption) {
  ChunkCompressor c(1);
  std::vector<uint8_t> ct = CtLikeBytes(40000, 9);
  std::vector<uint8_t> enc = c.Encode(ct, ChunkFilter{2, 3});
  ASSERT_EQ(enc[0], static_cast<uint8_t>(ChunkFlag::kShuffleZstd));
  std::vector<uint8_t> out;
  // Truncated anywhere (sampled): never a crash.
  for (size_t n = 0; n < enc.size(); n += (n < 64 ? 1 : 101)) {
    EXPECT_EQ(DecodeChunk(std::span<const uint8_t>(enc.data(), n), 40000, &out).code(), Status::Code::kCorruption) << n;
  }
  // Sample sizes other than 2, 4, 8.
  for (uint8_t es : {0, 1, 3, 5, 16, 255}) {
    std::vector<uint8_t> bad = enc;
    bad[1] = es;
    EXPECT_EQ(DecodeChunk(bad, 40000, &out).code(), Status::Code::kCorruption) << int{es};
  }
  // A start past the chunk's end.
  std::vector<uint8_t> far = enc;
  far[2] = far[3] = far[4] = far[5] = 0xFF;
  Status s = DecodeChunk(far, 40000, &out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("past its"), std::string::npos) << s.message();
  // A frame declaring more than the bound.
  EXPECT_EQ(DecodeChunk(enc, 39999, &out).code(), Status::Code::kCorruption);
  // Flipped bytes inside the frame: Corruption or other bytes, never a crash
  // (the object checksum catches the latter).
  for (size_t i = 6; i < enc.size(); i += 13) {
    std::vector<uint8_t> flipped = enc;
    flipped[i] ^= 0x5A;
    (void)DecodeChunk(flipped, 40000, &out);
  }
}

// Adaptive level policy: (state, waiting chunks, threads, bounds) -> state.
TEST(CompressionLevelTest, PolicyTable) {
  struct Row {
    int level;
    uint32_t idle;
    size_t waiting;
    int threads, min, max;
    int want_level;
    uint32_t want_idle;
  };
  const Row rows[] = {
      // behind intake (more than 2 per thread waiting): one step faster, at once
      {1, 5, 5, 2, -5, 3, -1, 0},  // 0 is skipped
      {3, 0, 9, 2, -5, 3, 2, 0},
      {-5, 0, 100, 2, -5, 3, -5, 0},  // at the floor
      {1, 0, 4, 2, -5, 3, 1, 0},      // exactly 2 per thread: keeps
      // some waiting: keeps, idle streak broken
      {2, 9, 1, 2, -5, 3, 2, 0},
      // nothing waiting: counts, then one step stronger
      {1, 0, 0, 2, -5, 3, 1, 1},
      {1, kIdleStepsUp - 1, 0, 2, -5, 3, 2, 0},
      {-1, kIdleStepsUp - 1, 0, 2, -5, 3, 1, 0},  // 0 is skipped
      {3, kIdleStepsUp - 1, 0, 2, -5, 3, 3, 0},   // at the ceiling
      // bounds that changed or a start outside them
      {7, 0, 1, 2, -5, 3, 3, 0},
      {-9, 0, 1, 2, -5, 3, -5, 0},
      {1, 0, 1, 2, 2, 6, 2, 0},
      {1, 0, 1, 2, -7, -2, -2, 0},
      // fixed by equal bounds
      {4, 0, 50, 2, 4, 4, 4, 0},
      {4, kIdleStepsUp - 1, 0, 2, 4, 4, 4, 0},
  };
  for (const Row& r : rows) {
    LevelState got = NextLevel(LevelState{r.level, r.idle}, r.waiting, r.threads, r.min, r.max);
    EXPECT_EQ(got.level, r.want_level) << r.level << " waiting " << r.waiting << " [" << r.min << "," << r.max << "]";
    EXPECT_EQ(got.idle, r.want_idle) << r.level << " waiting " << r.waiting;
  }
}

TEST(CompressionLevelTest, NeverZeroWithinBoundsThatHoldIt) {
  LevelState s{1, 0};
  for (int i = 0; i < 200; ++i) {
    s = NextLevel(s, (i / 20) % 2 == 0 ? 10 : 0, 2, -3, 3);
    EXPECT_NE(s.level, 0);
    EXPECT_GE(s.level, -3);
    EXPECT_LE(s.level, 3);
  }
}

}  // namespace
}  // namespace relais::store

namespace relais::store {
namespace {

// The adaptive level stays within its bounds and shows in Stats; a fixed
// level is reported as it is; objects read back exactly either way.
TEST(CompressionLevelTest, StoreReportsItsLevelWithinTheBounds) {
  for (bool adaptive : {true, false}) {
    testing::TempDir dir;
    Options o = testing::TestOptions(dir.path());
    o.compression_auto = adaptive;
    o.compression_level = adaptive ? 1 : 2;
    o.compression_level_min = -2;
    o.compression_level_max = 2;
    auto store = Store::Open(o);
    ASSERT_TRUE(store.ok());
    std::vector<uint8_t> data = CtLikeBytes(300000, 21);
    for (int i = 0; i < 20; ++i) {
      auto r = testing::PutObject(**store, testing::MakeMeta("1.2.9." + std::to_string(i)), data);
      ASSERT_TRUE(r.status.ok());
      std::vector<uint8_t> back;
      ASSERT_TRUE(testing::ReadAll(**store, r.meta.id, &back).ok());
      EXPECT_EQ(back, data);
    }
    int level = (*store)->GetStats().compression_level;
    if (adaptive) {
      EXPECT_GE(level, -2);
      EXPECT_LE(level, 2);
      EXPECT_NE(level, 0);
    } else {
      EXPECT_EQ(level, 2);
    }
  }
}

}  // namespace
}  // namespace relais::store
