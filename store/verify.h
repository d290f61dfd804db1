// Store verification (FORMAT.md "Verification"): the walk behind
// Store::Verify.
//
// Internal to store/ (and its tests); not part of the public API.
#ifndef RELAIS_STORE_VERIFY_H_
#define RELAIS_STORE_VERIFY_H_

#include <functional>

#include "base/status.h"
#include "store/lmdb_env.h"
#include "store/store.h"

namespace relais::store {

// Checks `env` as Store::Verify describes, in one read transaction.
Result<VerifyReport> VerifyEnv(const LmdbEnv& env, const std::function<void(const VerifyProgress&)>& progress);

}  // namespace relais::store

#endif  // RELAIS_STORE_VERIFY_H_
