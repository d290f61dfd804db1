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

void AppendString(std::vector<uint8_t>* out, const std::string& s) {
  uint8_t len[4];
  PutLe32(len, static_cast<uint32_t>(s.size()));
  out->insert(out->end(), len, len + 4);
  out->insert(out->end(), s.begin(), s.end());
}

// Reads a u32 LE length + bytes at *pos; Corruption naming `what` when the
// length or the bytes run past the end.
Status ReadString(std::span<const uint8_t> v, size_t* pos, const char* what, std::string* s) {
  if (v.size() - *pos < 4) return Status::Corruption(std::string(what) + " truncated at a string length");
  uint32_t len = GetLe32(v.data() + *pos);
  *pos += 4;
  if (len > v.size() - *pos) return Status::Corruption(std::string(what) + " string runs past the end");
  s->assign(reinterpret_cast<const char*>(v.data() + *pos), len);
  *pos += len;
  return Status::OK();
}

}  // namespace

std::vector<uint8_t> EncodeQueueKey(const std::string& destination, int32_t priority, uint64_t object_id) {
  std::vector<uint8_t> k(destination.size() + 1 + 4 + 8);
  std::memcpy(k.data(), destination.data(), destination.size());
  size_t p = destination.size();
  k[p++] = 0;
  PutBe32(k.data() + p, PriorityKey(priority));
  PutBe64(k.data() + p + 4, object_id);
  return k;
}

Status DecodeQueueKey(std::span<const uint8_t> key, QueueRow* row) {
  if (key.size() < 1 + 4 + 8) return Status::Corruption("queue key too short");
  size_t name_len = key.size() - 13;
  if (key[name_len] != 0) return Status::Corruption("queue key has no name terminator");
  row->destination.assign(reinterpret_cast<const char*>(key.data()), name_len);
  const uint8_t* p = key.data() + name_len + 1;
  row->priority = PriorityFromKey(GetBe32(p));
  row->object_id = GetBe64(p + 4);
  return Status::OK();
}

std::vector<uint8_t> EncodeQueueValue(const QueueRow& row) {
  std::vector<uint8_t> v;
  v.reserve(1 + 4 + 8 + 4 + row.rule.size() + 4 + row.edits.size() + 2 + 4 + row.last_error.size());
  v.resize(1 + 4 + 8);
  v[0] = kQueueRecordVersion;
  PutLe32(v.data() + 1, row.attempts);
  PutLe64(v.data() + 5, static_cast<uint64_t>(row.next_attempt_unix_ms));
  AppendString(&v, row.rule);
  AppendString(&v, row.edits);
  // Appended after the first release of record version 1 (FORMAT.md).
  v.push_back(static_cast<uint8_t>(row.last_status));
  v.push_back(static_cast<uint8_t>(row.last_status >> 8));
  AppendString(&v, row.last_error);
  // Appended later still (FORMAT.md), only when set: queued_unix_ms.
  if (row.queued_unix_ms != 0) {
    v.resize(v.size() + 8);
    PutLe64(v.data() + v.size() - 8, static_cast<uint64_t>(row.queued_unix_ms));
  }
  return v;
}

Status DecodeQueueValue(std::span<const uint8_t> v, QueueRow* row) {
  if (v.size() < 1 + 4 + 8 + 4) return Status::Corruption("queue record truncated");
  if (v[0] != kQueueRecordVersion) return Status::Corruption("unknown queue record version " + std::to_string(v[0]));
  row->attempts = GetLe32(v.data() + 1);
  row->next_attempt_unix_ms = static_cast<int64_t>(GetLe64(v.data() + 5));
  size_t pos = 13;
  RELAIS_RETURN_IF_ERROR(ReadString(v, &pos, "queue record", &row->rule));
  RELAIS_RETURN_IF_ERROR(ReadString(v, &pos, "queue record", &row->edits));
  row->last_status = 0;
  row->last_error.clear();
  row->queued_unix_ms = 0;
  if (pos == v.size()) return Status::OK();  // written before last_status existed
  if (v.size() - pos < 2) return Status::Corruption("queue record truncated at last_status");
  row->last_status = static_cast<uint16_t>(v[pos] | (v[pos + 1] << 8));
  pos += 2;
  RELAIS_RETURN_IF_ERROR(ReadString(v, &pos, "queue record", &row->last_error));
  // queued_unix_ms when present; bytes after it are ignored: room for later
  // appended fields.
  if (v.size() - pos >= 8) row->queued_unix_ms = static_cast<int64_t>(GetLe64(v.data() + pos));
  return Status::OK();
}

std::vector<uint8_t> EncodeDeadValue(const QueueRow& row) {
  std::vector<uint8_t> q = EncodeQueueValue(row);
  std::vector<uint8_t> v(8 + q.size());
  PutLe64(v.data(), static_cast<uint64_t>(row.dead_unix_ms));
  std::memcpy(v.data() + 8, q.data(), q.size());
  return v;
}

Status DecodeDeadValue(std::span<const uint8_t> v, QueueRow* row) {
  if (v.size() < 8) return Status::Corruption("dead-letter record truncated");
  row->dead_unix_ms = static_cast<int64_t>(GetLe64(v.data()));
  return DecodeQueueValue(v.subspan(8), row);
}

AttemptKey::AttemptKey(uint64_t id, uint32_t seq) {
  PutBe64(bytes, id);
  PutBe32(bytes + 8, seq);
}

Status DecodeAttemptKey(std::span<const uint8_t> key, uint64_t* object_id, uint32_t* seq) {
  if (key.size() != 12) return Status::Corruption("attempt key is not 12 bytes");
  *object_id = GetBe64(key.data());
  *seq = GetBe32(key.data() + 8);
  return Status::OK();
}

std::vector<uint8_t> EncodeAttempt(const Attempt& a) {
  std::vector<uint8_t> v(1 + 8 + 2);
  v[0] = kAttemptRecordVersion;
  PutLe64(v.data() + 1, static_cast<uint64_t>(a.unix_ms));
  v[9] = static_cast<uint8_t>(a.status);
  v[10] = static_cast<uint8_t>(a.status >> 8);
  AppendString(&v, a.destination);
  AppendString(&v, a.association);
  AppendString(&v, a.result);
  AppendString(&v, a.error);
  return v;
}

Status DecodeAttempt(std::span<const uint8_t> v, Attempt* a) {
  if (v.size() < 1 + 8 + 2) return Status::Corruption("attempt record truncated");
  if (v[0] != kAttemptRecordVersion) {
    return Status::Corruption("unknown attempt record version " + std::to_string(v[0]));
  }
  a->unix_ms = static_cast<int64_t>(GetLe64(v.data() + 1));
  a->status = static_cast<uint16_t>(v[9] | (v[10] << 8));
  size_t pos = 11;
  for (std::string* s : {&a->destination, &a->association, &a->result, &a->error}) {
    RELAIS_RETURN_IF_ERROR(ReadString(v, &pos, "attempt record", s));
  }
  return Status::OK();  // trailing bytes: fields appended later
}

}  // namespace relais::store
