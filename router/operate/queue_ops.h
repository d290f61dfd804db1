// Queue selection and admin updates shared by `relais queue retry|purge`
// (router/cli/queue_cli.cc, a separate process opening the store in admin mode)
// and the admin API (router/operate/admin_api.cc, inside `relais serve`, on the
// running store). Only reads the store; the caller applies the planned
// updates with Store::UpdateQueue.
//
// Thread: any (the Store's read methods are thread-safe).
#ifndef RELAIS_ROUTER_OPERATE_QUEUE_OPS_H_
#define RELAIS_ROUTER_OPERATE_QUEUE_OPS_H_

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::router {

struct QueueSelection {
  std::string destination;        // empty: every destination
  bool dead = false;              // dead-letter rows only
  std::vector<std::string> uids;  // SOP Instance UIDs; empty: every object
  std::string study;              // Study Instance UID: only its stored objects; empty: any study
};

struct SelectedRow {
  store::QueueRow row;
  bool dead = false;
};

// Object ids of the UIDs the store knows; the others go to *unknown.
Status ResolveUids(const store::Store& st, const std::vector<std::string>& uids, std::set<uint64_t>* ids,
                   std::vector<std::string>* unknown);

// Object ids of the stored objects of study `study_uid` (a scan of the
// object records); none when it has no stored object.
Status ResolveStudy(const store::Store& st, const std::string& study_uid, std::set<uint64_t>* ids);

// Rows matching `sel`: live ones (unless sel.dead and when want_live), then
// dead ones. `ids` are the resolved sel.uids and sel.study, intersected
// (ignored when both are empty).
Status SelectRows(const store::Store& st, const QueueSelection& sel, const std::set<uint64_t>& ids, bool want_live,
                  std::vector<SelectedRow>* out);

enum class QueueAction { kRetry, kPurge };

struct QueuePlan {
  std::vector<store::QueueUpdate> updates;  // one per selected row, attempt logged
  std::vector<bool> update_from_dead;       // per update: the row was a dead letter
  uint64_t from_dead = 0;                   // updates on dead-letter rows
  bool resend = false;                      // retry of named objects (QueueUpdate::kResend)
  bool send_now = false;                    // retry of sel.destination's live rows only
  std::vector<std::string> unknown_uids;    // UIDs no stored object has
  bool unknown_study = false;               // sel.study has no stored object (nothing planned)
  std::set<std::string> destinations;       // destinations concerned (to wake delivery)
};

// Plans a retry or purge of `sel`. Retry of named objects (uids, not dead)
// re-sends every route of them (to sel.destination only when set), queued,
// dead or already delivered and retained; otherwise the selected rows are
// requeued (dead back to the queue, live ones due now) or purged. `who`
// names the actor in the attempt log ("relais queue retry", "admin API
// (token NAME)"). A retry of sel.destination alone is "send now": its live
// rows are made due now, its dead rows stay. sel.study narrows every case
// to that study's stored objects; a retry of sel.study (and optionally
// sel.destination) without uids or dead is a send now of its live rows.
// REQUIRES: sel.dead, sel.uids, sel.study or sel.destination.
Result<QueuePlan> PlanQueueAction(const store::Store& st, const QueueSelection& sel, QueueAction action,
                                  std::string_view who, int64_t now_unix_ms);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_QUEUE_OPS_H_
