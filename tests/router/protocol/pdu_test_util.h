// Helpers shared by the PDU codec tests (pdu_test.cc, pdu_length_test.cc):
// hex text to bytes and back, decode and re-encode any PDU, expectations on
// the decoder's verdict.
#ifndef RELAIS_TESTS_ROUTER_PROTOCOL_PDU_TEST_UTIL_H_
#define RELAIS_TESTS_ROUTER_PROTOCOL_PDU_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "router/protocol/pdu.h"

namespace relais::ul::testutil {

using Kind = DecodeResult::Kind;

// Hex text (whitespace ignored) to bytes.
inline std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  int high = -1;
  for (char c : hex) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else {
      continue;
    }
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  EXPECT_EQ(high, -1) << "odd number of hex digits";
  return out;
}

inline std::string ToHex(const std::vector<uint8_t>& b) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string s;
  for (uint8_t x : b) {
    s += kDigits[x >> 4];
    s += kDigits[x & 0xF];
  }
  return s;
}

inline DecodeResult Decode(const std::vector<uint8_t>& b, const DecodeLimits& limits = DecodeLimits()) {
  return DecodePdu(std::span<const uint8_t>(b.data(), b.size()), limits);
}

// Re-encodes any decoded PDU.
inline std::vector<uint8_t> Encode(const Pdu& pdu) {
  std::vector<uint8_t> out;
  std::visit(
      [&out](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, AssociateRq>) {
          EXPECT_TRUE(EncodeAssociateRq(p, &out).ok());
        }
        if constexpr (std::is_same_v<T, AssociateAc>) {
          EXPECT_TRUE(EncodeAssociateAc(p, &out).ok());
        }
        if constexpr (std::is_same_v<T, AssociateRj>) EncodeAssociateRj(p, &out);
        if constexpr (std::is_same_v<T, PData>) {
          EXPECT_TRUE(EncodePData(p, &out).ok());
        }
        if constexpr (std::is_same_v<T, ReleaseRq>) EncodeReleaseRq(&out);
        if constexpr (std::is_same_v<T, ReleaseRp>) EncodeReleaseRp(&out);
        if constexpr (std::is_same_v<T, Abort>) EncodeAbort(p, &out);
      },
      pdu);
  return out;
}

template <typename T>
inline T DecodeAs(const std::vector<uint8_t>& b) {
  DecodeResult r = Decode(b);
  EXPECT_EQ(r.kind, Kind::kPdu) << r.error;
  EXPECT_EQ(r.consumed, b.size());
  EXPECT_TRUE(std::holds_alternative<T>(r.pdu));
  if (!std::holds_alternative<T>(r.pdu)) return T();
  return std::get<T>(r.pdu);
}

inline void ExpectInvalid(const std::vector<uint8_t>& b, AbortReason reason,
                          const DecodeLimits& limits = DecodeLimits()) {
  DecodeResult r = Decode(b, limits);
  EXPECT_EQ(r.kind, Kind::kInvalid);
  EXPECT_EQ(r.abort_reason, reason) << r.error;
  EXPECT_FALSE(r.error.empty());
}

}  // namespace relais::ul::testutil

#endif  // RELAIS_TESTS_ROUTER_PROTOCOL_PDU_TEST_UTIL_H_
