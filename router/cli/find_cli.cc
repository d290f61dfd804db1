#include "router/cli/find_cli.h"

#include <cstdio>

#include "base/text.h"

namespace relais::router {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out.empty() ? "-" : out;
}

std::string Or(const std::string& s) { return s.empty() ? "-" : s; }

void PrintStudy(const store::StudyHistory& h) {
  std::printf("study %s\n", LogEscape(h.study_instance_uid).c_str());
  std::printf("  patient %s %s  accession %s  date %s  modality %s  from %s\n", LogEscape(Or(h.patient_id)).c_str(),
              ("\"" + LogEscape(h.patient_name, /*quoted=*/true) + "\"").c_str(),
              LogEscape(Or(h.accession_number)).c_str(), LogEscape(Or(h.study_date)).c_str(),
              LogEscape(Join(h.modalities)).c_str(), LogEscape(Join(h.calling_aes)).c_str());
  std::printf("  %u object(s) received %s .. %s\n", h.objects, IsoTime(h.first_received_unix_ms).c_str(),
              IsoTime(h.last_received_unix_ms).c_str());
  if (h.destinations.empty()) std::printf("  (no destination)\n");
  for (const store::StudyDestination& d : h.destinations) {
    std::string line = "  -> " + LogEscape(d.destination) + ":";
    if (d.queued > 0) line += " queued " + std::to_string(d.queued) + ";";
    if (d.sent > 0) line += " sent " + std::to_string(d.sent) + " (last " + IsoTime(d.last_sent_unix_ms) + ");";
    if (d.dead > 0) {
      line += " dead " + std::to_string(d.dead) + " (" + IsoTime(d.last_dead_unix_ms) + ": " +
              LogEscape(d.last_dead_reason) + ");";
    }
    if (d.queued == 0 && d.sent == 0 && d.dead == 0) line += " nothing left (purged);";
    line += " " + std::to_string(d.attempts) + " attempt(s)";
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace

CLI::App* AddFindCommand(CLI::App* app, FindArgs* a) {
  CLI::App* f = app->add_subcommand(
      "find",
      "Find studies by patient, accession, UID, modality, date or calling AE: what went where, when "
      "(works while serving; kept after the objects go, [store] history_retention)");
  f->add_option("--config,-c", a->config_path, "Appliance configuration (TOML)")->required();
  f->add_option("--patient-id", a->query.patient_id, "Patient ID (0010,0020), exact");
  f->add_option("--name", a->query.name,
                "Patient name: every word must appear, case and accents ignored (\"helene dupont\")");
  f->add_option("--accession", a->query.accession, "Accession Number (0008,0050), exact");
  f->add_option("--study", a->query.study, "Study Instance UID");
  f->add_option("--modality", a->query.modality, "Modality (CT, MR, ...)");
  f->add_option("--calling-ae", a->query.calling_ae, "AE title the study was received from");
  f->add_option("--from", a->from,
                "First day, YYYY-MM-DD: the Study Date (0008,0020), or the day received when the study has none");
  f->add_option("--to", a->to, "Last day, YYYY-MM-DD (inclusive), same date as --from");
  f->add_option("--limit", a->query.limit, "At most this many studies (0: all)")->capture_default_str();
  f->add_flag("--json", a->json, "One JSON document, as GET /api/studies answers");
  return f;
}

int FindCommand(const store::Options& options, const FindArgs& a) {
  StudyQuery q = a.query;
  for (auto [in, out] : {std::pair{&a.from, &q.from}, std::pair{&a.to, &q.to}}) {
    if (in->empty()) continue;
    Status s = ParseQueryDate(*in, out);
    if (!s.ok()) {
      std::fprintf(stderr, "relais: %s\n", s.message().c_str());
      return 2;
    }
  }
  Result<std::unique_ptr<store::Store>> st = store::Store::Open(options);
  if (!st.ok()) {
    std::fprintf(stderr, "relais: %s\n", st.status().message().c_str());
    return 1;
  }
  std::vector<store::StudyHistory> studies;
  bool truncated = false;
  Status s = FindStudies(**st, q, &studies, &truncated);
  if (!s.ok()) {
    std::fprintf(stderr, "relais: %s\n", s.message().c_str());
    return 1;
  }
  if (a.json) {
    std::printf("%s\n", StudiesJson(studies, truncated).c_str());
    return 0;
  }
  for (const auto& h : studies) PrintStudy(h);
  if (studies.empty()) std::fprintf(stderr, "no study matches\n");
  if (truncated) std::fprintf(stderr, "(first %zu studies shown: --limit)\n", studies.size());
  return 0;
}

}  // namespace relais::router
