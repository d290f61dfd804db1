// Tests for the hash-chained audit trail (router/record/audit.h). Rotation:
// audit_rotation_test.cc.
#include "router/record/audit.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/text.h"
#include "tests/router/record/audit_test_fixture.h"

namespace relais::router {
namespace {

using ::testing::HasSubstr;

// FIPS 180-2 appendix B.1: SHA-256("abc").
TEST_F(AuditTest, Sha256MatchesTheStandardsExample) {
  EXPECT_EQ(AuditLog::Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(AuditLog::Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(AuditTest, RecordsFormAChainThatVerifies) {
  WriteRecords(3);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_THAT(lines[0], HasSubstr("\"seq\":1,"));
  EXPECT_THAT(lines[0], HasSubstr("\"kind\":\"segment\",\"reason\":\"new_file\""));
  EXPECT_EQ(FieldOf(lines[0], "prev"), std::string(64, '0'));
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    size_t at = l.rfind(",\"hash\":\"");
    ASSERT_NE(at, std::string::npos);
    // The hash covers the bytes before ,"hash":" (prev included).
    EXPECT_EQ(FieldOf(l, "hash"), AuditLog::Sha256Hex(l.substr(0, at))) << "line " << i + 1;
    if (i > 0) {
      EXPECT_EQ(FieldOf(l, "prev"), FieldOf(lines[i - 1], "hash")) << "line " << i + 1;
    }
  }
  EXPECT_THAT(lines[3], HasSubstr("\"seq\":4,"));
  EXPECT_THAT(lines[3], HasSubstr("\"kind\":\"object\",\"calling_ae\":\"CTSCAN1\",\"patient_id\":\"P2\""));
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_EQ(r.records, 4u);
}

TEST_F(AuditTest, EditedLineFailsAtThatLine) {
  WriteRecords(4);
  std::vector<std::string> lines = Lines();
  size_t at = lines[2].find("\"P1\"");
  ASSERT_NE(at, std::string::npos);
  lines[2].replace(at, 4, "\"P9\"");
  WriteLines(lines);
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 3u);
  EXPECT_THAT(r.error, HasSubstr("hash does not match"));
  EXPECT_EQ(r.records, 0u);
}

TEST_F(AuditTest, EditedLineWithItsHashRecomputedFailsAtTheNextLine) {
  WriteRecords(4);
  std::vector<std::string> lines = Lines();
  std::string& l = lines[2];
  l.replace(l.find("\"P1\""), 4, "\"P9\"");
  size_t at = l.rfind(",\"hash\":\"");
  l = l.substr(0, at) + ",\"hash\":\"" + AuditLog::Sha256Hex(l.substr(0, at)) + "\"}";
  WriteLines(lines);
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 4u);
  EXPECT_THAT(r.error, HasSubstr("\"prev\" does not match"));
}

TEST_F(AuditTest, DeletedLineFailsWhereTheChainBreaks) {
  WriteRecords(4);
  std::vector<std::string> lines = Lines();
  std::vector<std::string> cut = lines;
  cut.erase(cut.begin() + 2);  // the third record
  WriteLines(cut);
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 3u);  // the old fourth line, now third, links to a missing record
  EXPECT_THAT(r.error, HasSubstr("removed"));

  cut = lines;
  cut.erase(cut.begin());  // the first record
  WriteLines(cut);
  r = VerifyOk();
  EXPECT_EQ(r.bad_line, 1u);
  EXPECT_THAT(r.error, HasSubstr("first record"));

  cut = lines;
  std::swap(cut[1], cut[2]);  // reordered
  WriteLines(cut);
  EXPECT_EQ(VerifyOk().bad_line, 2u);
}

TEST_F(AuditTest, ReopenContinuesTheChain) {
  WriteRecords(2);
  WriteRecords(2);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_THAT(lines[3], HasSubstr("\"seq\":4,\"time\""));
  EXPECT_THAT(lines[3], HasSubstr("\"kind\":\"segment\",\"reason\":\"open\""));
  EXPECT_EQ(FieldOf(lines[3], "prev"), FieldOf(lines[2], "hash"));
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_EQ(r.records, 6u);
}

TEST_F(AuditTest, TornLastLineIsReportedThenReopenEndsItAndContinues) {
  WriteRecords(3);
  std::string all = ReadAll();
  const size_t torn = 17;  // a crash in the middle of the last record's write
  WriteAll(all.substr(0, all.size() - torn));
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 4u);
  EXPECT_THAT(r.error, HasSubstr("torn last line"));

  WriteRecords(1);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 6u);
  const size_t torn_len = lines[3].size();
  EXPECT_THAT(lines[4], HasSubstr("\"seq\":4,"));  // the torn record's seq is reused
  EXPECT_THAT(lines[4], HasSubstr("\"reason\":\"torn_tail\",\"torn_bytes\":\"" + std::to_string(torn_len) + "\""));
  EXPECT_EQ(FieldOf(lines[4], "prev"), FieldOf(lines[2], "hash"));  // chains from the last complete line
  EXPECT_THAT(lines[5], HasSubstr("\"seq\":5,"));
  r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_EQ(r.records, 5u);  // the torn line is not a record
}

// A disk that fills in the middle of a record (simulated with RLIMIT_FSIZE:
// the write stops at the limit, then fails with EFBIG, as a full disk takes
// part of a write, then ENOSPC). Record() says false and failing() holds
// until a record reaches the file again; the torn line is ended by a
// torn_tail segment then, never written behind, and the trail verifies.
TEST_F(AuditTest, FullDiskMidRecordFailsUntilSpaceReturnsThenTheTornLineIsEnded) {
  Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_TRUE((*log)->Record("object", {{"sop_instance_uid", "1.2.3.1"}, {"result", "stored"}}));
  EXPECT_FALSE((*log)->failing());

  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit full = old_limit;
  full.rlim_cur = static_cast<rlim_t>(std::filesystem::file_size(path_) + 40);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &full), 0);
  const bool second = (*log)->Record("object", {{"sop_instance_uid", "1.2.3.2"}, {"result", "stored"}});
  const bool failing_after_second = (*log)->failing();
  const bool third = (*log)->Record("object", {{"sop_instance_uid", "1.2.3.3"}, {"result", "stored"}});
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(second);
  EXPECT_TRUE(failing_after_second);
  EXPECT_FALSE(third);
  EXPECT_TRUE((*log)->failing());

  EXPECT_TRUE((*log)->Record("object", {{"sop_instance_uid", "1.2.3.4"}, {"result", "stored"}}));
  EXPECT_FALSE((*log)->failing());
  EXPECT_GE((*log)->write_failures(), 2u);
  log->reset();
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 5u) << ReadAll();  // segment, 1, torn 2, torn_tail, 4
  EXPECT_THAT(lines[3], HasSubstr("\"reason\":\"torn_tail\""));
  EXPECT_THAT(lines[4], HasSubstr("1.2.3.4"));
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error << "\n" << ReadAll();
}

TEST_F(AuditTest, MalformedLineInTheMiddleIsReported) {
  WriteRecords(3);
  std::vector<std::string> lines = Lines();
  lines.insert(lines.begin() + 2, "{\"seq\":2, oops");
  WriteLines(lines);
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 3u);
  EXPECT_THAT(r.error, HasSubstr("malformed JSON"));
}

// A torn_tail segment record excuses only a line of exactly the length it names.
TEST_F(AuditTest, TornTailSegmentDoesNotExcuseAnEditedLine) {
  WriteRecords(3);
  std::string all = ReadAll();
  WriteAll(all.substr(0, all.size() - 10));
  WriteRecords(1);
  std::vector<std::string> lines = Lines();
  lines[3] += "x";
  WriteLines(lines);
  EXPECT_EQ(VerifyOk().bad_line, 4u);
}

TEST_F(AuditTest, MalformedLinesAreCleanErrors) {
  const std::vector<std::string> bad = {
      "",
      "{",
      "}",
      "not json",
      "[1,2,3]",
      "{\"seq\":1}",
      "{\"seq\":1,\"kind\":\"x\",\"prev\":\"00\",\"hash\":\"00\"}",
      "{\"a\":{\"b\":1}}",
      "{\"a\":\"\\u12\"}",
      "{\"a\":\"\\q\"}",
      "{\"a\":\"unterminated",
      "{\"a\":1e}",
      "{\"a\":-}",
      "{\"a\":1} trailing",
      std::string("{\"a\":\"\x01\"}"),
      std::string("\xff\xfe\x00\x01", 4),
      std::string(3 << 20, 'x'),  // longer than any record may be
  };
  for (const std::string& b : bad) {
    WriteAll(b + "\n");
    AuditLog::VerifyReport r = VerifyOk();
    EXPECT_EQ(r.bad_line, 1u) << b.substr(0, 60);
    EXPECT_FALSE(r.error.empty());
  }
}

TEST_F(AuditTest, EveryTruncationOfARecordIsACleanError) {
  WriteRecords(1);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  for (size_t k = 0; k < lines[1].size(); ++k) {
    WriteAll(lines[0] + "\n" + lines[1].substr(0, k) + "\n");
    AuditLog::VerifyReport r = VerifyOk();
    EXPECT_EQ(r.bad_line, 2u) << "cut at " << k;
  }
}

TEST_F(AuditTest, UnreadableLastLineRestartsTheChainAndIsStillReported) {
  WriteRecords(2);
  std::vector<std::string> lines = Lines();
  lines[2] = "garbage";
  WriteLines(lines);
  WriteRecords(1);
  lines = Lines();
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_THAT(lines[3], HasSubstr("\"reason\":\"chain_restart\""));
  EXPECT_EQ(VerifyOk().bad_line, 3u);
}

TEST_F(AuditTest, ValuesAreEscapedAndStillVerify) {
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
    ASSERT_TRUE(log.ok());
    (*log)->Record("association", {{"calling_ae", "A\"B\\C"}, {"reason", "line1\nline2\t\x01"}});
  }
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("\"calling_ae\":\"A\\\"B\\\\C\",\"reason\":\"line1\\nline2\\t\\u0001\""));
  EXPECT_EQ(VerifyOk().bad_line, 0u);
}

TEST_F(AuditTest, RecordsFromManyThreadsKeepOneChain) {
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
    ASSERT_TRUE(log.ok());
    AuditLog* l = log->get();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([l, t] {
        for (int i = 0; i < 100; ++i) l->Record("delivery", {{"thread", std::to_string(t)}, {"i", std::to_string(i)}});
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(l->records_written(), 401u);
    EXPECT_EQ(l->write_failures(), 0u);
  }
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_EQ(r.records, 401u);
}

TEST_F(AuditTest, MissingFileAndUnwritableDirectoryAreErrors) {
  Result<AuditLog::VerifyReport> r = AuditLog::Verify((dir_ / "nope.jsonl").string());
  EXPECT_TRUE(r.status().IsNotFound());
  Result<std::unique_ptr<AuditLog>> log = AuditLog::Open((dir_ / "no" / "such" / "dir.jsonl").string());
  EXPECT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), Status::Code::kIOError);
}

// ---- bounds: every value from outside is cut, every record fits ----------

// True if `s` is well-formed UTF-8 (RFC 3629).
bool IsUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

TEST_F(AuditTest, AHugeDestinationNameIsCutAndTheRecordStillVerifies) {
  const std::string huge(1536 * 1024, 'd');  // 1.5 MB
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
    ASSERT_TRUE(log.ok());
    (*log)->Record("admin", {{"token", "tech"},
                             {"path", "/api/destinations/" + huge + "/pause"},
                             {"result", "refused"},
                             {"status", "404"},
                             {"detail", "no destination named " + huge + " in the current rules"}});
    (*log)->Record("delivery", {{"destination", huge}, {"result", "success"}});
  }
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& l : lines) EXPECT_LE(l.size(), kAuditMaxRecordBytes);
  EXPECT_LT(lines[1].size(), 4 * kAuditMaxFieldBytes);
  const std::string path = FieldOf(lines[1], "path");
  EXPECT_LE(path.size(), kAuditMaxFieldBytes);
  EXPECT_EQ(path.rfind("/api/destinations/ddd", 0), 0u) << path.substr(0, 40);
  EXPECT_THAT(path, testing::EndsWith("...[cut, " + std::to_string(huge.size() + 24) + " bytes]"));
  EXPECT_THAT(FieldOf(lines[2], "destination"), testing::EndsWith("...[cut, 1572864 bytes]"));
  EXPECT_EQ(FieldOf(lines[2], "result"), "success");  // the fields after a cut one are whole
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_EQ(r.records, 3u);
}

TEST_F(AuditTest, AValueCutInsideMultibyteCharactersStaysValidUtf8) {
  // 2-, 3- and 4-byte characters, offset so that the limit falls inside one.
  for (const std::string ch : {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"}) {
    for (size_t lead = 0; lead < 4; ++lead) {
      std::string v(lead, 'a');
      while (v.size() < 3 * kAuditMaxFieldBytes) v += ch;
      const std::string cut = AuditCut(v);
      EXPECT_LE(cut.size(), kAuditMaxFieldBytes);
      EXPECT_GT(cut.size(), kAuditMaxFieldBytes - 40);  // not cut shorter than needed
      EXPECT_TRUE(IsUtf8(cut)) << "lead " << lead << " char size " << ch.size();
      const std::string kept = cut.substr(0, cut.find("...[cut, "));
      EXPECT_EQ(v.rfind(kept, 0), 0u);
      EXPECT_EQ((kept.size() - lead) % ch.size(), 0u);
      EXPECT_THAT(cut, testing::EndsWith("...[cut, " + std::to_string(v.size()) + " bytes]"));
    }
  }
  // Written to the file: still valid UTF-8, and verifies.
  std::string euros;
  for (int i = 0; i < 1000; ++i) euros += "a\xE2\x82\xAC";
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
    ASSERT_TRUE(log.ok());
    (*log)->Record("association", {{"calling_ae", euros}});
  }
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(IsUtf8(lines[1]));
  EXPECT_THAT(FieldOf(lines[1], "calling_ae"), testing::EndsWith("...[cut, 4000 bytes]"));
  EXPECT_EQ(VerifyOk().bad_line, 0u);
}

TEST_F(AuditTest, CutsCountEscapesAndLeaveShortValuesAlone) {
  EXPECT_EQ(AuditCut("CTSCAN1"), "CTSCAN1");
  EXPECT_EQ(AuditCut(std::string(kAuditMaxFieldBytes, 'x')), std::string(kAuditMaxFieldBytes, 'x'));
  EXPECT_THAT(AuditCut(std::string(kAuditMaxFieldBytes + 1, 'x')), testing::EndsWith("...[cut, 1025 bytes]"));
  // Control characters take 6 bytes escaped: the limit is on what is written.
  const std::string controls(kAuditMaxFieldBytes, '\x01');
  const std::string cut = AuditCut(controls);
  EXPECT_LE(JsonEscape(cut).size(), kAuditMaxFieldBytes);
  EXPECT_THAT(cut, testing::EndsWith("...[cut, 1024 bytes]"));
  // Bytes that are not UTF-8 are counted one by one, never dropped.
  std::string junk;
  for (int i = 0; i < 2000; ++i) junk += static_cast<char>(0x80 + i % 64);
  const std::string j = AuditCut(junk);
  EXPECT_LE(JsonEscape(j).size(), kAuditMaxFieldBytes);
  EXPECT_EQ(junk.rfind(j.substr(0, j.find("...[cut, ")), 0), 0u);
  // A limit below the marker: the marker alone.
  EXPECT_EQ(AuditCut(std::string(100, 'x'), 10), "...[cut, 100 bytes]");
}

// Record("object", {p[0], p[1], ...}) with as many fields as `I` has.
template <size_t... I>
void RecordFields(AuditLog* log, const AuditLog::Field* p, std::index_sequence<I...>) {
  log->Record("object", {p[I]...});
}

TEST_F(AuditTest, TheWritersLongestRecordIsWhatVerifyAccepts) {
  // A record with many maximal, escape-heavy fields is cut to the limit...
  std::vector<std::string> keys, values;
  for (int i = 0; i < 200; ++i) {
    keys.push_back("field_" + std::to_string(i) + std::string(100, 'k'));
    values.push_back(std::string(5000, i % 2 ? '"' : '\x02'));
  }
  std::vector<AuditLog::Field> f;
  for (int i = 0; i < 200; ++i) f.emplace_back(keys[i], values[i]);
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
    ASSERT_TRUE(log.ok());
    for (int part = 0; part < 2; ++part) {
      RecordFields((*log).get(), f.data() + part * 100, std::make_index_sequence<100>{});
    }
    RecordFields((*log).get(), f.data(), std::make_index_sequence<1>{});
    RecordFields((*log).get(), f.data() + 1, std::make_index_sequence<1>{});
    (*log)->Record("object", {{std::string(5000, 'k'), "v"}});
  }
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 6u);
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_LE(lines[i].size(), kAuditMaxRecordBytes);
    EXPECT_GT(lines[i].size(), kAuditMaxRecordBytes - 2 * kAuditMaxFieldBytes);  // filled, not emptied
    EXPECT_NE(FieldOf(lines[i], "cut_fields"), "");
  }
  // One field of each kind: cut to the field limit, not further.
  for (size_t i = 3; i < 5; ++i) {
    EXPECT_EQ(FieldOf(lines[i], "cut_fields"), "");
    EXPECT_LE(lines[i].size(), 2 * kAuditMaxFieldBytes);
    EXPECT_GT(lines[i].size(), kAuditMaxFieldBytes);
  }
  EXPECT_THAT(lines[5], HasSubstr("...[cut, 5000 bytes]\":\"v\""));  // a key is bounded too
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_EQ(r.records, 6u);

  // ...and Verify() takes a record of exactly that size and not one byte more.
  auto record = [](size_t size) {
    std::string head = "{\"seq\":1,\"time\":\"-\",\"kind\":\"x\",\"pad\":\"";
    std::string tail = "\",\"prev\":\"" + std::string(64, '0') + "\"";
    std::string line = head + std::string(size - head.size() - tail.size() - 75, 'p') + tail;
    return line + ",\"hash\":\"" + AuditLog::Sha256Hex(line) + "\"}";
  };
  ASSERT_EQ(record(kAuditMaxRecordBytes).size(), kAuditMaxRecordBytes);
  WriteAll(record(kAuditMaxRecordBytes) + "\n");
  r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  WriteAll(record(kAuditMaxRecordBytes + 1) + "\n");
  r = VerifyOk();
  EXPECT_EQ(r.bad_line, 1u);
  EXPECT_THAT(r.error, HasSubstr("longer than " + std::to_string(kAuditMaxRecordBytes) + " bytes"));
}

// ---- repeated refusals ----------------------------------------------------

class AuditRefusalTest : public AuditTest {
 protected:
  std::unique_ptr<AuditLog> OpenWithClock() {
    AuditLog::Options o;
    o.refusal_window_ms = 60000;
    o.clock = [this] { return now_.load(); };
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_, o);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(*log) : nullptr;
  }
  static void Refuse(AuditLog* log, const std::string& client, const std::string& path, const char* status = "401") {
    log->RecordRefusal("admin", AuditAddressOf(client),
                       {{"token", ""},
                        {"client", client},
                        {"method", "GET"},
                        {"path", path},
                        {"result", "refused"},
                        {"status", status},
                        {"detail", "this needs a token"}},
                       {"token", "result", "status", "detail"});
  }
  std::vector<std::string> Kind(const std::string& kind) {
    std::vector<std::string> out;
    for (const std::string& l : Lines()) {
      if (FieldOf(l, "kind") == kind) out.push_back(l);
    }
    return out;
  }
  std::atomic<int64_t> now_{1796000000000};  // 2026-11-30
};

TEST_F(AuditRefusalTest, RepeatsWithinTheWindowBecomeOneSummaryWithTheExactCount) {
  {
    std::unique_ptr<AuditLog> log = OpenWithClock();
    ASSERT_TRUE(log);
    for (int i = 0; i < 20; ++i) {
      Refuse(log.get(), "10.0.0.5:" + std::to_string(40000 + i), "/api/" + std::string(400 * 1024, 'x'));
      now_ += 100;
    }
    Refuse(log.get(), "10.0.0.6:1", "/api/status");         // another address: its own record
    Refuse(log.get(), "10.0.0.5:2", "/api/status", "403");  // another reason: its own record
    EXPECT_EQ(Kind("admin").size(), 3u);                    // the firsts; the repeats are only counted so far
  }                                                         // closing writes the summary
  std::vector<std::string> admin = Kind("admin");
  ASSERT_EQ(admin.size(), 4u);
  EXPECT_EQ(FieldOf(admin[0], "client"), "10.0.0.5:40000");
  EXPECT_LE(FieldOf(admin[0], "path").size(), kAuditMaxFieldBytes);
  const std::string& summary = admin[3];
  EXPECT_EQ(FieldOf(summary, "address"), "10.0.0.5");
  EXPECT_EQ(FieldOf(summary, "status"), "401");
  EXPECT_EQ(FieldOf(summary, "detail"), "this needs a token");
  EXPECT_EQ(FieldOf(summary, "repeated"), "19");
  EXPECT_EQ(FieldOf(summary, "since"), FieldOf(admin[0], "time"));
  EXPECT_EQ(FieldOf(summary, "first_seq"), "2");  // after the segment record
  EXPECT_EQ(FieldOf(summary, "path"), "");        // the paths differed; none is claimed
  EXPECT_LT(ReadAll().size(), 8000u);
  AuditLog::VerifyReport r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
}

TEST_F(AuditRefusalTest, AWindowEndsAtTheNextRefusalAfterItAndANewOneStarts) {
  {
    std::unique_ptr<AuditLog> log = OpenWithClock();
    ASSERT_TRUE(log);
    Refuse(log.get(), "[::1]:5000", "/a");
    now_ += 1000;
    Refuse(log.get(), "[::1]:5001", "/b");
    now_ += 1000;
    Refuse(log.get(), "[::1]:5002", "/c");
    now_ += 60000;  // past the window
    Refuse(log.get(), "[::1]:5003", "/d");
    std::vector<std::string> admin = Kind("admin");
    ASSERT_EQ(admin.size(), 3u);
    EXPECT_EQ(FieldOf(admin[1], "address"), "::1");
    EXPECT_EQ(FieldOf(admin[1], "repeated"), "2");
    EXPECT_EQ(FieldOf(admin[2], "path"), "/d");  // the first of the next window, after the summary
    now_ += 60000;
    Refuse(log.get(), "[::1]:5004", "/e");  // the window of /d counted nothing: no summary
    EXPECT_EQ(Kind("admin").size(), 4u);
  }
  EXPECT_EQ(Kind("admin").size(), 4u);
  EXPECT_EQ(VerifyOk().bad_line, 0u);
}

TEST_F(AuditRefusalTest, TheSyncerWritesTheSummaryWhenTheWindowEnds) {
  AuditLog::Options o;
  o.refusal_window_ms = 200;
  Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_, o);
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 5; ++i) Refuse((*log).get(), "192.0.2.1:1", "/x");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Kind("admin").size() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<std::string> admin = Kind("admin");
  ASSERT_EQ(admin.size(), 2u);
  EXPECT_EQ(FieldOf(admin[1], "repeated"), "4");
  (*log).reset();
  EXPECT_EQ(Kind("admin").size(), 2u);  // nothing more at close
  EXPECT_EQ(VerifyOk().bad_line, 0u);
}

TEST_F(AuditRefusalTest, ManyAddressesKeepTheWindowsBoundedAndLoseNoCount) {
  uint64_t total = 0;
  {
    std::unique_ptr<AuditLog> log = OpenWithClock();
    ASSERT_TRUE(log);
    for (size_t a = 0; a < kAuditMaxRefusalWindows + 50; ++a) {
      for (int i = 0; i < 3; ++i) {
        Refuse(log.get(), "10.1." + std::to_string(a / 256) + "." + std::to_string(a % 256) + ":9", "/p");
        ++total;
      }
      now_ += 1;
    }
  }
  uint64_t counted = 0;
  for (const std::string& l : Kind("admin")) {
    const std::string rep = FieldOf(l, "repeated");
    counted += rep.empty() ? 1 : std::stoull(rep);
  }
  EXPECT_EQ(counted, total);
  EXPECT_EQ(VerifyOk().bad_line, 0u);
}

TEST(AuditAddressTest, PortsAreDropped) {
  EXPECT_EQ(AuditAddressOf("10.0.0.5:4711"), "10.0.0.5");
  EXPECT_EQ(AuditAddressOf("[2001:db8::1]:4711"), "2001:db8::1");
  EXPECT_EQ(AuditAddressOf("2001:db8::1"), "2001:db8::1");
  EXPECT_EQ(AuditAddressOf("host"), "host");
  EXPECT_EQ(AuditAddressOf("?"), "?");
}

// "Several writers" (audit.h): `relais serve` and a CLI command append to
// one file; each continues the chain the other left.
TEST_F(AuditTest, TwoWritersOnOneFileInterleaveIntoOneChain) {
  auto serve = AuditLog::Open(path_);
  ASSERT_TRUE(serve.ok()) << serve.status().ToString();
  ASSERT_TRUE((*serve)->Record("object", {{"uid", "1.2.3"}}));
  {
    auto cli = AuditLog::Open(path_);  // writes its "open" segment after serve's records
    ASSERT_TRUE(cli.ok()) << cli.status().ToString();
    ASSERT_TRUE((*cli)->Record("cli", {{"action", "queue purge"}}));
  }
  ASSERT_TRUE((*serve)->Record("object", {{"uid", "1.2.4"}}));  // after the CLI's records
  auto cli2 = AuditLog::Open(path_);
  ASSERT_TRUE(cli2.ok());
  ASSERT_TRUE((*cli2)->Record("cli", {{"action", "backup"}}));
  ASSERT_TRUE((*serve)->Record("object", {{"uid", "1.2.5"}}));
  ASSERT_TRUE((*cli2)->Record("cli", {{"action", "restore"}}));
  cli2->reset();
  serve->reset();
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(path_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bad_line, 0u) << r->error << "\n" << ReadAll();
  EXPECT_EQ(r->records, 9u);
}

TEST_F(AuditTest, TwoProcessesWritingAtOnceKeepTheChainIntact) {
  pid_t child = fork();  // before the log's syncer thread starts (see above)
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto other = AuditLog::Open(path_);
    if (!other.ok()) _exit(3);
    for (int i = 0; i < 300; ++i) {
      if (!(*other)->Record("cli", {{"i", std::to_string(i)}})) _exit(4);
    }
    other->reset();
    _exit(0);
  }
  auto serve = AuditLog::Open(path_);
  ASSERT_TRUE(serve.ok());
  for (int i = 0; i < 300; ++i) ASSERT_TRUE((*serve)->Record("object", {{"i", std::to_string(i)}}));
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE((*serve)->Record("object", {{"i", "last"}}));
  serve->reset();
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(path_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bad_line, 0u) << r->error;
  EXPECT_EQ(r->records, 603u);
}

}  // namespace
}  // namespace relais::router
