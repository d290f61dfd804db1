// The adaptive concurrency controller (router/deliver/concurrency.h) against
// a simulated link: a round trip, a bandwidth, a peer's own capacity and a
// peer that refuses associations beyond some number. Each association is a
// closed loop (one object outstanding); throughput is the least of what the
// associations can carry over the round trip, the link and the peer; an
// object's round trip follows from Little's law. No clock, no peers.
#include "router/deliver/concurrency.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "router/deliver/peer_limits.h"

namespace relais::router {
namespace {

struct Link {
  double rtt_ms = 100;
  double link_bytes_per_s = 100e6;
  double peer_bytes_per_s = 1e12;  // what the peer can store
  uint32_t refuse_beyond = 0;      // 0: accepts any number
  uint64_t object_bytes = 512 * 1024;
};

struct Trace {
  std::vector<uint32_t> target_per_s;  // the target at each simulated second
  uint32_t max_target_after_refusal = 0;
  uint32_t max_open = 0;
  bool refused = false;
  double delivered_bytes = 0;
};

// Runs `c` for `seconds` of simulated time in 10 ms ticks.
Trace Simulate(ConcurrencyController* c, const Link& l, int seconds, int64_t start_ms = 0, uint32_t seed = 1) {
  Trace tr;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> noise(0.9, 1.1);
  const int64_t tick = 10;
  uint32_t open = 0;
  int64_t opening_until = 0;  // new associations take two round trips to open
  uint32_t wanted = 0;
  double pending = 0;  // fractional objects completed
  for (int64_t now = start_ms; now < start_ms + seconds * 1000; now += tick) {
    const uint32_t target = c->target();
    if (target != wanted) {
      wanted = target;
      if (target > open) opening_until = now + static_cast<int64_t>(2 * l.rtt_ms) + tick;
      else open = target;
    }
    if (open < wanted && now >= opening_until) {
      uint32_t can = l.refuse_beyond == 0 ? wanted : std::min(wanted, l.refuse_beyond);
      if (can > open) {
        open = can;
        c->OnOpened(open);
      }
      if (can < wanted) {
        tr.refused = true;
        c->OnRefused(now, open);
        wanted = c->target();
      }
    }
    tr.max_open = std::max(tr.max_open, open);
    if (tr.refused) tr.max_target_after_refusal = std::max(tr.max_target_after_refusal, c->target());
    c->Update(now, open, /*backlog=*/true);
    if (open > 0) {
      const double bytes = static_cast<double>(l.object_bytes);
      const double per_assoc = bytes / (l.rtt_ms / 1000.0 + bytes / l.link_bytes_per_s);
      const double tput = std::min({per_assoc * open, l.link_bytes_per_s, l.peer_bytes_per_s}) * noise(rng);
      const double rtt_ms = open * bytes / tput * 1000.0;
      pending += tput * tick / 1000.0 / bytes;
      while (pending >= 1) {
        pending -= 1;
        c->OnObject(now, static_cast<int64_t>(rtt_ms), l.object_bytes);
        tr.delivered_bytes += bytes;
      }
    }
    if ((now - start_ms) % 1000 == 0) tr.target_per_s.push_back(c->target());
  }
  return tr;
}

// A lossy long link (2 % loss at 100 ms): one association's TCP window is
// cut by every loss, so it carries little (`per_assoc_bytes_per_s`) and
// objects take very different times (retransmissions, timeouts), but many
// associations scale nearly linearly until the link is full. Each
// association is simulated on its own: one object at a time, its duration
// drawn from a heavy-tailed distribution, stretched when the associations
// together would exceed the link.
struct LossyLink {
  double per_assoc_bytes_per_s = 0.8e6;
  double link_bytes_per_s = 40e6;
  double spread = 0.6;        // sigma of the log-normal factor on each object's time
  double timeout_odds = 0.1;  // an object that also waits for a retransmission timeout
  double timeout_ms = 1000;
  uint64_t object_bytes = 512 * 1024;
};

struct LossyTrace {
  std::vector<uint32_t> target_per_s;
  double delivered_bytes = 0;
};

LossyTrace SimulateLossy(ConcurrencyController* c, const LossyLink& l, int seconds, int64_t start_ms = 0,
                         uint32_t seed = 1) {
  LossyTrace tr;
  std::mt19937 rng(seed);
  std::normal_distribution<double> spread(0, l.spread);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t tick = 10;
  struct Assoc {
    int64_t opened_at = 0;
    int64_t started = 0;
    int64_t done_at = 0;
  };
  std::vector<Assoc> assocs;
  auto duration = [&](size_t open) {
    const double base = static_cast<double>(l.object_bytes) / l.per_assoc_bytes_per_s * 1000.0;
    const double stretch = std::max(1.0, static_cast<double>(open) * l.per_assoc_bytes_per_s / l.link_bytes_per_s);
    double ms = base * std::exp(spread(rng)) * stretch;
    if (u(rng) < l.timeout_odds) ms += l.timeout_ms;
    return static_cast<int64_t>(ms);
  };
  for (int64_t now = start_ms; now < start_ms + seconds * 1000; now += tick) {
    const uint32_t target = c->target();
    while (assocs.size() > target) assocs.pop_back();
    while (assocs.size() < target) assocs.push_back({now + 300, 0, 0});  // opening takes three round trips
    uint32_t open = 0;
    for (Assoc& a : assocs) {
      if (now < a.opened_at) continue;
      ++open;
      if (a.done_at == 0) {
        a.started = now;
        a.done_at = now + duration(assocs.size());
      } else if (now >= a.done_at) {
        c->OnObject(now, now - a.started, l.object_bytes);
        tr.delivered_bytes += static_cast<double>(l.object_bytes);
        a.started = now;
        a.done_at = now + duration(assocs.size());
      }
    }
    c->Update(now, open, /*backlog=*/true);
    if ((now - start_ms) % 1000 == 0) tr.target_per_s.push_back(c->target());
  }
  return tr;
}

ConcurrencyController::Settings Adaptive(uint32_t max = 64) {
  ConcurrencyController::Settings s;
  s.max = max;
  return s;
}

TEST(ConcurrencyTest, StartsAtTwoAndFixedIsTheCap) {
  EXPECT_EQ(ConcurrencyController(Adaptive()).target(), 2u);
  EXPECT_EQ(ConcurrencyController(Adaptive()).reason(), "start");
  EXPECT_EQ(ConcurrencyController(Adaptive(1)).target(), 1u);
  ConcurrencyController::Settings f = Adaptive(12);
  f.fixed = true;
  ConcurrencyController c(f);
  EXPECT_EQ(c.target(), 12u);
  EXPECT_EQ(c.reason(), "fixed");
  Trace tr = Simulate(&c, Link{}, 30);
  for (uint32_t t : tr.target_per_s) EXPECT_EQ(t, 12u);
}

// 100 ms round trip, 100 MB/s: one association carries ~5 MB/s, so about
// 20 fill the link. It must open many, quickly, and not run away.
TEST(ConcurrencyTest, RampsUpOnALongFatLink) {
  ConcurrencyController c(Adaptive());
  Trace tr = Simulate(&c, Link{}, 60);
  ASSERT_GE(tr.target_per_s.size(), 60u);
  EXPECT_GE(tr.target_per_s[5], 16u) << "slow start: 2, 4, 8, 16 within a few seconds";
  uint32_t low = 64, high = 0;
  for (size_t i = 20; i < tr.target_per_s.size(); ++i) {
    low = std::min(low, tr.target_per_s[i]);
    high = std::max(high, tr.target_per_s[i]);
  }
  EXPECT_GE(low, 12u) << "settled target " << c.target() << " (" << c.reason() << ")";
  EXPECT_LE(high, 48u) << "more associations than the link needs";
  EXPECT_EQ(c.ceiling(), 0u);
  // At least 80 % of the link over the last 40 s.
  Trace rest = Simulate(&c, Link{}, 40, 60000);
  EXPECT_GE(rest.delivered_bytes / 40.0, 0.8 * 100e6);
}

// A LAN peer (0.5 ms) whose disk takes 40 MB/s: one association already
// gets all of it; more only queue at the peer.
TEST(ConcurrencyTest, SettlesLowOnALanPeer) {
  Link lan;
  lan.rtt_ms = 0.5;
  lan.link_bytes_per_s = 1e9;
  lan.peer_bytes_per_s = 40e6;
  ConcurrencyController c(Adaptive());
  Trace tr = Simulate(&c, lan, 120);
  uint32_t high = 0;
  double sum = 0;
  for (size_t i = 10; i < tr.target_per_s.size(); ++i) {
    high = std::max(high, tr.target_per_s[i]);
    sum += tr.target_per_s[i];
  }
  EXPECT_LE(high, 4u);
  EXPECT_LE(sum / static_cast<double>(tr.target_per_s.size() - 10), 3.0);
  EXPECT_LE(c.target(), 3u) << c.reason();
  // Probes that fail come less and less often: few associations opened
  // only to be released again.
  EXPECT_LE(c.changes(), 30u);
}

// The long link again, but the peer refuses (A-ASSOCIATE-RJ transient)
// every association beyond 4: the target comes down to 4 and never goes
// above again, however long the throughput would reward more.
TEST(ConcurrencyTest, BacksOffOnRefusalsAndNeverExceedsThePeer) {
  Link l;
  l.refuse_beyond = 4;
  ConcurrencyController c(Adaptive());
  Trace tr = Simulate(&c, l, 120);
  EXPECT_TRUE(tr.refused);
  EXPECT_LE(tr.max_open, 4u);
  EXPECT_LE(tr.max_target_after_refusal, 4u);
  EXPECT_EQ(c.ceiling(), 4u);
  EXPECT_EQ(c.target(), 4u);
  EXPECT_EQ(c.reason(), "peer-refused");
}

// A refusal while fewer are open than the peer accepted before (an
// association the peer had not yet freed) lowers the ceiling; never to 0.
TEST(ConcurrencyTest, CeilingIsWhatWasOpenAtLeastOne) {
  ConcurrencyController c(Adaptive());
  c.OnRefused(0, 0);
  EXPECT_EQ(c.ceiling(), 1u);
  EXPECT_EQ(c.target(), 1u);
  Trace tr = Simulate(&c, Link{}, 30);
  for (uint32_t t : tr.target_per_s) EXPECT_EQ(t, 1u);
}

// max_associations caps the adaptive target.
TEST(ConcurrencyTest, MaxAssociationsCapsTheTarget) {
  ConcurrencyController c(Adaptive(8));
  Trace tr = Simulate(&c, Link{}, 60);
  for (uint32_t t : tr.target_per_s) EXPECT_LE(t, 8u);
  EXPECT_EQ(c.target(), 8u);
  EXPECT_EQ(c.reason(), "capped");
  // A reload with a lower cap applies at once; back to adaptive keeps the cap.
  ConcurrencyController::Settings s = Adaptive(3);
  c.Reconfigure(s);
  EXPECT_EQ(c.target(), 3u);
  s.fixed = true;
  s.max = 5;
  c.Reconfigure(s);
  EXPECT_EQ(c.target(), 5u);
  EXPECT_EQ(c.reason(), "fixed");
}

// The peer's capacity drops (another sender shares it) while we hold many
// associations: round trips grow, throughput does not: step back.
TEST(ConcurrencyTest, StepsBackWhenRoundTripsGrow) {
  ConcurrencyController c(Adaptive());
  Simulate(&c, Link{}, 40);
  const uint32_t before = c.target();
  ASSERT_GE(before, 12u);
  Link slow;
  slow.peer_bytes_per_s = 10e6;  // two associations' worth
  Simulate(&c, slow, 60, 40000);
  EXPECT_LT(c.target(), before);
  EXPECT_LE(c.target(), before / 2) << c.reason();
}

// An outage while the window measures (objects sent before it come back
// seconds later, all at once) is not taken for a rise or a fall.
TEST(ConcurrencyTest, AnOutageIsNotAMeasurement) {
  ConcurrencyController c(Adaptive());
  int64_t now = 0;
  for (; now < 200; now += 10) c.Update(now, 2, true);  // measuring, nothing delivered
  // 20 s later two objects come back at once, then the link runs at 2/s.
  now = 20000;
  c.OnObject(now, 20000, 512 * 1024);
  c.OnObject(now, 20000, 512 * 1024);
  c.Update(now, 2, true);
  EXPECT_EQ(c.target(), 2u) << c.reason();
  EXPECT_EQ(c.changes(), 0u);
  Simulate(&c, Link{}, 30, now + 10);
  EXPECT_GE(c.target(), 12u) << c.reason();
}

// Without waiting rows, or before all associations are open, nothing is
// measured and the target does not move.
TEST(ConcurrencyTest, NoBacklogNoChange) {
  ConcurrencyController c(Adaptive());
  for (int64_t now = 0; now < 60000; now += 10) {
    c.Update(now, 2, /*backlog=*/false);
    c.OnObject(now, 100, 512 * 1024);
  }
  EXPECT_EQ(c.target(), 2u);
  for (int64_t now = 60000; now < 120000; now += 10) {
    c.Update(now, 1, /*backlog=*/true);
    c.OnObject(now, 100, 512 * 1024);
  }
  EXPECT_EQ(c.target(), 2u);
  EXPECT_EQ(c.changes(), 0u);
}

// 2 % loss on a 100 ms link (LossyLink): each association carries 0.8 MB/s
// with objects taking anywhere from a fraction to several times the mean,
// the link 40 MB/s. Noisy windows and inflated round trips must not stop
// the ramp: within a minute the target fills most of the link (50
// associations would; 25 give half), and it is not given back later.
TEST(ConcurrencyTest, RampsUpOnALossyLinkDespiteNoisyRoundTrips) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    ConcurrencyController c(Adaptive());
    LossyLink l;
    LossyTrace tr = SimulateLossy(&c, l, 60, 0, seed);
    LossyTrace rest = SimulateLossy(&c, l, 60, 60000, seed + 100);
    std::string targets;
    for (uint32_t t : tr.target_per_s) targets += " " + std::to_string(t);
    for (uint32_t t : rest.target_per_s) targets += " " + std::to_string(t);
    EXPECT_GE(tr.delivered_bytes / 60.0, 0.5 * l.link_bytes_per_s) << "seed " << seed << ":" << targets;
    EXPECT_GE(rest.delivered_bytes / 60.0, 0.6 * l.link_bytes_per_s) << "seed " << seed << ":" << targets;
    std::printf("seed %u: first minute %.1f MB/s, second %.1f MB/s, target %u (%s)\n", seed, tr.delivered_bytes / 60e6,
                rest.delivered_bytes / 60e6, c.target(), c.reason().c_str());
  }
}

// A refusal holds for ceiling_ttl_ms (24 h), then the peer is asked again;
// a ceiling restored after a restart holds until its own end.
TEST(ConcurrencyTest, ALearntCeilingExpires) {
  ConcurrencyController::Settings s = Adaptive();
  s.ceiling_ttl_ms = 60000;
  ConcurrencyController c(s);
  c.OnRefused(1000, 2);
  EXPECT_EQ(c.ceiling(), 2u);
  EXPECT_EQ(c.ceiling_until_ms(), 61000);
  Simulate(&c, Link{}, 50, 1000);
  EXPECT_EQ(c.target(), 2u);
  EXPECT_EQ(c.ceiling(), 2u);
  Simulate(&c, Link{}, 120, 61000);
  EXPECT_EQ(c.ceiling(), 0u);
  EXPECT_GT(c.target(), 2u) << c.reason();

  ConcurrencyController restored(Adaptive());
  restored.RestoreCeiling(3, 30000);
  EXPECT_EQ(restored.ceiling(), 3u);
  EXPECT_EQ(restored.ceiling_until_ms(), 30000);
  Trace tr = Simulate(&restored, Link{}, 25);
  for (uint32_t t : tr.target_per_s) EXPECT_LE(t, 3u);
  EXPECT_EQ(restored.target(), 3u);
}

// The file that keeps them across restarts: what is saved is loaded back,
// expired limits are left out, and a damaged file is an error naming it.
TEST(PeerLimitsTest, SavedLimitsLoadBackAndExpiredOnesAreDropped) {
  char tmpl[] = "/tmp/relais-peer-limits-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/" + kPeerLimitsFile;
  EXPECT_TRUE(LoadPeerLimits(path).status().IsNotFound());
  PeerLimits limits;
  limits["pacs"] = PeerLimit{PeerKey("PACS", "10.0.0.5", 104), 4, 100000};
  limits["old"] = PeerLimit{PeerKey("OLD", "10.0.0.6", 104), 2, 5000};
  ASSERT_TRUE(SavePeerLimits(path, limits, 10000).ok());
  Result<PeerLimits> back = LoadPeerLimits(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ(back->at("pacs").peer, "PACS@10.0.0.5:104");
  EXPECT_EQ(back->at("pacs").ceiling, 4u);
  EXPECT_EQ(back->at("pacs").until_unix_ms, 100000);
  FILE* f = std::fopen(path.c_str(), "a");
  ASSERT_NE(f, nullptr);
  std::fputs("broken line\n", f);
  std::fclose(f);
  Result<PeerLimits> bad = LoadPeerLimits(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path + ":3:"), std::string::npos) << bad.status().ToString();
  std::remove(path.c_str());
  rmdir(tmpl);
}

}  // namespace
}  // namespace relais::router
