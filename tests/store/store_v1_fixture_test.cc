// A store of format version 1, written by the Relais of commit 5ed3fe7
// (tests/store/fixtures/v1), read by today's code; and shuffled chunks
// written through ObjectWriter::SetPixelLayout.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "store/lmdb_env.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {
using testing::CtLikeBytes;
using testing::MakeMeta;
using testing::ReadAll;
using testing::TempDir;
using testing::TestOptions;

struct Expected {
  std::string uid;
  uint64_t raw_size;
  uint64_t xxh3;
};

std::vector<Expected> ReadManifest() {
  std::ifstream in(std::string(RELAIS_SOURCE_DIR) + "/tests/store/fixtures/v1/MANIFEST.tsv");
  std::vector<Expected> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Expected e;
    std::string size, hash;
    std::getline(fields, e.uid, '\t');
    std::getline(fields, size, '\t');
    std::getline(fields, hash, '\t');
    e.raw_size = std::stoull(size);
    e.xxh3 = std::stoull(hash, nullptr, 16);
    out.push_back(e);
  }
  return out;
}

// A copy of the fixture in a temp dir (opening writes lock.mdb).
std::string CopyFixture(const TempDir& dir) {
  std::filesystem::copy_file(std::string(RELAIS_SOURCE_DIR) + "/tests/store/fixtures/v1/data.mdb", dir.Sub("data.mdb"));
  return dir.path();
}

uint32_t OnDiskVersion(const std::string& path) {
  LmdbEnv env;
  EXPECT_TRUE(env.Open(path, 0, true).ok());
  return env.format_version();
}

void ExpectEveryObjectExact(const Store& store, const std::vector<Expected>& expected) {
  for (const Expected& e : expected) {
    Result<ObjectMeta> m = store.Find(e.uid);
    ASSERT_TRUE(m.ok()) << e.uid << ": " << m.status().ToString();
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(ReadAll(store, m->id, &bytes).ok()) << e.uid;
    EXPECT_EQ(bytes.size(), e.raw_size) << e.uid;
    EXPECT_EQ(XXH3_64bits(bytes.data(), bytes.size()), e.xxh3) << e.uid;
  }
}

TEST(StoreFormatV1Test, ReadOnlyOpenReadsEveryObjectExactAndChangesNothing) {
  std::vector<Expected> expected = ReadManifest();
  ASSERT_EQ(expected.size(), 5u);
  TempDir dir;
  std::string path = CopyFixture(dir);
  {
    Options o = TestOptions(path);
    o.read_only = true;
    auto store = Store::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ExpectEveryObjectExact(**store, expected);
    auto report = (*store)->Verify(nullptr);
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->problem_count, 0u);
  }
  EXPECT_EQ(OnDiskVersion(path), 1u);
}

TEST(StoreFormatV1Test, ServingOpenUpgradesTheMarkerThenWritesShuffledChunks) {
  std::vector<Expected> expected = ReadManifest();
  TempDir dir;
  std::string path = CopyFixture(dir);
  std::vector<uint8_t> image = CtLikeBytes(100001, 11);
  {
    Options o = TestOptions(path);
    o.chunk_size = 16 << 10;
    auto store = Store::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ(OnDiskVersion(path), 2u);
    ExpectEveryObjectExact(**store, expected);
    // A new object with a header of 1001 bytes and 16-bit pixels after it.
    auto writer = (*store)->NewObject();
    writer->SetPixelLayout(1001, 2);
    writer->Append(image);
    std::promise<Status> p;
    writer->Finish(MakeMeta("1.2.826.0.1.3680043.10.1.99"), [&p](Status s, const ObjectMeta&) { p.set_value(s); });
    ASSERT_TRUE(p.get_future().get().ok());
  }
  // An admin open of the upgraded store reads old and new objects.
  Options o = TestOptions(path);
  o.admin = true;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  expected.push_back({"1.2.826.0.1.3680043.10.1.99", image.size(), XXH3_64bits(image.data(), image.size())});
  ExpectEveryObjectExact(**store, expected);
  auto report = (*store)->Verify(nullptr);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->problem_count, 0u);
}

// Every chunk of an object with a pixel layout decodes to its bytes,
// whatever the pixel start and the pieces it arrived in; chunks past the
// header are shuffled, those wholly before it are not.
TEST(PixelLayoutTest, ObjectsRoundTripWithEveryPixelStartAndChunkBoundary) {
  TempDir dir;
  Options o = TestOptions(dir.path());
  o.chunk_size = 4096;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok());
  int n = 0;
  for (uint64_t pixel : {0ull, 1ull, 4095ull, 4096ull, 4097ull, 10000ull, 30000ull, 40000ull}) {
    for (uint32_t sample : {2u, 4u, 1u, 3u}) {
      std::vector<uint8_t> data = CtLikeBytes(30001 + n, 100 + n);
      auto writer = (*store)->NewObject();
      writer->SetPixelLayout(pixel, sample);
      for (size_t pos = 0; pos < data.size(); pos += 1237) {
        writer->Append(std::span<const uint8_t>(data.data() + pos, std::min<size_t>(1237, data.size() - pos)));
      }
      std::promise<ObjectMeta> p;
      writer->Finish(MakeMeta("1.2.3." + std::to_string(++n)), [&p](Status s, const ObjectMeta& m) {
        EXPECT_TRUE(s.ok()) << s.ToString();
        p.set_value(m);
      });
      ObjectMeta m = p.get_future().get();
      std::vector<uint8_t> back;
      ASSERT_TRUE(ReadAll(**store, m.id, &back).ok()) << pixel << " " << sample;
      EXPECT_EQ(back, data) << pixel << " " << sample;
    }
  }
}

}  // namespace
}  // namespace relais::store
