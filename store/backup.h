// Hot backups of the store (FORMAT.md "Backups"): the copy itself, for
// StoreImpl::Backup. Store::RestoreBackup and Store::ReadBackupManifest are
// defined in backup.cc too.
//
// Internal to store/ (and its tests); not part of the public API.
#ifndef RELAIS_STORE_BACKUP_H_
#define RELAIS_STORE_BACKUP_H_

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

inline constexpr char kBackupManifest[] = "relais-backup.json";
inline constexpr uint32_t kBackupManifestVersion = 1;

// Copies `env` (the store at `source_path`) into `dir` as Store::Backup
// describes.
Status BackupEnv(const LmdbEnv& env, const std::string& source_path, const std::string& dir,
                 const std::function<void(uint64_t)>& progress);

// The manifest text for `info` (a JSON object, one field a line).
std::string EncodeBackupManifest(const BackupInfo& info);
// Parses a manifest; Corruption naming what is wrong.
Status DecodeBackupManifest(const std::string& text, BackupInfo* info);

}  // namespace relais::store

#endif  // RELAIS_STORE_BACKUP_H_
