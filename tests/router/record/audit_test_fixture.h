// The fixture of the audit trail tests (router/record/audit.h): a log file
// in a fresh temp directory per test, and helpers to read, edit and verify
// it. Shared by audit_test.cc and audit_rotation_test.cc.
#ifndef RELAIS_TESTS_ROUTER_RECORD_AUDIT_TEST_FIXTURE_H_
#define RELAIS_TESTS_ROUTER_RECORD_AUDIT_TEST_FIXTURE_H_

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "router/record/audit.h"

namespace relais::router {

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("relais_audit_test_" + std::to_string(getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "audit.jsonl").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string ReadAll() {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void WriteAll(const std::string& bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  std::vector<std::string> Lines() {
    std::vector<std::string> out;
    std::istringstream in(ReadAll());
    std::string l;
    while (std::getline(in, l)) out.push_back(l);
    return out;
  }
  void WriteLines(const std::vector<std::string>& lines) {
    std::string all;
    for (const std::string& l : lines) all += l + "\n";
    WriteAll(all);
  }
  // Opens, writes `n` object records, closes: n + 1 lines (with the segment).
  void WriteRecords(int n) {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path_);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    RecordObjects(log->get(), n);
  }
  // Writes `n` object records (a few hundred bytes each) to `log`.
  static void RecordObjects(AuditLog* log, int n) {
    for (int i = 0; i < n; ++i) {
      log->Record("object", {{"calling_ae", "CTSCAN1"},
                             {"patient_id", "P" + std::to_string(i)},
                             {"sop_instance_uid", "1.2.3." + std::to_string(i)},
                             {"result", "stored"}});
    }
  }
  AuditLog::VerifyReport VerifyOk() {
    Result<AuditLog::VerifyReport> r = AuditLog::Verify(path_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : AuditLog::VerifyReport{};
  }
  // The value of "key" in a line as written (string values only).
  static std::string FieldOf(const std::string& line, const std::string& key) {
    std::string k = "\"" + key + "\":\"";
    size_t at = line.find(k);
    if (at == std::string::npos) return "";
    at += k.size();
    return line.substr(at, line.find('"', at) - at);
  }

  std::filesystem::path dir_;
  std::string path_;
};

}  // namespace relais::router

#endif  // RELAIS_TESTS_ROUTER_RECORD_AUDIT_TEST_FIXTURE_H_
