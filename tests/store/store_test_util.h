// Helpers shared by the store tests: temp dirs, generated contents, and
// synchronous put/read wrappers.
#ifndef RELAIS_TESTS_STORE_STORE_TEST_UTIL_H_
#define RELAIS_TESTS_STORE_STORE_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "store/store.h"

namespace relais::store::testing {

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "relais-store-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rng() >> 32);
  return out;
}

// 16-bit little-endian "CT" samples: a smooth field plus noise, so it
// compresses somewhat but not trivially.
inline std::vector<uint8_t> CtLikeBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i + 1 < n; i += 2) {
    size_t px = i / 2;
    int v = 1024 + static_cast<int>((px % 512) + (px / 512) % 512) / 2 + static_cast<int>(rng() % 24);
    out[i] = static_cast<uint8_t>(v);
    out[i + 1] = static_cast<uint8_t>(v >> 8);
  }
  return out;
}

inline ObjectMeta MakeMeta(const std::string& uid) {
  ObjectMeta m;
  m.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";  // CT Image Storage
  m.sop_instance_uid = uid;
  m.study_instance_uid = "1.2.3.4";
  m.series_instance_uid = "1.2.3.4.5";
  m.patient_id = "PAT001";
  m.modality = "CT";
  m.transfer_syntax_uid = "1.2.840.10008.1.2.1";  // Explicit VR Little Endian
  m.calling_ae = "CTSCAN1";
  m.called_ae = "RELAIS";
  m.peer_address = "127.0.0.1:40000";
  return m;
}

struct PutResult {
  Status status;
  ObjectMeta meta;
};

// Streams `data` in pieces of `piece` bytes, finishes and waits for `done`.
inline PutResult PutObject(Store& store, const ObjectMeta& meta, const std::vector<uint8_t>& data,
                           size_t piece = 7919) {
  auto writer = store.NewObject();
  for (size_t pos = 0; pos < data.size(); pos += piece) {
    size_t n = std::min(piece, data.size() - pos);
    writer->Append(std::span<const uint8_t>(data.data() + pos, n));
  }
  std::promise<PutResult> promise;
  auto future = promise.get_future();
  writer->Finish(meta, [&promise](Status s, const ObjectMeta& m) { promise.set_value({s, m}); });
  writer.reset();
  return future.get();
}

inline Status ReadAll(const Store& store, uint64_t id, std::vector<uint8_t>* out) {
  out->clear();
  return store.ReadObject(id, [out](std::span<const uint8_t> b) {
    out->insert(out->end(), b.begin(), b.end());
    return Status::OK();
  });
}

inline Options TestOptions(const std::string& path) {
  Options o;
  o.path = path;
  o.max_size = 256ull << 20;
  o.chunk_size = 64 << 10;
  return o;
}

// An object routed by two rules to "archive" (priority 0, no edits) and
// "telerad" (priority 10, one edit): two queue rows.
inline ObjectMeta RoutedMeta2(const std::string& uid) {
  ObjectMeta m = MakeMeta(uid);
  m.routing = "routed";
  m.matched_rules = {"r1", "r2"};
  m.routes = {Route{"archive", 0, "r1", ""}, Route{"telerad", 10, "r2", "remove (0010,0010)"}};
  return m;
}

// Store::UpdateQueue, waited for.
inline Status ApplyUpdates(Store& store, std::vector<QueueUpdate> updates) {
  std::promise<Status> p;
  auto f = p.get_future();
  store.UpdateQueue(std::move(updates), [&p](Status s) { p.set_value(s); });
  return f.get();
}

}  // namespace relais::store::testing

#endif  // RELAIS_TESTS_STORE_STORE_TEST_UTIL_H_
