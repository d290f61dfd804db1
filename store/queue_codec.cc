#include "store/queue_codec.h"

#include <cstring>

#include "store/lmdb_env.h"

namespace relais::store {
namespace {

uint32_t PriorityKey(int32_t priority) {
  // Highest priority first: invert the order of the (biased) value.
  return 0xFFFFFFFFu - (static_cast<uint32_t>(priority) ^ 0x80000000u);
}

int32_t PriorityFromKey(uint32_t k) { return static_cast<int32_t>((0xFFFFFFFFu - k) ^ 0x80000000u); }

}  // namespace

std::vector<uint8_t> EncodeQueueKey(const std::string& destination, int32_t priority, uint64_t object_id) {
  std::vector<uint8_t> k(destination.size() + 1 + 4 + 8);
  std::memcpy(k.data(), destination.data(), destination.size());
  size_t p = destination.size();
  k[p++] = 0;
  uint32_t pk = PriorityKey(priority);
  for (int i = 3; i >= 0; --i) k[p++] = static_cast<uint8_t>(pk >> (8 * i));
  PutBe64(k.data() + p, object_id);
  return k;
}

Status DecodeQueueKey(std::span<const uint8_t> key, QueueRow* row) {
  if (key.size() < 1 + 4 + 8) return Status::Corruption("queue key too short");
  size_t name_len = key.size() - 13;
  if (key[name_len] != 0) return Status::Corruption("queue key has no name terminator");
  row->destination.assign(reinterpret_cast<const char*>(key.data()), name_len);
  const uint8_t* p = key.data() + name_len + 1;
  uint32_t pk = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  row->priority = PriorityFromKey(pk);
  row->object_id = GetBe64(p + 4);
  return Status::OK();
}

std::vector<uint8_t> EncodeQueueValue(const QueueRow& row) {
  std::vector<uint8_t> v(1 + 4 + 8 + 4 + row.rule.size() + 4 + row.edits.size());
  uint8_t* p = v.data();
  *p++ = kQueueRecordVersion;
  PutLe32(p, row.attempts);
  p += 4;
  PutLe64(p, static_cast<uint64_t>(row.next_attempt_unix_ms));
  p += 8;
  PutLe32(p, static_cast<uint32_t>(row.rule.size()));
  p += 4;
  std::memcpy(p, row.rule.data(), row.rule.size());
  p += row.rule.size();
  PutLe32(p, static_cast<uint32_t>(row.edits.size()));
  p += 4;
  std::memcpy(p, row.edits.data(), row.edits.size());
  return v;
}

Status DecodeQueueValue(std::span<const uint8_t> v, QueueRow* row) {
  if (v.size() < 1 + 4 + 8 + 4) return Status::Corruption("queue record truncated");
  if (v[0] != kQueueRecordVersion) return Status::Corruption("unknown queue record version " + std::to_string(v[0]));
  row->attempts = GetLe32(v.data() + 1);
  row->next_attempt_unix_ms = static_cast<int64_t>(GetLe64(v.data() + 5));
  size_t pos = 13;
  for (std::string* s : {&row->rule, &row->edits}) {
    if (v.size() - pos < 4) return Status::Corruption("queue record truncated at a string length");
    uint32_t len = GetLe32(v.data() + pos);
    pos += 4;
    if (len > v.size() - pos) return Status::Corruption("queue record string runs past the end");
    s->assign(reinterpret_cast<const char*>(v.data() + pos), len);
    pos += len;
  }
  return Status::OK();
}

}  // namespace relais::store
