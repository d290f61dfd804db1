// Tests for the rotation of the hash-chained audit trail
// (router/record/audit.h): the chain continues across files, and a removed,
// cut or foreign file breaks it where it should.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "router/record/audit.h"
#include "tests/router/record/audit_test_fixture.h"

namespace relais::router {
namespace {

using ::testing::HasSubstr;

// ---- rotation -------------------------------------------------------------------

class AuditRotationTest : public AuditTest {
 protected:
  // Opens with rotate_size, writes `n` object records (a few hundred bytes each), closes.
  void WriteRotating(uint64_t rotate_size, int n) {
    AuditLog::Options o;
    o.rotate_size = rotate_size;
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_, o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    RecordObjects(log->get(), n);
    rotations_ = (*log)->rotations();
    EXPECT_EQ((*log)->write_failures(), 0u);
  }
  // The rotated files in name (= time) order, then the current file.
  std::vector<std::string> Files() {
    std::vector<std::string> rotated;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::string name = e.path().filename().string();
      if (name != "audit.jsonl") rotated.push_back(e.path().string());
    }
    std::sort(rotated.begin(), rotated.end());
    rotated.push_back(path_);
    return rotated;
  }
  static std::vector<std::string> LinesOf(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::string> out;
    std::string l;
    while (std::getline(in, l)) out.push_back(l);
    return out;
  }
  static void WriteLinesTo(const std::string& path, const std::vector<std::string>& lines) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    for (const std::string& l : lines) out << l << "\n";
  }
  AuditLog::VerifyReport VerifyAll(const std::vector<std::string>& files) {
    Result<AuditLog::VerifyReport> r = AuditLog::Verify(files);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : AuditLog::VerifyReport{};
  }
  uint64_t rotations_ = 0;
};

TEST_F(AuditRotationTest, ChainContinuesAcrossFilesAndVerifies) {
  WriteRotating(1000, 20);
  std::vector<std::string> files = Files();
  ASSERT_GE(files.size(), 4u);
  EXPECT_EQ(files.size(), rotations_ + 1);
  const std::regex name(".*/audit\\.jsonl\\.[0-9]{8}T[0-9]{6}Z(-[0-9]{2})?");
  size_t total = 0;
  uint64_t expect_seq = 1;
  std::string last_hash = std::string(64, '0');
  for (size_t i = 0; i < files.size(); ++i) {
    if (i + 1 < files.size()) {
      EXPECT_TRUE(std::regex_match(files[i], name)) << files[i];
      // A rotated file is full: it reached rotate_size with its last record.
      EXPECT_GE(std::filesystem::file_size(files[i]), 1000u) << files[i];
    }
    std::vector<std::string> lines = LinesOf(files[i]);
    ASSERT_FALSE(lines.empty()) << files[i];
    if (i > 0) {
      // The first record links to the last record of the file before.
      EXPECT_THAT(lines[0], HasSubstr("\"kind\":\"segment\",\"reason\":\"rotated\",\"prev_file\":\"" +
                                      std::filesystem::path(files[i - 1]).filename().string() + "\""));
    }
    for (const std::string& l : lines) {
      EXPECT_THAT(l, HasSubstr("{\"seq\":" + std::to_string(expect_seq++) + ","));
      EXPECT_EQ(FieldOf(l, "prev"), last_hash);
      last_hash = FieldOf(l, "hash");
    }
    total += lines.size();
  }
  // Nothing lost, nothing deleted: 1 open segment + 20 records + one segment per rotation.
  EXPECT_EQ(total, 21 + rotations_);
  AuditLog::VerifyReport r = VerifyAll(files);
  EXPECT_EQ(r.bad_line, 0u) << r.bad_file << ":" << r.bad_line << ": " << r.error;
  EXPECT_EQ(r.records, total);
  EXPECT_EQ(r.files, files.size());
  EXPECT_TRUE(r.note.empty());
  // The current file alone: intact, its link to the rotated file noted, not checked.
  r = VerifyOk();
  EXPECT_EQ(r.bad_line, 0u) << r.error;
  EXPECT_THAT(r.note, HasSubstr("was not given"));
}

TEST_F(AuditRotationTest, ReopenAfterRotationContinuesTheChain) {
  WriteRotating(1000, 8);
  WriteRotating(1000, 8);
  AuditLog::VerifyReport r = VerifyAll(Files());
  EXPECT_EQ(r.bad_line, 0u) << r.bad_file << ":" << r.bad_line << ": " << r.error;
}

// Removing the current file (or a crash between the rename and the new
// file's first record) cannot pass unnoticed: the next file starts a new chain.
TEST_F(AuditRotationTest, ARemovedCurrentFileIsFoundAtTheNextFile) {
  WriteRotating(1000, 8);
  std::vector<std::string> files = Files();
  ASSERT_GE(files.size(), 2u);
  std::filesystem::remove(path_);
  WriteRotating(1000, 1);
  AuditLog::VerifyReport r = VerifyAll(files);
  EXPECT_EQ(r.bad_file, path_);
  EXPECT_EQ(r.bad_line, 1u);
  EXPECT_THAT(r.error, HasSubstr("does not continue " + files[files.size() - 2]));
  EXPECT_THAT(r.error, HasSubstr("reason new_file"));
}

TEST_F(AuditRotationTest, RotateSizeBelowOneRecordStillTerminates) {
  WriteRotating(1, 10);
  std::vector<std::string> files = Files();
  EXPECT_EQ(rotations_, 11u);  // after the open segment and after every record
  for (size_t i = 1; i < files.size(); ++i) {
    EXPECT_EQ(LinesOf(files[i]).size(), i + 1 == files.size() ? 1u : 2u) << files[i];
  }
  AuditLog::VerifyReport r = VerifyAll(files);
  EXPECT_EQ(r.bad_line, 0u) << r.bad_file << ":" << r.bad_line << ": " << r.error;
}

TEST_F(AuditRotationTest, TamperingInTheSecondFileIsFoundAtItsLine) {
  WriteRotating(1000, 20);
  std::vector<std::string> files = Files();
  ASSERT_GE(files.size(), 3u);
  std::vector<std::string> lines = LinesOf(files[1]);
  ASSERT_GE(lines.size(), 3u);
  std::string& l = lines[2];
  size_t at = l.find("\"patient_id\":\"P");
  ASSERT_NE(at, std::string::npos) << l;
  l.replace(at, 15, "\"patient_id\":\"X");
  WriteLinesTo(files[1], lines);
  AuditLog::VerifyReport r = VerifyAll(files);
  EXPECT_EQ(r.bad_file, files[1]);
  EXPECT_EQ(r.bad_line, 3u);
  EXPECT_THAT(r.error, HasSubstr("hash does not match"));
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.files, 2u);  // stopped there
}

TEST_F(AuditRotationTest, AMissingMiddleFileIsFound) {
  WriteRotating(1000, 20);
  std::vector<std::string> files = Files();
  ASSERT_GE(files.size(), 3u);
  const std::string missing = std::filesystem::path(files[1]).filename().string();
  std::vector<std::string> gap = files;
  gap.erase(gap.begin() + 1);
  AuditLog::VerifyReport r = VerifyAll(gap);
  EXPECT_EQ(r.bad_file, files[2]);
  EXPECT_EQ(r.bad_line, 1u);
  EXPECT_THAT(r.error, HasSubstr("continues '" + missing + "', not " + files[0]));

  // Out of order: same finding at the first misplaced file.
  std::vector<std::string> swapped = files;
  std::swap(swapped[1], swapped[2]);
  r = VerifyAll(swapped);
  EXPECT_EQ(r.bad_file, swapped[1]);
  EXPECT_EQ(r.bad_line, 1u);
}

TEST_F(AuditRotationTest, ACutOrForeignPreviousFileBreaksTheLink) {
  WriteRotating(1000, 20);
  std::vector<std::string> files = Files();
  ASSERT_GE(files.size(), 3u);
  // The last record of the first file removed: the second file's link breaks.
  std::vector<std::string> lines = LinesOf(files[0]);
  lines.pop_back();
  WriteLinesTo(files[0], lines);
  AuditLog::VerifyReport r = VerifyAll(files);
  EXPECT_EQ(r.bad_file, files[1]);
  EXPECT_EQ(r.bad_line, 1u);
  EXPECT_THAT(r.error, HasSubstr("does not match the last record of " + files[0]));

  // A file that starts its own chain cannot follow another one.
  const std::string other = (dir_ / "other.jsonl").string();
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(other);
    ASSERT_TRUE(log.ok());
  }
  r = VerifyAll({files[2], other});
  EXPECT_EQ(r.bad_file, other);
  EXPECT_EQ(r.bad_line, 1u);
  EXPECT_THAT(r.error, HasSubstr("does not continue"));
}

// `relais serve` rotates while a command (another process, which opened
// the file before) appends: the command follows the path to the new file
// and continues the chain after its "rotated" segment, so every file
// verifies as one chain and no record is lost.
TEST_F(AuditRotationTest, AWriterThatHoldsTheOldFileFollowsARotationByAnotherProcess) {
  AuditLog::Options o;
  o.rotate_size = 8000;  // about 25 rotations (at most 100 names a second)
  constexpr int kEach = 400;
  // Fork before this process starts a thread (the syncer of an open log): a
  // child forked while another thread holds an allocator lock can hang in
  // malloc under ASan. The pipe tells the parent the child's file is open.
  int opened[2];
  ASSERT_EQ(pipe(opened), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(opened[0]);
    // Several commands, each opening the file once and writing a burst,
    // as `relais queue retry` etc. do, and one long-lived writer.
    auto held = AuditLog::Open(path_);
    if (!held.ok()) _exit(3);
    if (::write(opened[1], "o", 1) != 1) _exit(6);
    for (int i = 0; i < kEach; ++i) {
      if (!(*held)->Record("cli", {{"i", std::to_string(i)}, {"user", "alice"}})) _exit(4);
      if (i % 50 == 0) {
        auto once = AuditLog::Open(path_);
        if (!once.ok() || !(*once)->Record("cli", {{"action", "purge"}, {"i", std::to_string(i)}})) _exit(5);
      }
    }
    held->reset();
    _exit(0);
  }
  ::close(opened[1]);
  char byte = 0;
  ASSERT_EQ(::read(opened[0], &byte, 1), 1) << "the child opened the log";
  ::close(opened[0]);
  auto serve = AuditLog::Open(path_, o);
  ASSERT_TRUE(serve.ok());
  for (int i = 0; i < kEach; ++i) {
    ASSERT_TRUE((*serve)->Record("object", {{"sop_instance_uid", "1.2.3." + std::to_string(i)}, {"result", "stored"}}));
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  const uint64_t rotations = (*serve)->rotations();
  serve->reset();
  EXPECT_GT(rotations, 5u);
  std::vector<std::string> files = Files();
  ASSERT_EQ(files.size(), rotations + 1) << "no stray file (a .rotating one)";
  AuditLog::VerifyReport r = VerifyAll(files);
  EXPECT_EQ(r.bad_line, 0u) << r.bad_file << ":" << r.bad_line << ": " << r.error;
  // Every record is in the chain: serve's, the command's, the segments.
  uint64_t objects = 0, cli = 0;
  for (const std::string& f : files) {
    for (const std::string& l : LinesOf(f)) {
      objects += l.find("\"kind\":\"object\"") != std::string::npos;
      cli += l.find("\"kind\":\"cli\"") != std::string::npos;
    }
  }
  EXPECT_EQ(objects, static_cast<uint64_t>(kEach));
  EXPECT_EQ(cli, static_cast<uint64_t>(kEach + kEach / 50));
}

TEST_F(AuditRotationTest, VerifyOfNoFilesOrAMissingFileIsAnError) {
  EXPECT_EQ(AuditLog::Verify(std::vector<std::string>{}).status().code(), Status::Code::kInvalidArgument);
  WriteRotating(1000, 1);
  EXPECT_TRUE(AuditLog::Verify(std::vector<std::string>{path_, (dir_ / "gone").string()}).status().IsNotFound());
}

TEST_F(AuditRotationTest, BadSyslogTargetIsAnError) {
  AuditLog::Options o;
  o.syslog = "http://collector:514";
  Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_, o);
  EXPECT_EQ(log.status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path_));  // refused before touching the file
}

}  // namespace
}  // namespace relais::router
