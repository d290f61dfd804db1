// CheckTomlNesting (toml_util.h): a lexical pre-scan of TOML text that
// bounds how deep the document nests before toml++ builds (and recurses
// over) it. It knows just enough TOML 1.0 to tell keys from values:
//
//   - a line starting with `[` or `[[` (outside any value) is a table
//     header; its dotted parts are counted;
//   - otherwise a line (or the text after `{` or `,` inside an inline table)
//     starts with a key, up to `=`; its dotted parts are counted;
//   - in a value, `[` and `{` open a level and `]` and `}` close one;
//   - strings ("...", '...', """...""", '''...''', quoted keys) and comments
//     (# to the end of the line) are skipped whole, so brackets, dots and
//     quotes inside them count for nothing.
//
// Malformed input is skipped as best it can be: the scanner never refuses
// what is not deeper than the limit, and toml++ reports the syntax error.
// Linear in the text; no allocation.
#include <string>

#include "rules/toml_util.h"

namespace relais::rules::internal {
namespace {

constexpr const char* kDotted = "a dotted key of more than 64 parts";
static_assert(kMaxTomlNesting == 64, "update the messages");

class NestingScanner {
 public:
  NestingScanner(std::string_view text, Errors* errors) : s_(text), errors_(errors) {}

  bool Run() {
    bool line_start = true;
    while (p_ < s_.size() && ok_) {
      if (line_start && stack_ == 0) {
        SkipBlanks(/*newlines=*/true);
        if (p_ >= s_.size()) break;
        char c = s_[p_];
        if (c == '#') {
          SkipComment();
        } else if (c == '[') {
          ++p_;
          if (p_ < s_.size() && s_[p_] == '[') ++p_;
          ScanKey("a [table.header] of more than 64 parts");
        } else {
          ScanKey(kDotted);
        }
        line_start = false;
        continue;
      }
      line_start = false;
      char c = s_[p_];
      switch (c) {
        case '\n':
          ++p_;
          line_start = true;
          break;
        case '#': SkipComment(); break;
        case '"':
        case '\'': SkipString(); break;
        case '[':
        case '{':
          if (++stack_ > kMaxTomlNesting) {
            Fail(p_, "arrays and inline tables inside each other");
            break;
          }
          kinds_[stack_ - 1] = c;
          ++p_;
          if (c == '{') ScanKey(kDotted);
          break;
        case ']':
        case '}':
          if (stack_ > 0) --stack_;
          ++p_;
          break;
        case ',':
          ++p_;
          if (stack_ > 0 && kinds_[stack_ - 1] == '{') ScanKey(kDotted);
          break;
        default: ++p_;
      }
    }
    return ok_;
  }

 private:
  static bool IsBare(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }

  void SkipBlanks(bool newlines) {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\r' || (newlines && s_[p_] == '\n'))) ++p_;
  }

  void SkipComment() {
    while (p_ < s_.size() && s_[p_] != '\n') ++p_;
  }

  // At a quote: skips the string, multi-line or not, escapes included. An
  // unterminated single-line string ends at the end of its line.
  void SkipString() {
    const char q = s_[p_];
    const bool basic = q == '"';
    const char triple_chars[3] = {q, q, q};
    const std::string_view triple(triple_chars, 3);
    if (s_.compare(p_, 3, triple) == 0) {
      p_ += 3;
      while (p_ < s_.size()) {
        if (basic && s_[p_] == '\\') {
          p_ += 2;
        } else if (s_.compare(p_, 3, triple) == 0) {
          p_ += 3;
          // Up to two more quotes belong to the content: """a"""" is `a"`.
          for (int i = 0; i < 2 && p_ < s_.size() && s_[p_] == q; ++i) ++p_;
          return;
        } else {
          ++p_;
        }
      }
      p_ = s_.size();
      return;
    }
    ++p_;
    while (p_ < s_.size() && s_[p_] != '\n') {
      if (basic && s_[p_] == '\\') {
        p_ += 2;
        continue;
      }
      if (s_[p_++] == q) return;
    }
    if (p_ > s_.size()) p_ = s_.size();
  }

  // A key: parts (bare or quoted) joined by dots, up to what follows it
  // (`=`, `]`, anything else), which is left for the caller. Newlines are
  // blanks inside an inline table (toml++ then reports them if it must).
  void ScanKey(const char* what) {
    int parts = 0;
    while (ok_) {
      SkipBlanks(/*newlines=*/stack_ > 0);
      if (p_ >= s_.size()) return;
      const size_t part_at = p_;
      const char c = s_[p_];
      if (c == '"' || c == '\'') {
        SkipString();
      } else if (IsBare(c)) {
        while (p_ < s_.size() && IsBare(s_[p_])) ++p_;
      } else {
        return;
      }
      if (++parts > kMaxTomlNesting) return Fail(part_at, what);
      SkipBlanks(/*newlines=*/false);
      if (p_ >= s_.size() || s_[p_] != '.') return;
      ++p_;
    }
  }

  // Reports at `at`: line and column (in characters, as toml++ counts them).
  void Fail(size_t at, const char* what) {
    uint32_t line = 1, column = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<unsigned char>(s_[i]) & 0xC0) != 0x80) {
        ++column;
      }
    }
    errors_->Add(line, column, "nesting deeper than " + std::to_string(kMaxTomlNesting) + " levels (" + what + ")");
    ok_ = false;
  }

  std::string_view s_;
  Errors* errors_;
  size_t p_ = 0;
  int stack_ = 0;                     // arrays and inline tables open
  char kinds_[kMaxTomlNesting] = {};  // '[' or '{' per open level
  bool ok_ = true;
};

}  // namespace

bool CheckTomlNesting(std::string_view text, Errors* errors) { return NestingScanner(text, errors).Run(); }

}  // namespace relais::rules::internal
