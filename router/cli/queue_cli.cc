#include "router/cli/queue_cli.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <string_view>

#include "base/clock.h"
#include "base/text.h"
#include "router/cli/cli_audit.h"
#include "router/cli/edits_text.h"
#include "router/cli/store_cli.h"
#include "router/operate/serve_state.h"

namespace relais::router {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "relais: %s\n", s.message().c_str());
  return 1;
}

// "in 5m", "now", "12s ago".
std::string Relative(int64_t at_ms, int64_t now_ms) {
  if (at_ms == 0) return "now";
  int64_t d = (at_ms - now_ms) / 1000;
  bool past = d < 0;
  if (past) d = -d;
  char buf[32];
  if (d < 120) {
    std::snprintf(buf, sizeof(buf), "%" PRId64 "s", d);
  } else if (d < 7200) {
    std::snprintf(buf, sizeof(buf), "%" PRId64 "m", d / 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRId64 "h", d / 3600);
  }
  return past ? (d == 0 ? "now" : "now (due " + std::string(buf) + " ago)") : "in " + std::string(buf);
}

Result<std::unique_ptr<store::Store>> OpenAs(store::Options o, bool admin) {
  o.read_only = !admin;
  o.admin = admin;
  return store::Store::Open(o);
}

// Resolves sel.uids and sel.study (intersected), saying which are unknown
// on stderr.
Status ResolveAndReport(const store::Store& st, const QueueSelection& sel, std::set<uint64_t>* ids, bool* unknown) {
  std::vector<std::string> missing;
  RELAIS_RETURN_IF_ERROR(ResolveUids(st, sel.uids, ids, &missing));
  for (const std::string& uid : missing) {
    std::fprintf(stderr, "relais: no stored object has SOP Instance UID %s\n", uid.c_str());
  }
  *unknown = !missing.empty();
  if (sel.study.empty()) return Status::OK();
  std::set<uint64_t> of_study;
  RELAIS_RETURN_IF_ERROR(ResolveStudy(st, sel.study, &of_study));
  if (of_study.empty()) {
    std::fprintf(stderr, "relais: no stored object of Study Instance UID %s\n", LogEscape(sel.study).c_str());
    *unknown = true;
  }
  if (sel.uids.empty()) {
    *ids = std::move(of_study);
  } else {
    std::erase_if(*ids, [&](uint64_t id) { return of_study.count(id) == 0; });
  }
  return Status::OK();
}

// `live`: the destination's state in the running serve ("" when unknown).
void PrintRowJson(const SelectedRow& s, const store::ObjectMeta* m, const std::string& live) {
  const store::QueueRow& r = s.row;
  std::printf("{\"destination\":\"%s\",\"state\":\"%s\",\"priority\":%d,\"object_id\":%" PRIu64
              ",\"sop_instance_uid\":\"%s\",\"modality\":\"%s\",\"attempts\":%u,\"next_attempt\":\"%s\","
              "\"last_status\":%u,\"last_error\":\"%s\",\"dead_since\":\"%s\",\"rule\":\"%s\"%s%s%s}\n",
              JsonEscape(r.destination).c_str(), s.dead ? "dead" : "queued", r.priority, r.object_id,
              m ? JsonEscape(m->sop_instance_uid).c_str() : "", m ? JsonEscape(m->modality).c_str() : "", r.attempts,
              s.dead ? "-" : IsoTime(r.next_attempt_unix_ms == 0 ? 1 : r.next_attempt_unix_ms).c_str(), r.last_status,
              JsonEscape(r.last_error).c_str(), IsoTime(r.dead_unix_ms).c_str(), JsonEscape(r.rule).c_str(),
              live.empty() ? "" : ",\"destination_state\":\"", JsonEscape(live).c_str(), live.empty() ? "" : "\"");
}

// What `relais serve` says of the destinations (serve_state.h), and how far
// to trust it: `current` when the serve that wrote it still runs.
struct LiveStates {
  Result<ServeState> state = Status::NotFound("");
  bool current = false;
  // The destination's live state, "" when not current or unknown.
  std::string Of(const std::string& dest) const {
    if (!current) return "";
    auto it = state->destinations.find(dest);
    return it == state->destinations.end() ? "" : it->second.state;
  }
};

LiveStates ReadLive(const std::string& store_path) {
  LiveStates l;
  l.state = ReadServeState(store_path);
  l.current = l.state.ok() && ServeStateWriterAlive(*l.state);
  return l;
}

// One stderr line saying where the destination states come from.
void PrintLiveSource(const LiveStates& l, int64_t now) {
  if (!l.state.ok()) {
    std::fprintf(stderr, "live state: none (%s): relais serve is not running, or has not written it yet\n",
                 l.state.status().message().c_str());
    return;
  }
  const ServeState& st = *l.state;
  const int64_t secs = std::max<int64_t>(0, (now - st.written_unix_ms) / 1000);
  const std::string age = secs < 120    ? std::to_string(secs) + "s ago"
                          : secs < 7200 ? std::to_string(secs / 60) + "m ago"
                                        : std::to_string(secs / 3600) + "h ago";
  if (l.current) {
    std::fprintf(stderr, "live state: from relais serve (pid %" PRId64 ", running), written %s\n", st.pid, age.c_str());
  } else {
    std::fprintf(stderr,
                 "live state: relais serve (pid %" PRId64
                 ") is not running%s; its last state, written %s (%s), "
                 "may be out of date\n",
                 st.pid, st.running ? " (it did not stop cleanly)" : "", IsoTime(st.written_unix_ms).c_str(),
                 age.c_str());
  }
}

// "; destination misconfigured since 2026-...: REASON" for a destination
// whose live state says why it is not sending; "" otherwise.
std::string LiveSuffix(const LiveStates& l, const std::string& dest) {
  if (!l.state.ok()) return "";
  auto it = l.state->destinations.find(dest);
  if (it == l.state->destinations.end()) return "";
  const ServeState::Destination& d = it->second;
  if (d.state == "idle" || d.state == "sending") return "; destination " + d.state;
  std::string out = "; destination " + d.state;
  if (d.since_unix_ms != 0) out += " since " + IsoTime(d.since_unix_ms);
  if (!d.reason.empty()) out += ": " + d.reason;
  if (!l.current) out += " (as last written by a serve that is not running)";
  return out;
}

}  // namespace

int QueueLs(const store::Options& options, const QueueSelection& sel, bool json) {
  auto st = OpenAs(options, /*admin=*/false);
  if (!st.ok()) return Fail(st.status());
  std::set<uint64_t> ids;
  bool unknown = false;
  Status s = ResolveAndReport(**st, sel, &ids, &unknown);
  if (!s.ok()) return Fail(s);
  std::vector<SelectedRow> rows;
  s = SelectRows(**st, sel, ids, /*want_live=*/true, &rows);
  if (!s.ok()) return Fail(s);
  const int64_t now = NowUnixMs();
  const LiveStates live = ReadLive(options.path);
  if (!json && !rows.empty()) {
    std::printf("%-16s %-6s %5s %-64s %-4s %8s %-22s %s\n", "DESTINATION", "STATE", "PRIO", "SOP_INSTANCE_UID", "MOD",
                "ATTEMPTS", "NEXT", "LAST_ERROR");
  }
  struct Summary {
    uint64_t queued = 0, dead = 0, failing = 0;
  };
  std::map<std::string, Summary> summary;
  for (const SelectedRow& sr : rows) {
    const store::QueueRow& r = sr.row;
    Result<store::ObjectMeta> m = (*st)->Get(r.object_id);
    const store::ObjectMeta* mp = m.ok() ? &*m : nullptr;
    Summary& sum = summary[r.destination];
    if (sr.dead) {
      ++sum.dead;
    } else {
      ++sum.queued;
      if (r.attempts > 0) ++sum.failing;
    }
    if (json) {
      PrintRowJson(sr, mp, live.Of(r.destination));
      continue;
    }
    std::string next = sr.dead ? "dead " + IsoTime(r.dead_unix_ms) : Relative(r.next_attempt_unix_ms, now);
    std::string err = r.last_error.empty() ? "-" : r.last_error;
    if (r.last_status != 0) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "[0x%04X] ", r.last_status);
      err = buf + err;
    }
    std::printf("%-16s %-6s %5d %-64s %-4s %8u %-22s %s\n", r.destination.c_str(), sr.dead ? "dead" : "queued",
                r.priority, mp ? LogEscape(mp->sop_instance_uid).c_str() : "(object gone)",
                mp && !mp->modality.empty() ? LogEscape(mp->modality).c_str() : "-", r.attempts, next.c_str(),
                LogEscape(err).c_str());
  }
  if (!json) {
    PrintLiveSource(live, now);
    for (const auto& [dest, sum] : summary) {
      std::fprintf(stderr, "%s: %" PRIu64 " queued (%" PRIu64 " after failures), %" PRIu64 " dead%s\n", dest.c_str(),
                   sum.queued, sum.failing, sum.dead, LogEscape(LiveSuffix(live, dest)).c_str());
    }
    if (summary.empty()) std::fprintf(stderr, "no queued or dead rows\n");
    // Destinations without rows that are not well (paused, misconfigured, ...).
    if (live.state.ok()) {
      for (const auto& [dest, d] : live.state->destinations) {
        if (summary.count(dest) != 0 || d.state == "idle" || d.state == "sending") continue;
        if (!sel.destination.empty() && dest != sel.destination) continue;
        std::fprintf(stderr, "%s: no rows%s\n", dest.c_str(), LogEscape(LiveSuffix(live, dest)).c_str());
      }
    }
  }
  return unknown ? 2 : 0;
}

namespace {

// "--dest TELERAD --dead UID..." as the selection was given.
std::string SelectorText(const QueueSelection& sel) {
  std::string out;
  if (!sel.destination.empty()) out += "--dest " + sel.destination;
  if (sel.dead) out += std::string(out.empty() ? "" : " ") + "--dead";
  for (const std::string& u : sel.uids) out += (out.empty() ? "" : " ") + u;
  return out;
}

// The UIDs and patient IDs of the objects the updates touch.
void Touched(const store::Store& st, const std::vector<store::QueueUpdate>& updates, std::vector<std::string>* uids,
             std::vector<std::string>* patient_ids) {
  std::set<uint64_t> seen;
  std::set<std::string> pids;
  for (const store::QueueUpdate& u : updates) {
    if (!seen.insert(u.object_id).second) continue;
    Result<store::ObjectMeta> m = st.Get(u.object_id);
    if (!m.ok()) continue;
    uids->push_back(m->sop_instance_uid);
    if (pids.insert(m->patient_id).second) patient_ids->push_back(m->patient_id);
  }
}

// Shows what a purge removes; returns 0 to go on, else the exit code.
int PreviewAndConfirm(const store::Store& st, const std::vector<store::QueueUpdate>& updates,
                      const PurgeConfirm& confirm) {
  std::map<std::string, uint64_t> per_dest;
  for (const store::QueueUpdate& u : updates) ++per_dest[u.destination];
  std::printf("%s %zu rows:\n", confirm.dry_run ? "would purge" : "will purge", updates.size());
  for (const auto& [dest, n] : per_dest) std::printf("  %-16s %" PRIu64 " rows\n", dest.c_str(), n);
  constexpr size_t kShown = 10;
  for (size_t i = 0; i < updates.size() && i < kShown; ++i) {
    Result<store::ObjectMeta> m = st.Get(updates[i].object_id);
    std::printf("  %-16s %-64s patient %s\n", updates[i].destination.c_str(),
                m.ok() ? LogEscape(m->sop_instance_uid).c_str() : "(object gone)",
                m.ok() ? LogEscape(m->patient_id).c_str() : "-");
  }
  if (updates.size() > kShown) std::printf("  ... and %zu more\n", updates.size() - kShown);
  std::printf("objects still needed by another destination, or delivered somewhere and within retention, are kept\n");
  if (confirm.dry_run || updates.empty() || confirm.yes) return 0;
  if (!confirm.interactive) {
    std::fprintf(stderr,
                 "relais queue purge: not a terminal, nothing purged: pass --yes to purge without asking (or "
                 "--dry-run to only look)\n");
    return 2;
  }
  std::fprintf(stderr, "purge these %zu rows? [y/N] ", updates.size());
  char answer[16] = {0};
  if (std::fgets(answer, sizeof(answer), stdin) == nullptr || (answer[0] != 'y' && answer[0] != 'Y')) {
    std::fprintf(stderr, "relais queue purge: not confirmed, nothing purged\n");
    return 2;
  }
  return 0;
}

int Apply(const store::Options& options, const QueueSelection& sel, QueueAction action, const char* verb,
          const PurgeConfirm* confirm = nullptr) {
  auto st = OpenAs(options, /*admin=*/true);
  if (!st.ok()) return Fail(st.status());
  Result<QueuePlan> planned = PlanQueueAction(**st, sel, action, "relais queue " + std::string(verb), NowUnixMs());
  if (!planned.ok()) return Fail(planned.status());
  QueuePlan& plan = *planned;
  for (const std::string& uid : plan.unknown_uids) {
    std::fprintf(stderr, "relais: no stored object has SOP Instance UID %s\n", uid.c_str());
  }
  if (plan.unknown_study) {
    std::fprintf(stderr, "relais: no stored object of Study Instance UID %s\n", LogEscape(sel.study).c_str());
    return 2;
  }
  const bool unknown = !plan.unknown_uids.empty();
  if (!sel.uids.empty() && plan.unknown_uids.size() == sel.uids.size()) return 2;
  std::vector<store::QueueUpdate>& updates = plan.updates;
  const uint64_t dead = plan.from_dead;
  const bool purge = action == QueueAction::kPurge;
  if (confirm != nullptr) {
    if (int code = PreviewAndConfirm(**st, updates, *confirm); code != 0) {
      RecordCliAction({"queue purge", SelectorText(sel), "refused", "not confirmed", 0, {}, {}});
      return code;
    }
    if (confirm->dry_run) return unknown ? 2 : 0;
  }
  CliAction audit{std::string("queue ") + verb, SelectorText(sel), "ok", "", updates.size(), {}, {}};
  Touched(**st, updates, &audit.uids, &audit.patient_ids);
  // Big selections go in slices so that one transaction stays reasonable
  // and progress is visible.
  constexpr size_t kSlice = 1000;
  size_t done_rows = 0;
  for (size_t i = 0; i < updates.size(); i += kSlice) {
    std::vector<store::QueueUpdate> slice(updates.begin() + i, updates.begin() + std::min(updates.size(), i + kSlice));
    Status result;
    (*st)->UpdateQueue(std::move(slice), [&result](Status r) { result = r; });
    if (!result.ok()) {
      std::fprintf(stderr, "relais: %s failed after %zu of %zu rows: %s\n", verb, done_rows, updates.size(),
                   result.ToString().c_str());
      audit.result = "failed";
      audit.detail = "after " + std::to_string(done_rows) + " rows: " + result.ToString();
      RecordCliAction(audit);
      return 1;
    }
    done_rows = std::min(updates.size(), i + kSlice);
    if (updates.size() > kSlice) std::fprintf(stderr, "%s: %zu/%zu rows\n", verb, done_rows, updates.size());
  }
  std::string from_dead = plan.resend ? "" : " (" + std::to_string(dead) + " from dead letter)";
  audit.detail = std::string(purge ? "purged " : "requeued ") + std::to_string(updates.size()) + " rows" + from_dead;
  if (!RecordCliAction(audit)) return 1;
  std::printf("%s %zu rows%s%s\n", purge ? "purged" : "requeued", updates.size(), from_dead.c_str(),
              !purge && !updates.empty() ? "; a running `relais serve` picks them up within seconds" : "");
  return unknown ? 2 : 0;
}

}  // namespace

int QueueRetry(const store::Options& options, const QueueSelection& sel) {
  return Apply(options, sel, QueueAction::kRetry, "retry");
}

int QueuePurge(const store::Options& options, const QueueSelection& sel, const PurgeConfirm& confirm) {
  return Apply(options, sel, QueueAction::kPurge, "purge", &confirm);
}

int ObjectShow(const store::Options& options, const std::string& uid, bool json) {
  auto st = OpenAs(options, /*admin=*/false);
  if (!st.ok()) return Fail(st.status());
  Result<store::ObjectMeta> m = (*st)->Find(uid);
  if (m.status().IsNotFound()) {
    std::fprintf(stderr,
                 "relais: no stored object has SOP Instance UID %s (never received, or delivered and "
                 "removed: see the log)\n",
                 uid.c_str());
    return 2;
  }
  if (!m.ok()) return Fail(m.status());
  QueueSelection sel;
  sel.uids = {uid};
  std::set<uint64_t> ids{m->id};
  std::vector<SelectedRow> rows;
  Status s = SelectRows(**st, sel, ids, /*want_live=*/true, &rows);
  if (!s.ok()) return Fail(s);
  std::vector<store::Attempt> attempts;
  s = (*st)->ListAttempts(m->id, [&](const store::Attempt& a) {
    attempts.push_back(a);
    return true;
  });
  if (!s.ok()) return Fail(s);
  // Its lifecycle class and when it goes (store/FORMAT.md "Lifecycle").
  Result<store::ObjectLife> life = (*st)->GetLife(m->id);
  if (!life.ok()) return Fail(life.status());
  if (json) {
    std::printf("{\"class\":\"%s\",\"goes\":\"%s\",", store::ObjectClassName(life->object_class),
                GoesText(*life).c_str());
    std::printf(
        "\"sop_instance_uid\":\"%s\",\"id\":%" PRIu64
        ",\"sop_class_uid\":\"%s\",\"modality\":\"%s\","
        "\"patient_id\":\"%s\",\"study_instance_uid\":\"%s\",\"transfer_syntax_uid\":\"%s\",\"raw_size\":%" PRIu64
        ",\"received\":\"%s\",\"calling_ae\":\"%s\",\"peer\":\"%s\",\"routing\":\"%s\",\"matched_rules\":[%s],"
        "\"routes\":[",
        JsonEscape(m->sop_instance_uid).c_str(), m->id, JsonEscape(m->sop_class_uid).c_str(),
        JsonEscape(m->modality).c_str(), JsonEscape(m->patient_id).c_str(), JsonEscape(m->study_instance_uid).c_str(),
        JsonEscape(m->transfer_syntax_uid).c_str(), m->raw_size, IsoTime(m->received_unix_ms).c_str(),
        JsonEscape(m->calling_ae).c_str(), JsonEscape(m->peer_address).c_str(), JsonEscape(m->routing).c_str(),
        JsonList(m->matched_rules).c_str());
    for (size_t i = 0; i < m->routes.size(); ++i) {
      const store::Route& r = m->routes[i];
      const char* state = "done";
      std::string reason;  // why the resend policy suppressed the row
      for (const store::Attempt& a : attempts) {
        if (a.destination != r.destination) continue;
        state = a.result == "suppressed" ? "suppressed" : "done";
        reason = a.result == "suppressed" ? a.error : "";
      }
      for (const SelectedRow& sr : rows) {
        if (sr.row.destination == r.destination) state = sr.dead ? "dead" : "queued";
      }
      if (std::string_view(state) != "suppressed") reason.clear();
      std::printf("%s{\"destination\":\"%s\",\"priority\":%d,\"rule\":\"%s\",\"edits\":\"%s\",\"state\":\"%s\"%s%s%s}",
                  i ? "," : "", JsonEscape(r.destination).c_str(), r.priority, JsonEscape(r.rule).c_str(),
                  JsonEscape(r.edits).c_str(), state, reason.empty() ? "" : ",\"reason\":\"",
                  JsonEscape(reason).c_str(), reason.empty() ? "" : "\"");
    }
    std::printf("],\"attempts\":[");
    for (size_t i = 0; i < attempts.size(); ++i) {
      const store::Attempt& a = attempts[i];
      std::printf("%s{\"time\":\"%s\",\"unix_ms\":%" PRId64
                  ",\"destination\":\"%s\",\"association\":\"%s\","
                  "\"result\":\"%s\",\"status\":%u,\"error\":\"%s\"}",
                  i ? "," : "", IsoTime(a.unix_ms).c_str(), a.unix_ms, JsonEscape(a.destination).c_str(),
                  JsonEscape(a.association).c_str(), JsonEscape(a.result).c_str(), a.status,
                  JsonEscape(a.error).c_str());
    }
    std::printf("]}\n");
    return 0;
  }
  // Peer text is shown escaped (control characters, bytes that are not UTF-8).
  auto shown = [](const std::string& v) { return LogEscape(v); };
  std::printf("object %s (id %" PRIu64 ")\n", shown(m->sop_instance_uid).c_str(), m->id);
  std::printf("  SOP class     %s\n  modality      %s\n  patient       %s\n  study         %s\n",
              shown(m->sop_class_uid).c_str(), shown(m->modality).c_str(), shown(m->patient_id).c_str(),
              shown(m->study_instance_uid).c_str());
  std::printf("  stored as     %s, %" PRIu64 " bytes (%" PRIu64 " on disk)\n", shown(m->transfer_syntax_uid).c_str(),
              m->raw_size, m->stored_size);
  std::printf("  received      %s from %s (%s) called %s\n", IsoTime(m->received_unix_ms).c_str(),
              shown(m->calling_ae).c_str(), m->peer_address.c_str(), shown(m->called_ae).c_str());
  std::string matched;
  for (const std::string& r : m->matched_rules) matched += (matched.empty() ? "" : ", ") + r;
  std::printf("  routing       %s%s%s\n", m->routing.empty() ? "-" : m->routing.c_str(),
              matched.empty() ? "" : "; matched rules: ", matched.c_str());
  std::printf("  class         %s since %s; goes %s\n", store::ObjectClassName(life->object_class),
              IsoTime(life->since_unix_ms).c_str(),
              life->object_class == store::ObjectClass::kQueued ? "with its queue rows"
              : life->expires_unix_ms < 0                       ? "never by time (kept)"
                                                                : ("at " + GoesText(*life)).c_str());
  std::printf("destinations\n");
  if (m->routes.empty()) std::printf("  (none)\n");
  for (const store::Route& r : m->routes) {
    std::string state = "delivered (or purged)";
    // No row because the resend policy suppressed it at the commit.
    for (const store::Attempt& a : attempts) {
      if (a.destination != r.destination) continue;
      state = a.result == "suppressed" ? "not sent again: " + a.error : "delivered (or purged)";
    }
    for (const SelectedRow& sr : rows) {
      if (sr.row.destination != r.destination) continue;
      state = sr.dead ? "DEAD since " + IsoTime(sr.row.dead_unix_ms) + ": " + sr.row.last_error
                      : "queued, " + std::to_string(sr.row.attempts) + " attempts, next " +
                            Relative(sr.row.next_attempt_unix_ms, NowUnixMs());
    }
    std::printf("  %-16s priority %d, rule %s%s%s: %s\n", r.destination.c_str(), r.priority, r.rule.c_str(),
                r.edits.empty() ? "" : ", edits ", EditsText(r.edits).c_str(), shown(state).c_str());
  }
  std::printf("attempts\n");
  if (attempts.empty()) std::printf("  (none yet)\n");
  for (const store::Attempt& a : attempts) {
    std::printf("  %s %-16s %-8s", IsoTime(a.unix_ms).c_str(), a.destination.c_str(), a.result.c_str());
    if (a.status != 0) std::printf(" status=0x%04X", a.status);
    std::printf(" %s%s%s\n", shown(a.association).c_str(), a.error.empty() || a.association.empty() ? "" : ": ",
                shown(a.error).c_str());
  }
  return 0;
}

}  // namespace relais::router
