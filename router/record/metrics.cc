// Metrics (router/record/metrics.h): the counters and the last hour's
// per-minute totals.
#include "router/record/metrics.h"

#include <algorithm>

namespace relais::router {
namespace {

constexpr int64_t kMinuteMs = 60000;

}  // namespace

void Metrics::ObjectReceived(uint64_t bytes, double latency_s, int64_t now_unix_ms) {
  ++objects_received_;
  bytes_received_ += bytes;
  if (!(latency_s >= 0)) latency_s = 0;  // NaN or a clock step backwards
  for (size_t i = 0; i < std::size(kLatencyBuckets); ++i) {
    if (latency_s <= kLatencyBuckets[i]) ++latency_counts_[i];
  }
  ++latency_counts_.back();
  latency_sum_ += latency_s;
  Minute* m = Bucket(now_unix_ms);
  ++m->received;
  m->received_bytes += bytes;
}

void Metrics::ObjectSent(uint64_t bytes, int64_t now_unix_ms) {
  Minute* m = Bucket(now_unix_ms);
  ++m->sent;
  m->sent_bytes += bytes;
}

Metrics::Minute* Metrics::Bucket(int64_t now_unix_ms) {
  int64_t minute = std::max<int64_t>(now_unix_ms, 0) / kMinuteMs;
  Minute& m = minutes_[static_cast<size_t>(minute % 60)];
  if (m.start_unix_ms != minute * kMinuteMs) m = Minute{minute * kMinuteMs};  // an hour-old slot: reuse it
  return &m;
}

std::vector<Metrics::Minute> Metrics::LastHour(int64_t now_unix_ms) const {
  int64_t current = std::max<int64_t>(now_unix_ms, 0) / kMinuteMs;
  std::vector<Minute> out;
  out.reserve(60);
  for (int64_t minute = current - 59; minute <= current; ++minute) {
    int64_t start = minute * kMinuteMs;
    const Minute& slot = minutes_[static_cast<size_t>(((minute % 60) + 60) % 60)];
    out.push_back(slot.start_unix_ms == start ? slot : Minute{start});
  }
  return out;
}

}  // namespace relais::router
