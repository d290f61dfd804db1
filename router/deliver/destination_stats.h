// Per-destination statistics of the delivery scheduler (delivery.h): what
// Stats() and RecentFailures() report to the admin API, the metrics and the
// alerts, and the tally each destination keeps to produce them (counters by
// outcome and failure class, the last error, the recent failures, the bytes
// sent over the last minute).
//
// Thread: a DestinationTally belongs to its destination, on the scheduler's
// loop thread; the report structs are plain values.
#ifndef RELAIS_ROUTER_DELIVER_DESTINATION_STATS_H_
#define RELAIS_ROUTER_DELIVER_DESTINATION_STATS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "router/deliver/retry_policy.h"

namespace relais::router {

// One destination as DeliveryScheduler::Stats() reports it.
struct DestinationStats {
  std::string name;
  bool down = false;
  uint32_t consecutive_failures = 0;
  int64_t next_try_unix_ms = 0;
  size_t associations = 0;
  // Concurrency (router/deliver/concurrency.h): "adaptive" or "fixed", the
  // number of associations aimed at and why (ConcurrencyController::reason),
  // the most the peer accepted before refusing one (0: never refused), and
  // the cap.
  std::string concurrency;
  uint32_t concurrency_target = 0;
  std::string concurrency_reason;
  uint32_t concurrency_ceiling = 0;
  uint32_t max_associations = 0;
  // The bandwidth cap in force (bytes/s, 0: unlimited): bandwidth_limit or
  // the `bandwidth` window of the local time; how many windows are written.
  uint64_t bandwidth_limit_bps = 0;
  size_t bandwidth_windows = 0;
  size_t in_flight = 0;
  size_t ready = 0;
  uint64_t sent = 0;
  uint64_t failed = 0;
  uint64_t dead = 0;
  uint64_t bytes_sent = 0;
  // --- for the admin API, metrics and alerts ---
  std::string ae_title, host;  // from the destination's configuration
  uint16_t port = 0;
  bool paused = false;
  // One of "idle" (nothing ready), "sending", "backing-off" (failures,
  // waiting for next_try), "down" (probing with C-ECHO), "paused",
  // "misconfigured" (the peer refused our AE titles, or a TLS certificate
  // does not fit: rows held, see misconfigured_reason).
  std::string state;
  // Why the destination is misconfigured ("" when it is not): "TELERAD
  // refused our association: A-ASSOCIATE-RJ (permanent, ...)". Since when.
  std::string misconfigured_reason;
  int64_t misconfigured_since_unix_ms = 0;
  // The reason and time of the latest row dead-lettered since start ("", 0:
  // none), for the "dead-letters" alert.
  std::string last_dead_error;
  int64_t last_dead_unix_ms = 0;
  std::string last_error;  // last failure of any kind ("" before any)
  int64_t last_error_unix_ms = 0;
  // Start of the current streak of link failures; 0 while the link works.
  int64_t failing_since_unix_ms = 0;
  uint64_t retries = 0;  // rows rescheduled after a failure (RetryLater)
  // Failed attempts by class, keyed by FailureClassName (retry_policy.h),
  // present only when nonzero: "link" (connect/association/abort/timeout),
  // "transient-status" (0xA7xx and other retryable DIMSE statuses),
  // "refused" (0xA9xx, 0xCxxx...), "unsupported" (SOP class / syntax not
  // accepted, no lossless conversion), "unreadable" (stored object cannot
  // be read or prepared), "limit" (max_attempts / max_age reached),
  // "misconfigured" (the peer refused our AE titles: rows held; once per
  // episode).
  // Each failure counts once, in one class; a row given up by the retry
  // policy counts as "limit" whatever its last error was.
  std::map<std::string, uint64_t> failures_by_class;
  // Data set bytes delivered over the last minute, divided by 60.
  double sent_bytes_per_s = 0;
};

// One failed attempt, as DeliveryScheduler::RecentFailures() lists it.
struct FailureEvent {
  int64_t unix_ms = 0;
  std::string destination;
  std::string sop_instance_uid;  // "" for link failures not tied to an object
  std::string association;
  std::string result;   // "retry" or "dead"
  uint16_t status = 0;  // DIMSE status, 0 when none
  std::string error;
};

// Failures kept per destination, and in all, for RecentFailures.
constexpr size_t kRecentFailures = 100;

// The counters of one destination. The scheduler counts sent, dead and
// retries itself where it decides them; NoteFailure and NoteSent keep the
// rest consistent (failed is the sum of failures_by_class).
struct DestinationTally {
  uint64_t sent = 0, failed = 0, dead = 0, bytes_sent = 0;
  uint64_t retries = 0;
  std::string last_error;
  int64_t last_error_ms = 0;
  std::array<uint64_t, kFailureClassCount> failures_by_class = {};  // indexed by FailureClass
  std::deque<FailureEvent> recent;                                  // newest first, at most kRecentFailures
  // Bytes delivered in each second of the last minute (ring by second % 60).
  int64_t rate_second[60] = {};
  uint64_t rate_bytes[60] = {};

  // Counts one failed attempt of class `cls` for `destination` and keeps it
  // for RecentFailures.
  void NoteFailure(FailureClass cls, int64_t now, const std::string& destination, const std::string& sop,
                   const std::string& association, const char* result, uint16_t status, const std::string& error);
  // Adds `bytes` delivered at `now` to the last minute's throughput.
  void NoteSent(uint64_t bytes, int64_t now);
  // Bytes delivered over the minute up to `now`, divided by 60.
  double BytesPerSecond(int64_t now) const;
  // Fills the counters of `st` (sent, failed, dead, bytes_sent, last_error,
  // retries, failures_by_class, sent_bytes_per_s); the rest is the caller's.
  void Report(int64_t now, DestinationStats* st) const;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_DESTINATION_STATS_H_
