#include "store/meta_codec.h"

#include <string>

#include "store/lmdb_env.h"

namespace relais::store {
namespace {

// The strings of record version 1, in order.
std::string ObjectMeta::*const kStrings[] = {
    &ObjectMeta::sop_class_uid,       &ObjectMeta::sop_instance_uid, &ObjectMeta::study_instance_uid,
    &ObjectMeta::series_instance_uid, &ObjectMeta::patient_id,       &ObjectMeta::modality,
    &ObjectMeta::transfer_syntax_uid, &ObjectMeta::calling_ae,       &ObjectMeta::called_ae,
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

void AppendString(std::vector<uint8_t>* out, const std::string& s) {
  AppendLe32(out, static_cast<uint32_t>(s.size()));
  out->insert(out->end(), s.begin(), s.end());
}

// Reads a length-prefixed string at *pos; never allocates past the record.
Status ReadString(std::span<const uint8_t> b, size_t* pos, std::string* out) {
  if (b.size() - *pos < 4) return Status::Corruption("object record truncated at a string length");
  uint32_t len = GetLe32(b.data() + *pos);
  *pos += 4;
  if (len > b.size() - *pos) return Status::Corruption("object record string runs past the end");
  out->assign(reinterpret_cast<const char*>(b.data() + *pos), len);
  *pos += len;
  return Status::OK();
}

Status ReadCount(std::span<const uint8_t> b, size_t* pos, uint32_t* n) {
  if (b.size() - *pos < 4) return Status::Corruption("object record truncated at a count");
  *n = GetLe32(b.data() + *pos);
  *pos += 4;
  // Each element takes at least 4 bytes: a count larger than that is corrupt.
  if (*n > (b.size() - *pos) / 4) return Status::Corruption("object record count runs past the end");
  return Status::OK();
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
  // Optional routing section (FORMAT.md), present when routing was decided.
  if (!m.routing.empty() || !m.matched_rules.empty() || !m.routes.empty()) {
    out.push_back(kRoutingSectionMarker);
    AppendString(&out, m.routing);
    AppendLe32(&out, static_cast<uint32_t>(m.matched_rules.size()));
    for (const std::string& r : m.matched_rules) AppendString(&out, r);
    AppendLe32(&out, static_cast<uint32_t>(m.routes.size()));
    for (const Route& r : m.routes) {
      AppendString(&out, r.destination);
      AppendLe32(&out, static_cast<uint32_t>(r.priority));
      AppendString(&out, r.rule);
      AppendString(&out, r.edits);
    }
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
  if (pos < b.size() && b[pos] == kRoutingSectionMarker) {
    ++pos;
    RELAIS_RETURN_IF_ERROR(ReadString(b, &pos, &out.routing));
    uint32_t n = 0;
    RELAIS_RETURN_IF_ERROR(ReadCount(b, &pos, &n));
    out.matched_rules.resize(n);
    for (std::string& r : out.matched_rules) RELAIS_RETURN_IF_ERROR(ReadString(b, &pos, &r));
    RELAIS_RETURN_IF_ERROR(ReadCount(b, &pos, &n));
    out.routes.resize(n);
    for (Route& r : out.routes) {
      RELAIS_RETURN_IF_ERROR(ReadString(b, &pos, &r.destination));
      if (b.size() - pos < 4) return Status::Corruption("object record truncated at a route priority");
      r.priority = static_cast<int32_t>(GetLe32(b.data() + pos));
      pos += 4;
      RELAIS_RETURN_IF_ERROR(ReadString(b, &pos, &r.rule));
      RELAIS_RETURN_IF_ERROR(ReadString(b, &pos, &r.edits));
    }
  }
  *m = std::move(out);
  return Status::OK();
}

}  // namespace relais::store
