#include "base/sha256.h"

#include <openssl/evp.h>

#include "base/hex.h"

namespace relais {

bool Sha256(std::string_view data, std::array<uint8_t, 32>* out) {
  unsigned int len = 0;
  return EVP_Digest(data.data(), data.size(), out->data(), &len, EVP_sha256(), nullptr) == 1 && len == 32;
}

std::string Sha256Hex(std::string_view data) {
  std::array<uint8_t, 32> md;
  if (!Sha256(data, &md)) return std::string();
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md.data()), md.size()));
}

}  // namespace relais
