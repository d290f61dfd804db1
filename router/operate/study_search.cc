#include "router/operate/study_search.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/json_safe.h"
#include "base/text.h"

namespace relais::router {
namespace {

// Base letters of U+00C0..U+00FF (Latin-1 Supplement letters); "" keeps the
// character as it is (× and ÷).
constexpr const char* kLatin1[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i",  "i",   // C0-CF
    "d", "n", "o", "o", "o", "o", "o",  "",  "o", "u", "u", "u", "u", "y", "th", "ss",  // D0-DF
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i",  "i",   // E0-EF
    "d", "n", "o", "o", "o", "o", "o",  "",  "o", "u", "u", "u", "u", "y", "th", "y",   // F0-FF
};

// Base letters of U+0100..U+017F (Latin Extended-A), by ranges.
const char* LatinExtendedA(uint32_t cp) {
  struct Range {
    uint32_t last;
    const char* base;
  };
  static constexpr Range kRanges[] = {
      {0x105, "a"}, {0x10D, "c"}, {0x111, "d"}, {0x11B, "e"}, {0x123, "g"}, {0x127, "h"},  {0x131, "i"}, {0x133, "ij"},
      {0x135, "j"}, {0x138, "k"}, {0x142, "l"}, {0x14B, "n"}, {0x151, "o"}, {0x153, "oe"}, {0x159, "r"}, {0x161, "s"},
      {0x167, "t"}, {0x173, "u"}, {0x175, "w"}, {0x178, "y"}, {0x17E, "z"}, {0x17F, "s"},
  };
  for (const Range& r : kRanges) {
    if (cp <= r.last) return r.base;
  }
  return nullptr;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool HasFolded(const std::vector<std::string>& values, const std::string& want) {
  const std::string w = Lower(want);
  return std::any_of(values.begin(), values.end(), [&](const std::string& v) { return Lower(v) == w; });
}

std::vector<std::string> Words(const std::string& folded) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < folded.size()) {
    size_t j = folded.find(' ', i);
    if (j == std::string::npos) j = folded.size();
    if (j > i) out.push_back(folded.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// The date a study is searched by: its Study Date, or the UTC day of its
// first object.
std::string SearchDate(const store::StudyHistory& h) {
  if (h.study_date.size() == 8) return h.study_date;
  time_t t = static_cast<time_t>(h.first_received_unix_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

nlohmann::json IsoOrNull(int64_t unix_ms) { return unix_ms == 0 ? nlohmann::json() : nlohmann::json(IsoTime(unix_ms)); }

nlohmann::json StudyObject(const store::StudyHistory& h) {
  nlohmann::json dests = nlohmann::json::array();
  for (const store::StudyDestination& d : h.destinations) {
    dests.push_back({{"destination", d.destination},
                     {"queued", d.queued},
                     {"sent", d.sent},
                     {"dead", d.dead},
                     {"attempts", d.attempts},
                     {"last_sent", IsoOrNull(d.last_sent_unix_ms)},
                     {"last_dead", IsoOrNull(d.last_dead_unix_ms)},
                     {"last_dead_reason", d.last_dead_reason}});
  }
  return {{"study_instance_uid", h.study_instance_uid},
          {"patient_id", h.patient_id},
          {"patient_name", h.patient_name},
          {"accession_number", h.accession_number},
          {"study_date", h.study_date},
          {"modalities", h.modalities},
          {"calling_aes", h.calling_aes},
          {"objects", h.objects},
          {"first_received", IsoTime(h.first_received_unix_ms)},
          {"last_received", IsoTime(h.last_received_unix_ms)},
          {"last_change", IsoTime(h.last_change_unix_ms)},
          {"destinations", std::move(dests)}};
}

}  // namespace

Status ParseQueryDate(std::string_view in, std::string* out) {
  std::string d;
  for (char c : in) {
    if (c != '-') d += c;
  }
  bool digits = d.size() == 8 && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || (in.size() != 8 && in.size() != 10)) {
    return Status::InvalidArgument("date '" + std::string(in) + "' is not YYYY-MM-DD or YYYYMMDD");
  }
  *out = d;
  return Status::OK();
}

std::string FoldText(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += (c == '^' || c == '=' || c == ',' || c == '\t') ? ' ' : static_cast<char>(std::tolower(c));
      ++i;
      continue;
    }
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {  // not UTF-8: kept as is
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    uint32_t cp = 0;
    if (n == 2) cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    const char* base = nullptr;
    if (cp >= 0xC0 && cp <= 0xFF && kLatin1[cp - 0xC0][0] != '\0') base = kLatin1[cp - 0xC0];
    if (cp >= 0x100 && cp <= 0x17F) base = LatinExtendedA(cp);
    if (base != nullptr) {
      out += base;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

bool StudyMatches(const StudyQuery& q, const store::StudyHistory& h) {
  if (!q.patient_id.empty() && h.patient_id != q.patient_id) return false;
  if (!q.accession.empty() && h.accession_number != q.accession) return false;
  if (!q.study.empty() && h.study_instance_uid != q.study) return false;
  if (!q.modality.empty() && !HasFolded(h.modalities, q.modality)) return false;
  if (!q.calling_ae.empty() && !HasFolded(h.calling_aes, q.calling_ae)) return false;
  if (!q.name.empty()) {
    const std::string name = FoldText(h.patient_name);
    for (const std::string& w : Words(FoldText(q.name))) {
      if (name.find(w) == std::string::npos) return false;
    }
  }
  if (!q.from.empty() || !q.to.empty()) {
    const std::string d = SearchDate(h);
    if (!q.from.empty() && d < q.from) return false;
    if (!q.to.empty() && d > q.to) return false;
  }
  return true;
}

Status FindStudies(const store::Store& st, const StudyQuery& q, std::vector<store::StudyHistory>* out,
                   bool* truncated) {
  *truncated = false;
  out->clear();
  return st.ListStudies([&](const store::StudyHistory& h) {
    if (!StudyMatches(q, h)) return true;
    if (q.limit != 0 && out->size() == q.limit) {
      *truncated = true;
      return false;
    }
    out->push_back(h);
    return true;
  });
}

std::string StudiesJson(const std::vector<store::StudyHistory>& studies, bool truncated) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& h : studies) list.push_back(StudyObject(h));
  return JsonDump({{"studies", std::move(list)}, {"truncated", truncated}});
}

std::string StudyJson(const store::StudyHistory& h) { return JsonDump(StudyObject(h)); }

}  // namespace relais::router
