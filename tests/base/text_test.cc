// Text that leaves Relais is valid UTF-8 and one log line stays one event,
// whatever bytes a peer sent (base/text.h, base/json_safe.h, base/log.h).
#include <unistd.h>

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "base/json_safe.h"
#include "base/log.h"
#include "base/text.h"

namespace relais {
namespace {

std::string AllBytes() {
  std::string s;
  for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
  return s;
}

std::string RandomBytes(std::mt19937* rng, size_t max_len) {
  std::string s(std::uniform_int_distribution<size_t>(0, max_len)(*rng), '\0');
  for (char& c : s) c = static_cast<char>((*rng)() & 0xFF);
  return s;
}

bool HasControl(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) return true;
  }
  return s.find("\xC2\x85") != std::string::npos || s.find("\xC2\x9B") != std::string::npos;
}

TEST(Utf8Test, WellFormedSequencesOnly) {
  EXPECT_TRUE(IsUtf8("Ngono^\xC3\x89lodie"));           // E acute, UTF-8
  EXPECT_TRUE(IsUtf8("\xE5\xBC\xA0\xF0\x9F\x98\x80"));  // CJK, emoji
  EXPECT_FALSE(IsUtf8("Ngono^\xC9lodie"));              // the same name in Latin-1
  EXPECT_FALSE(IsUtf8("\xC0\x80"));                     // overlong NUL
  EXPECT_FALSE(IsUtf8("\xE0\x80\xAF"));                 // overlong '/'
  EXPECT_FALSE(IsUtf8("\xED\xA0\x80"));                 // surrogate
  EXPECT_FALSE(IsUtf8("\xF4\x90\x80\x80"));             // above U+10FFFF
  EXPECT_FALSE(IsUtf8("\xE5\xBC"));                     // truncated
  EXPECT_FALSE(IsUtf8("\xFF"));
}

TEST(Utf8Test, VisibleEscapesOnlyWhatIsNotUtf8) {
  EXPECT_EQ(Utf8Visible("Ngono^\xC9lodie"), "Ngono^\\xC9lodie");
  EXPECT_EQ(Utf8Visible("Ngono^\xC3\x89lodie"), "Ngono^\xC3\x89lodie");
  EXPECT_EQ(Utf8Visible("a\xE5\xBC"), "a\\xE5\\xBC");
  EXPECT_TRUE(IsUtf8(Utf8Visible(AllBytes())));
}

TEST(JsonEscapeTest, EveryByteGivesAValidJsonString) {
  std::string all = AllBytes();
  std::string doc = "\"" + JsonEscape(all) + "\"";
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(doc));
  std::string back = j.get<std::string>();
  EXPECT_EQ(back.substr(0, 128), all.substr(0, 128));  // ASCII comes back as it was
  EXPECT_NE(back.find("\\xFF"), std::string::npos);    // 0xFF is shown, visibly
}

TEST(JsonEscapeTest, RandomBytesAlwaysParse) {
  std::mt19937 rng(11);
  for (int i = 0; i < 3000; ++i) {
    std::string s = RandomBytes(&rng, 64);
    std::string doc = "{\"v\":\"" + JsonEscape(s) + "\"}";
    EXPECT_FALSE(nlohmann::json::parse(doc, nullptr, false).is_discarded()) << i;
    if (IsUtf8(s) && s.find('\\') == std::string::npos) {
      EXPECT_EQ(nlohmann::json::parse(doc)["v"].get<std::string>(), s);
    }
  }
}

TEST(JsonDumpTest, NeverThrowsOnPeerBytes) {
  nlohmann::json j = {{"error_comment", "Fehler: \xFF\xFE Datens\xE4tze"},
                      {"list", nlohmann::json::array({"ok", std::string("\xC9", 1)})},
                      {std::string("key\xE9"), 1}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);  // what crashed the alert timer
  std::string out;
  ASSERT_NO_THROW(out = JsonDump(j));
  nlohmann::json back = nlohmann::json::parse(out);
  EXPECT_EQ(back["error_comment"], "Fehler: \\xFF\\xFE Datens\\xE4tze");
  EXPECT_EQ(back["list"][1], "\\xC9");
  EXPECT_EQ(back["key\\xE9"], 1);
}

TEST(LogEscapeTest, OneLineOneEvent) {
  EXPECT_EQ(LogEscape("CT1\n2026-01-01T00:00:00.000Z ERROR event=FORGED"),
            "CT1\\n2026-01-01T00:00:00.000Z ERROR event=FORGED");
  EXPECT_EQ(LogEscape("a\x1b[31mred\r\t\x7f"), "a\\x1B[31mred\\r\\t\\x7F");
  EXPECT_EQ(LogEscape("c1:\xC2\x85|"), "c1:\\u0085|");  // NEL, a C1 control
  EXPECT_EQ(LogEscape("\xC3\x89lodie"), "\xC3\x89lodie");
  EXPECT_EQ(LogEscape("say \"x\" \\ y", /*quoted=*/true), "say \\\"x\\\" \\\\ y");
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string e = LogEscape(RandomBytes(&rng, 64));
    EXPECT_TRUE(IsUtf8(e));
    EXPECT_FALSE(HasControl(e));
  }
}

TEST(LogEscapeTest, TokensCannotAddFields) {
  EXPECT_EQ(LogToken("CTSCAN1"), "CTSCAN1");
  EXPECT_EQ(LogToken("CT event=FORGED"), "\"CT event=FORGED\"");
  EXPECT_EQ(LogToken("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(LogToken(""), "\"\"");
}

// Captures what Log() writes to stderr.
std::string CaptureLog(const char* value) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  RLOG_WARN("assoc=1 calling=%s event=association-rejected", value);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[1]);
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  return out;
}

TEST(LogTest, PeerBytesCannotForgeLines) {
  std::string line = CaptureLog("EVIL\n2026-12-07T00:00:00.000Z ERROR event=FORGED\x1b[2J\xFF");
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;  // exactly one line
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  EXPECT_TRUE(IsUtf8(line));
  EXPECT_NE(line.find("EVIL\\n2026"), std::string::npos) << line;
  EXPECT_NE(line.find("\\xFF"), std::string::npos) << line;
  std::string plain = CaptureLog("CTSCAN1");
  EXPECT_NE(plain.find("calling=CTSCAN1 event=association-rejected\n"), std::string::npos) << plain;
}

}  // namespace
}  // namespace relais
