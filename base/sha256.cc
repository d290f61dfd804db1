#include "base/sha256.h"

#include <openssl/evp.h>

namespace relais {

bool Sha256(std::string_view data, std::array<uint8_t, 32>* out) {
  unsigned int len = 0;
  return EVP_Digest(data.data(), data.size(), out->data(), &len, EVP_sha256(), nullptr) == 1 && len == 32;
}

std::string Sha256Hex(std::string_view data) {
  std::array<uint8_t, 32> md;
  if (!Sha256(data, &md)) return std::string();
  static const char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < md.size(); ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 15];
  }
  return out;
}

}  // namespace relais
