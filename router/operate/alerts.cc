// Alerts: see alerts.h.
//
// Delivery channels, both on the loop and never blocking it:
// - webhook: the host of alerts.webhook is resolved with uv_getaddrinfo (the
//   libuv thread pool) unless it is an IPv4 literal, then h2o's HTTP/1
//   client (libh2o 2.2, built for libuv) connects to that IPv4 address and
//   POSTs the JSON with "Connection: close". Its io_timeout (10 s) bounds
//   the connect, the send and the wait for the response head. A 2xx answer
//   is success; anything else is a failure, retried at the next evaluation
//   while the alert still holds.
// - command: uv_spawn of alerts.command (no shell, no arguments), the JSON
//   written to its stdin (then closed), its stdout and stderr going to our
//   stderr (the journal), killed with SIGKILL after 30 s. Exit 0 is success.
//   REQUIRES: SIGPIPE ignored (relais serve does), since a command that does
//   not read its stdin makes our write fail with EPIPE.
#include "router/operate/alerts.h"

#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <h2o/http1client.h>
#include <h2o/timeout.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "base/clock.h"
#include "base/json_safe.h"
#include "base/log.h"
#include "router/deliver/delivery.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

extern char** environ;

namespace relais::router {
namespace {

constexpr uint64_t kWebhookTimeoutMs = 10000;
constexpr uint64_t kCommandKillMs = 30000;

// "2026-11-28T08:30:00.123Z" (RFC 3339, UTC).
std::string IsoTime(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the compiler imagines
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  return buf;
}

// "42s", "17m", "2h05m", "3d04h".
std::string Duration(int64_t ms) {
  int64_t s = ms < 0 ? 0 : ms / 1000;
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm", static_cast<long long>(s / 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string Mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

std::string Pct(double f) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%d%%", static_cast<int>(f * 100 + 1e-9));
  return buf;
}

std::string HostName() {
  char buf[256];
  size_t n = sizeof buf;
  if (uv_os_gethostname(buf, &n) != 0) return "unknown";
  return std::string(buf, n);
}

// "http://HOST[:PORT]/PATH" -> parts. False if it is not such a URL.
bool ParseHttpUrl(const std::string& url, std::string* host, uint16_t* port, std::string* path) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) return false;
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  *path = slash == std::string::npos ? "/" : rest.substr(slash);
  *port = 80;
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos) {
    std::string p = authority.substr(colon + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
    unsigned long v = std::stoul(p);
    if (v == 0 || v > 65535) return false;
    *port = static_cast<uint16_t>(v);
    authority.resize(colon);
  }
  if (authority.empty() || authority.find_first_of("@[] \t\r\n") != std::string::npos) return false;
  *host = authority;
  return true;
}

using Key = std::pair<std::string, std::string>;  // kind, subject

}  // namespace

struct Alerts::Impl {
  struct State {
    Active active;
    int64_t last_sent_unix_ms = 0;
    bool webhook_failed = false;  // the last webhook POST of this alert failed: retry
  };

  // One notice going out through one channel.
  struct Notice {
    std::string kind, subject, state;
    std::string json;
  };

  struct Webhook {
    Impl* impl = nullptr;
    Notice notice;
    std::string head;
    h2o_iovec_t bufs[2];
    uv_getaddrinfo_t resolve;
    bool resolving = false;
    h2o_http1client_t* client = nullptr;
  };

  struct Command {
    Impl* impl = nullptr;
    Notice notice;
    uv_process_t process;
    uv_pipe_t in;
    uv_timer_t kill;
    uv_write_t write;
    int open_handles = 0;
    bool exited = false;
    bool killed = false;
  };

  uv_loop_t* loop;
  rules::AlertsConfig config;
  std::string ae_title;
  std::string host = HostName();
  AuditLog* audit;
  Metrics* metrics;
  Sources sources;
  uv_timer_t timer;
  bool timer_open = false;
  bool shut = false;
  std::map<Key, State> states;
  std::vector<std::pair<std::string, std::function<std::vector<Active>()>>> conditions;  // AddCondition

  bool webhook_ok = false;
  std::string wh_host, wh_path;
  uint16_t wh_port = 80;
  h2o_timeout_t io_timeout;
  bool io_timeout_open = false;
  h2o_http1client_ctx_t ctx;
  std::set<Webhook*> webhooks;
  std::set<Command*> commands;

  Impl(uv_loop_t* l, rules::AlertsConfig c, std::string ae, AuditLog* a, Metrics* m)
      : loop(l), config(std::move(c)), ae_title(std::move(ae)), audit(a), metrics(m) {
    std::memset(&ctx, 0, sizeof ctx);
    ParseWebhook();
  }

  void ParseWebhook() {
    webhook_ok = false;
    if (!config.webhook.empty()) {
      webhook_ok = ParseHttpUrl(config.webhook, &wh_host, &wh_port, &wh_path);
      if (!webhook_ok) {
        RLOG_ERROR("event=alerts-webhook-invalid url=\"%s\": expected http://HOST[:PORT]/PATH; alerts are not posted",
                   config.webhook.c_str());
      }
    }
  }

  // --- evaluation ---

  void Evaluate() {
    if (shut) return;
    const int64_t now = NowUnixMs();
    std::set<std::string> kinds;
    std::map<Key, Active> holding;
    if (sources.delivery) {
      kinds.insert("destination-down");
      const int64_t limit = static_cast<int64_t>(config.destination_down_s) * 1000;
      for (const DeliveryScheduler::DestinationStats& d : sources.delivery->Stats()) {
        if (d.failing_since_unix_ms <= 0 || now - d.failing_since_unix_ms < limit) continue;
        Active a{"destination-down", d.name, "", d.failing_since_unix_ms};
        a.message = "Destination " + d.name + " (" + d.ae_title + "@" + d.host + ":" + std::to_string(d.port) +
                    ") has failed for " + Duration(now - d.failing_since_unix_ms) + " (since " +
                    IsoTime(d.failing_since_unix_ms) + ")" +
                    (d.last_error.empty() ? std::string() : ", last error: " + d.last_error) +
                    ". Its objects stay queued and are sent when it answers again; check the network link and the "
                    "remote DICOM service.";
        holding[{a.kind, a.subject}] = std::move(a);
      }
      AddMisconfigured(&kinds, &holding);
    }
    if (sources.store) {
      std::shared_ptr<const QueueSummaries::Snapshot> snap = sources.queue_summaries->Get();
      const std::vector<store::Store::QueueSummary>* qs = &snap->queues;
      if (!snap->status.ok()) {
        RLOG_WARN("event=alerts-queues-unreadable error=\"%s\"", snap->status.ToString().c_str());
      } else {
        kinds.insert("oldest-queued");
        const int64_t limit = static_cast<int64_t>(config.oldest_queued_s) * 1000;
        for (const store::Store::QueueSummary& q : *qs) {
          // Time in the queue, not since receipt: a manual re-send or re-route
          // of old objects does not page.
          const int64_t since = q.oldest_queued_unix_ms > 0 ? q.oldest_queued_unix_ms : q.oldest_received_unix_ms;
          if (q.rows == 0 || since <= 0 || now - since < limit) continue;
          Active a{"oldest-queued", q.destination, "", since};
          a.message = std::to_string(q.rows) + " object(s) wait for destination " + q.destination +
                      "; the oldest has been queued for " + Duration(now - since) + " (since " + IsoTime(since) +
                      "), over the " + Duration(limit) +
                      " limit. Delivery to it is stuck or too slow: check its state on the dashboard and "
                      "`relais queue ls`.";
          holding[{a.kind, a.subject}] = std::move(a);
        }
      }
    }
    if (sources.store) AddDeadLetters(now, &kinds, &holding);
    if (sources.store) AddDeadLettersExpiring(now, &kinds, &holding);
    if (sources.storage) {
      kinds.insert("storage-high");
      AddStorage(sources.storage->usage(), &holding);
    }
    if (audit) {
      kinds.insert("audit-failing");
      if (audit->failing()) {
        auto it = states.find({"audit-failing", "audit"});
        Active a{"audit-failing", "audit", "", it != states.end() ? it->second.active.since_unix_ms : now};
        a.message =
            "The audit trail cannot be written (disk full or file unwritable; see the log line "
            "event=audit-write-failed). With [audit] on_failure = \"refuse\" new images are refused with "
            "0xA700 until it can; with \"continue\" they are received unaudited. Free space on the audit "
            "file's disk.";
        holding[{a.kind, a.subject}] = std::move(a);
      }
    }
    for (const auto& extra : conditions) {
      kinds.insert(extra.first);
      for (Active& a : extra.second()) holding[{a.kind, a.subject}] = std::move(a);
    }
    Reconcile(kinds, holding, now);
  }

  // Destinations whose peer refused our association for a configuration
  // reason (DestinationStats::misconfigured_reason, with the fix): raised at
  // once, resolved when a reload or the peer clears it.
  void AddMisconfigured(std::set<std::string>* kinds, std::map<Key, Active>* holding) {
    kinds->insert("destination-misconfigured");
    for (const DeliveryScheduler::DestinationStats& d : sources.delivery->Stats()) {
      if (d.misconfigured_reason.empty()) continue;
      Active a{"destination-misconfigured", d.name, "", d.misconfigured_since_unix_ms};
      a.message = "Destination " + d.name + " (" + d.ae_title + "@" + d.host + ":" + std::to_string(d.port) +
                  ") is misconfigured: " + d.misconfigured_reason + ". Its " + std::to_string(d.ready) +
                  " waiting object(s) stay queued (nothing is dead-lettered) and are sent as soon as it is fixed.";
      (*holding)[{a.kind, a.subject}] = std::move(a);
    }
  }

  // Destinations with dead letters in the store (QueueSummary::dead_rows),
  // with the count and the latest reason the scheduler gave (since start):
  // raised when a destination gets its first, resolved when none is left
  // (requeued, purged or expired).
  void AddDeadLetters(int64_t now, std::set<std::string>* kinds, std::map<Key, Active>* holding) {
    std::shared_ptr<const QueueSummaries::Snapshot> snap = sources.queue_summaries->Get();
    if (!snap->status.ok()) return;  // logged by the oldest-queued check
    const std::vector<store::Store::QueueSummary>* qs = &snap->queues;
    kinds->insert("dead-letters");
    std::map<std::string, std::pair<std::string, int64_t>> latest;  // destination -> reason, time
    if (sources.delivery) {
      for (const DeliveryScheduler::DestinationStats& d : sources.delivery->Stats()) {
        if (!d.last_dead_error.empty()) latest[d.name] = {d.last_dead_error, d.last_dead_unix_ms};
      }
    }
    for (const store::Store::QueueSummary& q : *qs) {
      if (q.dead_rows == 0) continue;
      auto it = latest.find(q.destination);
      Active a{"dead-letters", q.destination, "", it != latest.end() ? it->second.second : now};
      a.message = std::to_string(q.dead_rows) + " object(s) for destination " + q.destination +
                  " are dead letters (delivery gave up on them)" +
                  (it != latest.end() ? "; the latest: " + it->second.first : std::string()) +
                  ". `relais queue ls --dest " + q.destination +
                  " --dead` lists them with their reasons; once the cause is fixed, "
                  "`relais queue retry --dead` sends them again.";
      (*holding)[{a.kind, a.subject}] = std::move(a);
    }
  }

  // Dead letters that Sweep removes within the next 24 h (store/FORMAT.md
  // "Lifecycle"): a day to requeue them. Reads the time index up to
  // now + 24 h - retention: costs the expiring objects, not the store.
  void AddDeadLettersExpiring(int64_t now, std::set<std::string>* kinds, std::map<Key, Active>* holding) {
    const int64_t retention = sources.store->RetentionMs(store::ObjectClass::kDead);
    if (retention < 0) return;
    kinds->insert("dead-letters-expiring");
    constexpr int64_t kWarnAhead = 24 * 3600'000;
    std::set<uint64_t> ids;
    int64_t first_since = 0;
    Status s = sources.store->ListClass(store::ObjectClass::kDead, now + kWarnAhead - retention,
                                        [&](uint64_t id, int64_t since) {
                                          if (ids.empty()) first_since = since;
                                          ids.insert(id);
                                          return true;
                                        });
    if (!s.ok()) {
      RLOG_WARN("event=alerts-lifecycle-unreadable error=\"%s\"", s.ToString().c_str());
      kinds->erase("dead-letters-expiring");
      return;
    }
    if (ids.empty()) return;
    std::set<std::string> destinations;
    s = sources.store->ListDead([&](const store::QueueRow& r) {
      if (ids.count(r.object_id) != 0) destinations.insert(r.destination);
      return true;
    });
    std::string names;
    for (const std::string& d : destinations) names += (names.empty() ? "" : ", ") + d;
    Active a{"dead-letters-expiring", "store", "", first_since + retention - kWarnAhead};
    a.message = "Dead letters expire within 24 h: " + std::to_string(ids.size()) + " object(s), destinations " +
                (names.empty() ? std::string("-") : names) + "; the first goes at " + IsoTime(first_since + retention) +
                ". Requeue the ones still wanted (`relais queue retry --dead`, "
                "or the dashboard) or let them go; `relais store ls --class dead` lists them.";
    (*holding)[{a.kind, a.subject}] = std::move(a);
  }

  void AddStorage(const StorageWatch::Usage& u, std::map<Key, Active>* holding) {
    if (!u.intake_closed) return;
    double low = sources.storage ? sources.storage->low_water() : 0;
    Active a{"storage-high", "store", "", u.closed_since_unix_ms};
    a.message = "The store is " + Pct(u.fraction) + " full (" + Mib(u.used_bytes) + " of " + Mib(u.capacity_bytes) +
                "): new images are refused with 0xA700 until delivery brings it below " +
                (low > 0 ? Pct(low) : std::string("its low-water mark")) +
                ". Check the destinations that do not take their objects, or give the store more disk space.";
    (*holding)[{a.kind, a.subject}] = std::move(a);
  }

  // Raises what newly holds, repeats what still holds, resolves what no
  // longer holds (among the kinds evaluated).
  void Reconcile(const std::set<std::string>& kinds, std::map<Key, Active>& holding, int64_t now) {
    for (auto& [key, a] : holding) {
      auto it = states.find(key);
      if (it == states.end()) {
        State s;
        s.active = a;
        s.last_sent_unix_ms = now;
        it = states.emplace(key, std::move(s)).first;
        Send(it->second, "raised", /*webhook=*/true, /*command=*/true);
        continue;
      }
      State& s = it->second;
      s.active.message = a.message;
      if (config.repeat_s > 0 && now - s.last_sent_unix_ms >= static_cast<int64_t>(config.repeat_s) * 1000) {
        s.last_sent_unix_ms = now;
        Send(s, "raised", true, true);
      } else if (s.webhook_failed) {
        Send(s, "raised", true, false);  // retry of a failed POST only
      }
    }
    for (auto it = states.begin(); it != states.end();) {
      if (kinds.count(it->first.first) && !holding.count(it->first)) {
        State s = std::move(it->second);
        it = states.erase(it);
        s.active.message = ResolvedMessage(s.active);
        Send(s, "resolved", true, true);
      } else {
        ++it;
      }
    }
  }

  std::string ResolvedMessage(const Active& a) {
    const std::string lasted = Duration(NowUnixMs() - a.since_unix_ms);
    if (a.kind == "destination-down") {
      return "Destination " + a.subject + " is no longer failing (it had failed for " + lasted + ").";
    }
    if (a.kind == "dead-letters") {
      return "Destination " + a.subject + " has no dead letter any more (requeued, purged or expired).";
    }
    if (a.kind == "destination-misconfigured") {
      return "Destination " + a.subject + " accepts our association again (it was misconfigured for " + lasted +
             "): its queue is being delivered.";
    }
    if (a.kind == "oldest-queued") {
      return "Destination " + a.subject + " has no object queued longer than " +
             Duration(static_cast<int64_t>(config.oldest_queued_s) * 1000) + " any more.";
    }
    if (a.kind == "storage-high") {
      std::string usage;
      if (sources.storage) usage = " (" + Pct(sources.storage->usage().fraction) + " used)";
      return "The store is below its low-water mark again" + usage + ": new images are accepted (intake was closed " +
             lasted + ").";
    }
    if (a.kind == "audit-failing") {
      return "The audit trail is written again (it had failed for " + lasted + "): new images are accepted.";
    }
    return "Resolved.";
  }

  // --- notices ---

  void Send(State& s, const std::string& state, bool webhook, bool command) {
    const Active& a = s.active;
    nlohmann::json j = {
        {"alert", a.kind},      {"subject", a.subject}, {"state", state},      {"since", IsoTime(a.since_unix_ms)},
        {"message", a.message}, {"host", host},         {"ae_title", ae_title}};
    Notice n{a.kind, a.subject, state, JsonDump(j)};
    if (webhook && command) {  // a new notice (not a retry): log and audit it once
      if (state == "raised") {
        RLOG_WARN("event=alert alert=%s subject=%s state=raised since=%s message=\"%s\"", a.kind.c_str(),
                  LogToken(a.subject).c_str(), IsoTime(a.since_unix_ms).c_str(), LogEscape(a.message, true).c_str());
      } else {
        RLOG_INFO("event=alert alert=%s subject=%s state=resolved message=\"%s\"", a.kind.c_str(),
                  LogToken(a.subject).c_str(), LogEscape(a.message, true).c_str());
      }
      if (audit) {
        audit->Record("alert", {{"alert", a.kind},
                                {"subject", a.subject},
                                {"state", state},
                                {"since", IsoTime(a.since_unix_ms)},
                                {"message", a.message}});
      }
    }
    if (webhook && webhook_ok) {
      s.webhook_failed = false;  // set again if this POST fails
      StartWebhook(n);
    }
    if (command && !config.command.empty()) StartCommand(std::move(n));
  }

  void Count(const Notice& n, bool ok) {
    if (metrics) metrics->AlertSent(n.kind, ok);
  }

  void WebhookDone(Webhook* w, bool ok, const std::string& what) {
    Count(w->notice, ok);
    if (ok) {
      RLOG_INFO("event=alert-webhook-sent alert=%s subject=%s state=%s %s", w->notice.kind.c_str(),
                w->notice.subject.c_str(), w->notice.state.c_str(), what.c_str());
    } else {
      RLOG_WARN("event=alert-webhook-failed alert=%s subject=%s state=%s url=%s error=\"%s\"%s", w->notice.kind.c_str(),
                w->notice.subject.c_str(), w->notice.state.c_str(), config.webhook.c_str(), what.c_str(),
                w->notice.state == "raised" ? ": retried at the next evaluation while it holds" : "");
      auto it = states.find({w->notice.kind, w->notice.subject});
      if (it != states.end() && w->notice.state == "raised") it->second.webhook_failed = true;
    }
    webhooks.erase(w);
    delete w;
  }

  void StartWebhook(const Notice& n) {
    auto* w = new Webhook;
    w->impl = this;
    w->notice = n;
    w->head = "POST " + wh_path + " HTTP/1.1\r\nHost: " + wh_host +
              (wh_port == 80 ? std::string() : ":" + std::to_string(wh_port)) +
              "\r\nUser-Agent: Relais\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(w->notice.json.size()) + "\r\nConnection: close\r\n\r\n";
    w->bufs[0] = h2o_iovec_init(w->head.data(), w->head.size());
    w->bufs[1] = h2o_iovec_init(w->notice.json.data(), w->notice.json.size());
    webhooks.insert(w);
    in_addr addr;
    if (inet_pton(AF_INET, wh_host.c_str(), &addr) == 1) {
      Connect(w, wh_host);
      return;
    }
    addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;  // h2o 2.2 connects to IPv4 literals without its own resolver
    hints.ai_socktype = SOCK_STREAM;
    w->resolve.data = w;
    w->resolving = true;
    int rc = uv_getaddrinfo(loop, &w->resolve, &Impl::OnResolved, wh_host.c_str(), nullptr, &hints);
    if (rc != 0) {
      w->resolving = false;
      WebhookDone(w, false, std::string("cannot resolve ") + wh_host + ": " + uv_strerror(rc));
    }
  }

  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
    auto* w = static_cast<Webhook*>(req->data);
    w->resolving = false;
    Impl* self = w->impl;
    std::string ip;
    if (status == 0 && res != nullptr) {
      char buf[INET_ADDRSTRLEN];
      auto* sin = reinterpret_cast<sockaddr_in*>(res->ai_addr);
      if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf) != nullptr) ip = buf;
    }
    uv_freeaddrinfo(res);
    if (self->shut) {  // Shutdown cancelled us: nothing is counted any more
      self->webhooks.erase(w);
      delete w;
      return;
    }
    if (ip.empty()) {
      self->WebhookDone(w, false,
                        "cannot resolve " + self->wh_host + ": " + (status != 0 ? uv_strerror(status) : "no address"));
      return;
    }
    self->Connect(w, ip);
  }

  void Connect(Webhook* w, const std::string& ip) {
    if (!io_timeout_open) {
      h2o_timeout_init(loop, &io_timeout, kWebhookTimeoutMs);
      io_timeout_open = true;
      ctx.loop = loop;
      ctx.io_timeout = &io_timeout;
    }
    // May call OnConnect (with an error) before it returns.
    h2o_http1client_connect(&w->client, w, &ctx, h2o_iovec_init(ip.data(), ip.size()), wh_port, 0, &Impl::OnConnect);
  }

  static h2o_http1client_head_cb OnConnect(h2o_http1client_t* client, const char* errstr, h2o_iovec_t** reqbufs,
                                           size_t* reqbufcnt, int* method_is_head) noexcept {
    auto* w = static_cast<Webhook*>(client->data);
    if (errstr != nullptr) {
      w->client = nullptr;  // h2o frees it after we return
      w->impl->WebhookDone(w, false, std::string("connect: ") + errstr);
      return nullptr;
    }
    *reqbufs = w->bufs;
    *reqbufcnt = 2;
    *method_is_head = 0;
    return &Impl::OnHead;
  }

  static h2o_http1client_body_cb OnHead(h2o_http1client_t* client, const char* errstr, int /*minor_version*/,
                                        int status, h2o_iovec_t msg, struct st_h2o_header_t* /*headers*/,
                                        size_t /*num_headers*/, int /*rlen*/) noexcept {
    auto* w = static_cast<Webhook*>(client->data);
    w->client = nullptr;  // returning null (or eos) makes h2o close and free it
    if (errstr != nullptr && errstr != h2o_http1client_error_is_eos) {
      w->impl->WebhookDone(w, false, errstr);
      return nullptr;
    }
    std::string what = "http_status=" + std::to_string(status);
    if (status >= 200 && status <= 299) {
      w->impl->WebhookDone(w, true, what);
    } else {
      w->impl->WebhookDone(w, false, "HTTP " + std::to_string(status) + " " + std::string(msg.base, msg.len));
    }
    return nullptr;  // the body is not needed
  }

  void StartCommand(Notice n) {
    auto* c = new Command;
    c->impl = this;
    c->notice = std::move(n);
    commands.insert(c);

    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      if (std::strncmp(*e, "RELAIS_ALERT", 12) == 0) continue;
      env.emplace_back(*e);
    }
    env.push_back("RELAIS_ALERT=" + c->notice.kind);
    env.push_back("RELAIS_ALERT_SUBJECT=" + c->notice.subject);
    env.push_back("RELAIS_ALERT_STATE=" + c->notice.state);
    std::vector<char*> envp;
    for (std::string& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string file = config.command;
    char* args[] = {file.data(), nullptr};

    uv_pipe_init(loop, &c->in, 0);
    c->in.data = c;
    ++c->open_handles;
    uv_timer_init(loop, &c->kill);
    c->kill.data = c;
    ++c->open_handles;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
    stdio[0].data.stream = reinterpret_cast<uv_stream_t*>(&c->in);
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = 2;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    uv_process_options_t opts;
    std::memset(&opts, 0, sizeof opts);
    opts.exit_cb = &Impl::OnExit;
    opts.file = file.c_str();
    opts.args = args;
    opts.env = envp.data();
    opts.stdio_count = 3;
    opts.stdio = stdio;
    c->process.data = c;
    int rc = uv_spawn(loop, &c->process, &opts);
    ++c->open_handles;  // the process handle is initialized even when the spawn fails
    if (rc != 0) {
      c->exited = true;
      RLOG_WARN("event=alert-command-failed alert=%s subject=%s state=%s command=%s error=\"cannot start: %s\"",
                c->notice.kind.c_str(), c->notice.subject.c_str(), c->notice.state.c_str(), config.command.c_str(),
                uv_strerror(rc));
      Count(c->notice, false);
      CloseCommand(c);
      return;
    }
    uv_buf_t buf = uv_buf_init(c->notice.json.data(), static_cast<unsigned>(c->notice.json.size()));
    c->write.data = c;
    rc = uv_write(&c->write, reinterpret_cast<uv_stream_t*>(&c->in), &buf, 1, &Impl::OnWritten);
    if (rc != 0) {
      RLOG_WARN("event=alert-command-stdin-failed command=%s error=\"%s\"", config.command.c_str(), uv_strerror(rc));
      CloseHandle(c, reinterpret_cast<uv_handle_t*>(&c->in));
    }
    uv_timer_start(&c->kill, &Impl::OnKill, kCommandKillMs, 0);
  }

  static void OnWritten(uv_write_t* req, int status) noexcept {
    auto* c = static_cast<Command*>(req->data);
    if (status != 0 && status != UV_ECANCELED) {
      RLOG_WARN("event=alert-command-stdin-failed command=%s error=\"%s\"", c->impl->config.command.c_str(),
                uv_strerror(status));
    }
    c->impl->CloseHandle(c, reinterpret_cast<uv_handle_t*>(&c->in));  // EOF on the command's stdin
  }

  static void OnKill(uv_timer_t* t) noexcept {
    auto* c = static_cast<Command*>(t->data);
    if (c->exited) return;
    RLOG_WARN("event=alert-command-timeout command=%s alert=%s subject=%s: killed after %llu s",
              c->impl->config.command.c_str(), c->notice.kind.c_str(), c->notice.subject.c_str(),
              static_cast<unsigned long long>(kCommandKillMs / 1000));
    c->killed = true;
    uv_process_kill(&c->process, SIGKILL);
  }

  static void OnExit(uv_process_t* p, int64_t exit_status, int term_signal) noexcept {
    auto* c = static_cast<Command*>(p->data);
    Impl* self = c->impl;
    c->exited = true;
    const bool ok = exit_status == 0 && term_signal == 0;
    if (ok) {
      RLOG_INFO("event=alert-command-done alert=%s subject=%s state=%s command=%s exit=0", c->notice.kind.c_str(),
                c->notice.subject.c_str(), c->notice.state.c_str(), self->config.command.c_str());
    } else {
      RLOG_WARN("event=alert-command-failed alert=%s subject=%s state=%s command=%s exit=%lld signal=%d%s",
                c->notice.kind.c_str(), c->notice.subject.c_str(), c->notice.state.c_str(),
                self->config.command.c_str(), static_cast<long long>(exit_status), term_signal,
                !c->killed   ? ""
                : self->shut ? " (killed: relais is stopping)"
                             : " (killed: too slow)");
    }
    if (!self->shut || !c->killed) self->Count(c->notice, ok);
    self->CloseCommand(c);
  }

  void CloseHandle(Command* c, uv_handle_t* h) {
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* h) noexcept {
      auto* c = static_cast<Command*>(h->data);
      if (--c->open_handles == 0) {
        c->impl->commands.erase(c);
        delete c;
      }
    });
  }

  void CloseCommand(Command* c) {
    uv_timer_stop(&c->kill);
    CloseHandle(c, reinterpret_cast<uv_handle_t*>(&c->kill));
    CloseHandle(c, reinterpret_cast<uv_handle_t*>(&c->in));
    CloseHandle(c, reinterpret_cast<uv_handle_t*>(&c->process));
  }

  void Shutdown() {
    if (shut) return;
    shut = true;
    if (timer_open) {
      timer_open = false;
      uv_timer_stop(&timer);
      uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    }
    for (Webhook* w : std::vector<Webhook*>(webhooks.begin(), webhooks.end())) {
      if (w->resolving) {
        uv_cancel(reinterpret_cast<uv_req_t*>(&w->resolve));  // OnResolved frees it
        continue;
      }
      if (w->client != nullptr) h2o_http1client_cancel(w->client);  // closes its socket, frees the client
      webhooks.erase(w);
      delete w;
    }
    if (io_timeout_open) {
      io_timeout_open = false;
      h2o_timeout_dispose(loop, &io_timeout);  // closes its uv timer; this Impl outlives the loop run
    }
    for (Command* c : commands) {
      if (!c->exited) {
        c->killed = true;
        uv_process_kill(&c->process, SIGKILL);  // OnExit closes its handles
      }
    }
  }
};

void Alerts::SetConfig(rules::AlertsConfig config) {
  impl_->config = std::move(config);
  impl_->ParseWebhook();
}

Alerts::Alerts(uv_loop_t* loop, rules::AlertsConfig config, std::string ae_title, AuditLog* audit, Metrics* metrics)
    : impl_(std::make_unique<Impl>(loop, std::move(config), std::move(ae_title), audit, metrics)) {}

// Shutdown() must have been called and the loop run until every handle
// closed before destruction.
Alerts::~Alerts() = default;

void Alerts::Start(Sources sources, uint64_t interval_ms) {
  Impl* d = impl_.get();
  if (d->shut) return;
  d->sources = sources;
  if (d->sources.store && !d->sources.queue_summaries) {
    d->sources.queue_summaries =
        std::make_shared<QueueSummaries>(d->sources.store, QueueSummaries::Options{/*min_interval_ms=*/0});
  }
  if (!d->timer_open) {
    uv_timer_init(d->loop, &d->timer);
    d->timer.data = d;
    d->timer_open = true;
  }
  d->Evaluate();
  if (interval_ms == 0) interval_ms = 10000;
  uv_timer_start(
      &d->timer,
      [](uv_timer_t* t) noexcept {
        // Nothing may unwind into libuv: a failure here costs one evaluation,
        // not the process (the next tick tries again).
        try {
          static_cast<Impl*>(t->data)->Evaluate();
        } catch (const std::exception& e) {
          RLOG_ERROR("event=alert-evaluation-failed error=\"%s\"", LogEscape(e.what(), true).c_str());
        }
      },
      interval_ms, interval_ms);
}

void Alerts::AddCondition(std::string kind, std::function<std::vector<Active>()> holds) {
  impl_->conditions.emplace_back(std::move(kind), std::move(holds));
}

void Alerts::Evaluate() { impl_->Evaluate(); }

void Alerts::OnStorageChange(const StorageWatch::Usage& usage) {
  Impl* d = impl_.get();
  if (d->shut) return;
  std::map<Key, Active> holding;
  d->AddStorage(usage, &holding);
  d->Reconcile({"storage-high"}, holding, NowUnixMs());
}

void Alerts::Shutdown() { impl_->Shutdown(); }

std::vector<Alerts::Active> Alerts::active() const {
  std::vector<Active> out;
  for (const auto& [key, s] : impl_->states) out.push_back(s.active);
  return out;
}

}  // namespace relais::router
