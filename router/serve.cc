// relais::router::Serve: wiring of config, store, loop, listener and signals.
#include <signal.h>
#include <uv.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include <chrono>
#include <memory>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "router/deliver/delivery.h"
#include "router/net/tls.h"
#include "router/operate/admin_api.h"
#include "router/operate/admin_http.h"
#include "router/operate/alerts.h"
#include "router/operate/config_reload.h"
#include "router/operate/scrubber.h"
#include "router/operate/serve_state.h"
#include "router/operate/service_notify.h"
#include "router/operate/storage_watch.h"
#include "router/receive/server.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"
#include "router/router.h"
#include "store/store.h"

namespace relais::router {
namespace {

struct SignalCtx {
  Server* server = nullptr;
  DeliveryScheduler* delivery = nullptr;
  AdminServer* admin = nullptr;
  Alerts* alerts = nullptr;
  StorageWatch* storage = nullptr;
  Scrubber* scrubber = nullptr;
  ServeStateFile* state_file = nullptr;
  ServiceNotifier* notifier = nullptr;
  AdminApi* admin_api = nullptr;
  store::Store* store = nullptr;
  // relais.toml as last applied (SIGHUP re-reads it), and the error of the
  // last re-read when it failed (the "config-reload-failed" alert).
  rules::AppConfig config;
  std::string config_error;
  int64_t config_error_unix_ms = 0;
  uint64_t drain_ms = 20000;
  bool rest_stopped = false;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  uv_signal_t sighup;
  bool stopping = false;
};

// The store's retentions of [delivery] and [store] history_retention.
store::Retentions RetentionsOf(const rules::AppConfig& config) {
  store::Retentions r;
  r.delivered_ms = static_cast<int64_t>(config.delivery.retention_s) * 1000;
  r.unrouted_ms = static_cast<int64_t>(config.delivery.unrouted_retention_s) * 1000;
  r.dead_ms = static_cast<int64_t>(config.delivery.dead_letter_retention_s) * 1000;
  r.dropped_ms = static_cast<int64_t>(config.delivery.dropped_retention_s) * 1000;
  r.history_ms = static_cast<int64_t>(config.store.history_retention_s) * 1000;
  return r;
}

void CloseSignals(SignalCtx* ctx) {
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx->sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx->sigterm), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx->sighup), nullptr);
}

// SIGHUP, relais.toml: re-read it; apply what can change live (admin
// tokens, [alerts], water marks, retentions), log one line per setting that needs a
// restart. A file that does not load changes nothing and raises the
// "config-reload-failed" alert until a good one is read.
void ReloadAppConfig(SignalCtx* ctx) {
  const std::string& path = ctx->config.source_path;
  Result<rules::AppConfig> loaded = rules::LoadAppConfig(path);
  if (!loaded.ok()) {
    const std::string m = loaded.status().message();
    ctx->config_error = m.substr(0, m.find('\n'));
    if (ctx->config_error.empty()) ctx->config_error = "cannot read " + path;
    ctx->config_error_unix_ms = NowUnixMs();
    RLOG_ERROR("event=config-reload-failed path=%s error=\"%s\": everything keeps running as before", path.c_str(),
               m.c_str());
    if (ctx->alerts != nullptr) ctx->alerts->Evaluate();
    return;
  }
  const bool was_failing = !ctx->config_error.empty();
  ctx->config_error.clear();
  ctx->config_error_unix_ms = 0;
  ConfigChanges changes = DiffConfig(ctx->config, *loaded);
  for (const std::string& what : changes.restart_needed) {
    RLOG_WARN("event=config-restart-needed path=%s: relais.toml changed %s: restart relais to apply", path.c_str(),
              what.c_str());
  }
  if (changes.admin_tokens && ctx->admin_api != nullptr) {
    ctx->admin_api->SetTokens(loaded->admin.tokens);
    RLOG_INFO("event=config-reloaded part=\"[[admin.token]]\" tokens=%zu", loaded->admin.tokens.size());
  }
  if (changes.alerts && ctx->alerts != nullptr) {
    ctx->alerts->SetConfig(loaded->alerts);
    RLOG_INFO("event=config-reloaded part=\"[alerts]\"");
  }
  if (changes.water_marks && ctx->storage != nullptr) {
    ctx->storage->SetWaterMarks(loaded->store.high_water, loaded->store.low_water);
    ctx->storage->SampleNow();
    RLOG_INFO("event=config-reloaded part=\"[store] high_water, low_water\" high=%.2f low=%.2f",
              loaded->store.high_water, loaded->store.low_water);
  }
  if (!changes.retentions.empty() && ctx->store != nullptr) {
    ctx->store->SetRetentions(RetentionsOf(*loaded), [](Status s) {
      if (!s.ok()) RLOG_WARN("event=config-reload-failed part=retentions error=\"%s\"", s.ToString().c_str());
    });
    // Queued behind the change: what the new retentions already let go
    // leaves now, not at the next periodic sweep.
    ctx->store->Sweep(NowUnixMs(), [](Status s) {
      if (!s.ok()) RLOG_WARN("event=sweep-failed reason=\"%s\"", s.ToString().c_str());
    });
    std::string what;
    for (const std::string& r : changes.retentions) what += (what.empty() ? "" : ", ") + r;
    RLOG_INFO("event=config-reloaded part=retentions changed=\"%s\"", what.c_str());
  }
  if (!changes.any_live() && changes.restart_needed.empty())
    RLOG_INFO("event=config-reloaded path=%s: no change", path.c_str());
  // Keep the running values of what needs a restart, so that the next
  // SIGHUP names them again until the restart.
  rules::AppConfig applied = ctx->config;
  applied.admin.tokens = loaded->admin.tokens;
  applied.alerts = loaded->alerts;
  applied.store.high_water = loaded->store.high_water;
  applied.store.low_water = loaded->store.low_water;
  applied.store.history_retention_s = loaded->store.history_retention_s;
  applied.delivery.retention_s = loaded->delivery.retention_s;
  applied.delivery.unrouted_retention_s = loaded->delivery.unrouted_retention_s;
  applied.delivery.dead_letter_retention_s = loaded->delivery.dead_letter_retention_s;
  applied.delivery.dropped_retention_s = loaded->delivery.dropped_retention_s;
  ctx->config = std::move(applied);
  if (was_failing && ctx->alerts != nullptr) ctx->alerts->Evaluate();
}

std::vector<Alerts::Active> ConfigReloadCondition(const SignalCtx& ctx) {
  if (ctx.config_error.empty()) return {};
  Alerts::Active a;
  a.kind = "config-reload-failed";
  a.subject = "config";
  a.message = "relais.toml does not load: " + ctx.config_error +
              "; the settings read at start (or at the last good SIGHUP) stay in force (check it with `relais "
              "config check`)";
  a.since_unix_ms = ctx.config_error_unix_ms;
  return {a};
}

void OnHangup(uv_signal_t* h, int) noexcept {
  auto* ctx = static_cast<SignalCtx*>(h->data);
  if (ctx->stopping) return;
  try {
    ReloadAppConfig(ctx);
  } catch (const std::exception& e) {  // std::bad_alloc
    RLOG_ERROR("event=config-reload-failed error=\"%s\"", e.what());
  }
  ctx->server->RequestRulesReload("SIGHUP");
}

// Everything but the listener: the admin API (nothing new asked of the
// rest), what watches, delivery, the signals. Once; the loop then runs out.
void StopRest(SignalCtx* ctx) {
  if (ctx->rest_stopped) return;
  ctx->rest_stopped = true;
  if (ctx->admin != nullptr) ctx->admin->Shutdown();
  if (ctx->alerts != nullptr) ctx->alerts->Shutdown();
  if (ctx->storage != nullptr) ctx->storage->Shutdown();
  if (ctx->scrubber != nullptr) ctx->scrubber->Shutdown();
  if (ctx->state_file != nullptr) ctx->state_file->Shutdown();  // "running": false
  ctx->notifier->Shutdown();
  ctx->delivery->Shutdown([] {});
  CloseSignals(ctx);
  // Closing the handles restores the default action; a late SIGTERM (e.g.
  // a second `systemctl stop`) must not kill the final commits.
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
}

// SIGTERM/SIGINT: stop accepting at once, let the associations in flight
// finish for up to [listener] drain_timeout_s (their objects are committed
// and answered), then stop the rest. A second signal aborts at once.
void OnStopSignal(uv_signal_t* h, int signum) noexcept {
  auto* ctx = static_cast<SignalCtx*>(h->data);
  const char* name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (ctx->stopping) {
    RLOG_WARN(
        "event=stopping-now signal=%s: aborting the associations still open; what they did not get "
        "acknowledged is not kept (their senders send it again)",
        name);
    ctx->server->Shutdown();
    StopRest(ctx);
    return;
  }
  ctx->stopping = true;
  ctx->notifier->Stopping(std::string("stopping (") + name + "): letting open associations finish", ctx->drain_ms);
  RLOG_INFO(
      "event=stopping signal=%s drain_timeout_s=%llu: no new associations; open ones may finish, "
      "nothing acknowledged is lost",
      name, static_cast<unsigned long long>(ctx->drain_ms / 1000));
  ctx->server->Drain(ctx->drain_ms, [ctx] { StopRest(ctx); });
}

// --- Serve's steps, in the order it runs them ---

// The store, before the server and the scheduler, which use it.
// The "rules-reload-failed" alert (subject "rules"): holds while the last
// reload of the rule files failed, so the rules in force are older than the
// files on disk; clears when a good file loads.
std::vector<Alerts::Active> RulesReloadCondition(const Server& server) {
  if (server.rules_reload_error().empty()) return {};
  Alerts::Active a;
  a.kind = "rules-reload-failed";
  a.subject = "rules";
  a.message = "the rule files do not load: " + server.rules_reload_error() + "; running rules loaded at " +
              IsoTime(server.rules_loaded_unix_ms()) + " (fix the file; check it with `relais config check`)";
  a.since_unix_ms = server.rules_reload_failed_unix_ms();
  return {a};
}

Result<std::unique_ptr<store::Store>> OpenStore(const rules::AppConfig& config) {
  store::Options so;
  so.path = config.store.path;
  so.max_size = config.store.max_size;
  so.compression_level = config.store.compression_level;
  so.compression_auto = config.store.compression_auto;
  so.compression_level_min = config.store.compression_level_min;
  so.compression_level_max = config.store.compression_level_max;
  so.compression_threads = config.store.compression_threads;
  const store::Retentions r = RetentionsOf(config);
  so.retention_ms = r.delivered_ms;
  so.unrouted_retention_ms = r.unrouted_ms;
  so.dead_retention_ms = r.dead_ms;
  so.dropped_retention_ms = r.dropped_ms;
  so.history_retention_ms = r.history_ms;
  return store::Store::Open(so);
}

// The audit trail ([audit] path); null when none is configured. Before the
// server and the scheduler, which record into it: it outlives them.
Result<std::unique_ptr<AuditLog>> OpenAudit(const rules::AppConfig& config) {
  if (config.audit.path.empty()) return std::unique_ptr<AuditLog>();
  AuditLog::Options audit_options;
  audit_options.rotate_size = config.audit.rotate_size;
  audit_options.syslog = config.audit.syslog;
  audit_options.ae_title = config.listener.ae_title;
  audit_options.calling_ae_title = config.delivery.calling_ae_title;
  return AuditLog::Open(config.audit.path, audit_options);
}

// The listener's settings ([listener], [rules]), with its access policy.
Result<ScpSettings> ListenerSettings(const rules::AppConfig& config) {
  ScpSettings settings;
  settings.ae_title = config.listener.ae_title;
  settings.max_pdu = config.listener.max_pdu;
  settings.max_associations = config.listener.max_associations;
  settings.artim_timeout_ms = uint64_t{config.listener.artim_timeout_s} * 1000;
  settings.idle_timeout_ms = uint64_t{config.listener.idle_timeout_s} * 1000;
  settings.accept.accept_unknown_sop_classes = config.listener.accept_unknown_sop_classes;
  settings.rules_path = config.rules_path;
  settings.rules_budget.max_regex_memory = config.rules_max_regex_memory;
  settings.rules_budget.max_compile_ms = config.rules_max_compile_s * 1000;
  Result<AccessPolicy> access = AccessPolicy::Make(config.listener);
  if (!access.ok()) return access.status();
  settings.access = std::move(*access);
  return settings;
}

// The DICOM TLS listener's context ([tls]); null when it is not enabled.
Result<std::shared_ptr<TlsContext>> ListenerTls(const rules::AppConfig& config) {
  if (!config.tls.enabled) return std::shared_ptr<TlsContext>();
  TlsSettings ts;
  ts.certificate = config.tls.certificate;
  ts.private_key = config.tls.private_key;
  ts.ca = config.tls.ca;
  ts.require_client_certificate = config.tls.require_client_certificate;
  ts.min_version = config.tls.min_version;
  Result<std::shared_ptr<TlsContext>> made = TlsContext::MakeServer(ts);
  if (!made.ok()) return Status::InvalidArgument(config.source_path + ": [tls]: " + made.status().message());
  return std::move(*made);
}

DeliverySettings DeliverySettingsOf(const rules::AppConfig& config) {
  DeliverySettings ds;
  ds.calling_ae = config.delivery.calling_ae_title;
  ds.connect_timeout_ms = uint64_t{config.delivery.connect_timeout_s} * 1000;
  ds.response_timeout_ms = uint64_t{config.delivery.response_timeout_s} * 1000;
  ds.idle_release_ms = uint64_t{config.delivery.idle_release_s} * 1000;
  ds.down_after_failures = config.delivery.down_after_failures;
  ds.max_pdu = config.listener.max_pdu;
  ds.peer_limits_path = config.store.path + "/" + kPeerLimitsFile;
  return ds;
}

// The admin API over what runs ([admin]); null when it is not enabled.
std::unique_ptr<AdminApi> MakeAdminApi(const rules::AppConfig& config, AdminApi::Sources src) {
  if (!config.admin.enabled) return nullptr;
  src.store_path = config.store.path;
  src.rules_path = config.rules_path;
  src.ae_title = config.listener.ae_title;
  src.listener = config.listener.host + ":" + std::to_string(config.listener.port);
  src.started_unix_ms = NowUnixMs();
  return std::make_unique<AdminApi>(config.admin.tokens, std::move(src));
}

void InitSignals(uv_loop_t* loop, SignalCtx* sig) {
  uv_signal_init(loop, &sig->sigint);
  uv_signal_init(loop, &sig->sigterm);
  uv_signal_init(loop, &sig->sighup);
  sig->sigint.data = sig;
  sig->sigterm.data = sig;
  sig->sighup.data = sig;
}

void StartSignals(SignalCtx* sig) {
  uv_signal_start(&sig->sigint, &OnStopSignal, SIGINT);
  uv_signal_start(&sig->sigterm, &OnStopSignal, SIGTERM);
  uv_signal_start(&sig->sighup, &OnHangup, SIGHUP);
}

// Loads the rules, then opens the DICOM listener(s) and the admin API; the
// first failure stops there.
Status StartListening(const rules::AppConfig& config, Server* server, const std::shared_ptr<TlsContext>& tls,
                      AdminServer* admin) {
  Status result = server->InitRules();
  if (result.ok()) result = server->Listen(config.listener.host, config.listener.port);
  if (result.ok() && tls) result = server->ListenTls(config.listener.host, config.tls.port, tls);
  if (result.ok() && admin) result = admin->Listen(config.admin.host, config.admin.port);
  return result;
}

// The lines an operator looks for once the router listens, and READY.
void AnnounceListening(const rules::AppConfig& config, const ScpSettings& settings, bool tls,
                       ServiceNotifier* notifier) {
  RLOG_INFO("event=listening ae=%s address=%s:%u store=%s max_pdu=%u max_associations=%u", settings.ae_title.c_str(),
            config.listener.host.c_str(), config.listener.port, config.store.path.c_str(), settings.max_pdu,
            settings.max_associations);
  if (tls) {
    RLOG_INFO("event=listening-tls ae=%s address=%s:%u client_certificates=%s min_version=%s",
              settings.ae_title.c_str(), config.listener.host.c_str(), config.tls.port,
              config.tls.require_client_certificate ? "required" : "not required", config.tls.min_version.c_str());
  }
  if (settings.access.restricts_callers() || settings.access.requires_identity()) {
    RLOG_INFO("event=access-control allow_entries=%zu users=%zu", config.listener.allow.size(),
              config.listener.users.size());
  }
  notifier->Ready("AE " + settings.ae_title + " listening on " + config.listener.host + ":" +
                  std::to_string(config.listener.port) + (tls ? " (TLS " + std::to_string(config.tls.port) + ")" : "") +
                  ", store " + config.store.path);
}

// Builds everything that runs on `loop` around the store, starts it, runs
// the loop until everything has stopped, and closes the store while the
// rest still exists. OK, or why it could not start.
Status RunRouter(uv_loop_t* loop, const rules::AppConfig& config, std::unique_ptr<store::Store>& store, AuditLog* audit,
                 const ScpSettings& settings, const std::shared_ptr<TlsContext>& tls) {
  Server server(loop, store.get(), settings);
  store->SetProgressCallback([&server] { server.Post([&server] { server.ResumePaused(); }); });
  DeliveryScheduler delivery(loop, store.get(), DeliverySettingsOf(config),
                             [&server](std::function<void()> fn) { server.Post(std::move(fn)); });
  server.SetAudit(audit);
  server.SetAuditRequired(config.audit.on_failure != "continue");
  delivery.SetAudit(audit);
  Metrics metrics;
  server.SetMetrics(&metrics);
  delivery.SetMetrics(&metrics);
  StorageWatch storage(loop, store.get(), &server, audit, config.store.path, config.store.high_water,
                       config.store.low_water);
  Alerts alerts(loop, config.alerts, config.listener.ae_title, audit, &metrics);
  storage.SetOnChange([&alerts](const StorageWatch::Usage& u) { alerts.OnStorageChange(u); });
  Scrubber scrubber(loop, store.get(), &metrics, config.store.scrub_rate);
  // The destinations' live states for `relais queue ls` (serve_state.h).
  ServeStateFile state_file(loop, config.store.path, [&delivery] { return delivery.Stats(); });
  // Queue rows, dead rows and the oldest row per destination for the API,
  // metrics and alerts: read on a thread of its own (queue_summaries.h).
  auto queue_summaries = std::make_shared<QueueSummaries>(store.get());
  AdminApi::Sources src;
  src.queue_summaries = queue_summaries;
  src.server = &server;
  src.delivery = &delivery;
  src.store = store.get();
  src.metrics = &metrics;
  src.storage = &storage;
  src.alerts = &alerts;
  src.audit = audit;
  src.post = [&server](std::function<void()> fn) { server.Post(std::move(fn)); };
  std::unique_ptr<AdminApi> admin_api = MakeAdminApi(config, std::move(src));
  std::unique_ptr<AdminServer> admin;
  if (admin_api) admin = std::make_unique<AdminServer>(loop, admin_api.get());
  store->SetQueueCallback([&delivery](const std::vector<std::string>& dests) { delivery.Wake(dests); });
  // Objects the sweep removed at the end of their retention leave with their
  // attempt logs: the audit trail keeps what went and why.
  if (audit != nullptr) {
    store->SetExpiryCallback([audit](const std::vector<store::ExpiredObject>& gone) {
      for (const store::ExpiredObject& e : gone) {
        std::string dests;
        for (const std::string& d : e.dead_destinations) dests += (dests.empty() ? "" : ",") + d;
        audit->Record("expired", {{"sop_instance_uid", e.sop_instance_uid},
                                  {"study_instance_uid", e.study_instance_uid},
                                  {"class", store::ObjectClassName(e.object_class)},
                                  {"since", IsoTime(e.since_unix_ms)},
                                  {"dead_destinations", dests}});
      }
    });
  }
  server.SetRulesListener([&delivery](std::shared_ptr<const rules::RuleSet> r) { delivery.SetRules(std::move(r)); });
  ServiceNotifier notifier(loop);
  SignalCtx sig;
  sig.notifier = &notifier;
  sig.server = &server;
  sig.delivery = &delivery;
  sig.admin = admin.get();
  sig.admin_api = admin_api.get();
  sig.store = store.get();
  sig.config = config;
  sig.alerts = &alerts;
  sig.storage = &storage;
  sig.scrubber = &scrubber;
  sig.state_file = &state_file;
  sig.drain_ms = uint64_t{config.listener.drain_timeout_s} * 1000;
  InitSignals(loop, &sig);
  Status result = StartListening(config, &server, tls, admin.get());
  if (result.ok()) {
    storage.Start();
    scrubber.Start();
    state_file.Start();
    queue_summaries->Start();
    alerts.AddCondition("scrub-damaged", [&scrubber] { return scrubber.Condition(); });
    alerts.AddCondition("rules-reload-failed", [&server] { return RulesReloadCondition(server); });
    alerts.AddCondition("config-reload-failed", [&sig] { return ConfigReloadCondition(sig); });
    alerts.Start(Alerts::Sources{&delivery, store.get(), &storage, queue_summaries});
    server.SetRulesOutcomeListener([&alerts] { alerts.Evaluate(); });
    StartSignals(&sig);
    AnnounceListening(config, settings, tls != nullptr, &notifier);
  } else {
    if (admin) admin->Shutdown();
    alerts.Shutdown();
    storage.Shutdown();
    scrubber.Shutdown();
    server.Shutdown();
    delivery.Shutdown([] {});
    CloseSignals(&sig);
    notifier.Status("failed to start: " + result.message());
  }
  uv_run(loop, UV_RUN_DEFAULT);
  store.reset();  // drains pending commits; their completions go nowhere
  return result;
}

}  // namespace

Status Serve(const rules::AppConfig& config) {
  signal(SIGPIPE, SIG_IGN);
  // DCMTK logs to stderr on its own (e.g. "skipping rest of dataset" at
  // every Pixel Data); we log what matters ourselves, one line per event.
  OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
  Result<std::unique_ptr<store::Store>> opened = OpenStore(config);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<store::Store> store = std::move(*opened);
  Result<std::unique_ptr<AuditLog>> audit = OpenAudit(config);
  if (!audit.ok()) return audit.status();
  Result<ScpSettings> settings = ListenerSettings(config);
  if (!settings.ok()) return settings.status();
  Result<std::shared_ptr<TlsContext>> tls = ListenerTls(config);
  if (!tls.ok()) return tls.status();

  uv_loop_t loop;
  uv_loop_init(&loop);
  Status result = RunRouter(&loop, config, store, audit->get(), *settings, *tls);
  int rc = uv_loop_close(&loop);
  if (rc != 0) RLOG_WARN("event=loop-close-failed reason=\"%s\"", uv_strerror(rc));
  if (result.ok()) RLOG_INFO("event=stopped");
  return result;
}

}  // namespace relais::router
