#include "router/deliver/concurrency.h"

#include <algorithm>
#include <vector>

namespace relais::router {

namespace {
constexpr uint64_t kMinWindowObjects = 8;
constexpr double kLongRoundTripMs = 100;
}  // namespace

ConcurrencyController::ConcurrencyController(Settings settings) : settings_(settings) {
  settings_.max = std::max<uint32_t>(settings_.max, 1);
  if (settings_.fixed) {
    target_ = settings_.max;
    reason_ = "fixed";
  } else {
    target_ = std::clamp<uint32_t>(settings_.start, 1, settings_.max);
    reason_ = "start";
  }
}

void ConcurrencyController::Reconfigure(const Settings& settings) {
  const bool was_fixed = settings_.fixed;
  settings_ = settings;
  settings_.max = std::max<uint32_t>(settings_.max, 1);
  if (settings_.fixed) {
    if (target_ != settings_.max || reason_ != "fixed") SetTarget(settings_.max, "fixed");
    return;
  }
  if (was_fixed) {
    slow_start_ = true;
    from_ = 0;
    ref_bytes_per_s_ = ref_rtt_ms_ = 0;
    SetTarget(std::clamp<uint32_t>(settings_.start, 1, Limit()), "start");
  } else if (target_ > Limit()) {
    from_ = 0;
    SetTarget(Limit(), "capped");
  }
}

uint32_t ConcurrencyController::Limit() const {
  uint32_t limit = settings_.max;
  if (ceiling_ != 0) limit = std::min(limit, ceiling_);
  return std::max<uint32_t>(limit, 1);
}

void ConcurrencyController::SetTarget(uint32_t target, const char* reason) {
  if (target != target_) ++changes_;
  target_ = target;
  reason_ = reason;
  held_windows_ = 0;
  measuring_ = false;
  pending_bytes_ = 0;
  pending_ms_ = 0;
}

void ConcurrencyController::ResetWindow(int64_t now_ms) {
  measuring_ = true;
  window_start_ = now_ms;
  window_bytes_ = 0;
  window_objects_ = 0;
  window_rtts_.clear();
}

void ConcurrencyController::OnOpened(uint32_t open) {
  // Nothing to learn yet: a refusal says more. Kept for symmetry and logs.
  (void)open;
}

void ConcurrencyController::RestoreCeiling(uint32_t ceiling, int64_t until_ms) {
  if (ceiling == 0) return;
  ceiling_ = ceiling;
  ceiling_until_ms_ = until_ms;
  if (target_ > Limit()) SetTarget(Limit(), "peer-refused");
}

void ConcurrencyController::OnRefused(int64_t now_ms, uint32_t open) {
  if (settings_.fixed) return;
  const uint32_t tolerated = std::max<uint32_t>(open, 1);
  if (ceiling_ == 0 || tolerated < ceiling_) ceiling_ = tolerated;
  ceiling_until_ms_ = now_ms + settings_.ceiling_ttl_ms;
  slow_start_ = false;
  from_ = 0;
  ref_bytes_per_s_ = ref_rtt_ms_ = 0;
  SetTarget(std::min(target_, Limit()), "peer-refused");
}

void ConcurrencyController::OnOutOfResources(uint32_t open) {
  if (settings_.fixed) return;
  slow_start_ = false;
  from_ = 0;
  ref_bytes_per_s_ = ref_rtt_ms_ = 0;
  const uint32_t fewer = open > 1 ? open - 1 : 1;
  SetTarget(std::min(target_, fewer), "peer-out-of-resources");
}

int64_t ConcurrencyController::StallMs() const {
  return std::max<int64_t>(1000, static_cast<int64_t>(3 * rtt_estimate_ms_));
}

void ConcurrencyController::OnObject(int64_t now_ms, int64_t round_trip_ms, uint64_t bytes) {
  const double rtt_ms = static_cast<double>(std::max<int64_t>(round_trip_ms, 0));
  // No object for a long while (the link was down, the peer stalled): what
  // the window holds says nothing of the number of associations.
  const bool stalled = last_object_ms_ != 0 && now_ms - last_object_ms_ > StallMs();
  last_object_ms_ = now_ms;
  rtt_estimate_ms_ = rtt_estimate_ms_ <= 0 ? rtt_ms : 0.8 * rtt_estimate_ms_ + 0.2 * rtt_ms;
  if (!measuring_) return;
  if (stalled) {
    ResetWindow(now_ms);
    return;
  }
  window_bytes_ += bytes;
  ++window_objects_;
  window_rtts_.push_back(rtt_ms);
}

void ConcurrencyController::Update(int64_t now_ms, uint32_t open, bool backlog) {
  if (settings_.fixed) return;
  if (ceiling_ != 0 && now_ms >= ceiling_until_ms_) {
    // The peer is asked again: probes may go above the old ceiling.
    ceiling_ = 0;
    ceiling_until_ms_ = 0;
    if (reason_ == "peer-refused") reason_ = "holding";
  }
  // Nearly all open is enough (an eighth may still be opening: across a
  // lossy link a lost SYN holds an association back a second or more).
  if (!backlog || open < target_ - target_ / 8) {
    // Nothing to learn while rows do not wait or associations still open.
    measuring_ = false;
    pending_bytes_ = 0;
    pending_ms_ = 0;
    return;
  }
  if (!measuring_ || now_ms - std::max(window_start_, last_object_ms_) > StallMs()) {
    ResetWindow(now_ms);
    return;
  }
  const int64_t elapsed = now_ms - window_start_;
  const int64_t length = std::max<int64_t>(settings_.min_window_ms, static_cast<int64_t>(2 * rtt_estimate_ms_));
  // At least 8 objects, whatever the target: the median round trip and the
  // rate of a handful are mostly chance on a lossy link.
  if (elapsed < length || window_objects_ < std::max<uint64_t>(target_, kMinWindowObjects)) return;
  // The median round trip: a few objects that waited for a retransmission
  // timeout (a lossy link) do not make the whole window look queued.
  std::vector<double>& rtts = window_rtts_;
  std::nth_element(rtts.begin(), rtts.begin() + static_cast<std::ptrdiff_t>(rtts.size() / 2), rtts.end());
  const double rtt = rtts[rtts.size() / 2];
  // The second look at a level (Evaluate) judges this window with the one before.
  const uint64_t bytes = window_bytes_ + pending_bytes_;
  const int64_t ms = elapsed + pending_ms_;
  const double bytes_per_s = static_cast<double>(bytes) * 1000.0 / static_cast<double>(ms);
  ResetWindow(now_ms);
  Evaluate(bytes_per_s, rtt, bytes, ms);
}

void ConcurrencyController::Evaluate(double bytes_per_s, double rtt, uint64_t bytes, int64_t ms) {
  // A window that contradicts the level is looked at once more before it
  // counts: on a lossy link objects take very different times (some wait
  // for a retransmission timeout), and one short window can look flat, or
  // queued, by chance. The second look judges both windows together.
  const bool second_look = pending_ms_ > 0;
  pending_ms_ = 0;
  pending_bytes_ = 0;
  auto look_again = [&] {
    pending_bytes_ = bytes;
    pending_ms_ = ms;
  };
  // The least round trip seen: what an object costs without queueing. A
  // shorter window moves it a quarter of the way down (one lucky window of
  // a lossy link is not the path's round trip); it drifts up 1 % a window,
  // so that a longer path is learnt in time.
  if (min_rtt_ms_ <= 0) {
    min_rtt_ms_ = rtt;
  } else if (rtt < min_rtt_ms_) {
    min_rtt_ms_ -= 0.25 * (min_rtt_ms_ - rtt);
  } else {
    min_rtt_ms_ *= 1.01;
  }
  if (from_ != 0) {
    // Judging the step from from_ to target_: it must bring at least half
    // of what the extra associations could.
    const double extra = static_cast<double>(target_ - from_) / static_cast<double>(from_);
    const double wanted = ref_bytes_per_s_ * (1.0 + 0.5 * extra);
    // Little's law: `target_` associations whose objects each take `rtt`
    // carry target_ / rtt objects a second. Round trips that did not grow
    // with the associations mean the link and the peer are not full, what
    // ever the byte count of a window says (on a lossy link it is noisy):
    // on the second look, that is a rise too, unless throughput fell.
    const double implied = ref_rtt_ms_ > 0 && rtt > 0 ? ref_bytes_per_s_ * (1.0 + extra) * ref_rtt_ms_ / rtt : 0;
    const bool rising = bytes_per_s >= wanted || (second_look && implied >= wanted && bytes_per_s >= ref_bytes_per_s_);
    if (rising) {
      // Nearly linear (75 % of what the extra associations could bring):
      // the link is far from full, so the next slow-start step quadruples.
      slow_factor_ = bytes_per_s >= ref_bytes_per_s_ * (1.0 + 0.75 * extra) ? 4 : 2;
      probe_every_ = settings_.probe_windows;
      ref_bytes_per_s_ = bytes_per_s;
      ref_rtt_ms_ = rtt;
      // A probe that paid off: the link had room after all (slow start may
      // have ended on a noisy window). Grow by doubling again.
      if (!slow_start_) {
        slow_start_ = true;
        slow_factor_ = 2;
      }
      const uint32_t step = slow_start_ ? target_ * (slow_factor_ - 1) : std::max<uint32_t>(target_ / 4, 1);
      const uint32_t next = std::min(target_ + step, Limit());
      if (next <= target_) {
        from_ = 0;
        SetTarget(target_, ceiling_ != 0 && ceiling_ <= settings_.max ? "peer-refused" : "capped");
        return;
      }
      from_ = target_;
      SetTarget(next, slow_start_ ? "throughput-rising" : "probing");
      return;
    }
    if (!second_look) {
      look_again();
      return;
    }
    if (slow_start_ && target_ > 2 * from_) {
      // Quadrupling overshot: try doubling from the same level instead.
      slow_factor_ = 2;
      SetTarget(std::min(from_ * 2, Limit()), "throughput-rising");
      return;
    }
    const bool rtt_grew = ref_rtt_ms_ > 0 && rtt > 2.0 * ref_rtt_ms_;
    const uint32_t back = from_;
    from_ = 0;
    // Measured afresh at the level held: the figure the step was judged
    // against came from one window, perhaps a lucky one.
    ref_bytes_per_s_ = ref_rtt_ms_ = 0;
    // A probe that failed: wait twice as long before the next one (each
    // probe opens associations that are released again).
    if (!slow_start_)
      probe_every_ = std::min(std::max(probe_every_, settings_.probe_windows) * 2, settings_.probe_windows * 16);
    slow_start_ = false;
    SetTarget(back, rtt_grew ? "round-trips-grew" : "throughput-flat");
    return;
  }
  if (ref_bytes_per_s_ <= 0 || ref_rtt_ms_ <= 0) {
    // First window at this level: its reference.
    ref_bytes_per_s_ = bytes_per_s;
    ref_rtt_ms_ = rtt;
    if (slow_start_ && target_ < Limit()) {
      // Objects that take a long round trip (a WAN) leave one association
      // mostly waiting: the first step quadruples there. A LAN peer's
      // objects come back in a few milliseconds: it doubles.
      const uint32_t factor = changes_ == 0 && rtt >= kLongRoundTripMs ? 4 : 2;
      from_ = target_;
      SetTarget(std::min(target_ * factor, Limit()), "throughput-rising");
    }
    return;
  }
  if (rtt > 2.0 * min_rtt_ms_ && bytes_per_s < ref_bytes_per_s_ * 1.1 && target_ > 1) {
    if (!second_look) {
      look_again();
      return;
    }
    // The peer (or the path) queues: fewer associations.
    ref_bytes_per_s_ = ref_rtt_ms_ = 0;
    SetTarget(std::max<uint32_t>(target_ * 3 / 4, 1), "round-trips-grew");
    return;
  }
  ref_bytes_per_s_ = 0.7 * ref_bytes_per_s_ + 0.3 * bytes_per_s;
  ref_rtt_ms_ = 0.7 * ref_rtt_ms_ + 0.3 * rtt;
  if (++held_windows_ >= std::max(probe_every_, settings_.probe_windows) && target_ < Limit()) {
    from_ = target_;
    SetTarget(std::min(target_ + std::max<uint32_t>(target_ / 4, 1), Limit()), "probing");
    return;
  }
  if (target_ >= Limit()) {
    reason_ = ceiling_ != 0 && ceiling_ <= settings_.max ? "peer-refused" : "capped";
  } else if (reason_ != "throughput-flat" && reason_ != "round-trips-grew" && reason_ != "peer-refused") {
    reason_ = "holding";
  }
}

}  // namespace relais::router
