// Shared TOML helpers of rules/ (see toml_util.h). Moved out of config.cc so
// that the appliance file and the rule files read and report alike.
#include "rules/toml_util.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <tuple>

#include "base/text.h"

namespace relais::rules::internal {

constexpr uint64_t kKiB = 1024;

std::string Errors::ToString() {
  std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  std::string out;
  for (const Problem& p : problems_) {
    if (!out.empty()) out += '\n';
    // One line per problem: a name or value quoted from the file may hold a
    // newline or another control character (a TOML "\n" escape).
    out += source_ + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": " + LogEscape(p.message);
  }
  return out;
}

std::string Where(const std::string& source, const toml::source_region& region) {
  uint32_t line = region.begin.line == 0 ? 1 : region.begin.line;
  uint32_t column = region.begin.column == 0 ? 1 : region.begin.column;
  return source + ":" + std::to_string(line) + ":" + std::to_string(column);
}

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

namespace {

// Levenshtein distance with a caller's row buffer (Closest compares one word
// with every DICOM keyword: no allocation per keyword).
size_t EditDistance(std::string_view a, std::string_view b, std::vector<size_t>* buffer) {
  std::vector<size_t>& row = *buffer;
  row.resize(b.size() + 1);
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

}  // namespace

std::string_view Closest(std::string_view got, const std::vector<std::string_view>& known) {
  std::string_view best;
  size_t best_d = std::numeric_limits<size_t>::max();
  std::vector<size_t> row;
  for (std::string_view k : known) {
    // The length difference is a lower bound of the distance.
    size_t length_gap = got.size() > k.size() ? got.size() - k.size() : k.size() - got.size();
    if (length_gap >= best_d) continue;
    size_t d = EditDistance(got, k, &row);
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
  if (!best.empty() && best_d <= std::max<size_t>(2, best.size() / 3)) return best;
  return {};
}

std::string Suggest(std::string_view got, const std::vector<std::string_view>& known) {
  std::string_view best = Closest(got, known);
  if (!best.empty()) return ", did you mean '" + std::string(best) + "'?";
  std::string list;
  for (std::string_view k : known) {
    if (!list.empty()) list += ", ";
    list += k;
  }
  return " (known: " + list + ")";
}

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

std::optional<uint64_t> ParseDuration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t total = 0;
  size_t i = 0;
  bool bare = true;
  while (i < s.size()) {
    uint64_t n = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n > 1'000'000'000ull) return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(s[i] - '0');
      ++i, ++digits;
    }
    if (digits == 0) return std::nullopt;
    uint64_t mult = 1;
    if (i < s.size()) {
      bare = false;
      switch (s[i]) {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        case 'w': mult = 7 * 86400; break;
        default: return std::nullopt;
      }
      ++i;
    } else if (!bare) {
      return std::nullopt;  // "1h30" is ambiguous
    }
    total += n * mult;
    if (total > 100ull * 365 * 86400) return std::nullopt;  // a century is a typo
  }
  return total;
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

std::string ResolvePath(const std::string& path, const std::string& source_name) {
  std::filesystem::path p(path);
  if (p.is_absolute()) return path;
  std::filesystem::path dir = std::filesystem::path(source_name).parent_path();
  if (dir.empty()) return path;
  return (dir / p).lexically_normal().string();
}

void TableReader::RejectUnknownKeys() {
  for (auto&& [key, node] : table_) {
    std::string_view k = key.str();
    if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
    errors_->Add(key.source(), "unknown key '" + std::string(k) + "' in [" + name_ + "]" + Suggest(k, known_));
  }
}

const toml::node* TableReader::Take(std::string_view key, bool required) {
  known_.push_back(key);
  const toml::node* n = table_.get(key);
  if (n == nullptr && required) {
    errors_->Add(table_.source(), "missing required key '" + std::string(key) + "' in [" + name_ + "]");
  }
  return n;
}

void TableReader::TypeError(std::string_view key, const toml::node& n, const char* want) {
  errors_->Add(n.source(), Full(key) + " must be " + want + ", got " + TypeName(n.type()));
}

void TableReader::ReadString(std::string_view key, std::string* out, bool required) {
  const toml::node* n = Take(key, required);
  if (n == nullptr) return;
  if (const auto* s = n->as_string()) {
    *out = s->get();
  } else {
    TypeError(key, *n, "a string");
  }
}

void TableReader::ReadBool(std::string_view key, bool* out) {
  const toml::node* n = Take(key, false);
  if (n == nullptr) return;
  if (const auto* b = n->as_boolean()) {
    *out = b->get();
  } else {
    TypeError(key, *n, "a boolean");
  }
}

bool TableReader::ReadInt64(std::string_view key, int64_t min, int64_t max, int64_t* out) {
  const toml::node* n = Take(key, false);
  if (n == nullptr) return false;
  const auto* i = n->as_integer();
  if (i == nullptr) {
    TypeError(key, *n, "an integer");
    return false;
  }
  int64_t v = i->get();
  if (v < min || v > max) {
    errors_->Add(n->source(), Full(key) + " must be between " + std::to_string(min) + " and " + std::to_string(max) +
                                  ", got " + std::to_string(v));
    return false;
  }
  *out = v;
  return true;
}

void TableReader::ReadSize(std::string_view key, uint64_t min, uint64_t* out) {
  const toml::node* n = Take(key, false);
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
      errors_->Add(n->source(), Full(key) + " must be a size such as 4096, \"500MB\" or \"64GiB\", got " + shown);
      return;
    }
  } else {
    TypeError(key, *n, "an integer (bytes) or a size string such as \"64GiB\"");
    return;
  }
  if (!bytes || *bytes < min) {
    errors_->Add(n->source(), Full(key) + " must be at least " + std::to_string(min) + " bytes" +
                                  (min == (1u << 20) ? " (1MiB)" : "") + ", got " + shown);
    return;
  }
  *out = *bytes;
}

void TableReader::ReadDuration(std::string_view key, uint64_t* out) {
  const toml::node* n = Take(key, false);
  if (n == nullptr) return;
  if (const auto* i = n->as_integer()) {
    if (i->get() < 0) {
      errors_->Add(n->source(), Full(key) + " must not be negative, got " + std::to_string(i->get()));
      return;
    }
    *out = static_cast<uint64_t>(i->get());
  } else if (const auto* s = n->as_string()) {
    std::optional<uint64_t> d = ParseDuration(s->get());
    if (!d) {
      errors_->Add(n->source(), Full(key) + " must be a duration such as \"10s\", \"30m\", \"12h\" or \"7d\", got '" +
                                    s->get() + "'");
      return;
    }
    *out = *d;
  } else {
    TypeError(key, *n, "a duration string such as \"30m\" or an integer (seconds)");
  }
}

void TableReader::ReadEnum(std::string_view key, const std::vector<std::string_view>& allowed, std::string* out) {
  const toml::node* n = Take(key, false);
  if (n == nullptr) return;
  const auto* s = n->as_string();
  if (s == nullptr) {
    TypeError(key, *n, "a string");
    return;
  }
  if (std::find(allowed.begin(), allowed.end(), s->get()) == allowed.end()) {
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    errors_->Add(n->source(),
                 Full(key) + " must be one of " + list + ", got '" + s->get() + "'" + Suggest(s->get(), allowed));
    return;
  }
  *out = s->get();
}

}  // namespace relais::rules::internal
