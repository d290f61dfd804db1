// The audit trail's records (router/record/audit_format.h): the bounds of
// what a record holds, and the parser that reads a line back.
#include "router/record/audit_format.h"

#include <algorithm>

#include "base/hex.h"
#include "base/sha256.h"
#include "base/text.h"

namespace relais::router {
namespace audit {
namespace {

bool IsHash(std::string_view s) { return s.size() == 64 && IsLowerHex(s); }

// A flat JSON object (RFC 8259): string keys; string, number, true, false
// or null values. Values are kept as their decoded string (numbers and
// literals as written). Nested objects and arrays are not audit records.
class FlatJson {
 public:
  explicit FlatJson(std::string_view s) : s_(s) {}

  // Parses the whole input; on failure returns false and sets error().
  bool Parse() {
    Ws();
    if (!Eat('{')) return Fail("expected '{'");
    Ws();
    if (Eat('}')) return End();
    for (;;) {
      std::string key, value;
      Ws();
      if (!String(&key)) return false;
      Ws();
      if (!Eat(':')) return Fail("expected ':' after a key");
      Ws();
      if (!Value(&value)) return false;
      fields_.emplace_back(std::move(key), std::move(value));
      Ws();
      if (Eat(',')) continue;
      if (Eat('}')) return End();
      return Fail("expected ',' or '}'");
    }
  }
  const std::string& error() const { return error_; }
  const std::string* Get(std::string_view key) const {
    for (const auto& [k, v] : fields_) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  bool End() {
    Ws();
    return i_ == s_.size() ? true : Fail("trailing bytes after the object");
  }
  bool Fail(const char* why) {
    error_ = std::string(why) + " at byte " + std::to_string(i_ + 1);
    return false;
  }
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
  }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return Fail("expected a string");
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return Fail("control character in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/': out->push_back(e); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (s_.size() - i_ < 4) return Fail("truncated \\u escape");
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            char h = s_[i_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
            else return Fail("bad \\u escape");
          }
          // Our writer only escapes control characters; keep others as UTF-8.
          if (v < 0x80) {
            out->push_back(static_cast<char>(v));
          } else if (v < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (v >> 6)));
            out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (v >> 12)));
            out->push_back(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
          }
          break;
        }
        default: return Fail("bad escape in a string");
      }
    }
    return Fail("unterminated string");
  }
  bool Value(std::string* out) {
    if (i_ >= s_.size()) return Fail("expected a value");
    char c = s_[i_];
    if (c == '"') return String(out);
    if (c == '{' || c == '[') return Fail("nested values are not audit record fields");
    for (std::string_view lit : {"true", "false", "null"}) {
      if (s_.substr(i_, lit.size()) == lit) {
        i_ += lit.size();
        *out = std::string(lit);
        return true;
      }
    }
    size_t start = i_;
    Eat('-');
    size_t digits = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    if (i_ == digits) return Fail("expected a value");
    if (Eat('.')) {
      size_t frac = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == frac) return Fail("bad number");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!Eat('+')) Eat('-');
      size_t exp = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == exp) return Fail("bad number");
    }
    *out = std::string(s_.substr(start, i_ - start));
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
  std::string error_;
  std::vector<std::pair<std::string, std::string>> fields_;
};

}  // namespace

ParsedRecord ParseRecord(std::string_view line) {
  ParsedRecord p;
  FlatJson json(line);
  if (!json.Parse()) {
    p.error = "malformed JSON: " + json.error();
    return p;
  }
  // The hash must be the last field, written exactly as the writer does.
  size_t at = line.rfind(kHashKey);
  if (at == std::string_view::npos || line.size() != at + kHashKey.size() + 64 + 2 ||
      line.substr(line.size() - 2) != "\"}" || !IsHash(line.substr(at + kHashKey.size(), 64))) {
    p.error = "no \"hash\" as the last field";
    return p;
  }
  p.hash = std::string(line.substr(at + kHashKey.size(), 64));
  const std::string* prev = json.Get("prev");
  const std::string* seq = json.Get("seq");
  const std::string* kind = json.Get("kind");
  if (prev == nullptr || !IsHash(*prev)) {
    p.error = "no valid \"prev\" field";
    return p;
  }
  if (seq == nullptr || seq->empty() || seq->size() > 19 || seq->find_first_not_of("0123456789") != std::string::npos) {
    p.error = "no valid \"seq\" field";
    return p;
  }
  if (kind == nullptr) {
    p.error = "no \"kind\" field";
    return p;
  }
  p.prev = *prev;
  p.seq = std::stoull(*seq);
  p.kind = *kind;
  if (const std::string* r = json.Get("reason")) p.reason = *r;
  if (const std::string* t = json.Get("torn_bytes")) p.torn_bytes = *t;
  if (const std::string* f = json.Get("prev_file")) p.prev_file = *f;
  if (AuditLog::Sha256Hex(line.substr(0, at)) != p.hash) {
    p.error = "hash does not match the record (the line was changed)";
    return p;
  }
  p.ok = true;
  return p;
}

size_t EscapedSize(std::string_view s) { return JsonEscape(std::string(s)).size(); }

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace audit

std::string AuditCut(std::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes && audit::EscapedSize(value) <= max_bytes) return std::string(value);
  const std::string marker = "...[cut, " + std::to_string(value.size()) + " bytes]";
  const size_t room = max_bytes > marker.size() ? max_bytes - marker.size() : 0;
  size_t i = 0, used = 0;
  while (i < value.size()) {
    const size_t n = std::max<size_t>(Utf8SequenceLength(value, i), 1);  // a byte that is not UTF-8 counts alone
    const size_t e = audit::EscapedSize(value.substr(i, n));
    if (used + e > room) break;
    used += e;
    i += n;
  }
  return std::string(value.substr(0, i)) + marker;
}

std::string_view AuditAddressOf(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    const size_t close = peer.find(']');
    if (close != std::string_view::npos && close + 1 < peer.size() && peer[close + 1] == ':') {
      return peer.substr(1, close - 1);
    }
    return peer;
  }
  const size_t colon = peer.find(':');
  if (colon != std::string_view::npos && peer.find(':', colon + 1) == std::string_view::npos) {
    return peer.substr(0, colon);  // IPv4 or a name with a port; a bare IPv6 address stays whole
  }
  return peer;
}

std::string AuditLog::Sha256Hex(std::string_view bytes) {
  std::string hex = ::relais::Sha256Hex(bytes);
  if (hex.empty()) return std::string(audit::kZeroHash);  // cannot happen with OpenSSL's built-in SHA-256
  return hex;
}

}  // namespace relais::router
