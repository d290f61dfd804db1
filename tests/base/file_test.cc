// WriteFileAtomically (base/file.h): the whole text or the old file, never a
// part, and a failure names the file.
#include "base/file.h"

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace relais {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class WriteFileAtomicallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/relais-file-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    ::unlink((dir_ + "/f").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(WriteFileAtomicallyTest, WritesThenReplacesWholeAndLeavesNoTemporary) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteFileAtomically(path, "first\n").ok());
  EXPECT_EQ(Read(path), "first\n");
  ASSERT_TRUE(WriteFileAtomically(path, "second, longer\n").ok());
  EXPECT_EQ(Read(path), "second, longer\n");
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0);
}

TEST_F(WriteFileAtomicallyTest, MissingFolderIsAnErrorNamingTheFile) {
  const std::string path = dir_ + "/no-such-folder/f";
  Status s = WriteFileAtomically(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find(path + ".tmp"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace relais
