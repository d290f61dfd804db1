// The store's safety from the command line: `relais backup --config FILE DIR`
// and `relais restore --config FILE DIR`, a consistent hot copy of the object
// store while `relais serve` runs and putting one back (see store/FORMAT.md
// "Backups"); `relais store verify --config FILE`, reading everything back.
#ifndef RELAIS_ROUTER_CLI_BACKUP_CLI_H_
#define RELAIS_ROUTER_CLI_BACKUP_CLI_H_

#include <string>

#include "store/store.h"

namespace relais::router {

// Opens the store at options.path read-only (works while serving) and
// copies it into `dir`, printing "backup: N MB" on stderr every second and
// a summary (objects, bytes, seconds) on stdout. Returns 0; 1 on a store or
// I/O error; 2 when `dir` already holds a backup or a store.
int BackupCommand(const store::Options& options, const std::string& dir);

// Restores the backup in `backup_dir` as the store at options.path, which
// must not hold a store yet (stop `relais serve` and move the old store
// away first). Prints a summary on stdout. Returns 0; 1 on a damaged backup
// or an I/O error; 2 when a store is already there.
int RestoreCommand(const store::Options& options, const std::string& backup_dir);

// Opens the store read-only (works while serving) and runs Store::Verify,
// printing "verify: N of M objects (P%), X MB read" on stderr every second,
// each problem on stdout ("problem: object ID (UID): what"), then a summary.
// Returns 0 when the store is clean, 1 on any problem or a store error.
// With `repair` (admin mode, works while serving): Store::Repair, printing
// what verify found, what was quarantined and removed, and what is left;
// returns 0 when the store is clean afterwards.
int VerifyCommand(const store::Options& options, bool repair);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_BACKUP_CLI_H_
