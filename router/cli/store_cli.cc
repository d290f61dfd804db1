#include "router/cli/store_cli.h"

#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "base/clock.h"
#include "base/text.h"
#include "router/cli/cli_audit.h"

namespace relais::router {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "relais: %s\n", s.message().c_str());
  return 1;
}

struct Selected {
  store::ObjectMeta meta;
  store::ObjectLife life;
};

// The selected objects with their lives, in id order.
Status Collect(const store::Store& st, const ObjectSelection& sel, int64_t now, std::vector<Selected>* out) {
  auto keep = [&](const store::ObjectMeta& m) -> Status {
    if (!sel.study.empty() && m.study_instance_uid != sel.study) return Status::OK();
    if (sel.older_than_ms && m.received_unix_ms > now - *sel.older_than_ms) return Status::OK();
    Result<store::ObjectLife> life = st.GetLife(m.id);
    if (life.status().IsNotFound()) return Status::OK();  // removed meanwhile
    if (!life.ok()) return life.status();
    if (sel.cls && life->object_class != *sel.cls) return Status::OK();
    out->push_back(Selected{m, *life});
    return Status::OK();
  };
  if (!sel.uids.empty()) {
    std::set<uint64_t> seen;
    for (const std::string& uid : sel.uids) {
      Result<store::ObjectMeta> m = st.Find(uid);
      if (m.status().IsNotFound()) continue;
      if (!m.ok()) return m.status();
      if (seen.insert(m->id).second) RELAIS_RETURN_IF_ERROR(keep(*m));
    }
    return Status::OK();
  }
  // A walk over every record: an admin command, not a hot path.
  Status error;
  RELAIS_RETURN_IF_ERROR(st.List([&](const store::ObjectMeta& m) {
    error = keep(m);
    return error.ok();
  }));
  return error;
}

void PrintLine(const Selected& s) {
  const store::ObjectMeta& m = s.meta;
  std::printf("%-64s %-4s %10" PRIu64 " %-24s %-9s %-24s %s\n", LogEscape(m.sop_instance_uid).c_str(),
              m.modality.empty() ? "-" : LogEscape(m.modality).c_str(), m.stored_size,
              IsoTime(m.received_unix_ms).c_str(), store::ObjectClassName(s.life.object_class),
              GoesText(s.life).c_str(), LogEscape(m.study_instance_uid).c_str());
}

void PrintHeader() {
  std::printf("%-64s %-4s %10s %-24s %-9s %-24s %s\n", "SOP_INSTANCE_UID", "MOD", "STORED", "RECEIVED", "CLASS", "GOES",
              "STUDY");
}

}  // namespace

std::optional<int64_t> ParseCliDuration(const std::string& text) {
  if (text.empty()) return std::nullopt;
  size_t i = 0;
  int64_t n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (n > (INT64_MAX / 1000 - 9) / 10) return std::nullopt;
    n = n * 10 + (text[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string unit = text.substr(i);
  int64_t scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  if (unit == "m") scale = 60'000;
  if (unit == "h") scale = 3600'000;
  if (unit == "d") scale = 86400'000;
  if (scale == 0 || n > INT64_MAX / scale) return std::nullopt;
  return n * scale;
}

std::string GoesText(const store::ObjectLife& life) {
  if (life.object_class == store::ObjectClass::kQueued) return "with its queue rows";
  if (life.object_class == store::ObjectClass::kNone) return "-";
  if (life.expires_unix_ms < 0) return "kept";
  return IsoTime(life.expires_unix_ms);
}

Result<std::vector<uint64_t>> SelectObjects(const store::Store& st, const ObjectSelection& sel, int64_t now) {
  std::vector<Selected> selected;
  RELAIS_RETURN_IF_ERROR(Collect(st, sel, now, &selected));
  std::vector<uint64_t> ids;
  for (const Selected& s : selected) ids.push_back(s.meta.id);
  return ids;
}

namespace {

// The audit record of a `relais store purge` (cli_audit.h).
void RecordStorePurge(const ObjectSelection& sel, const std::vector<Selected>& selected,
                      const Result<uint64_t>& removed) {
  CliAction a;
  a.action = "store purge";
  for (const std::string& u : sel.uids) a.selector += (a.selector.empty() ? "--uid " : " --uid ") + u;
  if (!sel.study.empty()) a.selector += (a.selector.empty() ? "" : " ") + std::string("--study ") + sel.study;
  if (sel.older_than_ms) {
    a.selector += (a.selector.empty() ? "" : " ") + std::string("--older-than ") +
                  std::to_string(*sel.older_than_ms / 1000) + "s";
  }
  if (sel.cls)
    a.selector += (a.selector.empty() ? "" : " ") + std::string("--class ") + store::ObjectClassName(*sel.cls);
  a.result = removed.ok() ? "ok" : "failed";
  a.count = removed.ok() ? *removed : 0;
  a.detail = removed.ok() ? "removed " + std::to_string(*removed) + " objects" : removed.status().message();
  std::set<std::string> pids;
  for (const Selected& x : selected) {
    a.uids.push_back(x.meta.sop_instance_uid);
    if (pids.insert(x.meta.patient_id).second) a.patient_ids.push_back(x.meta.patient_id);
  }
  RecordCliAction(a);
}

}  // namespace

int StorePurge(const store::Options& options, const ObjectSelection& sel, bool dry_run) {
  store::Options o = options;
  o.read_only = dry_run;
  o.admin = !dry_run;
  auto st = store::Store::Open(o);
  if (!st.ok()) return Fail(st.status());
  std::vector<Selected> selected;
  Status s = Collect(**st, sel, NowUnixMs(), &selected);
  if (!s.ok()) return Fail(s);
  uint64_t bytes = 0;
  std::vector<uint64_t> ids;
  for (const Selected& x : selected) {
    bytes += x.meta.stored_size;
    ids.push_back(x.meta.id);
  }
  const bool unknown_uids = !sel.uids.empty() && selected.empty();
  if (dry_run) {
    if (!selected.empty()) PrintHeader();
    for (const Selected& x : selected) PrintLine(x);
    std::printf("would remove %zu objects (%" PRIu64 " bytes stored)\n", selected.size(), bytes);
    return unknown_uids ? 2 : 0;
  }
  for (const Selected& x : selected) {
    std::fprintf(stderr, "removing %s (%s, id %" PRIu64 ")\n", LogEscape(x.meta.sop_instance_uid).c_str(),
                 store::ObjectClassName(x.life.object_class), x.meta.id);
  }
  Result<uint64_t> removed = (*st)->RemoveObjects(ids, [&](uint64_t n) {
    if (ids.size() > 256) std::fprintf(stderr, "purge: %" PRIu64 "/%zu objects\n", n, ids.size());
  });
  RecordStorePurge(sel, selected, removed);
  if (!removed.ok()) return Fail(removed.status());
  std::printf("removed %" PRIu64 " objects (%" PRIu64 " bytes stored)\n", *removed, bytes);
  return unknown_uids ? 2 : 0;
}

}  // namespace relais::router
