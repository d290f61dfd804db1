#include "router/cli/cli_audit.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>

#include "base/text.h"
#include "router/record/audit.h"

namespace relais::router {
namespace {

std::string& AuditPath() {
  static std::string path;
  return path;
}

// A command run as root that creates the audit file gives it to the owner
// of its directory, so that `relais serve` (the relais user) can append.
void GiveToDirectoryOwner(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || st.st_uid == 0) return;
  if (::chown(path.c_str(), st.st_uid, st.st_gid) != 0) {
    std::fprintf(stderr, "relais: cannot give the new audit file %s to its directory's owner\n", path.c_str());
  }
}

}  // namespace

CliActor CurrentCliActor() {
  CliActor a;
  const uid_t uid = getuid();
  a.uid = std::to_string(uid);
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != nullptr) {
    a.user = found->pw_name;
  } else {
    a.user = a.uid;
  }
  if (const char* sudo = std::getenv("SUDO_USER")) a.sudo_user = sudo;
  return a;
}

void SetCliAuditPath(std::string path) { AuditPath() = std::move(path); }

std::string CliAuditList(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < kCliAuditMaxListed; ++i) out += (i ? "," : "") + items[i];
  if (items.size() > kCliAuditMaxListed) {
    out += ",... (" + std::to_string(items.size() - kCliAuditMaxListed) + " more)";
  }
  return out;
}

bool RecordCliAction(const CliAction& a) {
  const CliActor who = CurrentCliActor();
  const std::string count = std::to_string(a.count);
  const std::string uids = CliAuditList(a.uids);
  const std::string pids = CliAuditList(a.patient_ids);
  std::fprintf(stderr, "audit: %s by %s (uid %s%s%s) %s%s%s: %s, %s\n", a.action.c_str(), LogEscape(who.user).c_str(),
               who.uid.c_str(), who.sudo_user.empty() ? "" : ", sudo from ", LogEscape(who.sudo_user).c_str(),
               a.selector.empty() ? "" : "[", LogEscape(a.selector).c_str(), a.selector.empty() ? "" : "]",
               a.result.c_str(), LogEscape(a.detail).c_str());
  if (AuditPath().empty()) return true;
  struct stat before;
  const bool existed = ::stat(AuditPath().c_str(), &before) == 0;
  Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(AuditPath());
  if (log.ok() && !existed && ::geteuid() == 0) GiveToDirectoryOwner(AuditPath());
  if (!log.ok()) {
    std::fprintf(stderr, "relais: the audit trail could not be written: %s\n", log.status().message().c_str());
    return false;
  }
  bool ok = (*log)->Record("cli", {{"user", who.user},
                                   {"uid", who.uid},
                                   {"sudo_user", who.sudo_user},
                                   {"action", a.action},
                                   {"selector", a.selector},
                                   {"result", a.result},
                                   {"count", count},
                                   {"detail", a.detail},
                                   {"uids", uids},
                                   {"patient_ids", pids}});
  if (!ok) std::fprintf(stderr, "relais: the audit record of this %s could not be written\n", a.action.c_str());
  return ok;
}

}  // namespace relais::router
