// SHA-256 (FIPS 180-4), computed by OpenSSL's libcrypto, which relais_base
// links; the OpenSSL headers stay in base/sha256.cc. Used for the audit
// trail's hash chain, admin API tokens and DICOM user identity passcodes.
// Thread: any.
#ifndef RELAIS_BASE_SHA256_H_
#define RELAIS_BASE_SHA256_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace relais {

// The 32-byte digest of `data` into *out. Returns false only if libcrypto
// fails, which its built-in SHA-256 does not; *out is then unspecified.
bool Sha256(std::string_view data, std::array<uint8_t, 32>* out);

// The digest of `data` as 64 lowercase hex digits, as sha256sum prints it;
// "" if libcrypto fails.
std::string Sha256Hex(std::string_view data);

}  // namespace relais

#endif  // RELAIS_BASE_SHA256_H_
