#include "router/operate/config_reload.h"

namespace relais::router {
namespace {

bool SameAllow(const std::vector<rules::ListenerConfig::Allow>& a, const std::vector<rules::ListenerConfig::Allow>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].calling_ae != b[i].calling_ae || a[i].from != b[i].from) return false;
  }
  return true;
}

bool SameUsers(const std::vector<rules::ListenerConfig::User>& a, const std::vector<rules::ListenerConfig::User>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].username != b[i].username || a[i].passcode_sha256 != b[i].passcode_sha256) return false;
  }
  return true;
}

bool SameTokens(const std::vector<rules::AdminToken>& a, const std::vector<rules::AdminToken>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].role != b[i].role || a[i].sha256 != b[i].sha256) return false;
  }
  return true;
}

}  // namespace

ConfigChanges DiffConfig(const rules::AppConfig& before, const rules::AppConfig& after) {
  ConfigChanges c;
  std::vector<std::string>& r = c.restart_needed;
  auto need = [&r](bool changed, const char* what) {
    if (changed) r.push_back(what);
  };
  const rules::ListenerConfig& l0 = before.listener;
  const rules::ListenerConfig& l1 = after.listener;
  need(l0.ae_title != l1.ae_title, "[listener] ae_title");
  need(l0.host != l1.host, "[listener] host");
  need(l0.port != l1.port, "[listener] port");
  need(l0.max_associations != l1.max_associations, "[listener] max_associations");
  need(l0.max_pdu != l1.max_pdu, "[listener] max_pdu");
  need(l0.artim_timeout_s != l1.artim_timeout_s, "[listener] artim_timeout_s");
  need(l0.idle_timeout_s != l1.idle_timeout_s, "[listener] idle_timeout_s");
  need(l0.drain_timeout_s != l1.drain_timeout_s, "[listener] drain_timeout_s");
  need(l0.accept_unknown_sop_classes != l1.accept_unknown_sop_classes, "[listener] accept_unknown_sop_classes");
  need(!SameAllow(l0.allow, l1.allow), "[[listener.allow]]");
  need(!SameUsers(l0.users, l1.users), "[[listener.user]]");

  const rules::StoreConfig& s0 = before.store;
  const rules::StoreConfig& s1 = after.store;
  need(s0.path != s1.path, "[store] path");
  need(s0.max_size != s1.max_size, "[store] max_size");
  need(s0.compression_level != s1.compression_level || s0.compression_auto != s1.compression_auto ||
           s0.compression_level_min != s1.compression_level_min || s0.compression_level_max != s1.compression_level_max,
       "[store] compression_level");
  need(s0.compression_threads != s1.compression_threads, "[store] compression_threads");
  need(s0.scrub_rate != s1.scrub_rate, "[store] scrub_rate");
  auto retention = [&c](uint64_t old_s, uint64_t new_s, const char* what) {
    if (old_s != new_s) {
      c.retentions.push_back(std::string(what) + " " + std::to_string(old_s) + "s -> " + std::to_string(new_s) + "s");
    }
  };
  retention(s0.history_retention_s, s1.history_retention_s, "[store] history_retention");
  c.water_marks = s0.high_water != s1.high_water || s0.low_water != s1.low_water;

  const rules::DeliveryConfig& d0 = before.delivery;
  const rules::DeliveryConfig& d1 = after.delivery;
  need(d0.calling_ae_title != d1.calling_ae_title, "[delivery] calling_ae_title");
  need(d0.connect_timeout_s != d1.connect_timeout_s, "[delivery] connect_timeout_s");
  need(d0.response_timeout_s != d1.response_timeout_s, "[delivery] response_timeout_s");
  need(d0.idle_release_s != d1.idle_release_s, "[delivery] idle_release_s");
  need(d0.down_after_failures != d1.down_after_failures, "[delivery] down_after_failures");
  // The store takes new retentions between two transactions.
  retention(d0.retention_s, d1.retention_s, "[delivery] retention");
  retention(d0.unrouted_retention_s, d1.unrouted_retention_s, "[delivery] unrouted_retention");
  retention(d0.dead_letter_retention_s, d1.dead_letter_retention_s, "[delivery] dead_letter_retention");
  retention(d0.dropped_retention_s, d1.dropped_retention_s, "[delivery] dropped_retention");

  need(before.log.level != after.log.level, "[log] level");
  need(before.rules_path != after.rules_path, "[rules] path");
  need(before.rules_max_regex_memory != after.rules_max_regex_memory, "[rules] max_regex_memory");
  need(before.rules_max_compile_s != after.rules_max_compile_s, "[rules] max_compile_time");

  need(before.audit.path != after.audit.path, "[audit] path");
  need(before.audit.rotate_size != after.audit.rotate_size, "[audit] rotate_size");
  need(before.audit.syslog != after.audit.syslog, "[audit] syslog");
  need(before.audit.on_failure != after.audit.on_failure, "[audit] on_failure");

  need(before.admin.enabled != after.admin.enabled, "[admin]");
  need(before.admin.host != after.admin.host, "[admin] host");
  need(before.admin.port != after.admin.port, "[admin] port");
  c.admin_tokens = !SameTokens(before.admin.tokens, after.admin.tokens);

  const rules::AlertsConfig& a0 = before.alerts;
  const rules::AlertsConfig& a1 = after.alerts;
  c.alerts = a0.webhook != a1.webhook || a0.command != a1.command || a0.destination_down_s != a1.destination_down_s ||
             a0.oldest_queued_s != a1.oldest_queued_s || a0.repeat_s != a1.repeat_s;

  const rules::TlsListenerConfig& t0 = before.tls;
  const rules::TlsListenerConfig& t1 = after.tls;
  need(t0.enabled != t1.enabled || t0.port != t1.port || t0.certificate != t1.certificate ||
           t0.private_key != t1.private_key || t0.ca != t1.ca ||
           t0.require_client_certificate != t1.require_client_certificate || t0.min_version != t1.min_version,
       "[tls]");
  return c;
}

}  // namespace relais::router
