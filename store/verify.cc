#include "store/verify.h"

#include <xxhash.h>

#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "store/chunk_codec.h"
#include "store/delivery.h"
#include "store/history.h"
#include "store/meta_codec.h"
#include "store/queue_codec.h"
#include "store/resend.h"

namespace relais::store {
namespace {

// One walk over one snapshot. Each Check* reads one table and adds what it
// finds to the report; the objects come first, so the other tables can be
// checked against `chunk_counts_` (id -> chunk_count of every readable
// object record).
class Verifier {
 public:
  static constexpr uint32_t kUnknownChunkCount = 0xFFFFFFFF;

  Verifier(const LmdbEnv& env, const Txn& txn, const std::function<void(const VerifyProgress&)>& progress,
           RepairTargets* targets)
      : d_(env.dbis()), txn_(txn), progress_(progress), targets_(targets != nullptr ? targets : &ignored_) {}

  Status Run() {
    if (d_.has_lifecycle) {
      uint64_t built = 0;
      RELAIS_RETURN_IF_ERROR(GetMetaU64(txn_, d_.meta, kMetaLifecycle, &built));
      check_life_ = built == 1;
    }
    RELAIS_RETURN_IF_ERROR(CheckObjects());
    RELAIS_RETURN_IF_ERROR(CheckChunks());
    RELAIS_RETURN_IF_ERROR(CheckUids());
    RELAIS_RETURN_IF_ERROR(CheckRows(d_.queue, /*dead=*/false));
    if (d_.has_delivery) {
      RELAIS_RETURN_IF_ERROR(CheckRows(d_.dead, /*dead=*/true));
      RELAIS_RETURN_IF_ERROR(CheckDone());
      RELAIS_RETURN_IF_ERROR(CheckAttempts());
    }
    if (d_.has_delivered) RELAIS_RETURN_IF_ERROR(CheckDelivered());
    if (d_.has_history) RELAIS_RETURN_IF_ERROR(CheckHistory());
    RELAIS_RETURN_IF_ERROR(CheckPending());
    RELAIS_RETURN_IF_ERROR(CheckTotals());
    if (check_life_) RELAIS_RETURN_IF_ERROR(CheckLifecycle());
    Progress(/*force=*/true);
    return Status::OK();
  }

  VerifyReport& report() { return report_; }

 private:
  void Problem(uint64_t id, std::string uid, std::string what, bool unreadable = false) {
    ++report_.problem_count;
    if (unreadable) targets_->unreadable.emplace_back(id, what);
    if (report_.problems.size() < VerifyReport::kMaxListed) {
      report_.problems.push_back(VerifyProblem{id, std::move(uid), std::move(what), unreadable});
    }
  }

  void Progress(bool force) {
    if (!progress_) return;
    int64_t now = NowMs();
    if (!force && now - last_progress_ms_ < 1000) return;
    last_progress_ms_ = now;
    progress_(VerifyProgress{report_.objects, objects_total_, report_.raw_bytes});
  }

  Status CheckObjects() {
    MDB_stat st;
    RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_stat(txn_.get(), d_.objects, &st), "mdb_stat objects"));
    objects_total_ = st.ms_entries;
    return ForEachRow(txn_, d_.objects, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      ++report_.objects;
      if (k.mv_size != 8) {
        Problem(0, "", "an object key is " + std::to_string(k.mv_size) + " bytes, not 8");
        return Status::OK();
      }
      const uint64_t id = GetBe64(static_cast<const uint8_t*>(k.mv_data));
      ObjectMeta m;
      Status s = DecodeMeta(FromVal(v), &m);
      if (!s.ok()) {
        Problem(id, "", "its record does not decode: " + s.message(), /*unreadable=*/true);
        chunk_counts_[id] = kUnknownChunkCount;  // it exists: its rows and chunks are not orphans
        CountLifeOf(id);
        return Status::OK();
      }
      if (m.id != id) Problem(id, m.sop_instance_uid, "its record says id " + std::to_string(m.id));
      chunk_counts_[id] = m.chunk_count;
      raw_total_ += m.raw_size;
      stored_total_ += m.stored_size;
      RELAIS_RETURN_IF_ERROR(ReadBack(m));
      RELAIS_RETURN_IF_ERROR(CheckIndexOf(m));
      Progress(/*force=*/false);
      return Status::OK();
    });
  }

  // Reads the object's chunks and checks them against its record
  // (CheckObjectBytes, shared with the background scrub).
  Status ReadBack(const ObjectMeta& m) {
    uint64_t raw = 0, stored = 0;
    std::string damage;
    RELAIS_RETURN_IF_ERROR(CheckObjectBytes(txn_, d_, m, &raw, &stored, &damage));
    report_.raw_bytes += raw;
    if (!damage.empty()) {
      Problem(m.id, m.sop_instance_uid, damage, /*unreadable=*/true);
    } else if (stored != m.stored_size) {
      Problem(m.id, m.sop_instance_uid,
              "its chunks take " + std::to_string(stored) + " bytes, its record says " + std::to_string(m.stored_size));
    }
    return Status::OK();
  }

  void LifeProblem(uint64_t id, std::string uid, std::string what) {
    targets_->lifecycle_wrong = true;
    Problem(id, std::move(uid), std::move(what));
  }

  // The object's `life` row names the class its rows put it in, and its
  // `expiry` row exists.
  Status CheckLifeOf(const ObjectMeta& m) {
    ObjectClass want;
    int64_t unused_since;
    RELAIS_RETURN_IF_ERROR(ExpectedClass(txn_, d_, m, 0, &want, &unused_since));
    IdKey key(m.id);
    std::span<const uint8_t> v;
    Status s = txn_.Get(d_.life, key.val(), &v);
    if (s.IsNotFound()) {
      LifeProblem(m.id, m.sop_instance_uid, "no lifecycle row: nothing will ever remove it");
      return Status::OK();
    }
    RELAIS_RETURN_IF_ERROR(s);
    LifeRow row;
    if (!DecodeLife(v, &row).ok()) {
      LifeProblem(m.id, m.sop_instance_uid, "its lifecycle row does not decode");
      return Status::OK();
    }
    // A routed object without rows nor `done` row is reported by
    // CheckIndexOf already: its class is moot until that is repaired.
    bool moot = false;
    if (want == ObjectClass::kDelivered && d_.has_delivery) {
      std::span<const uint8_t> done;
      Status ds = txn_.Get(d_.done, key.val(), &done);
      if (!ds.ok() && !ds.IsNotFound()) return ds;
      moot = ds.IsNotFound();
    }
    if (row.object_class != want && !moot) {
      LifeProblem(m.id, m.sop_instance_uid,
                  std::string("its lifecycle row says ") + ObjectClassName(row.object_class) + ", its rows make it " +
                      ObjectClassName(want));
    }
    if (row.stored_size != m.stored_size) {
      LifeProblem(m.id, m.sop_instance_uid, "its lifecycle row has another size than its record");
    }
    std::vector<uint8_t> ek = EncodeExpiryKey(row.object_class, row.since_unix_ms, m.id);
    std::span<const uint8_t> unused;
    s = txn_.Get(d_.expiry, ToVal(std::span<const uint8_t>(ek)), &unused);
    if (s.IsNotFound()) {
      LifeProblem(m.id, m.sop_instance_uid, "no expiry index row for its class: Sweep would never remove it");
    } else {
      RELAIS_RETURN_IF_ERROR(s);
    }
    const size_t i = static_cast<size_t>(row.object_class);
    class_objects_[i] += 1;
    class_bytes_[i] += row.stored_size;
    return Status::OK();
  }

  // Counts the lifecycle row of an object whose record does not decode
  // (its problem is reported already; Repair quarantines it).
  void CountLifeOf(uint64_t id) {
    if (!check_life_) return;
    IdKey key(id);
    std::span<const uint8_t> v;
    LifeRow row;
    if (!txn_.Get(d_.life, key.val(), &v).ok() || !DecodeLife(v, &row).ok()) return;
    class_objects_[static_cast<size_t>(row.object_class)] += 1;
    class_bytes_[static_cast<size_t>(row.object_class)] += row.stored_size;
  }

  // Every `life` row names an object, every `expiry` row its object's
  // `life` row, and the class counts of `meta` add up.
  Status CheckLifecycle() {
    RELAIS_RETURN_IF_ERROR(ForEachRow(txn_, d_.life, {}, [&](const MDB_val& k, const MDB_val&, bool*) {
      ++report_.life_rows;
      const uint64_t id = k.mv_size == 8 ? GetBe64(static_cast<const uint8_t*>(k.mv_data)) : 0;
      if (!chunk_counts_.contains(id)) LifeProblem(id, "", "a lifecycle row names an object that does not exist");
      return Status::OK();
    }));
    RELAIS_RETURN_IF_ERROR(ForEachRow(txn_, d_.expiry, {}, [&](const MDB_val& k, const MDB_val&, bool*) {
      const auto* p = static_cast<const uint8_t*>(k.mv_data);
      if (k.mv_size != 17) {
        LifeProblem(0, "", "an expiry index key is not 17 bytes");
        return Status::OK();
      }
      const uint64_t id = GetBe64(p + 9);
      IdKey key(id);
      std::span<const uint8_t> v;
      LifeRow row;
      Status s = txn_.Get(d_.life, key.val(), &v);
      if (!s.ok() && !s.IsNotFound()) return s;
      if (!s.ok() || !DecodeLife(v, &row).ok() || static_cast<uint8_t>(row.object_class) != p[0] ||
          static_cast<uint64_t>(std::max<int64_t>(row.since_unix_ms, 0)) != GetBe64(p + 1)) {
        LifeProblem(id, "", "an expiry index row does not match the object's lifecycle row");
      }
      return Status::OK();
    }));
    Totals t;
    RELAIS_RETURN_IF_ERROR(ReadTotals(txn_, d_, &t));
    for (size_t c = 1; c < kObjectClassCount; ++c) {
      if (t.class_objects[c] != class_objects_[c] || t.class_bytes[c] != class_bytes_[c]) {
        LifeProblem(0, "",
                    std::string("meta counts of class ") + ObjectClassName(static_cast<ObjectClass>(c)) + " say " +
                        std::to_string(t.class_objects[c]) + " objects / " + std::to_string(t.class_bytes[c]) +
                        " bytes, the lifecycle rows add up to " + std::to_string(class_objects_[c]) + " / " +
                        std::to_string(class_bytes_[c]));
      }
    }
    return Status::OK();
  }

  // The object's uid row, and a queue, dead or done row for its routes.
  Status CheckIndexOf(const ObjectMeta& m) {
    if (check_life_) RELAIS_RETURN_IF_ERROR(CheckLifeOf(m));
    std::span<const uint8_t> id_bytes;
    Status s = txn_.Get(d_.uid, ToVal(std::string_view(m.sop_instance_uid)), &id_bytes);
    if (s.IsNotFound()) {
      Problem(m.id, m.sop_instance_uid, "no uid index row: the object cannot be found by its SOP Instance UID");
    } else {
      RELAIS_RETURN_IF_ERROR(s);
      if (id_bytes.size() == 8 && GetBe64(id_bytes.data()) != m.id) {
        Problem(m.id, m.sop_instance_uid,
                "the uid index names object " + std::to_string(GetBe64(id_bytes.data())) + " for its UID");
      }
    }
    if (m.routes.empty()) return Status::OK();
    bool any_row = false;
    for (const Route& r : m.routes) {
      bool live = false, dead = false;
      RELAIS_RETURN_IF_ERROR(HasRow(d_.queue, r, m.id, &live));
      if (d_.has_delivery) RELAIS_RETURN_IF_ERROR(HasRow(d_.dead, r, m.id, &dead));
      if (live && dead) Problem(m.id, m.sop_instance_uid, "both a queue and a dead row for " + r.destination);
      any_row = any_row || live || dead;
    }
    if (any_row || !d_.has_delivery) return Status::OK();
    IdKey key(m.id);
    std::span<const uint8_t> done;
    s = txn_.Get(d_.done, key.val(), &done);
    if (s.IsNotFound()) {
      Problem(m.id, m.sop_instance_uid,
              "routed, but it has no queue, dead or done row: nothing will send or remove it");
      return Status::OK();
    }
    return s;
  }

  Status HasRow(MDB_dbi dbi, const Route& r, uint64_t id, bool* found) {
    std::vector<uint8_t> key = EncodeQueueKey(r.destination, r.priority, id);
    std::span<const uint8_t> value;
    Status s = txn_.Get(dbi, ToVal(std::span<const uint8_t>(key)), &value);
    *found = s.ok();
    return s.IsNotFound() ? Status::OK() : s;
  }

  Status CheckChunks() {
    return ForEachRow(txn_, d_.chunks, {}, [&](const MDB_val& k, const MDB_val&, bool*) {
      ++report_.chunks;
      if (k.mv_size != 12) {
        Problem(0, "", "a chunk key is " + std::to_string(k.mv_size) + " bytes, not 12");
        return Status::OK();
      }
      const uint64_t id = GetBe64(static_cast<const uint8_t*>(k.mv_data));
      const uint32_t index = GetBe32(static_cast<const uint8_t*>(k.mv_data) + 8);
      auto it = chunk_counts_.find(id);
      if (it != chunk_counts_.end()) {
        if (index >= it->second) {
          Problem(id, "", "chunk " + std::to_string(index) + " is past its record's " + std::to_string(it->second));
        }
        return Status::OK();
      }
      IdKey ik(id);
      std::span<const uint8_t> unused;
      Status s = txn_.Get(d_.pending, ik.val(), &unused);
      if (s.IsNotFound()) {
        if (orphan_chunk_ids_.insert(id).second) {
          Problem(id, "", "chunks of an object that has no record and is not being written (orphan chunks)");
          targets_->orphan_chunks.push_back(id);
        }
        return Status::OK();
      }
      return s;
    });
  }

  Status CheckUids() {
    return ForEachRow(txn_, d_.uid, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      ++report_.uid_rows;
      std::string uid(static_cast<const char*>(k.mv_data), k.mv_size);
      if (v.mv_size != 8) {
        Problem(0, uid, "its uid index row is " + std::to_string(v.mv_size) + " bytes, not 8");
        targets_->orphan_uids.push_back(uid);
        return Status::OK();
      }
      const uint64_t id = GetBe64(static_cast<const uint8_t*>(v.mv_data));
      if (!chunk_counts_.contains(id)) {
        Problem(id, uid, "the uid index names an object that does not exist");
        targets_->orphan_uids.push_back(uid);
        return Status::OK();
      }
      // CheckIndexOf saw the other direction; a row for another UID than the
      // record's is the one case left.
      IdKey ik(id);
      std::span<const uint8_t> record;
      RELAIS_RETURN_IF_ERROR(txn_.Get(d_.objects, ik.val(), &record));
      ObjectMeta m;
      if (DecodeMeta(record, &m).ok() && m.sop_instance_uid != uid) {
        Problem(id, uid, "the uid index maps this UID to an object whose UID is " + m.sop_instance_uid);
        targets_->orphan_uids.push_back(uid);
      }
      return Status::OK();
    });
  }

  // Queue or dead rows: each decodes, and its object exists and has that route.
  Status CheckRows(MDB_dbi dbi, bool dead) {
    const char* table = dead ? "dead" : "queue";
    auto& orphans = dead ? targets_->orphan_dead_keys : targets_->orphan_queue_keys;
    return ForEachRow(txn_, dbi, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      auto orphan = [&] { orphans.emplace_back(FromVal(k).begin(), FromVal(k).end()); };
      ++(dead ? report_.dead_rows : report_.queue_rows);
      QueueRow row;
      Status s = DecodeQueueKey(FromVal(k), &row);
      if (s.ok()) s = dead ? DecodeDeadValue(FromVal(v), &row) : DecodeQueueValue(FromVal(v), &row);
      if (!s.ok()) {
        Problem(row.object_id, "", std::string("a ") + table + " row does not decode: " + s.message());
        orphan();
        return Status::OK();
      }
      if (!chunk_counts_.contains(row.object_id)) {
        Problem(row.object_id, "",
                std::string("a ") + table + " row for " + row.destination + " names an object that does not exist");
        orphan();
        return Status::OK();
      }
      ObjectMeta m;
      if (!ReadRecord(row.object_id, &m)) return Status::OK();  // its record's problem is already listed
      for (const Route& r : m.routes) {
        if (r.destination == row.destination && r.priority == row.priority) return Status::OK();
      }
      Problem(row.object_id, m.sop_instance_uid,
              std::string("a ") + table + " row for " + row.destination + " is not among the object's routes");
      orphan();
      return Status::OK();
    });
  }

  Status CheckDone() {
    return ForEachRow(txn_, d_.done, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      ++report_.done_rows;
      if (k.mv_size != 8 || v.mv_size != 8) {
        Problem(0, "", "a done row is not 8 + 8 bytes");
        return Status::OK();
      }
      const uint64_t id = GetBe64(static_cast<const uint8_t*>(k.mv_data));
      if (!chunk_counts_.contains(id)) {
        Problem(id, "", "a done row names an object that does not exist");
        targets_->orphan_done.push_back(id);
      }
      return Status::OK();
    });
  }

  Status CheckAttempts() {
    return ForEachRow(txn_, d_.attempts, {}, [&](const MDB_val& k, const MDB_val&, bool*) {
      ++report_.attempt_rows;
      uint64_t id = 0;
      uint32_t seq = 0;
      if (!DecodeAttemptKey(FromVal(k), &id, &seq).ok()) {
        Problem(0, "", "an attempt key does not decode");
        return Status::OK();
      }
      if (!chunk_counts_.contains(id) && orphan_attempt_ids_.insert(id).second) {
        Problem(id, "", "attempt log rows of an object that does not exist");
        targets_->orphan_attempts.push_back(id);
      }
      return Status::OK();
    });
  }

  // `delivered` rows belong to no object (they outlive them): each must
  // name a destination and a SOP Instance UID and hold a time and checksum.
  Status CheckDelivered() {
    return ForEachRow(txn_, d_.delivered, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      ++report_.delivered_rows;
      std::string destination, uid;
      Delivered row;
      Status s = DecodeDeliveredKey(FromVal(k), &destination, &uid);
      if (s.ok()) s = DecodeDelivered(FromVal(v), &row);
      if (!s.ok()) {
        Problem(0, uid, "a delivered row does not decode: " + s.message());
        std::span<const uint8_t> key = FromVal(k);
        targets_->bad_delivered_keys.emplace_back(key.begin(), key.end());
      }
      return Status::OK();
    });
  }

  // `history` (FORMAT.md): every row decodes; a destination row follows its
  // study's record. Counts are not checked against the rows: they are a
  // history, not an index (an older Relais may have changed rows meanwhile).
  Status CheckHistory() {
    std::string study;
    return ForEachRow(txn_, d_.history, {}, [&](const MDB_val& k, const MDB_val& v, bool*) {
      std::span<const uint8_t> key = FromVal(k);
      auto nul = std::find(key.begin(), key.end(), uint8_t{0});
      Status s;
      std::string uid(key.begin(), nul);
      if (nul == key.end()) {
        StudyHistory h;
        s = DecodeStudyRecord(FromVal(v), &h);
        study = uid;
      } else {
        StudyDestination r;
        s = DecodeStudyDestination(FromVal(v), &r);
        if (s.ok() && (uid != study || nul + 1 == key.end())) {
          s = Status::Corruption("a history destination row has no study record or no destination");
        }
      }
      if (!s.ok()) {
        Problem(0, uid, "a history row does not decode: " + s.message());
        targets_->bad_history_keys.emplace_back(key.begin(), key.end());
      }
      return Status::OK();
    });
  }

  Status CheckPending() {
    MDB_stat st;
    RELAIS_RETURN_IF_ERROR(LmdbStatus(mdb_stat(txn_.get(), d_.pending, &st), "mdb_stat pending"));
    report_.pending_objects = st.ms_entries;
    return Status::OK();
  }

  Status CheckTotals() {
    uint64_t raw = 0, stored = 0;
    RELAIS_RETURN_IF_ERROR(GetMetaU64(txn_, d_.meta, kMetaRawBytes, &raw));
    RELAIS_RETURN_IF_ERROR(GetMetaU64(txn_, d_.meta, kMetaStoredBytes, &stored));
    targets_->totals_wrong = raw != raw_total_ || stored != stored_total_;
    if (raw != raw_total_) {
      Problem(0, "",
              "meta raw_bytes is " + std::to_string(raw) + ", the records add up to " + std::to_string(raw_total_));
    }
    if (stored != stored_total_) {
      Problem(0, "",
              "meta stored_bytes is " + std::to_string(stored) + ", the records add up to " +
                  std::to_string(stored_total_));
    }
    return Status::OK();
  }

  bool ReadRecord(uint64_t id, ObjectMeta* m) {
    IdKey ik(id);
    std::span<const uint8_t> record;
    return txn_.Get(d_.objects, ik.val(), &record).ok() && DecodeMeta(record, m).ok();
  }

  const Dbis& d_;
  const Txn& txn_;
  const std::function<void(const VerifyProgress&)>& progress_;
  RepairTargets ignored_;
  RepairTargets* const targets_;
  VerifyReport report_;
  uint64_t objects_total_ = 0;
  uint64_t raw_total_ = 0;
  uint64_t stored_total_ = 0;
  int64_t last_progress_ms_ = 0;
  std::unordered_map<uint64_t, uint32_t> chunk_counts_;
  std::unordered_set<uint64_t> orphan_chunk_ids_;
  std::unordered_set<uint64_t> orphan_attempt_ids_;
  bool check_life_ = false;
  uint64_t class_objects_[kObjectClassCount] = {};
  uint64_t class_bytes_[kObjectClassCount] = {};
};

}  // namespace

Status CheckObjectBytes(const Txn& txn, const Dbis& d, const ObjectMeta& m, uint64_t* raw_bytes, uint64_t* stored_bytes,
                        std::string* damage) {
  XXH3_state_t* hash = XXH3_createState();
  XXH3_64bits_reset(hash);
  std::vector<uint8_t> raw;
  uint64_t total = 0, stored = 0;
  damage->clear();
  for (uint32_t i = 0; i < m.chunk_count && damage->empty(); ++i) {
    ChunkKey key(m.id, i);
    std::span<const uint8_t> value;
    Status s = txn.Get(d.chunks, key.val(), &value);
    if (s.IsNotFound()) {
      *damage = "chunk " + std::to_string(i) + " of " + std::to_string(m.chunk_count) + " is missing";
      break;
    }
    if (!s.ok()) {
      XXH3_freeState(hash);
      return s;
    }
    stored += value.size();
    s = DecodeChunk(value, m.raw_size - total, &raw);
    if (!s.ok()) {
      *damage = "chunk " + std::to_string(i) + " does not decode: " + s.message();
      break;
    }
    total += raw.size();
    XXH3_64bits_update(hash, raw.data(), raw.size());
  }
  uint64_t digest = XXH3_64bits_digest(hash);
  XXH3_freeState(hash);
  *raw_bytes = total;
  *stored_bytes = stored;
  if (damage->empty() && total != m.raw_size) {
    *damage = "its chunks hold " + std::to_string(total) + " bytes, its record says " + std::to_string(m.raw_size);
  }
  if (damage->empty() && digest != m.checksum)
    *damage = "checksum mismatch: the bytes read back are not those received";
  return Status::OK();
}

Status ScrubEnv(const LmdbEnv& env, uint64_t from_id, size_t max_objects, uint64_t max_bytes, ScrubBatch* out) {
  *out = ScrubBatch{};
  out->next_id = from_id;
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(env, /*write=*/false));
  const Dbis& d = env.dbis();
  Cursor c;
  RELAIS_RETURN_IF_ERROR(c.Open(txn, d.objects));
  IdKey first(from_id);
  MDB_val k = first.val(), v;
  Status s = c.Get(&k, &v, MDB_SET_RANGE);
  for (; s.ok(); s = c.Get(&k, &v, MDB_NEXT)) {
    if (out->objects >= max_objects || (max_bytes > 0 && out->raw_bytes >= max_bytes)) return Status::OK();
    if (k.mv_size != 8) continue;  // Verify reports it
    const uint64_t id = GetBe64(static_cast<const uint8_t*>(k.mv_data));
    out->next_id = id + 1;
    ++out->objects;
    ObjectMeta m;
    Status ds = DecodeMeta(FromVal(v), &m);
    std::string damage;
    if (!ds.ok()) {
      damage = "its record does not decode: " + ds.message();
    } else {
      uint64_t raw = 0, stored = 0;
      m.id = id;
      RELAIS_RETURN_IF_ERROR(CheckObjectBytes(txn, d, m, &raw, &stored, &damage));
      out->raw_bytes += raw;
    }
    if (!damage.empty()) out->damaged.push_back(VerifyProblem{id, m.sop_instance_uid, damage, true});
  }
  if (!s.IsNotFound()) return s;
  out->next_id = 0;  // past the last object: the next batch starts again from the first
  out->wrapped = true;
  return Status::OK();
}

Result<VerifyReport> VerifyEnv(const LmdbEnv& env, const std::function<void(const VerifyProgress&)>& progress,
                               RepairTargets* targets) {
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(env, false));
  Verifier v(env, txn, progress, targets);
  RELAIS_RETURN_IF_ERROR(v.Run());
  return std::move(v.report());
}

std::vector<uint8_t> EncodeQuarantine(int64_t unix_ms, const std::string& reason, std::span<const uint8_t> record) {
  std::vector<uint8_t> out(8 + 4 + reason.size() + 4 + record.size());
  uint8_t* p = out.data();
  PutLe64(p, static_cast<uint64_t>(unix_ms));
  PutLe32(p + 8, static_cast<uint32_t>(reason.size()));
  std::copy(reason.begin(), reason.end(), p + 12);
  p += 12 + reason.size();
  PutLe32(p, static_cast<uint32_t>(record.size()));
  std::copy(record.begin(), record.end(), p + 4);
  return out;
}

Status DecodeQuarantine(uint64_t id, std::span<const uint8_t> v, QuarantineEntry* e) {
  auto truncated = [id] {
    return Status::Corruption("quarantine row of object " + std::to_string(id) + " is truncated");
  };
  if (v.size() < 12) return truncated();
  e->object_id = id;
  e->quarantined_unix_ms = static_cast<int64_t>(GetLe64(v.data()));
  uint64_t n = GetLe32(v.data() + 8);
  if (v.size() - 12 < n + 4) return truncated();
  e->reason.assign(reinterpret_cast<const char*>(v.data() + 12), n);
  std::span<const uint8_t> rest = v.subspan(12 + n);
  uint64_t r = GetLe32(rest.data());
  if (rest.size() - 4 < r) return truncated();
  e->meta = ObjectMeta{};
  if (!DecodeMeta(rest.subspan(4, r), &e->meta).ok()) e->meta = ObjectMeta{};
  e->meta.id = id;
  return Status::OK();
}

namespace {

// Runs `change(txn, item, &changed)` for each item, 256 to a write
// transaction; counts the changes made.
template <typename T, typename Change>
Status InBatches(const LmdbEnv& env, const std::vector<T>& items, uint64_t* count, Change change) {
  for (size_t start = 0; start < items.size(); start += 256) {
    Txn txn;
    RELAIS_RETURN_IF_ERROR(txn.Begin(env, /*write=*/true));
    for (size_t i = start; i < std::min(items.size(), start + 256); ++i) {
      bool changed = false;
      RELAIS_RETURN_IF_ERROR(change(txn, items[i], &changed));
      if (changed) ++*count;
    }
    RELAIS_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::OK();
}

bool Has(const Txn& txn, MDB_dbi dbi, uint64_t id, Status* error) {
  IdKey key(id);
  std::span<const uint8_t> unused;
  Status s = txn.Get(dbi, key.val(), &unused);
  if (!s.ok() && !s.IsNotFound()) *error = s;
  return s.ok();
}

// Still an orphan, seen from inside the write transaction?
bool RowIsOrphan(const Txn& txn, const Dbis& d, std::span<const uint8_t> key, Status* error) {
  QueueRow row;
  if (!DecodeQueueKey(key, &row).ok()) return true;
  IdKey ik(row.object_id);
  std::span<const uint8_t> record;
  Status s = txn.Get(d.objects, ik.val(), &record);
  if (s.IsNotFound()) return true;
  if (!s.ok()) {
    *error = s;
    return false;
  }
  ObjectMeta m;
  if (!DecodeMeta(record, &m).ok()) return false;  // its record is the problem; leave its rows to its quarantine
  for (const Route& r : m.routes) {
    if (r.destination == row.destination && r.priority == row.priority) return false;
  }
  return true;
}

}  // namespace

Status RepairEnv(const LmdbEnv& env, const RepairTargets& t, int64_t now, RepairReport* report) {
  const Dbis& d = env.dbis();
  if (!d.has_quarantine || !d.has_delivery) return Status::InvalidArgument("the store is not open for writing");
  RELAIS_RETURN_IF_ERROR(
      InBatches(env, t.unreadable, &report->quarantined, [&](Txn& txn, const auto& item, bool* changed) {
        IdKey key(item.first);
        std::span<const uint8_t> record;
        Status s = txn.Get(d.objects, key.val(), &record);
        if (s.IsNotFound()) return Status::OK();  // removed meanwhile
        RELAIS_RETURN_IF_ERROR(s);
        std::vector<uint8_t> value = EncodeQuarantine(now, item.second, record);
        RELAIS_RETURN_IF_ERROR(txn.Put(d.quarantine, key.val(), ToVal(std::span<const uint8_t>(value))));
        Totals totals;
        RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &totals));
        DeliveryTxn dt(&txn, d, 0, &totals);
        RELAIS_RETURN_IF_ERROR(dt.RemoveObject(item.first));
        *changed = true;
        return WriteTotals(txn, d, totals);
      }));
  Status error;
  auto unless = [&](bool keep, Txn& txn, MDB_dbi dbi, uint64_t id, bool* changed) {
    RELAIS_RETURN_IF_ERROR(error);
    if (keep) return Status::OK();
    *changed = true;
    return DeleteObjectRows(txn, dbi, id);
  };
  RELAIS_RETURN_IF_ERROR(InBatches(env, t.orphan_chunks, &report->rows_removed, [&](Txn& txn, uint64_t id, bool* c) {
    bool keep = Has(txn, d.objects, id, &error) || Has(txn, d.pending, id, &error);
    return unless(keep, txn, d.chunks, id, c);
  }));
  RELAIS_RETURN_IF_ERROR(InBatches(env, t.orphan_attempts, &report->rows_removed, [&](Txn& txn, uint64_t id, bool* c) {
    return unless(Has(txn, d.objects, id, &error), txn, d.attempts, id, c);
  }));
  RELAIS_RETURN_IF_ERROR(InBatches(env, t.orphan_done, &report->rows_removed, [&](Txn& txn, uint64_t id, bool* c) {
    if (Has(txn, d.objects, id, &error)) return error;
    RELAIS_RETURN_IF_ERROR(error);
    IdKey key(id);
    *c = true;
    return txn.Del(d.done, key.val());
  }));
  RELAIS_RETURN_IF_ERROR(
      InBatches(env, t.orphan_uids, &report->rows_removed, [&](Txn& txn, const std::string& uid, bool* c) {
        std::span<const uint8_t> v;
        Status s = txn.Get(d.uid, ToVal(std::string_view(uid)), &v);
        if (s.IsNotFound()) return Status::OK();
        RELAIS_RETURN_IF_ERROR(s);
        if (v.size() == 8) {
          IdKey key(GetBe64(v.data()));
          std::span<const uint8_t> record;
          s = txn.Get(d.objects, key.val(), &record);
          ObjectMeta m;
          if (s.ok() && (!DecodeMeta(record, &m).ok() || m.sop_instance_uid == uid)) return Status::OK();
          if (!s.ok() && !s.IsNotFound()) return s;
        }
        *c = true;
        return txn.Del(d.uid, ToVal(std::string_view(uid)));
      }));
  for (const auto& [keys, table] : {std::pair{&t.orphan_queue_keys, d.queue}, std::pair{&t.orphan_dead_keys, d.dead}}) {
    MDB_dbi dbi = table;  // a structured binding cannot be captured (C++20, clang)
    RELAIS_RETURN_IF_ERROR(InBatches(env, *keys, &report->rows_removed, [&](Txn& txn, const auto& key, bool* c) {
      bool orphan = RowIsOrphan(txn, d, key, &error);
      RELAIS_RETURN_IF_ERROR(error);
      if (!orphan) return Status::OK();
      *c = true;
      return txn.Del(dbi, ToVal(std::span<const uint8_t>(key)));
    }));
  }
  if (d.has_delivered) {
    RELAIS_RETURN_IF_ERROR(
        InBatches(env, t.bad_delivered_keys, &report->rows_removed, [&](Txn& txn, const auto& key, bool* c) {
          *c = true;
          return txn.Del(d.delivered, ToVal(std::span<const uint8_t>(key)));
        }));
  }
  if (d.has_history) {
    RELAIS_RETURN_IF_ERROR(
        InBatches(env, t.bad_history_keys, &report->rows_removed, [&](Txn& txn, const auto& key, bool* c) {
          *c = true;
          return txn.Del(d.history, ToVal(std::span<const uint8_t>(key)));
        }));
  }
  if (t.lifecycle_wrong) {
    // Rebuilt from the rows, in short transactions (FORMAT.md "Lifecycle").
    RELAIS_RETURN_IF_ERROR(BuildLifecycle(env, now, /*rebuild=*/true, nullptr));
  }
  if (!t.totals_wrong && report->quarantined == 0) return Status::OK();
  // The totals, recomputed from the records in one write transaction.
  Txn txn;
  RELAIS_RETURN_IF_ERROR(txn.Begin(env, /*write=*/true));
  Totals sum;
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.objects, {}, [&](const MDB_val&, const MDB_val& v, bool*) {
    ObjectMeta m;
    if (DecodeMeta(FromVal(v), &m).ok()) {
      sum.raw_bytes += m.raw_size;
      sum.stored_bytes += m.stored_size;
    }
    return Status::OK();
  }));
  Totals old;
  RELAIS_RETURN_IF_ERROR(ReadTotals(txn, d, &old));
  if (old.raw_bytes == sum.raw_bytes && old.stored_bytes == sum.stored_bytes) return Status::OK();
  std::copy(std::begin(old.class_objects), std::end(old.class_objects), std::begin(sum.class_objects));
  std::copy(std::begin(old.class_bytes), std::end(old.class_bytes), std::begin(sum.class_bytes));
  RELAIS_RETURN_IF_ERROR(WriteTotals(txn, d, sum));
  report->totals_fixed = true;
  return txn.Commit();
}

}  // namespace relais::store
