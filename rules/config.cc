// The appliance configuration loader (rules/rules.h). Only rules/ includes
// toml++ (helpers shared with the rule files: toml_util.h). Debian's toml++ 3.3 is a compiled library
// built with exceptions, so toml::parse_error is caught here and turned into
// a "FILE:LINE:COLUMN: message" line; nothing throws out of this file.
//
// Validation walks the parsed document once and collects every problem; the
// messages are sorted by position so the admin reads them in file order.

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <tuple>

#include <toml++/toml.h>

#include "base/cidr.h"
#include "rules/rules.h"
#include "rules/toml_util.h"

namespace relais::rules {
namespace {

using internal::AeTitleProblem;
using internal::Errors;
using internal::IsIpLiteral;
using internal::ResolvePath;
using internal::Suggest;
using internal::TableReader;
using internal::TypeName;

// Configuration files are small; refusing big inputs up front bounds the
// parser's time and memory whatever is handed to it.
constexpr size_t kMaxConfigBytes = 1 << 20;

constexpr uint64_t kMinStoreSize = 1 << 20;  // 1 MiB

bool IsSha256Hex(const std::string& h) {
  return h.size() == 64 &&
         std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Calls fn(reader, table) for each table of the array of tables `key` of `r`
// ([[listener.allow]] ...), reporting anything else; each entry's unknown
// keys are reported too.
template <typename Fn>
void ForEachTable(TableReader* r, std::string_view key, const char* shown, Fn fn) {
  const toml::node* n = r->Take(key);
  if (n == nullptr) return;
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    r->TypeError(key, *n, (std::string("an array of tables (") + shown + ")").c_str());
    return;
  }
  for (const toml::node& item : *arr) {
    const toml::table* tt = item.as_table();
    if (tt == nullptr) {
      r->errors()->Add(item.source(), r->Full(key) + " entries must be tables (" + shown + ")");
      continue;
    }
    TableReader tr(*tt, r->Full(key), r->errors());
    fn(tr, *tt);
    tr.RejectUnknownKeys();
  }
}

void ReadListener(const toml::table& t, Errors* errors, ListenerConfig* out) {
  TableReader r(t, "listener", errors);
  r.ReadString("ae_title", &out->ae_title, /*required=*/true);
  if (const toml::node* n = r.Node("ae_title"); n != nullptr && n->is_string()) {
    if (auto why = AeTitleProblem(out->ae_title)) {
      errors->Add(n->source(), "listener.ae_title " + *why + " (PS3.5 AE)");
    }
  }
  r.ReadString("host", &out->host);
  if (const toml::node* n = r.Node("host"); n != nullptr && n->is_string() && !IsIpLiteral(out->host)) {
    errors->Add(n->source(),
                "listener.host must be an IPv4 or IPv6 literal (e.g. \"0.0.0.0\" or \"::\"), got '" + out->host + "'");
  }
  r.ReadInt("port", 1, 65535, &out->port);
  r.ReadInt("max_associations", 1, 10000, &out->max_associations);
  r.ReadInt("max_pdu", 4096, 16777216, &out->max_pdu);
  r.ReadInt("artim_timeout_s", 1, 3600, &out->artim_timeout_s);
  r.ReadInt("idle_timeout_s", 1, 86400, &out->idle_timeout_s);
  r.ReadInt("drain_timeout_s", 0, 3600, &out->drain_timeout_s);
  r.ReadBool("accept_unknown_sop_classes", &out->accept_unknown_sop_classes);
  ForEachTable(&r, "allow", "[[listener.allow]]", [&](TableReader& tr, const toml::table& tt) {
    ListenerConfig::Allow a;
    tr.ReadString("calling_ae", &a.calling_ae, /*required=*/true);
    if (const toml::node* n = tr.Node("calling_ae"); n != nullptr && n->is_string() && a.calling_ae != "*") {
      if (auto why = AeTitleProblem(a.calling_ae))
        errors->Add(n->source(), "listener.allow.calling_ae " + *why + " (or \"*\" for any)");
    }
    tr.ReadString("from", &a.from);
    if (const toml::node* n = tr.Node("from");
        n != nullptr && n->is_string() && !a.from.empty() && !Cidr::Parse(a.from)) {
      errors->Add(n->source(),
                  "listener.allow.from must be an IP address or a CIDR block such as \"10.1.2.0/24\" "
                  "(no host bits set after the prefix), got '" +
                      a.from + "'");
    }
    (void)tt;
    out->allow.push_back(std::move(a));
  });
  ForEachTable(&r, "user", "[[listener.user]]", [&](TableReader& tr, const toml::table&) {
    ListenerConfig::User u;
    tr.ReadString("username", &u.username, /*required=*/true);
    if (const toml::node* n = tr.Node("username"); n != nullptr && n->is_string()) {
      if (u.username.empty() || u.username.size() > 65535)
        errors->Add(n->source(), "listener.user.username must not be empty");
      for (const ListenerConfig::User& other : out->users) {
        if (other.username == u.username)
          errors->Add(n->source(), "listener.user '" + u.username + "' is listed twice");
      }
    }
    tr.ReadString("passcode_sha256", &u.passcode_sha256);
    if (const toml::node* n = tr.Node("passcode_sha256");
        n != nullptr && n->is_string() && !IsSha256Hex(u.passcode_sha256)) {
      errors->Add(n->source(),
                  "listener.user.passcode_sha256 must be the passcode's SHA-256 as 64 lowercase hex digits "
                  "(e.g. printf %s PASSCODE | sha256sum)");
    }
    out->users.push_back(std::move(u));
  });
  r.RejectUnknownKeys();
}

std::string Percent(double f) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g%%", f * 100);
  return buf;
}

// A fraction in (0, 1], written "90%" or 0.9.
void ReadFraction(TableReader* r, std::string_view key, double* out) {
  const toml::node* n = r->Take(key);
  if (n == nullptr) return;
  std::optional<double> v;
  if (const auto* s = n->as_string()) {
    const std::string& text = s->get();
    if (text.size() >= 2 && text.back() == '%') {
      char* end = nullptr;
      std::string num = text.substr(0, text.size() - 1);
      double p = std::strtod(num.c_str(), &end);
      if (end != nullptr && *end == '\0' && !num.empty()) v = p / 100;
    }
  } else if (const auto* d = n->as_floating_point()) {
    v = d->get();
  } else if (const auto* i = n->as_integer()) {
    if (i->get() == 1) v = 1.0;
  }
  if (!v || !(*v > 0) || *v > 1) {
    r->errors()->Add(n->source(), r->Full(key) +
                                      " must be a percentage such as \"90%\" (or a fraction such as 0.9), "
                                      "above 0 and at most 100%");
    return;
  }
  *out = *v;
}

// A rate in bytes per second: "8MB/s", "512KiB/s", or an integer (bytes
// per second); 0 or "0" turns the feature off.
void ReadRate(TableReader* r, std::string_view key, uint64_t* out) {
  const toml::node* n = r->Take(key);
  if (n == nullptr) return;
  std::optional<uint64_t> v;
  if (const auto* i = n->as_integer()) {
    if (i->get() >= 0) v = static_cast<uint64_t>(i->get());
  } else if (const auto* s = n->as_string()) {
    std::string text = s->get();
    if (text.size() > 2 && text.compare(text.size() - 2, 2, "/s") == 0) text.resize(text.size() - 2);
    v = internal::ParseSize(text);
  }
  if (!v) {
    r->errors()->Add(n->source(),
                     r->Full(key) + " must be a rate such as \"8MB/s\" (bytes per second), or 0 to turn it off");
    return;
  }
  *out = *v;
}

void ReadStore(const toml::table& t, Errors* errors, StoreConfig* out) {
  TableReader r(t, "store", errors);
  r.ReadString("path", &out->path, /*required=*/true);
  if (const toml::node* n = r.Node("path"); n != nullptr && n->is_string() && out->path.empty()) {
    errors->Add(n->source(), "store.path must not be empty");
  }
  r.ReadSize("max_size", kMinStoreSize, &out->max_size);
  if (const toml::node* n = r.Node("compression_level"); n != nullptr && n->is_string()) {
    r.Take("compression_level");
    if (n->as_string()->get() != "auto") {
      errors->Add(n->source(), "store.compression_level must be \"auto\" or an integer between -7 and 19, got \"" +
                                   n->as_string()->get() + "\"");
    }
    out->compression_auto = true;
  } else if (n != nullptr) {
    out->compression_auto = false;
    r.ReadInt("compression_level", -7, 19, &out->compression_level);
  }
  r.ReadInt("compression_level_min", -7, 19, &out->compression_level_min);
  r.ReadInt("compression_level_max", -7, 19, &out->compression_level_max);
  if (out->compression_level_min > out->compression_level_max) {
    const toml::node* n =
        r.Node("compression_level_min") ? r.Node("compression_level_min") : r.Node("compression_level_max");
    if (n != nullptr) {
      errors->Add(n->source(), "store.compression_level_min (" + std::to_string(out->compression_level_min) +
                                   ") must not be above store.compression_level_max (" +
                                   std::to_string(out->compression_level_max) + ")");
    }
  }
  r.ReadInt("compression_threads", 1, 64, &out->compression_threads);
  ReadFraction(&r, "high_water", &out->high_water);
  ReadFraction(&r, "low_water", &out->low_water);
  ReadRate(&r, "scrub_rate", &out->scrub_rate);
  r.ReadDuration("history_retention", &out->history_retention_s);
  if (out->low_water >= out->high_water) {
    const toml::node* n = r.Node("low_water") ? r.Node("low_water") : r.Node("high_water");
    if (n != nullptr) {
      errors->Add(n->source(), "store.low_water (" + Percent(out->low_water) + ") must be below store.high_water (" +
                                   Percent(out->high_water) + ")");
    }
  }
  r.RejectUnknownKeys();
}

void ReadDelivery(const toml::table& t, Errors* errors, DeliveryConfig* out) {
  TableReader r(t, "delivery", errors);
  r.ReadString("calling_ae_title", &out->calling_ae_title);
  if (const toml::node* n = r.Node("calling_ae_title"); n != nullptr && n->is_string()) {
    const std::string& ae = out->calling_ae_title;
    bool ok = !ae.empty() && ae.size() <= 16 &&
              std::all_of(ae.begin(), ae.end(), [](char c) { return c >= 0x20 && c < 0x7F && c != '\\'; });
    if (!ok) errors->Add(n->source(), "delivery.calling_ae_title must be 1-16 printable characters without backslash");
  }
  r.ReadInt("connect_timeout_s", 1, 600, &out->connect_timeout_s);
  r.ReadInt("response_timeout_s", 1, 3600, &out->response_timeout_s);
  r.ReadInt("idle_release_s", 1, 3600, &out->idle_release_s);
  r.ReadInt("down_after_failures", 1, 100, &out->down_after_failures);
  r.ReadDuration("retention", &out->retention_s);
  r.ReadDuration("unrouted_retention", &out->unrouted_retention_s);
  r.ReadDuration("dead_letter_retention", &out->dead_letter_retention_s);
  r.ReadDuration("dropped_retention", &out->dropped_retention_s);
  r.RejectUnknownKeys();
}

// Checks "SCHEME://HOST:PORT[/PATH]" with SCHEME one of `schemes`; HOST an
// IP literal (IPv6 in brackets) or a DNS name. nullopt when fine.
std::optional<std::string> EndpointProblem(const std::string& url, const std::vector<std::string_view>& schemes,
                                           bool path_allowed) {
  std::string want;
  for (std::string_view s : schemes) want += (want.empty() ? "" : " or ") + std::string(s) + "://HOST:PORT";
  if (path_allowed) want += "[/PATH]";
  size_t sep = url.find("://");
  if (sep == std::string::npos ||
      std::find(schemes.begin(), schemes.end(), std::string_view(url).substr(0, sep)) == schemes.end()) {
    return "must look like " + want + ", got '" + url + "'";
  }
  std::string rest = url.substr(sep + 3);
  size_t slash = rest.find('/');
  if (slash != std::string::npos && !path_allowed) return "must not have a path (" + want + "), got '" + url + "'";
  std::string hostport = rest.substr(0, slash);
  size_t colon = hostport.rfind(':');
  if (hostport.empty() || colon == std::string::npos || colon == 0 ||
      (hostport.front() == '[' && hostport[colon - 1] != ']')) {
    return "must name a host and a port (" + want + "), got '" + url + "'";
  }
  std::string port = hostport.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) || std::stoul(port) == 0 ||
      std::stoul(port) > 65535) {
    return "has an invalid port '" + port + "' (1-65535), in '" + url + "'";
  }
  return std::nullopt;
}

void ReadLog(const toml::table& t, Errors* errors, LogConfig* out) {
  TableReader r(t, "log", errors);
  r.ReadEnum("level", {"debug", "info", "warn", "error"}, &out->level);
  r.RejectUnknownKeys();
}

void ReadRules(const toml::table& t, Errors* errors, AppConfig* out) {
  TableReader r(t, "rules", errors);
  r.ReadString("path", &out->rules_path, /*required=*/true);
  if (const toml::node* n = r.Node("path"); n != nullptr && n->is_string() && out->rules_path.empty()) {
    errors->Add(n->source(), "rules.path must not be empty");
  }
  r.ReadSize("max_regex_memory", 1 << 20, &out->rules_max_regex_memory);
  r.ReadDuration("max_compile_time", &out->rules_max_compile_s);
  if (const toml::node* n = r.Node("max_compile_time");
      n != nullptr && (out->rules_max_compile_s < 1 || out->rules_max_compile_s > 3600)) {
    errors->Add(n->source(), "rules.max_compile_time must be 1s-1h");
  }
  r.RejectUnknownKeys();
}

void ReadAudit(const toml::table& t, Errors* errors, AuditConfig* out) {
  TableReader r(t, "audit", errors);
  r.ReadString("path", &out->path, /*required=*/true);
  if (const toml::node* n = r.Node("path"); n != nullptr && n->is_string() && out->path.empty()) {
    errors->Add(n->source(), "audit.path must not be empty");
  }
  r.ReadSize("rotate_size", 4096, &out->rotate_size);
  r.ReadString("syslog", &out->syslog);
  if (const toml::node* n = r.Node("syslog"); n != nullptr && n->is_string() && !out->syslog.empty()) {
    if (auto why = EndpointProblem(out->syslog, {"udp", "tcp"}, /*path_allowed=*/false)) {
      errors->Add(n->source(), "audit.syslog " + *why);
    }
  }
  r.ReadEnum("on_failure", {"refuse", "continue"}, &out->on_failure);
  r.RejectUnknownKeys();
}

void ReadAdmin(const toml::table& t, Errors* errors, AdminConfig* out) {
  TableReader r(t, "admin", errors);
  out->enabled = true;
  r.ReadString("host", &out->host);
  if (const toml::node* n = r.Node("host"); n != nullptr && n->is_string() && !IsIpLiteral(out->host)) {
    errors->Add(n->source(),
                "admin.host must be an IPv4 or IPv6 literal (e.g. \"127.0.0.1\"), got '" + out->host + "'");
  }
  r.ReadInt("port", 1, 65535, &out->port);
  if (const toml::node* n = r.Take("token")) {
    const toml::array* arr = n->as_array();
    if (arr == nullptr) {
      r.TypeError("token", *n, "an array of tables ([[admin.token]])");
    } else {
      for (const toml::node& item : *arr) {
        const toml::table* tt = item.as_table();
        if (tt == nullptr) {
          errors->Add(item.source(), "admin.token entries must be tables ([[admin.token]])");
          continue;
        }
        TableReader tr(*tt, "admin.token", errors);
        AdminToken tok;
        tr.ReadString("name", &tok.name, /*required=*/true);
        tr.ReadEnum("role", {"viewer", "operator", "admin"}, &tok.role);
        if (tr.Node("role") == nullptr)
          errors->Add(tt->source(), "admin.token: missing required key 'role' (viewer, operator or admin)");
        tr.ReadString("sha256", &tok.sha256, /*required=*/true);
        if (const toml::node* h = tr.Node("sha256"); h != nullptr && h->is_string()) {
          bool hex = tok.sha256.size() == 64 && std::all_of(tok.sha256.begin(), tok.sha256.end(), [](char c) {
                       return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                     });
          if (!hex) {
            errors->Add(h->source(),
                        "admin.token.sha256 must be the token's SHA-256 as 64 lowercase hex digits "
                        "(make one with `relais admin token NAME`)");
          }
        }
        if (const toml::node* nm = tr.Node("name"); nm != nullptr && nm->is_string()) {
          for (const AdminToken& other : out->tokens) {
            if (other.name == tok.name) errors->Add(nm->source(), "admin.token name '" + tok.name + "' is used twice");
          }
        }
        tr.RejectUnknownKeys();
        out->tokens.push_back(std::move(tok));
      }
    }
  }
  r.RejectUnknownKeys();
}

void ReadTls(const toml::table& t, Errors* errors, TlsListenerConfig* out) {
  TableReader r(t, "tls", errors);
  out->enabled = true;
  r.ReadInt("port", 1, 65535, &out->port);
  r.ReadString("certificate", &out->certificate, /*required=*/true);
  r.ReadString("private_key", &out->private_key, /*required=*/true);
  r.ReadString("ca", &out->ca);
  r.ReadBool("require_client_certificate", &out->require_client_certificate);
  r.ReadEnum("min_version", {"1.2", "1.3"}, &out->min_version);
  if (out->require_client_certificate && out->ca.empty()) {
    const toml::node* n = r.Node("require_client_certificate");
    errors->Add(
        n != nullptr ? n->source() : t.source(),
        "tls.require_client_certificate needs tls.ca: the CA certificates that signed the clients' certificates");
  }
  r.RejectUnknownKeys();
}

void ReadAlerts(const toml::table& t, Errors* errors, AlertsConfig* out) {
  TableReader r(t, "alerts", errors);
  r.ReadString("webhook", &out->webhook);
  if (const toml::node* n = r.Node("webhook"); n != nullptr && n->is_string() && !out->webhook.empty()) {
    if (auto why = EndpointProblem(out->webhook, {"http"}, /*path_allowed=*/true)) {
      errors->Add(n->source(), "alerts.webhook " + *why);
    }
  }
  r.ReadString("command", &out->command);
  if (const toml::node* n = r.Node("command");
      n != nullptr && n->is_string() && !out->command.empty() && out->command.front() != '/') {
    errors->Add(n->source(), "alerts.command must be an absolute path, got '" + out->command + "'");
  }
  r.ReadDuration("destination_down", &out->destination_down_s);
  r.ReadDuration("oldest_queued", &out->oldest_queued_s);
  r.ReadDuration("repeat", &out->repeat_s);
  r.RejectUnknownKeys();
}

Result<AppConfig> Validate(const toml::table& root, const std::string& source_name) {
  Errors errors(source_name);
  AppConfig config;
  config.source_path = source_name;

  static const std::vector<std::string_view> kTables = {"listener", "store", "delivery", "log", "rules",
                                                        "audit",    "admin", "alerts",   "tls"};
  for (auto&& [key, node] : root) {
    std::string_view k = key.str();
    if (std::find(kTables.begin(), kTables.end(), k) == kTables.end()) {
      errors.Add(key.source(), std::string(node.is_table() ? "unknown table [" : "unknown key '") + std::string(k) +
                                   (node.is_table() ? "]" : "'") + Suggest(k, kTables));
      continue;
    }
    if (!node.is_table()) {
      errors.Add(node.source(), std::string(k) + " must be a table, got " + TypeName(node.type()));
    }
  }

  auto section = [&](std::string_view name, bool required) -> const toml::table* {
    const toml::node* n = root.get(name);
    if (n == nullptr) {
      if (required) errors.Add(1, 1, "missing required table [" + std::string(name) + "]");
      return nullptr;
    }
    return n->as_table();  // nullptr for a non-table: already reported above
  };
  if (const toml::table* t = section("listener", true)) ReadListener(*t, &errors, &config.listener);
  if (const toml::table* t = section("store", true)) ReadStore(*t, &errors, &config.store);
  if (const toml::table* t = section("delivery", false)) ReadDelivery(*t, &errors, &config.delivery);
  if (const toml::table* t = section("log", false)) ReadLog(*t, &errors, &config.log);
  if (const toml::table* t = section("rules", false)) ReadRules(*t, &errors, &config);
  if (const toml::table* t = section("audit", false)) ReadAudit(*t, &errors, &config.audit);
  if (const toml::table* t = section("admin", false)) ReadAdmin(*t, &errors, &config.admin);
  if (const toml::table* t = section("alerts", false)) ReadAlerts(*t, &errors, &config.alerts);
  if (const toml::table* t = section("tls", false)) ReadTls(*t, &errors, &config.tls);
  if (config.tls.enabled && config.tls.port == config.listener.port) {
    if (const toml::node* n = root.get("tls")) {
      errors.Add(n->source(), "tls.port (" + std::to_string(config.tls.port) + ") must differ from listener.port");
    }
  }

  if (!errors.empty()) return Status::InvalidArgument(errors.ToString());
  config.store.path = ResolvePath(config.store.path, source_name);
  if (config.delivery.calling_ae_title.empty()) config.delivery.calling_ae_title = config.listener.ae_title;
  if (!config.rules_path.empty()) config.rules_path = ResolvePath(config.rules_path, source_name);
  if (!config.audit.path.empty()) config.audit.path = ResolvePath(config.audit.path, source_name);
  for (std::string* p : {&config.tls.certificate, &config.tls.private_key, &config.tls.ca}) {
    if (!p->empty()) *p = ResolvePath(*p, source_name);
  }
  return config;
}

}  // namespace

Result<AppConfig> ParseAppConfig(const std::string& text, const std::string& source_name) {
  if (text.size() > kMaxConfigBytes) {
    return Status::InvalidArgument(source_name + ":1:1: file is too large (" + std::to_string(text.size()) +
                                   " bytes; a configuration file is at most " + std::to_string(kMaxConfigBytes) +
                                   " bytes)");
  }
  if (Errors nesting(source_name); !internal::CheckTomlNesting(text, &nesting)) {
    return Status::InvalidArgument(nesting.ToString());
  }
  try {
    toml::table root = toml::parse(text, source_name);
    return Validate(root, source_name);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    return Status::InvalidArgument(source_name + ":" + std::to_string(at.line == 0 ? 1 : at.line) + ":" +
                                   std::to_string(at.column == 0 ? 1 : at.column) + ": " +
                                   internal::OneLine(e.description()));
  } catch (const std::exception& e) {
    // toml++ may also throw std::bad_alloc and friends; never let it escape.
    return Status::InvalidArgument(source_name + ":1:1: cannot parse: " + e.what());
  }
}

Result<AppConfig> LoadAppConfig(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("configuration file '" + path + "' is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = "cannot open configuration file '" + path + "': " + std::strerror(err);
    if (err == ENOENT) return Status::NotFound(msg);
    return Status::IOError(msg);
  }
  std::string text;
  char buf[64 * 1024];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) break;  // ParseAppConfig reports the size
  }
  if (in.bad()) return Status::IOError("cannot read configuration file '" + path + "'");
  return ParseAppConfig(text, path);
}

}  // namespace relais::rules
