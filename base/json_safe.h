// nlohmann::json output that cannot throw on peer data.
//
// nlohmann::json::dump() throws type_error.316 on a string that is not UTF-8
// (a Latin-1 Error Comment from a PACS, an ISO_IR 100 patient name kept as
// bytes). JsonDump makes every string (and object key) valid UTF-8 first,
// bytes that are not UTF-8 shown as the text "\xHH" (base/text.h
// Utf8Visible), and dumps with the replace handler as a last guard: it never
// throws on content.
#ifndef RELAIS_BASE_JSON_SAFE_H_
#define RELAIS_BASE_JSON_SAFE_H_

#include <nlohmann/json.hpp>

#include <string>
#include <utility>

#include "base/text.h"

namespace relais {

// Rewrites, in place, every string value and key of `j` that is not UTF-8.
inline void MakeJsonUtf8(nlohmann::json* j) {
  if (j->is_string()) {
    std::string& s = j->get_ref<std::string&>();
    if (!IsUtf8(s)) s = Utf8Visible(s);
  } else if (j->is_array()) {
    for (nlohmann::json& v : *j) MakeJsonUtf8(&v);
  } else if (j->is_object()) {
    bool bad_key = false;
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (!IsUtf8(it.key())) bad_key = true;
      MakeJsonUtf8(&it.value());
    }
    if (bad_key) {
      nlohmann::json fixed = nlohmann::json::object();
      for (auto it = j->begin(); it != j->end(); ++it) fixed[Utf8Visible(it.key())] = std::move(it.value());
      *j = std::move(fixed);
    }
  }
}

// The JSON text of `j`, valid UTF-8 whatever its strings hold. Never throws
// on content (only std::bad_alloc).
inline std::string JsonDump(nlohmann::json j, int indent = -1) {
  MakeJsonUtf8(&j);
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace relais

#endif  // RELAIS_BASE_JSON_SAFE_H_
