// The audit record of a `relais` admin command (issue 14: every action is
// recorded). A command that changes the store (queue retry/purge, store
// purge, store verify --repair, backup, restore) calls RecordCliAction()
// once, at its end; the record goes to the audit trail of the appliance
// configuration ([audit] path) next to `relais serve`'s records (the
// AuditLog takes a file lock per record and continues the chain: see
// "Several writers" in router/record/audit.h), and a line to stderr. Without
// an audit path only the stderr line is written.
#ifndef RELAIS_ROUTER_CLI_CLI_AUDIT_H_
#define RELAIS_ROUTER_CLI_CLI_AUDIT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace relais::router {

// UIDs and patient IDs listed in one record; the rest are only counted.
inline constexpr size_t kCliAuditMaxListed = 20;

// Who runs the command: the OS user of getuid() ("name", "uid") and, when
// run through sudo, the user who ran sudo (SUDO_USER).
struct CliActor {
  std::string user;       // login name, or the uid as text when unknown
  std::string uid;        // getuid() as text
  std::string sudo_user;  // SUDO_USER; empty when not set
};
CliActor CurrentCliActor();

// What one command did.
struct CliAction {
  std::string action;                    // "queue purge", "backup", ...
  std::string selector;                  // the command's selection as typed ("--dest TELERAD --dead")
  std::string result;                    // "ok", "failed", "refused", "dry-run"
  std::string detail;                    // a short summary ("purged 6 rows")
  uint64_t count = 0;                    // rows or objects touched
  std::vector<std::string> uids;         // SOP Instance UIDs touched (all; the record lists the first ones)
  std::vector<std::string> patient_ids;  // patient IDs touched (distinct)
};

// Sets the audit trail the commands of this process record to ("" = none).
// Called once by main after reading the configuration. Not thread-safe.
void SetCliAuditPath(std::string path);

// `first` joined by ',' up to kCliAuditMaxListed entries, then
// ",... (N more)".
std::string CliAuditList(const std::vector<std::string>& items);

// Writes the kind "cli" record of `a` by CurrentCliActor() (fields: user,
// uid, sudo_user, action, selector, result, count, detail, uids,
// patient_ids) to the audit trail set by SetCliAuditPath, and one line on
// stderr. Returns false when an audit path is set and the record could not
// be written (the command has already acted; the caller says so).
bool RecordCliAction(const CliAction& a);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_CLI_AUDIT_H_
