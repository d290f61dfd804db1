#include "router/cli/backup_cli.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "base/text.h"

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
  if (!s.ok()) return Fail("backup", s);
  Result<store::BackupInfo> info = store::Store::ReadBackupManifest(dir);
  if (!info.ok()) return Fail("backup", info.status());
  std::printf("backup of %s into %s: %" PRIu64 " objects, %" PRIu64 " bytes of data sets (%.1f MB), file %.1f MB, "
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
  if (!s.ok()) return Fail("restore", s);
  std::printf("restored %s (taken at %s from %s) into %s: %" PRIu64 " objects, %" PRIu64
              " bytes of data sets (%.1f MB), file %.1f MB, in %.1f s\n",
              backup_dir.c_str(), IsoTime(info->created_unix_ms).c_str(), info->source_path.c_str(),
              options.path.c_str(), info->objects, info->raw_bytes, Mb(info->raw_bytes), Mb(info->file_bytes),
              SecondsSince(start));
  return 0;
}

}  // namespace relais::router
