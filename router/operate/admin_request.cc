// The admin API's request helpers (router/operate/admin_request.h).
#include "router/operate/admin_request.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "base/hex.h"
#include "base/json_safe.h"
#include "base/text.h"

namespace relais::router::admin {
namespace {

constexpr size_t kMaxJsonDepth = 16;

// Nesting depth of a JSON text (brackets outside strings); stops counting
// past `limit`.
size_t JsonDepth(std::string_view text, size_t limit) {
  size_t depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) return max_depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

// A whole decimal `text` in [1, 1000] into *out.
bool ParseLimit(const std::string& value, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = value.empty() || value[0] == '-' ? 0 : std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || end == nullptr || *end != '\0' || errno != 0 || v < 1 || v > 1000) return false;
  *out = v;
  return true;
}

}  // namespace

json IsoOrNull(int64_t unix_ms) { return unix_ms == 0 ? json(nullptr) : json(IsoTime(unix_ms)); }

std::string ErrorBody(const std::string& what) { return JsonDump(json{{"error", what}}); }

const char* OutcomeOf(int status) {
  if (status < 400) return "ok";
  if (status == 401) return "unauthorized";
  if (status == 403) return "forbidden";
  if (status == 404) return "not-found";
  if (status < 500) return "bad-request";
  return "error";
}

const char* RoleName(AdminRole r) {
  switch (r) {
    case AdminRole::kViewer: return "viewer";
    case AdminRole::kOperator: return "operator";
    case AdminRole::kAdmin: return "admin";
    case AdminRole::kNone: break;
  }
  return "none";
}

bool PercentDecode(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out->push_back(' ');
    } else if (s[i] == '%') {
      std::string byte;
      if (i + 2 >= s.size()) return false;
      if (!HexDecode(s.substr(i + 1, 2), &byte)) return false;
      out->append(byte);
      i += 2;
    } else {
      out->push_back(s[i]);
    }
  }
  return true;
}

bool ParseQueueQuery(std::string_view q, QueueQuery* out, std::string* error) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string key, value;
    if (!PercentDecode(part.substr(0, eq), &key) ||
        !PercentDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), &value)) {
      *error = "bad percent-encoding in the query";
      return false;
    }
    if (key == "destination") {
      out->destination = value;
    } else if (key == "patient_id") {
      out->patient_id = value;
    } else if (key == "study_instance_uid") {
      out->study_instance_uid = value;
    } else if (key == "sop_instance_uid") {
      out->sop_instance_uid = value;
    } else if (key == "cursor") {
      out->cursor = value;
    } else if (key == "limit") {
      if (!ParseLimit(value, &out->limit)) {
        *error = "limit must be an integer from 1 to 1000";
        return false;
      }
    } else {
      *error = "unknown parameter \"" + key +
               "\": use destination, patient_id, study_instance_uid, sop_instance_uid, limit, cursor";
      return false;
    }
  }
  return true;
}

bool QueueCursor::Before(const store::QueueRow& r) const {
  if (r.destination != destination) return r.destination > destination;
  if (r.priority != priority) return r.priority < priority;
  return r.object_id > object_id;
}

std::string EncodeQueueCursor(const store::QueueRow& last) {
  std::string raw = last.destination;
  raw.push_back('\0');
  raw += std::to_string(last.priority);
  raw.push_back('\0');
  raw += std::to_string(last.object_id);
  return HexEncode(raw);
}

bool DecodeQueueCursor(std::string_view text, QueueCursor* out) {
  std::string raw;
  if (!HexDecode(text, &raw)) return false;
  const size_t z1 = raw.find('\0');
  if (z1 == std::string::npos) return false;
  const size_t z2 = raw.find('\0', z1 + 1);
  if (z2 == std::string::npos) return false;
  const std::string prio = raw.substr(z1 + 1, z2 - z1 - 1), id = raw.substr(z2 + 1);
  char* e1 = nullptr;
  char* e2 = nullptr;
  errno = 0;
  out->priority = std::strtoll(prio.c_str(), &e1, 10);
  out->object_id = std::strtoull(id.c_str(), &e2, 10);
  out->destination = raw.substr(0, z1);
  return !prio.empty() && !id.empty() && *e1 == '\0' && *e2 == '\0' && errno == 0;
}

bool ParseBody(const std::string& body, std::initializer_list<std::string_view> allowed, json* out,
               std::string* error) {
  size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) {
    *out = json::object();
    return true;
  }
  // nlohmann's lexer ends its input at a NUL byte: refuse them first.
  if (body.find('\0') != std::string::npos) {
    *error = "the body is not valid JSON (it holds a NUL byte); send a JSON object";
    return false;
  }
  if (JsonDepth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    *error = "the body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  *out = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    *error = "the body is not valid JSON (RFC 8259); send a JSON object";
    return false;
  }
  if (!out->is_object()) {
    *error = "the body must be a JSON object";
    return false;
  }
  for (auto it = out->begin(); it != out->end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      *error =
          "unknown field \"" + it.key() + "\"" + (names.empty() ? ": this takes no fields" : "; allowed: " + names);
      return false;
    }
  }
  return true;
}

}  // namespace relais::router::admin
