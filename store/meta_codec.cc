#include "store/meta_codec.h"

#include <string>

#include "store/lmdb_env.h"

namespace relais::store {
namespace {

// The strings of record version 1, in order.
std::string ObjectMeta::*const kStrings[] = {
    &ObjectMeta::sop_class_uid,  &ObjectMeta::sop_instance_uid, &ObjectMeta::study_instance_uid,
    &ObjectMeta::series_instance_uid, &ObjectMeta::patient_id, &ObjectMeta::modality,
    &ObjectMeta::transfer_syntax_uid, &ObjectMeta::calling_ae, &ObjectMeta::called_ae,
    &ObjectMeta::peer_address,
};

constexpr size_t kFixedSize = 1 + 8 + 8 + 8 + 4 + 8 + 8;

void AppendLe64(std::vector<uint8_t>* out, uint64_t v) {
  uint8_t b[8];
  PutLe64(b, v);
  out->insert(out->end(), b, b + 8);
}
void AppendLe32(std::vector<uint8_t>* out, uint32_t v) {
  uint8_t b[4];
  PutLe32(b, v);
  out->insert(out->end(), b, b + 4);
}

}  // namespace

std::vector<uint8_t> EncodeMeta(const ObjectMeta& m) {
  std::vector<uint8_t> out;
  size_t size = kFixedSize;
  for (auto field : kStrings) size += 4 + (m.*field).size();
  out.reserve(size);
  out.push_back(kMetaRecordVersion);
  AppendLe64(&out, m.id);
  AppendLe64(&out, m.raw_size);
  AppendLe64(&out, m.stored_size);
  AppendLe32(&out, m.chunk_count);
  AppendLe64(&out, static_cast<uint64_t>(m.received_unix_ms));
  AppendLe64(&out, m.checksum);
  for (auto field : kStrings) {
    const std::string& s = m.*field;
    AppendLe32(&out, static_cast<uint32_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}

Status DecodeMeta(std::span<const uint8_t> b, ObjectMeta* m) {
  if (b.empty()) return Status::Corruption("empty object record");
  if (b[0] != kMetaRecordVersion) {
    return Status::Corruption("unknown object record version " + std::to_string(b[0]));
  }
  if (b.size() < kFixedSize) return Status::Corruption("object record truncated in its fixed fields");
  const uint8_t* p = b.data() + 1;
  ObjectMeta out;
  out.id = GetLe64(p);
  out.raw_size = GetLe64(p + 8);
  out.stored_size = GetLe64(p + 16);
  out.chunk_count = GetLe32(p + 24);
  out.received_unix_ms = static_cast<int64_t>(GetLe64(p + 28));
  out.checksum = GetLe64(p + 36);
  size_t pos = kFixedSize;
  for (auto field : kStrings) {
    if (b.size() - pos < 4) return Status::Corruption("object record truncated at a string length");
    uint32_t len = GetLe32(b.data() + pos);
    pos += 4;
    // Compare against what is left, never allocate the declared length first.
    if (len > b.size() - pos) return Status::Corruption("object record string runs past the end");
    (out.*field).assign(reinterpret_cast<const char*>(b.data() + pos), len);
    pos += len;
  }
  *m = std::move(out);
  return Status::OK();
}

}  // namespace relais::store
