// GET /api/studies and /api/studies/<uid>: the store's delivery history per
// study (router/operate/study_search.h), for the admin API and the
// dashboard's search box. Viewer role. docs/admin-api.md.
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/json_safe.h"
#include "base/text.h"
#include "router/operate/admin_api.h"
#include "router/operate/admin_request.h"
#include "router/operate/study_search.h"

namespace relais::router {

using admin::json;

namespace {

// "patient_id=..&name=..": percent-decoded into *q; unknown names, bad
// encodings, dates and limits are errors.
bool ParseStudyQuery(std::string_view s, StudyQuery* q, std::string* error) {
  while (!s.empty()) {
    size_t amp = s.find('&');
    std::string_view part = s.substr(0, amp);
    s = amp == std::string_view::npos ? std::string_view() : s.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string key, value;
    if (!admin::PercentDecode(part.substr(0, eq), &key) ||
        !admin::PercentDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), &value)) {
      *error = "bad percent-encoding in the query";
      return false;
    }
    std::string* field = key == "patient_id"   ? &q->patient_id
                         : key == "name"       ? &q->name
                         : key == "accession"  ? &q->accession
                         : key == "study"      ? &q->study
                         : key == "modality"   ? &q->modality
                         : key == "calling_ae" ? &q->calling_ae
                                               : nullptr;
    if (field != nullptr) {
      *field = value;
    } else if (key == "from" || key == "to") {
      Status st = ParseQueryDate(value, key == "from" ? &q->from : &q->to);
      if (!st.ok()) {
        *error = key + ": " + st.message();
        return false;
      }
    } else if (key == "limit") {
      char* end = nullptr;
      unsigned long n = std::strtoul(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 1 || n > 1000) {
        *error = "limit must be an integer from 1 to 1000";
        return false;
      }
      q->limit = n;
    } else {
      *error = "unknown parameter \"" + key +
               "\": use patient_id, name, accession, study, modality, from, to, calling_ae, limit";
      return false;
    }
  }
  return true;
}

}  // namespace

void AdminApi::Studies(Ctx& c) {
  if (src_.store == nullptr) {
    c.respond({409, "application/json", admin::ErrorBody("no store"), {}, ""});
    return;
  }
  StudyQuery q;
  std::string error;
  if (!ParseStudyQuery(c.req.query, &q, &error)) {
    c.respond({400, "application/json", admin::ErrorBody(error), {}, ""});
    return;
  }
  std::vector<store::StudyHistory> studies;
  bool truncated = false;
  Status st = FindStudies(*src_.store, q, &studies, &truncated);
  if (!st.ok()) {
    c.respond({500, "application/json", admin::ErrorBody("store: " + st.message()), {}, ""});
    return;
  }
  c.respond({200, "application/json", StudiesJson(studies, truncated), {}, ""});
}

void AdminApi::Study(Ctx& c, const std::string& encoded_uid) {
  std::string uid;
  if (!admin::PercentDecode(encoded_uid, &uid)) uid = encoded_uid;
  if (src_.store == nullptr) {
    c.respond({409, "application/json", admin::ErrorBody("no store"), {}, ""});
    return;
  }
  StudyQuery q;
  q.study = uid;
  q.limit = 1;
  std::vector<store::StudyHistory> studies;
  bool truncated = false;
  Status st = FindStudies(*src_.store, q, &studies, &truncated);
  if (st.ok() && studies.empty()) {
    c.respond({404,
               "application/json",
               admin::ErrorBody("no study " + uid +
                                " in the delivery history (never received, or past "
                                "[store] history_retention)"),
               {},
               ""});
    return;
  }
  // Its objects still stored: a scan of the object records (the store holds
  // only the objects within their retention).
  json objects = json::array();
  if (st.ok()) {
    st = src_.store->List([&](const store::ObjectMeta& m) {
      if (m.study_instance_uid != uid) return true;
      json routes = json::array();
      for (const auto& r : m.routes) routes.push_back(r.destination);
      objects.push_back({{"sop_instance_uid", m.sop_instance_uid},
                         {"series_instance_uid", m.series_instance_uid},
                         {"modality", m.modality},
                         {"received", IsoTime(m.received_unix_ms)},
                         {"raw_size", m.raw_size},
                         {"routing", m.routing},
                         {"routes", std::move(routes)}});
      return objects.size() < 10000;
    });
  }
  if (!st.ok()) {
    c.respond({500, "application/json", admin::ErrorBody("store: " + st.message()), {}, ""});
    return;
  }
  json body = json::parse(StudyJson(studies[0]));
  body["stored_objects"] = std::move(objects);
  c.respond({200, "application/json", JsonDump(std::move(body)), {}, ""});
}

}  // namespace relais::router
