// BandwidthAt: which `bandwidth` window of a destination is in force
// (rules/routing.h).
#include <algorithm>
#include <vector>

#include "rules/routing.h"

namespace relais::rules {
namespace {

constexpr int64_t kDay = 86400;

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Day of the week of local day number `day` (days since 1970-01-01, a Thursday): 0 Sunday.
int WeekDay(int64_t day) { return static_cast<int>(((day + 4) % 7 + 7) % 7); }

bool Holds(const BandwidthWindow& w, int64_t local_s) {
  const int64_t day = FloorDiv(local_s, kDay);
  const int64_t sec = local_s - day * kDay;
  auto on = [&](int64_t d) { return (w.days >> WeekDay(d)) & 1; };
  if (w.from_s == w.to_s) return on(day);  // the whole day
  if (w.from_s < w.to_s) return on(day) && sec >= w.from_s && sec < w.to_s;
  // Crosses midnight: the evening of a listed day, or the morning after one.
  return (on(day) && sec >= w.from_s) || (on(day - 1) && sec < w.to_s);
}

uint64_t LimitAt(const std::vector<BandwidthWindow>& windows, int64_t local_s) {
  for (const BandwidthWindow& w : windows) {
    if (Holds(w, local_s)) return w.limit_bps;
  }
  return 0;
}

}  // namespace

BandwidthNow BandwidthAt(const std::vector<BandwidthWindow>& windows, int64_t local_s) {
  BandwidthNow out;
  out.limit_bps = LimitAt(windows, local_s);
  out.next_change = local_s + 8 * kDay;
  // The cap can only change at a window's edge: midnight, from or to, on one
  // of the next 8 days.
  std::vector<int64_t> edges;
  const int64_t today = FloorDiv(local_s, kDay) * kDay;
  for (int64_t d = 0; d <= 8; ++d) {
    const int64_t midnight = today + d * kDay;
    edges.push_back(midnight);
    for (const BandwidthWindow& w : windows) {
      edges.push_back(midnight + w.from_s);
      edges.push_back(midnight + w.to_s);
    }
  }
  std::sort(edges.begin(), edges.end());
  for (int64_t e : edges) {
    if (e <= local_s || e >= out.next_change) continue;
    if (LimitAt(windows, e) != out.limit_bps) {
      out.next_change = e;
      break;
    }
  }
  return out;
}

}  // namespace relais::rules
