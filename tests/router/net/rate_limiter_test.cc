// RateLimiter (router/net/rate_limiter.h): a token bucket on a fake clock.
#include "router/net/rate_limiter.h"

#include <gtest/gtest.h>

namespace relais::router {
namespace {

TEST(RateLimiterTest, BurstOfAQuarterSecondThenPacesAtTheRate) {
  RateLimiter r(1'000'000);  // 1 MB/s: bucket 250 kB
  uint64_t now = 1000;
  EXPECT_EQ(r.DelayMs(now), 0u);
  r.Consume(250'000, now);
  EXPECT_EQ(r.DelayMs(now), 0u) << "the bucket was full: a quarter second goes at once";
  r.Consume(100'000, now);  // 100 kB of debt: 100 ms
  uint64_t wait = r.DelayMs(now);
  EXPECT_GE(wait, 100u);
  EXPECT_LE(wait, 101u);
  EXPECT_GT(r.DelayMs(now + 50), 0u);
  EXPECT_EQ(r.DelayMs(now + 101), 0u);
}

TEST(RateLimiterTest, LongRunAverageIsTheRate) {
  RateLimiter r(2'000'000);
  uint64_t now = 5000, sent = 0;
  const uint64_t start = now;
  // Send 256 KiB chunks whenever allowed, as ScuAssociation::PumpData does.
  while (sent < 20'000'000) {
    uint64_t wait = r.DelayMs(now);
    if (wait > 0) {
      now += wait;
      continue;
    }
    r.Consume(262'144, now);
    sent += 262'144;
  }
  double seconds = static_cast<double>(now - start) / 1000.0;
  double rate = static_cast<double>(sent) / seconds;
  // The first quarter second is free (the bucket starts full), the last
  // chunk is sent on credit: close to 2 MB/s, never far above.
  EXPECT_GT(rate, 1.9e6);
  EXPECT_LT(rate, 2.2e6);
}

TEST(RateLimiterTest, IdleTimeDoesNotAccumulateBeyondTheBucket) {
  RateLimiter r(100'000);  // bucket = 64 KiB minimum
  r.Consume(1, 1000);
  // An hour idle refills at most the bucket.
  EXPECT_EQ(r.DelayMs(3'601'000), 0u);
  r.Consume(65536, 3'601'000);
  r.Consume(100'000, 3'601'000);
  EXPECT_GE(r.DelayMs(3'601'000), 999u);
}

TEST(RateLimiterTest, ClockGoingBackwardsIsIgnored) {
  RateLimiter r(1'000'000);
  r.Consume(500'000, 10'000);
  uint64_t wait = r.DelayMs(10'000);
  EXPECT_GT(wait, 0u);
  EXPECT_GE(r.DelayMs(9'000), wait) << "an earlier time must not refill the bucket";
}

TEST(RateLimiterTest, SetRateChangesThePaceLiveAndZeroIsUnlimited) {
  RateLimiter r(400'000);  // a bandwidth window of 400 KB/s, bucket 100 kB
  r.Consume(500'000, 1000);
  EXPECT_EQ(r.DelayMs(1000), 1001u);  // 400 kB of debt at 400 KB/s
  r.SetRate(1'600'000);               // the next window: the debt is paid 4x faster
  EXPECT_EQ(r.bytes_per_s(), 1'600'000u);
  EXPECT_EQ(r.DelayMs(1000), 251u);
  r.SetRate(0);  // "unlimited": never a wait, whatever is sent
  r.Consume(100'000'000, 1000);
  EXPECT_EQ(r.DelayMs(1000), 0u);
  r.SetRate(400'000);  // capped again: a full bucket (100 kB) at most, then the pace
  EXPECT_EQ(r.DelayMs(60'000), 0u);
  r.Consume(500'000, 60'000);
  EXPECT_EQ(r.DelayMs(60'000), 1001u);
  RateLimiter unlimited(0);
  unlimited.Consume(1'000'000'000, 5);
  EXPECT_EQ(unlimited.DelayMs(5), 0u);
}

}  // namespace
}  // namespace relais::router
