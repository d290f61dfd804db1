// Data sets written byte by byte for tests: elements in Explicit VR Little
// Endian (PS3.5 7.1.2), shared by the tests of the structure guard
// (tests/router/dicom/) and of the header parser's attack patterns
// (tests/router/receive/).
#ifndef RELAIS_TESTS_ROUTER_DICOM_ELEMENT_BYTES_H_
#define RELAIS_TESTS_ROUTER_DICOM_ELEMENT_BYTES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace relais::testing {

inline void Put16(std::vector<uint8_t>* out, uint16_t v) {
  out->push_back(static_cast<uint8_t>(v));
  out->push_back(static_cast<uint8_t>(v >> 8));
}
inline void Put32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
// Explicit VR LE element with a 16-bit length (PS3.5 7.1.2).
inline void Short(std::vector<uint8_t>* out, uint16_t g, uint16_t e, const char* vr, std::string value) {
  if (value.size() % 2) value.push_back('\0');
  Put16(out, g);
  Put16(out, e);
  out->push_back(static_cast<uint8_t>(vr[0]));
  out->push_back(static_cast<uint8_t>(vr[1]));
  Put16(out, static_cast<uint16_t>(value.size()));
  out->insert(out->end(), value.begin(), value.end());
}
// Header of an explicit VR LE element with a 4-byte length (OB, OW, SQ...):
// tag, VR, 2 reserved bytes, length; the value follows.
inline void Long(std::vector<uint8_t>* out, uint16_t g, uint16_t e, const char* vr, uint32_t length) {
  Put16(out, g);
  Put16(out, e);
  out->push_back(static_cast<uint8_t>(vr[0]));
  out->push_back(static_cast<uint8_t>(vr[1]));
  Put16(out, 0);
  Put32(out, length);
}

}  // namespace relais::testing

#endif  // RELAIS_TESTS_ROUTER_DICOM_ELEMENT_BYTES_H_
