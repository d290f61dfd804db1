#include "store/resend.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string_view>

#include "store/meta_codec.h"
#include "store/queue_codec.h"

namespace relais::store {

std::vector<uint8_t> EncodeDeliveredKey(const std::string& destination, const std::string& sop_instance_uid) {
  std::vector<uint8_t> k(destination.begin(), destination.end());
  k.push_back(0);
  k.insert(k.end(), sop_instance_uid.begin(), sop_instance_uid.end());
  return k;
}

Status DecodeDeliveredKey(std::span<const uint8_t> key, std::string* destination, std::string* sop_instance_uid) {
  auto nul = std::find(key.begin(), key.end(), uint8_t{0});
  if (nul == key.end()) return Status::Corruption("delivered key has no 0x00 after the destination");
  destination->assign(key.begin(), nul);
  sop_instance_uid->assign(nul + 1, key.end());
  if (destination->empty() || sop_instance_uid->empty()) {
    return Status::Corruption("delivered key has an empty destination or SOP Instance UID");
  }
  return Status::OK();
}

std::vector<uint8_t> EncodeDelivered(const Delivered& d) {
  std::vector<uint8_t> v(16);
  PutLe64(v.data(), static_cast<uint64_t>(d.unix_ms));
  PutLe64(v.data() + 8, d.checksum);
  return v;
}

Status DecodeDelivered(std::span<const uint8_t> value, Delivered* d) {
  if (value.size() < 16) return Status::Corruption("delivered value is shorter than 16 bytes");
  d->unix_ms = static_cast<int64_t>(GetLe64(value.data()));
  d->checksum = GetLe64(value.data() + 8);
  return Status::OK();
}

Status RecordDelivered(Txn& txn, const Dbis& d, uint64_t id, const std::string& destination, int64_t now) {
  if (!d.has_delivered) return Status::OK();
  IdKey id_key(id);
  std::span<const uint8_t> record;
  Status s = txn.Get(d.objects, id_key.val(), &record);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  ObjectMeta m;
  if (!DecodeMeta(record, &m).ok() || m.sop_instance_uid.empty()) return Status::OK();  // Verify reports it
  std::vector<uint8_t> k = EncodeDeliveredKey(destination, m.sop_instance_uid);
  std::vector<uint8_t> v = EncodeDelivered(Delivered{now, m.checksum});
  return txn.Put(d.delivered, ToVal(std::span<const uint8_t>(k)), ToVal(std::span<const uint8_t>(v)));
}

Status CheckSuppressed(const Txn& txn, const Dbis& d, const ObjectMeta& meta, const Route& route, bool* suppressed,
                       std::string* why) {
  *suppressed = false;
  if (!d.has_delivered || route.resend == Resend::kAlways) return Status::OK();
  std::vector<uint8_t> k = EncodeDeliveredKey(route.destination, meta.sop_instance_uid);
  std::span<const uint8_t> v;
  Status s = txn.Get(d.delivered, ToVal(std::span<const uint8_t>(k)), &v);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  Delivered last;
  if (!DecodeDelivered(v, &last).ok()) return Status::OK();  // send rather than trust a bad row
  if (last.unix_ms < meta.received_unix_ms - route.resend_window_ms) return Status::OK();
  const bool same = last.checksum == meta.checksum;
  if (route.resend == Resend::kIfChanged && !same) return Status::OK();
  *suppressed = true;
  *why = "already delivered to " + route.destination + " at " + FormatUtc(last.unix_ms) +
         (same ? " with the same content" : " (content changed since)") + "; resend = \"" +
         (route.resend == Resend::kNever ? "never" : "if-changed") + "\"";
  return Status::OK();
}

Status LogSuppressed(Txn& txn, const Dbis& d, uint64_t id, uint32_t seq, const std::string& destination,
                     const std::string& why, int64_t unix_ms) {
  if (!d.has_delivery) return Status::OK();
  Attempt a;
  a.object_id = id;
  a.unix_ms = unix_ms;
  a.destination = destination;
  a.result = "suppressed";
  a.error = why;
  AttemptKey key(id, seq);
  std::vector<uint8_t> v = EncodeAttempt(a);
  return txn.Put(d.attempts, MDB_val{sizeof(key.bytes), key.bytes}, ToVal(std::span<const uint8_t>(v)));
}

Status IsIdenticalObject(const Txn& txn, const Dbis& d, uint64_t old_id, const ObjectMeta& meta, bool* identical) {
  *identical = false;
  IdKey id_key(old_id);
  std::span<const uint8_t> record;
  Status s = txn.Get(d.objects, id_key.val(), &record);
  if (s.IsNotFound()) return Status::OK();
  RELAIS_RETURN_IF_ERROR(s);
  ObjectMeta old;
  if (!DecodeMeta(record, &old).ok()) return Status::OK();
  *identical = old.raw_size == meta.raw_size && old.checksum == meta.checksum;
  // A destination the stored object is not routed to (the rules changed
  // since) must get it: then the new object replaces the old one, and the
  // destinations that already have it are left to their resend policy.
  for (const Route& r : meta.routes) {
    const bool known = std::any_of(old.routes.begin(), old.routes.end(),
                                   [&](const Route& o) { return o.destination == r.destination; });
    if (!known) *identical = false;
  }
  return Status::OK();
}

Status NoteResendWindow(Txn& txn, const Dbis& d, int64_t window_ms) {
  if (window_ms <= 0) return Status::OK();
  uint64_t current = 0;
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaResendWindowMs, &current));
  if (static_cast<uint64_t>(window_ms) <= current) return Status::OK();
  return PutMetaU64(txn, d.meta, kMetaResendWindowMs, static_cast<uint64_t>(window_ms));
}

Status PruneDelivered(Txn& txn, const Dbis& d, int64_t now, size_t max_rows, size_t max_scan,
                      std::vector<uint8_t>* scan_from, bool* more) {
  *more = false;
  if (!d.has_delivered) return Status::OK();
  uint64_t window = 0;
  RELAIS_RETURN_IF_ERROR(GetMetaU64(txn, d.meta, kMetaResendWindowMs, &window));
  const int64_t cutoff = now - static_cast<int64_t>(window);
  std::vector<std::vector<uint8_t>> old;
  size_t scanned = 0;
  bool stopped = false;
  const std::vector<uint8_t> from = *scan_from;
  RELAIS_RETURN_IF_ERROR(ForEachRow(txn, d.delivered, from, [&](const MDB_val& k, const MDB_val& v, bool* go_on) {
    std::span<const uint8_t> key = FromVal(k);
    if (scanned == max_scan || old.size() == max_rows) {
      *more = old.size() == max_rows;
      scan_from->assign(key.begin(), key.end());
      stopped = true;
      *go_on = false;
      return Status::OK();
    }
    ++scanned;
    Delivered row;
    // A row that does not decode is Verify's to report and Repair's to remove.
    if (!DecodeDelivered(FromVal(v), &row).ok() || row.unix_ms >= cutoff) return Status::OK();
    old.emplace_back(key.begin(), key.end());
    return Status::OK();
  }));
  if (!stopped) scan_from->clear();
  for (const auto& k : old) RELAIS_RETURN_IF_ERROR(txn.Del(d.delivered, ToVal(std::span<const uint8_t>(k))));
  return Status::OK();
}

std::string FormatUtc(int64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace relais::store
