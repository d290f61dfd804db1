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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <tuple>

#include <toml++/toml.h>

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
    errors->Add(n->source(), "listener.host must be an IPv4 or IPv6 literal (e.g. \"0.0.0.0\" or \"::\"), got '" +
                                 out->host + "'");
  }
  r.ReadInt("port", 1, 65535, &out->port);
  r.ReadInt("max_associations", 1, 10000, &out->max_associations);
  r.ReadInt("max_pdu", 4096, 16777216, &out->max_pdu);
  r.ReadInt("artim_timeout_s", 1, 3600, &out->artim_timeout_s);
  r.ReadInt("idle_timeout_s", 1, 86400, &out->idle_timeout_s);
  r.ReadBool("accept_unknown_sop_classes", &out->accept_unknown_sop_classes);
  r.RejectUnknownKeys();
}

void ReadStore(const toml::table& t, Errors* errors, StoreConfig* out) {
  TableReader r(t, "store", errors);
  r.ReadString("path", &out->path, /*required=*/true);
  if (const toml::node* n = r.Node("path"); n != nullptr && n->is_string() && out->path.empty()) {
    errors->Add(n->source(), "store.path must not be empty");
  }
  r.ReadSize("max_size", kMinStoreSize, &out->max_size);
  r.ReadInt("compression_level", -7, 19, &out->compression_level);
  r.ReadInt("compression_threads", 1, 64, &out->compression_threads);
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
  r.RejectUnknownKeys();
}

void ReadLog(const toml::table& t, Errors* errors, LogConfig* out) {
  TableReader r(t, "log", errors);
  r.ReadEnum("level", {"debug", "info", "warn", "error"}, &out->level);
  r.RejectUnknownKeys();
}

void ReadRules(const toml::table& t, Errors* errors, std::string* out) {
  TableReader r(t, "rules", errors);
  r.ReadString("path", out, /*required=*/true);
  if (const toml::node* n = r.Node("path"); n != nullptr && n->is_string() && out->empty()) {
    errors->Add(n->source(), "rules.path must not be empty");
  }
  r.RejectUnknownKeys();
}

void ReadAudit(const toml::table& t, Errors* errors, std::string* out) {
  TableReader r(t, "audit", errors);
  r.ReadString("path", out, /*required=*/true);
  if (const toml::node* n = r.Node("path"); n != nullptr && n->is_string() && out->empty()) {
    errors->Add(n->source(), "audit.path must not be empty");
  }
  r.RejectUnknownKeys();
}

Result<AppConfig> Validate(const toml::table& root, const std::string& source_name) {
  Errors errors(source_name);
  AppConfig config;
  config.source_path = source_name;

  static const std::vector<std::string_view> kTables = {"listener", "store", "delivery", "log", "rules", "audit"};
  for (auto&& [key, node] : root) {
    std::string_view k = key.str();
    if (std::find(kTables.begin(), kTables.end(), k) == kTables.end()) {
      errors.Add(key.source(), std::string(node.is_table() ? "unknown table [" : "unknown key '") +
                                   std::string(k) + (node.is_table() ? "]" : "'") + Suggest(k, kTables));
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
  if (const toml::table* t = section("rules", false)) ReadRules(*t, &errors, &config.rules_path);
  if (const toml::table* t = section("audit", false)) ReadAudit(*t, &errors, &config.audit_path);

  if (!errors.empty()) return Status::InvalidArgument(errors.ToString());
  config.store.path = ResolvePath(config.store.path, source_name);
  if (config.delivery.calling_ae_title.empty()) config.delivery.calling_ae_title = config.listener.ae_title;
  if (!config.rules_path.empty()) config.rules_path = ResolvePath(config.rules_path, source_name);
  if (!config.audit_path.empty()) config.audit_path = ResolvePath(config.audit_path, source_name);
  return config;
}

}  // namespace

Result<AppConfig> ParseAppConfig(const std::string& text, const std::string& source_name) {
  if (text.size() > kMaxConfigBytes) {
    return Status::InvalidArgument(source_name + ":1:1: file is too large (" + std::to_string(text.size()) +
                                   " bytes; a configuration file is at most " +
                                   std::to_string(kMaxConfigBytes) + " bytes)");
  }
  try {
    toml::table root = toml::parse(text, source_name);
    return Validate(root, source_name);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    return Status::InvalidArgument(source_name + ":" + std::to_string(at.line == 0 ? 1 : at.line) + ":" +
                                   std::to_string(at.column == 0 ? 1 : at.column) + ": " +
                                   std::string(e.description()));
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
