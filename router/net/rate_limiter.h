// RateLimiter: a token bucket that paces the bytes a destination's
// associations put on the wire (rules: destination bandwidth_limit), so that
// Relais leaves room on a shared WAN link. Shared by every association of
// one destination. Internal to router/; loop thread only.
#ifndef RELAIS_ROUTER_NET_RATE_LIMITER_H_
#define RELAIS_ROUTER_NET_RATE_LIMITER_H_

#include <algorithm>
#include <cstdint>

namespace relais::router {

class RateLimiter {
 public:
  // `bytes_per_s`: 0 is unlimited (a `bandwidth` window may lift the cap
  // while associations hold the limiter). The bucket holds at most a quarter
  // second of traffic (at least 64 KiB), so an idle destination cannot burst
  // for long.
  explicit RateLimiter(uint64_t bytes_per_s) {
    SetRate(bytes_per_s);
    tokens_ = capacity_;
  }

  uint64_t bytes_per_s() const { return static_cast<uint64_t>(rate_); }

  // Changes the rate live (the bandwidth window in force changed). Debt and
  // tokens are kept, within the new bucket size.
  void SetRate(uint64_t bytes_per_s) {
    rate_ = static_cast<double>(bytes_per_s);
    capacity_ = std::max(rate_ / 4, 65536.0);
    if (rate_ == 0) tokens_ = capacity_;
    tokens_ = std::min(tokens_, capacity_);
  }

  // Milliseconds to wait before sending more (0: now). `now_ms` is a
  // monotonic clock (uv_now).
  uint64_t DelayMs(uint64_t now_ms) {
    if (rate_ == 0) return 0;
    Refill(now_ms);
    if (tokens_ >= 0) return 0;
    return static_cast<uint64_t>(-tokens_ * 1000.0 / rate_) + 1;
  }

  // Records `bytes` sent. The bucket may go into debt (a chunk is sent
  // whole); the debt is paid by waiting before the next one.
  void Consume(uint64_t bytes, uint64_t now_ms) {
    if (rate_ == 0) return;
    Refill(now_ms);
    tokens_ -= static_cast<double>(bytes);
  }

 private:
  void Refill(uint64_t now_ms) {
    if (last_ms_ != 0 && now_ms > last_ms_) {
      tokens_ = std::min(capacity_, tokens_ + rate_ * static_cast<double>(now_ms - last_ms_) / 1000.0);
    }
    last_ms_ = std::max(last_ms_, now_ms);
  }

  double rate_ = 0;
  double capacity_ = 65536.0;
  double tokens_ = 65536.0;
  uint64_t last_ms_ = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_RATE_LIMITER_H_
