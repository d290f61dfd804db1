// Finding studies in the store's delivery history (store FORMAT.md
// `history`): the query shared by `relais find` (router/cli/find_cli.cc) and
// `GET /api/studies` (router/operate/admin_studies.cc), its matching, and the
// JSON both print. A search is a scan of the history table, one row per
// study (plus one per destination): compact, and it outlives the objects.
//
// Thread: any (the Store's read methods are thread-safe).
#ifndef RELAIS_ROUTER_OPERATE_STUDY_SEARCH_H_
#define RELAIS_ROUTER_OPERATE_STUDY_SEARCH_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::router {

// Every set field must match (AND). Empty fields match everything.
struct StudyQuery {
  std::string patient_id;  // exact
  std::string name;        // every word of it is in the patient name, folded (FoldText)
  std::string accession;   // exact
  std::string study;       // Study Instance UID, exact
  std::string modality;    // one of the study's modalities, case-insensitive
  std::string calling_ae;  // one of the study's calling AE titles, case-insensitive
  // Inclusive dates, YYYYMMDD (or YYYY-MM-DD, normalised by ParseQueryDate).
  // Compared with the Study Date (0008,0020) when the study has one, else
  // with the UTC day its first object was received.
  std::string from;
  std::string to;
  size_t limit = 200;  // at most this many studies; 0: no limit
};

// "2026-12-07" or "20261207" → "20261207"; InvalidArgument otherwise.
Status ParseQueryDate(std::string_view in, std::string* out);

// `s` (UTF-8) lowercased, Latin diacritics removed ("Hélène" → "helene",
// "Æ" → "ae"), and the DICOM PN separators ^ and = as spaces: what names are
// compared as.
std::string FoldText(std::string_view s);

// Whether study `h` matches `q`.
bool StudyMatches(const StudyQuery& q, const store::StudyHistory& h);

// The studies matching `q`, in Study UID order; *truncated when q.limit cut
// the list.
Status FindStudies(const store::Store& st, const StudyQuery& q, std::vector<store::StudyHistory>* out, bool* truncated);

// {"studies":[...],"truncated":false}: one object per study with its
// destinations (docs/admin-api.md `GET /api/studies`).
std::string StudiesJson(const std::vector<store::StudyHistory>& studies, bool truncated);
// One study's object, as in StudiesJson.
std::string StudyJson(const store::StudyHistory& h);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_STUDY_SEARCH_H_
