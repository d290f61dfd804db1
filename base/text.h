// Small text helpers shared by the command line and logs: UTF-8 checking
// (RFC 3629), visible escaping of bytes that are not UTF-8, JSON string
// escaping (RFC 8259 section 7), log field escaping and ISO 8601 UTC times.
//
// Text that leaves Relais (JSON, logs, audit, alerts) is valid UTF-8 always:
// peer bytes that are not UTF-8 are shown as the four characters "\xHH",
// never passed raw.
#ifndef RELAIS_BASE_TEXT_H_
#define RELAIS_BASE_TEXT_H_

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace relais {

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629 section 4: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0 when the byte
// at s[i] does not start one.
inline size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) return 0;
  }
  return n;
}

inline bool IsUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

inline void AppendHex2(unsigned char c, std::string* out) {
  static const char kHex[] = "0123456789ABCDEF";
  out->push_back(kHex[c >> 4]);
  out->push_back(kHex[c & 0xF]);
}

// Appends the visible text "\xHH".
inline void AppendHexByte(unsigned char c, std::string* out) {
  out->append("\\x");
  AppendHex2(c, out);
}

// `s` as valid UTF-8: well-formed sequences are kept, every other byte
// becomes the visible text "\xHH" (e.g. Latin-1 "\xC9" for an undecoded E
// acute). Valid UTF-8 comes back unchanged.
inline std::string Utf8Visible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      AppendHexByte(static_cast<unsigned char>(s[i]), &out);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Peer text made safe for one log line: Utf8Visible, and every control
// character (C0, DEL, C1 U+0080-U+009F: newline, carriage return, ESC, ...)
// as "\n", "\r", "\t" or "\xHH", so that one line stays one event. With
// `quoted`, also '"' and '\\' are escaped, for a value written between quotes
// (reason="...").
inline std::string LogEscape(std::string_view s, bool quoted = false) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      AppendHexByte(c, &out);
      ++i;
      continue;
    }
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) {  // C1 control
      out.append("\\u00");
      AppendHex2(static_cast<unsigned char>(s[i + 1]), &out);
      i += 2;
      continue;
    }
    if (n == 1 && (c < 0x20 || c == 0x7F)) {
      if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else AppendHexByte(c, &out);
    } else if (quoted && (c == '"' || c == '\\')) {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

// A peer value as one log token: LogEscape'd, and put between quotes (with
// '"' and '\\' escaped) when it is empty or holds a space, '"', '=' or '\\',
// so that "calling=X event=forged" cannot be made to look like two fields.
inline std::string LogToken(std::string_view s) {
  bool plain = !s.empty();
  for (char c : s) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\') plain = false;
  }
  if (plain) return LogEscape(s);
  return "\"" + LogEscape(s, /*quoted=*/true) + "\"";
}

// The contents of a JSON string (without the quotes), always valid UTF-8:
// bytes that are not UTF-8 become the text "\xHH" (written "\\xHH" in JSON).
inline std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out.push_back('\\');
        AppendHexByte(c, &out);
      } else {
        out.append(s.substr(i, n));
        i += n - 1;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

// "a","b" (no brackets).
inline std::string JsonList(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "\"" : ",\"") + JsonEscape(s) + "\"";
  return out;
}

// "2026-11-28T08:30:00.123Z"; "-" for 0.
inline std::string IsoTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  return buf;
}

}  // namespace relais

#endif  // RELAIS_BASE_TEXT_H_
