#include "router/deliver/queue_scan.h"

#include <algorithm>
#include <climits>
#include <map>

namespace relais::router {

Status ScanQueue(const store::Store& store, const ScanRequest& req,
                 const std::function<bool(int32_t priority, uint64_t id)>& known,
                 std::set<std::tuple<int32_t, uint64_t, uint32_t>>* send_now_seen, ScanResult* out) {
  const int64_t now = req.now;
  const bool hold = req.hold_ms > 0;
  // Held destinations need every row to know when each study went quiet.
  const size_t want = hold ? SIZE_MAX : req.want;
  std::map<std::string, int64_t> study_latest;
  std::vector<ScannedRow> found;
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
    if (!due && !hold) {
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
      int64_t& latest = study_latest[row.meta.study_instance_uid];
      latest = std::max(latest, row.meta.received_unix_ms);
      if (!due) {
        note_due(q.next_attempt_unix_ms);
        return true;
      }
    }
    found.push_back(std::move(row));
    return found.size() < want;
  });
  RELAIS_RETURN_IF_ERROR(s);
  out->more = !hold && found.size() >= want;
  for (ScannedRow& row : found) {
    if (hold) {
      int64_t quiet_at = study_latest[row.meta.study_instance_uid] + req.hold_ms;
      if (now < quiet_at) {
        note_due(quiet_at);
        continue;
      }
    }
    out->found.push_back(std::move(row));
  }
  return Status::OK();
}

}  // namespace relais::router
