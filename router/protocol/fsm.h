// The DICOM Upper Layer association state machine: PS3.8 section 9.2,
// Table 9-10 (states Sta1-Sta13, events Evt1-Evt19, actions AE-n, DT-n,
// AR-n, AA-n), written as a table. It does no I/O: events come in, effects go
// out through the Effects interface. The same machine serves the accepting
// side (SCP) and the requesting side (SCU).
//
// Thread: one StateMachine is used from one thread (the loop thread).
#ifndef RELAIS_ROUTER_PROTOCOL_FSM_H_
#define RELAIS_ROUTER_PROTOCOL_FSM_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "router/protocol/pdu.h"

namespace relais::ul {

enum class State {
  kSta1 = 1,  // Idle
  kSta2,      // Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
  kSta3,      // Awaiting local A-ASSOCIATE response primitive
  kSta4,      // Awaiting transport connection opening to complete
  kSta5,      // Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU
  kSta6,      // Association established and ready for data transfer
  kSta7,      // Awaiting A-RELEASE-RP PDU
  kSta8,      // Awaiting local A-RELEASE response primitive
  kSta9,      // Release collision requestor side; awaiting A-RELEASE response
  kSta10,     // Release collision acceptor side; awaiting A-RELEASE-RP PDU
  kSta11,     // Release collision requestor side; awaiting A-RELEASE-RP PDU
  kSta12,     // Release collision acceptor side; awaiting A-RELEASE response primitive
  kSta13,     // Awaiting transport connection close indication
};

enum class Event {
  kEvt1 = 1,  // A-ASSOCIATE request (local user)
  kEvt2,      // Transport connection confirm (local transport service)
  kEvt3,      // A-ASSOCIATE-AC PDU received
  kEvt4,      // A-ASSOCIATE-RJ PDU received
  kEvt5,      // Transport connection indication
  kEvt6,      // A-ASSOCIATE-RQ PDU received
  kEvt7,      // A-ASSOCIATE response primitive (accept)
  kEvt8,      // A-ASSOCIATE response primitive (reject)
  kEvt9,      // P-DATA request primitive
  kEvt10,     // P-DATA-TF PDU received
  kEvt11,     // A-RELEASE request primitive
  kEvt12,     // A-RELEASE-RQ PDU received
  kEvt13,     // A-RELEASE-RP PDU received
  kEvt14,     // A-RELEASE response primitive
  kEvt15,     // A-ABORT request primitive
  kEvt16,     // A-ABORT PDU received
  kEvt17,     // Transport connection closed indication
  kEvt18,     // ARTIM timer expired
  kEvt19,     // Unrecognized or invalid PDU received
};

enum class Action {
  kAE1,
  kAE2,
  kAE3,
  kAE4,
  kAE5,
  kAE6,
  kAE7,
  kAE8,
  kDT1,
  kDT2,
  kAR1,
  kAR2,
  kAR3,
  kAR4,
  kAR5,
  kAR6,
  kAR7,
  kAR8,
  kAR9,
  kAR10,
  kAA1,
  kAA2,
  kAA3,
  kAA4,
  kAA5,
  kAA6,
  kAA7,
  kAA8,
  // Added: a blank cell of Table 9-10 (the event is not valid in that state,
  // e.g. Evt9 in Sta7, Evt18 in Sta6, Evt15 in Sta13). Nothing runs and the
  // state does not change; the owner should log it (for a local primitive it
  // is a bug in the caller).
  kNone,
};

// One cell of Table 9-10: the action to run and the state it leads to.
struct Transition {
  Action action;
  State next;
};

// Table 9-10 lookup. Every (state, event) pair has a cell in PS3.8; the
// table is complete, so this never fails for valid enum values.
// (Precisely: 124 of the 247 cells of PS3.8 are blank; Lookup returns {kNone, state} for
// them. For AE-6 and AR-8, whose next state depends on a condition, `next` is
// the first alternative PS3.8 names (Sta3, Sta9); Handle picks the other.)
Transition Lookup(State state, Event event);

const char* StateName(State s);    // "Sta6"
const char* EventName(Event e);    // "Evt10"
const char* ActionName(Action a);  // "DT-2"

// What the state machine asks of its owner. The owner owns the transport,
// the ARTIM timer and the user of the service (SCP or SCU logic).
class Effects {
 public:
  virtual ~Effects() = default;
  // Transport.
  virtual void ConnectTransport() = 0;  // AE-1 (requestor)
  virtual void SendPdu(std::vector<uint8_t> bytes) = 0;
  virtual void CloseTransport() = 0;  // AR-3, AR-5, AA-4, AA-5 ... (see .cc)
  // ARTIM timer (PS3.8 9.1.5).
  virtual void StartArtim() = 0;
  virtual void StopArtim() = 0;
  // Indications to the service user.
  virtual void OnAssociateRequest(const AssociateRq& rq) = 0;   // AE-6 (acceptable PDU)
  virtual void OnAssociateAccepted(const AssociateAc& ac) = 0;  // AE-3
  virtual void OnAssociateRejected(const AssociateRj& rj) = 0;  // AE-4
  virtual void OnTransportConnected() = 0;                      // AE-2 done: A-ASSOCIATE-RQ sent
  virtual void OnPData(const PData& pdata) = 0;                 // DT-2
  virtual void OnReleaseRequest() = 0;                          // AR-2, AR-8 (collision)
  virtual void OnReleaseConfirm() = 0;                          // AR-3
  virtual void OnAbort(const std::optional<Abort>& abort) = 0;  // AA-2/3 (PDU) or AA-4 (transport)
};

// The machine itself. Owner-supplied PDUs ride along with the events that
// need them (Evt1 needs the RQ to send, Evt7 the AC, Evt8 the RJ, Evt9 the
// P-DATA bytes, Evt15 the abort); received PDUs ride along with Evt3, 4, 6,
// 10, 12, 13, 16.
class StateMachine {
 public:
  explicit StateMachine(Effects* effects, State initial = State::kSta1) : effects_(effects), state_(initial) {}

  State state() const { return state_; }

  // Runs the cell for (state(), event) and moves to its next state.
  // For local primitives: pass the PDU to send, already encoded, in `bytes`
  // (A-ASSOCIATE-RQ for Evt1, -AC for Evt7, -RJ for Evt8, P-DATA for Evt9).
  // For received PDUs: pass the decoded PDU in `pdu`.
  // Returns the action that ran (for logs and tests).
  // (Added:) for Evt15 and Evt19, `bytes` may hold the A-ABORT PDU to send;
  // without it the machine builds one (see fsm.cc).
  // (Added:) the state moves before the action's effects run, so an Effects
  // callback may call Handle again; it must not destroy the machine.
  Action Handle(Event event, const Pdu* pdu = nullptr, std::vector<uint8_t> bytes = {});

  // Maps a decoded PDU to its receive event (Evt3, 4, 6, 10, 12, 13, 16).
  static Event EventFor(const Pdu& pdu);

 private:
  Effects* effects_;  // not owned; outlives the machine
  State state_;
  // Added: the A-ASSOCIATE-RQ given with Evt1, kept until Evt2 (AE-2) sends it.
  std::vector<uint8_t> pending_rq_;
  // Added: true after AE-1 (we requested the association), false after AE-5;
  // decides AR-8's next state (Sta9 requestor, Sta10 acceptor).
  bool requestor_ = false;
};

}  // namespace relais::ul

#endif  // RELAIS_ROUTER_PROTOCOL_FSM_H_
