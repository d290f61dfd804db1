// The retry policy (router/deliver/retry_policy.h) as tables: an outcome and
// its attempt counts in, the class, give-up and link verdict out. No peers,
// no loop, no store.
#include "router/deliver/retry_policy.h"

#include <cstdint>
#include <string>

#include <gtest/gtest.h>

namespace relais::router {
namespace {

using Kind = Outcome::Kind;
using FC = FailureClass;

constexpr bool kTransientRj = true;   // A-ASSOCIATE-RJ result: rejected-transient
constexpr bool kPermanentRj = false;  // rejected-permanent
constexpr bool kRetry = false;
constexpr bool kGiveUp = true;

struct Row {
  const char* what;
  Kind kind;
  uint16_t status;        // kFailure: the DIMSE status
  bool reject_transient;  // kRejected: the A-ASSOCIATE-RJ result
  uint32_t attempts;
  uint32_t max_attempts;  // retry.max_attempts; 0: no limit
  FC cls;
  bool give_up;
  bool link;
  bool at_limit;
};

Outcome Make(const Row& r) {
  Outcome o;
  o.kind = r.kind;
  o.status = r.status;
  o.reject_result = r.reject_transient ? ul::RejectResult::kTransient : ul::RejectResult::kPermanent;
  o.error = r.what;
  return o;
}

void Check(const Row& r, const RetryDecision& d) {
  SCOPED_TRACE(std::string(r.what) + " (attempts " + std::to_string(r.attempts) + ", max " +
               std::to_string(r.max_attempts) + ")");
  EXPECT_STREQ(FailureClassName(d.cls), FailureClassName(r.cls));
  EXPECT_EQ(d.give_up, r.give_up);
  EXPECT_EQ(d.link, r.link);
  EXPECT_EQ(d.at_limit, r.at_limit);
}

// An object was sent and failed.
// clang-format off
const Row kSendRows[] = {
    // what                          kind                 status  rj            att max  class                give_up  link   limit
    {"connection lost",              Kind::kTransportError, 0,      kPermanentRj, 1, 0, FC::kLink,            kRetry,  true,  false},
    {"response timeout",             Kind::kTimeout,        0,      kPermanentRj, 7, 0, FC::kLink,            kRetry,  true,  false},
    {"A-ABORT",                      Kind::kAborted,        0,      kPermanentRj, 3, 0, FC::kLink,            kRetry,  true,  false},
    {"A-ASSOCIATE-RJ transient",     Kind::kRejected,       0,      kTransientRj, 4, 0, FC::kLink,            kRetry,  true,  false},
    // PS3.4 B.2.3 0xA7xx Out of Resources; PS3.7 C.4/C.5 0x0213, 0x0110.
    {"0xA700 out of resources",      Kind::kFailure,   0xA700,      kPermanentRj, 1, 0, FC::kTransientStatus, kRetry,  false, false},
    {"0xA7FF out of resources",      Kind::kFailure,   0xA7FF,      kPermanentRj, 9, 0, FC::kTransientStatus, kRetry,  false, false},
    {"0x0213 resource limitation",   Kind::kFailure,   0x0213,      kPermanentRj, 2, 0, FC::kTransientStatus, kRetry,  false, false},
    {"0x0110 processing failure",    Kind::kFailure,   0x0110,      kPermanentRj, 5, 0, FC::kTransientStatus, kRetry,  false, false},
    // A permanent refusal is retried once, then given up.
    {"0xA900 first",                 Kind::kFailure,   0xA900,      kPermanentRj, 1, 0, FC::kRefused,         kRetry,  false, false},
    {"0xA900 second",                Kind::kFailure,   0xA900,      kPermanentRj, 2, 0, FC::kRefused,         kGiveUp, false, false},
    {"0xC000 first",                 Kind::kFailure,   0xC000,      kPermanentRj, 1, 0, FC::kRefused,         kRetry,  false, false},
    {"0xC123 third",                 Kind::kFailure,   0xC123,      kPermanentRj, 3, 0, FC::kRefused,         kGiveUp, false, false},
    {"0x0122 SOP class not supported", Kind::kFailure, 0x0122,      kPermanentRj, 2, 0, FC::kRefused,         kGiveUp, false, false},
    {"A-ASSOCIATE-RJ permanent first", Kind::kRejected,     0,      kPermanentRj, 1, 0, FC::kRefused,         kRetry,  false, false},
    {"A-ASSOCIATE-RJ permanent second", Kind::kRejected,    0,      kPermanentRj, 2, 0, FC::kRefused,         kGiveUp, false, false},
    // Given up at once.
    {"no presentation context",      Kind::kNoContext,      0,      kPermanentRj, 1, 0, FC::kUnsupported,     kGiveUp, false, false},
    {"store read failed",            Kind::kLocalError,     0,      kPermanentRj, 1, 0, FC::kUnreadable,      kGiveUp, false, false},
    // retry.max_attempts.
    {"0xA700 below the limit",       Kind::kFailure,   0xA700,      kPermanentRj, 2, 3, FC::kTransientStatus, kRetry,  false, false},
    {"0xA700 at the limit",          Kind::kFailure,   0xA700,      kPermanentRj, 3, 3, FC::kLimit,           kGiveUp, false, true},
    {"0xA700 past the limit",        Kind::kFailure,   0xA700,      kPermanentRj, 4, 3, FC::kLimit,           kGiveUp, false, true},
    {"connection lost at the limit", Kind::kTransportError, 0,      kPermanentRj, 3, 3, FC::kLimit,           kGiveUp, true,  true},
    {"A-ASSOCIATE-RJ transient at the limit", Kind::kRejected, 0,   kTransientRj, 2, 2, FC::kLimit,           kGiveUp, true,  true},
    {"0xA900 first, max 1",          Kind::kFailure,   0xA900,      kPermanentRj, 1, 1, FC::kLimit,           kGiveUp, false, true},
    {"0xA900 second, max 2: refused wins", Kind::kFailure, 0xA900,  kPermanentRj, 2, 2, FC::kRefused,         kGiveUp, false, true},
    {"no context at the limit: unsupported wins", Kind::kNoContext, 0, kPermanentRj, 1, 1, FC::kUnsupported,  kGiveUp, false, true},
    {"store read at the limit: unreadable wins", Kind::kLocalError, 0, kPermanentRj, 1, 1, FC::kUnreadable,  kGiveUp, false, true},
};
// clang-format on

TEST(RetryPolicyTest, SendFailuresAreClassifiedAndGivenUpAsTheTableSays) {
  for (const Row& r : kSendRows) Check(r, DecideSendRetry(Make(r), r.attempts, r.max_attempts));
}

// An association (or its probe C-ECHO) failed; the head of the queue is charged.
// clang-format off
const Row kOpenRows[] = {
    // what                          kind                 status  rj            att max  class                give_up  link   limit
    {"connect refused",              Kind::kTransportError, 0,      kPermanentRj, 1, 0, FC::kLink,            kRetry,  true,  false},
    {"ARTIM timeout",                Kind::kTimeout,        0,      kPermanentRj, 6, 0, FC::kLink,            kRetry,  true,  false},
    {"A-ABORT",                      Kind::kAborted,        0,      kPermanentRj, 2, 0, FC::kLink,            kRetry,  true,  false},
    {"A-ASSOCIATE-RJ transient",     Kind::kRejected,       0,      kTransientRj, 5, 0, FC::kLink,            kRetry,  true,  false},
    {"A-ASSOCIATE-RJ permanent first", Kind::kRejected,     0,      kPermanentRj, 1, 0, FC::kLink,            kRetry,  true,  false},
    {"A-ASSOCIATE-RJ permanent second", Kind::kRejected,    0,      kPermanentRj, 2, 0, FC::kRefused,         kGiveUp, true,  false},
    // Unlike a send, neither a local error nor a failure status of the
    // probe C-ECHO is the object's: both count as link failures.
    {"A-ASSOCIATE-RQ not sent",      Kind::kLocalError,     0,      kPermanentRj, 3, 0, FC::kLink,            kRetry,  true,  false},
    {"C-ECHO 0xC000",                Kind::kFailure,   0xC000,      kPermanentRj, 3, 0, FC::kLink,            kRetry,  true,  false},
    {"C-ECHO 0xA700",                Kind::kFailure,   0xA700,      kPermanentRj, 3, 0, FC::kLink,            kRetry,  true,  false},
    // retry.max_attempts.
    {"connect refused below the limit", Kind::kTransportError, 0,   kPermanentRj, 2, 3, FC::kLink,            kRetry,  true,  false},
    {"connect refused at the limit", Kind::kTransportError, 0,      kPermanentRj, 3, 3, FC::kLimit,           kGiveUp, true,  true},
    {"A-ASSOCIATE-RJ permanent first, max 1", Kind::kRejected, 0,   kPermanentRj, 1, 1, FC::kLimit,           kGiveUp, true,  true},
    {"A-ASSOCIATE-RJ permanent at the limit: refused wins", Kind::kRejected, 0, kPermanentRj, 2, 2, FC::kRefused, kGiveUp, true, true},
};
// clang-format on

TEST(RetryPolicyTest, OpenFailuresAreLinkFailuresUnlessRefusedOrAtTheLimit) {
  for (const Row& r : kOpenRows) Check(r, DecideOpenRetry(Make(r), r.attempts, r.max_attempts));
}

// A permanent A-ASSOCIATE-RJ that names our configuration holds the rows
// (kMisconfigured, never given up, whatever the attempts and the limit);
// the other reasons and sources keep the kRefused path.
struct RejectRow {
  const char* what;
  ul::RejectResult result;
  ul::RejectSource source;
  uint8_t reason;
  uint32_t attempts;
  uint32_t max_attempts;
  FC cls;
  bool give_up;
  bool hold;
};
// clang-format off
const RejectRow kRejectRows[] = {
    // what                                  result                       source                                  reason                                   att max class               give_up  hold
    {"called AE not recognized",             ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,          ul::kRjCalledAeNotRecognized,            1, 0, FC::kMisconfigured, kRetry,  true},
    {"called AE not recognized, 50th",       ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,          ul::kRjCalledAeNotRecognized,           50, 0, FC::kMisconfigured, kRetry,  true},
    {"called AE not recognized, at the limit", ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,        ul::kRjCalledAeNotRecognized,            3, 3, FC::kMisconfigured, kRetry,  true},
    {"calling AE not recognized",            ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,          ul::kRjCallingAeNotRecognized,           2, 0, FC::kMisconfigured, kRetry,  true},
    {"application context not supported",    ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,          ul::kRjApplicationContextNotSupported,   2, 0, FC::kMisconfigured, kRetry,  true},
    {"no reason given: refused",             ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,          ul::kRjNoReasonGiven,                    2, 0, FC::kRefused,       kGiveUp, false},
    {"called AE, transient: a link failure", ul::RejectResult::kTransient, ul::RejectSource::kServiceUser,          ul::kRjCalledAeNotRecognized,            2, 0, FC::kLink,          kRetry,  false},
    {"provider reason 2 is not called AE",   ul::RejectResult::kPermanent, ul::RejectSource::kServiceProviderAcse,  2,                                       2, 0, FC::kRefused,       kGiveUp, false},
};
// clang-format on

TEST(RetryPolicyTest, AssociationRejectionsThatNameOurConfigurationHoldTheRows) {
  for (const RejectRow& r : kRejectRows) {
    SCOPED_TRACE(r.what);
    Outcome o;
    o.kind = Kind::kRejected;
    o.reject_result = r.result;
    o.reject_source = r.source;
    o.reject_reason = r.reason;
    EXPECT_EQ(o.IsMisconfiguration(), r.cls == FC::kMisconfigured);
    RetryDecision d = DecideOpenRetry(o, r.attempts, r.max_attempts);
    EXPECT_STREQ(FailureClassName(d.cls), FailureClassName(r.cls));
    EXPECT_EQ(d.give_up, r.give_up);
    EXPECT_EQ(d.hold, r.hold);
    EXPECT_TRUE(d.link);
    if (r.hold) {
      EXPECT_FALSE(d.at_limit);
    }
  }
}

// A TLS failure holds the rows when a certificate does not fit (our CA, the
// host name, its dates, ours refused), whatever the attempts; any other TLS
// failure is the link's, like a connection reset.
TEST(RetryPolicyTest, TlsCertificateFailuresHoldTheRowsOtherTlsFailuresAreTheLinks) {
  using TK = TlsFailure::Kind;
  const std::pair<TK, bool> kinds[] = {{TK::kPeerName, true},
                                       {TK::kPeerNotTrusted, true},
                                       {TK::kPeerDates, true},
                                       {TK::kPeerCertificate, true},
                                       {TK::kOurCertificateRefused, true},
                                       {TK::kOther, false},
                                       {TK::kNone, false}};
  for (const auto& [kind, hold] : kinds) {
    SCOPED_TRACE(TlsFailureKindName(kind));
    Outcome o;
    o.kind = Kind::kTransportError;
    o.error = "TLS handshake failed";
    o.tls.kind = kind;
    EXPECT_EQ(o.IsMisconfiguration(), hold);
    RetryDecision d = DecideOpenRetry(o, /*attempts=*/5, /*max_attempts=*/5);
    EXPECT_EQ(d.hold, hold);
    EXPECT_TRUE(d.link);
    EXPECT_EQ(d.give_up, !hold) << "max_attempts reached: only a link failure is given up";
    EXPECT_STREQ(FailureClassName(d.cls), hold ? "misconfigured" : "limit");
  }
  // The typed reason is only read on a transport error.
  Outcome rejected;
  rejected.kind = Kind::kRejected;
  rejected.reject_reason = 1;  // no reason given
  rejected.tls.kind = TK::kPeerName;
  EXPECT_FALSE(rejected.IsMisconfiguration());
}

// The backoff: the initial wait doubled per failure after the first, capped,
// times the caller's jitter.
struct BackoffRow {
  const char* what;
  uint64_t initial_s;  // retry.initial_backoff_s
  uint64_t max_s;      // retry.max_backoff_s
  uint32_t failures;
  double jitter;
  int64_t ms;
};
// clang-format off
const BackoffRow kBackoffRows[] = {
    // what                                   initial  max    failures jitter  ms
    {"no failure yet: the initial wait",          10,  1800,        0, 1.0,    10000},
    {"first failure: the initial wait",           10,  1800,        1, 1.0,    10000},
    {"second failure doubles",                    10,  1800,        2, 1.0,    20000},
    {"fifth failure: 2^4 times",                  10,  1800,        5, 1.0,   160000},
    {"eighth failure: 1280 s, under the cap",     10,  1800,        8, 1.0,  1280000},
    {"ninth failure: 2560 s, capped",             10,  1800,        9, 1.0,  1800000},
    {"many failures stay at the cap",             10,  1800,     1000, 1.0,  1800000},
    {"a doubling that overflows is the cap", 1ull << 40, 1ull << 41, 40, 1.0, int64_t{1000} << 41},
    {"a cap below the initial wait is raised",    60,    10,        3, 1.0,    60000},
    {"no initial wait: always 0",                  0,  1800,        7, 1.0,        0},
    {"jitter 0.8 shortens",                       10,  1800,        2, 0.8,    16000},
    {"jitter 1.2 lengthens",                      10,  1800,        2, 1.2,    24000},
    {"jitter applies after the cap",              10,  1800,       20, 1.2,  2160000},
};
// clang-format on

TEST(RetryPolicyTest, BackoffDoublesPerFailureUpToTheCapTimesJitter) {
  for (const BackoffRow& r : kBackoffRows) {
    SCOPED_TRACE(r.what);
    EXPECT_EQ(BackoffMs(r.initial_s, r.max_s, r.failures, r.jitter), r.ms);
  }
}

// The admin API (failures_by_class) and the metrics (class label) print
// these names: they are part of the interface.
TEST(RetryPolicyTest, FailureClassNamesAreTheRenderedNames) {
  EXPECT_STREQ(FailureClassName(FC::kLink), "link");
  EXPECT_STREQ(FailureClassName(FC::kTransientStatus), "transient-status");
  EXPECT_STREQ(FailureClassName(FC::kRefused), "refused");
  EXPECT_STREQ(FailureClassName(FC::kUnsupported), "unsupported");
  EXPECT_STREQ(FailureClassName(FC::kUnreadable), "unreadable");
  EXPECT_STREQ(FailureClassName(FC::kLimit), "limit");
  EXPECT_STREQ(FailureClassName(FC::kMisconfigured), "misconfigured");
  ASSERT_EQ(kFailureClasses.size(), kFailureClassCount);
  for (size_t i = 0; i < kFailureClasses.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(kFailureClasses[i]), i) << "kFailureClasses is in enum order";
  }
}

}  // namespace
}  // namespace relais::router
