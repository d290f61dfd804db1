// The scheduler's state per destination, per association and per queue row
// (DeliveryScheduler's private structs, delivery.h), shared by the .cc files
// of the scheduler: delivery.cc (scanning, associations, sending) and
// delivery_outcome.cc (what each attempt's outcome does to the row, the
// destination's link state and its statistics). Internal to router/deliver/.
//
// Thread: the scheduler's loop thread.
#ifndef RELAIS_ROUTER_DELIVER_DELIVERY_STATE_H_
#define RELAIS_ROUTER_DELIVER_DELIVERY_STATE_H_

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "router/deliver/concurrency.h"
#include "router/deliver/delivery.h"
#include "router/deliver/destination_stats.h"
#include "router/deliver/retry_policy.h"
#include "router/deliver/scu_association.h"
#include "router/deliver/send_prep.h"
#include "router/net/rate_limiter.h"
#include "router/net/tls.h"
#include "rules/routing.h"
#include "store/store.h"

namespace relais::router {

// Queue order: priority (highest first), then arrival (id).
struct DeliveryScheduler::Key {
  int32_t priority;
  uint64_t id;
};
struct DeliveryScheduler::KeyLess {
  bool operator()(const Key& a, const Key& b) const {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.id < b.id;
  }
};

struct DeliveryScheduler::Row {
  store::QueueRow q;
  store::ObjectMeta meta;
  Key key() const { return Key{q.priority, q.object_id}; }
};

struct DeliveryScheduler::Sender {
  uint64_t id = 0;
  std::string name;  // "D12 ARCHIVE@10.0.0.5:104", for logs and the attempt log
  std::unique_ptr<ScuAssociation> assoc;
  uint64_t generation = 0;
  bool probe = false;
  bool established = false;
  // Objects (or the probe) in flight: being prepared, sent, or waiting for
  // their response. Up to the association's asynchronous operations window
  // (ScuAssociation::window(): 1 unless the peer accepted more).
  uint32_t busy = 0;
  bool closing = false;  // Release/Abort called, or failed
  int64_t idle_since = 0;
  std::vector<ObjectKind> proposed;  // kinds its contexts were planned for
  // The priority lane (Dispatch): opened beyond max_associations for rows
  // of a higher priority than those being sent; carries only rows of at
  // least lane_priority and is released as soon as none waits.
  bool lane = false;
  int32_t lane_priority = 0;

  // True when it can take one more object now.
  bool HasRoom() const { return busy < (assoc ? assoc->window() : 1u); }
};

struct DeliveryScheduler::Dest {
  DeliveryScheduler* self = nullptr;
  rules::Destination cfg;
  uint64_t generation = 1;               // bumped when the configuration changes
  std::shared_ptr<RateLimiter> limiter;  // bandwidth_limit; null: unlimited
  bool removed = false;
  uv_timer_t timer;
  bool timer_open = false;
  int64_t timer_at = 0;  // 0: not armed
  std::map<Key, Row, KeyLess> ready;
  std::set<Key, KeyLess> in_flight;
  std::vector<std::unique_ptr<Sender>> senders;
  // How many associations to have open (concurrency.h): adaptive, or fixed.
  std::unique_ptr<ConcurrencyController> concurrency;
  uint64_t concurrency_changes = 0;  // concurrency->changes() last logged
  // Link state.
  uint32_t failures = 0;
  bool down = false;
  int64_t next_try = 0;  // no association is opened before this
  std::string last_link_error;
  // The peer refused our association for a reason that is our configuration
  // (Outcome::IsMisconfiguration): rows stay queued, no attempt is charged,
  // the destination is tried again at retry.max_backoff_s, and a reload
  // that changes it clears this at once. misconfigured_reason says why.
  bool misconfigured = false;
  std::string misconfigured_reason;
  int64_t misconfigured_since = 0;
  // The reason and time of the latest row dead-lettered here ("", 0: none).
  std::string last_dead_error;
  int64_t last_dead_unix_ms = 0;
  // Rescan state.
  bool scan_wanted = true;  // new or requeued rows: scan now
  bool more_rows = false;   // the last scan stopped at its batch size
  int64_t last_scan = 0;
  int64_t next_due = 0;  // earliest next_attempt of a row not yet due (0: none)
  // (priority, object id, attempts) of rows whose send now ended a backoff
  // (Refill); cleared when the link works again.
  std::set<std::tuple<int32_t, uint64_t, uint32_t>> send_now_seen;
  // DICOM TLS client context (cfg.tls); null when not asked for, or when
  // it could not be built (tls_error says why; nothing is sent then).
  std::shared_ptr<TlsContext> tls;
  std::string tls_error;
  // Operations (Stats, Pause/Resume, RecentFailures).
  bool paused = false;
  int64_t failing_since = 0;  // first link failure of the current streak; 0: none
  // The streak's last failure was a status the peer answered (0xA7xx "out of
  // resources" and the like), not the link: an answered C-ECHO probe proves
  // the link only, so it lets the next object try without ending the streak.
  bool refusing = false;
  DestinationTally stats;

  // Counts one failed attempt (DestinationTally::NoteFailure).
  void NoteFailure(FailureClass cls, int64_t now, const std::string& sop, const std::string& association,
                   const char* result, uint16_t status, const std::string& error) {
    stats.NoteFailure(cls, now, cfg.name, sop, association, result, status, error);
  }
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_DELIVERY_STATE_H_
