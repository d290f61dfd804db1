// Replays every checked-in header_fuzz input (fuzz/corpus/header/: seeds and
// the inputs of fixed findings, named regression-*) through the same code as
// the fuzz target, in the normal and sanitizer builds, so a fixed finding
// stays fixed without a fuzzing run.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fuzz/header_input.h"

namespace relais::fuzz {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::filesystem::path HeaderCorpus() { return std::filesystem::path(RELAIS_SOURCE_DIR) / "fuzz/corpus/header"; }

TEST(FuzzReplayTest, EveryHeaderCorpusInputFinishesWithAResultOrAClearError) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(HeaderCorpus())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 5u);
  for (const auto& f : files) {
    SCOPED_TRACE(f.filename().string());
    std::vector<uint8_t> bytes = ReadAll(f);
    if (bytes.size() < 2) continue;
    HeaderRun run = RunHeaderInput(bytes.data(), bytes.size());
    ASSERT_TRUE(run.finished);
    if (run.result.ok()) {
      EXPECT_FALSE(run.result->sop_instance_uid.empty());
    } else {
      EXPECT_FALSE(run.result.status().message().empty());
    }
  }
}

// header_fuzz, CI 2026-11-28: a second (0000,0000) whose value was still
// arriving in 1-byte PDVs made DCMTK (fed fragment by fragment) drop the
// element and read its value as element headers; one of them declared
// 0xFFFF0000 bytes, which DCMTK allocated. DCMTK now reads the header at
// once, and the guard names the truncated element.
TEST(FuzzReplayTest, DuplicateElementWhoseValueIsStillArrivingIsReadInStep) {
  std::vector<uint8_t> bytes = ReadAll(HeaderCorpus() / "regression-duplicate-element-suspended");
  ASSERT_EQ(bytes.size(), 605u);
  HeaderRun run = RunHeaderInput(bytes.data(), bytes.size());
  ASSERT_TRUE(run.finished);
  ASSERT_FALSE(run.result.ok());
  EXPECT_EQ(run.result.status().message(),
            "data set cannot be parsed: it ends inside element (0000,0000) at byte 16, whose value declares "
            "10240 bytes but only 579 arrived (truncated)");
}

}  // namespace
}  // namespace relais::fuzz
