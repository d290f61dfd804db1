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
  std::string ae_title;            // required; 1-16 chars, no backslash or control chars
  std::string host = "0.0.0.0";    // IPv4 or IPv6 literal
  uint16_t port = 11112;           // 1-65535
  uint32_t max_associations = 64;  // 1-10000; more get A-ASSOCIATE-RJ (transient, local limit)
  uint32_t max_pdu = 262144;       // 4096-16777216: our receive limit (PS3.8 D.1)
  uint32_t artim_timeout_s = 30;   // 1-3600: ARTIM (PS3.8 9.1.5)
  uint32_t idle_timeout_s = 300;   // 1-86400: no PDU for this long aborts the association
  // 0-3600: on SIGTERM, open associations may finish for this long before
  // they are aborted (no new ones are accepted meanwhile).
  uint32_t drain_timeout_s = 20;
  // Accept abstract syntaxes DCMTK does not know (private SOP classes) as storage.
  bool accept_unknown_sop_classes = true;
  // [[listener.allow]]: who may associate. Empty: any calling AE from
  // anywhere. Otherwise an association is accepted only when some entry
  // matches both its calling AE title and its peer address; the others get
  // A-ASSOCIATE-RJ (permanent, calling AE title not recognized).
  struct Allow {
    std::string calling_ae;  // exact AE title, or "*" for any
    std::string from;        // IP or CIDR ("10.1.2.0/24", "fd00::/8"); empty: any address
  };
  std::vector<Allow> allow;
  // [[listener.user]]: DICOM user identity negotiation (PS3.7 D.3.3.7).
  // Empty: not checked. Otherwise every association must present one of
  // these users (type 2, username and passcode; or type 1, username only,
  // for a user without passcode), else A-ASSOCIATE-RJ (permanent).
  struct User {
    std::string username;
    std::string passcode_sha256;  // SHA-256 of the passcode, 64 lowercase hex; empty: no passcode
  };
  std::vector<User> users;
};

// [store]
struct StoreConfig {
  std::string path;                 // required
  uint64_t max_size = 64ull << 30;  // bytes; also accepts "64GiB", "500MB"
  // "auto" (the default): the store's adaptive level, one zstd step faster
  // while chunks wait for the compression threads, one step stronger while
  // they keep up, within [compression_level_min, compression_level_max],
  // starting at 1. An integer: that fixed level, -7..19; 0 = no compression.
  bool compression_auto = true;
  int compression_level = 1;
  int compression_level_min = -1;  // -7..19, not above compression_level_max
  // Default 1: with the byte shuffle, zstd 3 costs about twice the CPU of 1
  // for no better ratio on 16-bit images (bench/README.md), and on a small
  // box the compressor's idle time is not idle CPU (the network thread and
  // the writer need it).
  int compression_level_max = 1;  // -7..19
  int compression_threads = 2;    // 1-64
  // Water marks of the store's usage (router/operate/storage_watch.h): used bytes
  // over capacity, capacity = min(max_size, data file size + free space on
  // its filesystem). Above high_water new C-STOREs are answered 0xA700 while
  // delivery keeps draining; below low_water intake resumes. Written as
  // "90%" or 0.9. REQUIRES 0 < low_water < high_water <= 1.
  double high_water = 0.90;
  double low_water = 0.80;
  // Background scrub (router/operate/scrubber.h): data set bytes per second
  // read back and checksummed, object after object, wrapping around, to find
  // bit rot before a re-send needs the object. "8MB/s", or an integer; 0
  // turns it off. Default: "4MiB/s" (a 1 TiB store in about three days).
  uint64_t scrub_rate = 4ull << 20;
  // How long a study's delivery history (`relais find`, /api/studies) is
  // kept after its last change, whatever the objects' retention. Default:
  // "365d".
  uint64_t history_retention_s = 365ull * 86400;
};

// [delivery]: how Relais sends to destinations (destinations themselves are
// in the rule files).
struct DeliveryConfig {
  std::string calling_ae_title;       // our AE title towards destinations; default: listener.ae_title
  uint32_t connect_timeout_s = 10;    // 1-600: name resolution + TCP connect
  uint32_t response_timeout_s = 120;  // 1-3600: no progress while sending, or no response after
  uint32_t idle_release_s = 5;        // 1-3600: an idle outgoing association is released after this
  uint32_t down_after_failures = 3;   // 1-100: consecutive link failures before C-ECHO probing
  uint64_t retention_s = 0;           // keep delivered objects this long for re-sends ("7d"); 0 = remove at once
  // How long the objects nobody will send are kept (store/FORMAT.md
  // "Lifecycle"), counted from when they got there. Every stored object has
  // an owner that ends: without these a box's store fills up with them.
  uint64_t unrouted_retention_s = 7 * 86400;      // no rule matched: time to notice and fix the rules
  uint64_t dead_letter_retention_s = 30 * 86400;  // delivery gave up: a month to requeue (alerted a day before)
  uint64_t dropped_retention_s = 0;               // a drop rule matched; 0 = not kept past its commit
};

// [tls]: DICOM TLS (router/net/tls.h, PS3.15 B.9 BCP 195 profile) for a second
// listener on `port`, with the same AE title and settings as [listener].
// Destinations use their own `tls = { ca_file, ... }` (rules/README.md).
struct TlsListenerConfig {
  bool enabled = false;                     // true when the [tls] table is present
  uint16_t port = 2762;                     // 1-65535; the DICOM TLS port (PS3.15 B.9 suggests 2762)
  std::string certificate;                  // required: PEM certificate (chain) of this box
  std::string private_key;                  // required: its PEM private key
  std::string ca;                           // PEM CA certificates; required with require_client_certificate
  bool require_client_certificate = false;  // mutual TLS
  std::string min_version = "1.2";          // "1.2" or "1.3"
};

// [admin]: the admin HTTP API and dashboard (router/operate/admin_http.h).
struct AdminToken {
  std::string name;    // who: shown in logs and the audit trail; unique
  std::string role;    // "viewer", "operator" or "admin"
  std::string sha256;  // SHA-256 of the token, 64 lowercase hex digits
};
struct AdminConfig {
  bool enabled = false;            // true when the [admin] table is present
  std::string host = "127.0.0.1";  // IPv4 or IPv6 literal; loopback by default
  uint16_t port = 8480;            // 1-65535
  std::vector<AdminToken> tokens;  // [[admin.token]]
};

// [audit]: the audit trail (router/record/audit.h).
struct AuditConfig {
  std::string path;          // empty = no audit trail
  uint64_t rotate_size = 0;  // start a new file past this many bytes ("100MiB"); 0 = never
  // Also send each record as an IHE ATNA / DICOM audit message (PS3.15 A.5)
  // over syslog (RFC 5424): "udp://HOST:PORT" (RFC 5426) or "tcp://HOST:PORT"
  // (RFC 6587 octet counting). Empty = no export.
  std::string syslog;
  // What intake does when the audit file cannot be written (disk full, file
  // unwritable): "refuse" (fail closed: a C-STORE whose "object" record
  // fails is answered 0xA700, and new C-STOREs are refused with 0xA700 while
  // the trail is failing; intake resumes by itself once a record is written
  // again) or "continue" (receive unaudited; failures are logged and counted).
  // ATNA syslog export never counts: a collector that is down only drops
  // messages (router/record/atna.h). Default: "refuse".
  std::string on_failure = "refuse";
};

// [alerts]: what a site with no one on call at night is told
// (router/operate/alerts.h). Alerts are off when neither webhook nor command is set.
struct AlertsConfig {
  std::string webhook;                // "http://HOST[:PORT]/PATH": a JSON POST per alert
  std::string command;                // absolute path of a program run with the alert's JSON on stdin
  uint64_t destination_down_s = 900;  // a destination down this long raises an alert ("15m")
  uint64_t oldest_queued_s = 7200;    // an object queued this long raises an alert ("2h")
  uint64_t repeat_s = 3600;           // re-sent while still raised, this often; 0 = once
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
  // [rules] max_regex_memory ("128MiB") and max_compile_time ("10s"): the
  // budget of loading the rule files (rules/routing.h CompileBudget, same
  // defaults). Loads past it fail and a reload keeps the old rules.
  uint64_t rules_max_regex_memory = uint64_t{128} << 20;  // bytes, at least 1 MiB
  uint64_t rules_max_compile_s = 10;                      // 1-3600 seconds
  // [audit]: the audit trail. audit.path is optional (empty = no audit
  // trail); a relative path is resolved against the config file's directory
  // like store.path.
  AuditConfig audit;
  AdminConfig admin;
  AlertsConfig alerts;
  TlsListenerConfig tls;
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
