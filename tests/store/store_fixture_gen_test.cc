// Writes tests/store/fixtures/v1 (a store of format version 1) when run with
// RELAIS_WRITE_V1_FIXTURE=DIR and RELAIS_FIXTURE_INPUTS=DIR (the data sets,
// Part 10 file meta stripped). Run once at commit 5ed3fe7, the last code that
// wrote format version 1; kept in the history, not in the tree.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {
using testing::CtLikeBytes;
using testing::MakeMeta;
using testing::PutObject;
using testing::RandomBytes;

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(FixtureGen, WriteV1Store) {
  const char* out = std::getenv("RELAIS_WRITE_V1_FIXTURE");
  const char* in = std::getenv("RELAIS_FIXTURE_INPUTS");
  if (out == nullptr || in == nullptr) GTEST_SKIP() << "generator only";
  Options o;
  o.path = out;
  o.max_size = 16ull << 20;
  o.chunk_size = 16 << 10;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().message();
  std::ofstream manifest(std::string(out) + "/MANIFEST.tsv");
  manifest << "sop_instance_uid\traw_size\txxh3\twhat\n";
  auto put = [&](const std::string& uid, const std::string& ts, const std::vector<uint8_t>& data,
                 const std::string& what) {
    ObjectMeta m = MakeMeta(uid);
    m.transfer_syntax_uid = ts;
    auto r = PutObject(**store, m, data);
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits(data.data(), data.size())));
    manifest << uid << "\t" << data.size() << "\t" << hex << "\t" << what << "\n";
  };
  put("1.2.826.0.1.3680043.10.1.1", "1.2.840.10008.1.2", ReadFile(std::string(in) + "/mr01.ds"),
      "corpus dcm4che__MR01.dcm data set (16-bit MR, implicit VR LE), zstd chunks");
  put("1.2.826.0.1.3680043.10.1.2", "1.2.840.10008.1.2.1", ReadFile(std::string(in) + "/ct16.ds"),
      "corpus pydicom__77654033_CT2_17106.dcm data set (16x16 CT), one chunk");
  put("1.2.826.0.1.3680043.10.1.3", "1.2.840.10008.1.2.1", CtLikeBytes(40000, 7), "generated 16-bit samples");
  put("1.2.826.0.1.3680043.10.1.4", "1.2.840.10008.1.2.4.70", RandomBytes(20000, 9), "random bytes: raw chunks");
  put("1.2.826.0.1.3680043.10.1.5", "1.2.840.10008.1.2.1", {}, "empty object, no chunks");
}

}  // namespace
}  // namespace relais::store
