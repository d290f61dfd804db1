#include "router/deliver/delivery.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <ctime>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "router/deliver/delivery_state.h"
#include "router/deliver/queue_scan.h"
#include "router/deliver/retry_policy.h"
#include "router/deliver/scu_association.h"
#include "router/deliver/send_prep.h"
#include "router/deliver/send_work.h"
#include "router/net/tls.h"

namespace relais::router {
namespace {

constexpr char kVerification[] = "1.2.840.10008.1.1";

// "7d", "12h", "30m", "45s": how rule files write durations.
std::string HumanDuration(uint64_t s) {
  if (s != 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s != 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s != 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

ConcurrencyController::Settings ConcurrencySettings(const rules::Destination& cfg) {
  ConcurrencyController::Settings s;
  s.fixed = cfg.concurrency == rules::Destination::Concurrency::kFixed;
  s.max = cfg.max_associations;
  return s;
}

}  // namespace

DeliveryScheduler::DeliveryScheduler(uv_loop_t* loop, store::Store* store, DeliverySettings settings,
                                     std::function<void(std::function<void()>)> post)
    : loop_(loop), store_(store), settings_(std::move(settings)), post_(std::move(post)), rng_(std::random_device{}()) {
  RegisterCodecs();
  if (!settings_.peer_limits_path.empty()) {
    Result<PeerLimits> limits = LoadPeerLimits(settings_.peer_limits_path);
    if (limits.ok()) {
      peer_limits_ = std::move(*limits);
    } else if (!limits.status().IsNotFound()) {
      RLOG_WARN("event=peer-limits-unreadable reason=\"%s\" fix=\"the limits are learnt again from the peers\"",
                LogEscape(limits.status().ToString(), true).c_str());
    }
  }
  uv_timer_init(loop_, &sweep_timer_);
  sweep_timer_.data = this;
  sweep_open_ = true;
  uv_timer_start(
      &sweep_timer_,
      [](uv_timer_t* t) noexcept {
        auto* self = static_cast<DeliveryScheduler*>(t->data);
        self->store_->Sweep(NowUnixMs(), [](Status s) {
          if (!s.ok()) RLOG_WARN("event=sweep-failed reason=\"%s\"", s.ToString().c_str());
        });
      },
      settings_.sweep_ms, settings_.sweep_ms);
}

DeliveryScheduler::~DeliveryScheduler() = default;

DeliveryScheduler::Dest* DeliveryScheduler::FindDest(const std::string& name) {
  auto it = dests_.find(name);
  return it == dests_.end() ? nullptr : it->second.get();
}

void DeliveryScheduler::SetRules(std::shared_ptr<const rules::RuleSet> rules) {
  if (shutting_down_) return;
  rules_ = std::move(rules);
  std::set<std::string> present;
  if (rules_) {
    for (const rules::Destination& cfg : rules_->destinations()) {
      present.insert(cfg.name);
      Dest* d = FindDest(cfg.name);
      if (d == nullptr) {
        auto fresh = std::make_unique<Dest>();
        d = fresh.get();
        d->self = this;
        d->cfg = cfg;
        uv_timer_init(loop_, &d->timer);
        d->timer.data = d;
        d->timer_open = true;
        d->concurrency = std::make_unique<ConcurrencyController>(ConcurrencySettings(cfg));
        RestorePeerLimit(d);
        dests_.emplace(cfg.name, std::move(fresh));
        RLOG_INFO("dest=%s event=destination-added ae=%s address=%s:%u concurrency=%s max_associations=%u",
                  cfg.name.c_str(), cfg.ae_title.c_str(), cfg.host.c_str(), cfg.port,
                  d->concurrency->fixed() ? "fixed" : "adaptive", cfg.max_associations);
      } else {
        bool changed = d->cfg.ae_title != cfg.ae_title || d->cfg.host != cfg.host || d->cfg.port != cfg.port ||
                       d->cfg.transfer_syntaxes != cfg.transfer_syntaxes || d->cfg.tls != cfg.tls ||
                       d->cfg.tls_ca_file != cfg.tls_ca_file || d->cfg.tls_cert_file != cfg.tls_cert_file ||
                       d->cfg.tls_key_file != cfg.tls_key_file;
        // A misconfigured destination tries again at once after any reload:
        // its certificate files are read afresh below (an admin may have
        // fixed them in place), and no attempt is charged for a refusal.
        if (!changed && d->misconfigured) d->next_try = 0;
        d->cfg = cfg;
        d->removed = false;
        if (changed) {
          // Another peer perhaps: what the old one tolerated does not hold.
          d->concurrency = std::make_unique<ConcurrencyController>(ConcurrencySettings(cfg));
          d->concurrency_changes = 0;
          RestorePeerLimit(d);
        } else {
          d->concurrency->Reconfigure(ConcurrencySettings(cfg));
          LogConcurrency(d);
        }
        if (changed) {
          ++d->generation;
          // A new address may answer: forget the link failures of the old one.
          d->failures = 0;
          d->down = false;
          d->next_try = 0;
          d->failing_since = 0;
          d->refusing = false;
          d->misconfigured = false;
          d->misconfigured_reason.clear();
          d->misconfigured_since = 0;
          RLOG_INFO("dest=%s event=destination-changed ae=%s address=%s:%u", cfg.name.c_str(), cfg.ae_title.c_str(),
                    cfg.host.c_str(), cfg.port);
        }
      }
      d->scan_wanted = true;
      d->tls.reset();
      d->tls_error.clear();
      if (cfg.tls) {
        TlsSettings ts;
        ts.ca = cfg.tls_ca_file;
        ts.certificate = cfg.tls_cert_file;
        ts.private_key = cfg.tls_key_file;
        Result<std::shared_ptr<TlsContext>> ctx = TlsContext::MakeClient(ts);
        if (ctx.ok()) {
          d->tls = std::move(*ctx);
        } else {
          // Never fall back to clear text: the rows wait with the reason.
          d->tls_error = ctx.status().message();
          d->last_link_error = "TLS configuration: " + d->tls_error;
          RLOG_ERROR(
              "dest=%s event=tls-config-failed where=%s reason=\"%s\": nothing is sent to it until the "
              "destination's tls settings are fixed (the rule file reloads by itself)",
              cfg.name.c_str(), cfg.where.c_str(), d->tls_error.c_str());
        }
      }
      ApplyBandwidth(d, NowUnixMs());
    }
  }
  for (auto& [name, d] : dests_) {
    if (present.count(name) != 0 || d->removed) continue;
    d->removed = true;
    d->ready.clear();
    RLOG_WARN(
        "dest=%s event=destination-removed: its queued rows are kept and not sent; add it back to the rules "
        "or `relais queue purge --dest %s`",
        name.c_str(), name.c_str());
  }
  for (auto& [name, d] : dests_) Run(d.get());
}

void DeliveryScheduler::Wake(const std::vector<std::string>& destinations) {
  post_([this, destinations] {
    if (shutting_down_) return;
    for (const std::string& name : destinations) {
      Dest* d = FindDest(name);
      if (d == nullptr) continue;
      d->scan_wanted = true;
      Run(d);
    }
  });
}

void DeliveryScheduler::OnTimer(uv_timer_t* t) noexcept {
  auto* d = static_cast<Dest*>(t->data);
  d->timer_at = 0;
  d->self->Run(d);
}

void DeliveryScheduler::Arm(Dest* d, int64_t at) {
  if (!d->timer_open || shutting_down_) return;
  if (d->timer_at != 0 && d->timer_at <= at) return;
  int64_t delay = std::max<int64_t>(at - NowUnixMs(), 0);
  d->timer_at = at;
  uv_timer_start(&d->timer, &DeliveryScheduler::OnTimer, static_cast<uint64_t>(delay), 0);
}

int64_t DeliveryScheduler::Backoff(const Dest* d, uint32_t failures) {
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return BackoffMs(d->cfg.retry.initial_backoff_s, d->cfg.retry.max_backoff_s, failures, jitter(rng_));
}

// The bandwidth cap in force (bandwidth_limit, or the `bandwidth` window of
// the local time) set on the destination's limiter, which every association
// holds: a change applies to the next chunk of each. With windows, a timer
// wakes the destination at the next boundary and at least every minute.
void DeliveryScheduler::ApplyBandwidth(Dest* d, int64_t now_ms) {
  uint64_t cap = d->cfg.bandwidth_limit_bps;
  if (!d->cfg.bandwidth.empty()) {
    time_t t = static_cast<time_t>(now_ms / 1000);
    struct tm lt {};
    localtime_r(&t, &lt);
    const int64_t offset_s = lt.tm_gmtoff;
    rules::BandwidthNow b = rules::BandwidthAt(d->cfg.bandwidth, now_ms / 1000 + offset_s);
    cap = b.limit_bps;
    Arm(d, std::min<int64_t>((b.next_change - offset_s) * 1000, now_ms + 60000));
  }
  if (cap == 0 && d->cfg.bandwidth.empty()) {
    if (d->limiter) d->limiter->SetRate(0);  // the associations already open hold it: unlimited now
    d->limiter.reset();
  } else if (!d->limiter) {
    d->limiter = std::make_shared<RateLimiter>(cap);
  } else if (d->limiter->bytes_per_s() != cap) {
    RLOG_INFO("dest=%s event=bandwidth-cap from_bps=%" PRIu64 " to_bps=%" PRIu64 " (0: unlimited)", d->cfg.name.c_str(),
              d->limiter->bytes_per_s(), cap);
    d->limiter->SetRate(cap);
  }
}

void DeliveryScheduler::Run(Dest* d) {
  if (shutting_down_) return;
  int64_t now = NowUnixMs();
  if (!d->cfg.bandwidth.empty()) ApplyBandwidth(d, now);
  if (d->removed || (d->cfg.tls && !d->tls)) {  // tls: never in clear text (see SetRules)
    for (auto& s : d->senders) {
      if (s->established && !s->busy && !s->closing) {
        s->closing = true;
        s->assoc->Release();
      }
    }
    return;
  }
  // New rows (a wake-up) are looked at at once, whatever is ready, so that
  // a STAT object overtakes a backlog; the backlog itself is read in
  // batches as the ready rows run low.
  bool periodic = now - d->last_scan >= static_cast<int64_t>(settings_.rescan_ms);
  bool due_passed = d->next_due != 0 && now >= d->next_due;
  bool low = d->ready.size() < settings_.batch_rows / 2 + 1;
  // In a backoff nothing is sent: scan anyway, for an admin's send now.
  bool backoff = d->next_try > now;
  if (d->scan_wanted || ((d->more_rows || periodic || due_passed) && low) || (periodic && backoff)) Refill(d, now);
  if (d->paused) {
    // Paused by the admin: nothing new is sent; idle associations are released below.
  } else if (d->down) {
    // Probe with C-ECHO on the backoff schedule; no objects meanwhile.
    bool probing = false;
    for (auto& s : d->senders) probing |= s->probe && !s->closing;
    if (!probing && now >= d->next_try) OpenSender(d, /*probe=*/true);
  } else if (now >= d->next_try) {
    Dispatch(d, now);
  }
  // Release associations that have been idle long enough.
  int64_t next = d->last_scan + static_cast<int64_t>(settings_.rescan_ms);
  for (auto& s : d->senders) {
    if (!s->established || s->busy || s->closing) continue;
    if (s->generation != d->generation || now - s->idle_since >= static_cast<int64_t>(settings_.idle_release_ms)) {
      s->closing = true;
      s->assoc->Release();
    } else {
      next = std::min(next, s->idle_since + static_cast<int64_t>(settings_.idle_release_ms));
    }
  }
  if (d->next_due != 0) next = std::min(next, d->next_due);
  if (d->next_try > now) next = std::min(next, d->next_try);
  Arm(d, std::max(next, now + 1));
}

void DeliveryScheduler::Refill(Dest* d, int64_t now) {
  d->scan_wanted = false;
  d->last_scan = now;
  ScanRequest req;
  req.destination = d->cfg.name;
  req.now = now;
  req.hold_ms = static_cast<int64_t>(d->cfg.hold_study_s) * 1000;
  req.max_age_ms = static_cast<int64_t>(d->cfg.retry.max_age_s) * 1000;
  req.want = std::max<size_t>(settings_.batch_rows - std::min(settings_.batch_rows, d->ready.size()), 16);
  req.next_try = d->next_try;
  ScanResult scan;
  Status s = ScanQueue(
      *store_, req,
      [d](int32_t priority, uint64_t id) {
        Key k{priority, id};
        return d->in_flight.count(k) != 0 || d->ready.count(k) != 0;
      },
      &d->send_now_seen, &scan);
  if (!s.ok()) {
    RLOG_ERROR("dest=%s event=queue-scan-failed reason=\"%s\"", d->cfg.name.c_str(), s.ToString().c_str());
    return;
  }
  d->next_due = scan.next_due;
  if (scan.send_now) {
    RLOG_INFO("dest=%s event=send-now: backoff ended by an admin (%s)", d->cfg.name.c_str(),
              d->down ? "probing now" : "trying now");
    d->next_try = 0;
  }
  d->more_rows = scan.more;  // more rows wait behind these
  for (ScannedRow& found : scan.found) {
    Row row{std::move(found.q), std::move(found.meta)};
    Key k = row.key();
    d->ready.emplace(k, std::move(row));
  }
  std::vector<Row> expired;
  for (ScannedRow& e : scan.expired) expired.push_back(Row{std::move(e.q), std::move(e.meta)});
  for (Row& row : expired) {
    ++d->stats.dead;
    Key k = row.key();
    d->in_flight.insert(k);
    store::QueueUpdate u;
    u.kind = store::QueueUpdate::Kind::kDeadLetter;
    u.attempts = row.q.attempts;
    u.status = row.q.last_status;
    u.error = "gave up: the object is older than retry.max_age (" + HumanDuration(d->cfg.retry.max_age_s) + ") after " +
              std::to_string(row.q.attempts) + " attempts" +
              (row.q.last_error.empty() ? "" : "; last error: " + row.q.last_error);
    d->NoteFailure(FailureClass::kLimit, now, row.meta.sop_instance_uid, "", "dead", u.status, u.error);
    Finish(d, row, std::move(u));
  }
}

void DeliveryScheduler::OpenSender(Dest* d, bool probe, bool lane, int32_t lane_priority) {
  auto s = std::make_unique<Sender>();
  Sender* sp = s.get();
  s->id = next_sender_id_++;
  s->name = "D" + std::to_string(s->id) + " " + d->cfg.ae_title + "@" + d->cfg.host + ":" + std::to_string(d->cfg.port);
  s->generation = d->generation;
  s->probe = probe;
  s->lane = lane;
  s->lane_priority = lane_priority;
  std::vector<ContextProposal> proposals;
  if (probe) {
    proposals.push_back(ContextProposal{kVerification, {kImplicitVrLittleEndian}});
  } else {
    for (const auto& [k, row] : d->ready) {
      ObjectKind kind{row.meta.sop_class_uid, row.meta.transfer_syntax_uid};
      if (std::find(s->proposed.begin(), s->proposed.end(), kind) == s->proposed.end()) s->proposed.push_back(kind);
      if (s->proposed.size() >= 60) break;
    }
    proposals = PlanContexts(s->proposed, d->cfg.transfer_syntaxes);
    // Kinds left out by the 128-context limit are not "proposed": they wait
    // for another association instead of being judged refused.
    std::erase_if(s->proposed, [&](const ObjectKind& k) {
      return std::none_of(proposals.begin(), proposals.end(),
                          [&](const ContextProposal& p) { return p.abstract_syntax == k.sop_class_uid; });
    });
  }
  ScuConfig cfg;
  cfg.calling_ae = settings_.calling_ae;
  cfg.called_ae = d->cfg.ae_title;
  cfg.host = d->cfg.host;
  cfg.port = d->cfg.port;
  cfg.max_pdu = settings_.max_pdu;
  cfg.connect_timeout_ms = settings_.connect_timeout_ms;
  cfg.artim_timeout_ms = settings_.artim_timeout_ms;
  cfg.response_timeout_ms = settings_.response_timeout_ms;
  // priority_above_limit: the lane for rows above the default priority is
  // not paced.
  cfg.rate_limiter = lane && lane_priority > 0 && d->cfg.priority_above_limit ? nullptr : d->limiter;
  cfg.tls = d->tls;
  s->assoc = std::make_unique<ScuAssociation>(
      loop_, cfg, std::move(proposals), [this, d, sp](Outcome o) { OnEstablished(d, sp, o); },
      [this, d, sp] { OnSenderClosed(d, sp); });
  d->senders.push_back(std::move(s));
  RLOG_DEBUG("dest=%s dassoc=%s event=connecting probe=%d contexts_for=%zu", d->cfg.name.c_str(), sp->name.c_str(),
             probe ? 1 : 0, sp->proposed.size());
  sp->assoc->Start();
}

void DeliveryScheduler::OnEstablished(Dest* d, Sender* s, const Outcome& o) {
  if (shutting_down_) return;
  if (o.kind == Outcome::Kind::kSuccess) {
    s->established = true;
    s->idle_since = NowUnixMs();
    if (!s->probe) d->concurrency->OnOpened(OpenSenders(d));
    if (d->misconfigured) {  // the peer accepts us again (fixed on its side)
      RLOG_INFO("dest=%s dassoc=%s event=destination-configured", d->cfg.name.c_str(), s->name.c_str());
      d->misconfigured = false;
      d->misconfigured_reason.clear();
      d->misconfigured_since = 0;
    }
    if (s->probe) {
      ++s->busy;
      s->assoc->Echo([this, d, s](Outcome e) {
        --s->busy;
        if (shutting_down_) return;
        if (e.ok() && d->refusing) {
          // The link is up but the peer refused objects: the next one tries
          // now, and the failure streak (its backoff, destination-down) goes
          // on until an object is accepted.
          RLOG_INFO("dest=%s dassoc=%s event=probe-answered failures=%u refusing=1", d->cfg.name.c_str(),
                    s->name.c_str(), d->failures);
          d->down = false;
          d->next_try = 0;
        } else if (e.ok()) {
          RLOG_INFO("dest=%s dassoc=%s event=probe-answered", d->cfg.name.c_str(), s->name.c_str());
          LinkSuccess(d);
        } else {
          LinkFailure(d, e, s->name, /*log_head=*/true);
        }
        s->closing = true;
        s->assoc->Release();
        Run(d);
      });
      return;
    }
    SendNext(d, s);
    Run(d);
    return;
  }
  s->closing = true;
  const uint32_t open = OpenSenders(d);
  uint32_t connecting = 0;
  for (const auto& other : d->senders) connecting += !other->established && !other->closing && !other->probe;
  const bool refused =
      o.kind == Outcome::Kind::kRejected && o.reject_result == ul::RejectResult::kTransient && open + connecting > 0;
  // A peer that serves N associations at a time and lets the next one wait
  // unanswered (storescp without --fork, a PACS's thread pool) says the same
  // by its silence, as long as the others work.
  // Only a connection the peer took and then did not answer (ScuAssociation's
  // "no A-ASSOCIATE-AC" timeout), not a TCP connect that timed out (the link).
  const bool unanswered = o.kind == Outcome::Kind::kTimeout && open > 0 && d->failures == 0 &&
                          o.error.find("no A-ASSOCIATE-AC") != std::string::npos;
  if (!s->probe && !d->concurrency->fixed() && (refused || unanswered)) {
    // The peer takes no more associations than those already working (or
    // being opened): not a link failure, a limit to learn (adaptive
    // concurrency). Should the others fail too, they are the link failure.
    d->concurrency->OnRefused(NowUnixMs(), open);
    KeepPeerLimit(d);
    RLOG_INFO("dest=%s dassoc=%s event=association-refused-at-limit open=%u target=%u reason=\"%s\"",
              d->cfg.name.c_str(), s->name.c_str(), open, d->concurrency->target(),
              LogEscape(o.ToString(), true).c_str());
    d->concurrency_changes = d->concurrency->changes();
    Run(d);
    return;
  }
  LinkFailure(d, o, s->name, /*log_head=*/true);
  Run(d);
}

void DeliveryScheduler::SendNext(Dest* d, Sender* s) {
  if (!s->HasRoom() || s->closing || !s->established) return;
  if (d->paused || d->down || NowUnixMs() < d->next_try) return;  // the idle timer releases it
  if (!s->probe && Surplus(d)) {
    // The concurrency target came down: this one goes once what it has in
    // flight is answered (it takes nothing new). Released while busy, it
    // would no longer count as open when the peer refuses the next one.
    if (s->busy == 0) {
      s->closing = true;
      s->assoc->Release();
    }
    return;
  }
  const auto& accepted = s->assoc->accepted_contexts();
  for (auto it = d->ready.begin(); it != d->ready.end(); ++it) {
    const Row& row = it->second;
    if (s->lane && row.q.priority < s->lane_priority) break;  // the lane carries priority rows only
    ObjectKind kind{row.meta.sop_class_uid, row.meta.transfer_syntax_uid};
    // Only objects this association was planned for: another one may carry
    // the object as stored where this one would need a conversion.
    if (std::find(s->proposed.begin(), s->proposed.end(), kind) == s->proposed.end()) continue;
    std::optional<SendChoice> choice = ChooseContext(accepted, kind, d->cfg.transfer_syntaxes);
    if (!choice) {
      // Proposed and refused in every syntax we can produce: no conversion helps.
      Row dead = std::move(it->second);
      d->ready.erase(it);
      d->in_flight.insert(dead.key());
      std::string accepted_ts;
      for (const auto& c : accepted) {
        if (c.abstract_syntax == kind.sop_class_uid)
          accepted_ts += (accepted_ts.empty() ? "" : ", ") + c.transfer_syntax;
      }
      store::QueueUpdate u;
      u.kind = store::QueueUpdate::Kind::kDeadLetter;
      u.attempts = dead.q.attempts + 1;
      u.error = accepted_ts.empty() ? "SOP class " + kind.sop_class_uid + " is not supported by " + d->cfg.ae_title +
                                          " (presentation context rejected)"
                                    : "SOP class " + kind.sop_class_uid + " is accepted by " + d->cfg.ae_title +
                                          " only in " + accepted_ts + ", which the object (stored in " +
                                          kind.transfer_syntax_uid + ") cannot be converted to without loss";
      u.log_attempt = true;
      u.attempt.association = s->name;
      u.attempt.result = "dead";
      u.attempt.error = u.error;
      ++d->stats.dead;
      d->NoteFailure(FailureClass::kUnsupported, NowUnixMs(), dead.meta.sop_instance_uid, s->name, "dead", 0, u.error);
      Finish(d, dead, std::move(u));
      return SendNext(d, s);
    }
    // An object rewritten in memory (tag edits, a conversion) goes only on an
    // association with nothing else in flight: a window of them would hold
    // up to window() rewritten objects in memory at once.
    if ((choice->convert || !row.q.edits.empty()) && s->busy > 0) return;
    Row row_taken = std::move(it->second);
    d->ready.erase(it);
    StartSend(d, s, std::move(row_taken), choice->context_id, choice->transfer_syntax, choice->convert);
    // With an asynchronous operations window, the next row goes out behind
    // this one without waiting for its response.
    return SendNext(d, s);
  }
}

void DeliveryScheduler::StartSend(Dest* d, Sender* s, Row row, uint8_t context_id, const std::string& ts,
                                  bool convert) {
  (void)context_id;  // the association picks the context from the reader's syntax
  ++s->busy;
  d->in_flight.insert(row.key());
  std::vector<rules::TagEdit> edits;
  if (!row.q.edits.empty()) {
    Result<std::vector<rules::TagEdit>> decoded = rules::DecodeEdits(row.q.edits);
    if (!decoded.ok()) {
      return DeadLetterUnreadable(
          d, s, row, "the tag edits of rule '" + row.q.rule + "' cannot be read: " + decoded.status().ToString());
    }
    edits = std::move(*decoded);
  }
  if (!convert && edits.empty()) return SendAsStored(d, s, row);
  if (row.meta.raw_size > settings_.max_prepare_bytes) {
    return DeadLetterUnreadable(d, s, row,
                                "the object (" + std::to_string(row.meta.raw_size) +
                                    " bytes) needs tag edits or a transfer syntax conversion and is larger than the " +
                                    std::to_string(settings_.max_prepare_bytes) + " bytes Relais rewrites in memory");
  }
  PrepareAndSend(d, s, row, ts, std::move(edits));
}

void DeliveryScheduler::DeadLetterUnreadable(Dest* d, Sender* s, const Row& row, const std::string& why) {
  --s->busy;
  ++d->stats.dead;
  store::QueueUpdate u;
  u.kind = store::QueueUpdate::Kind::kDeadLetter;
  u.attempts = row.q.attempts + 1;
  u.error = why;
  u.log_attempt = true;
  u.attempt.association = s->name;
  u.attempt.result = "dead";
  u.attempt.error = why;
  d->NoteFailure(FailureClass::kUnreadable, NowUnixMs(), row.meta.sop_instance_uid, s->name, "dead", 0, why);
  Finish(d, row, std::move(u));
}

std::function<void(Outcome o, uint64_t bytes)> DeliveryScheduler::SendDone(Dest* d, Sender* s, const Row& row) {
  return [this, d, s, row](Outcome o, uint64_t bytes) mutable {
    --s->busy;
    s->idle_since = NowUnixMs();
    if (shutting_down_) return;
    OnSent(d, s, row, o, bytes);
  };
}

void DeliveryScheduler::SendAsStored(Dest* d, Sender* s, const Row& row) {
  Result<std::unique_ptr<store::ObjectReader>> reader = store_->OpenObject(row.q.object_id);
  if (!reader.ok()) {
    if (reader.status().IsNotFound()) {  // replaced or purged meanwhile: its row is gone too
      --s->busy;
      d->in_flight.erase(row.key());
      return SendNext(d, s);
    }
    return DeadLetterUnreadable(d, s, row, "the stored object cannot be read: " + reader.status().ToString());
  }
  uint64_t size = row.meta.raw_size;
  s->assoc->Store(std::move(*reader), [done = SendDone(d, s, row), size](Outcome o) mutable { done(o, size); });
}

void DeliveryScheduler::PrepareAndSend(Dest* d, Sender* s, const Row& row, const std::string& ts,
                                       std::vector<rules::TagEdit> edits) {
  PrepareJob job;
  job.store = store_;
  job.object_id = row.q.object_id;
  job.stored_ts = row.meta.transfer_syntax_uid;
  job.target_ts = ts;
  if (!IsUncompressedSyntax(ts) && ts != row.meta.transfer_syntax_uid) {
    ObjectKind kind{row.meta.sop_class_uid, row.meta.transfer_syntax_uid};
    std::optional<SendChoice> plain = ChooseContext(s->assoc->accepted_contexts(), kind, {});
    if (plain && plain->transfer_syntax != ts) job.fallback_ts = plain->transfer_syntax;
  }
  job.edits = std::move(edits);
  PrepareOnThreadPool(loop_, std::move(job), [this, d, sender_id = s->id, row](PreparedObject prepared) mutable {
    OnPrepared(d, sender_id, std::move(row), std::move(prepared));
  });
}

// The sender is found again by id: it may have closed while the pool worked.
void DeliveryScheduler::OnPrepared(Dest* d, uint64_t sender_id, Row row, PreparedObject prepared) {
  Sender* s = nullptr;
  for (auto& p : d->senders) {
    if (p->id == sender_id) s = p.get();
  }
  if (shutting_down_) return;
  if (s == nullptr || s->closing || !s->established) {
    // The association went away while we prepared: the row waits for the next one.
    if (s != nullptr) --s->busy;
    d->in_flight.erase(row.key());
    d->ready.emplace(row.key(), std::move(row));
    Run(d);
    return;
  }
  auto done = SendDone(d, s, row);
  if (!prepared.status.ok()) {
    if (prepared.status.IsNotFound()) {
      --s->busy;
      d->in_flight.erase(row.key());
      SendNext(d, s);
      return;
    }
    Outcome o;
    o.kind = Outcome::Kind::kLocalError;
    o.error = "cannot prepare the object for " + d->cfg.ae_title + ": " + prepared.status.ToString();
    done(o, 0);
    return;
  }
  if (!prepared.fallback_reason.empty()) {
    RLOG_INFO("dest=%s dassoc=%s sop=%s event=convert-fallback to=%s reason=\"%s\"", d->cfg.name.c_str(),
              s->name.c_str(), row.meta.sop_instance_uid.c_str(), prepared.target_ts.c_str(),
              LogEscape(prepared.fallback_reason, true).c_str());
  }
  uint64_t size = prepared.bytes.size();
  std::unique_ptr<store::ObjectReader> reader =
      MakeMemoryReader(row.meta, std::move(prepared.bytes), prepared.target_ts);
  s->assoc->Store(std::move(reader), [done, size](Outcome o) mutable { done(o, size); });
}

void DeliveryScheduler::OnSenderClosed(Dest* d, Sender* s) {
  auto it = std::find_if(d->senders.begin(), d->senders.end(), [s](const auto& p) { return p.get() == s; });
  if (it == d->senders.end()) return;
  // Destroying the association from inside its on_closed is allowed.
  std::unique_ptr<Sender> gone = std::move(*it);
  d->senders.erase(it);
  gone.reset();
  if (shutting_down_) {
    MaybeShutdownDone();
    return;
  }
  Run(d);
}

void DeliveryScheduler::Shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  if (sweep_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
    sweep_open_ = false;
  }
  for (auto& [name, d] : dests_) {
    if (d->timer_open) {
      uv_close(reinterpret_cast<uv_handle_t*>(&d->timer), nullptr);
      d->timer_open = false;
    }
    for (auto& s : d->senders) {
      s->closing = true;
      s->assoc->Abort();
    }
  }
  MaybeShutdownDone();
}

void DeliveryScheduler::MaybeShutdownDone() {
  if (!shutting_down_ || !shutdown_done_) return;
  for (auto& [name, d] : dests_) {
    if (!d->senders.empty()) return;
  }
  auto done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  done();
}

std::vector<DeliveryScheduler::DestinationStats> DeliveryScheduler::Stats() const {
  const int64_t now = NowUnixMs();
  std::vector<DestinationStats> out;
  for (const auto& [name, d] : dests_) {
    DestinationStats st;
    st.name = name;
    st.down = d->down;
    st.consecutive_failures = d->failures;
    st.next_try_unix_ms = d->next_try;
    st.associations = d->senders.size();
    st.concurrency = d->concurrency->fixed() ? "fixed" : "adaptive";
    st.concurrency_target = d->concurrency->target();
    st.concurrency_reason = d->concurrency->reason();
    st.concurrency_ceiling = d->concurrency->ceiling();
    st.max_associations = d->cfg.max_associations;
    st.bandwidth_limit_bps = d->limiter ? d->limiter->bytes_per_s() : 0;
    st.bandwidth_windows = d->cfg.bandwidth.size();
    st.in_flight = d->in_flight.size();
    st.ready = d->ready.size();
    st.ae_title = d->cfg.ae_title;
    st.host = d->cfg.host;
    st.port = d->cfg.port;
    st.paused = d->paused;
    st.misconfigured_reason = d->misconfigured_reason;
    st.last_dead_error = d->last_dead_error;
    st.last_dead_unix_ms = d->last_dead_unix_ms;
    st.misconfigured_since_unix_ms = d->misconfigured_since;
    if (d->paused) {
      st.state = "paused";
    } else if (d->misconfigured) {
      st.state = "misconfigured";
    } else if (d->down) {
      st.state = "down";
    } else if (d->failures > 0 && d->next_try > now) {
      st.state = "backing-off";
    } else if (!d->ready.empty() || !d->in_flight.empty()) {
      st.state = "sending";
    } else {
      st.state = "idle";
    }
    d->stats.Report(now, &st);
    st.failing_since_unix_ms = d->failing_since;
    out.push_back(std::move(st));
  }
  return out;
}

Status DeliveryScheduler::Pause(const std::string& destination) {
  Dest* d = FindDest(destination);
  if (d == nullptr || d->removed) return Status::NotFound("no destination '" + destination + "' in the rules");
  if (!d->paused) {
    d->paused = true;
    RLOG_INFO("dest=%s event=paused in_flight=%zu", destination.c_str(), d->in_flight.size());
  }
  Run(d);
  return Status::OK();
}

Status DeliveryScheduler::Resume(const std::string& destination) {
  Dest* d = FindDest(destination);
  if (d == nullptr || d->removed) return Status::NotFound("no destination '" + destination + "' in the rules");
  if (d->paused) {
    d->paused = false;
    RLOG_INFO("dest=%s event=resumed", destination.c_str());
  }
  d->scan_wanted = true;
  Run(d);
  return Status::OK();
}

std::vector<DeliveryScheduler::FailureEvent> DeliveryScheduler::RecentFailures() const {
  std::vector<FailureEvent> out;
  for (const auto& [name, d] : dests_) out.insert(out.end(), d->stats.recent.begin(), d->stats.recent.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const FailureEvent& a, const FailureEvent& b) { return a.unix_ms > b.unix_ms; });
  if (out.size() > kRecentFailures) out.resize(kRecentFailures);
  return out;
}

}  // namespace relais::router
