// DeliveryScheduler (delivery.h): what the outcome of each attempt does to
// the queue row (delivered, retried later, dead-lettered, recorded in the
// attempt log and the audit trail), to the destination's link state
// (backoff, down, up) and to its statistics. The decisions are the retry
// policy's (retry_policy.h); this file applies them.
#include <algorithm>
#include <cinttypes>
#include <limits>

#include "base/clock.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/text.h"
#include "router/deliver/delivery.h"
#include "router/deliver/delivery_state.h"
#include "router/deliver/retry_policy.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

namespace relais::router {
void DeliveryScheduler::OnSent(Dest* d, Sender* s, const Row& row, const Outcome& o, uint64_t bytes) {
  const int64_t now = NowUnixMs();
  store::QueueUpdate u;
  u.log_attempt = true;
  u.attempt.association = s->name;
  u.attempt.status = o.status;
  u.attempt.error = o.ok() ? "" : o.ToString();
  const uint32_t attempts = row.q.attempts + 1;
  if (o.ok()) {
    LinkSuccess(d);
    ++d->stats.sent;
    d->stats.bytes_sent += bytes;
    d->stats.NoteSent(bytes, now);
    // The round trip of this object alone (its command on the wire to its
    // response), also when others are in flight on the association.
    d->concurrency->OnObject(now, std::max<int64_t>(o.round_trip_ms, 0), bytes);
    if (metrics_ != nullptr) metrics_->ObjectSent(bytes, now);
    u.kind = store::QueueUpdate::Kind::kDelivered;
    u.attempts = attempts;  // the study history counts the successful attempt too
    u.attempt.result = o.kind == Outcome::Kind::kWarning ? "warning" : "success";
    RLOG_INFO("dest=%s dassoc=%s sop=%s event=delivered status=%s bytes=%" PRIu64 " attempts=%u", d->cfg.name.c_str(),
              s->name.c_str(), row.meta.sop_instance_uid.c_str(), Hex4(o.status).c_str(), bytes, attempts);
    Finish(d, row, std::move(u));
    SendNext(d, s);
    return;
  }
  if (o.kind == Outcome::Kind::kLocalError && o.store_code == Status::Code::kNotFound) {
    // The object was replaced or purged while we sent it: nothing to record.
    d->in_flight.erase(row.key());
    SendNext(d, s);
    return;
  }
  const RetryDecision decision = DecideSendRetry(o, attempts, d->cfg.retry.max_attempts);
  const bool link = decision.link;
  const bool give_up = decision.give_up;
  const bool transient = o.IsTransient();
  if (o.kind == Outcome::Kind::kFailure && (o.status & 0xFF00) == 0xA700) {
    d->concurrency->OnOutOfResources(OpenSenders(d));
    LogConcurrency(d);
  }
  if (transient) LinkFailure(d, o, s->name, /*log_head=*/false);
  u.attempts = attempts;
  u.status = link ? 0 : o.status;
  u.error = o.ToString();
  if (give_up) {
    ++d->stats.dead;
    u.kind = store::QueueUpdate::Kind::kDeadLetter;
    u.attempt.result = "dead";
    if (transient) u.error = "gave up after " + std::to_string(attempts) + " attempts (retry.max_attempts): " + u.error;
  } else {
    u.kind = store::QueueUpdate::Kind::kRetryLater;
    // Link trouble: the destination's backoff decides. A refusal of this
    // object (a transient status such as 0xA700, or a first permanent one):
    // its own backoff grows with its attempts, so one object an archive
    // keeps refusing is not retried at the pace of the healthy ones.
    u.next_attempt_unix_ms = link ? std::max(d->next_try, now) : std::max(d->next_try, now + Backoff(d, attempts));
    u.attempt.result = "retry";
    RLOG_WARN("dest=%s dassoc=%s sop=%s event=send-failed attempts=%u retry_in_ms=%" PRId64 " reason=\"%s\"",
              d->cfg.name.c_str(), s->name.c_str(), row.meta.sop_instance_uid.c_str(), attempts,
              u.next_attempt_unix_ms - now, LogEscape(u.error, true).c_str());
    ++d->stats.retries;
  }
  d->NoteFailure(decision.cls, now, row.meta.sop_instance_uid, s->name, give_up ? "dead" : "retry", o.status, u.error);
  Finish(d, row, std::move(u));
  if (!link) SendNext(d, s);
}

void DeliveryScheduler::Finish(Dest* d, const Row& row, store::QueueUpdate u, bool release_in_flight) {
  Key k = row.key();
  u.destination = row.q.destination;
  u.priority = row.q.priority;
  u.object_id = row.q.object_id;
  if (u.kind == store::QueueUpdate::Kind::kDeadLetter) {
    // One line per dead-lettered row, whichever path gave it up.
    RLOG_WARN("event=dead-letter dest=%s sop=%s object=%" PRIu64 " attempts=%u status=%s dassoc=%s reason=\"%s\"",
              d->cfg.name.c_str(), row.meta.sop_instance_uid.c_str(), row.q.object_id, u.attempts,
              Hex4(u.status).c_str(), u.attempt.association.empty() ? "-" : u.attempt.association.c_str(),
              LogEscape(u.error, true).c_str());
    d->last_dead_error = u.error;
    d->last_dead_unix_ms = NowUnixMs();
  }
  if (u.log_attempt) {
    u.attempt.object_id = row.q.object_id;
    u.attempt.destination = row.q.destination;
    u.attempt.unix_ms = NowUnixMs();
    if (audit_) {
      audit_->Record("delivery", {{"destination", row.q.destination},
                                  {"association", u.attempt.association},
                                  {"patient_id", row.meta.patient_id},
                                  {"study_instance_uid", row.meta.study_instance_uid},
                                  {"sop_instance_uid", row.meta.sop_instance_uid},
                                  {"result", u.attempt.result},
                                  {"status", Hex4(u.attempt.status)},
                                  {"error", u.attempt.error}});
    }
  }
  bool retry = u.kind == store::QueueUpdate::Kind::kRetryLater;
  // The sender has moved on and the row stays in flight until `done`: the
  // delivered mark may share a later commit (a crash before it re-sends).
  u.can_wait = u.kind == store::QueueUpdate::Kind::kDelivered;
  store_->UpdateQueue({std::move(u)}, [this, d, k, retry, release_in_flight](Status s) {
    post_([this, d, k, retry, release_in_flight, s] {
      if (!s.ok()) {
        RLOG_ERROR("dest=%s event=queue-update-failed object=%" PRIu64 " reason=\"%s\"", d->cfg.name.c_str(), k.id,
                   s.ToString().c_str());
      }
      if (release_in_flight) d->in_flight.erase(k);
      if (retry) d->scan_wanted = true;
      if (!shutting_down_) Run(d);
    });
  });
}

void DeliveryScheduler::LinkFailure(Dest* d, const Outcome& o, const std::string& association, bool log_head) {
  const int64_t now = NowUnixMs();
  if (o.IsMisconfiguration()) return Misconfigured(d, o, association, now);
  if (d->failures == 0) d->failing_since = now;
  ++d->failures;
  d->refusing = o.kind == Outcome::Kind::kFailure;
  d->last_link_error = o.ToString();
  d->next_try = now + Backoff(d, d->failures);
  bool was_down = d->down;
  if (d->failures >= settings_.down_after_failures) d->down = true;
  RLOG_WARN("dest=%s dassoc=%s event=%s failures=%u retry_in_ms=%" PRId64 " reason=\"%s\"", d->cfg.name.c_str(),
            association.c_str(), d->down && !was_down ? "destination-down" : "link-failure", d->failures,
            d->next_try - now, LogEscape(d->last_link_error, true).c_str());
  // The first waiting object carries the attempt in its log, so an admin
  // sees the backoff on `relais object show`.
  if (log_head && d->ready.empty()) {
    d->NoteFailure(FailureClass::kLink, now, "", association, "retry", o.status, d->last_link_error);
  }
  if (log_head && !d->ready.empty()) {
    auto it = d->ready.begin();
    Row& head = it->second;
    head.q.attempts += 1;
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kRetryLater;
    u.attempts = head.q.attempts;
    u.next_attempt_unix_ms = d->next_try;
    u.error = d->last_link_error;
    u.log_attempt = true;
    u.attempt.association = association;
    u.attempt.result = "retry";
    u.attempt.status = o.status;
    u.attempt.error = (d->down ? "destination down: " : "") + d->last_link_error;
    const RetryDecision decision = DecideOpenRetry(o, head.q.attempts, d->cfg.retry.max_attempts);
    const bool give_up = decision.give_up;
    if (decision.cls == FailureClass::kRefused) {
      u.error = "association rejected permanently by " + d->cfg.ae_title + ": " + o.ToString();
    }
    if (decision.at_limit) {
      u.error =
          "gave up after " + std::to_string(head.q.attempts) + " attempts (retry.max_attempts): " + d->last_link_error;
    }
    d->NoteFailure(decision.cls, now, head.meta.sop_instance_uid, association, give_up ? "dead" : "retry", o.status,
                   give_up ? u.error : u.attempt.error);
    if (give_up) {
      ++d->stats.dead;
      Row dead = std::move(head);
      d->ready.erase(it);
      d->in_flight.insert(dead.key());
      u.kind = store::QueueUpdate::Kind::kDeadLetter;
      u.attempt.result = "dead";
      Finish(d, dead, std::move(u));
    } else {
      ++d->stats.retries;
      // The row stays ready (it is not in flight).
      Finish(d, head, std::move(u), /*release_in_flight=*/false);
    }
  }
}

// What an admin changes for each reason of Outcome::IsMisconfiguration.
std::string DeliveryScheduler::MisconfigurationFix(const Dest* d, const Outcome& o) const {
  const std::string where = d->cfg.host + ":" + std::to_string(d->cfg.port);
  const std::string reload = ", then reload (SIGHUP)";
  switch (o.tls.kind) {
    case TlsFailure::Kind::kNone:
    case TlsFailure::Kind::kOther: break;
    case TlsFailure::Kind::kPeerName:
      return "the certificate of " + where + " does not name '" + d->cfg.host +
             "' (subjectAltName): set the destination's host in the rule file to a name or address its certificate "
             "carries, or have the peer's certificate reissued for '" +
             d->cfg.host + "'" + reload;
    case TlsFailure::Kind::kPeerNotTrusted:
      return "the certificate of " + where + " is not signed by a CA in the destination's tls.ca_file ('" +
             d->cfg.tls_ca_file + "'): add the CA that signed the peer's certificate to that file" + reload;
    case TlsFailure::Kind::kPeerDates:
      return "the certificate of " + where + " is out of date (" + o.tls.detail +
             "): have the peer's certificate renewed (or check this machine's clock)" + reload;
    case TlsFailure::Kind::kPeerCertificate:
      return "the certificate of " + where + " does not verify against tls.ca_file ('" + d->cfg.tls_ca_file +
             "'): " + o.tls.detail + "; fix the peer's certificate or the CA file" + reload;
    case TlsFailure::Kind::kOurCertificateRefused:
      return where + " refused our client certificate (" + o.tls.detail + "; tls.cert_file '" +
             (d->cfg.tls_cert_file.empty() ? std::string("none") : d->cfg.tls_cert_file) +
             "'): have the peer trust the CA that signed it, or set tls.cert_file and tls.key_file to a "
             "certificate the peer trusts" +
             reload;
  }
  switch (o.reject_reason) {
    case ul::kRjCalledAeNotRecognized:
      return "check the destination's ae_title in the rule file (now '" + d->cfg.ae_title +
             "') against the AE title the peer expects, then reload (SIGHUP)";
    case ul::kRjCallingAeNotRecognized:
      return "the peer does not know our calling AE title '" + settings_.calling_ae +
             "': add it to the peer's known AEs, or change calling_ae_title in relais.toml and restart";
    default:
      return "the peer refused the DICOM application context: check that " + d->cfg.host + ":" +
             std::to_string(d->cfg.port) + " is a DICOM service, then reload (SIGHUP)";
  }
}

void DeliveryScheduler::Misconfigured(Dest* d, const Outcome& o, const std::string& association, int64_t now) {
  // No attempt is charged to any row: the objects are not at fault. The
  // destination waits its longest backoff (a reload that changes it clears
  // the wait at once, Configure).
  const bool was = d->misconfigured;
  d->misconfigured = true;
  if (!was) d->misconfigured_since = now;
  d->misconfigured_reason =
      o.tls.IsConfiguration() ? d->cfg.name + ": " + o.error + "; " + MisconfigurationFix(d, o)
                              : d->cfg.name + " refused our association: " + o.error + "; " + MisconfigurationFix(d, o);
  d->last_link_error = o.ToString();
  d->next_try = now + Backoff(d, std::numeric_limits<uint32_t>::max());
  if (!was) {
    d->NoteFailure(FailureClass::kMisconfigured, now, "", association, "hold", o.status, d->misconfigured_reason);
  }
  RLOG_WARN("dest=%s dassoc=%s event=%s ae=%s tls=%s held=%zu retry_in_ms=%" PRId64 " reason=\"%s\"",
            d->cfg.name.c_str(), association.c_str(), was ? "still-misconfigured" : "destination-misconfigured",
            d->cfg.ae_title.c_str(), TlsFailureKindName(o.tls.kind), d->ready.size(), d->next_try - now,
            LogEscape(d->misconfigured_reason, true).c_str());
}

void DeliveryScheduler::LinkSuccess(Dest* d) {
  if (d->down || d->failures > 0) {
    RLOG_INFO("dest=%s event=destination-up after_failures=%u", d->cfg.name.c_str(), d->failures);
  }
  if (d->misconfigured) {
    RLOG_INFO("dest=%s event=destination-configured reason=\"answered again\"", d->cfg.name.c_str());
  }
  d->failures = 0;
  d->down = false;
  d->next_try = 0;
  d->failing_since = 0;
  d->refusing = false;
  d->misconfigured = false;
  d->misconfigured_reason.clear();
  d->misconfigured_since = 0;
  d->send_now_seen.clear();
}

}  // namespace relais::router
