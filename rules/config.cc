// The appliance configuration loader (rules/rules.h). This is the only file
// in Relais that includes toml++. Debian's toml++ 3.3 is a compiled library
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

namespace relais::rules {
namespace {

// Configuration files are small; refusing big inputs up front bounds the
// parser's time and memory whatever is handed to it.
constexpr size_t kMaxConfigBytes = 1 << 20;

constexpr int64_t kKiB = 1024;
constexpr uint64_t kMinStoreSize = 1 << 20;  // 1 MiB

struct Problem {
  uint32_t line;
  uint32_t column;
  std::string message;
};

class Errors {
 public:
  explicit Errors(std::string source) : source_(std::move(source)) {}

  void Add(const toml::source_region& where, std::string message) {
    Add(where.begin.line, where.begin.column, std::move(message));
  }
  void Add(uint32_t line, uint32_t column, std::string message) {
    problems_.push_back({line == 0 ? 1 : line, column == 0 ? 1 : column, std::move(message)});
  }
  bool empty() const { return problems_.empty(); }

  // One "FILE:LINE:COLUMN: message" per line, in file order.
  std::string ToString() {
    std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    std::string out;
    for (const Problem& p : problems_) {
      if (!out.empty()) out += '\n';
      out += source_ + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": " +
             p.message;
    }
    return out;
  }

 private:
  std::string source_;
  std::vector<Problem> problems_;
};

const char* TypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
  }
  return "unknown";
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + cost});
      diag = up;
    }
  }
  return row[b.size()];
}

// ", did you mean 'x'?" for the closest known name, or the list of known
// names when nothing is close.
std::string Suggest(std::string_view got, const std::vector<std::string_view>& known) {
  std::string_view best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (std::string_view k : known) {
    size_t d = EditDistance(got, k);
    if (d < best_d) best_d = d, best = k;
  }
  if (best.empty() || best_d > std::max<size_t>(2, best.size() / 3)) {
    // "warning" for "warn", "compression" for "compression_level".
    for (std::string_view k : known) {
      if (got.size() >= 3 && (k.starts_with(got) || got.starts_with(k))) {
        best = k, best_d = 0;
        break;
      }
    }
  }
  if (!best.empty() && best_d <= std::max<size_t>(2, best.size() / 3)) {
    return ", did you mean '" + std::string(best) + "'?";
  }
  std::string list;
  for (std::string_view k : known) {
    if (!list.empty()) list += ", ";
    list += k;
  }
  return " (known: " + list + ")";
}

// Parses "64GiB", "500MB", "10 MiB", "4096", "1.5 GiB" into bytes. Units are
// case-insensitive; K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024.
std::optional<uint64_t> ParseSize(std::string_view s) {
  size_t i = 0;
  auto skip_spaces = [&] {
    while (i < s.size() && s[i] == ' ') ++i;
  };
  skip_spaces();
  uint64_t whole = 0;
  size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    if (whole > (std::numeric_limits<uint64_t>::max() - 9) / 10) return std::nullopt;
    whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
    ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  // Up to 3 fractional digits, in thousandths.
  uint64_t frac = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t fd = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (fd < 3) frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
      ++i, ++fd;
    }
    if (fd == 0) return std::nullopt;
    for (size_t k = std::min<size_t>(fd, 3); k < 3; ++k) frac *= 10;
  }
  skip_spaces();
  std::string unit;
  for (; i < s.size() && s[i] != ' '; ++i) {
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
  }
  skip_spaces();
  if (i != s.size()) return std::nullopt;
  uint64_t mult;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "kb" || unit == "k") mult = 1000;
  else if (unit == "mb" || unit == "m") mult = 1000 * 1000;
  else if (unit == "gb" || unit == "g") mult = 1000ull * 1000 * 1000;
  else if (unit == "tb" || unit == "t") mult = 1000ull * 1000 * 1000 * 1000;
  else if (unit == "kib") mult = kKiB;
  else if (unit == "mib") mult = kKiB * kKiB;
  else if (unit == "gib") mult = kKiB * kKiB * kKiB;
  else if (unit == "tib") mult = kKiB * kKiB * kKiB * kKiB;
  else return std::nullopt;
  if (mult == 1 && frac != 0) return std::nullopt;  // fractional bytes
  if (whole > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  uint64_t bytes = whole * mult;
  uint64_t frac_bytes = frac * (mult / 1000) + (frac * (mult % 1000)) / 1000;
  if (bytes > std::numeric_limits<uint64_t>::max() - frac_bytes) return std::nullopt;
  return bytes + frac_bytes;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// PS3.5 6.2, VR AE: 1-16 characters of the Default Character Repertoire
// without backslash and control characters; leading/trailing spaces are not
// significant, so an all-space value is empty.
std::optional<std::string> AeTitleProblem(const std::string& ae) {
  if (ae.empty() || ae.size() > 16) {
    return "must be 1-16 characters, got " + std::to_string(ae.size());
  }
  for (unsigned char c : ae) {
    if (c == '\\') return std::string("must not contain a backslash");
    if (c < 0x20 || c >= 0x7F) return std::string("must contain only printable ASCII characters");
  }
  if (ae.find_first_not_of(' ') == std::string::npos) return std::string("must not be all spaces");
  return std::nullopt;
}

// Walks one [table], checking each key against the known ones.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string name, Errors* errors)
      : table_(table), name_(std::move(name)), errors_(errors) {}

  // Reports every key that no Read* call asked for. Call last.
  void RejectUnknownKeys() {
    for (auto&& [key, node] : table_) {
      std::string_view k = key.str();
      if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
      errors_->Add(key.source(),
                   "unknown key '" + std::string(k) + "' in [" + name_ + "]" + Suggest(k, known_));
    }
  }

  void ReadString(std::string_view key, std::string* out, bool required = false) {
    const toml::node* n = Find(key, required);
    if (n == nullptr) return;
    if (const auto* s = n->as_string()) {
      *out = s->get();
    } else {
      TypeError(key, *n, "a string");
    }
  }

  void ReadBool(std::string_view key, bool* out) {
    const toml::node* n = Find(key, false);
    if (n == nullptr) return;
    if (const auto* b = n->as_boolean()) {
      *out = b->get();
    } else {
      TypeError(key, *n, "a boolean");
    }
  }

  template <typename T>
  void ReadInt(std::string_view key, int64_t min, int64_t max, T* out) {
    const toml::node* n = Find(key, false);
    if (n == nullptr) return;
    const auto* i = n->as_integer();
    if (i == nullptr) {
      TypeError(key, *n, "an integer");
      return;
    }
    int64_t v = i->get();
    if (v < min || v > max) {
      errors_->Add(n->source(), Full(key) + " must be between " + std::to_string(min) + " and " +
                                    std::to_string(max) + ", got " + std::to_string(v));
      return;
    }
    *out = static_cast<T>(v);
  }

  // An integer number of bytes, or a string such as "64GiB" or "500 MB".
  void ReadSize(std::string_view key, uint64_t min, uint64_t* out) {
    const toml::node* n = Find(key, false);
    if (n == nullptr) return;
    std::optional<uint64_t> bytes;
    std::string shown;
    if (const auto* i = n->as_integer()) {
      shown = std::to_string(i->get());
      if (i->get() >= 0) bytes = static_cast<uint64_t>(i->get());
    } else if (const auto* s = n->as_string()) {
      shown = "'" + s->get() + "'";
      bytes = ParseSize(s->get());
      if (!bytes) {
        errors_->Add(n->source(), Full(key) + " must be a size such as 4096, \"500MB\" or \"64GiB\", got " +
                                      shown);
        return;
      }
    } else {
      TypeError(key, *n, "an integer (bytes) or a size string such as \"64GiB\"");
      return;
    }
    if (!bytes || *bytes < min) {
      errors_->Add(n->source(), Full(key) + " must be at least " + std::to_string(min) +
                                    " bytes (1MiB), got " + shown);
      return;
    }
    *out = *bytes;
  }

  // One of `allowed`.
  void ReadEnum(std::string_view key, const std::vector<std::string_view>& allowed, std::string* out) {
    const toml::node* n = Find(key, false);
    if (n == nullptr) return;
    const auto* s = n->as_string();
    if (s == nullptr) {
      TypeError(key, *n, "a string");
      return;
    }
    if (std::find(allowed.begin(), allowed.end(), s->get()) == allowed.end()) {
      std::string list;
      for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      errors_->Add(n->source(), Full(key) + " must be one of " + list + ", got '" + s->get() + "'" +
                                    Suggest(s->get(), allowed));
      return;
    }
    *out = s->get();
  }

  // The node of `key` when present (for extra checks), else nullptr.
  const toml::node* Node(std::string_view key) const { return table_.get(key); }
  std::string Full(std::string_view key) const { return name_ + "." + std::string(key); }
  Errors* errors() { return errors_; }

 private:
  const toml::node* Find(std::string_view key, bool required) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (n == nullptr && required) {
      errors_->Add(table_.source(), "missing required key '" + std::string(key) + "' in [" + name_ + "]");
    }
    return n;
  }

  void TypeError(std::string_view key, const toml::node& n, const char* want) {
    errors_->Add(n.source(), Full(key) + " must be " + want + ", got " + TypeName(n.type()));
  }

  const toml::table& table_;
  std::string name_;
  Errors* errors_;
  std::vector<std::string_view> known_;
};

// Resolves a relative path against the directory of the config file.
std::string ResolvePath(const std::string& path, const std::string& source_name) {
  std::filesystem::path p(path);
  if (p.is_absolute()) return path;
  std::filesystem::path dir = std::filesystem::path(source_name).parent_path();
  if (dir.empty()) return path;
  return (dir / p).lexically_normal().string();
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

Result<AppConfig> Validate(const toml::table& root, const std::string& source_name) {
  Errors errors(source_name);
  AppConfig config;
  config.source_path = source_name;

  static const std::vector<std::string_view> kTables = {"listener", "store", "log", "rules"};
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
  if (const toml::table* t = section("log", false)) ReadLog(*t, &errors, &config.log);
  if (const toml::table* t = section("rules", false)) ReadRules(*t, &errors, &config.rules_path);

  if (!errors.empty()) return Status::InvalidArgument(errors.ToString());
  config.store.path = ResolvePath(config.store.path, source_name);
  if (!config.rules_path.empty()) config.rules_path = ResolvePath(config.rules_path, source_name);
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
