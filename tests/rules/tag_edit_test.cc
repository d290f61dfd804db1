// Tag edits: text form round trip, hostile text, application to a data set.
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rules/routing.h"

namespace relais::rules {
namespace {

TagEdit Edit(TagEdit::Op op, std::string target, uint32_t tag, std::string value = "", uint32_t from = 0) {
  TagEdit e;
  e.op = op;
  e.target = std::move(target);
  e.tag = tag;
  e.value = std::move(value);
  e.from_tag = from;
  return e;
}

TEST(TagEditTest, EncodeIsOneLineAndRoundTrips) {
  std::vector<TagEdit> edits = {
      Edit(TagEdit::Op::kSet, "InstitutionName", 0x00080080, "St. A; B|C 100% \n\xc3\xa9"),
      Edit(TagEdit::Op::kRemove, "(0009,1010)", 0x00091010),
      Edit(TagEdit::Op::kCopy, "OtherPatientIDs", 0x00101000, "", 0x00100020),
      Edit(TagEdit::Op::kPrefix, "AccessionNumber", 0x00080050, "EXT-"),
  };
  std::string text = EncodeEdits(edits);
  EXPECT_EQ(text,
            "v1;set|00080080|InstitutionName|St. A%3B B%7CC 100%25 %0A\xc3\xa9|00000000"
            ";remove|00091010|(0009,1010)||00000000"
            ";copy|00101000|OtherPatientIDs||00100020"
            ";prefix|00080050|AccessionNumber|EXT-|00000000");
  Result<std::vector<TagEdit>> back = DecodeEdits(text);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 4u);
  for (size_t i = 0; i < edits.size(); ++i) {
    EXPECT_EQ((*back)[i].op, edits[i].op);
    EXPECT_EQ((*back)[i].target, edits[i].target);
    EXPECT_EQ((*back)[i].tag, edits[i].tag);
    EXPECT_EQ((*back)[i].value, edits[i].value);
    EXPECT_EQ((*back)[i].from_tag, edits[i].from_tag);
  }
  EXPECT_EQ(EncodeEdits({}), "");
  ASSERT_TRUE(DecodeEdits("").ok());
  EXPECT_TRUE(DecodeEdits("")->empty());
}

TEST(TagEditTest, DecodeRefusesDamagedText) {
  for (const char* bad : {"v2;set|00080080|X|Y|00000000", "v1;", "v1;set|0008008|X|Y|00000000", "v1;set|00080080|X|Y",
                          "v1;set|00080080|X|Y|00000000|", "v1;move|00080080|X|Y|00000000",
                          "v1;set|00080080|X|%G1|00000000", "v1;set|00080080|X|%4|00000000", "garbage"}) {
    Result<std::vector<TagEdit>> r = DecodeEdits(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << bad;
    }
  }
  // Every truncation of a valid line decodes cleanly or is refused.
  std::string text =
      EncodeEdits({Edit(TagEdit::Op::kSet, "A", 0x00080080, "x%;|y"), Edit(TagEdit::Op::kRemove, "B", 0x00091010)});
  for (size_t n = 0; n < text.size(); ++n) (void)DecodeEdits(text.substr(0, n));
}

TEST(TagEditTest, ApplySetRemoveCopyPrefix) {
  DcmDataset ds;
  ASSERT_TRUE(ds.putAndInsertString(DCM_PatientID, "12345").good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_AccessionNumber, "A1").good());
  ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x0009, 0x0010, DcmVR(EVR_LO)), "ACME").good());
  ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x0009, 0x1010, DcmVR(EVR_LO)), "secret").good());
  std::vector<TagEdit> edits = {
      Edit(TagEdit::Op::kRemove, "(0009,1010)", 0x00091010),
      Edit(TagEdit::Op::kSet, "InstitutionName", 0x00080080, "Hospital X"),
      Edit(TagEdit::Op::kCopy, "OtherPatientIDs", 0x00101000, "", 0x00100020),
      Edit(TagEdit::Op::kPrefix, "AccessionNumber", 0x00080050, "EXT-"),
      Edit(TagEdit::Op::kPrefix, "StudyID", 0x00200010, "S-"),  // absent: no-op
      Edit(TagEdit::Op::kRemove, "(0011,1010)", 0x00111010),    // absent: no-op
      Edit(TagEdit::Op::kSet, "(0013,1010)", 0x00131010, "private"),
  };
  ASSERT_TRUE(ApplyEdits(edits, &ds).ok());
  OFString v;
  EXPECT_FALSE(ds.tagExists(DcmTagKey(0x0009, 0x1010)));
  EXPECT_TRUE(ds.tagExists(DcmTagKey(0x0009, 0x0010)));
  ASSERT_TRUE(ds.findAndGetOFString(DCM_InstitutionName, v).good());
  EXPECT_EQ(v, "Hospital X");
  ASSERT_TRUE(ds.findAndGetOFString(DCM_RETIRED_OtherPatientIDs, v).good());
  EXPECT_EQ(v, "12345");
  ASSERT_TRUE(ds.findAndGetOFString(DCM_AccessionNumber, v).good());
  EXPECT_EQ(v, "EXT-A1");
  EXPECT_FALSE(ds.tagExists(DCM_StudyID));
  ASSERT_TRUE(ds.findAndGetOFString(DcmTagKey(0x0013, 0x1010), v).good());
  EXPECT_EQ(v, "private");
  // A value the VR cannot hold is a clean error.
  Status s = ApplyEdits({Edit(TagEdit::Op::kSet, "Rows", 0x00280010, "many")}, &ds);
  EXPECT_FALSE(s.ok());
}

TEST(TagEditTest, EditsFromRuleFileApply) {
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(
      "[[destination]]\nname = \"out\"\nae_title = \"OUT\"\nhost = \"h\"\n"
      "[[rule]]\nname = \"r\"\nforward = [{ to = \"out\", edits = [{ remove = \"(0009,1010)\" }, "
      "{ set = \"InstitutionName\", value = \"X\" }, { copy = \"PatientComments\", from = \"PatientID\" }, "
      "{ prefix = \"PatientID\", value = \"EXT-\" }] }]\n",
      "rules.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  DcmDataset ds;
  ds.putAndInsertString(DCM_PatientID, "7");
  Decision d;
  (*r)->Evaluate(&ds, AssociationFacts{}, 0, &d);
  ASSERT_EQ(d.targets.size(), 1u);
  const std::vector<TagEdit>& edits = *d.targets[0].edits;
  ASSERT_EQ(edits.size(), 4u);
  Result<std::vector<TagEdit>> stored = DecodeEdits(EncodeEdits(edits));
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(ApplyEdits(*stored, &ds).ok());
  OFString v;
  ds.findAndGetOFString(DCM_PatientID, v);
  EXPECT_EQ(v, "EXT-7");
  ds.findAndGetOFString(DCM_PatientComments, v);
  EXPECT_EQ(v, "7");
}

// Edit values are UTF-8 (rule files are): written into a Latin-1 object, the
// object is converted to UTF-8 first, so it never holds two encodings.
TEST(TagEditTest, Utf8ValuesIntoALatin1ObjectConvertItToUtf8) {
  DcmDataset ds;
  ASSERT_TRUE(ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100").good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_PatientName, "Ngono^\xC9lodie").good());
  ASSERT_TRUE(ApplyEdits({Edit(TagEdit::Op::kSet, "InstitutionName", 0x00080080, "H\xC3\xB4pital Central")}, &ds).ok());
  OFString v;
  ASSERT_TRUE(ds.findAndGetOFStringArray(DCM_SpecificCharacterSet, v).good());
  EXPECT_EQ(v, "ISO_IR 192");
  ASSERT_TRUE(ds.findAndGetOFString(DCM_PatientName, v).good());
  EXPECT_EQ(v, "Ngono^\xC3\x89lodie");  // converted with the rest
  ASSERT_TRUE(ds.findAndGetOFString(DCM_InstitutionName, v).good());
  EXPECT_EQ(v, "H\xC3\xB4pital Central");

  // An object in the default repertoire gets ISO_IR 192 declared.
  DcmDataset plain;
  ASSERT_TRUE(plain.putAndInsertString(DCM_PatientName, "DOE^JOHN").good());
  ASSERT_TRUE(ApplyEdits({Edit(TagEdit::Op::kPrefix, "PatientName", 0x00100010, "\xC3\x89-")}, &plain).ok());
  ASSERT_TRUE(plain.findAndGetOFStringArray(DCM_SpecificCharacterSet, v).good());
  EXPECT_EQ(v, "ISO_IR 192");

  // ASCII edits leave the character set alone.
  DcmDataset latin;
  ASSERT_TRUE(latin.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100").good());
  ASSERT_TRUE(ApplyEdits({Edit(TagEdit::Op::kSet, "InstitutionName", 0x00080080, "X")}, &latin).ok());
  ASSERT_TRUE(latin.findAndGetOFStringArray(DCM_SpecificCharacterSet, v).good());
  EXPECT_EQ(v, "ISO_IR 100");
}

}  // namespace
}  // namespace relais::rules
