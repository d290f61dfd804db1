#include "router/cli/backup_cli.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "base/text.h"
#include "router/cli/cli_audit.h"

namespace relais::router {
namespace {

int Fail(const char* cmd, const Status& s) {
  std::fprintf(stderr, "relais %s: %s\n", cmd, s.message().c_str());
  return s.code() == Status::Code::kAlreadyExists ? 2 : 1;
}

double Mb(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int BackupCommand(const store::Options& options, const std::string& dir) {
  const auto start = std::chrono::steady_clock::now();
  store::Options o = options;
  o.read_only = true;
  o.admin = false;
  Result<std::unique_ptr<store::Store>> st = store::Store::Open(o);
  if (!st.ok()) return Fail("backup", st.status());
  Status s = (*st)->Backup(dir, [](uint64_t done) { std::fprintf(stderr, "backup: %.0f MB\n", Mb(done)); });
  RecordCliAction({"backup", dir, s.ok() ? "ok" : "failed", s.ok() ? "into " + dir : s.message(), 0, {}, {}});
  if (!s.ok()) return Fail("backup", s);
  Result<store::BackupInfo> info = store::Store::ReadBackupManifest(dir);
  if (!info.ok()) return Fail("backup", info.status());
  std::printf("backup of %s into %s: %" PRIu64 " objects, %" PRIu64
              " bytes of data sets (%.1f MB), file %.1f MB, "
              "taken at %s, in %.1f s\n",
              options.path.c_str(), dir.c_str(), info->objects, info->raw_bytes, Mb(info->raw_bytes),
              Mb(info->file_bytes), IsoTime(info->created_unix_ms).c_str(), SecondsSince(start));
  return 0;
}

int RestoreCommand(const store::Options& options, const std::string& backup_dir) {
  const auto start = std::chrono::steady_clock::now();
  Result<store::BackupInfo> info = store::Store::ReadBackupManifest(backup_dir);
  if (!info.ok()) return Fail("restore", info.status());
  Status s = store::Store::RestoreBackup(backup_dir, options.path,
                                         [](uint64_t done) { std::fprintf(stderr, "restore: %.0f MB\n", Mb(done)); });
  RecordCliAction({"restore",
                   backup_dir,
                   s.ok() ? "ok" : "failed",
                   s.ok() ? "into " + options.path + ", " + std::to_string(info->objects) + " objects" : s.message(),
                   s.ok() ? info->objects : 0,
                   {},
                   {}});
  if (!s.ok()) return Fail("restore", s);
  std::printf("restored %s (taken at %s from %s) into %s: %" PRIu64 " objects, %" PRIu64
              " bytes of data sets (%.1f MB), file %.1f MB, in %.1f s\n",
              backup_dir.c_str(), IsoTime(info->created_unix_ms).c_str(), info->source_path.c_str(),
              options.path.c_str(), info->objects, info->raw_bytes, Mb(info->raw_bytes), Mb(info->file_bytes),
              SecondsSince(start));
  return 0;
}

namespace {

void PrintVerifyProgress(const store::VerifyProgress& p) {
  double pct = p.objects_total == 0 ? 100.0 : 100.0 * static_cast<double>(p.objects_done) / p.objects_total;
  std::fprintf(stderr, "verify: %" PRIu64 " of %" PRIu64 " objects (%.0f%%), %.1f MB read\n", p.objects_done,
               p.objects_total, pct, Mb(p.raw_bytes));
}

// Prints the problems and the summary of `r`; returns the exit code.
int PrintVerifyReport(const std::string& path, const store::VerifyReport& r, const char* prefix) {
  uint64_t unreadable = 0;
  for (const store::VerifyProblem& p : r.problems) {
    if (p.unreadable) ++unreadable;
    std::printf("%sproblem: object %" PRIu64 " (%s): %s%s\n", prefix, p.object_id,
                p.sop_instance_uid.empty() ? "UID unknown" : LogEscape(p.sop_instance_uid).c_str(), p.what.c_str(),
                p.unreadable ? " [unreadable]" : "");
  }
  if (r.problem_count > r.problems.size()) {
    std::printf("%sproblem: ... and %" PRIu64 " more (only the first %zu are listed)\n", prefix,
                r.problem_count - r.problems.size(), r.problems.size());
  }
  std::printf("%sverify of %s: %" PRIu64 " objects, %" PRIu64 " chunks, %.1f MB read back and checksummed; %" PRIu64
              " queue, %" PRIu64 " dead, %" PRIu64 " done, %" PRIu64 " attempt, %" PRIu64 " lifecycle, %" PRIu64
              " delivered rows; %" PRIu64 " partial objects (removed at the next start)\n",
              prefix, path.c_str(), r.objects, r.chunks, Mb(r.raw_bytes), r.queue_rows, r.dead_rows, r.done_rows,
              r.attempt_rows, r.life_rows, r.delivered_rows, r.pending_objects);
  if (r.ok()) {
    std::printf("%sverify: OK, no problem found\n", prefix);
    return 0;
  }
  std::printf("%sverify: %" PRIu64 " problem(s), %" PRIu64 " of the listed ones unreadable objects%s\n", prefix,
              r.problem_count, unreadable, *prefix == 0 ? "; relais store verify --repair quarantines them" : "");
  return 1;
}

}  // namespace

int VerifyCommand(const store::Options& options, bool repair) {
  const auto start = std::chrono::steady_clock::now();
  store::Options o = options;
  o.read_only = !repair;
  o.admin = repair;
  Result<std::unique_ptr<store::Store>> st = store::Store::Open(o);
  if (!st.ok()) return Fail("store verify", st.status());
  if (!repair) {
    Result<store::VerifyReport> r = (*st)->Verify(PrintVerifyProgress);
    if (!r.ok()) return Fail("store verify", r.status());
    int code = PrintVerifyReport(options.path, *r, "");
    std::printf("verify: took %.1f s\n", SecondsSince(start));
    return code;
  }
  Result<store::RepairReport> r = (*st)->Repair(PrintVerifyProgress);
  RecordCliAction({"store verify --repair",
                   "",
                   r.ok() ? "ok" : "failed",
                   r.ok() ? std::to_string(r->quarantined) + " quarantined, " + std::to_string(r->rows_removed) +
                                " orphan rows and chunk sets removed"
                          : r.status().message(),
                   r.ok() ? r->quarantined + r->rows_removed : 0,
                   {},
                   {}});
  if (!r.ok()) return Fail("store verify --repair", r.status());
  PrintVerifyReport(options.path, r->before, "before: ");
  std::printf("repair: %" PRIu64 " unreadable object(s) quarantined, %" PRIu64
              " orphan row(s) and chunk set(s) removed%s\n",
              r->quarantined, r->rows_removed, r->totals_fixed ? ", byte totals recomputed" : "");
  (*st)->ListQuarantine([](const store::QuarantineEntry& e) {
    std::printf("quarantined: object %" PRIu64 " (%s) at %s: %s\n", e.object_id,
                e.meta.sop_instance_uid.empty() ? "UID unknown" : LogEscape(e.meta.sop_instance_uid).c_str(),
                IsoTime(e.quarantined_unix_ms).c_str(), e.reason.c_str());
    return true;
  });
  int code = PrintVerifyReport(options.path, r->after, "after: ");
  std::printf("verify: took %.1f s\n", SecondsSince(start));
  return code;
}

}  // namespace relais::router
