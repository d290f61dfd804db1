// RenderPrometheus (router/operate/prometheus.h): the /metrics page.
#include "router/operate/prometheus.h"

#include <charconv>
#include <cmath>
#include <utility>

#include "base/hex.h"
#include "router/deliver/retry_policy.h"
#include "router/operate/storage_watch.h"
#include "router/receive/server.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

namespace relais::router {
namespace {

// Prometheus text format 0.0.4: a sample value is a Go float ("+Inf",
// "NaN", or a decimal). Integers are written without a fraction; other
// values in the shortest form that reads back exactly.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

std::string FormatValue(uint64_t v) { return std::to_string(v); }

// Label values may hold any UTF-8; the exposition format escapes
// backslash, double quote and line feed (and nothing else).
std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

using Labels = std::vector<std::pair<std::string, std::string>>;

// Writes families one after the other: a family's HELP and TYPE lines,
// then all its samples (the format requires a family's samples to be
// contiguous).
class Page {
 public:
  void Family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    for (const char* p = help; *p != '\0'; ++p) {  // HELP escapes backslash and line feed only
      if (*p == '\\') {
        out_ += "\\\\";
      } else if (*p == '\n') {
        out_ += "\\n";
      } else {
        out_ += *p;
      }
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void Sample(std::string_view name, const Labels& labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i != 0) out_ += ',';
        out_ += labels[i].first;
        out_ += "=\"";
        out_ += EscapeLabelValue(labels[i].second);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void Sample(std::string_view name, const Labels& labels, uint64_t v) { Sample(name, labels, FormatValue(v)); }
  void Sample(std::string_view name, const Labels& labels, double v) { Sample(name, labels, FormatValue(v)); }
  // One whole family with a single sample.
  void One(const char* name, const char* type, const char* help, uint64_t v, const Labels& labels = {}) {
    Family(name, type, help);
    Sample(name, labels, v);
  }
  void One(const char* name, const char* type, const char* help, double v, const Labels& labels = {}) {
    Family(name, type, help);
    Sample(name, labels, v);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

const Labels kListener = {{"listener", "default"}};

void RenderListener(const Metrics& m, const Server* server, Page* p) {
  if (server != nullptr) {
    p->One("relais_associations_open", "gauge", "Incoming associations currently established.",
           static_cast<uint64_t>(server->established_count()), kListener);
  }
  p->One("relais_associations_accepted_total", "counter", "Incoming associations accepted.", m.associations_accepted(),
         kListener);
  p->Family("relais_associations_rejected_total", "counter",
            "Incoming associations rejected (A-ASSOCIATE-RJ), by reason.");
  for (const auto& [reason, n] : m.associations_rejected()) {
    p->Sample("relais_associations_rejected_total", {{"listener", "default"}, {"reason", reason}}, n);
  }
  p->Family("relais_connections_evicted_total", "counter",
            "Connections that had not associated, closed to make room for a new one, by reason.");
  for (const char* reason : {"connection-cap", "peer-cap"}) {
    auto it = m.connections_evicted().find(reason);
    p->Sample("relais_connections_evicted_total", {{"listener", "default"}, {"reason", reason}},
              it == m.connections_evicted().end() ? 0 : it->second);
  }
  p->One("relais_objects_received_total", "counter", "C-STORE objects stored durably and acknowledged with Success.",
         m.objects_received(), kListener);
  p->One("relais_received_bytes_total", "counter", "Data set bytes of the objects stored and acknowledged.",
         m.bytes_received(), kListener);
  p->One("relais_objects_duplicate_total", "counter",
         "Objects acknowledged with Success that were identical to the stored object with their SOP Instance UID "
         "(not stored or queued again).",
         m.objects_duplicate(), kListener);
  p->One("relais_routes_suppressed_total", "counter",
         "Routes of received objects not queued because the destination's resend policy found them already "
         "delivered.",
         m.routes_suppressed(), kListener);
  p->One("relais_cstore_outstanding_max", "gauge",
         "The most C-STOREs outstanding at once (received, not yet answered) on one association since start; above "
         "1 only when a sender uses an asynchronous operations window.",
         uint64_t{m.max_outstanding()}, kListener);
  p->Family("relais_objects_refused_total", "counter",
            "C-STOREs answered with a failure status, by status (e.g. 0xA700 while intake is closed).");
  for (const auto& [status, n] : m.objects_refused()) {
    p->Sample("relais_objects_refused_total", {{"listener", "default"}, {"status", Hex4(status)}}, n);
  }
  p->Family("relais_cstore_latency_seconds", "histogram",
            "Seconds from the arrival of a C-STORE command to the durable commit of its object (the Success "
            "acknowledgement).");
  const std::vector<uint64_t>& b = m.latency_buckets();
  for (size_t i = 0; i < b.size(); ++i) {
    std::string le = i < std::size(Metrics::kLatencyBuckets) ? FormatValue(Metrics::kLatencyBuckets[i]) : "+Inf";
    p->Sample("relais_cstore_latency_seconds_bucket", {{"listener", "default"}, {"le", le}}, b[i]);
  }
  p->Sample("relais_cstore_latency_seconds_sum", kListener, m.latency_sum());
  p->Sample("relais_cstore_latency_seconds_count", kListener, b.empty() ? uint64_t{0} : b.back());
}

void RenderDestinations(const std::vector<DeliveryScheduler::DestinationStats>& stats, Page* p) {
  static const char* const kStates[] = {"idle", "sending", "backing-off", "down", "paused", "misconfigured"};
  static const char* const kConcurrencyReasons[] = {"start",           "throughput-rising",
                                                    "throughput-flat", "round-trips-grew",
                                                    "peer-refused",    "peer-out-of-resources",
                                                    "probing",         "capped",
                                                    "holding",         "fixed"};
  auto each = [&](const char* name, const char* type, const char* help, auto value) {
    p->Family(name, type, help);
    for (const auto& st : stats) p->Sample(name, {{"destination", st.name}}, value(st));
  };
  using S = DeliveryScheduler::DestinationStats;
  each("relais_destination_objects_sent_total", "counter", "Objects delivered (Success or Warning) since start.",
       [](const S& s) { return s.sent; });
  each("relais_destination_sent_bytes_total", "counter", "Data set bytes of the objects delivered since start.",
       [](const S& s) { return s.bytes_sent; });
  each("relais_destination_sent_bytes_per_second", "gauge",
       "Delivery throughput: data set bytes delivered over the last minute, divided by 60.",
       [](const S& s) { return s.sent_bytes_per_s; });
  p->Family("relais_destination_failures_total", "counter",
            "Failed delivery attempts since start, by class: link, transient-status, refused, unsupported, "
            "unreadable, limit (docs/metrics.md).");
  for (const auto& st : stats) {
    for (FailureClass cls : kFailureClasses) {
      const char* c = FailureClassName(cls);
      auto it = st.failures_by_class.find(c);
      uint64_t n = it == st.failures_by_class.end() ? 0 : it->second;
      p->Sample("relais_destination_failures_total", {{"destination", st.name}, {"class", c}}, n);
    }
  }
  each("relais_destination_retries_total", "counter", "Queue rows rescheduled for another attempt after a failure.",
       [](const S& s) { return s.retries; });
  each("relais_destination_dead_lettered_total", "counter", "Queue rows moved to the dead-letter list since start.",
       [](const S& s) { return s.dead; });
  p->Family(
      "relais_destination_state", "gauge",
      "1 for the destination's current state (idle, sending, backing-off, down, paused, misconfigured), 0 for the "
      "others.");
  for (const auto& st : stats) {
    for (const char* state : kStates) {
      p->Sample("relais_destination_state", {{"destination", st.name}, {"state", state}},
                uint64_t{st.state == state ? 1u : 0u});
    }
  }
  each("relais_destination_associations", "gauge", "Outgoing associations open (or opening).",
       [](const S& s) { return static_cast<uint64_t>(s.associations); });
  each("relais_destination_concurrency_target", "gauge",
       "Outgoing associations the destination aims at: found by adaptive concurrency, or max_associations when "
       "concurrency = \"fixed\" (docs/metrics.md).",
       [](const S& s) { return static_cast<uint64_t>(s.concurrency_target); });
  each("relais_destination_bandwidth_limit_bytes_per_second", "gauge",
       "The bandwidth cap in force (bandwidth_limit or the bandwidth window of the local time), bytes/s; 0: "
       "unlimited.",
       [](const S& s) { return s.bandwidth_limit_bps; });
  p->Family("relais_destination_concurrency_reason", "gauge",
            "1 for why the concurrency target is what it is (start, throughput-rising, throughput-flat, "
            "round-trips-grew, peer-refused, peer-out-of-resources, probing, capped, holding, fixed), 0 for the "
            "others.");
  for (const auto& st : stats) {
    for (const char* reason : kConcurrencyReasons) {
      p->Sample("relais_destination_concurrency_reason", {{"destination", st.name}, {"reason", reason}},
                uint64_t{st.concurrency_reason == reason ? 1u : 0u});
    }
  }
  each("relais_destination_concurrency_ceiling", "gauge",
       "The most associations the peer accepted before refusing one (0: it never refused).",
       [](const S& s) { return static_cast<uint64_t>(s.concurrency_ceiling); });
  each("relais_destination_in_flight", "gauge", "Objects being sent or waiting for their queue update.",
       [](const S& s) { return static_cast<uint64_t>(s.in_flight); });
  each("relais_destination_consecutive_failures", "gauge", "Link failures since the destination last answered.",
       [](const S& s) { return static_cast<uint64_t>(s.consecutive_failures); });
}

void RenderQueues(const std::vector<store::Store::QueueSummary>& queues, int64_t now, Page* p) {
  p->Family("relais_destination_queue_rows", "gauge", "Live queue rows (objects waiting to be delivered).");
  for (const auto& q : queues) p->Sample("relais_destination_queue_rows", {{"destination", q.destination}}, q.rows);
  p->Family("relais_destination_dead_letters", "gauge", "Rows in the destination's dead-letter list.");
  for (const auto& q : queues) {
    p->Sample("relais_destination_dead_letters", {{"destination", q.destination}}, q.dead_rows);
  }
  p->Family("relais_destination_oldest_queued_age_seconds", "gauge",
            "Seconds since the oldest live queue row's object was received; 0 when the queue is empty.");
  for (const auto& q : queues) {
    double age = q.oldest_received_unix_ms == 0 || now <= q.oldest_received_unix_ms
                     ? 0.0
                     : static_cast<double>(now - q.oldest_received_unix_ms) / 1000.0;
    p->Sample("relais_destination_oldest_queued_age_seconds", {{"destination", q.destination}}, age);
  }
}

void RenderStore(const store::Store::Stats& s, const StorageWatch* watch, const Server* server, Page* p) {
  p->One("relais_store_used_bytes", "gauge", "Bytes of LMDB pages holding data (falls as delivered objects go).",
         s.used_bytes);
  uint64_t capacity = s.map_size;
  if (watch != nullptr && watch->usage().capacity_bytes != 0) capacity = watch->usage().capacity_bytes;
  p->One("relais_store_capacity_bytes", "gauge",
         "Bytes the store can grow to: min(max_size, data.mdb size + filesystem space available).", capacity);
  p->One("relais_store_free_bytes", "gauge", "Capacity minus used bytes.",
         capacity > s.used_bytes ? capacity - s.used_bytes : uint64_t{0});
  p->One("relais_store_file_bytes", "gauge", "Size of data.mdb on disk.", s.file_bytes);
  p->One("relais_store_map_size_bytes", "gauge", "The store's maximum size ([store] max_size).", s.map_size);
  p->One("relais_store_objects", "gauge", "Objects in the store.", s.objects);
  p->One("relais_store_raw_bytes", "gauge", "Data set bytes of the stored objects, as received.", s.raw_bytes);
  p->One("relais_store_stored_bytes", "gauge", "Bytes of the stored objects' chunks after compression.",
         s.stored_bytes);
  p->One("relais_store_compression_level", "gauge",
         "zstd level of the latest chunk compressed (the adaptive level with compression_level = \"auto\"); "
         "0 = off.",
         static_cast<double>(s.compression_level));
  // Per lifecycle class (store/FORMAT.md "Lifecycle"), from counts the store
  // keeps in its meta table: no scan per scrape. All five always present.
  struct PerClass {
    const char* name;
    const char* type;
    const char* help;
    const uint64_t* values;
  } const per_class[] = {
      {"relais_store_class_objects", "gauge", "Stored objects per lifecycle class.", s.class_objects},
      {"relais_store_class_stored_bytes", "gauge", "Stored (compressed) bytes per lifecycle class.",
       s.class_stored_bytes},
      {"relais_store_expired_objects_total", "counter",
       "Objects removed because their class's retention ran out (dropped objects not kept count at their commit).",
       s.expired},
  };
  for (const PerClass& f : per_class) {
    p->Family(f.name, f.type, f.help);
    for (size_t c = 1; c < store::kObjectClassCount; ++c) {
      p->Sample(f.name, {{"class", store::ObjectClassName(static_cast<store::ObjectClass>(c))}}, f.values[c]);
    }
  }
  p->One("relais_store_queue_rows", "gauge", "Live queue rows, all destinations.", s.queue_rows);
  p->One("relais_store_dead_rows", "gauge", "Dead-letter rows, all destinations.", s.dead_rows);
  p->One("relais_store_commits_total", "counter", "LMDB write transactions committed since start.", s.commits);
  p->One("relais_store_fsyncs_total", "counter", "fsync calls of the store since start (2 per commit).", s.fsyncs);
  p->Family("relais_store_commit_batch_operations", "histogram",
            "Operations per group commit (objects and queue updates sharing one fsync).");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < std::size(s.batch_count); ++i) {
    cumulative += s.batch_count[i];
    std::string le = i < std::size(store::Store::Stats::kBatchBuckets)
                         ? std::to_string(store::Store::Stats::kBatchBuckets[i])
                         : "+Inf";
    p->Sample("relais_store_commit_batch_operations_bucket", {{"le", le}}, cumulative);
  }
  p->Sample("relais_store_commit_batch_operations_sum", {}, s.batch_ops);
  p->Sample("relais_store_commit_batch_operations_count", {}, cumulative);
  if (watch != nullptr) {
    const StorageWatch::Usage& u = watch->usage();
    p->One("relais_store_filesystem_available_bytes", "gauge",
           "Bytes available to Relais on the store's filesystem (statvfs f_bavail * f_frsize).", u.fs_available_bytes);
    p->One("relais_store_filesystem_size_bytes", "gauge", "Size of the store's filesystem.", u.fs_total_bytes);
    p->One("relais_store_used_ratio", "gauge", "used / capacity, as the water marks see it (last sample).", u.fraction);
    p->One("relais_store_high_water_ratio", "gauge", "[store] high_water: intake closes at this used ratio.",
           watch->high_water());
    p->One("relais_store_low_water_ratio", "gauge", "[store] low_water: intake opens again below this used ratio.",
           watch->low_water());
    p->One("relais_store_intake_closings_total", "counter", "Times intake closed on the high-water mark.", u.closings);
  }
  if (server != nullptr || watch != nullptr) {
    bool closed = server != nullptr ? !server->intake_closed().empty() : watch->usage().intake_closed;
    p->One("relais_store_intake_closed", "gauge",
           "1 while new C-STOREs are refused with 0xA700 (store above its high-water mark), else 0.",
           uint64_t{closed ? 1u : 0u});
  }
}

}  // namespace

std::string RenderPrometheus(const MetricsSources& src) {
  Page p;
  p.One("relais_up", "gauge", "1 while Relais serves.", uint64_t{1});
  p.Family("relais_build_info", "gauge", "Always 1; the labels say which build runs.");
  p.Sample("relais_build_info",
           {{"version", src.version.empty() ? "unknown" : src.version},
            {"revision", src.revision.empty() ? "unknown" : src.revision}},
           uint64_t{1});
  if (src.metrics != nullptr) RenderListener(*src.metrics, src.server, &p);
  if (src.server != nullptr) {
    p.One("relais_rules_reloads_total", "counter", "Successful loads of the rule files (the first load included).",
          src.server->rule_reloads());
    p.One("relais_rules_reload_failures_total", "counter",
          "Rule reloads that failed validation (the previous rules kept running).", src.server->rule_reload_failures());
  }
  if (src.destinations != nullptr) {
    RenderDestinations(*src.destinations, &p);
  } else if (src.delivery != nullptr) {
    RenderDestinations(src.delivery->Stats(), &p);
  }
  if (src.queues != nullptr) RenderQueues(*src.queues, src.now_unix_ms, &p);
  if (src.store != nullptr) RenderStore(src.store->GetStats(), src.storage, src.server, &p);
  if (src.metrics != nullptr) {
    p.Family("relais_admin_requests_total", "counter", "Admin API requests, by outcome.");
    for (const auto& [outcome, n] : src.metrics->admin_requests()) {
      p.Sample("relais_admin_requests_total", {{"outcome", outcome}}, n);
    }
    const Metrics& m = *src.metrics;
    p.One("relais_store_scrub_objects_total", "counter",
          "Objects read back and checked by the background scrub since start.", m.scrub_objects());
    p.One("relais_store_scrub_bytes_total", "counter",
          "Data set bytes read back and checksummed by the background scrub since start.", m.scrub_bytes());
    p.One("relais_store_scrub_damaged_total", "counter",
          "Damaged objects found by the background scrub since start (once per pass each).", m.scrub_damaged());
    p.One("relais_store_scrub_passes_total", "counter",
          "Passes of the background scrub over the whole store since start.", m.scrub_passes());
    p.One("relais_store_scrub_damaged_objects", "gauge",
          "Damaged objects the scrub knows of now (this pass and the last); 0 when clean.", m.scrub_damaged_now());
    p.Family("relais_alerts_total", "counter", "Alerts, by kind and result (sent or failed).");
    for (const auto& [key, n] : src.metrics->alerts()) {
      size_t nl = key.rfind('\n');
      std::string kind = key.substr(0, nl);
      bool ok = nl != std::string::npos && key.substr(nl + 1) == "1";
      p.Sample("relais_alerts_total", {{"kind", kind}, {"result", ok ? "sent" : "failed"}}, n);
    }
  }
  if (src.audit != nullptr) {
    p.One("relais_audit_records_total", "counter", "Audit records written since start.", src.audit->records_written());
    p.One("relais_audit_write_failures_total", "counter",
          "Audit records that could not be written since start (disk full, file unwritable).",
          src.audit->write_failures());
    p.One("relais_audit_failing", "gauge",
          "1 while the audit trail cannot be written (with [audit] on_failure = \"refuse\" intake refuses), else 0.",
          uint64_t{src.audit->failing() ? 1u : 0u});
  }
  return p.Take();
}

}  // namespace relais::router
