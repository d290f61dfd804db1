// Metrics: what Relais counts on its loop. The receive path (listener:
// associations, objects, bytes, C-STORE latency), the delivery path (the
// throughput history), the admin API and the alerts increment these counters;
// router/operate/prometheus.h renders them, with the figures of the other
// sources, as the Prometheus page of GET /metrics.
//
// Naming follows Prometheus conventions: prefix relais_, base units (bytes,
// seconds), counters end in _total. The full list, with labels and meaning,
// is in docs/metrics.md and is checked by tests/router/record/metrics_test.cc.
//
// May include: base/ and the standard library only, so that the code that
// counts (receive/, deliver/, operate/) can include it without a cycle.
//
// Thread: loop thread only (everything that counts runs there).
#ifndef RELAIS_ROUTER_RECORD_METRICS_H_
#define RELAIS_ROUTER_RECORD_METRICS_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace relais::router {

class Metrics {
 public:
  // Upper bounds (seconds) of the C-STORE latency histogram buckets.
  static constexpr double kLatencyBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

  // --- listener ---
  void AssociationAccepted() { ++assoc_accepted_; }
  // `reason`: a short stable label ("called-ae", "calling-ae", "limit",
  // "protocol-version", "application-context", "identity", ...).
  void AssociationRejected(std::string_view reason) { ++assoc_rejected_[std::string(reason)]; }
  // A connection that had not associated, closed to make room (receive/
  // server.h, "Connections cannot starve associations"). `reason`:
  // "connection-cap" or "peer-cap".
  void ConnectionEvicted(std::string_view reason) { ++evicted_[std::string(reason)]; }
  // A C-STORE acknowledged with success: its data set bytes, and seconds
  // from the arrival of its command to the durable acknowledgement.
  void ObjectReceived(uint64_t bytes, double latency_s, int64_t now_unix_ms);
  // A C-STORE answered with a failure status (e.g. 0xA700 above the
  // high-water mark).
  void ObjectRefused(uint16_t status) { ++objects_refused_[status]; }
  // A C-STORE acknowledged with success whose object was identical (same
  // size and checksum) to the stored one with its SOP Instance UID: not
  // stored again, not queued again.
  void ObjectDuplicate() { ++objects_duplicate_; }
  // Routes of a received object not queued: the destination's resend
  // policy says it was already delivered there.
  void RoutesSuppressed(uint64_t n) { routes_suppressed_ += n; }
  // `n` C-STOREs are outstanding (received, not yet answered) on one
  // association: keeps the most seen since start. More than 1 only with an
  // asynchronous operations window (PS3.7 D.3.3.3).
  void OutstandingSeen(uint32_t n) { max_outstanding_ = std::max(max_outstanding_, n); }

  // --- delivery (the throughput history; per-destination counters are the
  // scheduler's) ---
  void ObjectSent(uint64_t bytes, int64_t now_unix_ms);

  // --- admin API and alerts ---
  // `outcome`: "ok", "bad-request", "unauthorized", "forbidden",
  // "not-found", "error".
  void AdminRequest(std::string_view outcome) { ++admin_requests_[std::string(outcome)]; }
  void AlertSent(std::string_view kind, bool ok) { ++alerts_[std::string(kind) + (ok ? "\n1" : "\n0")]; }

  // --- background scrub (router/operate/scrubber.h) ---
  // One batch: objects checked, data set bytes read back, damaged objects
  // found in it; `wrapped` when it reached the end of the store (a pass).
  // `damaged_now`: distinct damaged objects known (last pass and this one).
  void ScrubBatch(uint64_t objects, uint64_t bytes, uint64_t damaged, bool wrapped, uint64_t damaged_now) {
    scrub_objects_ += objects;
    scrub_bytes_ += bytes;
    scrub_damaged_ += damaged;
    if (wrapped) ++scrub_passes_;
    scrub_damaged_now_ = damaged_now;
  }
  uint64_t scrub_objects() const { return scrub_objects_; }
  uint64_t scrub_bytes() const { return scrub_bytes_; }
  uint64_t scrub_damaged() const { return scrub_damaged_; }
  uint64_t scrub_passes() const { return scrub_passes_; }
  uint64_t scrub_damaged_now() const { return scrub_damaged_now_; }

  // Per-minute totals of the last hour (60 entries, oldest first; minutes
  // without traffic are zero), for the dashboard's chart.
  struct Minute {
    int64_t start_unix_ms = 0;
    uint64_t received = 0, received_bytes = 0;
    uint64_t sent = 0, sent_bytes = 0;
  };
  std::vector<Minute> LastHour(int64_t now_unix_ms) const;

  // Read access for the renderer and the API.
  uint64_t associations_accepted() const { return assoc_accepted_; }
  const std::map<std::string, uint64_t>& associations_rejected() const { return assoc_rejected_; }
  const std::map<std::string, uint64_t>& connections_evicted() const { return evicted_; }
  uint64_t objects_received() const { return objects_received_; }
  uint64_t bytes_received() const { return bytes_received_; }
  const std::map<uint16_t, uint64_t>& objects_refused() const { return objects_refused_; }
  uint64_t objects_duplicate() const { return objects_duplicate_; }
  uint64_t routes_suppressed() const { return routes_suppressed_; }
  uint32_t max_outstanding() const { return max_outstanding_; }
  // Cumulative counts per bucket of kLatencyBuckets (+Inf last), sum, count.
  const std::vector<uint64_t>& latency_buckets() const { return latency_counts_; }
  double latency_sum() const { return latency_sum_; }
  const std::map<std::string, uint64_t>& admin_requests() const { return admin_requests_; }
  // Alerts by "kind\n1" (sent) and "kind\n0" (failed).
  const std::map<std::string, uint64_t>& alerts() const { return alerts_; }

 private:
  Minute* Bucket(int64_t now_unix_ms);

  uint64_t assoc_accepted_ = 0;
  std::map<std::string, uint64_t> assoc_rejected_;
  std::map<std::string, uint64_t> evicted_;
  uint64_t objects_received_ = 0, bytes_received_ = 0;
  std::map<uint16_t, uint64_t> objects_refused_;
  uint64_t objects_duplicate_ = 0, routes_suppressed_ = 0;
  uint32_t max_outstanding_ = 0;
  std::vector<uint64_t> latency_counts_ = std::vector<uint64_t>(std::size(kLatencyBuckets) + 1, 0);
  double latency_sum_ = 0;
  std::map<std::string, uint64_t> admin_requests_;
  std::map<std::string, uint64_t> alerts_;  // "kind\n1" sent, "kind\n0" failed
  uint64_t scrub_objects_ = 0, scrub_bytes_ = 0, scrub_damaged_ = 0, scrub_passes_ = 0, scrub_damaged_now_ = 0;
  std::vector<Minute> minutes_ = std::vector<Minute>(60);  // ring, by minute number % 60
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECORD_METRICS_H_
