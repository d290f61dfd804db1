#include "router/cli/rules_cli.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdio>
#include <ctime>

#include "base/text.h"
#include "rules/routing.h"

namespace relais::router {
namespace {

// A JSON string, quotes included: valid UTF-8 whatever the file holds.
std::string JsonString(const std::string& s) { return "\"" + JsonEscape(s) + "\""; }

bool ParseAt(const std::string& at, std::time_t* out) {
  struct tm tm = {};
  int y, mo, d, h, mi;
  if (std::sscanf(at.c_str(), "%d-%d-%d %d:%d", &y, &mo, &d, &h, &mi) != 5 &&
      std::sscanf(at.c_str(), "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi) != 5) {
    return false;
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_isdst = -1;
  *out = mktime(&tm);
  return *out != static_cast<std::time_t>(-1);
}

// "remove (0009,1010); set InstitutionName = 'X'" for people.
std::string DescribeEdits(const std::vector<rules::TagEdit>* edits) {
  if (edits == nullptr) return "";
  std::string out;
  for (const rules::TagEdit& e : *edits) {
    if (!out.empty()) out += "; ";
    switch (e.op) {
      case rules::TagEdit::Op::kSet: out += "set " + e.target + " = '" + e.value + "'"; break;
      case rules::TagEdit::Op::kRemove: out += "remove " + e.target; break;
      case rules::TagEdit::Op::kPrefix: out += "prefix " + e.target + " with '" + e.value + "'"; break;
      case rules::TagEdit::Op::kCopy: {
        char from[16];
        std::snprintf(from, sizeof(from), "(%04X,%04X)", e.from_tag >> 16, e.from_tag & 0xFFFF);
        out += "copy " + std::string(from) + " to " + e.target;
        break;
      }
    }
  }
  return out;
}

}  // namespace

int RulesCheck(const std::string& path) {
  auto loaded = rules::RuleSet::Load(path);
  if (!loaded.ok()) {
    std::printf("%s\n", loaded.status().message().c_str());
    return 1;
  }
  const rules::RuleSet& rs = **loaded;
  std::printf("%s: OK: %zu rules, %zu destinations, %zu files\n", path.c_str(), rs.rule_count(),
              rs.destinations().size(), rs.source_files().size());
  return 0;
}

int RulesTest(const RulesTestOptions& o) {
  OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
  auto loaded = rules::RuleSet::Load(o.rules_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().message().c_str());
    return 1;
  }
  const rules::RuleSet& rs = **loaded;
  std::time_t now = std::time(nullptr);
  if (!o.at.empty() && !ParseAt(o.at, &now)) {
    std::fprintf(stderr, "relais: --at '%s' is not \"YYYY-MM-DD HH:MM\" (local time)\n", o.at.c_str());
    return 2;
  }
  rules::AssociationFacts facts{o.calling_ae, o.called_ae, o.peer_ip, o.listener};
  int rc = 0;
  for (const std::string& file : o.files) {
    DcmFileFormat ff;
    OFCondition c = ff.loadFile(file.c_str());
    if (c.bad()) {
      std::fprintf(stderr, "%s: cannot read as DICOM: %s\n", file.c_str(), c.text());
      rc = 1;
      continue;
    }
    DcmDataset* ds = ff.getDataset();
    OFString uid;
    ds->findAndGetOFString(DCM_SOPInstanceUID, uid);
    rules::Decision d;
    rules::Explanation ex;
    rs.Evaluate(ds, facts, now, &d, o.explain ? &ex : nullptr);
    std::string verdict = d.dropped ? "dropped" : d.unmatched ? "unmatched" : "routed";
    std::vector<std::pair<std::string, std::string>> unmatched_targets;
    if (d.unmatched && rs.unmatched_policy() == rules::RuleSet::Unmatched::kForward) {
      for (const rules::Destination* dest : rs.unmatched_destinations()) unmatched_targets.push_back({dest->name, ""});
    }
    const char* policy = rs.unmatched_policy() == rules::RuleSet::Unmatched::kReject    ? "reject"
                         : rs.unmatched_policy() == rules::RuleSet::Unmatched::kForward ? "forward"
                                                                                        : "keep";
    if (o.json) {
      std::string j = "{\"file\":" + JsonString(file) + ",\"sop_instance_uid\":" + JsonString(uid.c_str()) +
                      ",\"result\":" + JsonString(verdict);
      if (d.unmatched) j += ",\"unmatched_policy\":" + JsonString(policy);
      j += ",\"matched_rules\":[";
      for (size_t i = 0; i < d.matched_rules.size(); ++i) j += (i ? "," : "") + JsonString(*d.matched_rules[i]);
      j += "],\"destinations\":[";
      bool first = true;
      for (const auto& t : d.targets) {
        j += std::string(first ? "" : ",") + "{\"name\":" + JsonString(t.destination->name) +
             ",\"ae_title\":" + JsonString(t.destination->ae_title) + ",\"priority\":" + std::to_string(t.priority) +
             ",\"rule\":" + JsonString(t.rule ? *t.rule : "") + ",\"edits\":" + JsonString(DescribeEdits(t.edits)) +
             "}";
        first = false;
      }
      for (const auto& [name, e] : unmatched_targets) {
        j += std::string(first ? "" : ",") + "{\"name\":" + JsonString(name) + ",\"rule\":\"(unmatched)\"}";
        first = false;
      }
      j += "]";
      if (o.explain) {
        j += ",\"explain\":[";
        for (size_t i = 0; i < ex.rules.size(); ++i) {
          const auto& r = ex.rules[i];
          j += std::string(i ? "," : "") + "{\"rule\":" + JsonString(r.rule) +
               ",\"matched\":" + (r.matched ? "true" : "false") + ",\"reasons\":[";
          for (size_t k = 0; k < r.reasons.size(); ++k) j += (k ? "," : "") + JsonString(r.reasons[k]);
          j += "]}";
        }
        j += "]";
      }
      j += "}";
      std::printf("%s\n", j.c_str());
      continue;
    }
    std::printf("%s\n  SOP Instance UID: %s\n  result: %s", file.c_str(), LogEscape(uid.c_str()).c_str(),
                verdict.c_str());
    if (d.unmatched) std::printf(" (no rule matched; settings.unmatched = %s)", policy);
    std::printf("\n  matched rules:");
    if (d.matched_rules.empty()) std::printf(" none");
    for (const std::string* r : d.matched_rules) std::printf(" %s", r->c_str());
    std::printf("\n");
    for (const auto& t : d.targets) {
      std::string edits = DescribeEdits(t.edits);
      std::printf("  -> %s (AE %s at %s:%u) priority %d, rule %s%s%s\n", t.destination->name.c_str(),
                  t.destination->ae_title.c_str(), t.destination->host.c_str(), t.destination->port, t.priority,
                  t.rule ? t.rule->c_str() : "?", edits.empty() ? "" : ", edits: ", edits.c_str());
    }
    for (const auto& [name, e] : unmatched_targets) std::printf("  -> %s (unmatched policy)\n", name.c_str());
    if (o.explain) {
      for (const auto& r : ex.rules) {
        std::printf("  rule %s: %s\n", r.rule.c_str(), r.matched ? "MATCHED" : "no match");
        // Explanations quote header values: shown as text, never as raw control bytes.
        for (const std::string& reason : r.reasons) std::printf("      %s\n", LogEscape(reason).c_str());
      }
    }
  }
  return rc;
}

}  // namespace relais::router
