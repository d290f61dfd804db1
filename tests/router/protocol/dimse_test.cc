// Tests for the DIMSE command set codec (router/protocol/dimse.h): golden bytes
// written from PS3.7, round trips, malformed input, and a cross-check with
// DCMTK's own Implicit VR Little Endian reader and writer.
#include "router/protocol/dimse.h"

#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrmb.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace relais::dimse {
namespace {

using Bytes = std::vector<uint8_t>;

// Appends an Implicit VR LE element header: tag (group, element), 4-byte length.
void Hdr(Bytes* b, uint16_t group, uint16_t element, uint32_t length) {
  b->insert(b->end(),
            {static_cast<uint8_t>(group), static_cast<uint8_t>(group >> 8), static_cast<uint8_t>(element),
             static_cast<uint8_t>(element >> 8), static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8),
             static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 24)});
}
void Str(Bytes* b, const char* s) { b->insert(b->end(), s, s + std::strlen(s)); }

// PS3.7 9.3.5.1, Table 9.3-12: C-ECHO-RQ, Message ID 1, Implicit VR LE.
// Decodes to: Command Field C-ECHO-RQ (0030H), Affected SOP Class UID
// "1.2.840.10008.1.1" (Verification), Message ID 1, no data set (0101H).
const Bytes kEchoRq = {
    0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,  // (0000,0000) UL, length 4
    0x38, 0x00, 0x00, 0x00,                          //   = 56 bytes follow
    0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00,  // (0000,0002) UI, length 18
    '1',  '.',  '2',  '.',  '8',  '4',  '0',  '.',  '1', '0', '0', '0', '8', '.', '1', '.', '1',
    0x00,                                            //   17 chars + NUL pad
    0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00,  // (0000,0100) US, length 2
    0x30, 0x00,                                      //   = 0030H C-ECHO-RQ
    0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00,  // (0000,0110) US, length 2
    0x01, 0x00,                                      //   Message ID = 1
    0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00,  // (0000,0800) US, length 2
    0x01, 0x01,                                      //   = 0101H: no data set
};

// PS3.7 9.3.1.1, Table 9.3-1: C-STORE-RQ. Decodes to: Affected SOP Class
// "1.2.840.10008.5.1.4.1.1.2" (CT Image Storage), C-STORE-RQ (0001H),
// Message ID 7, Priority 0 (MEDIUM), data set present (0000H), Affected SOP
// Instance "1.2.3.4", Move Originator AE "MODALITY", Move Originator Message ID 3.
Bytes StoreRqGolden() {
  Bytes b;
  Hdr(&b, 0x0000, 0x0000, 4);
  b.insert(b.end(), {0x74, 0x00, 0x00, 0x00});  // 116 bytes follow
  Hdr(&b, 0x0000, 0x0002, 26);
  Str(&b, "1.2.840.10008.5.1.4.1.1.2");  // 25 chars
  b.push_back(0x00);                     // + NUL pad
  Hdr(&b, 0x0000, 0x0100, 2);
  b.insert(b.end(), {0x01, 0x00});  // C-STORE-RQ
  Hdr(&b, 0x0000, 0x0110, 2);
  b.insert(b.end(), {0x07, 0x00});  // Message ID 7
  Hdr(&b, 0x0000, 0x0700, 2);
  b.insert(b.end(), {0x00, 0x00});  // Priority MEDIUM
  Hdr(&b, 0x0000, 0x0800, 2);
  b.insert(b.end(), {0x00, 0x00});  // data set present
  Hdr(&b, 0x0000, 0x1000, 8);
  Str(&b, "1.2.3.4");  // 7 chars
  b.push_back(0x00);   // + NUL pad
  Hdr(&b, 0x0000, 0x1030, 8);
  Str(&b, "MODALITY");  // AE, already even
  Hdr(&b, 0x0000, 0x1031, 2);
  b.insert(b.end(), {0x03, 0x00});  // Move Originator Message ID 3
  return b;
}

Command StoreRqCommand() {
  Command c;
  c.command_field = CommandField::kCStoreRq;
  c.affected_sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
  c.message_id = 7;
  c.priority = 0;
  c.data_set_type = kDataSetPresent;
  c.affected_sop_instance_uid = "1.2.3.4";
  c.move_originator_ae = "MODALITY";
  c.move_originator_message_id = 3;
  return c;
}

// Every field, for round trips; odd lengths to exercise padding.
Command FullCommand() {
  Command c;
  c.command_field = CommandField::kCMoveRsp;
  c.message_id = 0xFFFF;
  c.message_id_responded_to = 0x1234;
  c.affected_sop_class_uid = "1.2.840.10008.5.1.4.1.2.2.2";
  c.requested_sop_class_uid = "1.2.3";
  c.affected_sop_instance_uid = "1.2.3.4.5";
  c.requested_sop_instance_uid = "1.2.3.4.56";
  c.priority = 2;
  c.data_set_type = kNoDataSet;
  c.status = 0xA701;
  c.error_comment = "odd";
  c.error_id = 9;
  c.move_originator_ae = "SRC";
  c.move_originator_message_id = 42;
  c.move_destination = "DEST";
  return c;
}

void ExpectSame(const Command& a, const Command& b) {
  EXPECT_EQ(a.command_field, b.command_field);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.message_id_responded_to, b.message_id_responded_to);
  EXPECT_EQ(a.affected_sop_class_uid, b.affected_sop_class_uid);
  EXPECT_EQ(a.requested_sop_class_uid, b.requested_sop_class_uid);
  EXPECT_EQ(a.affected_sop_instance_uid, b.affected_sop_instance_uid);
  EXPECT_EQ(a.requested_sop_instance_uid, b.requested_sop_instance_uid);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.data_set_type, b.data_set_type);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.error_comment, b.error_comment);
  EXPECT_EQ(a.error_id, b.error_id);
  EXPECT_EQ(a.move_originator_ae, b.move_originator_ae);
  EXPECT_EQ(a.move_originator_message_id, b.move_originator_message_id);
  EXPECT_EQ(a.move_destination, b.move_destination);
}

// Rewrites the value of (0000,0000) so that a hand-edited command stays consistent.
void FixGroupLength(Bytes* b) {
  const uint32_t n = static_cast<uint32_t>(b->size() - 12);
  (*b)[8] = static_cast<uint8_t>(n);
  (*b)[9] = static_cast<uint8_t>(n >> 8);
  (*b)[10] = static_cast<uint8_t>(n >> 16);
  (*b)[11] = static_cast<uint8_t>(n >> 24);
}

TEST(DimseGoldenTest, DecodesEchoRq) {
  auto r = DecodeCommand(kEchoRq);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->command_field, CommandField::kCEchoRq);
  EXPECT_EQ(r->affected_sop_class_uid, "1.2.840.10008.1.1");
  EXPECT_EQ(r->message_id, 1);
  EXPECT_FALSE(r->has_data_set());
  EXPECT_FALSE(r->status.has_value());
  EXPECT_FALSE(r->priority.has_value());
}

TEST(DimseGoldenTest, EncodesEchoRq) {
  Command c;
  c.command_field = CommandField::kCEchoRq;
  c.affected_sop_class_uid = "1.2.840.10008.1.1";
  c.message_id = 1;
  EXPECT_EQ(EncodeCommand(c), kEchoRq);
}

TEST(DimseGoldenTest, DecodesStoreRq) {
  auto r = DecodeCommand(StoreRqGolden());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectSame(*r, StoreRqCommand());
  EXPECT_TRUE(r->has_data_set());
}

TEST(DimseGoldenTest, EncodesStoreRq) { EXPECT_EQ(EncodeCommand(StoreRqCommand()), StoreRqGolden()); }

TEST(DimseCodecTest, RoundTripsEveryField) {
  const Command c = FullCommand();
  const Bytes b = EncodeCommand(c);
  auto r = DecodeCommand(b);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectSame(*r, c);
  EXPECT_EQ(EncodeCommand(*r), b);  // decode -> encode is stable
}

TEST(DimseCodecTest, PadsUidWithNulAndTextWithSpace) {
  Command c;
  c.command_field = CommandField::kCStoreRsp;
  c.affected_sop_class_uid = "1.2.3";  // UI -> "1.2.3\0"
  c.error_comment = "bad";             // LO -> "bad "
  c.move_destination = "ABC";          // AE -> "ABC "
  const Bytes b = EncodeCommand(c);
  // Elements after the group length: (0000,0002) first.
  const Bytes uid(b.begin() + 12, b.begin() + 12 + 14);
  Bytes want_uid;
  Hdr(&want_uid, 0, 0x0002, 6);
  want_uid.insert(want_uid.end(), {'1', '.', '2', '.', '3', 0x00});
  EXPECT_EQ(uid, want_uid);
  const std::string s(b.begin(), b.end());
  EXPECT_NE(s.find(std::string("bad ")), std::string::npos);
  EXPECT_NE(s.find(std::string("ABC ")), std::string::npos);
  // Every element length is even.
  for (size_t pos = 0; pos < b.size();) {
    const uint32_t len = b[pos + 4] | (b[pos + 5] << 8) | (b[pos + 6] << 16) | (b[pos + 7] << 24);
    EXPECT_EQ(len % 2, 0u);
    pos += 8 + len;
  }
}

TEST(DimseCodecTest, TagsAreAscending) {
  const Bytes b = EncodeCommand(FullCommand());
  uint32_t last = 0;
  bool first = true;
  for (size_t pos = 0; pos < b.size();) {
    const uint32_t tag = (b[pos] | (b[pos + 1] << 8)) << 16 | (b[pos + 2] | (b[pos + 3] << 8));
    if (!first) {
      EXPECT_GT(tag, last);
    }
    first = false;
    last = tag;
    const uint32_t len = b[pos + 4] | (b[pos + 5] << 8) | (b[pos + 6] << 16) | (b[pos + 7] << 24);
    pos += 8 + len;
  }
}

TEST(DimseCodecTest, StripsPaddingOnDecode) {
  Bytes b;
  Hdr(&b, 0, 0x0000, 4);
  b.insert(b.end(), {0, 0, 0, 0});
  Hdr(&b, 0, 0x0002, 8);
  b.insert(b.end(), {'1', '.', '2', '.', '3', 0x00, 0x00, 0x00});  // UI, NUL padded
  Hdr(&b, 0, 0x0100, 2);
  b.insert(b.end(), {0x01, 0x80});
  Hdr(&b, 0, 0x1030, 6);
  Str(&b, " AE   ");
  FixGroupLength(&b);
  auto r = DecodeCommand(b);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->affected_sop_class_uid, "1.2.3");
  EXPECT_EQ(r->move_originator_ae, "AE");
  EXPECT_EQ(r->command_field, CommandField::kCStoreRsp);
}

TEST(DimseCodecTest, SkipsUnknownGroup0000Elements) {
  Bytes b = kEchoRq;
  // (0000,0901) Offending Element (AT) and (0000,1002) Event Type ID (US).
  Hdr(&b, 0, 0x0901, 4);
  b.insert(b.end(), {0x10, 0x00, 0x10, 0x00});
  Hdr(&b, 0, 0x1002, 2);
  b.insert(b.end(), {0x05, 0x00});
  FixGroupLength(&b);
  auto r = DecodeCommand(b);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->command_field, CommandField::kCEchoRq);
}

TEST(DimseCodecTest, AcceptsMissingGroupLength) {
  const Bytes b(kEchoRq.begin() + 12, kEchoRq.end());
  auto r = DecodeCommand(b);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->message_id, 1);
}

TEST(DimseMalformedTest, EmptyHasNoCommandField) {
  auto r = DecodeCommand({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
}

TEST(DimseMalformedTest, MissingCommandField) {
  Command c;
  Bytes b = EncodeCommand(c);
  // Remove (0000,0100): after group length (12) and no UIDs, it is first.
  b.erase(b.begin() + 12, b.begin() + 22);
  FixGroupLength(&b);
  auto r = DecodeCommand(b);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("(0000,0100)"), std::string::npos) << r.status().message();
}

TEST(DimseMalformedTest, TruncationAtEveryOffsetIsAnError) {
  for (const Bytes& full : {kEchoRq, StoreRqGolden(), EncodeCommand(FullCommand())}) {
    for (size_t n = 0; n < full.size(); ++n) {
      const Bytes part(full.begin(), full.begin() + n);
      auto r = DecodeCommand(part);
      EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded";
      if (!r.ok()) {
        EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
      }
    }
  }
}

TEST(DimseMalformedTest, OversizedLengthFields) {
  // The length of (0000,0002) in kEchoRq is at offset 16.
  for (uint32_t len : {0xFFFFFFFFu, 0x7FFFFFFFu, 0x10000u, 45u /* one past the end */}) {
    Bytes b = kEchoRq;
    b[16] = static_cast<uint8_t>(len);
    b[17] = static_cast<uint8_t>(len >> 8);
    b[18] = static_cast<uint8_t>(len >> 16);
    b[19] = static_cast<uint8_t>(len >> 24);
    auto r = DecodeCommand(b);
    EXPECT_FALSE(r.ok()) << len;
  }
  // Same for the last element, and for the group length's own length.
  Bytes b = kEchoRq;
  b[b.size() - 6] = 0xFF;  // (0000,0800) length low byte -> 0xFF
  EXPECT_FALSE(DecodeCommand(b).ok());
  b = kEchoRq;
  b[4] = 0xFF;
  b[7] = 0xFF;
  EXPECT_FALSE(DecodeCommand(b).ok());
}

TEST(DimseMalformedTest, GroupLengthMismatch) {
  for (int delta : {-2, -1, 1, 2, 1000}) {
    Bytes b = kEchoRq;
    b[8] = static_cast<uint8_t>(0x38 + delta);
    b[9] = delta == 1000 ? 0x04 : 0x00;
    auto r = DecodeCommand(b);
    ASSERT_FALSE(r.ok()) << delta;
    EXPECT_NE(r.status().message().find("Group Length"), std::string::npos);
  }
  // Group length with a value length other than 4.
  Bytes b;
  Hdr(&b, 0, 0x0000, 2);
  b.insert(b.end(), {0x0A, 0x00});
  Hdr(&b, 0, 0x0100, 2);
  b.insert(b.end(), {0x30, 0x00});
  EXPECT_FALSE(DecodeCommand(b).ok());
}

TEST(DimseMalformedTest, ElementOutsideGroup0000) {
  Bytes b = kEchoRq;
  Hdr(&b, 0x0008, 0x0016, 2);  // (0008,0016) SOP Class UID: a data set element
  Str(&b, "1 ");
  FixGroupLength(&b);
  auto r = DecodeCommand(b);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("(0008,0016)"), std::string::npos) << r.status().message();
}

TEST(DimseMalformedTest, WrongLengthForUsElements) {
  for (uint16_t element : {0x0100, 0x0110, 0x0120, 0x0700, 0x0800, 0x0900, 0x0903, 0x1031}) {
    for (uint32_t len : {0u, 1u, 4u}) {
      Bytes b;
      Hdr(&b, 0, 0x0000, 4);
      b.insert(b.end(), {0, 0, 0, 0});
      if (element != 0x0100) {
        Hdr(&b, 0, 0x0100, 2);
        b.insert(b.end(), {0x30, 0x00});
      }
      Hdr(&b, 0, element, len);
      b.insert(b.end(), len, 0x00);
      FixGroupLength(&b);
      auto r = DecodeCommand(b);
      EXPECT_FALSE(r.ok()) << std::hex << element << " len " << len;
    }
  }
}

TEST(DimseMalformedTest, MutationsNeverCrashAndRoundTripWhenAccepted) {
  std::mt19937 rng(20240611);  // fixed seed: reproducible
  const Bytes seeds[] = {kEchoRq, StoreRqGolden(), EncodeCommand(FullCommand())};
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    Bytes b = seeds[i % 3];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      switch (rng() % 4) {
        case 0:  // flip a byte
          b[rng() % b.size()] = static_cast<uint8_t>(rng());
          break;
        case 1:  // truncate
          b.resize(rng() % (b.size() + 1));
          break;
        case 2:  // insert a byte
          b.insert(b.begin() + static_cast<long>(rng() % (b.size() + 1)), static_cast<uint8_t>(rng()));
          break;
        case 3:  // make a byte 0xFF (huge lengths, odd tags)
          b[rng() % b.size()] = 0xFF;
          break;
      }
      if (b.empty()) break;
    }
    auto r = DecodeCommand(b);
    if (r.ok()) {
      ++accepted;
      auto again = DecodeCommand(EncodeCommand(*r));
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      ExpectSame(*again, *r);
    }
  }
  // Most mutations are caught (the group length alone catches any size change).
  EXPECT_LT(accepted, 5000);
}

TEST(DimseResponseTest, EchoResponse) {
  auto rq = DecodeCommand(kEchoRq);
  ASSERT_TRUE(rq.ok());
  const Command rsp = MakeEchoResponse(*rq, kStatusSuccess);
  EXPECT_EQ(rsp.command_field, CommandField::kCEchoRsp);
  EXPECT_EQ(rsp.affected_sop_class_uid, "1.2.840.10008.1.1");
  EXPECT_EQ(rsp.message_id_responded_to, 1);
  EXPECT_FALSE(rsp.message_id.has_value());
  EXPECT_EQ(rsp.data_set_type, kNoDataSet);
  EXPECT_EQ(rsp.status, kStatusSuccess);
  // PS3.7 Table 9.3-13 C-ECHO-RSP, Message ID Being Responded To 1, status 0:
  // (0000,0000)=56, (0000,0002) Verification, (0000,0100)=8030H,
  // (0000,0120)=1, (0000,0800)=0101H, (0000,0900)=0000H.
  Bytes want;
  Hdr(&want, 0, 0x0000, 4);
  want.insert(want.end(), {0x42, 0x00, 0x00, 0x00});  // 66 bytes follow
  Hdr(&want, 0, 0x0002, 18);
  Str(&want, "1.2.840.10008.1.1");
  want.push_back(0x00);
  Hdr(&want, 0, 0x0100, 2);
  want.insert(want.end(), {0x30, 0x80});
  Hdr(&want, 0, 0x0120, 2);
  want.insert(want.end(), {0x01, 0x00});
  Hdr(&want, 0, 0x0800, 2);
  want.insert(want.end(), {0x01, 0x01});
  Hdr(&want, 0, 0x0900, 2);
  want.insert(want.end(), {0x00, 0x00});
  EXPECT_EQ(EncodeCommand(rsp), want);
}

TEST(DimseResponseTest, StoreResponseSuccessHasNoComment) {
  const Command rsp = MakeStoreResponse(StoreRqCommand(), kStatusSuccess, "ignored");
  EXPECT_EQ(rsp.command_field, CommandField::kCStoreRsp);
  EXPECT_EQ(rsp.affected_sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
  EXPECT_EQ(rsp.affected_sop_instance_uid, "1.2.3.4");
  EXPECT_EQ(rsp.message_id_responded_to, 7);
  EXPECT_EQ(rsp.data_set_type, kNoDataSet);
  EXPECT_EQ(rsp.status, kStatusSuccess);
  EXPECT_TRUE(rsp.error_comment.empty());
  EXPECT_TRUE(rsp.move_originator_ae.empty());
}

TEST(DimseResponseTest, StoreResponseFailureCarriesComment) {
  for (uint16_t failure : {kStatusOutOfResources, kStatusDataSetMismatch, kStatusCannotUnderstand,
                           kStatusSopClassNotSupported, kStatusProcessingFailure}) {
    const Command rsp = MakeStoreResponse(StoreRqCommand(), failure, "store full");
    EXPECT_EQ(rsp.error_comment, "store full") << std::hex << failure;
    auto back = DecodeCommand(EncodeCommand(rsp));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->error_comment, "store full");
  }
  // Warnings (B000H, 0107H) are not failures.
  EXPECT_TRUE(MakeStoreResponse(StoreRqCommand(), 0xB000, "x").error_comment.empty());
  EXPECT_TRUE(MakeStoreResponse(StoreRqCommand(), 0x0107, "x").error_comment.empty());
}

TEST(DimseResponseTest, UnsupportedResponse) {
  Command rq;
  rq.command_field = CommandField::kNGetRq;
  rq.message_id = 5;
  rq.requested_sop_class_uid = "1.2.840.10008.5.1.1.9";
  rq.requested_sop_instance_uid = "1.2.3";
  const Command rsp = MakeUnsupportedResponse(rq);
  EXPECT_EQ(rsp.command_field, CommandField::kNGetRsp);
  EXPECT_EQ(rsp.status, kStatusUnrecognizedOperation);
  EXPECT_EQ(rsp.message_id_responded_to, 5);
  EXPECT_EQ(rsp.affected_sop_class_uid, "1.2.840.10008.5.1.1.9");
  EXPECT_EQ(rsp.affected_sop_instance_uid, "1.2.3");
  EXPECT_EQ(rsp.data_set_type, kNoDataSet);
  EXPECT_EQ(MakeUnsupportedResponse(StoreRqCommand()).command_field, CommandField::kCStoreRsp);
}

TEST(DimseResponseTest, CommandFieldNames) {
  EXPECT_STREQ(CommandFieldName(CommandField::kCStoreRq), "C-STORE-RQ");
  EXPECT_STREQ(CommandFieldName(CommandField::kCEchoRsp), "C-ECHO-RSP");
  EXPECT_STREQ(CommandFieldName(static_cast<CommandField>(0x1234)), "unknown command");
}

// ---- Cross-check with DCMTK ----

// Parses `b` as an Implicit VR LE data set with DCMTK.
bool DcmtkRead(const Bytes& b, DcmDataset* ds) {
  DcmInputBufferStream in;
  in.setBuffer(b.data(), static_cast<offile_off_t>(b.size()));
  in.setEos();
  ds->transferInit();
  OFCondition cond = ds->read(in, EXS_LittleEndianImplicit);
  ds->transferEnd();
  return cond.good();
}

TEST(DimseDcmtkTest, DcmtkReadsWhatWeEncode) {
  const Command c = FullCommand();
  const Bytes b = EncodeCommand(c);
  DcmDataset ds;
  ASSERT_TRUE(DcmtkRead(b, &ds));
  Uint32 group_length = 0;
  ASSERT_TRUE(ds.findAndGetUint32(DCM_CommandGroupLength, group_length).good());
  EXPECT_EQ(group_length, b.size() - 12);
  auto us = [&](const DcmTagKey& tag) {
    Uint16 v = 0;
    EXPECT_TRUE(ds.findAndGetUint16(tag, v).good()) << tag.toString();
    return v;
  };
  auto str = [&](const DcmTagKey& tag) {
    OFString v;
    EXPECT_TRUE(ds.findAndGetOFString(tag, v).good()) << tag.toString();
    return std::string(v.c_str());
  };
  EXPECT_EQ(us(DCM_CommandField), 0x8021);
  EXPECT_EQ(us(DCM_MessageID), 0xFFFF);
  EXPECT_EQ(us(DCM_MessageIDBeingRespondedTo), 0x1234);
  EXPECT_EQ(us(DCM_Priority), 2);
  EXPECT_EQ(us(DCM_CommandDataSetType), 0x0101);
  EXPECT_EQ(us(DCM_Status), 0xA701);
  EXPECT_EQ(us(DCM_ErrorID), 9);
  EXPECT_EQ(us(DCM_MoveOriginatorMessageID), 42);
  EXPECT_EQ(str(DCM_AffectedSOPClassUID), c.affected_sop_class_uid);
  EXPECT_EQ(str(DCM_RequestedSOPClassUID), c.requested_sop_class_uid);
  EXPECT_EQ(str(DCM_AffectedSOPInstanceUID), c.affected_sop_instance_uid);
  EXPECT_EQ(str(DCM_RequestedSOPInstanceUID), c.requested_sop_instance_uid);
  EXPECT_EQ(str(DCM_ErrorComment), "odd");
  EXPECT_EQ(str(DCM_MoveOriginatorApplicationEntityTitle), "SRC");
  EXPECT_EQ(str(DCM_MoveDestination), "DEST");
  EXPECT_EQ(ds.card(), 16u);  // group length + 15 elements, nothing else
}

TEST(DimseDcmtkTest, DcmtkReadsGoldenStoreRq) {
  DcmDataset ds;
  ASSERT_TRUE(DcmtkRead(StoreRqGolden(), &ds));
  Uint16 field = 0;
  ASSERT_TRUE(ds.findAndGetUint16(DCM_CommandField, field).good());
  EXPECT_EQ(field, 0x0001);
  OFString uid;
  ASSERT_TRUE(ds.findAndGetOFString(DCM_AffectedSOPClassUID, uid).good());
  EXPECT_EQ(std::string(uid.c_str()), "1.2.840.10008.5.1.4.1.1.2");
}

TEST(DimseDcmtkTest, WeDecodeWhatDcmtkWrites) {
  DcmDataset ds;
  ASSERT_TRUE(ds.putAndInsertUint32(DCM_CommandGroupLength, 0).good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_AffectedSOPClassUID, "1.2.840.10008.5.1.4.1.1.4").good());
  ASSERT_TRUE(ds.putAndInsertUint16(DCM_CommandField, 0x0001).good());
  ASSERT_TRUE(ds.putAndInsertUint16(DCM_MessageID, 321).good());
  ASSERT_TRUE(ds.putAndInsertUint16(DCM_Priority, 1).good());
  ASSERT_TRUE(ds.putAndInsertUint16(DCM_CommandDataSetType, 0x0001).good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_AffectedSOPInstanceUID, "1.2.826.0.1.3680043.2.1125.1.7").good());
  ASSERT_TRUE(ds.putAndInsertString(DCM_MoveOriginatorApplicationEntityTitle, "MOVESCU").good());
  ASSERT_TRUE(ds.putAndInsertUint16(DCM_MoveOriginatorMessageID, 77).good());

  std::vector<uint8_t> buf(4096);
  DcmOutputBufferStream out(buf.data(), static_cast<offile_off_t>(buf.size()));
  ds.transferInit();
  OFCondition cond = ds.write(out, EXS_LittleEndianImplicit, EET_ExplicitLength, nullptr, EGL_recalcGL, EPD_noChange);
  ds.transferEnd();
  ASSERT_TRUE(cond.good()) << cond.text();
  void* data = nullptr;
  offile_off_t len = 0;
  out.flushBuffer(data, len);
  const Bytes b(static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + len);

  auto r = DecodeCommand(b);  // also checks DCMTK's (0000,0000) against the bytes
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->command_field, CommandField::kCStoreRq);
  EXPECT_EQ(r->affected_sop_class_uid, "1.2.840.10008.5.1.4.1.1.4");
  EXPECT_EQ(r->message_id, 321);
  EXPECT_EQ(r->priority, 1);
  EXPECT_EQ(r->data_set_type, 0x0001);
  EXPECT_TRUE(r->has_data_set());
  EXPECT_EQ(r->affected_sop_instance_uid, "1.2.826.0.1.3680043.2.1125.1.7");
  EXPECT_EQ(r->move_originator_ae, "MOVESCU");
  EXPECT_EQ(r->move_originator_message_id, 77);
  // And our encoder produces the same bytes as DCMTK for the same command.
  EXPECT_EQ(EncodeCommand(*r), b);
}

TEST(DimseUidTest, ForeignCharactersAreTheOneRefusal) {
  EXPECT_EQ(CheckUid("1.2.840.10008.5.1.4.1.1.2"), UidProblem::kNone);
  EXPECT_EQ(CheckUid(std::string("1.2.3\0", 6)), UidProblem::kNone);  // UI padding
  EXPECT_EQ(CheckUid("1.2.3 "), UidProblem::kNone);
  EXPECT_EQ(CheckUid("0.1.0"), UidProblem::kNone);
  for (const std::string& bad :
       {std::string("1.2.3/../x"), std::string("1.2.3.\xFF"), std::string("1.2\x01.3"), std::string("1.2.3a"),
        std::string("1.2.-3"), std::string("1.2\0.3", 6), std::string("1.2.3\x7F"), std::string(" 1.2")}) {
    EXPECT_EQ(CheckUid(bad), UidProblem::kBadCharacter) << bad;
  }
  // Deviations, worst first; logged by the caller, not refused.
  EXPECT_EQ(CheckUid(""), UidProblem::kEmpty);
  EXPECT_EQ(CheckUid("\0"), UidProblem::kEmpty);
  EXPECT_EQ(CheckUid(".1.2"), UidProblem::kEmptyComponent);
  EXPECT_EQ(CheckUid("1..2"), UidProblem::kEmptyComponent);
  EXPECT_EQ(CheckUid("1.2."), UidProblem::kEmptyComponent);
  EXPECT_EQ(CheckUid("1.02.3"), UidProblem::kLeadingZero);
  EXPECT_EQ(CheckUid("1.2." + std::string(62, '1')), UidProblem::kTooLong);
  EXPECT_EQ(CheckUid("1." + std::string(62, '1')), UidProblem::kNone);  // 64 exactly
  EXPECT_EQ(CheckUid("1.02." + std::string(70, '1')), UidProblem::kLeadingZero);
  EXPECT_STREQ(UidProblemText(UidProblem::kBadCharacter), "has a character other than 0-9 and '.'");
}

}  // namespace
}  // namespace relais::dimse
