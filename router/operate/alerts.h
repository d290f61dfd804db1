// Alerts: tells someone when the box needs a human ([alerts] in the config).
//
// Conditions, evaluated every `interval_ms` on the loop:
// - "destination-down": a destination's link has failed continuously for
//   destination_down_s (DeliveryScheduler::Stats failing_since_unix_ms);
// - "destination-misconfigured": the destination's peer refused our
//   association for a configuration reason (called/calling AE title not
//   recognized; DeliveryScheduler::Stats misconfigured_reason, which names
//   the fix); raised at once, resolved by a reload that changes it;
// - "oldest-queued": a destination's oldest queued object was received more
//   than oldest_queued_s ago (Store::SummarizeQueues);
// - "storage-high": intake closed at the high-water mark (StorageWatch; also
//   raised at once through OnStorageChange);
// - "dead-letters": a destination has dead letters in the store
//   (Store::SummarizeQueues dead_rows), with their count and the latest
//   reason (DeliveryScheduler::Stats last_dead_error); resolved when none is
//   left;
// - "dead-letters-expiring": dead-letter objects that the store's sweep
//   removes within 24 h (Store::ListClass of class dead; subject "store"),
//   with their count and destinations;
// - "audit-failing" (subject "audit"): the audit trail cannot be written
//   (AuditLog::failing; [audit] on_failure says whether intake stops);
// - conditions added by the caller (AddCondition), e.g.
//   "scrub-damaged" (subject "store": the background scrub found damaged
//   objects; router/operate/scrubber.h), "rules-reload-failed" (subject
//   "rules") and "config-reload-failed" (subject "config": relais.toml did
//   not load on SIGHUP; both router/serve.cc).
// Each condition has a subject (the destination name, or "store"). When it
// starts to hold, an alert is raised; while it holds, it is sent again every
// repeat_s (0: once); when it stops holding, a "resolved" notice is sent.
//
// Delivery of a notice, one JSON object
//   {"alert":"destination-down","subject":"TELERAD","state":"raised"|"resolved",
//    "since":"<ISO time>","message":"<what is wrong and what to do>",
//    "host":"<hostname>","ae_title":"<our AE>"}
// - webhook: HTTP/1.1 POST of that JSON to alerts.webhook (h2o's client on
//   the loop; timeout 10 s; a failure is logged and counted, and retried at
//   the next evaluation while the alert holds);
// - command: alerts.command run (uv_spawn, no shell) with the JSON on stdin
//   and RELAIS_ALERT, RELAIS_ALERT_SUBJECT, RELAIS_ALERT_STATE in its
//   environment; killed after 30 s.
// Every notice is also logged (one line), audited ("kind":"alert") and
// counted (Metrics::AlertSent).
//
// Thread: loop thread only.
#ifndef RELAIS_ROUTER_OPERATE_ALERTS_H_
#define RELAIS_ROUTER_OPERATE_ALERTS_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "router/operate/queue_summaries.h"
#include "router/operate/storage_watch.h"
#include "rules/rules.h"

namespace relais::router {

class AuditLog;
class DeliveryScheduler;
class Metrics;

class Alerts {
 public:
  struct Active {
    std::string kind;     // "destination-down", "oldest-queued", "storage-high", "dead-letters-expiring"
    std::string subject;  // destination name or "store"
    std::string message;
    int64_t since_unix_ms = 0;
  };
  // What the evaluation reads. Not owned; null members are skipped.
  struct Sources {
    const DeliveryScheduler* delivery = nullptr;
    const store::Store* store = nullptr;
    const StorageWatch* storage = nullptr;
    // The queue summary of `store`, read off the loop thread (serve).
    // Null: `store` is read at each evaluation.
    std::shared_ptr<QueueSummaries> queue_summaries;
  };

  // `audit`, `metrics` may be null. `ae_title` names this box in notices.
  Alerts(uv_loop_t* loop, rules::AlertsConfig config, std::string ae_title, AuditLog* audit, Metrics* metrics);
  ~Alerts();
  Alerts(const Alerts&) = delete;
  Alerts& operator=(const Alerts&) = delete;

  // One more condition, evaluated with the rest: `holds` returns what of
  // `kind` holds now (Actives of that kind; since_unix_ms when each started
  // to hold), nothing when it does not hold. Call before Start.
  void AddCondition(std::string kind, std::function<std::vector<Active>()> holds);
  // Evaluates now, then every interval_ms. Alerts with neither webhook nor
  // command still evaluate (the dashboard and /api/status show them).
  void Start(Sources sources, uint64_t interval_ms = 10000);
  // Evaluates now.
  void Evaluate();
  // For StorageWatch::SetOnChange: evaluates the storage condition at once.
  void OnStorageChange(const StorageWatch::Usage& usage);
  // Stops the timer, kills running commands, aborts webhook requests and
  // closes every handle (the loop then runs out of work).
  void Shutdown();

  // New settings (SIGHUP reloading relais.toml): webhook, command and
  // thresholds apply from the next evaluation; alerts already raised stay
  // raised until they stop holding.
  void SetConfig(rules::AlertsConfig config);

  // Conditions holding now, by kind then subject.
  std::vector<Active> active() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_ALERTS_H_
