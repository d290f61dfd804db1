// Part 10 files as the router tests' storescp peers write them: the File
// Meta Information (PS3.10 7.1, Explicit VR Little Endian) read element by
// element, then the data set bytes as they were on the wire.
#ifndef RELAIS_TESTS_ROUTER_PART10_H_
#define RELAIS_TESTS_ROUTER_PART10_H_

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

namespace relais::testing {

struct Part10 {
  std::string sop_class, sop_instance, transfer_syntax;
  std::string data_set;
};

inline bool ParsePart10(const std::string& bytes, Part10* out) {
  if (bytes.size() < 132 || bytes.compare(128, 4, "DICM") != 0) return false;
  size_t p = 132;
  auto u16 = [&](size_t at) { return static_cast<uint16_t>(uint8_t(bytes[at]) | uint8_t(bytes[at + 1]) << 8); };
  auto u32 = [&](size_t at) { return static_cast<uint32_t>(u16(at) | uint32_t(u16(at + 2)) << 16); };
  while (p + 8 <= bytes.size() && u16(p) == 0x0002) {
    uint16_t element = u16(p + 2);
    std::string vr = bytes.substr(p + 4, 2);
    size_t len, value;
    if (vr == "OB" || vr == "OW" || vr == "SQ" || vr == "UN" || vr == "UT") {
      if (p + 12 > bytes.size()) return false;
      len = u32(p + 8);
      value = p + 12;
    } else {
      len = u16(p + 6);
      value = p + 8;
    }
    if (value + len > bytes.size()) return false;
    std::string v = bytes.substr(value, len);
    while (!v.empty() && (v.back() == '\0' || v.back() == ' ')) v.pop_back();
    if (element == 0x0002) out->sop_class = v;
    if (element == 0x0003) out->sop_instance = v;
    if (element == 0x0010) out->transfer_syntax = v;
    p = value + len;
  }
  out->data_set = bytes.substr(p);
  return !out->sop_instance.empty() && !out->transfer_syntax.empty();
}

// The file at `path`, parsed as above; false also when it has no data set.
inline bool ReadPart10(const std::string& path, Part10* out) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return ParsePart10(bytes, out) && !out->data_set.empty();
}

}  // namespace relais::testing

#endif  // RELAIS_TESTS_ROUTER_PART10_H_
