// Hex digits for bytes: the admin API's tokens and page cursors, the DICOM
// user identity passcodes (SHA-256 digests written as hex in the config) and
// status codes in logs and JSON ("0xA700"). Header-only.
// Thread: any.
#ifndef RELAIS_BASE_HEX_H_
#define RELAIS_BASE_HEX_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace relais {

// Two lowercase hex digits per byte of `bytes` (as sha256sum prints).
inline std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The value of one hex digit (either case), or -1.
inline int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The bytes `hex` spells, two digits (either case) a byte, into *out.
// False for an odd length or a character that is not a hex digit; *out is
// then unspecified.
inline bool HexDecode(std::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  out->clear();
  out->reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexDigitValue(hex[i]), lo = HexDigitValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

// True if every character of `s` is one of 0-9 a-f (the form HexEncode and
// sha256sum write; "" is true).
inline bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// "0x" and four uppercase hex digits, as DICOM status codes are written
// (PS3.7 Annex C): 0xA700.
inline std::string Hex4(uint16_t v) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out = "0x";
  for (int shift = 12; shift >= 0; shift -= 4) out += kDigits[(v >> shift) & 15];
  return out;
}

}  // namespace relais

#endif  // RELAIS_BASE_HEX_H_
