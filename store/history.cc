#include "store/history.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "store/meta_codec.h"
#include "store/queue_codec.h"
#include "store/resend.h"

namespace relais::store {
namespace {

constexpr size_t kMaxUidLength = 64;

void PutStr(std::vector<uint8_t>* out, std::string_view s) {
  const size_t n = std::min<size_t>(s.size(), 0xFFFF);
  out->push_back(static_cast<uint8_t>(n));
  out->push_back(static_cast<uint8_t>(n >> 8));
  out->insert(out->end(), s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n));
}

bool GetStr(std::span<const uint8_t>* in, std::string* s) {
  if (in->size() < 2) return false;
  const size_t n = (*in)[0] | (static_cast<size_t>((*in)[1]) << 8);
  if (in->size() < 2 + n) return false;
  s->assign(in->begin() + 2, in->begin() + 2 + static_cast<std::ptrdiff_t>(n));
  *in = in->subspan(2 + n);
  return true;
}

// A list kept as one string, '\' between values (DICOM's multi-value mark).
std::string JoinList(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += '\\';
    out += s;
  }
  return out;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\\', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

void AddUnique(std::vector<std::string>* v, const std::string& s) {
  if (s.empty() || std::find(v->begin(), v->end(), s) != v->end()) return;
  if (v->size() < 16) v->push_back(s);  // bounded: a study has few
}

std::vector<uint8_t> DestKey(const std::string& study, const std::string& destination) {
  std::vector<uint8_t> k(study.begin(), study.end());
  k.push_back(0);
  k.insert(k.end(), destination.begin(), destination.end());
  return k;
}

void Decrement(uint32_t* n) {
  if (*n > 0) --*n;
}

}  // namespace

std::vector<uint8_t> EncodeStudyRecord(const StudyHistory& h) {
  std::vector<uint8_t> v(28);
  PutLe64(v.data(), static_cast<uint64_t>(h.first_received_unix_ms));
  PutLe64(v.data() + 8, static_cast<uint64_t>(h.last_received_unix_ms));
  PutLe64(v.data() + 16, static_cast<uint64_t>(h.last_change_unix_ms));
  PutLe32(v.data() + 24, h.objects);
  PutStr(&v, h.patient_id);
  PutStr(&v, h.patient_name);
  PutStr(&v, h.accession_number);
  PutStr(&v, h.study_date);
  PutStr(&v, JoinList(h.modalities));
  PutStr(&v, JoinList(h.calling_aes));
  return v;
}

Status DecodeStudyRecord(std::span<const uint8_t> value, StudyHistory* h) {
  if (value.size() < 28) return Status::Corruption("history study record is shorter than 28 bytes");
  h->first_received_unix_ms = static_cast<int64_t>(GetLe64(value.data()));
  h->last_received_unix_ms = static_cast<int64_t>(GetLe64(value.data() + 8));
  h->last_change_unix_ms = static_cast<int64_t>(GetLe64(value.data() + 16));
  h->objects = GetLe32(value.data() + 24);
  std::span<const uint8_t> in = value.subspan(28);
  std::string modalities, aes;
  if (!GetStr(&in, &h->patient_id) || !GetStr(&in, &h->patient_name) || !GetStr(&in, &h->accession_number) ||
      !GetStr(&in, &h->study_date) || !GetStr(&in, &modalities) || !GetStr(&in, &aes)) {
    return Status::Corruption("history study record has a truncated string");
  }
  h->modalities = SplitList(modalities);
  h->calling_aes = SplitList(aes);
  return Status::OK();
}

std::vector<uint8_t> EncodeStudyDestination(const StudyDestination& s) {
  std::vector<uint8_t> v(32);
  PutLe32(v.data(), s.queued);
  PutLe32(v.data() + 4, s.sent);
  PutLe32(v.data() + 8, s.dead);
  PutLe32(v.data() + 12, s.attempts);
  PutLe64(v.data() + 16, static_cast<uint64_t>(s.last_sent_unix_ms));
  PutLe64(v.data() + 24, static_cast<uint64_t>(s.last_dead_unix_ms));
  PutStr(&v, s.last_dead_reason);
  return v;
}

Status DecodeStudyDestination(std::span<const uint8_t> value, StudyDestination* s) {
  if (value.size() < 32) return Status::Corruption("history destination record is shorter than 32 bytes");
  s->queued = GetLe32(value.data());
  s->sent = GetLe32(value.data() + 4);
  s->dead = GetLe32(value.data() + 8);
  s->attempts = GetLe32(value.data() + 12);
  s->last_sent_unix_ms = static_cast<int64_t>(GetLe64(value.data() + 16));
  s->last_dead_unix_ms = static_cast<int64_t>(GetLe64(value.data() + 24));
  std::span<const uint8_t> in = value.subspan(32);
  if (!GetStr(&in, &s->last_dead_reason)) return Status::Corruption("history destination record is truncated");
  return Status::OK();
}

Status HistoryOnCommit(Txn& txn, const Dbis& d, const ObjectMeta& m, const std::vector<std::string>& queued,
                       int64_t now) {
  if (!d.has_history || m.study_instance_uid.empty() || m.study_instance_uid.size() > kMaxUidLength) {
    return Status::OK();
  }
  MDB_val key = ToVal(std::string_view(m.study_instance_uid));
  std::span<const uint8_t> old;
  StudyHistory h;
  Status s = txn.Get(d.history, key, &old);
  if (s.ok() && DecodeStudyRecord(old, &h).ok()) {
    h.first_received_unix_ms = std::min(h.first_received_unix_ms, m.received_unix_ms);
    h.last_received_unix_ms = std::max(h.last_received_unix_ms, m.received_unix_ms);
  } else if (s.ok() || s.IsNotFound()) {
    h = StudyHistory{};  // new, or a record that did not decode: start again
    h.first_received_unix_ms = h.last_received_unix_ms = m.received_unix_ms;
  } else {
    return s;
  }
  // The latest object's patient fields win (a corrected study).
  if (!m.patient_id.empty()) h.patient_id = m.patient_id;
  if (!m.patient_name.empty()) h.patient_name = m.patient_name;
  if (!m.accession_number.empty()) h.accession_number = m.accession_number;
  if (!m.study_date.empty()) h.study_date = m.study_date;
  AddUnique(&h.modalities, m.modality);
  AddUnique(&h.calling_aes, m.calling_ae);
  ++h.objects;
  h.last_change_unix_ms = now;
  std::vector<uint8_t> v = EncodeStudyRecord(h);
  RELAIS_RETURN_IF_ERROR(txn.Put(d.history, key, ToVal(std::span<const uint8_t>(v))));
  for (const std::string& dest : queued) {
    RELAIS_RETURN_IF_ERROR(HistoryOnStudyRow(txn, d, m.study_instance_uid, dest, HistoryEvent::kQueued, 0, "", now));
  }
  return Status::OK();
}

Status HistoryOnRow(Txn& txn, const Dbis& d, uint64_t id, const std::string& destination, HistoryEvent event,
                    uint32_t attempts, const std::string& reason, int64_t now) {
  if (!d.has_history) return Status::OK();
  bool left = false;
  RELAIS_RETURN_IF_ERROR(HistoryLeftToBackfill(txn, d, id, &left));
  if (left) return Status::OK();
  IdKey id_key(id);
  std::span<const uint8_t> record;
  Status s = txn.Get(d.objects, id_key.val(), &record);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  ObjectMeta m;
  if (!DecodeMeta(record, &m).ok()) return Status::OK();  // Verify reports it
  return HistoryOnStudyRow(txn, d, m.study_instance_uid, destination, event, attempts, reason, now);
}

Status HistoryOnStudyRow(Txn& txn, const Dbis& d, const std::string& study, const std::string& destination,
                         HistoryEvent event, uint32_t attempts, const std::string& reason, int64_t now) {
  if (!d.has_history || study.empty() || study.size() > kMaxUidLength) return Status::OK();
  // The study record must exist (its destination rows follow it in key
  // order); an object committed before the history existed has none.
  MDB_val skey = ToVal(std::string_view(study));
  std::span<const uint8_t> sv;
  Status s = txn.Get(d.history, skey, &sv);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  StudyHistory h;
  if (DecodeStudyRecord(sv, &h).ok()) {
    h.last_change_unix_ms = std::max(h.last_change_unix_ms, now);
    std::vector<uint8_t> v = EncodeStudyRecord(h);
    RELAIS_RETURN_IF_ERROR(txn.Put(d.history, skey, ToVal(std::span<const uint8_t>(v))));
  }
  std::vector<uint8_t> k = DestKey(study, destination);
  std::span<const uint8_t> old;
  StudyDestination r;
  s = txn.Get(d.history, ToVal(std::span<const uint8_t>(k)), &old);
  if (s.ok()) {
    if (!DecodeStudyDestination(old, &r).ok()) r = StudyDestination{};
  } else if (!s.IsNotFound()) {
    return s;
  }
  switch (event) {
    case HistoryEvent::kQueued: ++r.queued; break;
    case HistoryEvent::kSent:
      Decrement(&r.queued);
      ++r.sent;
      r.attempts += attempts;
      r.last_sent_unix_ms = now;
      break;
    case HistoryEvent::kDead:
      Decrement(&r.queued);
      ++r.dead;
      r.attempts += attempts;
      r.last_dead_unix_ms = now;
      r.last_dead_reason = reason.substr(0, 1024);
      break;
    case HistoryEvent::kRequeued:
      Decrement(&r.dead);
      ++r.queued;
      break;
    case HistoryEvent::kLiveGone: Decrement(&r.queued); break;
    case HistoryEvent::kDeadGone: Decrement(&r.dead); break;
  }
  std::vector<uint8_t> v = EncodeStudyDestination(r);
  return txn.Put(d.history, ToVal(std::span<const uint8_t>(k)), ToVal(std::span<const uint8_t>(v)));
}

Status PruneHistory(Txn& txn, const Dbis& d, int64_t now, int64_t retention_ms, size_t max_scan,
                    std::vector<uint8_t>* scan_from) {
  if (!d.has_history || retention_ms < 0) return Status::OK();
  const int64_t cutoff = now - retention_ms;
  std::vector<std::vector<uint8_t>> old;
  std::string expired_study;  // destination rows of it follow its record
  bool have_expired = false;
  size_t scanned = 0;
  bool stopped = false;
  const std::vector<uint8_t> from = *scan_from;
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.history, from, [&](const MDB_val& k, const MDB_val& v, bool* go_on) {
    std::span<const uint8_t> key = FromVal(k);
    auto nul = std::find(key.begin(), key.end(), uint8_t{0});
    const bool study_row = nul == key.end();
    // Stop only at a study record, so a study and its rows go together.
    if (scanned >= max_scan && study_row) {
      scan_from->assign(key.begin(), key.end());
      stopped = true;
      *go_on = false;
      return Status::OK();
    }
    ++scanned;
    if (study_row) {
      StudyHistory h;
      have_expired = DecodeStudyRecord(FromVal(v), &h).ok() && h.last_change_unix_ms < cutoff;
      expired_study.assign(key.begin(), key.end());
      if (have_expired) old.emplace_back(key.begin(), key.end());
    } else if (have_expired && std::string_view(reinterpret_cast<const char*>(key.data()),
                                                static_cast<size_t>(nul - key.begin())) == expired_study) {
      old.emplace_back(key.begin(), key.end());
    }
    return Status::OK();
  }));
  if (!stopped) scan_from->clear();
  for (const auto& k : old) RELAIS_RETURN_IF_ERROR(txn.Del(d.history, ToVal(std::span<const uint8_t>(k))));
  return Status::OK();
}

Status HistoryLeftToBackfill(const Txn& txn, const Dbis& d, uint64_t id, bool* left) {
  *left = false;
  uint64_t end = 0;
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistoryBackfillEnd, &end));
  if (end == 0 || id >= end) return Status::OK();
  uint64_t next = 0;
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistoryBackfillNext, &next));
  *left = id >= next;
  return Status::OK();
}

Status PrepareHistoryBackfill(const LmdbEnv& env, uint64_t next_id, bool* pending, uint64_t* objects) {
  *pending = false;
  *objects = 0;
  const Dbis& d = env.dbis();
  if (!d.has_history) return Status::OK();
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(env, /*write=*/true));
  uint64_t marker = 0, end = 0, next = 0;
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistory, &marker));
  if (marker == 1) return Status::OK();
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistoryBackfillEnd, &end));
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistoryBackfillNext, &next));
  if (end != 0) {  // interrupted: go on where it stopped
    *pending = true;
    *objects = end > next ? end - next : 0;
    return Status::OK();
  }
  bool any_object = false, any_history = false;
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.objects, {}, [&](const MDB_val&, const MDB_val&, bool* more) {
    any_object = true;
    *more = false;
    return Status::OK();
  }));
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.history, {}, [&](const MDB_val&, const MDB_val&, bool* more) {
    any_history = true;
    *more = false;
    return Status::OK();
  }));
  if (!any_object || any_history || next_id <= 1) {
    RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaHistory, 1));
  } else {
    RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaHistoryBackfillNext, 1));
    RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaHistoryBackfillEnd, next_id));
    *pending = true;
    *objects = next_id - 1;
  }
  return txn.Commit();
}

namespace {

// One stored object counted into its study (the backfill).
Status BackfillObject(Txn& txn, const Dbis& d, uint64_t id, const ObjectMeta& m) {
  if (m.study_instance_uid.empty() || m.study_instance_uid.size() > kMaxUidLength) return Status::OK();
  MDB_val skey = ToVal(std::string_view(m.study_instance_uid));
  std::span<const uint8_t> old;
  StudyHistory h;
  Status s = txn.Get(d.history, skey, &old);
  bool latest = true;  // no object of the study seen yet was received later
  if (s.ok() && DecodeStudyRecord(old, &h).ok()) {
    latest = m.received_unix_ms >= h.last_received_unix_ms;
    h.first_received_unix_ms = std::min(h.first_received_unix_ms, m.received_unix_ms);
    h.last_received_unix_ms = std::max(h.last_received_unix_ms, m.received_unix_ms);
  } else if (s.ok() || s.IsNotFound()) {
    h = StudyHistory{};
    h.first_received_unix_ms = h.last_received_unix_ms = m.received_unix_ms;
  } else {
    return s;
  }
  // The latest object's patient ID wins, as at commit (a study record made
  // meanwhile by a new object keeps its). Name, accession and date are not
  // in the object record: a backfilled study has them once an object of it
  // is received again.
  if (!m.patient_id.empty() && (latest || h.patient_id.empty())) h.patient_id = m.patient_id;
  AddUnique(&h.modalities, m.modality);
  AddUnique(&h.calling_aes, m.calling_ae);
  ++h.objects;
  // Retention counts from what the rows tell, not from the backfill.
  h.last_change_unix_ms = std::max(h.last_change_unix_ms, m.received_unix_ms);

  // Attempts per destination, from the object's log (for the rows sent).
  std::vector<std::pair<std::string, uint32_t>> tries;
  AttemptKey from(id, 0);
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.attempts, std::span<const uint8_t>(from.bytes, sizeof(from.bytes)),
                                    [&](const MDB_val& k, const MDB_val& v, bool* more) {
                                      uint64_t oid = 0;
                                      uint32_t seq = 0;
                                      if (!DecodeAttemptKey(FromVal(k), &oid, &seq).ok() || oid != id) {
                                        *more = false;
                                        return Status::OK();
                                      }
                                      Attempt a;
                                      if (!DecodeAttempt(FromVal(v), &a).ok()) return Status::OK();
                                      if (a.result != "success" && a.result != "warning" && a.result != "retry")
                                        return Status::OK();
                                      auto it = std::find_if(tries.begin(), tries.end(),
                                                             [&](const auto& p) { return p.first == a.destination; });
                                      if (it == tries.end()) {
                                        tries.emplace_back(a.destination, 1);
                                      } else {
                                        ++it->second;
                                      }
                                      return Status::OK();
                                    }));

  for (const Route& r : m.routes) {
    std::vector<uint8_t> qk = EncodeQueueKey(r.destination, r.priority, id);
    std::span<const uint8_t> row_bytes;
    std::vector<uint8_t> dk = DestKey(m.study_instance_uid, r.destination);
    StudyDestination sd;
    bool have = false;
    std::span<const uint8_t> dv;
    s = txn.Get(d.history, ToVal(std::span<const uint8_t>(dk)), &dv);
    if (s.ok()) {
      have = DecodeStudyDestination(dv, &sd).ok();
      if (!have) sd = StudyDestination{};
    } else if (!s.IsNotFound()) {
      return s;
    }
    bool counted = false;
    s = txn.Get(d.queue, ToVal(std::span<const uint8_t>(qk)), &row_bytes);
    if (s.ok()) {
      ++sd.queued;
      counted = true;
    } else if (!s.IsNotFound()) {
      return s;
    }
    if (!counted && d.has_delivery) {
      s = txn.Get(d.dead, ToVal(std::span<const uint8_t>(qk)), &row_bytes);
      if (s.ok()) {
        QueueRow row;
        if (DecodeDeadValue(row_bytes, &row).ok()) {
          ++sd.dead;
          sd.attempts += row.attempts;
          if (row.dead_unix_ms >= sd.last_dead_unix_ms) {
            sd.last_dead_unix_ms = row.dead_unix_ms;
            sd.last_dead_reason = row.last_error.substr(0, 1024);
          }
          h.last_change_unix_ms = std::max(h.last_change_unix_ms, row.dead_unix_ms);
          counted = true;
        }
      } else if (!s.IsNotFound()) {
        return s;
      }
    }
    if (!counted && d.has_delivered) {
      // Sent: the resend memory holds this very object (same checksum) for
      // the destination. A route suppressed or purged has no such row.
      std::vector<uint8_t> key = EncodeDeliveredKey(r.destination, m.sop_instance_uid);
      s = txn.Get(d.delivered, ToVal(std::span<const uint8_t>(key)), &row_bytes);
      Delivered del;
      if (s.ok() && DecodeDelivered(row_bytes, &del).ok() && del.checksum == m.checksum) {
        ++sd.sent;
        for (const auto& [dest, n] : tries) {
          if (dest == r.destination) sd.attempts += n;
        }
        sd.last_sent_unix_ms = std::max(sd.last_sent_unix_ms, del.unix_ms);
        h.last_change_unix_ms = std::max(h.last_change_unix_ms, del.unix_ms);
        counted = true;
      } else if (!s.ok() && !s.IsNotFound()) {
        return s;
      }
    }
    if (!counted) continue;  // suppressed or purged: nothing, as at the time
    std::vector<uint8_t> v = EncodeStudyDestination(sd);
    RELAIS_RETURN_IF_ERROR(txn.Put(d.history, ToVal(std::span<const uint8_t>(dk)), ToVal(std::span<const uint8_t>(v))));
  }
  std::vector<uint8_t> v = EncodeStudyRecord(h);
  return txn.Put(d.history, skey, ToVal(std::span<const uint8_t>(v)));
}

}  // namespace

Status BackfillHistorySlice(Txn& txn, const Dbis& d, size_t max_objects, uint64_t* visited, uint64_t* left) {
  *visited = 0;
  *left = 0;
  if (!d.has_history) return Status::OK();
  uint64_t next = 0, end = 0;
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistoryBackfillNext, &next));
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaHistoryBackfillEnd, &end));
  if (end == 0) return Status::OK();
  // The objects of the range, in id order, collected first (the walk must
  // not see the history rows it writes: another database, but keep it simple).
  std::vector<std::pair<uint64_t, ObjectMeta>> batch;
  uint64_t stop = end;  // where the next slice starts
  IdKey from(next);
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.objects, std::span<const uint8_t>(from.bytes, sizeof(from.bytes)),
                                    [&](const MDB_val& k, const MDB_val& v, bool* more) {
                                      if (k.mv_size != 8) return Status::OK();
                                      const uint64_t id = GetBe64(static_cast<const uint8_t*>(k.mv_data));
                                      if (id >= end) {
                                        *more = false;
                                        return Status::OK();
                                      }
                                      if (batch.size() >= max_objects) {
                                        stop = id;
                                        *more = false;
                                        return Status::OK();
                                      }
                                      ObjectMeta m;
                                      if (DecodeMeta(FromVal(v), &m).ok()) batch.emplace_back(id, std::move(m));
                                      return Status::OK();
                                    }));
  for (const auto& [id, m] : batch) RELAIS_RETURN_IF_ERROR(BackfillObject(txn, d, id, m));
  *visited = batch.size();
  if (stop >= end) {
    RELAIS_RETURN_IF_ERROR(txn.Del(d.meta, ToVal(std::string_view(kMetaHistoryBackfillNext))));
    RELAIS_RETURN_IF_ERROR(txn.Del(d.meta, ToVal(std::string_view(kMetaHistoryBackfillEnd))));
    return PutMetaU64(txn, d.meta, kMetaHistory, 1);
  }
  RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaHistoryBackfillNext, stop));
  *left = end - stop;
  return Status::OK();
}

Status ForEachStudy(const Txn& txn, const Dbis& d, const std::function<bool(const StudyHistory&)>& fn) {
  if (!d.has_history) return Status::OK();
  StudyHistory cur;
  bool have = false;
  bool stop = false;
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.history, {}, [&](const MDB_val& k, const MDB_val& v, bool* go_on) {
    std::span<const uint8_t> key = FromVal(k);
    auto nul = std::find(key.begin(), key.end(), uint8_t{0});
    if (nul == key.end()) {
      if (have && !fn(cur)) {
        stop = true;
        *go_on = false;
        return Status::OK();
      }
      cur = StudyHistory{};
      have = DecodeStudyRecord(FromVal(v), &cur).ok();  // Verify reports the others
      cur.study_instance_uid.assign(key.begin(), key.end());
      return Status::OK();
    }
    if (!have) return Status::OK();
    StudyDestination r;
    if (!DecodeStudyDestination(FromVal(v), &r).ok()) return Status::OK();
    r.destination.assign(nul + 1, key.end());
    cur.destinations.push_back(std::move(r));
    return Status::OK();
  }));
  if (have && !stop) fn(cur);
  return Status::OK();
}

}  // namespace relais::store
