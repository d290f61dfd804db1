// Helpers shared by the TOML readers of rules/ (config.cc for the appliance
// file, rule_parser.cc for rule files): error collection with positions,
// "did you mean" suggestions, a table reader that rejects unknown keys, and
// small value parsers. Internal to rules/: this header includes toml++,
// which no other library may see.
#ifndef RELAIS_RULES_TOML_UTIL_H_
#define RELAIS_RULES_TOML_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

namespace relais::rules::internal {

// Collects problems of one source file; reports them in file order.
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
  size_t size() const { return problems_.size(); }
  const std::string& source() const { return source_; }

  // One "FILE:LINE:COLUMN: message" per line, in file order.
  std::string ToString();

 private:
  struct Problem {
    uint32_t line;
    uint32_t column;
    std::string message;
  };
  std::string source_;
  std::vector<Problem> problems_;
};

// "FILE:LINE:COLUMN" of a region's start.
std::string Where(const std::string& source, const toml::source_region& region);

const char* TypeName(toml::node_type t);
// ", did you mean 'x'?" for the closest known name, or " (known: a, b)" when
// nothing is close.
std::string Suggest(std::string_view got, const std::vector<std::string_view>& known);
// The closest of `known` to `got` within a small distance, or empty.
std::string_view Closest(std::string_view got, const std::vector<std::string_view>& known);

// "64GiB", "500MB", "10 MiB", "4096", "1.5 GiB" -> bytes. K/M/G/T are powers
// of 1000, Ki/Mi/Gi/Ti of 1024; units are case-insensitive.
std::optional<uint64_t> ParseSize(std::string_view s);
// "10s", "30m", "7d", "1h30m", "90" (seconds) -> seconds.
std::optional<uint64_t> ParseDuration(std::string_view s);

bool IsIpLiteral(const std::string& host);
// PS3.5 6.2, VR AE: why `ae` is not a valid AE title, or nullopt.
std::optional<std::string> AeTitleProblem(const std::string& ae);
// Resolves a relative path against the directory of `source_name`.
std::string ResolvePath(const std::string& path, const std::string& source_name);

// How deep a TOML document may nest, counted three ways: the parts of one
// [table.header], the parts of one dotted key (a.b.c = 1, also inside an
// inline table), and arrays and inline tables open at once in a value.
// Debian's toml++ 3.3 bounds only the last (at 256) and recurses once per
// part of a dotted key or header: 40,000 parts overflow the stack.
constexpr int kMaxTomlNesting = 64;

// Scans `text` lexically (comments, basic and literal strings, multi-line
// ones, quoted keys) before it is handed to toml++, and adds
// "nesting deeper than 64 levels ..." to `errors` at the line and column of
// the first part past the limit. Returns false when it did. Only counts: a
// document it passes may still be invalid TOML (toml++ reports that).
bool CheckTomlNesting(std::string_view text, Errors* errors);

// Walks one table, checking each key against the ones asked for.
// `text` on one line: control characters (toml++ quotes the offending
// input, newlines included) shown as \n, \t or \xHH, so that each error
// stays one "FILE:LINE:COLUMN: message" line.
inline std::string OneLine(std::string_view text) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

class TableReader {
 public:
  TableReader(const toml::table& table, std::string name, Errors* errors)
      : table_(table), name_(std::move(name)), errors_(errors) {}

  // Reports every key that no Read*/Node call asked for. Call last.
  void RejectUnknownKeys();

  void ReadString(std::string_view key, std::string* out, bool required = false);
  void ReadBool(std::string_view key, bool* out);
  template <typename T>
  void ReadInt(std::string_view key, int64_t min, int64_t max, T* out) {
    int64_t v = 0;
    if (ReadInt64(key, min, max, &v)) *out = static_cast<T>(v);
  }
  bool ReadInt64(std::string_view key, int64_t min, int64_t max, int64_t* out);
  // An integer number of bytes, or a size string such as "64GiB".
  void ReadSize(std::string_view key, uint64_t min, uint64_t* out);
  // An integer number of seconds, or a duration string such as "30m".
  void ReadDuration(std::string_view key, uint64_t* out);
  // One of `allowed`.
  void ReadEnum(std::string_view key, const std::vector<std::string_view>& allowed, std::string* out);

  // The node of `key` when present, else nullptr. Does not mark it known.
  const toml::node* Node(std::string_view key) const { return table_.get(key); }
  // Marks `key` known and returns its node (nullptr when absent; reports
  // a missing required key at the table).
  const toml::node* Take(std::string_view key, bool required = false);
  std::string Full(std::string_view key) const { return name_ + "." + std::string(key); }
  void TypeError(std::string_view key, const toml::node& n, const char* want);
  Errors* errors() { return errors_; }
  const toml::table& table() const { return table_; }

 private:
  const toml::table& table_;
  std::string name_;
  Errors* errors_;
  std::vector<std::string_view> known_;
};

}  // namespace relais::rules::internal

#endif  // RELAIS_RULES_TOML_UTIL_H_
