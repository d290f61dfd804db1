// Objects of every size shape come back byte-identical, with their metadata.
#include <gtest/gtest.h>

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

class RoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Store::Open(TestOptions(dir_.path()));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s.value());
  }

  void ExpectRoundTrip(const std::vector<uint8_t>& data, const std::string& uid, size_t piece = 7919) {
    ObjectMeta in = MakeMeta(uid);
    testing::PutResult r = PutObject(*store_, in, data, piece);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_GT(r.meta.id, 0u);
    EXPECT_EQ(r.meta.raw_size, data.size());
    size_t chunk = TestOptions("").chunk_size;
    EXPECT_EQ(r.meta.chunk_count, (data.size() + chunk - 1) / chunk);

    auto found = store_->Find(uid);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_EQ(found->id, r.meta.id);
    EXPECT_EQ(found->checksum, r.meta.checksum);
    EXPECT_EQ(found->stored_size, r.meta.stored_size);
    EXPECT_EQ(found->sop_class_uid, in.sop_class_uid);
    EXPECT_EQ(found->patient_id, in.patient_id);
    EXPECT_EQ(found->transfer_syntax_uid, in.transfer_syntax_uid);
    EXPECT_EQ(found->calling_ae, in.calling_ae);
    EXPECT_EQ(found->peer_address, in.peer_address);
    EXPECT_NE(found->received_unix_ms, 0);

    std::vector<uint8_t> out;
    Status s = ReadAll(*store_, r.meta.id, &out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(out, data);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(RoundTripTest, SmallObject) { ExpectRoundTrip(RandomBytes(1000, 1), "1.2.3.1"); }

TEST_F(RoundTripTest, EmptyObjectHasNoChunks) {
  ExpectRoundTrip({}, "1.2.3.2");
  EXPECT_EQ(store_->Find("1.2.3.2")->chunk_count, 0u);
}

TEST_F(RoundTripTest, ExactlyOneChunk) { ExpectRoundTrip(RandomBytes(64 << 10, 2), "1.2.3.3"); }

TEST_F(RoundTripTest, OneByteOverAChunkBoundary) { ExpectRoundTrip(RandomBytes((64 << 10) + 1, 3), "1.2.3.4"); }

TEST_F(RoundTripTest, OneByteUnderTwoChunks) { ExpectRoundTrip(RandomBytes((128 << 10) - 1, 4), "1.2.3.5"); }

TEST_F(RoundTripTest, AppendedOneByteAtATime) { ExpectRoundTrip(RandomBytes(70000, 5), "1.2.3.6", 1); }

TEST_F(RoundTripTest, AppendedInPiecesLargerThanAChunk) { ExpectRoundTrip(RandomBytes(300000, 6), "1.2.3.7", 200000); }

TEST_F(RoundTripTest, MultiChunkRandomAndCompressible) {
  std::vector<uint8_t> data = RandomBytes(5 << 20, 7);
  std::vector<uint8_t> ct = CtLikeBytes(5 << 20, 8);
  ExpectRoundTrip(data, "1.2.3.8");
  ExpectRoundTrip(ct, "1.2.3.9");
  auto random_meta = store_->Find("1.2.3.8");
  auto ct_meta = store_->Find("1.2.3.9");
  // Random bytes are stored raw: one flag byte per chunk of overhead.
  EXPECT_EQ(random_meta->stored_size, random_meta->raw_size + random_meta->chunk_count);
  EXPECT_LT(ct_meta->stored_size, ct_meta->raw_size * 3 / 4);
  Store::Stats st = store_->GetStats();
  EXPECT_EQ(st.objects, 2u);
  EXPECT_EQ(st.raw_bytes, 10u << 20);
  EXPECT_EQ(st.stored_bytes, random_meta->stored_size + ct_meta->stored_size);
  EXPECT_GT(st.map_used_bytes, st.stored_bytes / 2);
  EXPECT_EQ(st.map_size, 256u << 20);
}

TEST_F(RoundTripTest, UncompressedLevelStoresRaw) {
  store_.reset();
  Options o = TestOptions(dir_.path());
  o.compression_level = 0;
  store_ = std::move(Store::Open(o).value());
  std::vector<uint8_t> zeros(200000, 0);
  ExpectRoundTrip(zeros, "1.2.3.10");
  auto m = store_->Find("1.2.3.10");
  EXPECT_EQ(m->stored_size, m->raw_size + m->chunk_count);
}

TEST_F(RoundTripTest, ListIsInIdOrderAndStopsEarly) {
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(PutObject(*store_, MakeMeta("1.9." + std::to_string(i)), RandomBytes(10, i)).status.ok());
  std::vector<uint64_t> ids;
  ASSERT_TRUE(store_
                  ->List([&](const ObjectMeta& m) {
                    ids.push_back(m.id);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  int seen = 0;
  ASSERT_TRUE(store_->List([&](const ObjectMeta&) { return ++seen < 2; }).ok());
  EXPECT_EQ(seen, 2);
}

TEST_F(RoundTripTest, SurvivesReopenAndIdsKeepIncreasing) {
  auto first = PutObject(*store_, MakeMeta("1.2.3.11"), RandomBytes(100000, 11));
  ASSERT_TRUE(first.status.ok());
  store_.reset();
  store_ = std::move(Store::Open(TestOptions(dir_.path())).value());
  std::vector<uint8_t> out;
  ASSERT_TRUE(ReadAll(*store_, first.meta.id, &out).ok());
  EXPECT_EQ(out, RandomBytes(100000, 11));
  auto second = PutObject(*store_, MakeMeta("1.2.3.12"), RandomBytes(10, 12));
  EXPECT_GT(second.meta.id, first.meta.id);
  EXPECT_EQ(store_->GetStats().raw_bytes, 100010u);
}

TEST_F(RoundTripTest, MissingObjectsAreNotFound) {
  EXPECT_TRUE(store_->Find("9.9.9").status().IsNotFound());
  std::vector<uint8_t> out;
  EXPECT_TRUE(ReadAll(*store_, 12345, &out).IsNotFound());
  EXPECT_TRUE(store_->ExportPart10("9.9.9", dir_.Sub("x.dcm")).IsNotFound());
}

TEST_F(RoundTripTest, SinkErrorStopsTheRead) {
  auto r = PutObject(*store_, MakeMeta("1.2.3.13"), RandomBytes(200000, 13));
  int calls = 0;
  Status s = store_->ReadObject(r.meta.id, [&](std::span<const uint8_t>) {
    ++calls;
    return Status::Unavailable("peer gone");
  });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(calls, 1);
}

TEST_F(RoundTripTest, EmptyUidIsRefused) {
  auto r = PutObject(*store_, MakeMeta(""), RandomBytes(100000, 14));
  EXPECT_EQ(r.status.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store_->GetStats().objects, 0u);
}

}  // namespace
}  // namespace relais::store
