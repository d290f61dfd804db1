// Tests for the readable tag edits of `relais object show` (router/cli/edits_text.h).
#include "router/cli/edits_text.h"

#include <gtest/gtest.h>

#include "rules/routing.h"

namespace relais::router {
namespace {

TEST(EditsTextTest, SetIsPrintedWithTagKeywordAndQuotedValue) {
  EXPECT_EQ(EditsText("v1;set|00080080|InstitutionName|Hospital X|00000000"),
            "set (0008,0080) InstitutionName = \"Hospital X\"");
}

TEST(EditsTextTest, EveryOperationReadsAsASentence) {
  std::vector<rules::TagEdit> edits(4);
  edits[0] = {rules::TagEdit::Op::kRemove, "PatientComments", 0x00104000, "", 0};
  edits[1] = {rules::TagEdit::Op::kCopy, "(0008,1030)", 0x00081030, "", 0x00081010};
  edits[2] = {rules::TagEdit::Op::kPrefix, "PatientID", 0x00100020, "EXT-", 0};
  edits[3] = {rules::TagEdit::Op::kSet, "InstitutionName", 0x00080080, "a|b;c", 0};
  EXPECT_EQ(EditsText(rules::EncodeEdits(edits)),
            "remove (0010,4000) PatientComments; copy (0008,1010) to (0008,1030); prefix (0010,0020) PatientID with "
            "\"EXT-\"; set (0008,0080) InstitutionName = \"a|b;c\"");
}

TEST(EditsTextTest, NoEditsIsEmptyAndAnUndecodableTextIsShownAsIs) {
  EXPECT_EQ(EditsText(""), "");
  EXPECT_EQ(EditsText("v9;what"), "v9;what");
}

}  // namespace
}  // namespace relais::router
