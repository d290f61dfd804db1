// DICOM text is matched and shown as the text it is: values are decoded by
// the data set's Specific Character Set (rules/dicom_text.h), so rules
// written in UTF-8 match ISO_IR 100 (and other) objects; whatever cannot be
// decoded is shown visibly escaped, and the result is always UTF-8.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcspchrs.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "base/text.h"
#include "rules/dicom_text.h"
#include "rules/routing.h"

namespace relais::rules {
namespace {

using ::testing::HasSubstr;

TEST(DicomTextTest, Latin1NamesDecode) {
  EXPECT_EQ(DecodeDicomText("Ngono^\xC9lodie", "ISO_IR 100", TextKind::kPersonName), "Ngono^\xC3\x89lodie");
  EXPECT_EQ(DecodeDicomText("H\xF4pital Central", "ISO_IR 100 ", TextKind::kValue), "H\xC3\xB4pital Central");
  // Latin-1's currency sign; the same byte is a Cyrillic letter in ISO_IR 144.
  EXPECT_EQ(DecodeDicomText("\xA4", "ISO_IR 100", TextKind::kValue), "\xC2\xA4");
  EXPECT_EQ(DecodeDicomText("\xA4", "ISO_IR 144", TextKind::kValue), "\xD0\x84");
}

// ISO_IR 100 has a direct path (the daily case): byte for byte what DCMTK's
// own conversion gives.
TEST(DicomTextTest, Latin1FastPathAgreesWithDcmtkOnEveryByte) {
  DcmSpecificCharacterSet dcmtk;
  ASSERT_TRUE(dcmtk.selectCharacterSet("ISO_IR 100", "ISO_IR 192").good());
  for (int b = 0x80; b < 0x100; ++b) {
    std::string in = "a" + std::string(1, static_cast<char>(b)) + "z";
    OFString expected;
    if (dcmtk.convertString(in.data(), in.size(), expected, "\\").bad()) {
      ADD_FAILURE() << "DCMTK cannot convert byte " << b;
      continue;
    }
    EXPECT_EQ(DecodeDicomText(in, "ISO_IR 100", TextKind::kValue), std::string(expected.c_str(), expected.length()))
        << "byte " << b;
  }
}

TEST(DicomTextTest, AsciiAndUtf8PassUnchanged) {
  EXPECT_EQ(DecodeDicomText("DOE^JOHN", "ISO_IR 100", TextKind::kPersonName), "DOE^JOHN");
  EXPECT_EQ(DecodeDicomText("Buc^J\xC3\xA9r\xC3\xB4me", "ISO_IR 192", TextKind::kPersonName),
            "Buc^J\xC3\xA9r\xC3\xB4me");
  EXPECT_EQ(DecodeDicomText("Buc^J\xC3\xA9r\xC3\xB4me", "", TextKind::kPersonName), "Buc^J\xC3\xA9r\xC3\xB4me");
}

TEST(DicomTextTest, WhatCannotBeDecodedIsShownVisibly) {
  // Undeclared Latin-1 (default repertoire): not guessed, shown.
  EXPECT_EQ(DecodeDicomText("Ngono^\xC9lodie", "", TextKind::kPersonName), "Ngono^\\xC9lodie");
  // Invalid UTF-8 under ISO_IR 192.
  EXPECT_EQ(DecodeDicomText("a\xFF", "ISO_IR 192", TextKind::kValue), "a\\xFF");
  // A character set nobody knows.
  EXPECT_EQ(DecodeDicomText("\xC9", "ISO_IR 999", TextKind::kValue), "\\xC9");
  // Random bytes under every kind of set: always UTF-8.
  std::mt19937 rng(3);
  const char* sets[] = {"ISO_IR 100", "ISO_IR 126",       "ISO_IR 192",
                        "GB18030",    "\\ISO 2022 IR 87", "ISO 2022 IR 6\\ISO 2022 IR 149",
                        "ISO_IR 13",  "nonsense",         ""};
  for (int i = 0; i < 2000; ++i) {
    std::string v(rng() % 40, '\0');
    for (char& c : v) c = static_cast<char>(rng() & 0xFF);
    for (const char* cs : sets) {
      EXPECT_TRUE(IsUtf8(DecodeDicomText(v, cs, TextKind::kPersonName))) << cs;
    }
  }
}

// The character set files of the corpus: (file, Patient Name as UTF-8).
struct CorpusName {
  const char* file;
  const char* name;
};
const CorpusName kCorpusNames[] = {
    {"pydicom__chrFren.dcm", "Buc^J\xC3\xA9r\xC3\xB4me"},
    {"pydicom__chrGerm.dcm",
     "\xC3\x84neas^R\xC3\xBC"
     "diger"},
    {"pydicom__chrRuss.dcm",
     "\xD0\x9B\xD1\x8E\xD0\xBA"
     "ce\xD0\xBC\xD0\xB1yp\xD0\xB3"},
    {"pydicom__chrArab.dcm", "\xD9\x82\xD8\xA8\xD8\xA7\xD9\x86\xD9\x8A^\xD9\x84\xD9\x86\xD8\xB2\xD8\xA7\xD8\xB1"},
    {"pydicom__chrHbrw.dcm", "\xD7\xA9\xD7\xA8\xD7\x95\xD7\x9F^\xD7\x93\xD7\x91\xD7\x95\xD7\xA8\xD7\x94"},
    {"pydicom__chrX2.dcm", "Wang^XiaoDong=\xE7\x8E\x8B^\xE5\xB0\x8F\xE4\xB8\x9C="},
    {"pydicom__chrI2.dcm", "Hong^Gildong=\xE6\xB4\xAA^\xE5\x90\x89\xE6\xB4\x9E=\xED\x99\x8D^\xEA\xB8\xB8\xEB\x8F\x99"},
    {"fodicom__chrGB2312.dcm", "Zhang^XiaoDong=\xE5\xBC\xA0^\xE5\xB0\x8F\xE4\xB8\x9C="},
    {"pydicom__chrJapMulti.dcm", "\xE3\x82\x84\xE3\x81\xBE\xE3\x81\xA0^\xE3\x81\x9F\xE3\x82\x8D\xE3\x81\x86"},
    {"pydicom__chrH31.dcm",
     "Yamada^Tarou=\xE5\xB1\xB1\xE7\x94\xB0^\xE5\xA4\xAA\xE9\x83\x8E="
     "\xE3\x82\x84\xE3\x81\xBE\xE3\x81\xA0^\xE3\x81\x9F\xE3\x82\x8D\xE3\x81\x86"},
};

std::string Raw(DcmItem* ds, const DcmTagKey& key) {
  const char* s = nullptr;
  Uint32 n = 0;
  if (ds->findAndGetString(key, s, n).bad() || s == nullptr) return "";
  return std::string(s, n);
}

std::string CharsetOf(DcmItem* ds) {
  OFString cs;
  if (ds->findAndGetOFStringArray(DCM_SpecificCharacterSet, cs).bad()) return "";
  return cs.c_str();
}

TEST(DicomTextTest, CorpusCharacterSetFilesDecode) {
  for (const CorpusName& c : kCorpusNames) {
    DcmFileFormat ff;
    std::string path = std::string(RELAIS_CORPUS_DIR) + "/" + c.file;
    ASSERT_TRUE(ff.loadFile(path.c_str()).good()) << path;
    DcmDataset* ds = ff.getDataset();
    std::string decoded = DecodeDicomText(Raw(ds, DCM_PatientName), CharsetOf(ds), TextKind::kPersonName);
    EXPECT_EQ(decoded, c.name) << c.file << " (" << CharsetOf(ds) << ")";
  }
}

constexpr char kDestinations[] =
    "[[destination]]\n"
    "name = \"archive\"\n"
    "ae_title = \"ARCHIVE\"\n"
    "host = \"10.1.0.20\"\n";

std::shared_ptr<const RuleSet> MustParse(const std::string& match_body) {
  std::string text =
      std::string(kDestinations) + "[[rule]]\nname = \"r\"\nforward = [\"archive\"]\n[rule.match]\n" + match_body;
  Result<std::shared_ptr<const RuleSet>> r = RuleSet::Parse(text, "rules.toml");
  EXPECT_TRUE(r.ok()) << r.status().ToString() << "\n" << text;
  return r.ok() ? *r : nullptr;
}

bool Matches(const std::string& match_body, DcmItem* ds, Explanation* explain = nullptr) {
  auto set = MustParse(match_body);
  if (set == nullptr) return false;
  AssociationFacts facts{"CTSCAN1", "RELAIS", "10.1.2.3", "default"};
  Decision d;
  set->Evaluate(ds, facts, 0, &d, explain);
  return !d.unmatched;
}

TEST(CharsetRoutingTest, Utf8RulesMatchLatin1Objects) {
  DcmDataset ds;
  ASSERT_TRUE(ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100").good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_PatientName, "Ngono^\xC9lodie").good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_InstitutionName, "H\xF4pital Central").good());
  EXPECT_TRUE(Matches("PatientName = { regex = \"(?i)^ngono\\\\^\" }\n", &ds));
  EXPECT_TRUE(Matches("PatientName = { regex = \"^Ngono\\\\^\xC3\x89lodie$\" }\n", &ds));
  EXPECT_TRUE(Matches("PatientName = { wildcard = \"*\xC3\x89lod?e\" }\n", &ds));
  EXPECT_TRUE(Matches("InstitutionName = \"H\xC3\xB4pital Central\"\n", &ds));
  EXPECT_FALSE(Matches("InstitutionName = \"Hopital Central\"\n", &ds));
  // The stored bytes stay as received.
  EXPECT_EQ(Raw(&ds, DCM_PatientName), "Ngono^\xC9lodie");
  // Explanations show the decoded value.
  Explanation ex;
  EXPECT_TRUE(Matches("PatientName = { regex = \"(?i)^ngono\" }\n", &ds, &ex));
  ASSERT_EQ(ex.rules.size(), 1u);
  ASSERT_EQ(ex.rules[0].reasons.size(), 1u);
  EXPECT_THAT(ex.rules[0].reasons[0], HasSubstr("'Ngono^\xC3\x89lodie'"));
}

TEST(CharsetRoutingTest, ValuesInSequencesAndOtherSetsDecode) {
  DcmDataset ds;
  ASSERT_TRUE(ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 144").good());  // Cyrillic
  DcmItem* item = nullptr;
  ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_RequestAttributesSequence, item, -2).good());
  ASSERT_TRUE(item->putAndInsertString(DCM_ScheduledProcedureStepDescription, "\xBC\xE0\xE2").good());  // "Мрт"
  EXPECT_TRUE(
      Matches("\"RequestAttributesSequence.ScheduledProcedureStepDescription\" = \"\xD0\x9C\xD1\x80\xD1\x82\"\n", &ds));
}

// A sequence item may declare its own Specific Character Set: its values
// (and those of items nested in it) are decoded by that one.
TEST(CharsetRoutingTest, AnItemsOwnCharacterSetDecodesItsValues) {
  DcmDataset ds;
  ASSERT_TRUE(ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100").good());
  DcmItem* item = nullptr;
  ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_RequestAttributesSequence, item, -2).good());
  ASSERT_TRUE(item->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 144").good());  // Cyrillic
  ASSERT_TRUE(item->putAndInsertString(DCM_ScheduledProcedureStepDescription, "\xBC\xE0\xE2").good());
  EXPECT_TRUE(
      Matches("\"RequestAttributesSequence.ScheduledProcedureStepDescription\" = \"\xD0\x9C\xD1\x80\xD1\x82\"\n", &ds));
  // Read as the header's Latin-1 it would be three accented letters.
  EXPECT_FALSE(
      Matches("\"RequestAttributesSequence.ScheduledProcedureStepDescription\" = \"\xC2\xBC\xC3\xA0\xC3\xA2\"\n", &ds));
}

TEST(CharsetRoutingTest, CorpusFilesRouteByUtf8Rules) {
  for (const CorpusName& c : kCorpusNames) {
    DcmFileFormat ff;
    std::string path = std::string(RELAIS_CORPUS_DIR) + "/" + c.file;
    ASSERT_TRUE(ff.loadFile(path.c_str()).good()) << path;
    std::string name = c.name;
    EXPECT_TRUE(Matches("PatientName = \"" + name + "\"\n", ff.getDataset())) << c.file;
  }
}

}  // namespace
}  // namespace relais::rules
