#include "store/delivery.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>

#include "base/log.h"
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

Status ReadTotals(const Txn& txn, const Dbis& d, Totals* totals) {
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaRawBytes, &totals->raw_bytes));
  return GetMetaU64(txn, d.meta, kMetaStoredBytes, &totals->stored_bytes);
}

Status WriteTotals(Txn& txn, const Dbis& d, const Totals& totals) {
  RELAIS_RETURN_IF_ERROR(PutMetaU64(txn, d.meta, kMetaRawBytes, totals.raw_bytes));
  return PutMetaU64(txn, d.meta, kMetaStoredBytes, totals.stored_bytes);
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
    bool finished = false;
    switch (u.kind) {
      case QueueUpdate::Kind::kDelivered:
        if (!ls.ok()) continue;  // delivered, purged or replaced meanwhile
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.queue, k));
        RELAIS_RETURN_IF_ERROR(RecordDelivered(*txn_, d_, u.object_id, u.destination, now));
        finished = true;
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
        break;
      }
      case QueueUpdate::Kind::kResend:
      case QueueUpdate::Kind::kRequeue: {
        if (ds.ok()) {
          RELAIS_RETURN_IF_ERROR(DecodeDeadValue(dead, &row));
          RELAIS_RETURN_IF_ERROR(txn_->Del(d_.dead, k));
        } else if (ls.ok()) {
          RELAIS_RETURN_IF_ERROR(DecodeQueueValue(live, &row));
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
        row.next_attempt_unix_ms = 0;
        row.dead_unix_ms = 0;
        RELAIS_RETURN_IF_ERROR(txn_->Put(d_.queue, k, Val(EncodeQueueValue(row))));
        // The object has a row again: it is no longer waiting for Sweep.
        IdKey id_key(u.object_id);
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.done, id_key.val()));
        woken->insert(u.destination);
        break;
      }
      case QueueUpdate::Kind::kPurge:
        if (!ls.ok() && !ds.ok()) continue;
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.queue, k));
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.dead, k));
        finished = true;
        break;
    }
    if (u.log_attempt) RELAIS_RETURN_IF_ERROR(LogAttempt(u, now));
    if (finished) RELAIS_RETURN_IF_ERROR(MaybeFinish(u.object_id, now));
  }
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

Status DeliveryTxn::MaybeFinish(uint64_t id, int64_t now) {
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
  Status error;
  for (const Route& r : m.routes) {
    std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
    if (Exists(*txn_, d_.queue, key, &error) || Exists(*txn_, d_.dead, key, &error)) return Status::OK();
    RELAIS_RETURN_IF_ERROR(error);
  }
  if (retention_ms_ <= 0) return RemoveObject(id);
  uint8_t b[8];
  PutLe64(b, static_cast<uint64_t>(now));
  return txn_->Put(d_.done, id_key.val(), ToVal(std::span<const uint8_t>(b)));
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
      for (const Route& r : m.routes) {
        std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
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
  return txn_->Del(d_.done, id_key.val());
}

Status DeliveryTxn::Sweep(int64_t now, size_t max_objects, bool* more) {
  *more = false;
  const int64_t cutoff = now - std::max<int64_t>(retention_ms_, 0);
  std::vector<uint64_t> due;
  {
    RELAIS_RETURN_IF_ERROR(ForEachRow(*txn_, d_.done, {}, [&](const MDB_val& k, const MDB_val& v, bool* go_on) {
      if (k.mv_size != 8 || v.mv_size != 8) return Status::Corruption("done row is not 8 + 8 bytes");
      if (static_cast<int64_t>(GetLe64(static_cast<const uint8_t*>(v.mv_data))) > cutoff) return Status::OK();
      if (due.size() == max_objects) {
        *more = true;
        *go_on = false;
        return Status::OK();
      }
      due.push_back(GetBe64(static_cast<const uint8_t*>(k.mv_data)));
      return Status::OK();
    }));
  }
  for (uint64_t id : due) {
    // A done row is written only when no row of the object remains, and a
    // kRequeue deletes it; check anyway rather than drop a queued object.
    IdKey id_key(id);
    std::span<const uint8_t> record;
    Status s = txn_->Get(d_.objects, id_key.val(), &record);
    if (s.ok()) {
      ObjectMeta m;
      bool has_rows = !DecodeMeta(record, &m).ok();  // undecodable: keep
      Status error;
      for (const Route& r : m.routes) {
        std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
        has_rows = has_rows || Exists(*txn_, d_.queue, key, &error) || Exists(*txn_, d_.dead, key, &error);
        RELAIS_RETURN_IF_ERROR(error);
      }
      if (has_rows) {
        RELAIS_RETURN_IF_ERROR(txn_->Del(d_.done, id_key.val()));
        continue;
      }
    } else if (!s.IsNotFound()) {
      return s;
    }
    RELAIS_RETURN_IF_ERROR(RemoveObject(id));
  }
  return Status::OK();
}

}  // namespace relais::store
