#include "router/deliver/queue_scan.h"

#include <algorithm>
#include <map>

namespace relais::router {

Status ScanQueue(const store::Store& store, const ScanRequest& req,
                 const std::function<bool(int32_t priority, uint64_t id)>& known,
                 std::set<std::tuple<int32_t, uint64_t, uint32_t>>* send_now_seen, ScanResult* out) {
  const int64_t now = req.now;
  const bool hold = req.hold_ms > 0;
  // hold_study: when each study last received an object, from its history
  // record (one lookup per study and scan), not from a read of all its rows.
  std::map<std::string, int64_t> study_latest;
  auto latest_of = [&](const store::ObjectMeta& m) {
    auto [it, fresh] = study_latest.emplace(m.study_instance_uid, 0);
    if (fresh) {
      Result<store::StudyHistory> h = store.FindStudy(m.study_instance_uid);
      if (h.ok()) it->second = h->last_received_unix_ms;
    }
    // No history (no study UID, an object older than the history): the
    // object's own arrival counts.
    return std::max(it->second, m.received_unix_ms);
  };
  auto note_due = [out](int64_t at) {
    if (out->next_due == 0 || at < out->next_due) out->next_due = at;
  };
  Status s = store.ListQueue(req.destination, [&](const store::QueueRow& q) {
    ++out->examined;
    // Send now (`relais queue retry --dest`, POST /api/queue/retry, in this
    // process or another): a row that failed before and an admin made due
    // (attempts > 0, next_attempt 0; delivery never writes that) ends the
    // destination's backoff. Once per row and attempt count, so that a peer
    // still down is not probed at every scan.
    if (q.attempts > 0 && q.next_attempt_unix_ms == 0 && req.next_try > now &&
        send_now_seen->emplace(q.priority, q.object_id, q.attempts).second) {
      out->send_now = true;
    }
    if (known(q.priority, q.object_id)) return true;
    // A row whose last failure was the link follows the destination's
    // backoff (next_try), not its own: it is due once the link is back.
    bool due = q.last_status == 0 || q.next_attempt_unix_ms <= now;
    if (!due) {
      note_due(q.next_attempt_unix_ms);
      return true;
    }
    Result<store::ObjectMeta> meta = store.Get(q.object_id);
    if (!meta.ok()) return true;  // replaced or removed meanwhile: its row goes with it
    ScannedRow row{q, std::move(*meta)};
    row.meta.routes.clear();
    row.meta.matched_rules.clear();
    if (req.max_age_ms > 0 && now - row.meta.received_unix_ms > req.max_age_ms) {
      out->expired.push_back(std::move(row));
      return true;
    }
    if (hold) {
      int64_t quiet_at = latest_of(row.meta) + req.hold_ms;
      if (now < quiet_at) {
        note_due(quiet_at);
        return true;
      }
    }
    out->found.push_back(std::move(row));
    if (out->found.size() < req.want) return true;
    out->more = true;
    return false;
  });
  return s;
}

}  // namespace relais::router
