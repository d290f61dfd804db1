// Tests for the PS3.8 9.2 association state machine (router/protocol/fsm.h).
//
// The table test compares Lookup() for all 13 x 19 (state, event) pairs with
// kExpectedGrid, a text copy of PS3.8 Table 9-10 written independently of
// fsm.cc's table. Scenario tests drive the machine with a recording Effects
// fake and check every effect, in order, including the PDU bytes sent.
#include "router/protocol/fsm.h"

#include <gtest/gtest.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace relais::ul {
namespace {

// PS3.8 Table 9-10, one line per event (Evt1..Evt19), one cell per state
// (Sta1..Sta13). A cell is "<action>><next state>"; "." is a blank cell.
// AE-6 (Sta3 or Sta13) and AR-8 (Sta9 or Sta10) show their first next state.
const char* const kExpectedGrid[] = {
    // Sta1     Sta2     Sta3     Sta4     Sta5     Sta6     Sta7     Sta8     Sta9      Sta10     Sta11    Sta12
    // Sta13
    "AE-1>4     .        .        .        .        .        .        .        .         .         .        .      "
    "  .",  // Evt1
    ".          .        .        AE-2>5   .        .        .        .        .         .         .        .      "
    "  .",  // Evt2
    ".          AA-1>13  AA-8>13  .        AE-3>6   AA-8>13  AA-8>13  AA-8>13  AA-8>13   AA-8>13   AA-8>13  "
    "AA-8>13  AA-6>13",  // Evt3
    ".          AA-1>13  AA-8>13  .        AE-4>1   AA-8>13  AA-8>13  AA-8>13  AA-8>13   AA-8>13   AA-8>13  "
    "AA-8>13  AA-6>13",  // Evt4
    "AE-5>2     .        .        .        .        .        .        .        .         .         .        .      "
    "  .",  // Evt5
    ".          AE-6>3   AA-8>13  .        AA-8>13  AA-8>13  AA-8>13  AA-8>13  AA-8>13   AA-8>13   AA-8>13  "
    "AA-8>13  AA-7>13",  // Evt6
    ".          .        AE-7>6   .        .        .        .        .        .         .         .        .      "
    "  .",  // Evt7
    ".          .        AE-8>13  .        .        .        .        .        .         .         .        .      "
    "  .",  // Evt8
    ".          .        .        .        .        DT-1>6   .        AR-7>8   .         .         .        .      "
    "  .",  // Evt9
    ".          AA-1>13  AA-8>13  .        AA-8>13  DT-2>6   AR-6>7   AA-8>13  AA-8>13   AA-8>13   AA-8>13  "
    "AA-8>13  AA-6>13",  // Evt10
    ".          .        .        .        .        AR-1>7   .        .        .         .         .        .      "
    "  .",  // Evt11
    ".          AA-1>13  AA-8>13  .        AA-8>13  AR-2>8   AR-8>9   AA-8>13  AA-8>13   AA-8>13   AA-8>13  "
    "AA-8>13  AA-6>13",  // Evt12
    ".          AA-1>13  AA-8>13  .        AA-8>13  AA-8>13  AR-3>1   AA-8>13  AA-8>13   AR-10>12  AR-3>1   "
    "AA-8>13  AA-6>13",  // Evt13
    ".          .        .        .        .        .        .        AR-4>13  AR-9>11   .         .        "
    "AR-4>13  .",  // Evt14
    ".          .        AA-1>13  AA-2>1   AA-1>13  AA-1>13  AA-1>13  AA-1>13  AA-1>13   AA-1>13   AA-1>13  "
    "AA-1>13  .",  // Evt15
    ".          AA-2>1   AA-3>1   .        AA-3>1   AA-3>1   AA-3>1   AA-3>1   AA-3>1    AA-3>1    AA-3>1   AA-3>1 "
    "  AA-2>1",  // Evt16
    ".          AA-5>1   AA-4>1   AA-4>1   AA-4>1   AA-4>1   AA-4>1   AA-4>1   AA-4>1    AA-4>1    AA-4>1   AA-4>1 "
    "  AR-5>1",  // Evt17
    ".          AA-2>1   .        .        .        .        .        .        .         .         .        .      "
    "  AA-2>1",  // Evt18
    ".          AA-1>13  AA-8>13  .        AA-8>13  AA-8>13  AA-8>13  AA-8>13  AA-8>13   AA-8>13   AA-8>13  "
    "AA-8>13  AA-7>13",  // Evt19
};

std::string Hex(const std::vector<uint8_t>& b) {
  std::string s;
  char buf[4];
  for (uint8_t x : b) {
    std::snprintf(buf, sizeof(buf), "%02x", x);
    s += buf;
  }
  return s;
}

// Records every effect as one line of text, in order.
class RecordingEffects : public Effects {
 public:
  void ConnectTransport() override { log.push_back("ConnectTransport"); }
  void SendPdu(std::vector<uint8_t> bytes) override { log.push_back("SendPdu " + Hex(bytes)); }
  void CloseTransport() override { log.push_back("CloseTransport"); }
  void StartArtim() override { log.push_back("StartArtim"); }
  void StopArtim() override { log.push_back("StopArtim"); }
  void OnAssociateRequest(const AssociateRq& rq) override {
    log.push_back("OnAssociateRequest " + rq.calling_ae);
    if (on_request) on_request();
  }
  void OnAssociateAccepted(const AssociateAc& ac) override { log.push_back("OnAssociateAccepted " + ac.called_ae); }
  void OnAssociateRejected(const AssociateRj& rj) override {
    log.push_back("OnAssociateRejected " + std::to_string(static_cast<int>(rj.result)) + "/" +
                  std::to_string(static_cast<int>(rj.source)) + "/" + std::to_string(rj.reason));
  }
  void OnTransportConnected() override { log.push_back("OnTransportConnected"); }
  void OnPData(const PData& pdata) override { log.push_back("OnPData " + std::to_string(pdata.pdvs.size())); }
  void OnReleaseRequest() override { log.push_back("OnReleaseRequest"); }
  void OnReleaseConfirm() override { log.push_back("OnReleaseConfirm"); }
  void OnAbort(const std::optional<Abort>& abort) override {
    if (!abort) {
      log.push_back("OnAbort none");
    } else {
      log.push_back("OnAbort " + std::to_string(static_cast<int>(abort->source)) + "/" +
                    std::to_string(static_cast<int>(abort->reason)));
    }
  }

  // Returns and clears the log.
  std::vector<std::string> Take() {
    std::vector<std::string> out;
    out.swap(log);
    return out;
  }

  std::vector<std::string> log;
  std::function<void()> on_request;
};

using Log = std::vector<std::string>;

// PS3.8 9.3.8, Table 9-26: A-ABORT PDU = type 07, reserved 00, length
// 00000004, reserved 00 00, source, reason/diag.
const char kAbortUser[] = "07000000000400000000";                  // source 0 (service-user), reason 0
const char kAbortProviderUnexpected[] = "07000000000400000202";    // source 2, reason 2 unexpected-PDU
const char kAbortProviderUnrecognized[] = "07000000000400000201";  // source 2, reason 1 unrecognized-PDU
// PS3.8 9.3.6 / 9.3.7: A-RELEASE-RQ (05) and -RP (06): length 4, 4 reserved bytes.
const char kReleaseRq[] = "05000000000400000000";
const char kReleaseRp[] = "06000000000400000000";

// Opaque stand-ins for owner-encoded PDUs (the machine must pass them through).
const std::vector<uint8_t> kRqBytes = {0x01, 0x00, 0xAA};
const std::vector<uint8_t> kAcBytes = {0x02, 0x00, 0xBB};
const std::vector<uint8_t> kRjBytes = {0x03, 0x00, 0xCC};
const std::vector<uint8_t> kPDataBytes = {0x04, 0x00, 0xDD};

Pdu MakeRq(const std::string& calling = "MODALITY") {
  AssociateRq rq;
  rq.calling_ae = calling;
  rq.called_ae = "RELAIS";
  return rq;
}
Pdu MakeAc() {
  AssociateAc ac;
  ac.called_ae = "ARCHIVE";
  return ac;
}
Pdu MakePData() {
  PData p;
  p.pdvs.push_back(Pdv{1, true, true, {}});
  return p;
}

TEST(FsmTableTest, EveryCellMatchesPs38Table9_10) {
  ASSERT_EQ(sizeof(kExpectedGrid) / sizeof(kExpectedGrid[0]), 19u);
  int blanks = 0;
  for (int e = 1; e <= 19; ++e) {
    std::istringstream row(kExpectedGrid[e - 1]);
    std::vector<std::string> cells;
    for (std::string c; row >> c;) cells.push_back(c);
    ASSERT_EQ(cells.size(), 13u) << "grid row Evt" << e;
    for (int s = 1; s <= 13; ++s) {
      const auto state = static_cast<State>(s);
      const auto event = static_cast<Event>(e);
      const Transition t = Lookup(state, event);
      std::string got;
      if (t.action == Action::kNone) {
        got = ".";
        ++blanks;
        EXPECT_EQ(t.next, state) << "blank cell must keep the state";
      } else {
        std::string next = StateName(t.next);  // "Sta13" -> "13"
        got = std::string(ActionName(t.action)) + ">" + next.substr(3);
      }
      EXPECT_EQ(got, cells[s - 1]) << StateName(state) << " x " << EventName(event);
    }
  }
  EXPECT_EQ(blanks, 124);
}

TEST(FsmTableTest, Names) {
  EXPECT_STREQ(StateName(State::kSta1), "Sta1");
  EXPECT_STREQ(StateName(State::kSta13), "Sta13");
  EXPECT_STREQ(EventName(Event::kEvt1), "Evt1");
  EXPECT_STREQ(EventName(Event::kEvt19), "Evt19");
  EXPECT_STREQ(ActionName(Action::kAE1), "AE-1");
  EXPECT_STREQ(ActionName(Action::kDT2), "DT-2");
  EXPECT_STREQ(ActionName(Action::kAR10), "AR-10");
  EXPECT_STREQ(ActionName(Action::kAA8), "AA-8");
}

TEST(FsmTableTest, OutOfRangeValuesAreBlank) {
  EXPECT_EQ(Lookup(static_cast<State>(0), Event::kEvt1).action, Action::kNone);
  EXPECT_EQ(Lookup(State::kSta1, static_cast<Event>(20)).action, Action::kNone);
}

TEST(FsmTableTest, EventForMapsEachPduType) {
  EXPECT_EQ(StateMachine::EventFor(Pdu{AssociateRq{}}), Event::kEvt6);
  EXPECT_EQ(StateMachine::EventFor(Pdu{AssociateAc{}}), Event::kEvt3);
  EXPECT_EQ(StateMachine::EventFor(Pdu{AssociateRj{}}), Event::kEvt4);
  EXPECT_EQ(StateMachine::EventFor(Pdu{PData{}}), Event::kEvt10);
  EXPECT_EQ(StateMachine::EventFor(Pdu{ReleaseRq{}}), Event::kEvt12);
  EXPECT_EQ(StateMachine::EventFor(Pdu{ReleaseRp{}}), Event::kEvt13);
  EXPECT_EQ(StateMachine::EventFor(Pdu{Abort{}}), Event::kEvt16);
}

class FsmTest : public ::testing::Test {
 protected:
  // Drives an SCP from Sta1 to Sta6 (Evt5, Evt6, Evt7).
  void ScpToSta6() {
    Pdu rq = MakeRq();
    m_.Handle(Event::kEvt5);
    m_.Handle(Event::kEvt6, &rq);
    m_.Handle(Event::kEvt7, nullptr, kAcBytes);
    ASSERT_EQ(m_.state(), State::kSta6);
    fx_.Take();
  }
  // Drives an SCU from Sta1 to Sta6 (Evt1, Evt2, Evt3).
  void ScuToSta6() {
    Pdu ac = MakeAc();
    m_.Handle(Event::kEvt1, nullptr, kRqBytes);
    m_.Handle(Event::kEvt2);
    m_.Handle(Event::kEvt3, &ac);
    ASSERT_EQ(m_.state(), State::kSta6);
    fx_.Take();
  }

  RecordingEffects fx_;
  StateMachine m_{&fx_};
};

TEST_F(FsmTest, ScpNormalAssociationTransferAndRelease) {
  Pdu rq = MakeRq("CT01");
  Pdu pdata = MakePData();
  Pdu release_rq = ReleaseRq{};

  EXPECT_EQ(m_.Handle(Event::kEvt5), Action::kAE5);
  EXPECT_EQ(m_.state(), State::kSta2);
  EXPECT_EQ(fx_.Take(), (Log{"StartArtim"}));

  EXPECT_EQ(m_.Handle(Event::kEvt6, &rq), Action::kAE6);
  EXPECT_EQ(m_.state(), State::kSta3);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "OnAssociateRequest CT01"}));

  EXPECT_EQ(m_.Handle(Event::kEvt7, nullptr, kAcBytes), Action::kAE7);
  EXPECT_EQ(m_.state(), State::kSta6);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu " + Hex(kAcBytes)}));

  EXPECT_EQ(m_.Handle(Event::kEvt10, &pdata), Action::kDT2);
  EXPECT_EQ(m_.Handle(Event::kEvt10, &pdata), Action::kDT2);
  EXPECT_EQ(m_.Handle(Event::kEvt9, nullptr, kPDataBytes), Action::kDT1);
  EXPECT_EQ(m_.state(), State::kSta6);
  EXPECT_EQ(fx_.Take(), (Log{"OnPData 1", "OnPData 1", "SendPdu " + Hex(kPDataBytes)}));

  EXPECT_EQ(m_.Handle(Event::kEvt12, &release_rq), Action::kAR2);
  EXPECT_EQ(m_.state(), State::kSta8);
  EXPECT_EQ(fx_.Take(), (Log{"OnReleaseRequest"}));

  // Sta8 still allows P-DATA requests (AR-7), e.g. a late response.
  EXPECT_EQ(m_.Handle(Event::kEvt9, nullptr, kPDataBytes), Action::kAR7);
  EXPECT_EQ(m_.state(), State::kSta8);
  fx_.Take();

  EXPECT_EQ(m_.Handle(Event::kEvt14), Action::kAR4);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kReleaseRp, "StartArtim"}));

  EXPECT_EQ(m_.Handle(Event::kEvt17), Action::kAR5);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, ScpRejectByUser) {
  Pdu rq = MakeRq();
  m_.Handle(Event::kEvt5);
  m_.Handle(Event::kEvt6, &rq);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt8, nullptr, kRjBytes), Action::kAE8);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu " + Hex(kRjBytes), "StartArtim"}));
  // The peer closes after reading the A-ASSOCIATE-RJ.
  EXPECT_EQ(m_.Handle(Event::kEvt17), Action::kAR5);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, ScpRejectsUnsupportedProtocolVersionItself) {
  AssociateRq bad;
  bad.protocol_version = 0x0002;  // bit 0 clear: PS3.8 9.3.2
  Pdu rq = bad;
  m_.Handle(Event::kEvt5);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt6, &rq), Action::kAE6);
  EXPECT_EQ(m_.state(), State::kSta13);
  // A-ASSOCIATE-RJ (PS3.8 9.3.4): type 03, length 4, reserved, result 1
  // (rejected-permanent), source 2 (service-provider ACSE), reason 2
  // (protocol-version-not-supported). No indication reaches the user.
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "SendPdu 03000000000400010202", "StartArtim"}));
}

TEST_F(FsmTest, ScpAcceptsAnyProtocolVersionWithBit0Set) {
  AssociateRq rq_value;
  rq_value.protocol_version = 0x0003;
  Pdu rq = rq_value;
  m_.Handle(Event::kEvt5);
  EXPECT_EQ(m_.Handle(Event::kEvt6, &rq), Action::kAE6);
  EXPECT_EQ(m_.state(), State::kSta3);
}

TEST_F(FsmTest, ScuNormalAssociationTransferAndRelease) {
  Pdu ac = MakeAc();
  Pdu pdata = MakePData();
  Pdu release_rp = ReleaseRp{};

  EXPECT_EQ(m_.Handle(Event::kEvt1, nullptr, kRqBytes), Action::kAE1);
  EXPECT_EQ(m_.state(), State::kSta4);
  EXPECT_EQ(fx_.Take(), (Log{"ConnectTransport"}));

  // AE-2 sends the A-ASSOCIATE-RQ that came with Evt1.
  EXPECT_EQ(m_.Handle(Event::kEvt2), Action::kAE2);
  EXPECT_EQ(m_.state(), State::kSta5);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu " + Hex(kRqBytes), "OnTransportConnected"}));

  EXPECT_EQ(m_.Handle(Event::kEvt3, &ac), Action::kAE3);
  EXPECT_EQ(m_.state(), State::kSta6);
  EXPECT_EQ(fx_.Take(), (Log{"OnAssociateAccepted ARCHIVE"}));

  EXPECT_EQ(m_.Handle(Event::kEvt9, nullptr, kPDataBytes), Action::kDT1);
  EXPECT_EQ(m_.Handle(Event::kEvt10, &pdata), Action::kDT2);
  fx_.Take();

  EXPECT_EQ(m_.Handle(Event::kEvt11), Action::kAR1);
  EXPECT_EQ(m_.state(), State::kSta7);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kReleaseRq}));

  // A late P-DATA from the peer is still delivered (AR-6).
  EXPECT_EQ(m_.Handle(Event::kEvt10, &pdata), Action::kAR6);
  EXPECT_EQ(m_.state(), State::kSta7);
  EXPECT_EQ(fx_.Take(), (Log{"OnPData 1"}));

  EXPECT_EQ(m_.Handle(Event::kEvt13, &release_rp), Action::kAR3);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"OnReleaseConfirm", "CloseTransport"}));
}

TEST_F(FsmTest, ScuRejected) {
  Pdu rj = AssociateRj{RejectResult::kTransient, RejectSource::kServiceProviderPresentation, kRjTemporaryCongestion};
  m_.Handle(Event::kEvt1, nullptr, kRqBytes);
  m_.Handle(Event::kEvt2);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt4, &rj), Action::kAE4);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"OnAssociateRejected 2/3/1", "CloseTransport"}));
}

TEST_F(FsmTest, ScuConnectFailsIsAProviderAbort) {
  m_.Handle(Event::kEvt1, nullptr, kRqBytes);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt17), Action::kAA4);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"OnAbort none", "CloseTransport"}));
}

TEST_F(FsmTest, ScuAbortWhileConnecting) {
  m_.Handle(Event::kEvt1, nullptr, kRqBytes);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt15), Action::kAA2);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, ReleaseCollisionRequestorSide) {
  ScuToSta6();
  Pdu release_rq = ReleaseRq{};
  Pdu release_rp = ReleaseRp{};
  m_.Handle(Event::kEvt11);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt12, &release_rq), Action::kAR8);
  EXPECT_EQ(m_.state(), State::kSta9);  // we are the association-requestor
  EXPECT_EQ(fx_.Take(), (Log{"OnReleaseRequest"}));
  EXPECT_EQ(m_.Handle(Event::kEvt14), Action::kAR9);
  EXPECT_EQ(m_.state(), State::kSta11);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kReleaseRp}));
  EXPECT_EQ(m_.Handle(Event::kEvt13, &release_rp), Action::kAR3);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"OnReleaseConfirm", "CloseTransport"}));
}

TEST_F(FsmTest, ReleaseCollisionAcceptorSide) {
  ScpToSta6();
  Pdu release_rq = ReleaseRq{};
  Pdu release_rp = ReleaseRp{};
  m_.Handle(Event::kEvt11);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kReleaseRq}));
  EXPECT_EQ(m_.Handle(Event::kEvt12, &release_rq), Action::kAR8);
  EXPECT_EQ(m_.state(), State::kSta10);  // we are the association-acceptor
  EXPECT_EQ(fx_.Take(), (Log{"OnReleaseRequest"}));
  EXPECT_EQ(m_.Handle(Event::kEvt13, &release_rp), Action::kAR10);
  EXPECT_EQ(m_.state(), State::kSta12);
  EXPECT_EQ(fx_.Take(), (Log{"OnReleaseConfirm"}));
  EXPECT_EQ(m_.Handle(Event::kEvt14), Action::kAR4);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kReleaseRp, "StartArtim"}));
  EXPECT_EQ(m_.Handle(Event::kEvt17), Action::kAR5);
  EXPECT_EQ(m_.state(), State::kSta1);
}

TEST_F(FsmTest, ArtimExpiresInSta2) {
  m_.Handle(Event::kEvt5);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt18), Action::kAA2);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, ArtimExpiresInSta13) {
  ScpToSta6();
  Pdu release_rq = ReleaseRq{};
  m_.Handle(Event::kEvt12, &release_rq);
  m_.Handle(Event::kEvt14);
  ASSERT_EQ(m_.state(), State::kSta13);
  fx_.Take();
  // The peer never closes: ARTIM fires and we close.
  EXPECT_EQ(m_.Handle(Event::kEvt18), Action::kAA2);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, StaleArtimInSta6IsBlank) {
  ScpToSta6();
  EXPECT_EQ(m_.Handle(Event::kEvt18), Action::kNone);
  EXPECT_EQ(m_.state(), State::kSta6);
  EXPECT_TRUE(fx_.Take().empty());
}

TEST_F(FsmTest, UnexpectedPduInSta6SendsProviderAbort) {
  ScpToSta6();
  Pdu rq = MakeRq();
  EXPECT_EQ(m_.Handle(Event::kEvt6, &rq), Action::kAA8);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortProviderUnexpected, "OnAbort 2/2", "StartArtim"}));
  // In Sta13, PDUs are ignored (AA-6) ...
  Pdu pdata = MakePData();
  EXPECT_EQ(m_.Handle(Event::kEvt10, &pdata), Action::kAA6);
  EXPECT_TRUE(fx_.Take().empty());
  // ... except an A-ASSOCIATE-RQ or an invalid PDU, answered with A-ABORT (AA-7).
  EXPECT_EQ(m_.Handle(Event::kEvt6, &rq), Action::kAA7);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortProviderUnexpected}));
  EXPECT_EQ(m_.Handle(Event::kEvt19), Action::kAA7);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortProviderUnrecognized}));
  EXPECT_EQ(m_.state(), State::kSta13);
  // The peer's abort closes it (AA-2, no indication).
  Pdu abort = Abort{};
  EXPECT_EQ(m_.Handle(Event::kEvt16, &abort), Action::kAA2);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, InvalidPduInSta6UsesTheDecoderReason) {
  ScpToSta6();
  Pdu why = Abort{AbortSource::kServiceProvider, AbortReason::kInvalidPduParameterValue};
  EXPECT_EQ(m_.Handle(Event::kEvt19, &why), Action::kAA8);
  // Reason 6: invalid-PDU-parameter value.
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu 07000000000400000206", "OnAbort 2/6", "StartArtim"}));
}

TEST_F(FsmTest, InvalidPduSendsTheOwnersAbortBytes) {
  ScpToSta6();
  // The owner encoded A-ABORT source 2, reason 4 (unrecognized-PDU parameter).
  const std::vector<uint8_t> mine = {0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x04};
  EXPECT_EQ(m_.Handle(Event::kEvt19, nullptr, mine), Action::kAA8);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu 07000000000400000204", "OnAbort 2/4", "StartArtim"}));
  // In Sta13 (AA-7) and Sta2 (AA-1) the owner's bytes are sent too.
  EXPECT_EQ(m_.Handle(Event::kEvt19, nullptr, mine), Action::kAA7);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu 07000000000400000204"}));
  StateMachine sta2(&fx_, State::kSta2);
  EXPECT_EQ(sta2.Handle(Event::kEvt19, nullptr, mine), Action::kAA1);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu 07000000000400000204", "StartArtim"}));
}

TEST_F(FsmTest, InvalidPduWithoutReasonIsUnrecognized) {
  ScpToSta6();
  EXPECT_EQ(m_.Handle(Event::kEvt19), Action::kAA8);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortProviderUnrecognized, "OnAbort 2/1", "StartArtim"}));
}

TEST_F(FsmTest, MismatchedPduIsTreatedAsInvalid) {
  m_.Handle(Event::kEvt1, nullptr, kRqBytes);
  m_.Handle(Event::kEvt2);
  fx_.Take();
  Pdu pdata = MakePData();
  // Evt3 (A-ASSOCIATE-AC) claimed, but the PDU is a P-DATA-TF.
  EXPECT_EQ(m_.Handle(Event::kEvt3, &pdata), Action::kAA8);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortProviderUnrecognized, "OnAbort 2/1", "StartArtim"}));
}

TEST_F(FsmTest, MissingPduIsTreatedAsInvalid) {
  ScpToSta6();
  EXPECT_EQ(m_.Handle(Event::kEvt10, nullptr), Action::kAA8);
  EXPECT_EQ(m_.state(), State::kSta13);
}

TEST_F(FsmTest, NonAssociateRqPduInSta2IsAborted) {
  m_.Handle(Event::kEvt5);
  fx_.Take();
  Pdu pdata = MakePData();
  EXPECT_EQ(m_.Handle(Event::kEvt10, &pdata), Action::kAA1);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortProviderUnexpected, "StartArtim"}));
}

TEST_F(FsmTest, PeerClosesInSta2) {
  m_.Handle(Event::kEvt5);
  fx_.Take();
  EXPECT_EQ(m_.Handle(Event::kEvt17), Action::kAA5);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"StopArtim", "CloseTransport"}));
}

TEST_F(FsmTest, LocalAbortSendsUserAbort) {
  ScuToSta6();
  EXPECT_EQ(m_.Handle(Event::kEvt15), Action::kAA1);
  EXPECT_EQ(m_.state(), State::kSta13);
  EXPECT_EQ(fx_.Take(), (Log{std::string("SendPdu ") + kAbortUser, "StartArtim"}));
}

TEST_F(FsmTest, LocalAbortSendsTheOwnersBytes) {
  ScuToSta6();
  const std::vector<uint8_t> mine = {0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(m_.Handle(Event::kEvt15, nullptr, mine), Action::kAA1);
  EXPECT_EQ(fx_.Take(), (Log{"SendPdu " + Hex(mine), "StartArtim"}));
}

TEST_F(FsmTest, PeerAbortInSta6) {
  ScpToSta6();
  Pdu abort = Abort{AbortSource::kServiceUser, AbortReason::kNotSpecified};
  EXPECT_EQ(m_.Handle(Event::kEvt16, &abort), Action::kAA3);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"OnAbort 0/0", "CloseTransport"}));
}

TEST_F(FsmTest, TransportLostInSta6) {
  ScpToSta6();
  EXPECT_EQ(m_.Handle(Event::kEvt17), Action::kAA4);
  EXPECT_EQ(m_.state(), State::kSta1);
  EXPECT_EQ(fx_.Take(), (Log{"OnAbort none", "CloseTransport"}));
}

TEST_F(FsmTest, BlankCellDoesNothing) {
  ScuToSta6();
  m_.Handle(Event::kEvt11);
  fx_.Take();
  // Evt9 (P-DATA request) after our A-RELEASE-RQ is blank in Table 9-10.
  EXPECT_EQ(m_.Handle(Event::kEvt9, nullptr, kPDataBytes), Action::kNone);
  EXPECT_EQ(m_.state(), State::kSta7);
  EXPECT_TRUE(fx_.Take().empty());
}

TEST_F(FsmTest, EffectsMayReenterHandle) {
  // The SCP user answers the indication at once, from inside the callback.
  fx_.on_request = [this] { m_.Handle(Event::kEvt7, nullptr, kAcBytes); };
  Pdu rq = MakeRq();
  m_.Handle(Event::kEvt5);
  EXPECT_EQ(m_.Handle(Event::kEvt6, &rq), Action::kAE6);
  EXPECT_EQ(m_.state(), State::kSta6);
  EXPECT_EQ(fx_.Take(), (Log{"StartArtim", "StopArtim", "OnAssociateRequest MODALITY", "SendPdu " + Hex(kAcBytes)}));
}

TEST_F(FsmTest, EveryReturnToSta1ClosesTheTransportOnce) {
  // From each connected state, every event that leads to Sta1 must call
  // CloseTransport exactly once (the owner releases its socket there).
  for (int s = 2; s <= 13; ++s) {
    for (int e = 1; e <= 19; ++e) {
      const auto state = static_cast<State>(s);
      const auto event = static_cast<Event>(e);
      const Transition t = Lookup(state, event);
      if (t.action == Action::kNone || t.next != State::kSta1) continue;
      RecordingEffects fx;
      StateMachine m(&fx, state);
      Pdu pdu = ReleaseRp{};
      if (event == Event::kEvt4) pdu = AssociateRj{};
      if (event == Event::kEvt16) pdu = Abort{};
      m.Handle(event, &pdu);
      EXPECT_EQ(m.state(), State::kSta1) << StateName(state) << " x " << EventName(event);
      int closes = 0;
      for (const auto& line : fx.log) closes += line == "CloseTransport";
      EXPECT_EQ(closes, 1) << StateName(state) << " x " << EventName(event);
    }
  }
}

}  // namespace
}  // namespace relais::ul
