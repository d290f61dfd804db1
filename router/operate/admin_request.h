// What the admin API's handlers share (router/operate/admin_api.h): the
// request in progress (AdminApi::Ctx), the answers every handler builds
// (error bodies, ISO times, status codes), and the parsers for what a
// client sends: the query string of the listings, the cursor of their
// pages, and action bodies. Internal to operate/: admin_api.cc (the route
// table), admin_views.cc (GET) and admin_actions.cc (POST) include it.
//
// The parsers return false with a message for a 400 answer; none throws.
// Thread: loop thread only, as AdminApi.
#ifndef RELAIS_ROUTER_OPERATE_ADMIN_REQUEST_H_
#define RELAIS_ROUTER_OPERATE_ADMIN_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "router/operate/admin_api.h"
#include "store/store.h"

namespace relais::router {

// One request in progress. Handlers that answer later (after a store
// commit or a rules reload) keep it alive with shared_from_this().
struct AdminApi::Ctx : std::enable_shared_from_this<AdminApi::Ctx> {
  AdminRequest req;
  Respond respond;  // answers once (later calls are dropped); set by Handle
  const Token* token = nullptr;
  int64_t started_ms = 0;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  bool answered = false;
};

namespace admin {

using nlohmann::json;

// ISO time, or null when 0.
json IsoOrNull(int64_t unix_ms);
// {"error":what}, as every refusal and failure answers.
std::string ErrorBody(const std::string& what);
// The label of an answer's status for Metrics::AdminRequest: "ok",
// "unauthorized", "forbidden", "not-found", "bad-request", "error".
const char* OutcomeOf(int status);
// "viewer", "operator", "admin"; "none" for kNone.
const char* RoleName(AdminRole r);

// application/x-www-form-urlencoded decoding ('+' is a space, %XX a byte);
// false on a '%' without two hex digits.
bool PercentDecode(std::string_view s, std::string* out);

// The query of GET /api/queue and /api/dead (docs/admin-api.md).
struct QueueQuery {
  std::string destination, patient_id, study_instance_uid, sop_instance_uid, cursor;
  uint64_t limit = 100;  // 1 to 1000
};
// Parses "name=value&..." (percent-encoded). Unknown names, bad encoding
// and a limit out of range are errors.
bool ParseQueueQuery(std::string_view query, QueueQuery* out, std::string* error);

// Where a page of a listing ends: the last row returned. Rows sort by
// (destination, priority descending, object id); the next page starts
// after this row.
struct QueueCursor {
  std::string destination;
  int64_t priority = 0;
  uint64_t object_id = 0;

  // True if `r` sorts after the cursor's row.
  bool Before(const store::QueueRow& r) const;
};
// The cursor as next_cursor carries it: hex of
// "destination\0priority\0object_id".
std::string EncodeQueueCursor(const store::QueueRow& last);
// False if `text` is not a cursor EncodeQueueCursor made.
bool DecodeQueueCursor(std::string_view text, QueueCursor* out);

// Parses an action's body, which must be empty (= {}) or a JSON object
// whose keys are all in `allowed`; refuses NUL bytes and nesting deeper
// than 16 levels before parsing. On failure returns false with *error set.
bool ParseBody(const std::string& body, std::initializer_list<std::string_view> allowed, json* out, std::string* error);

}  // namespace admin
}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_ADMIN_REQUEST_H_
