// The DICOM Upper Layer state machine, PS3.8 section 9.2.
//
// Table 9-10 is kTable below, laid out as in the standard: one row per event,
// one column per state. Each action is a function named after PS3.8's
// action; its comment quotes the definition from Tables 9-6 to 9-9.
//
// Choices PS3.8 leaves to the implementation, made here once:
//  - Blank cells are Action::kNone: nothing runs, the state stays.
//  - Every return to Sta1 calls Effects::CloseTransport exactly once. PS3.8
//    names "close transport connection" only in AE-4, AR-3, AA-2 and AA-3;
//    in AR-5, AA-4 and AA-5 the peer (or a failed connect) has already closed
//    the connection, and CloseTransport tells the owner to release its end.
//  - StartArtim means "start, or restart if already running" (AA-1's words).
//  - A-ABORT PDUs sent by AA-1, AA-7, AA-8: when the owner passed `bytes`
//    with the event, they are the A-ABORT to send, as is (e.g. Evt19 with the
//    decoder's abort_reason). Otherwise the machine builds one: for a local
//    Evt15, source service-user (0), reason 0; for a protocol error (AA-1 in
//    Sta2, AA-7, AA-8), source service-provider (2) with reason
//    unexpected-PDU (2) for a valid PDU in the wrong state, and for Evt19 the
//    reason of an Abort passed in `pdu`, or unrecognized-PDU (1) without one.
//    (PS3.8 writes "service-user source" for AA-1; in Sta2 the error is found
//    by the provider, so we say so.) AA-8's A-P-ABORT indication carries the
//    source and reason of the A-ABORT actually sent.
//  - A received-PDU event whose `pdu` is missing or of another PDU type is
//    handled as Evt19 (invalid PDU): the machine never trusts a mismatch.
#include "router/protocol/fsm.h"

#include <utility>
#include <variant>

namespace relais::ul {
namespace {

constexpr int kNumStates = 13;
constexpr int kNumEvents = 19;

using A = Action;
using S = State;

// Shorthands for the table only.
constexpr Transition T(A a, S s) { return Transition{a, s}; }
// A blank cell; `next` is filled in by Lookup (the current state).
constexpr Transition kBlank{A::kNone, S::kSta1};

// PS3.8 Table 9-10. Rows: Evt1..Evt19. Columns: Sta1..Sta13.
// clang-format off
constexpr Transition kTable[kNumEvents][kNumStates] = {
  // Evt1: A-ASSOCIATE request (local user)
  {T(A::kAE1, S::kSta4), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank},
  // Evt2: Transport connect confirmation (local transport service)
  {kBlank, kBlank, kBlank, T(A::kAE2, S::kSta5), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank},
  // Evt3: A-ASSOCIATE-AC PDU (received on transport connection)
  {kBlank, T(A::kAA1, S::kSta13), T(A::kAA8, S::kSta13), kBlank, T(A::kAE3, S::kSta6), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA6, S::kSta13)},
  // Evt4: A-ASSOCIATE-RJ PDU (received on transport connection)
  {kBlank, T(A::kAA1, S::kSta13), T(A::kAA8, S::kSta13), kBlank, T(A::kAE4, S::kSta1), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA6, S::kSta13)},
  // Evt5: Transport connection indication (local transport service)
  {T(A::kAE5, S::kSta2), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank},
  // Evt6: A-ASSOCIATE-RQ PDU (on transport connection)
  {kBlank, T(A::kAE6, S::kSta3), T(A::kAA8, S::kSta13), kBlank, T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA7, S::kSta13)},
  // Evt7: A-ASSOCIATE response primitive (accept)
  {kBlank, kBlank, T(A::kAE7, S::kSta6), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank},
  // Evt8: A-ASSOCIATE response primitive (reject)
  {kBlank, kBlank, T(A::kAE8, S::kSta13), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank},
  // Evt9: P-DATA request primitive
  {kBlank, kBlank, kBlank, kBlank, kBlank, T(A::kDT1, S::kSta6), kBlank, T(A::kAR7, S::kSta8), kBlank, kBlank, kBlank,
   kBlank, kBlank},
  // Evt10: P-DATA-TF PDU
  {kBlank, T(A::kAA1, S::kSta13), T(A::kAA8, S::kSta13), kBlank, T(A::kAA8, S::kSta13), T(A::kDT2, S::kSta6),
   T(A::kAR6, S::kSta7), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA6, S::kSta13)},
  // Evt11: A-RELEASE request primitive
  {kBlank, kBlank, kBlank, kBlank, kBlank, T(A::kAR1, S::kSta7), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank},
  // Evt12: A-RELEASE-RQ PDU (on transport)
  {kBlank, T(A::kAA1, S::kSta13), T(A::kAA8, S::kSta13), kBlank, T(A::kAA8, S::kSta13), T(A::kAR2, S::kSta8),
   T(A::kAR8, S::kSta9), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA6, S::kSta13)},
  // Evt13: A-RELEASE-RP PDU (on transport)
  {kBlank, T(A::kAA1, S::kSta13), T(A::kAA8, S::kSta13), kBlank, T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAR3, S::kSta1), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAR10, S::kSta12), T(A::kAR3, S::kSta1),
   T(A::kAA8, S::kSta13), T(A::kAA6, S::kSta13)},
  // Evt14: A-RELEASE response primitive
  {kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, T(A::kAR4, S::kSta13), T(A::kAR9, S::kSta11), kBlank, kBlank,
   T(A::kAR4, S::kSta13), kBlank},
  // Evt15: A-ABORT request primitive
  {kBlank, kBlank, T(A::kAA1, S::kSta13), T(A::kAA2, S::kSta1), T(A::kAA1, S::kSta13), T(A::kAA1, S::kSta13),
   T(A::kAA1, S::kSta13), T(A::kAA1, S::kSta13), T(A::kAA1, S::kSta13), T(A::kAA1, S::kSta13), T(A::kAA1, S::kSta13),
   T(A::kAA1, S::kSta13), kBlank},
  // Evt16: A-ABORT PDU (on transport)
  {kBlank, T(A::kAA2, S::kSta1), T(A::kAA3, S::kSta1), kBlank, T(A::kAA3, S::kSta1), T(A::kAA3, S::kSta1),
   T(A::kAA3, S::kSta1), T(A::kAA3, S::kSta1), T(A::kAA3, S::kSta1), T(A::kAA3, S::kSta1), T(A::kAA3, S::kSta1),
   T(A::kAA3, S::kSta1), T(A::kAA2, S::kSta1)},
  // Evt17: Transport connection closed indication (local transport service)
  {kBlank, T(A::kAA5, S::kSta1), T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1),
   T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1), T(A::kAA4, S::kSta1),
   T(A::kAA4, S::kSta1), T(A::kAR5, S::kSta1)},
  // Evt18: ARTIM timer expired (Association reject/release timer)
  {kBlank, T(A::kAA2, S::kSta1), kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank, kBlank,
   T(A::kAA2, S::kSta1)},
  // Evt19: Unrecognized or invalid PDU received
  {kBlank, T(A::kAA1, S::kSta13), T(A::kAA8, S::kSta13), kBlank, T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13), T(A::kAA8, S::kSta13),
   T(A::kAA8, S::kSta13), T(A::kAA7, S::kSta13)},
};
// clang-format on

bool ValidState(State s) { return static_cast<int>(s) >= 1 && static_cast<int>(s) <= kNumStates; }
bool ValidEvent(Event e) { return static_cast<int>(e) >= 1 && static_cast<int>(e) <= kNumEvents; }

// Whether `pdu` is the PDU that `event` reports (for Evt3, 4, 6, 10, 12, 13, 16).
bool IsReceiveEvent(Event e) {
  switch (e) {
    case Event::kEvt3:
    case Event::kEvt4:
    case Event::kEvt6:
    case Event::kEvt10:
    case Event::kEvt12:
    case Event::kEvt13:
    case Event::kEvt16: return true;
    default: return false;
  }
}

std::vector<uint8_t> AbortBytes(AbortSource source, AbortReason reason) {
  std::vector<uint8_t> out;
  EncodeAbort(Abort{source, reason}, &out);
  return out;
}

// Everything an action needs: the machine's effects, the event and its
// payload, and the machine's own memory.
struct Ctx {
  Effects* fx;
  Event event;
  const Pdu* pdu;
  std::vector<uint8_t>& bytes;
  std::vector<uint8_t>& pending_rq;
  bool& requestor;
};

// The provider abort reason for a protocol error found with `event`.
AbortReason ProviderReason(const Ctx& c) {
  if (c.event == Event::kEvt19) {
    if (c.pdu != nullptr) {
      if (const auto* a = std::get_if<Abort>(c.pdu)) return a->reason;
    }
    return AbortReason::kUnrecognizedPdu;
  }
  return AbortReason::kUnexpectedPdu;
}

// The A-ABORT PDU that AA-1, AA-7 or AA-8 sends (see the top of this file).
std::vector<uint8_t> AbortToSend(Ctx& c) {
  if (!c.bytes.empty()) return std::move(c.bytes);
  if (c.event == Event::kEvt15) return AbortBytes(AbortSource::kServiceUser, AbortReason::kNotSpecified);
  return AbortBytes(AbortSource::kServiceProvider, ProviderReason(c));
}

// ---- Association establishment, PS3.8 Table 9-6 ----

// PS3.8 9.3.2: "A receiver of this PDU implementing only this version of the
// DICOM UL protocol shall only test that bit 0 is set."
bool AcceptableByProvider(const AssociateRq& rq) { return (rq.protocol_version & 0x0001) != 0; }

// AE-1: "Issue TRANSPORT CONNECT request primitive to local transport
// service. Next state is Sta4." The A-ASSOCIATE-RQ that came with Evt1 is
// kept for AE-2.
void AE1(Ctx& c) {
  c.pending_rq = std::move(c.bytes);
  c.requestor = true;
  c.fx->ConnectTransport();
}

// AE-2: "Send A-ASSOCIATE-RQ-PDU. Next state is Sta5."
void AE2(Ctx& c) {
  c.fx->SendPdu(std::move(c.pending_rq));
  c.pending_rq.clear();
  c.fx->OnTransportConnected();
}

// AE-3: "Issue A-ASSOCIATE confirmation (accept) primitive. Next state is Sta6."
void AE3(Ctx& c) { c.fx->OnAssociateAccepted(std::get<AssociateAc>(*c.pdu)); }

// AE-4: "Issue A-ASSOCIATE confirmation (reject) primitive and close transport
// connection. Next state is Sta1."
void AE4(Ctx& c) {
  c.fx->OnAssociateRejected(std::get<AssociateRj>(*c.pdu));
  c.fx->CloseTransport();
}

// AE-5: "Issue Transport connection response primitive; start ARTIM timer.
// Next state is Sta2." (Accepting the connection is the owner's doing.)
void AE5(Ctx& c) {
  c.requestor = false;
  c.fx->StartArtim();
}

// AE-6: "Stop ARTIM timer and if A-ASSOCIATE-RQ acceptable by
// service-provider: issue A-ASSOCIATE indication primitive, next state is
// Sta3; otherwise: issue A-ASSOCIATE-RJ-PDU and start ARTIM timer, next state
// is Sta13." The provider's test is the protocol version (above). Rejection: permanent,
// source service-provider (ACSE), reason protocol-version-not-supported
// (PS3.8 Table 9-21).
void AE6(Ctx& c) {
  c.fx->StopArtim();
  const auto& rq = std::get<AssociateRq>(*c.pdu);
  if (!AcceptableByProvider(rq)) {
    std::vector<uint8_t> rj;
    EncodeAssociateRj(
        AssociateRj{RejectResult::kPermanent, RejectSource::kServiceProviderAcse, kRjProtocolVersionNotSupported}, &rj);
    c.fx->SendPdu(std::move(rj));
    c.fx->StartArtim();
    return;
  }
  c.fx->OnAssociateRequest(rq);
}

// AE-7: "Send A-ASSOCIATE-AC PDU. Next state is Sta6."
void AE7(Ctx& c) { c.fx->SendPdu(std::move(c.bytes)); }

// AE-8: "Send A-ASSOCIATE-RJ PDU and start ARTIM timer. Next state is Sta13."
void AE8(Ctx& c) {
  c.fx->SendPdu(std::move(c.bytes));
  c.fx->StartArtim();
}

// ---- Data transfer, PS3.8 Table 9-7 ----

// DT-1: "Send P-DATA-TF PDU. Next state is Sta6."
void DT1(Ctx& c) { c.fx->SendPdu(std::move(c.bytes)); }

// DT-2: "Send P-DATA indication primitive. Next state is Sta6."
void DT2(Ctx& c) { c.fx->OnPData(std::get<PData>(*c.pdu)); }

// ---- Association release, PS3.8 Table 9-8 ----

// AR-1: "Send A-RELEASE-RQ PDU. Next state is Sta7." Built here when the
// owner passes no bytes (the PDU has no parameters).
void AR1(Ctx& c) {
  if (c.bytes.empty()) EncodeReleaseRq(&c.bytes);
  c.fx->SendPdu(std::move(c.bytes));
}

// AR-2: "Issue A-RELEASE indication primitive. Next state is Sta8."
void AR2(Ctx& c) { c.fx->OnReleaseRequest(); }

// AR-3: "Issue A-RELEASE confirmation primitive, and close transport
// connection. Next state is Sta1."
void AR3(Ctx& c) {
  c.fx->OnReleaseConfirm();
  c.fx->CloseTransport();
}

// AR-4: "Issue A-RELEASE-RP PDU and start ARTIM timer. Next state is Sta13."
void AR4(Ctx& c) {
  if (c.bytes.empty()) EncodeReleaseRp(&c.bytes);
  c.fx->SendPdu(std::move(c.bytes));
  c.fx->StartArtim();
}

// AR-5: "Stop ARTIM timer. Next state is Sta1." The peer closed the
// connection; CloseTransport releases our end (see the top of this file).
void AR5(Ctx& c) {
  c.fx->StopArtim();
  c.fx->CloseTransport();
}

// AR-6: "Issue P-DATA indication. Next state is Sta7."
void AR6(Ctx& c) { c.fx->OnPData(std::get<PData>(*c.pdu)); }

// AR-7: "Issue P-DATA-TF PDU. Next state is Sta8."
void AR7(Ctx& c) { c.fx->SendPdu(std::move(c.bytes)); }

// AR-8: "Issue A-RELEASE indication (release collision): if
// association-requestor, next state is Sta9; if not, next state is Sta10."
void AR8(Ctx& c) { c.fx->OnReleaseRequest(); }

// AR-9: "Send A-RELEASE-RP PDU. Next state is Sta11."
void AR9(Ctx& c) {
  if (c.bytes.empty()) EncodeReleaseRp(&c.bytes);
  c.fx->SendPdu(std::move(c.bytes));
}

// AR-10: "Issue A-RELEASE confirmation primitive. Next state is Sta12."
void AR10(Ctx& c) { c.fx->OnReleaseConfirm(); }

// ---- Association abort, PS3.8 Table 9-9 ----

// AA-1: "Send A-ABORT PDU (service-user source) and start (or restart if
// already started) ARTIM timer. Next state is Sta13." For Evt15 the owner's
// bytes, or a service-user abort; for a bad PDU in Sta2, a provider abort
// (see the top of this file).
void AA1(Ctx& c) {
  c.fx->SendPdu(AbortToSend(c));
  c.fx->StartArtim();
}

// AA-2: "Stop ARTIM timer if running. Close transport connection. Next state
// is Sta1."
void AA2(Ctx& c) {
  c.fx->StopArtim();
  c.fx->CloseTransport();
}

// AA-3: "If (service-user initiated abort): issue A-ABORT indication and
// close transport connection; otherwise (service-provider initiated abort):
// issue A-P-ABORT indication and close transport connection. Next state is
// Sta1." Both indications are OnAbort with the received PDU; its source
// tells them apart.
void AA3(Ctx& c) {
  c.fx->OnAbort(std::get<Abort>(*c.pdu));
  c.fx->CloseTransport();
}

// AA-4: "Issue A-P-ABORT indication primitive. Next state is Sta1." The
// transport is gone (nullopt: no PDU); CloseTransport releases our end.
void AA4(Ctx& c) {
  c.fx->OnAbort(std::nullopt);
  c.fx->CloseTransport();
}

// AA-5: "Stop ARTIM timer. Next state is Sta1." (Sta2: the peer closed
// before sending an A-ASSOCIATE-RQ.) CloseTransport releases our end.
void AA5(Ctx& c) {
  c.fx->StopArtim();
  c.fx->CloseTransport();
}

// AA-6: "Ignore PDU. Next state is Sta13."
void AA6(Ctx&) {}

// AA-7: "Send A-ABORT PDU. Next state is Sta13." (ARTIM keeps running.)
void AA7(Ctx& c) { c.fx->SendPdu(AbortToSend(c)); }

// AA-8: "Send A-ABORT PDU (service-provider source), issue an A-P-ABORT
// indication, and start ARTIM timer. Next state is Sta13."
void AA8(Ctx& c) {
  std::vector<uint8_t> out = AbortToSend(c);
  Abort abort{AbortSource::kServiceProvider, ProviderReason(c)};
  const DecodeResult sent = DecodePdu(out, DecodeLimits{});
  if (sent.kind == DecodeResult::Kind::kPdu) {
    if (const auto* a = std::get_if<Abort>(&sent.pdu)) abort = *a;
  }
  c.fx->SendPdu(std::move(out));
  c.fx->OnAbort(abort);
  c.fx->StartArtim();
}

using ActionFn = void (*)(Ctx&);

// Indexed by Action (kNone excluded).
constexpr ActionFn kActions[] = {
    AE1, AE2, AE3, AE4, AE5, AE6,  AE7, AE8, DT1, DT2, AR1, AR2, AR3, AR4,
    AR5, AR6, AR7, AR8, AR9, AR10, AA1, AA2, AA3, AA4, AA5, AA6, AA7, AA8,
};
static_assert(sizeof(kActions) / sizeof(kActions[0]) == static_cast<size_t>(Action::kNone));

// Whether `pdu` is present and of the type that `event` reports.
bool PduMatches(Event event, const Pdu* pdu) { return pdu != nullptr && StateMachine::EventFor(*pdu) == event; }

}  // namespace

Transition Lookup(State state, Event event) {
  if (!ValidState(state) || !ValidEvent(event)) return Transition{Action::kNone, state};
  Transition t = kTable[static_cast<int>(event) - 1][static_cast<int>(state) - 1];
  if (t.action == Action::kNone) t.next = state;
  return t;
}

const char* StateName(State s) {
  static const char* const kNames[] = {"Sta1", "Sta2", "Sta3",  "Sta4",  "Sta5",  "Sta6", "Sta7",
                                       "Sta8", "Sta9", "Sta10", "Sta11", "Sta12", "Sta13"};
  return ValidState(s) ? kNames[static_cast<int>(s) - 1] : "Sta?";
}

const char* EventName(Event e) {
  static const char* const kNames[] = {"Evt1",  "Evt2",  "Evt3",  "Evt4",  "Evt5",  "Evt6",  "Evt7",
                                       "Evt8",  "Evt9",  "Evt10", "Evt11", "Evt12", "Evt13", "Evt14",
                                       "Evt15", "Evt16", "Evt17", "Evt18", "Evt19"};
  return ValidEvent(e) ? kNames[static_cast<int>(e) - 1] : "Evt?";
}

const char* ActionName(Action a) {
  static const char* const kNames[] = {"AE-1", "AE-2", "AE-3", "AE-4", "AE-5", "AE-6", "AE-7", "AE-8", "DT-1", "DT-2",
                                       "AR-1", "AR-2", "AR-3", "AR-4", "AR-5", "AR-6", "AR-7", "AR-8", "AR-9", "AR-10",
                                       "AA-1", "AA-2", "AA-3", "AA-4", "AA-5", "AA-6", "AA-7", "AA-8", "none"};
  auto i = static_cast<size_t>(a);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "?";
}

Event StateMachine::EventFor(const Pdu& pdu) {
  struct Visitor {
    Event operator()(const AssociateRq&) const { return Event::kEvt6; }
    Event operator()(const AssociateAc&) const { return Event::kEvt3; }
    Event operator()(const AssociateRj&) const { return Event::kEvt4; }
    Event operator()(const PData&) const { return Event::kEvt10; }
    Event operator()(const ReleaseRq&) const { return Event::kEvt12; }
    Event operator()(const ReleaseRp&) const { return Event::kEvt13; }
    Event operator()(const Abort&) const { return Event::kEvt16; }
  };
  return std::visit(Visitor{}, pdu);
}

// The next state of a cell; AE-6 and AR-8 have two, chosen by a condition.
static State NextState(const Transition& t, const Pdu* pdu, bool requestor) {
  switch (t.action) {
    case Action::kAE6: return AcceptableByProvider(std::get<AssociateRq>(*pdu)) ? State::kSta3 : State::kSta13;
    case Action::kAR8: return requestor ? State::kSta9 : State::kSta10;
    default: return t.next;
  }
}

Action StateMachine::Handle(Event event, const Pdu* pdu, std::vector<uint8_t> bytes) {
  // A received-PDU event must come with its PDU; anything else is a PDU we
  // cannot trust: Evt19. (The PDU is dropped so that Evt19's reason is
  // unrecognized-PDU, not one read from an unrelated Abort.)
  if (IsReceiveEvent(event) && !PduMatches(event, pdu)) {
    event = Event::kEvt19;
    pdu = nullptr;
  }
  const Transition t = Lookup(state_, event);
  if (t.action == Action::kNone) return Action::kNone;
  // The state moves before the action runs, so that an Effects callback may
  // call Handle again (e.g. answer OnAssociateRequest with Evt7 at once).
  state_ = NextState(t, pdu, requestor_);
  Ctx ctx{effects_, event, pdu, bytes, pending_rq_, requestor_};
  kActions[static_cast<size_t>(t.action)](ctx);
  return t.action;
}

}  // namespace relais::ul
