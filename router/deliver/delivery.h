// Room router/deliver/ (DESIGN.md, "The rooms of router/"): sending objects
// on. The scheduler per destination (delivery.h; its private state in
// delivery_state.h, what outcomes do in delivery_outcome.cc), the retry
// policy (retry_policy.h), per-destination statistics
// (destination_stats.h), the SCU association (scu_association.h) and send
// preparation (send_prep.h; on the thread pool, send_work.h).
// May include: base/, protocol/, net/, dicom/, record/, rules/, the store,
// libuv, DCMTK. Not receive/, not operate/.
//
// DeliveryScheduler: sends every queue row of the store to its destination
// with Relais's own SCU (ScuAssociation), on the server's libuv loop.
//
// Per destination (rules::Destination):
// - As many outgoing associations as its ConcurrencyController
//   (concurrency.h) targets: adaptive by default, found from throughput,
//   round trips and the peer's refusals, at most `max_associations`; or
//   exactly `max_associations` (concurrency = "fixed"). A transient
//   A-ASSOCIATE-RJ, or an association left unanswered until the timeout,
//   while other associations work lowers the target instead of backing the
//   destination off; that limit is kept 24 h, across restarts
//   (peer_limits.h). At most 8 associations connect at once. Each
//   association is reused for many
//   objects and released after `idle_release_ms` without work. Presentation
//   contexts are planned from the SOP classes and stored transfer syntaxes
//   of the rows waiting (PlanContexts); an object the association cannot
//   carry waits for the next one.
// - Priority lane: when the first waiting row has a higher priority than
//   every row being sent (a STAT study behind a routine backlog) and no
//   association is free to carry it, one more association is opened at
//   once, beyond max_associations, planned for the waiting rows (highest
//   priority first). It carries only rows of that priority or higher and is
//   released when none is left.
// - Due rows are taken in queue order: priority (highest first), then
//   arrival. A row is "due" when its next_attempt time has passed, or — for
//   a row whose last failure was the link (no DIMSE status) — as soon as the
//   destination answers again.
// - Objects stream from the store chunk by chunk; only an object that needs
//   tag edits or a transfer syntax conversion is read whole, rewritten with
//   DCMTK on the libuv thread pool (PrepareDataset) and sent from memory.
// - hold_study_s: a study's rows wait until no object of that study has
//   arrived for that long (its history record's last arrival).
// - The queue is read in batches (ScanQueue, queue_scan.h): a scan reads the
//   rows already held, the rows not due yet before the first due ones, and
//   at most batch_rows more, never the whole backlog.
//
// Failures (Outcome::IsTransient and the table in the .cc):
// - Link trouble (connect refused/reset, timeouts, aborts, transient
//   association rejection, 0xA7xx): the destination backs off,
//   exponentially with +-20% jitter, from retry.initial_backoff_s up to
//   retry.max_backoff_s. After `down_after_failures` consecutive failures the
//   destination is "down": it is probed with C-ECHO on the backoff schedule
//   instead of being sent objects; the first answer resumes delivery at once.
// - A refusal of the object (0xA9xx, 0xCxxx, ...) is retried once after the
//   backoff and dead-lettered when it recurs; "SOP class not supported and
//   no conversion helps" and unreadable stored objects are dead-lettered at
//   once. A permanent association rejection counts like a refusal for the
//   objects it was opened for.
// - retry.max_attempts (0 = unlimited) and retry.max_age_s (since the object
//   was received) send a row to the dead-letter list with its last error.
// Every attempt is recorded in the store's attempt log in the same commit
// that updates the row. A row stays "in flight" until that commit is durable,
// so it is never sent twice concurrently; after a crash, rows whose success
// was not yet committed are sent again (at-least-once).
//
// Thread: the loop thread only, except Wake(), which posts through `post`.
#ifndef RELAIS_ROUTER_DELIVER_DELIVERY_H_
#define RELAIS_ROUTER_DELIVER_DELIVERY_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "router/deliver/destination_stats.h"
#include "router/deliver/peer_limits.h"
#include "rules/routing.h"
#include "store/store.h"

namespace relais::router {

class AuditLog;
class Metrics;
class ScuAssociation;
struct Outcome;
struct PreparedObject;

struct DeliverySettings {
  std::string calling_ae = "RELAIS";  // our AE title towards destinations
  uint32_t max_pdu = 262144;
  uint64_t connect_timeout_ms = 10000;
  uint64_t artim_timeout_ms = 30000;
  uint64_t response_timeout_ms = 120000;
  // An idle association is released after this long without work.
  uint64_t idle_release_ms = 5000;
  // Consecutive link failures after which a destination is probed with
  // C-ECHO instead of being sent objects.
  uint32_t down_after_failures = 3;
  // Rows taken from the store per destination per refill.
  size_t batch_rows = 256;
  // Rows are rescanned at least this often (an admin command in another
  // process may have requeued rows).
  uint64_t rescan_ms = 2000;
  // Objects larger than this are never rewritten in memory: if they need
  // edits or conversion they are dead-lettered with a clear reason.
  uint64_t max_prepare_bytes = 1ull << 30;
  // Removal of retained objects (Store::Sweep) runs this often.
  uint64_t sweep_ms = 60000;
  // Where association limits learnt from peers are kept across restarts
  // (peer_limits.h; `relais serve` puts it in the store directory). Empty:
  // not kept.
  std::string peer_limits_path;
};

class DeliveryScheduler {
 public:
  // `post` runs a function on the loop thread soon (Server::Post).
  DeliveryScheduler(uv_loop_t* loop, store::Store* store, DeliverySettings settings,
                    std::function<void(std::function<void()>)> post);
  ~DeliveryScheduler();
  DeliveryScheduler(const DeliveryScheduler&) = delete;
  DeliveryScheduler& operator=(const DeliveryScheduler&) = delete;

  // Installs the destinations of a rule set (at start and after each
  // reload). Destinations that disappeared stop being served (their rows
  // are kept; `relais queue ls` shows them); changed ones use the new
  // settings for their next association.
  void SetRules(std::shared_ptr<const rules::RuleSet> rules);
  // New rows for these destinations (store queue callback). Any thread.
  void Wake(const std::vector<std::string>& destinations);
  // Aborts every association and closes every handle; `done` runs on the
  // loop once all are closed. Rows in flight stay queued (sent again after
  // restart).
  void Shutdown(std::function<void()> done);

  // Per destination (destination_stats.h).
  using DestinationStats = router::DestinationStats;
  std::vector<DestinationStats> Stats() const;

  // Pause: no new object is sent to `destination` (objects in flight
  // finish); its rows keep queueing. Resume sends again at once. In memory
  // only: a restart resumes every destination. NotFound for a destination
  // the current rules do not have. Loop thread.
  Status Pause(const std::string& destination);
  Status Resume(const std::string& destination);

  // The most recent failed attempts (at most 100), newest first.
  using FailureEvent = router::FailureEvent;
  std::vector<FailureEvent> RecentFailures() const;

  // Counts every object sent into the metrics' throughput history (null:
  // nowhere). Not owned; must outlive the scheduler.
  void SetMetrics(Metrics* metrics) { metrics_ = metrics; }

  // Each delivery attempt's outcome is recorded there (null: nowhere). Not
  // owned; must outlive the scheduler. Loop thread, before work starts.
  void SetAudit(AuditLog* audit) { audit_ = audit; }

 private:
  // delivery_state.h.
  struct Key;
  struct KeyLess;
  struct Dest;
  struct Sender;
  struct Row;

  static void OnTimer(uv_timer_t* t) noexcept;
  void Arm(Dest* d, int64_t at_unix_ms);
  void Run(Dest* d);
  void Refill(Dest* d, int64_t now);
  void Dispatch(Dest* d, int64_t now);
  void OpenSender(Dest* d, bool probe, bool lane = false, int32_t lane_priority = 0);
  void ApplyBandwidth(Dest* d, int64_t now_ms);
  // Opens the priority lane when the first waiting row outranks every row
  // in flight and no association can take it now.
  void MaybeOpenLane(Dest* d);
  void OnEstablished(Dest* d, Sender* s, const Outcome& o);
  void SendNext(Dest* d, Sender* s);
  void StartSend(Dest* d, Sender* s, Row row, uint8_t context_id, const std::string& ts, bool convert);
  // StartSend's steps: the object as stored, streamed from the store; or
  // rewritten on the thread pool (send_work.h), then sent from memory.
  void SendAsStored(Dest* d, Sender* s, const Row& row);
  void PrepareAndSend(Dest* d, Sender* s, const Row& row, const std::string& ts, std::vector<rules::TagEdit> edits);
  void OnPrepared(Dest* d, uint64_t sender_id, Row row, PreparedObject prepared);
  // Dead-letters a row that cannot be read or prepared (class kUnreadable).
  void DeadLetterUnreadable(Dest* d, Sender* s, const Row& row, const std::string& why);
  // The Store() completion of `row` on `s`: OnSent, unless shutting down.
  std::function<void(Outcome o, uint64_t bytes)> SendDone(Dest* d, Sender* s, const Row& row);
  void OnSenderClosed(Dest* d, Sender* s);
  // Adaptive concurrency hooks (concurrency.h): associations established,
  // whether more are open than the target, one log line per new target.
  static uint32_t OpenSenders(const Dest* d);
  static bool Surplus(const Dest* d);
  static size_t CountedSenders(const Dest* d);
  static void LogConcurrency(Dest* d);
  // The limit a peer set before a restart (peer_limits.h), applied to a
  // fresh controller; and the one it just set, written down
  // (delivery_peer_limits.cc).
  void RestorePeerLimit(Dest* d);
  void KeepPeerLimit(Dest* d);
  // What outcomes do (delivery_outcome.cc): OnSent, LinkFailure,
  // LinkSuccess, Finish.
  void OnSent(Dest* d, Sender* s, const Row& row, const Outcome& o, uint64_t bytes);
  // Backs the destination off; when `log_head`, the first waiting row
  // carries the attempt in its log.
  void LinkFailure(Dest* d, const Outcome& o, const std::string& association, bool log_head);
  void LinkSuccess(Dest* d);
  // The peer refused us for a configuration reason (Outcome::
  // IsMisconfiguration): hold the rows, wait retry.max_backoff_s.
  void Misconfigured(Dest* d, const Outcome& o, const std::string& association, int64_t now);
  std::string MisconfigurationFix(const Dest* d, const Outcome& o) const;
  // Applies `update` to the row; when durable, the row leaves in_flight
  // (if `release_in_flight`) and the destination runs again.
  void Finish(Dest* d, const Row& row, store::QueueUpdate update, bool release_in_flight = true);
  // BackoffMs (retry_policy.h) for the destination's retry settings, with jitter.
  int64_t Backoff(const Dest* d, uint32_t failures);
  Dest* FindDest(const std::string& name);

  uv_loop_t* loop_;
  store::Store* store_;
  AuditLog* audit_ = nullptr;
  Metrics* metrics_ = nullptr;
  DeliverySettings settings_;
  std::function<void(std::function<void()>)> post_;
  std::shared_ptr<const rules::RuleSet> rules_;
  std::map<std::string, std::unique_ptr<Dest>> dests_;
  PeerLimits peer_limits_;  // loaded from settings_.peer_limits_path at start
  std::mt19937_64 rng_;
  uint64_t next_sender_id_ = 1;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  uv_timer_t sweep_timer_;
  bool sweep_open_ = false;
  void MaybeShutdownDone();
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_DELIVERY_H_
