// Hex digits for bytes (base/hex.h): round trips over every byte, both cases
// on input, lowercase on output, and the malformed inputs refused.
#include "base/hex.h"

#include <gtest/gtest.h>

#include <string>

namespace relais {
namespace {

TEST(HexTest, EncodesEveryByteAsTwoLowercaseDigitsAndDecodesBack) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  const std::string hex = HexEncode(all);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(504), "fcfdfeff");
  EXPECT_TRUE(IsLowerHex(hex));
  std::string back;
  ASSERT_TRUE(HexDecode(hex, &back));
  EXPECT_EQ(back, all);
  EXPECT_EQ(HexEncode(""), "");
}

TEST(HexTest, DecodesEitherCase) {
  std::string out;
  ASSERT_TRUE(HexDecode("DEADbeef", &out));
  EXPECT_EQ(out, std::string("\xde\xad\xbe\xef"));
  ASSERT_TRUE(HexDecode("", &out));
  EXPECT_EQ(out, "");
}

TEST(HexTest, RefusesOddLengthsAndNonDigits) {
  std::string out;
  EXPECT_FALSE(HexDecode("abc", &out));
  EXPECT_FALSE(HexDecode("0g", &out));
  EXPECT_FALSE(HexDecode("-1", &out));
  EXPECT_FALSE(HexDecode(std::string("0\0", 2), &out));
  EXPECT_FALSE(HexDecode(" 0", &out));
}

TEST(HexTest, LowerHexIsDigitsAndAToFOnly) {
  EXPECT_TRUE(IsLowerHex("0123456789abcdef"));
  EXPECT_TRUE(IsLowerHex(""));
  EXPECT_FALSE(IsLowerHex("ABCDEF"));
  EXPECT_FALSE(IsLowerHex("0x12"));
  EXPECT_FALSE(IsLowerHex("g"));
}

TEST(HexTest, StatusCodesAreFourUppercaseDigits) {
  EXPECT_EQ(Hex4(0xA700), "0xA700");
  EXPECT_EQ(Hex4(0), "0x0000");
  EXPECT_EQ(Hex4(0x0122), "0x0122");
  EXPECT_EQ(Hex4(0xFFFF), "0xFFFF");
}

}  // namespace
}  // namespace relais
