// The retry policy of the delivery scheduler: whether a failed attempt is
// retried or dead-lettered, and which class of failure it counts as. Pure
// functions of the outcome and the attempt counts: no clock, no store, no
// peers; the scheduler (delivery.cc) does the logging, the queue updates
// and the backoff.
//
// The policy, as PS3.4 B.2.3 and PS3.7 Annex C status classes are read by
// Outcome::IsTransient (outcome.h):
//  - Link trouble (transport error, timeout, A-ABORT, a transient
//    A-ASSOCIATE-RJ) is the destination's, not the object's: retried after
//    the destination's backoff, class kLink.
//  - A transient failure status (0xA7xx Out of Resources, 0x0213 Resource
//    Limitation, 0x0110 Processing Failure) is retried, class
//    kTransientStatus.
//  - A permanent refusal of the object (0xA9xx, 0xCxxx, 0x0122, ..., or a
//    permanent A-ASSOCIATE-RJ) is retried once, then dead-lettered when it
//    recurs (kPermanentFailureAttempts): archives sometimes refuse during
//    maintenance with 0xCxxx. Class kRefused.
//  - No accepted presentation context (kNoContext) is dead-lettered at
//    once, class kUnsupported; so is a local error (the stored object could
//    not be read), class kUnreadable.
//  - A permanent A-ASSOCIATE-RJ that names our configuration (called or
//    calling AE title not recognized, application context not supported:
//    Outcome::IsMisconfiguration), or a TLS certificate that does not fit
//    (theirs does not verify, or ours is refused: TlsFailure::
//    IsConfiguration), is the destination's setup, not the
//    objects': class kMisconfigured, never given up, and no attempt is
//    charged (hold is true); the destination waits for a reload or probes
//    at its slowest backoff.
//  - Otherwise, once `attempts` reaches retry.max_attempts (0: no limit) the
//    row is given up, class kLimit.
// A failure counts once, in one class.
//
// Thread: any (no state).
#ifndef RELAIS_ROUTER_DELIVER_RETRY_POLICY_H_
#define RELAIS_ROUTER_DELIVER_RETRY_POLICY_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "router/deliver/outcome.h"

namespace relais::router {

// The classes of DestinationStats::failures_by_class (delivery.h), as the
// admin API and the metrics name them (FailureClassName).
enum class FailureClass {
  kLink,             // "link": connect/association/abort/timeout
  kTransientStatus,  // "transient-status": 0xA7xx and other retryable DIMSE statuses
  kRefused,          // "refused": 0xA9xx, 0xCxxx..., a permanent A-ASSOCIATE-RJ
  kUnsupported,      // "unsupported": SOP class / syntax not accepted, no lossless conversion
  kUnreadable,       // "unreadable": the stored object cannot be read or prepared
  kLimit,            // "limit": retry.max_attempts or retry.max_age reached
  kMisconfigured,    // "misconfigured": the peer refused our AE titles / application context / TLS certificates
};
constexpr size_t kFailureClassCount = 7;
constexpr std::array<FailureClass, kFailureClassCount> kFailureClasses = {
    FailureClass::kLink,       FailureClass::kTransientStatus, FailureClass::kRefused,      FailureClass::kUnsupported,
    FailureClass::kUnreadable, FailureClass::kLimit,           FailureClass::kMisconfigured};

// "link", "transient-status", "refused", "unsupported", "unreadable", "limit",
// "misconfigured".
const char* FailureClassName(FailureClass cls);

// A permanent refusal is dead-lettered at this attempt (the second).
constexpr uint32_t kPermanentFailureAttempts = 2;

struct RetryDecision {
  FailureClass cls = FailureClass::kLink;
  bool give_up = false;  // dead-letter the row; otherwise retry it later
  // The failure is the link's (the association is gone): the destination's
  // backoff applies, not the object's own.
  bool link = false;
  // `attempts` reached max_attempts (whatever the class; the row is given up).
  bool at_limit = false;
  // The destination is misconfigured (class kMisconfigured): the row keeps
  // its attempts and stays queued; give_up and at_limit are false.
  bool hold = false;
};

// An object was sent and failed with `o` (REQUIRES: !o.ok()) at its
// `attempts`-th attempt (1 for the first). `max_attempts` is
// retry.max_attempts, 0 for no limit.
RetryDecision DecideSendRetry(const Outcome& o, uint32_t attempts, uint32_t max_attempts);

// An association (or its probe C-ECHO) failed with `o` and the attempt is
// charged to the head of the destination's queue, now at its `attempts`-th
// attempt. Every such failure is the link's (link is true): class kLink,
// except a permanent A-ASSOCIATE-RJ, which is kRefused and given up at
// kPermanentFailureAttempts, and kLimit when max_attempts is reached. A
// misconfiguration (Outcome::IsMisconfiguration) is kMisconfigured with hold
// set, whatever `attempts`: it is never given up.
RetryDecision DecideOpenRetry(const Outcome& o, uint32_t attempts, uint32_t max_attempts);

// The wait before the next try after `failures` consecutive failures
// (a destination's link failures, or one object's attempts), in ms:
// retry.initial_backoff_s doubled for each failure after the first, capped
// at retry.max_backoff_s (never below the initial backoff; a doubling that
// overflows is the cap), then multiplied by `jitter`, which the caller draws
// from [0.8, 1.2) so that destinations failing together do not retry in
// step. 0 failures is the initial backoff.
int64_t BackoffMs(uint64_t initial_backoff_s, uint64_t max_backoff_s, uint32_t failures, double jitter);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_RETRY_POLICY_H_
