#include "router/operate/queue_ops.h"

namespace relais::router {

Status ResolveUids(const store::Store& st, const std::vector<std::string>& uids, std::set<uint64_t>* ids,
                   std::vector<std::string>* unknown) {
  for (const std::string& uid : uids) {
    Result<store::ObjectMeta> m = st.Find(uid);
    if (m.status().IsNotFound()) {
      unknown->push_back(uid);
      continue;
    }
    if (!m.ok()) return m.status();
    ids->insert(m->id);
  }
  return Status::OK();
}

Status ResolveStudy(const store::Store& st, const std::string& study_uid, std::set<uint64_t>* ids) {
  return st.List([&](const store::ObjectMeta& m) {
    if (m.study_instance_uid == study_uid) ids->insert(m.id);
    return true;
  });
}

Status SelectRows(const store::Store& st, const QueueSelection& sel, const std::set<uint64_t>& ids, bool want_live,
                  std::vector<SelectedRow>* out) {
  auto keep = [&](const store::QueueRow& r) {
    if (!sel.destination.empty() && r.destination != sel.destination) return false;
    if ((!sel.uids.empty() || !sel.study.empty()) && ids.count(r.object_id) == 0) return false;
    return true;
  };
  if (want_live && !sel.dead) {
    RELAIS_RETURN_IF_ERROR(st.ListQueue([&](const store::QueueRow& r) {
      if (keep(r)) out->push_back({r, false});
      return true;
    }));
  }
  return st.ListDead([&](const store::QueueRow& r) {
    if (keep(r)) out->push_back({r, true});
    return true;
  });
}

Result<QueuePlan> PlanQueueAction(const store::Store& st, const QueueSelection& sel, QueueAction action,
                                  std::string_view who, int64_t now_unix_ms) {
  QueuePlan plan;
  std::set<uint64_t> ids;
  RELAIS_RETURN_IF_ERROR(ResolveUids(st, sel.uids, &ids, &plan.unknown_uids));
  if (!sel.uids.empty() && ids.empty()) return plan;
  if (!sel.study.empty()) {
    std::set<uint64_t> of_study;
    RELAIS_RETURN_IF_ERROR(ResolveStudy(st, sel.study, &of_study));
    plan.unknown_study = of_study.empty();
    if (sel.uids.empty()) {
      ids = std::move(of_study);
    } else {
      std::erase_if(ids, [&](uint64_t id) { return of_study.count(id) == 0; });
    }
    if (ids.empty()) return plan;
  }
  std::vector<SelectedRow> rows;
  store::QueueUpdate::Kind kind =
      action == QueueAction::kPurge ? store::QueueUpdate::Kind::kPurge : store::QueueUpdate::Kind::kRequeue;
  if (action == QueueAction::kRetry && !sel.uids.empty() && !sel.dead) {
    // Named objects: every route (of sel.destination), whether its row is
    // queued, dead, or already delivered (then the object is sent again if
    // it is still kept, see [delivery] retention).
    kind = store::QueueUpdate::Kind::kResend;
    plan.resend = true;
    for (uint64_t id : ids) {
      Result<store::ObjectMeta> m = st.Get(id);
      if (!m.ok()) continue;
      for (const store::Route& r : m->routes) {
        if (!sel.destination.empty() && r.destination != sel.destination) continue;
        store::QueueRow row;
        row.destination = r.destination;
        row.priority = r.priority;
        row.object_id = id;
        rows.push_back({row, false});
      }
    }
  } else if (action == QueueAction::kRetry && sel.uids.empty() && !sel.dead) {
    // Send now (sel.destination and/or sel.study): the live rows due now,
    // dead ones stay.
    auto add = [&](const store::QueueRow& r) {
      if (sel.study.empty() || ids.count(r.object_id) != 0) rows.push_back({r, false});
      return true;
    };
    if (sel.destination.empty()) {
      RELAIS_RETURN_IF_ERROR(st.ListQueue(add));
    } else {
      RELAIS_RETURN_IF_ERROR(st.ListQueue(sel.destination, add));
    }
    plan.send_now = true;
  } else {
    RELAIS_RETURN_IF_ERROR(SelectRows(st, sel, ids, /*want_live=*/true, &rows));
  }
  for (const SelectedRow& sr : rows) {
    store::QueueUpdate u;
    u.kind = kind;
    u.destination = sr.row.destination;
    u.priority = sr.row.priority;
    u.object_id = sr.row.object_id;
    u.log_attempt = true;
    u.attempt.association = std::string(who);
    u.attempt.result = kind == store::QueueUpdate::Kind::kPurge ? "purged" : "requeued";
    u.attempt.unix_ms = now_unix_ms;
    plan.updates.push_back(std::move(u));
    plan.update_from_dead.push_back(sr.dead);
    plan.from_dead += sr.dead;
    plan.destinations.insert(sr.row.destination);
  }
  return plan;
}

}  // namespace relais::router
