// Golden PDUs for pdu_test.cc, written by hand from PS3.8 section 9.3 and
// PS3.7 Annex D.3.3 (not captured from, nor produced by, our encoder). Each
// is hex text, whitespace ignored, one field per line, with what it decodes
// to. All multi-byte numbers are big endian (PS3.8 9.3.1).
#ifndef RELAIS_TESTS_ROUTER_PDU_TEST_DATA_H_
#define RELAIS_TESTS_ROUTER_PDU_TEST_DATA_H_

namespace relais::ul::testdata {

// clang-format off
// A-ASSOCIATE-RQ as DCMTK 3.6.7 storescu sends it (PS3.8 9.3.2, Table 9-11):
// called "ANY-SCP", calling "STORESCU", application context 1.2.840.10008.3.1.1.1,
// context 1: CT Image Storage, TS Explicit VR LE + Implicit VR LE; context 3: MR Image
// Storage, same TS; user information: max length 16384, implementation class UID
// 1.2.276.0.7230010.3.0.3.6.7, version name "OFFIS_DCMTK_367".
inline constexpr char kAssociateRqHex[] =
    "01 00 0000013D "  // PDU type 01 A-ASSOCIATE-RQ, reserved, PDU length 317
    "00010000 "  // protocol version 0001 (bit 0: version 1), reserved 0000
    "414E592D 53435020 20202020 20202020 "  // called AE title "ANY-SCP" space padded to 16
    "53544F52 45534355 20202020 20202020 "  // calling AE title "STORESCU" space padded to 16
    "00000000 00000000 00000000 00000000 00000000 00000000 "  // reserved, 32 bytes of 00
    "00000000 00000000 "  //   (cont.)
    "10 00 0015 "  // application context item: type 10, reserved, length 21
    "312E322E 3834302E 31303030 382E332E 312E312E 31 "  // "1.2.840.10008.3.1.1.1"
    "20 00 004D "  // presentation context item (RQ): type 20, reserved, length 77
    "01000000 "  // presentation context ID 1, 3 reserved bytes
    "30 00 0019 "  //   abstract syntax sub-item: type 30, reserved, length 25
    "312E322E 3834302E 31303030 382E352E 312E342E 312E312E "  //   "1.2.840.10008.5.1.4.1.1.2"
    "32 "  //   (cont.)
    "40 00 0013 "  //   transfer syntax sub-item: type 40, reserved, length 19
    "312E322E 3834302E 31303030 382E312E 322E31 "  //   "1.2.840.10008.1.2.1"
    "40 00 0011 "  //   transfer syntax sub-item: type 40, reserved, length 17
    "312E322E 3834302E 31303030 382E312E 32 "  //   "1.2.840.10008.1.2"
    "20 00 004D "  // presentation context item (RQ): type 20, reserved, length 77
    "03000000 "  // presentation context ID 3, 3 reserved bytes
    "30 00 0019 "  //   abstract syntax sub-item: type 30, reserved, length 25
    "312E322E 3834302E 31303030 382E352E 312E342E 312E312E "  //   "1.2.840.10008.5.1.4.1.1.4"
    "34 "  //   (cont.)
    "40 00 0013 "  //   transfer syntax sub-item: type 40, reserved, length 19
    "312E322E 3834302E 31303030 382E312E 322E31 "  //   "1.2.840.10008.1.2.1"
    "40 00 0011 "  //   transfer syntax sub-item: type 40, reserved, length 17
    "312E322E 3834302E 31303030 382E312E 32 "  //   "1.2.840.10008.1.2"
    "50 00 003A "  // user information item: type 50, reserved, length 58
    "51 00 0004 "  //   max length sub-item: type 51, length 4
    "00004000 "  //   maximum length received 16384
    "52 00 001B "  //   implementation class UID sub-item: type 52, length 27
    "312E322E 3237362E 302E3732 33303031 302E332E 302E332E "  //   "1.2.276.0.7230010.3.0.3.6.7"
    "362E37 "  //   (cont.)
    "55 00 000F "  //   implementation version name sub-item: type 55, length 15
    "4F464649 535F4443 4D544B5F 333637";  //   "OFFIS_DCMTK_367"

// A-ASSOCIATE-AC answering kAssociateRqHex (PS3.8 9.3.3, Table 9-17): AE titles echoed,
// context 1 accepted with Explicit VR LE, context 3 rejected (3, abstract syntax not
// supported) with an empty transfer syntax sub-item; user information: max length
// 262144, implementation class UID 1.2.3.4.5.6, version name "RELAIS_010".
inline constexpr char kAssociateAcHex[] =
    "02 00 000000B1 "  // PDU type 02 A-ASSOCIATE-AC, reserved, PDU length 177
    "00010000 "  // protocol version 0001 (bit 0: version 1), reserved 0000
    "414E592D 53435020 20202020 20202020 "  // called AE title "ANY-SCP" space padded to 16
    "53544F52 45534355 20202020 20202020 "  // calling AE title "STORESCU" space padded to 16
    "00000000 00000000 00000000 00000000 00000000 00000000 "  // reserved, 32 bytes of 00
    "00000000 00000000 "  //   (cont.)
    "10 00 0015 "  // application context item: type 10, reserved, length 21
    "312E322E 3834302E 31303030 382E332E 312E312E 31 "  // "1.2.840.10008.3.1.1.1"
    "21 00 001B "  // presentation context item (AC): type 21, reserved, length 27
    "01000000 "  // presentation context ID 1, reserved, result 0 (acceptance), reserved
    "40 00 0013 "  //   transfer syntax sub-item: type 40, reserved, length 19
    "312E322E 3834302E 31303030 382E312E 322E31 "  //   "1.2.840.10008.1.2.1"
    "21 00 0008 "  // presentation context item (AC): type 21, reserved, length 8
    "03000300 "  // presentation context ID 3, reserved, result 3 (abstract syntax not supported), reserved
    "40 00 0000 "  //   transfer syntax sub-item: type 40, reserved, length 0 (not significant)
    "50 00 0025 "  // user information item: type 50, reserved, length 37
    "51 00 0004 "  //   max length sub-item: type 51, length 4
    "00040000 "  //   maximum length received 262144
    "52 00 000B "  //   implementation class UID sub-item: type 52, length 11
    "312E322E 332E342E 352E36 "  //   "1.2.3.4.5.6"
    "55 00 000A "  //   implementation version name sub-item: type 55, length 10
    "52454C41 49535F30 3130";  //   "RELAIS_010"

// A-ASSOCIATE-RQ exercising every user information sub-item of PS3.7 D.3.3 plus
// tolerated oddities: called "  ROUTER" (leading spaces), calling "MODALITY";
// context 1: Verification whose abstract syntax is NUL padded (PS3.5 style), Implicit
// VR LE; an unknown top-level item 3F (skipped, PS3.8 9.3.1); user information: max
// length 0, class UID 1.2.3.4, async window 5/1, role CT Image Storage SCU 0 SCP 1,
// version "TEST_1", extended negotiation for Patient Root FIND (info 01), common
// extended negotiation Procedure Log / Storage / related Enhanced SR, user identity
// type 2 "alice"/"secret" with positive response requested, unknown sub-item 7A.
inline constexpr char kAssociateRqFullHex[] =
    "01 00 00000177 "  // PDU type 01 A-ASSOCIATE-RQ, reserved, PDU length 375
    "00010000 "  // protocol version 0001 (bit 0: version 1), reserved 0000
    "2020524F 55544552 20202020 20202020 "  // called AE title "  ROUTER" space padded to 16
    "4D4F4441 4C495459 20202020 20202020 "  // calling AE title "MODALITY" space padded to 16
    "00000000 00000000 00000000 00000000 00000000 00000000 "  // reserved, 32 bytes of 00
    "00000000 00000000 "  //   (cont.)
    "10 00 0015 "  // application context item: type 10, reserved, length 21
    "312E322E 3834302E 31303030 382E332E 312E312E 31 "  // "1.2.840.10008.3.1.1.1"
    "20 00 002F "  // presentation context item (RQ): type 20, reserved, length 47
    "01000000 "  // presentation context ID 1, 3 reserved bytes
    "30 00 0012 "  //   abstract syntax sub-item: type 30, reserved, length 18
    "312E322E 3834302E 31303030 382E312E 3100 "  //   "1.2.840.10008.1.1" + trailing NUL padding
    "40 00 0011 "  //   transfer syntax sub-item: type 40, reserved, length 17
    "312E322E 3834302E 31303030 382E312E 32 "  //   "1.2.840.10008.1.2"
    "3F000003 78797A "  // unknown top-level item: type 3F, reserved, length 3, "xyz" (skipped)
    "50 00 00DC "  // user information item: type 50, reserved, length 220
    "51 00 0004 "  //   max length sub-item: type 51, length 4
    "00000000 "  //   maximum length received 0 (no limit)
    "52 00 0007 "  //   implementation class UID sub-item: type 52, length 7
    "312E322E 332E34 "  //   "1.2.3.4"
    "53 00 0004 "  //   async operations window sub-item: type 53, length 4
    "00050001 "  //   max invoked 5, max performed 1
    "54 00 001D "  //   role selection sub-item: type 54, length 29
    "0019 "  //   SOP class UID length 25
    "312E322E 3834302E 31303030 382E352E 312E342E 312E312E "  //   "1.2.840.10008.5.1.4.1.1.2"
    "32 "  //   (cont.)
    "0001 "  //   SCU role 0, SCP role 1
    "55 00 0006 "  //   implementation version name sub-item: type 55, length 6
    "54455354 5F31 "  //   "TEST_1"
    "56 00 001E "  //   SOP class extended negotiation sub-item: type 56, length 30
    "001B "  //   SOP class UID length 27
    "312E322E 3834302E 31303030 382E352E 312E342E 312E322E "  //   "1.2.840.10008.5.1.4.1.2.1.1" (Patient Root Q/R FIND)
    "312E31 "  //   (cont.)
    "01 "  //   application info 01 (relational queries)
    "57 00 0053 "  //   SOP class common extended negotiation sub-item (byte 2: sub-item version 0): type 57, length 83
    "001D "  //   SOP class UID length 29
    "312E322E 3834302E 31303030 382E352E 312E342E 312E312E "  //   "1.2.840.10008.5.1.4.1.1.88.40" (Procedure Log)
    "38382E34 30 "  //   (cont.)
    "0011 "  //   service class UID length 17
    "312E322E 3834302E 31303030 382E342E 32 "  //   "1.2.840.10008.4.2" (Storage)
    "001F "  //   related general SOP class identification length 31
    "001D "  //     related general SOP class UID length 29
    "312E322E 3834302E 31303030 382E352E 312E342E 312E312E "  //     "1.2.840.10008.5.1.4.1.1.88.22" (Enhanced SR)
    "38382E32 32 "  //   (cont.)
    "58 00 0011 "  //   user identity sub-item (RQ): type 58, length 17
    "0201 "  //   type 2 (username and passcode), positive response requested
    "0005616C 696365 "  //   primary field length 5, "alice"
    "00067365 63726574 "  //   secondary field length 6, "secret"
    "7A 00 0004 "  //   unknown user information sub-item: type 7A, length 4
    "DEADBEEF";  //   data DE AD BE EF (kept in `unknown`)

// A-ASSOCIATE-RJ (PS3.8 9.3.4, Table 9-21): rejected-permanent, service user, reason 7
// (called AE title not recognized).
inline constexpr char kAssociateRjHex[] =
    "03 00 00000004 "  // PDU type 03 A-ASSOCIATE-RJ, reserved, PDU length 4
    "00010107";  // reserved, result 1 (permanent), source 1 (service user), reason 7

// P-DATA-TF with 2 PDVs (PS3.8 9.3.5, Annex E.2): PDV 1 on context 1, command, last
// fragment, 12 bytes (0000,0000) UL 56 in Implicit VR LE; PDV 2 on context 1, data set,
// last fragment, 6 bytes DE AD BE EF 00 01.
inline constexpr char kPDataHex[] =
    "04 00 0000001E "  // PDU type 04 P-DATA-TF, reserved, PDU length 30
    "0000000E "  // PDV item length 14
    "0103 "  // context ID 1, message control header 03 (command, last)
    "00000000 04000000 38000000 "  // (0000,0000) length 4 value 0x00000038
    "00000008 "  // PDV item length 8
    "0102 "  // context ID 1, message control header 02 (data set, last)
    "DEADBEEF 0001";  // DE AD BE EF 00 01

// A-RELEASE-RQ (PS3.8 9.3.6, Table 9-24).
inline constexpr char kReleaseRqHex[] =
    "05 00 00000004 "  // PDU type 05 A-RELEASE-RQ, reserved, PDU length 4
    "00000000";  // reserved

// A-RELEASE-RP (PS3.8 9.3.7, Table 9-25).
inline constexpr char kReleaseRpHex[] =
    "06 00 00000004 "  // PDU type 06 A-RELEASE-RP, reserved, PDU length 4
    "00000000";  // reserved

// A-ABORT (PS3.8 9.3.8, Table 9-26): source 2 (service provider), reason 6 (invalid
// PDU parameter value).
inline constexpr char kAbortHex[] =
    "07 00 00000004 "  // PDU type 07 A-ABORT, reserved, PDU length 4
    "00000206";  // reserved, reserved, source 2, reason 6
// clang-format on

}  // namespace relais::ul::testdata

#endif  // RELAIS_TESTS_ROUTER_PDU_TEST_DATA_H_
