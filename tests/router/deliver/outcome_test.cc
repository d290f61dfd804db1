// Outcome (router/deliver/outcome.h): DIMSE statuses classified as PS3.7
// Annex C and PS3.4 B.2.3 say, and which outcomes are worth retrying.
#include "router/deliver/outcome.h"

#include <gtest/gtest.h>

namespace relais::router {
namespace {

TEST(OutcomeTest, StatusesAreClassifiedAndRetriedAsThePolicySays) {
  EXPECT_EQ(ClassifyStatus(0x0000), Outcome::Kind::kSuccess);
  for (uint16_t w : {0xB000, 0xB007, 0xB006, 0x0001, 0x0107})
    EXPECT_EQ(ClassifyStatus(w), Outcome::Kind::kWarning) << w;
  for (uint16_t f : {0xA700, 0xA7FF, 0xA900, 0xC000, 0xC123, 0x0122, 0x0124, 0x0211, 0xFF00}) {
    EXPECT_EQ(ClassifyStatus(f), Outcome::Kind::kFailure) << f;
  }
  auto failure = [](uint16_t st) {
    Outcome o;
    o.kind = ClassifyStatus(st);
    o.status = st;
    return o;
  };
  EXPECT_TRUE(failure(0xA700).IsTransient());
  EXPECT_TRUE(failure(0xA7A1).IsTransient());
  EXPECT_FALSE(failure(0xA900).IsTransient());
  EXPECT_FALSE(failure(0xC000).IsTransient());
  EXPECT_FALSE(failure(0x0122).IsTransient());
  EXPECT_FALSE(failure(0x0000).IsTransient());
  Outcome rj;
  rj.kind = Outcome::Kind::kRejected;
  rj.reject_result = ul::RejectResult::kTransient;
  EXPECT_TRUE(rj.IsTransient());
  rj.reject_result = ul::RejectResult::kPermanent;
  EXPECT_FALSE(rj.IsTransient());
  Outcome nc;
  nc.kind = Outcome::Kind::kNoContext;
  EXPECT_FALSE(nc.IsTransient());
}

TEST(OutcomeTest, ToStringNamesTheKindTheStatusAndTheError) {
  Outcome o;
  o.kind = ClassifyStatus(0xA700);
  o.status = 0xA700;
  o.error = "disk full";
  EXPECT_EQ(o.ToString(), "failure status=0xA700: disk full");
  Outcome t;
  t.kind = Outcome::Kind::kTimeout;
  EXPECT_EQ(t.ToString(), "timeout");
  EXPECT_STREQ(OutcomeKindName(Outcome::Kind::kTransportError), "transport-error");
}

}  // namespace
}  // namespace relais::router
