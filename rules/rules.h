// Relais configuration: the appliance TOML file (listener, store, logging)
// and, later, the rule and destination files. This library is the only one
// that includes toml++.
//
// Errors: every problem found is reported, one per line, as
// "FILE:LINE:COLUMN: message" (the position of the offending key or value,
// or of the table where a required key is missing).
#ifndef RELAIS_RULES_RULES_H_
#define RELAIS_RULES_RULES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace relais::rules {

// [listener]
struct ListenerConfig {
  std::string ae_title;               // required; 1-16 chars, no backslash or control chars
  std::string host = "0.0.0.0";       // IPv4 or IPv6 literal
  uint16_t port = 11112;              // 1-65535
  uint32_t max_associations = 64;     // 1-10000; more get A-ASSOCIATE-RJ (transient, local limit)
  uint32_t max_pdu = 262144;          // 4096-16777216: our receive limit (PS3.8 D.1)
  uint32_t artim_timeout_s = 30;      // 1-3600: ARTIM (PS3.8 9.1.5)
  uint32_t idle_timeout_s = 300;      // 1-86400: no PDU for this long aborts the association
  // Accept abstract syntaxes DCMTK does not know (private SOP classes) as storage.
  bool accept_unknown_sop_classes = true;
};

// [store]
struct StoreConfig {
  std::string path;                       // required
  uint64_t max_size = 64ull << 30;        // bytes; also accepts "64GiB", "500MB"
  int compression_level = 1;              // -7..19; 0 = no compression
  int compression_threads = 2;            // 1-64
};

// [delivery]: how Relais sends to destinations (destinations themselves are
// in the rule files).
struct DeliveryConfig {
  std::string calling_ae_title;      // our AE title towards destinations; default: listener.ae_title
  uint32_t connect_timeout_s = 10;   // 1-600: name resolution + TCP connect
  uint32_t response_timeout_s = 120; // 1-3600: no progress while sending, or no response after
  uint32_t idle_release_s = 5;       // 1-3600: an idle outgoing association is released after this
  uint32_t down_after_failures = 3;  // 1-100: consecutive link failures before C-ECHO probing
  uint64_t retention_s = 0;          // keep delivered objects this long for re-sends ("7d"); 0 = remove at once
};

// [log]
struct LogConfig {
  std::string level = "info";  // debug, info, warn, error
};

struct AppConfig {
  std::string source_path;  // the file it was read from
  ListenerConfig listener;
  StoreConfig store;
  DeliveryConfig delivery;
  LogConfig log;
  // [rules] path: the rule file(s) to load. Optional; a relative path is
  // resolved against the config file's directory like store.path.
  std::string rules_path;
  // [audit] path: the audit trail file (JSON lines, hash-chained; see
  // router/audit.h). Optional: empty = no audit trail. A relative path is
  // resolved against the config file's directory like store.path.
  std::string audit_path;
};

// Reads and validates the appliance configuration. On failure the Status is
// InvalidArgument and its message holds every error, one per line, each
// "FILE:LINE:COLUMN: message". Unknown keys are errors (a typo must not be
// silently ignored). A relative store path is relative to the config file.
Result<AppConfig> LoadAppConfig(const std::string& path);

// Same, from text already in memory; `source_name` is used in messages.
Result<AppConfig> ParseAppConfig(const std::string& text, const std::string& source_name);

}  // namespace relais::rules

#endif  // RELAIS_RULES_RULES_H_
