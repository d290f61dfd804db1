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

}  // namespace
}  // namespace relais::router
