// On-disk format: the version check, the object record and chunk encodings,
// and corrupted chunks detected on read.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "store/chunk_codec.h"
#include "store/lmdb_env.h"
#include "store/meta_codec.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::CtLikeBytes;
using testing::MakeMeta;
using testing::PutObject;
using testing::RandomBytes;
using testing::ReadAll;
using testing::TempDir;
using testing::TestOptions;

void SetFormatVersion(const std::string& path, uint32_t version) {
  LmdbEnv env;
  ASSERT_TRUE(env.Open(path, 256 << 20, false).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, true).ok());
  uint8_t b[4];
  PutLe32(b, version);
  ASSERT_TRUE(
      txn.Put(env.dbis().meta, ToVal(std::string_view(kMetaFormatVersion)), ToVal(std::span<const uint8_t>(b))).ok());
  ASSERT_TRUE(txn.Commit().ok());
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(FormatVersionTest, FreshStoreRecordsVersion2) {
  TempDir dir;
  ASSERT_TRUE(Store::Open(TestOptions(dir.path())).ok());
  LmdbEnv env;
  ASSERT_TRUE(env.Open(dir.path(), 0, true).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, false).ok());
  std::span<const uint8_t> v;
  ASSERT_TRUE(txn.Get(env.dbis().meta, ToVal(std::string_view("format_version")), &v).ok());
  // u32 little-endian 2.
  EXPECT_EQ(std::vector<uint8_t>(v.begin(), v.end()), (std::vector<uint8_t>{0x02, 0x00, 0x00, 0x00}));
}

TEST(FormatVersionTest, NewerVersionIsRefusedNamingBoth) {
  TempDir dir;
  ASSERT_TRUE(Store::Open(TestOptions(dir.path())).ok());
  SetFormatVersion(dir.path(), 7);
  for (bool read_only : {false, true}) {
    Options o = TestOptions(dir.path());
    o.read_only = read_only;
    auto s = Store::Open(o);
    ASSERT_FALSE(s.ok());
    std::string msg = s.status().message();
    EXPECT_NE(msg.find("format version 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("format version 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("newer"), std::string::npos) << msg;
  }
}

// An upgrade that finds a store of an unknown older format refuses it, says
// so and what to do, and leaves it untouched.
TEST(FormatVersionTest, OlderVersionIsRefusedWithWhatToDo) {
  TempDir dir;
  ASSERT_TRUE(Store::Open(TestOptions(dir.path())).ok());
  SetFormatVersion(dir.path(), 0);
  std::string before = FileBytes(dir.path() + "/data.mdb");
  std::string msg;
  {
    auto s = Store::Open(TestOptions(dir.path()));
    ASSERT_FALSE(s.ok());
    msg = s.status().message();
  }
  EXPECT_NE(msg.find("format version 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no migration"), std::string::npos) << msg;
  EXPECT_NE(msg.find("move the store away"), std::string::npos) << msg;
  EXPECT_TRUE(FileBytes(dir.path() + "/data.mdb") == before) << "a refused store must be left as it was";
}

TEST(FormatVersionTest, ReadOnlyOpenOfMissingStoreIsNotFound) {
  TempDir dir;
  Options o = TestOptions(dir.Sub("nothing-here"));
  o.read_only = true;
  auto s = Store::Open(o);
  EXPECT_TRUE(s.status().IsNotFound()) << s.status().ToString();
}

TEST(MetaCodecTest, GoldenBytes) {
  ObjectMeta m;
  m.id = 0x0102;
  m.raw_size = 3;
  m.stored_size = 4;
  m.chunk_count = 1;
  m.received_unix_ms = -1;
  m.checksum = 0xAABB;
  m.sop_instance_uid = "1.2";
  m.modality = "CT";
  std::vector<uint8_t> b = EncodeMeta(m);
  std::vector<uint8_t> golden = {
      0x01,                                            // record version 1
      0x02, 0x01, 0,    0,    0,    0,    0,    0,     // id 0x0102, u64 LE
      0x03, 0,    0,    0,    0,    0,    0,    0,     // raw_size 3
      0x04, 0,    0,    0,    0,    0,    0,    0,     // stored_size 4
      0x01, 0,    0,    0,                             // chunk_count 1, u32 LE
      0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  // received_unix_ms -1, i64 LE
      0xBB, 0xAA, 0,    0,    0,    0,    0,    0,     // checksum 0xAABB
      0,    0,    0,    0,                             // sop_class_uid ""
      3,    0,    0,    0,    '1',  '.',  '2',         // sop_instance_uid "1.2"
      0,    0,    0,    0,                             // study_instance_uid
      0,    0,    0,    0,                             // series_instance_uid
      0,    0,    0,    0,                             // patient_id
      2,    0,    0,    0,    'C',  'T',               // modality "CT"
      0,    0,    0,    0,                             // transfer_syntax_uid
      0,    0,    0,    0,                             // calling_ae
      0,    0,    0,    0,                             // called_ae
      0,    0,    0,    0,                             // peer_address
  };
  EXPECT_EQ(b, golden);
  ObjectMeta back;
  ASSERT_TRUE(DecodeMeta(golden, &back).ok());
  EXPECT_EQ(back.id, 0x0102u);
  EXPECT_EQ(back.received_unix_ms, -1);
  EXPECT_EQ(back.checksum, 0xAABBu);
  EXPECT_EQ(back.sop_instance_uid, "1.2");
  EXPECT_EQ(back.modality, "CT");
}

TEST(MetaCodecTest, RoundTripsAllFieldsAndIgnoresTrailingBytes) {
  ObjectMeta m = MakeMeta("1.2.840.99");
  m.id = 42;
  m.raw_size = 1 << 30;
  m.checksum = ~0ull;
  std::vector<uint8_t> b = EncodeMeta(m);
  b.push_back(0x55);  // a field appended by a later minor change
  ObjectMeta back;
  ASSERT_TRUE(DecodeMeta(b, &back).ok());
  EXPECT_EQ(EncodeMeta(back), EncodeMeta(m));
}

TEST(MetaCodecTest, TruncationAtEveryOffsetIsCorruption) {
  std::vector<uint8_t> b = EncodeMeta(MakeMeta("1.2.840.99"));
  for (size_t n = 0; n < b.size(); ++n) {
    ObjectMeta m;
    Status s = DecodeMeta(std::span<const uint8_t>(b.data(), n), &m);
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << "at " << n;
  }
}

TEST(MetaCodecTest, OversizedStringLengthAndUnknownVersion) {
  std::vector<uint8_t> b = EncodeMeta(ObjectMeta{});
  // First string length (right after the 45 fixed bytes) set to 0xFFFFFFFF.
  b[45] = b[46] = b[47] = b[48] = 0xFF;
  ObjectMeta m;
  EXPECT_EQ(DecodeMeta(b, &m).code(), Status::Code::kCorruption);
  b = EncodeMeta(ObjectMeta{});
  b[0] = 2;
  EXPECT_EQ(DecodeMeta(b, &m).code(), Status::Code::kCorruption);
}

TEST(ChunkCodecTest, IncompressibleIsRawCompressibleIsZstd) {
  ChunkCompressor c(1);
  std::vector<uint8_t> random = RandomBytes(100000, 1);
  std::vector<uint8_t> enc = c.Encode(random);
  EXPECT_EQ(enc[0], 0);  // raw
  EXPECT_EQ(enc.size(), random.size() + 1);
  std::vector<uint8_t> ct = CtLikeBytes(100000, 2);
  enc = c.Encode(ct);
  EXPECT_EQ(enc[0], 1);  // zstd
  EXPECT_LT(enc.size(), ct.size());
  std::vector<uint8_t> out;
  ASSERT_TRUE(DecodeChunk(enc, ct.size(), &out).ok());
  EXPECT_EQ(out, ct);
}

TEST(ChunkCodecTest, BadValuesAreCorruption) {
  ChunkCompressor c(3);
  std::vector<uint8_t> enc = c.Encode(CtLikeBytes(50000, 3));
  ASSERT_EQ(enc[0], 1);
  std::vector<uint8_t> out;
  // Truncated at every offset (sampled), never a crash.
  for (size_t n = 0; n < enc.size(); n += (n < 64 ? 1 : 97)) {
    EXPECT_EQ(DecodeChunk(std::span<const uint8_t>(enc.data(), n), 50000, &out).code(), Status::Code::kCorruption) << n;
  }
  // A frame declaring more than the bound is refused before allocating.
  EXPECT_EQ(DecodeChunk(enc, 1000, &out).code(), Status::Code::kCorruption);
  std::vector<uint8_t> unknown = {7, 1, 2};
  EXPECT_EQ(DecodeChunk(unknown, 100, &out).code(), Status::Code::kCorruption);
  std::vector<uint8_t> raw_too_big = {0, 1, 2, 3};
  EXPECT_EQ(DecodeChunk(raw_too_big, 2, &out).code(), Status::Code::kCorruption);
}

// Overwrites chunk `index` of object `id` with `mutate(old value)`.
template <typename F>
void MutateChunk(const std::string& path, uint64_t id, uint32_t index, F mutate) {
  LmdbEnv env;
  ASSERT_TRUE(env.Open(path, 256 << 20, false).ok());
  Txn txn;
  ASSERT_TRUE(txn.Begin(env, true).ok());
  ChunkKey key(id, index);
  std::span<const uint8_t> v;
  ASSERT_TRUE(txn.Get(env.dbis().chunks, key.val(), &v).ok());
  std::vector<uint8_t> value(v.begin(), v.end());
  mutate(value);
  ASSERT_TRUE(txn.Put(env.dbis().chunks, key.val(), ToVal(value)).ok());
  ASSERT_TRUE(txn.Commit().ok());
}

TEST(CorruptionTest, FlippedByteInRawChunkFailsTheChecksum) {
  TempDir dir;
  uint64_t id;
  {
    auto store = std::move(Store::Open(TestOptions(dir.path())).value());
    id = PutObject(*store, MakeMeta("1.1"), RandomBytes(150000, 1)).meta.id;
  }
  MutateChunk(dir.path(), id, 1, [](std::vector<uint8_t>& v) {
    ASSERT_EQ(v[0], 0);
    v[100] ^= 0x01;
  });
  auto store = std::move(Store::Open(TestOptions(dir.path())).value());
  std::vector<uint8_t> out;
  Status s = ReadAll(*store, id, &out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("checksum"), std::string::npos);
}

TEST(CorruptionTest, DamagedZstdChunkAndMissingChunk) {
  TempDir dir;
  uint64_t id;
  {
    auto store = std::move(Store::Open(TestOptions(dir.path())).value());
    id = PutObject(*store, MakeMeta("1.1"), CtLikeBytes(200000, 1)).meta.id;
  }
  MutateChunk(dir.path(), id, 2, [](std::vector<uint8_t>& v) {
    ASSERT_EQ(v[0], 1);
    for (size_t i = v.size() / 2; i < v.size(); ++i) v[i] ^= 0x5A;
  });
  auto store = std::move(Store::Open(TestOptions(dir.path())).value());
  std::vector<uint8_t> out;
  EXPECT_EQ(ReadAll(*store, id, &out).code(), Status::Code::kCorruption);
  store.reset();
  {
    LmdbEnv env;
    ASSERT_TRUE(env.Open(dir.path(), 256 << 20, false).ok());
    Txn txn;
    ASSERT_TRUE(txn.Begin(env, true).ok());
    ChunkKey key(id, 1);
    ASSERT_TRUE(txn.Del(env.dbis().chunks, key.val()).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  store = std::move(Store::Open(TestOptions(dir.path())).value());
  Status s = ReadAll(*store, id, &out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("chunk 1 missing"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace relais::store
