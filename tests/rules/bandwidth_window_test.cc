// BandwidthAt (rules/routing.h): which `bandwidth` window holds at a local
// time and when the cap next changes: days, a window crossing midnight, the
// first match winning, a fixed UTC offset (the clock is the argument).
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "rules/routing.h"

namespace relais::rules {
namespace {

constexpr int64_t kH = 3600;
constexpr int64_t kDay = 86400;
// Monday 2026-12-07 00:00 local (unix seconds of that local day at UTC+0).
constexpr int64_t kMonday = 1796601600;
constexpr uint8_t kMonFri = 0b0111110;
constexpr uint8_t kSat = 0b1000000;

TEST(BandwidthWindowTest, MondayIsMonday) {
  // Sanity of the constant: 1796601600 = 2026-12-07T00:00:00Z, a Monday.
  BandwidthNow b = BandwidthAt({{1000, 1u << 1, 0, 0}}, kMonday + 1);
  EXPECT_EQ(b.limit_bps, 1000u);
  b = BandwidthAt({{1000, 1u << 1, 0, 0}}, kMonday - 1);  // Sunday 23:59:59
  EXPECT_EQ(b.limit_bps, 0u);
  EXPECT_EQ(b.next_change, kMonday);
}

TEST(BandwidthWindowTest, Table) {
  // Weekdays 07:00-19:00 2 MB/s, nights 19:00-07:00 (crossing midnight) on
  // weekdays 8 MB/s, Saturday all day 1 MB/s, otherwise unlimited.
  const std::vector<BandwidthWindow> w = {
      {2000000, kMonFri, 7 * kH, 19 * kH},
      {8000000, kMonFri, 19 * kH, 7 * kH},
      {1000000, kSat, 0, 0},
      {0, 0x7F, 0, 0},
  };
  struct Case {
    int64_t at;  // local seconds
    uint64_t limit;
    int64_t next;
  };
  const Case cases[] = {
      // Monday 06:59:59: Sunday's night is not a window (Sunday is not listed).
      {kMonday + 7 * kH - 1, 0, kMonday + 7 * kH},
      {kMonday + 7 * kH, 2000000, kMonday + 19 * kH},
      {kMonday + 12 * kH, 2000000, kMonday + 19 * kH},
      {kMonday + 19 * kH, 8000000, kMonday + kDay + 7 * kH},
      // Tuesday 03:00: Monday's night, crossing midnight.
      {kMonday + kDay + 3 * kH, 8000000, kMonday + kDay + 7 * kH},
      // Friday 23:00 and Saturday 06:00: Friday's night runs into Saturday.
      {kMonday + 4 * kDay + 23 * kH, 8000000, kMonday + 5 * kDay + 7 * kH},
      {kMonday + 5 * kDay + 6 * kH, 8000000, kMonday + 5 * kDay + 7 * kH},
      // Saturday 07:00: Saturday's window (first match: the night ended).
      {kMonday + 5 * kDay + 7 * kH, 1000000, kMonday + 6 * kDay},
      // Sunday: unlimited until Monday 07:00.
      {kMonday + 6 * kDay + 12 * kH, 0, kMonday + 7 * kDay + 7 * kH},
  };
  for (const Case& c : cases) {
    BandwidthNow b = BandwidthAt(w, c.at);
    EXPECT_EQ(b.limit_bps, c.limit) << "at " << (c.at - kMonday) / kH << "h after Monday 00:00";
    EXPECT_EQ(b.next_change, c.next) << "at " << (c.at - kMonday) / kH << "h after Monday 00:00";
  }
}

TEST(BandwidthWindowTest, FirstMatchWins) {
  const std::vector<BandwidthWindow> w = {{500, 0x7F, 10 * kH, 11 * kH}, {900, 0x7F, 0, 0}};
  EXPECT_EQ(BandwidthAt(w, kMonday + 10 * kH + 30 * 60).limit_bps, 500u);
  EXPECT_EQ(BandwidthAt(w, kMonday + 9 * kH).limit_bps, 900u);
  EXPECT_EQ(BandwidthAt(w, kMonday + 9 * kH).next_change, kMonday + 10 * kH);
  // Nothing changes: next_change is 8 days ahead.
  EXPECT_EQ(BandwidthAt({{900, 0x7F, 0, 0}}, kMonday).next_change, kMonday + 8 * kDay);
  EXPECT_EQ(BandwidthAt({}, kMonday).limit_bps, 0u);
}

TEST(BandwidthWindowTest, UtcOffsetIsTheCallersLocalTime) {
  // 07:00-19:00 at UTC+2: 05:00Z is 07:00 local.
  const std::vector<BandwidthWindow> w = {{2000000, 0x7F, 7 * kH, 19 * kH}};
  const int64_t offset = 2 * kH;
  EXPECT_EQ(BandwidthAt(w, kMonday + 5 * kH - 1 + offset).limit_bps, 0u);
  BandwidthNow b = BandwidthAt(w, kMonday + 5 * kH + offset);
  EXPECT_EQ(b.limit_bps, 2000000u);
  EXPECT_EQ(b.next_change - offset, kMonday + 17 * kH);  // 19:00 local = 17:00Z
  // Before 1970 local time (negative seconds) days still count right:
  // 1969-12-29 was a Monday.
  EXPECT_EQ(BandwidthAt({{7, 1u << 1, 0, 0}}, -3 * kDay + 1).limit_bps, 7u);
}

}  // namespace
}  // namespace relais::rules
