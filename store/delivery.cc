#include "store/delivery.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "base/log.h"
#include "store/history.h"
#include "store/meta_codec.h"
#include "store/queue_codec.h"
#include "store/resend.h"

namespace relais::store {
namespace {

MDB_val Val(const std::vector<uint8_t>& b) { return ToVal(std::span<const uint8_t>(b)); }

bool Exists(const Txn& txn, MDB_dbi dbi, const std::vector<uint8_t>& key, Status* error) {
  std::span<const uint8_t> unused;
  Status s = txn.Get(dbi, Val(key), &unused);
  if (!s.ok() && !s.IsNotFound()) *error = s;
  return s.ok();
}
}  // namespace

namespace {
std::string ClassMetaKey(const char* what, size_t c) {
  return std::string(what) + "." + ObjectClassName(static_cast<ObjectClass>(c));
}
}  // namespace

Status ReadTotals(const Txn& txn, const Dbis& d, Totals* totals) {
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaRawBytes, &totals->raw_bytes));
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaStoredBytes, &totals->stored_bytes));
  if (!d.has_lifecycle) return Status::OK();
  for (size_t c = 1; c < kObjectClassCount; ++c) {
    RELAIS_RETURN_IF_ERROR(
        GetMetaU64(txn, d.meta, ClassMetaKey("class_objects", c).c_str(), &totals->class_objects[c]));
    RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, ClassMetaKey("class_bytes", c).c_str(), &totals->class_bytes[c]));
  }
  return Status::OK();
}

Status WriteTotals(Txn& txn, const Dbis& d, const Totals& totals) {
  RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaRawBytes, totals.raw_bytes));
  RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaStoredBytes, totals.stored_bytes));
  if (!d.has_lifecycle) return Status::OK();
  for (size_t c = 1; c < kObjectClassCount; ++c) {
    RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, ClassMetaKey("class_objects", c).c_str(), totals.class_objects[c]));
    RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, ClassMetaKey("class_bytes", c).c_str(), totals.class_bytes[c]));
  }
  return Status::OK();
}

int64_t Retentions::For(ObjectClass c) const {
  switch (c) {
    case ObjectClass::kDelivered: return delivered_ms;
    case ObjectClass::kUnrouted: return unrouted_ms;
    case ObjectClass::kDead: return dead_ms;
    case ObjectClass::kDropped: return dropped_ms;
    case ObjectClass::kQueued:
    case ObjectClass::kNone: break;
  }
  return -1;
}

Status DecodeLife(std::span<const uint8_t> v, LifeRow* out) {
  if (v.size() < 17) return Status::Corruption("a life row is shorter than 17 bytes");
  if (v[0] == 0 || v[0] >= kObjectClassCount) return Status::Corruption("a life row has an unknown class");
  out->object_class = static_cast<ObjectClass>(v[0]);
  out->since_unix_ms = static_cast<int64_t>(GetLe64(v.data() + 1));
  out->stored_size = GetLe64(v.data() + 9);
  return Status::OK();
}

std::vector<uint8_t> EncodeExpiryKey(ObjectClass c, int64_t since, uint64_t id) {
  std::vector<uint8_t> k(17);
  k[0] = static_cast<uint8_t>(c);
  PutBe64(k.data() + 1, static_cast<uint64_t>(std::max<int64_t>(since, 0)));
  PutBe64(k.data() + 9, id);
  return k;
}

Status ExpectedClass(const Txn& txn, const Dbis& d, const ObjectMeta& m, int64_t now, ObjectClass* c, int64_t* since) {
  bool live = false, dead = false;
  int64_t dead_since = 0;
  Status error;
  for (const Route& r : m.routes) {
    std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, m.id);
    live = live || Exists(txn, d.queue, key, &error);
    RELAIS_RETURN_IF_ERROR(error);
    std::span<const uint8_t> v;
    Status s = d.has_delivery ? txn.Get(d.dead, Val(key), &v) : Status::NotFound("");
    if (s.ok()) {
      dead = true;
      QueueRow row;
      if (DecodeDeadValue(v, &row).ok()) dead_since = std::max(dead_since, row.dead_unix_ms);
    } else if (!s.IsNotFound()) {
      return s;
    }
  }
  if (live) {
    *c = ObjectClass::kQueued;
    *since = m.received_unix_ms;
  } else if (dead) {
    *c = ObjectClass::kDead;
    *since = dead_since != 0 ? dead_since : now;
  } else if (!m.routes.empty()) {
    *c = ObjectClass::kDelivered;
    *since = now;
    IdKey key(m.id);
    std::span<const uint8_t> v;
    Status s = d.has_delivery ? txn.Get(d.done, key.val(), &v) : Status::NotFound("");
    if (s.ok() && v.size() == 8) *since = static_cast<int64_t>(GetLe64(v.data()));
    if (!s.ok() && !s.IsNotFound()) return s;
  } else {
    *c = m.routing == "dropped" ? ObjectClass::kDropped : ObjectClass::kUnrouted;
    *since = m.received_unix_ms;
  }
  return Status::OK();
}

Status BuildLifecycle(const LmdbEnv& env, int64_t now, bool rebuild, uint64_t* count) {
  const Dbis& d = env.dbis();
  if (!d.has_lifecycle) return Status::InvalidArgument("the store has no lifecycle databases");
  if (rebuild) {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env, true));
    RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_drop(txn.get(), d.life, 0), "mdb_drop life"));
    RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_drop(txn.get(), d.expiry, 0), "mdb_drop expiry"));
    Totals t;
    RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &t));
    Totals zero;
    zero.raw_bytes = t.raw_bytes;
    zero.stored_bytes = t.stored_bytes;
    RELAIS_RETURN_IF_ERROR(WriteTotals(txn, d, zero));
    RELAIS_RETURN_IF_ERROR(txn.Commit());
  }
  constexpr size_t kBatch = 1000;
  uint64_t next = 0;
  for (;;) {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env, true));
    Totals totals;
    RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &totals));
    DeliveryTxn dt(&txn, d, 0, &totals);
    std::vector<ObjectMeta> batch;
    IdKey from(next);
    bool end = true;
    RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.objects, from.bytes, [&](const MDB_val& k, const MDB_val& v, bool* more) {
      if (batch.size() == kBatch) {
        end = false;
        *more = false;
        return Status::OK();
      }
      ObjectMeta m;
      if (k.mv_size != 8 || !DecodeMeta(FromVal(v), &m).ok()) return Status::OK();  // verify's business
      batch.push_back(std::move(m));
      return Status::OK();
    }));
    for (const ObjectMeta& m : batch) {
      ObjectClass c;
      int64_t since;
      RELAIS_RETURN_IF_ERROR(ExpectedClass(txn, d, m, now, &c, &since));
      RELAIS_RETURN_IF_ERROR(dt.SetClass(m.id, c, since, m.stored_size));
      next = m.id + 1;
    }
    if (count != nullptr) *count += batch.size();
    if (end) RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaLifecycle, 1));
    RELAIS_RETURN_IF_ERROR(WriteTotals(txn, d, totals));
    RELAIS_RETURN_IF_ERROR(txn.Commit());
    if (end) return Status::OK();
  }
}

Status DropChunks(Txn& txn, const Dbis& d, uint64_t id) {
  RELAIS_RETURN_IF_ERROR(DeleteObjectRows(txn, d.chunks, id));
  IdKey key(id);
  return txn.Del(d.pending, key.val());
}

Status DeliveryTxn::Apply(const std::vector<QueueUpdate>& updates, int64_t now, std::set<std::string>* woken) {
  for (const QueueUpdate& u : updates) {
    std::vector<uint8_t> key = EncodeQueueKey(u.destination, u.priority, u.object_id);
    MDB_val k = Val(key);
    std::span<const uint8_t> live, dead;
    Status ls = txn_->Get(d_.queue, k, &live);
    if (!ls.ok() && !ls.IsNotFound()) return ls;
    Status ds = txn_->Get(d_.dead, k, &dead);
    if (!ds.ok() && !ds.IsNotFound()) return ds;
    QueueRow row;
    bool changed = false;  // the object's rows changed: its class may have
    switch (u.kind) {
      case QueueUpdate::Kind::kDelivered:
        if (!ls.ok()) continue;  // delivered, purged or replaced meanwhile
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.queue, k));
        RELAIS_RETURN_IF_ERROR(RecordDelivered(*txn_, d_, u.object_id, u.destination, now));
        RELAIS_RETURN_IF_ERROR(
            HistoryOnRow(*txn_, d_, u.object_id, u.destination, HistoryEvent::kSent, u.attempts, "", now));
        changed = true;
        break;
      case QueueUpdate::Kind::kRetryLater: {
        if (!ls.ok()) continue;
        RELAIS_RETURN_IF_ERROR(DecodeQueueValue(live, &row));
        row.attempts = u.attempts;
        row.next_attempt_unix_ms = u.next_attempt_unix_ms;
        row.last_status = u.status;
        row.last_error = u.error;
        RELAIS_RETURN_IF_ERROR(txn_->Put(d_.queue, k, Val(EncodeQueueValue(row))));
        break;
      }
      case QueueUpdate::Kind::kDeadLetter: {
        if (!ls.ok()) continue;
        RELAIS_RETURN_IF_ERROR(DecodeQueueValue(live, &row));
        row.attempts = u.attempts;
        row.last_status = u.status;
        row.last_error = u.error;
        row.dead_unix_ms = now;
        std::vector<uint8_t> value = EncodeDeadValue(row);
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.queue, k));
        RELAIS_RETURN_IF_ERROR(txn_->Put(d_.dead, k, Val(value)));
        RELAIS_RETURN_IF_ERROR(
            HistoryOnRow(*txn_, d_, u.object_id, u.destination, HistoryEvent::kDead, u.attempts, u.error, now));
        changed = true;
        break;
      }
      case QueueUpdate::Kind::kRoute:
      case QueueUpdate::Kind::kResend:
      case QueueUpdate::Kind::kRequeue: {
        if (ds.ok()) {
          RELAIS_RETURN_IF_ERROR(DecodeDeadValue(dead, &row));
          RELAIS_RETURN_IF_ERROR(txn_->Del(d_.dead, k));
        } else if (ls.ok()) {
          RELAIS_RETURN_IF_ERROR(DecodeQueueValue(live, &row));
        } else if (u.kind == QueueUpdate::Kind::kRoute) {
          bool exists = false;
          RELAIS_RETURN_IF_ERROR(AddManualRoute(u, &row, &exists));
          if (!exists) continue;
        } else if (u.kind == QueueUpdate::Kind::kResend) {
          // Delivered and retained: rebuild the row from the object's route.
          IdKey id_key(u.object_id);
          std::span<const uint8_t> record;
          Status os = txn_->Get(d_.objects, id_key.val(), &record);
          if (os.IsNotFound()) continue;
          RELAIS_RETURN_IF_ERROR(os);
          ObjectMeta m;
          RELAIS_RETURN_IF_ERROR(DecodeMeta(record, &m));
          auto route = std::find_if(m.routes.begin(), m.routes.end(), [&](const Route& r) {
            return r.destination == u.destination && r.priority == u.priority;
          });
          if (route == m.routes.end()) continue;
          row.rule = route->rule;
          row.edits = route->edits;
        } else {
          continue;
        }
        // Back in the queue (from the dead letters, or made again): its time
        // in the queue starts now (the oldest-queued alert). A live row keeps it.
        if (!ls.ok()) row.queued_unix_ms = now;
        row.next_attempt_unix_ms = 0;
        row.dead_unix_ms = 0;
        RELAIS_RETURN_IF_ERROR(txn_->Put(d_.queue, k, Val(EncodeQueueValue(row))));
        if (!ls.ok()) {  // a dead row came back, or a delivered object is re-sent
          RELAIS_RETURN_IF_ERROR(HistoryOnRow(*txn_, d_, u.object_id, u.destination,
                                              ds.ok() ? HistoryEvent::kRequeued : HistoryEvent::kQueued, 0, "", now));
        }
        // The object has a row again: it is no longer waiting for Sweep.
        IdKey id_key(u.object_id);
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.done, id_key.val()));
        woken->insert(u.destination);
        changed = true;
        break;
      }
      case QueueUpdate::Kind::kPurge:
        if (!ls.ok() && !ds.ok()) continue;
        RELAIS_RETURN_IF_ERROR(HistoryOnRow(*txn_, d_, u.object_id, u.destination,
                                            ls.ok() ? HistoryEvent::kLiveGone : HistoryEvent::kDeadGone, 0, "", now));
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.queue, k));
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.dead, k));
        changed = true;
        break;
    }
    if (u.log_attempt) RELAIS_RETURN_IF_ERROR(LogAttempt(u, now));
    if (changed) RELAIS_RETURN_IF_ERROR(Reclassify(u.object_id, now));
  }
  return Status::OK();
}

Status DeliveryTxn::AddManualRoute(const QueueUpdate& u, QueueRow* row, bool* exists) {
  IdKey id_key(u.object_id);
  std::span<const uint8_t> record;
  Status s = txn_->Get(d_.objects, id_key.val(), &record);
  *exists = s.ok();
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  ObjectMeta m;
  RELAIS_RETURN_IF_ERROR(DecodeMeta(record, &m));
  auto route = std::find_if(m.routes.begin(), m.routes.end(),
                            [&](const Route& r) { return r.destination == u.destination && r.priority == u.priority; });
  if (route == m.routes.end()) {
    Route r;
    r.destination = u.destination;
    r.priority = u.priority;
    r.rule = kManualRule;
    m.routes.push_back(r);
    route = m.routes.end() - 1;
    // Record and rows stay consistent: every row is a route of its object.
    RELAIS_RETURN_IF_ERROR(txn_->Put(d_.objects, id_key.val(), Val(EncodeMeta(m))));
  }
  row->rule = route->rule;
  row->edits = route->edits;
  return Status::OK();
}

Status DeliveryTxn::LogAttempt(const QueueUpdate& u, int64_t now) {
  // The next sequence number of the object: one past its last attempt.
  Cursor c;
  RELAIS_RETURN_IF_ERROR(c.Open(*txn_, d_.attempts));
  AttemptKey probe(u.object_id, std::numeric_limits<uint32_t>::max());
  MDB_val k{sizeof(probe.bytes), probe.bytes}, v;
  Status s = c.Get(&k, &v, MDB_SET_RANGE);
  if (s.ok()) {
    if (k.mv_size == 12 && std::memcmp(k.mv_data, probe.bytes, 12) == 0) {
      RLOG_WARN("store: attempt log of object %llu is full", static_cast<unsigned long long>(u.object_id));
      return Status::OK();
    }
    s = c.Get(&k, &v, MDB_PREV);
  } else if (s.IsNotFound()) {
    s = c.Get(&k, &v, MDB_LAST);
  }
  if (!s.ok() && !s.IsNotFound()) return s;
  uint32_t seq = 0;
  if (s.ok() && k.mv_size == 12 && GetBe64(static_cast<const uint8_t*>(k.mv_data)) == u.object_id) {
    seq = GetBe32(static_cast<const uint8_t*>(k.mv_data) + 8) + 1;
  }
  Attempt a = u.attempt;
  a.object_id = u.object_id;
  a.destination = u.destination;
  if (a.unix_ms == 0) a.unix_ms = now;
  AttemptKey key(u.object_id, seq);
  return txn_->Put(d_.attempts, MDB_val{sizeof(key.bytes), key.bytes}, Val(EncodeAttempt(a)));
}

Status DeliveryTxn::DeleteAttempts(uint64_t id) { return DeleteObjectRows(*txn_, d_.attempts, id); }

Status DeliveryTxn::Reclassify(uint64_t id, int64_t now) {
  IdKey id_key(id);
  std::span<const uint8_t> record;
  Status s = txn_->Get(d_.objects, id_key.val(), &record);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  ObjectMeta m;
  s = DecodeMeta(record, &m);
  if (!s.ok()) {
    // Keep it for an admin to look at rather than fail every update.
    RLOG_WARN("store: object %llu kept: %s", static_cast<unsigned long long>(id), s.ToString().c_str());
    return Status::OK();
  }
  // An object's rows are always among the keys of its routes (FORMAT.md).
  bool live = false, dead = false;
  Status error;
  for (const Route& r : m.routes) {
    std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
    live = live || Exists(*txn_, d_.queue, key, &error);
    dead = dead || Exists(*txn_, d_.dead, key, &error);
    RELAIS_RETURN_IF_ERROR(error);
  }
  if (live) return SetClass(id, ObjectClass::kQueued, now, m.stored_size);
  // Its last live row died (or was purged next to dead ones): dead from now.
  if (dead) return SetClass(id, ObjectClass::kDead, now, m.stored_size);
  if (retentions_.delivered_ms == 0) return RemoveObject(id);
  uint8_t b[8];
  PutLe64(b, static_cast<uint64_t>(now));
  RELAIS_RETURN_IF_ERROR(txn_->Put(d_.done, id_key.val(), ToVal(std::span<const uint8_t>(b))));
  return SetClass(id, ObjectClass::kDelivered, now, m.stored_size);
}

Status DeliveryTxn::SetClass(uint64_t id, ObjectClass c, int64_t since, uint64_t stored_size) {
  if (!d_.has_lifecycle) return Status::OK();
  IdKey id_key(id);
  std::span<const uint8_t> v;
  Status s = txn_->Get(d_.life, id_key.val(), &v);
  if (s.ok()) {
    LifeRow old;
    if (DecodeLife(v, &old).ok() && old.object_class == c) return Status::OK();
    RELAIS_RETURN_IF_ERROR(ClearClass(id));
  } else if (!s.IsNotFound()) {
    return s;
  }
  uint8_t life[17];
  life[0] = static_cast<uint8_t>(c);
  PutLe64(life + 1, static_cast<uint64_t>(since));
  PutLe64(life + 9, stored_size);
  RELAIS_RETURN_IF_ERROR(txn_->Put(d_.life, id_key.val(), ToVal(std::span<const uint8_t>(life))));
  std::vector<uint8_t> ek = EncodeExpiryKey(c, since, id);
  RELAIS_RETURN_IF_ERROR(txn_->Put(d_.expiry, Val(ek), MDB_val{0, nullptr}));
  const size_t i = static_cast<size_t>(c);
  totals_->class_objects[i] += 1;
  totals_->class_bytes[i] += stored_size;
  return Status::OK();
}

Status DeliveryTxn::ClearClass(uint64_t id) {
  if (!d_.has_lifecycle) return Status::OK();
  IdKey id_key(id);
  std::span<const uint8_t> v;
  Status s = txn_->Get(d_.life, id_key.val(), &v);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  LifeRow old;
  if (DecodeLife(v, &old).ok()) {
    std::vector<uint8_t> ek = EncodeExpiryKey(old.object_class, old.since_unix_ms, id);
    RELAIS_RETURN_IF_ERROR(txn_->Del(d_.expiry, Val(ek)));
    const size_t i = static_cast<size_t>(old.object_class);
    totals_->class_objects[i] -= std::min<uint64_t>(totals_->class_objects[i], 1);
    totals_->class_bytes[i] -= std::min(totals_->class_bytes[i], old.stored_size);
  }
  return txn_->Del(d_.life, id_key.val());
}

Status DeliveryTxn::RemoveObject(uint64_t id) {
  IdKey id_key(id);
  std::span<const uint8_t> record;
  Status s = txn_->Get(d_.objects, id_key.val(), &record);
  if (s.ok()) {
    ObjectMeta m;
    if (DecodeMeta(record, &m).ok()) {
      totals_->raw_bytes -= std::min(totals_->raw_bytes, m.raw_size);
      totals_->stored_bytes -= std::min(totals_->stored_bytes, m.stored_size);
      bool left_to_backfill = false;  // its rows are not counted yet
      RELAIS_RETURN_IF_ERROR(HistoryLeftToBackfill(*txn_, d_, id, &left_to_backfill));
      for (const Route& r : m.routes) {
        std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
        // The study's history forgets the rows that go with the object.
        std::span<const uint8_t> unused;
        for (auto [dbi, event] :
             {std::pair{d_.queue, HistoryEvent::kLiveGone}, std::pair{d_.dead, HistoryEvent::kDeadGone}}) {
          Status rs = txn_->Get(dbi, Val(key), &unused);
          if (rs.ok() && !left_to_backfill) {
            RELAIS_RETURN_IF_ERROR(HistoryOnStudyRow(*txn_, d_, m.study_instance_uid, r.destination, event, 0, "", 0));
          } else if (!rs.IsNotFound()) {
            return rs;
          }
        }
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.queue, Val(key)));
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.dead, Val(key)));
      }
      MDB_val uid_key = ToVal(std::string_view(m.sop_instance_uid));
      std::span<const uint8_t> mapped;
      Status us = txn_->Get(d_.uid, uid_key, &mapped);
      if (us.ok() && mapped.size() == 8 && GetBe64(mapped.data()) == id) {
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.uid, uid_key));
      } else if (!us.ok() && !us.IsNotFound()) {
        return us;
      }
    }
    RELAIS_RETURN_IF_ERROR(txn_->Del(d_.objects, id_key.val()));
  } else if (!s.IsNotFound()) {
    return s;
  }
  RELAIS_RETURN_IF_ERROR(DropChunks(*txn_, d_, id));
  RELAIS_RETURN_IF_ERROR(DeleteAttempts(id));
  RELAIS_RETURN_IF_ERROR(ClearClass(id));
  return txn_->Del(d_.done, id_key.val());
}

Status DeliveryTxn::Sweep(int64_t now, size_t max_objects, bool* more, uint64_t* expired,
                          std::vector<ExpiredObject>* gone) {
  *more = false;
  if (!d_.has_lifecycle) return Status::OK();
  // The due objects of each class: a range of the time index per class,
  // from its oldest row to the cutoff. Costs the rows that are due.
  std::vector<std::pair<uint64_t, ObjectClass>> due;
  for (ObjectClass c : {ObjectClass::kDropped, ObjectClass::kUnrouted, ObjectClass::kDelivered, ObjectClass::kDead}) {
    const int64_t retention = retentions_.For(c);
    if (retention < 0) continue;
    const int64_t cutoff = now - retention;
    if (cutoff < 0) continue;
    std::vector<uint8_t> from = EncodeExpiryKey(c, 0, 0);
    RELAIS_RETURN_IF_ERROR(ForEachRow(*txn_, d_.expiry, from, [&](const MDB_val& k, const MDB_val&, bool* go_on) {
      const auto* p = static_cast<const uint8_t*>(k.mv_data);
      if (k.mv_size != 17 || p[0] != static_cast<uint8_t>(c) || static_cast<int64_t>(GetBe64(p + 1)) > cutoff) {
        *go_on = false;
        return Status::OK();
      }
      if (due.size() == max_objects) {
        *more = true;
        *go_on = false;
        return Status::OK();
      }
      due.emplace_back(GetBe64(p + 9), c);
      return Status::OK();
    }));
  }
  for (auto [id, c] : due) {
    IdKey id_key(id);
    std::span<const uint8_t> record;
    Status s = txn_->Get(d_.objects, id_key.val(), &record);
    if (!s.ok() && !s.IsNotFound()) return s;
    ObjectMeta m;
    ExpiredObject e;
    e.id = id;
    e.object_class = c;
    if (d_.has_lifecycle) {
      std::span<const uint8_t> v;
      LifeRow row;
      if (txn_->Get(d_.life, id_key.val(), &v).ok() && DecodeLife(v, &row).ok()) e.since_unix_ms = row.since_unix_ms;
    }
    if (s.ok() && DecodeMeta(record, &m).ok()) {
      e.sop_instance_uid = m.sop_instance_uid;
      e.study_instance_uid = m.study_instance_uid;
      // The index is kept in the transactions that change rows; check
      // anyway rather than drop an object that still has somewhere to go.
      ObjectClass now_class;
      int64_t since;
      RELAIS_RETURN_IF_ERROR(ExpectedClass(*txn_, d_, m, now, &now_class, &since));
      if (now_class != c && (now_class == ObjectClass::kQueued || now_class == ObjectClass::kDead)) {
        RELAIS_RETURN_IF_ERROR(SetClass(id, now_class, now, m.stored_size));
        continue;
      }
      if (c == ObjectClass::kDead) {
        // Its dead letters expired: purged with the object.
        for (const Route& r : m.routes) {
          std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
          Status error;
          if (Exists(*txn_, d_.dead, key, &error)) e.dead_destinations.push_back(r.destination);
          RELAIS_RETURN_IF_ERROR(error);
          RELAIS_RETURN_IF_ERROR(txn_->Del(d_.dead, Val(key)));
        }
      }
    }
    RELAIS_RETURN_IF_ERROR(RemoveObject(id));
    ++expired[static_cast<size_t>(c)];
    if (gone != nullptr) gone->push_back(std::move(e));
  }
  return Status::OK();
}

}  // namespace relais::store

namespace relais::store {

const char* ObjectClassName(ObjectClass c) {
  switch (c) {
    case ObjectClass::kQueued: return "queued";
    case ObjectClass::kDead: return "dead";
    case ObjectClass::kDelivered: return "delivered";
    case ObjectClass::kUnrouted: return "unrouted";
    case ObjectClass::kDropped: return "dropped";
    case ObjectClass::kNone: break;
  }
  return "unknown";
}

bool ParseObjectClass(std::string_view name, ObjectClass* out) {
  for (size_t c = 1; c < kObjectClassCount; ++c) {
    if (name == ObjectClassName(static_cast<ObjectClass>(c))) {
      *out = static_cast<ObjectClass>(c);
      return true;
    }
  }
  return false;
}

}  // namespace relais::store
