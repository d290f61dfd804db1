// Tests for the compiled DICOM wildcard (rules/rule_compiled.h Wildcard,
// rules/rule_compile.h CompileWildcard): the matching semantics of
// README "Matching" on values given directly, below any tag decoding.
#include <gtest/gtest.h>

#include <string>

#include "rules/rule_compile.h"
#include "rules/rule_compiled.h"

namespace relais::rules::internal {
namespace {

bool Like(std::string_view pattern, std::string_view value) {
  Wildcard w;
  auto err = CompileWildcard(pattern, &w);
  EXPECT_FALSE(err.has_value()) << *err;
  if (err) return false;
  return WildcardMatch(w, value);
}

TEST(WildcardTest, StarIsAnySequenceQuestionMarkIsOneCharacter) {
  EXPECT_TRUE(Like("*", ""));
  EXPECT_TRUE(Like("*", "anything at all"));
  EXPECT_TRUE(Like("", ""));
  EXPECT_FALSE(Like("", "x"));
  EXPECT_TRUE(Like("DOE^*", "DOE^JOHN"));
  EXPECT_TRUE(Like("D?E^J*N", "DOE^JOHN"));
  EXPECT_FALSE(Like("DOE^?", "DOE^JOHN"));
  EXPECT_FALSE(Like("?", ""));
  EXPECT_TRUE(Like("**a**", "a"));
  EXPECT_TRUE(Like("*a", "bana"));
  EXPECT_FALSE(Like("*a", "banan"));
}

TEST(WildcardTest, WholeValueOnly) {
  EXPECT_FALSE(Like("DOE", "DOE^JOHN"));
  EXPECT_FALSE(Like("JOHN", "DOE^JOHN"));
  EXPECT_TRUE(Like("*JOHN", "DOE^JOHN"));
}

TEST(WildcardTest, EverythingElseIsLiteral) {
  EXPECT_TRUE(Like("a.b", "a.b"));
  EXPECT_FALSE(Like("a.b", "axb"));
  EXPECT_TRUE(Like("(x)+[y]{2}|^$\\d", "(x)+[y]{2}|^$\\d"));
  EXPECT_FALSE(Like("x+", "xx"));
  EXPECT_TRUE(Like(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
}

TEST(WildcardTest, CharactersSpanLinesAndAreCaseSensitive) {
  EXPECT_TRUE(Like("line1*line2", "line1\nline2"));
  EXPECT_TRUE(Like("a?b", "a\nb"));
  EXPECT_FALSE(Like("doe*", "DOE^JOHN"));
}

TEST(WildcardTest, QuestionMarkIsOneUtf8Character) {
  EXPECT_TRUE(Like("M?LLER", "M\xC3\x9CLLER"));  // MÜLLER, Ü is two bytes
  EXPECT_FALSE(Like("M??LLER", "M\xC3\x9CLLER"));
  EXPECT_TRUE(Like("?", "\xE6\x9D\x8E"));      // 李, three bytes
  EXPECT_TRUE(Like("?", "\xF0\x9F\x98\x80"));  // U+1F600, four bytes
  EXPECT_TRUE(Like("\xC3\x9C*",
                   "\xC3\x9C"
                   "BER"));  // literal non-ASCII
  EXPECT_FALSE(Like("\xC3\x9C*",
                    "U"
                    "BER"));
}

TEST(WildcardTest, ValueThatIsNotUtf8IsMatchedByteByByte) {
  // Raw Latin-1 (0xDC is Ü), a lone 0xFF, a truncated sequence, an
  // overlong NUL, an encoded surrogate: '*' still matches, '?' is one byte.
  for (std::string_view v : {std::string_view("M\xDCLLER"), std::string_view("\xFF"), std::string_view("ab\xC3"),
                             std::string_view("\xC0\x80"), std::string_view("\xED\xA0\x80")}) {
    SCOPED_TRACE(testing::PrintToString(std::string(v)));
    EXPECT_TRUE(Like("*", v));
    EXPECT_TRUE(Like(std::string(v.size(), '?'), v));
    EXPECT_FALSE(Like(std::string(v.size() + 1, '?'), v));
  }
  EXPECT_TRUE(Like("M?LLER", "M\xDCLLER"));
}

TEST(WildcardTest, LongPatternOnLargeValueIsLinear) {
  // Was O(value x pattern) with backtracking; must simply finish.
  std::string pattern;
  for (int i = 0; i < 499; ++i) pattern += "*a";
  pattern += "*b";
  std::string value(8 << 20, 'a');
  EXPECT_FALSE(Like(pattern, value));
  value.back() = 'b';
  EXPECT_TRUE(Like(pattern, value));
  value[1000] = '\xFF';  // the Latin-1 program too
  EXPECT_TRUE(Like(pattern, value));
  value.back() = 'a';
  EXPECT_FALSE(Like(pattern, value));
}

TEST(WildcardTest, TooManyStarsAreRefusedAtCompileTime) {
  std::string pattern;
  for (size_t i = 0; i < kMaxWildcardStars; ++i) pattern += "*a";
  Wildcard w;
  ASSERT_FALSE(CompileWildcard(pattern + "b", &w).has_value());  // the most allowed still compiles
  std::string value(1 << 20, 'a');
  EXPECT_FALSE(WildcardMatch(w, value));
  value.back() = 'b';
  EXPECT_TRUE(WildcardMatch(w, value));
  std::optional<std::string> err = CompileWildcard(pattern + "*b", &w);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("at most 1000"), std::string::npos) << *err;
}

TEST(WildcardTest, CompiledOnceAndReused) {
  Wildcard w;
  ASSERT_FALSE(CompileWildcard("CT*", &w).has_value());
  ASSERT_NE(w.utf8, nullptr);
  ASSERT_NE(w.latin1, nullptr);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(WildcardMatch(w, "CT HEAD"));
    ASSERT_FALSE(WildcardMatch(w, "MR HEAD"));
  }
}

}  // namespace
}  // namespace relais::rules::internal
