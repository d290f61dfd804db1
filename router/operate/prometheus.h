// RenderPrometheus: every figure Relais shows on GET /metrics, in the
// Prometheus text exposition format 0.0.4. The counters are record/'s
// (metrics.h); the rest is read here from the sources that own it, so that
// neither the counters nor the code that increments them include the
// scheduler, the server or the storage watch.
//
// Where each figure comes from:
// - listener (associations, objects, bytes, C-STORE latency), admin
//   requests, alerts: Metrics, fed by the code that sees the event;
// - per destination (sent, bytes, failures by class, retries, dead, state,
//   queue depth, oldest queued age, bytes/s): DeliveryScheduler::Stats()
//   and Store::SummarizeQueues();
// - store (bytes used, free, objects, commits, fsyncs, batch sizes):
//   Store::GetStats(); water marks: StorageWatch;
// - rules reloads and failures, associations open, the intake gate: Server.
//
// The families, their labels and help texts are listed in docs/metrics.md
// and checked by tests/router/record/metrics_test.cc.
//
// Thread: loop thread only (the sources are the loop's).
#ifndef RELAIS_ROUTER_OPERATE_PROMETHEUS_H_
#define RELAIS_ROUTER_OPERATE_PROMETHEUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "router/deliver/delivery.h"
#include "store/store.h"

namespace relais::router {

class AuditLog;
class Metrics;
class Server;
class StorageWatch;

// Everything RenderPrometheus reads; null members are left out. Nothing is
// owned: each pointer must stay valid during the call.
struct MetricsSources {
  const Metrics* metrics = nullptr;
  const Server* server = nullptr;  // associations open, rules reloads/failures, intake gate
  const DeliveryScheduler* delivery = nullptr;
  // When set, used instead of delivery->Stats() (a caller that already has
  // them; tests).
  const std::vector<DeliveryScheduler::DestinationStats>* destinations = nullptr;
  const store::Store* store = nullptr;
  const StorageWatch* storage = nullptr;
  const AuditLog* audit = nullptr;  // relais_audit_*: write failures, failing now
  // Per destination queue depth, dead rows and oldest row (the caller
  // caches Store::SummarizeQueues for about a second).
  const std::vector<store::Store::QueueSummary>* queues = nullptr;
  int64_t now_unix_ms = 0;
  // relais_build_info labels (main.cc has RELAIS_VERSION and
  // RELAIS_GIT_REVISION); empty renders as "unknown".
  std::string version, revision;
};

// The whole /metrics page (HELP and TYPE lines, one sample per line).
std::string RenderPrometheus(const MetricsSources& sources);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_PROMETHEUS_H_
