// relais::router::Serve: wiring of config, store, loop, listener and signals.
#include <signal.h>
#include <uv.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include <chrono>
#include <memory>

#include "base/log.h"
#include "router/admin_api.h"
#include "router/admin_http.h"
#include "router/alerts.h"
#include "router/audit.h"
#include "router/delivery.h"
#include "router/metrics.h"
#include "router/storage_watch.h"
#include "router/router.h"
#include "router/server.h"
#include "store/store.h"

namespace relais::router {
namespace {

struct SignalCtx {
  Server* server;
  DeliveryScheduler* delivery;
  AdminServer* admin = nullptr;
  Alerts* alerts = nullptr;
  StorageWatch* storage = nullptr;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  uv_signal_t sighup;
  bool stopping = false;
};

void CloseSignals(SignalCtx* ctx) {
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx->sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx->sigterm), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx->sighup), nullptr);
}

void OnHangup(uv_signal_t* h, int) noexcept {
  auto* ctx = static_cast<SignalCtx*>(h->data);
  if (!ctx->stopping) (void)ctx->server->ReloadRules("SIGHUP");
}

void OnStopSignal(uv_signal_t* h, int signum) noexcept {
  auto* ctx = static_cast<SignalCtx*>(h->data);
  if (ctx->stopping) return;
  ctx->stopping = true;
  RLOG_INFO("event=stopping signal=%s: no new associations; open ones are aborted, nothing unacknowledged is kept",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
  // The admin API first (nothing new asked of the rest), then what watches,
  // then the listener and delivery.
  if (ctx->admin != nullptr) ctx->admin->Shutdown();
  if (ctx->alerts != nullptr) ctx->alerts->Shutdown();
  if (ctx->storage != nullptr) ctx->storage->Shutdown();
  ctx->server->Shutdown();
  ctx->delivery->Shutdown([] {});
  CloseSignals(ctx);
}

}  // namespace

Status Serve(const rules::AppConfig& config) {
  signal(SIGPIPE, SIG_IGN);
  // DCMTK logs to stderr on its own (e.g. "skipping rest of dataset" at
  // every Pixel Data); we log what matters ourselves, one line per event.
  OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
  store::Options so;
  so.path = config.store.path;
  so.max_size = config.store.max_size;
  so.compression_level = config.store.compression_level;
  so.compression_threads = config.store.compression_threads;
  so.retention_ms = static_cast<int64_t>(config.delivery.retention_s) * 1000;
  Result<std::unique_ptr<store::Store>> opened = store::Store::Open(so);
  if (!opened.ok()) {
    return opened.status();
  }
  std::unique_ptr<store::Store> store = std::move(*opened);
  // Before the server and the scheduler, which record into it: it outlives them.
  std::unique_ptr<AuditLog> audit;
  if (!config.audit.path.empty()) {
    Result<std::unique_ptr<AuditLog>> a = AuditLog::Open(config.audit.path);
    if (!a.ok()) return a.status();
    audit = std::move(*a);
  }

  ScpSettings settings;
  settings.ae_title = config.listener.ae_title;
  settings.max_pdu = config.listener.max_pdu;
  settings.max_associations = config.listener.max_associations;
  settings.artim_timeout_ms = uint64_t{config.listener.artim_timeout_s} * 1000;
  settings.idle_timeout_ms = uint64_t{config.listener.idle_timeout_s} * 1000;
  settings.accept.accept_unknown_sop_classes = config.listener.accept_unknown_sop_classes;
  settings.rules_path = config.rules_path;

  uv_loop_t loop;
  uv_loop_init(&loop);
  Status result;
  {
    Server server(&loop, store.get(), settings);
    store->SetProgressCallback([&server] { server.Post([&server] { server.ResumePaused(); }); });
    DeliverySettings ds;
    ds.calling_ae = config.delivery.calling_ae_title;
    ds.connect_timeout_ms = uint64_t{config.delivery.connect_timeout_s} * 1000;
    ds.response_timeout_ms = uint64_t{config.delivery.response_timeout_s} * 1000;
    ds.idle_release_ms = uint64_t{config.delivery.idle_release_s} * 1000;
    ds.down_after_failures = config.delivery.down_after_failures;
    ds.max_pdu = config.listener.max_pdu;
    DeliveryScheduler delivery(&loop, store.get(), ds, [&server](std::function<void()> fn) { server.Post(std::move(fn)); });
    server.SetAudit(audit.get());
    delivery.SetAudit(audit.get());
    Metrics metrics;
    server.SetMetrics(&metrics);
    delivery.SetMetrics(&metrics);
    StorageWatch storage(&loop, store.get(), &server, audit.get(), config.store.path, config.store.high_water,
                         config.store.low_water);
    Alerts alerts(&loop, config.alerts, config.listener.ae_title, audit.get(), &metrics);
    storage.SetOnChange([&alerts](const StorageWatch::Usage& u) { alerts.OnStorageChange(u); });
    std::unique_ptr<AdminApi> admin_api;
    std::unique_ptr<AdminServer> admin;
    if (config.admin.enabled) {
      AdminApi::Sources src;
      src.server = &server;
      src.delivery = &delivery;
      src.store = store.get();
      src.metrics = &metrics;
      src.storage = &storage;
      src.alerts = &alerts;
      src.audit = audit.get();
      src.post = [&server](std::function<void()> fn) { server.Post(std::move(fn)); };
      src.store_path = config.store.path;
      src.rules_path = config.rules_path;
      src.ae_title = config.listener.ae_title;
      src.listener = config.listener.host + ":" + std::to_string(config.listener.port);
      src.started_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
      admin_api = std::make_unique<AdminApi>(config.admin.tokens, std::move(src));
      admin = std::make_unique<AdminServer>(&loop, admin_api.get());
    }
    store->SetQueueCallback([&delivery](const std::vector<std::string>& dests) { delivery.Wake(dests); });
    server.SetRulesListener([&delivery](std::shared_ptr<const rules::RuleSet> r) { delivery.SetRules(std::move(r)); });
    SignalCtx sig{&server, &delivery, admin.get(), &alerts, &storage, {}, {}, {}};
    uv_signal_init(&loop, &sig.sigint);
    uv_signal_init(&loop, &sig.sigterm);
    uv_signal_init(&loop, &sig.sighup);
    sig.sigint.data = &sig;
    sig.sigterm.data = &sig;
    sig.sighup.data = &sig;
    result = server.InitRules();
    if (result.ok()) result = server.Listen(config.listener.host, config.listener.port);
    if (result.ok() && admin) result = admin->Listen(config.admin.host, config.admin.port);
    if (result.ok()) {
      storage.Start();
      alerts.Start(Alerts::Sources{&delivery, store.get(), &storage});
      uv_signal_start(&sig.sigint, &OnStopSignal, SIGINT);
      uv_signal_start(&sig.sigterm, &OnStopSignal, SIGTERM);
      uv_signal_start(&sig.sighup, &OnHangup, SIGHUP);
      RLOG_INFO("event=listening ae=%s address=%s:%u store=%s max_pdu=%u max_associations=%u",
                settings.ae_title.c_str(), config.listener.host.c_str(), config.listener.port,
                config.store.path.c_str(), settings.max_pdu, settings.max_associations);
    } else {
      if (admin) admin->Shutdown();
      alerts.Shutdown();
      storage.Shutdown();
      server.Shutdown();
      delivery.Shutdown([] {});
      CloseSignals(&sig);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    store.reset();  // drains pending commits; their completions go nowhere
  }
  int rc = uv_loop_close(&loop);
  if (rc != 0) RLOG_WARN("event=loop-close-failed reason=\"%s\"", uv_strerror(rc));
  if (result.ok()) RLOG_INFO("event=stopped");
  return result;
}

}  // namespace relais::router
