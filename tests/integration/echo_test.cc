// echoscu against relais: C-ECHO works, a wrong called AE is rejected.
#include <gtest/gtest.h>

#include "harness.h"

namespace relais::itest {
namespace {

TEST(EchoTest, EchoscuGetsSuccess) {
  TempDir dir;
  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();
  RunResult r = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(r.exit_code, 0) << r.output << relais.Log();
  EXPECT_NE(relais.Log().find("event=c-echo"), std::string::npos) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

TEST(EchoTest, WrongCalledAeIsRejectedWithReason) {
  TempDir dir;
  RelaisProcess relais(dir.path());
  ASSERT_TRUE(relais.Start()) << relais.Log();
  RunResult r = RunCommand({"echoscu", "-aec", "NOTRELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_NE(r.exit_code, 0) << r.output;
  // DCMTK prints the A-ASSOCIATE-RJ reason it got.
  EXPECT_NE(r.output.find("Called AE Title Not Recognized"), std::string::npos) << r.output;
  EXPECT_NE(relais.Log().find("association-rejected"), std::string::npos) << relais.Log();
  // Relais keeps serving.
  RunResult ok = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

}  // namespace
}  // namespace relais::itest
