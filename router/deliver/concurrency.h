// ConcurrencyController: how many outgoing associations one destination
// should have open (issue 16, "adaptive concurrency"). A pure class: the
// delivery scheduler (delivery.h) feeds it measurements — associations
// established or refused by the peer, each object's round trip and bytes,
// whether rows are waiting — and asks it for the target and the reason.
//
// Adaptive (the default, `concurrency = "adaptive"`):
// - Starts at `start` (2). Measures in windows that begin once `target`
//   associations are open (7/8 of them from 8 up: across a lossy link a
//   lost SYN holds one back a second) and rows keep waiting; a window ends
//   after max(2 round trips, min_window_ms) and at least max(`target`, 8)
//   objects. A window in which no object was delivered for max(1 s, 3
//   round trips) (an outage) is thrown away. A window's round trip is the
//   median of its objects' (on a lossy link a few wait for a retransmission
//   timeout).
// - A window that would step back (throughput flat, round trips grown) is
//   looked at once more: the next window is judged together with it (one
//   window of a lossy link is often flat by chance). After a step back the
//   level's figures are measured afresh.
// - Slow start: the first step quadruples when objects take 100 ms or more
//   (a WAN), else doubles; then it doubles the target while each step raises
//   the delivered bytes/s by at least half of what the extra associations
//   could bring, or, on the second look, while round trips did not grow
//   with it (Little's law: the link is not full); quadruples after a step
//   that brought 75 % of it, and doubles from the same level when that
//   overshoots. The first step that does not steps back to the level
//   before it, and the controller holds there.
// - Holding: probes one step up (a quarter more, at least one) every
//   `probe_windows` windows, twice as long after each probe that failed (up
//   to 16 times); a probe that pays off resumes slow start. Steps back a
//   quarter when round trips grow beyond twice the least seen (which falls
//   only a quarter of the way to a shorter window) while throughput does
//   not rise (queueing at the peer).
// - A transient A-ASSOCIATE-RJ or a 0xA7xx status (the peer out of
//   resources) sets a ceiling at the associations the peer had accepted
//   (at least 1): the target does not go above it again for
//   `ceiling_ttl_ms` (24 h; "what the peer tolerated"). The scheduler keeps
//   it across restarts (peer_limits.h, RestoreCeiling). A reload of the
//   destination keeps the controller when the address does not change.
// - Never above `max` (max_associations, 64 when not set), never below 1.
// Fixed (`concurrency = "fixed"`): the target is `max`, always.
//
// Thread: any, one at a time (no I/O, no clock: times are passed in).
#ifndef RELAIS_ROUTER_DELIVER_CONCURRENCY_H_
#define RELAIS_ROUTER_DELIVER_CONCURRENCY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace relais::router {

class ConcurrencyController {
 public:
  struct Settings {
    bool fixed = false;
    uint32_t max = 64;   // cap (max_associations)
    uint32_t start = 2;  // first target (capped by max)
    int64_t min_window_ms = 200;
    uint32_t probe_windows = 8;  // windows held before probing one step up
    // How long a ceiling learnt from a refusal holds (then the peer is
    // asked again). Default: 24 h.
    int64_t ceiling_ttl_ms = 24 * 3600 * 1000LL;
  };
  explicit ConcurrencyController(Settings settings);

  // A new cap or mode (a reload). Keeps what was learnt of the peer.
  void Reconfigure(const Settings& settings);

  // The peer accepted an association; `open` is how many are now established.
  void OnOpened(uint32_t open);
  // The peer refused one more association (transient A-ASSOCIATE-RJ) or
  // answered 0xA7xx while `open` associations were established.
  void OnRefused(int64_t now_ms, uint32_t open);
  // The peer answered 0xA7xx (out of resources) with `open` associations
  // established: one fewer, without a ceiling (the peer may be short of disk,
  // not of associations).
  void OnOutOfResources(uint32_t open);
  // One object delivered: `round_trip_ms` from the first byte sent to the
  // response, `bytes` its data set size.
  void OnObject(int64_t now_ms, int64_t round_trip_ms, uint64_t bytes);
  // The scheduler's view, each time it dispatches: `open` associations
  // established (not closing), `backlog` true while rows wait that no
  // association has taken. May change target().
  void Update(int64_t now_ms, uint32_t open, bool backlog);

  uint32_t target() const { return target_; }
  // Why the target is what it is: "start", "fixed", "throughput-rising",
  // "throughput-flat", "round-trips-grew", "peer-refused",
  // "peer-out-of-resources", "probing",
  // "capped" (at max_associations), "holding".
  const std::string& reason() const { return reason_; }
  // The most associations the peer accepted before refusing one (0: it
  // never refused).
  uint32_t ceiling() const { return ceiling_; }
  // When the ceiling stops holding (the clock of Update; 0: no ceiling).
  int64_t ceiling_until_ms() const { return ceiling_ != 0 ? ceiling_until_ms_ : 0; }
  // A ceiling learnt before (kept across a restart, peer_limits.h) that
  // holds until `until_ms`: the target never goes above it until then.
  void RestoreCeiling(uint32_t ceiling, int64_t until_ms);
  bool fixed() const { return settings_.fixed; }
  uint64_t changes() const { return changes_; }

 private:
  void SetTarget(uint32_t target, const char* reason);
  void ResetWindow(int64_t now_ms);
  void Evaluate(double bytes_per_s, double median_rtt_ms, uint64_t bytes, int64_t ms);
  uint32_t Limit() const;
  // No object for this long: the window is stale (an outage, a stall).
  int64_t StallMs() const;

  Settings settings_;
  uint32_t target_ = 2;
  std::string reason_ = "start";
  uint32_t ceiling_ = 0;
  int64_t ceiling_until_ms_ = 0;
  bool slow_start_ = true;
  uint32_t slow_factor_ = 2;  // slow start multiplies by this (4 while scaling is nearly linear)
  uint64_t changes_ = 0;
  // The level the last increase came from, and its figures; 0: no increase pending.
  uint32_t from_ = 0;
  double ref_bytes_per_s_ = 0;  // throughput at the held level (or from_)
  double ref_rtt_ms_ = 0;       // mean round trip at the held level
  double min_rtt_ms_ = 0;       // least window mean round trip (drifting up)
  uint32_t held_windows_ = 0;
  uint32_t probe_every_ = 0;  // windows between probes: doubles after each failed one (max(this, probe_windows))
  // The current window.
  bool measuring_ = false;
  int64_t window_start_ = 0;
  uint64_t window_bytes_ = 0;
  uint64_t window_objects_ = 0;
  std::vector<double> window_rtts_;  // each object's round trip (the median is used)
  // A window that looked flat or queued, kept for a second look (0: none).
  uint64_t pending_bytes_ = 0;
  int64_t pending_ms_ = 0;
  double rtt_estimate_ms_ = 0;  // moving average of the objects' round trips (window length)
  int64_t last_object_ms_ = 0;  // when the last object was delivered
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_CONCURRENCY_H_
