// libFuzzer target: the Upper Layer state machine (router/protocol/fsm.h, PS3.8
// 9.2 Table 9-10) driven by a sequence of events: received PDUs decoded
// from the input (router/protocol/pdu.h) interleaved with local primitives, timer
// expiry and transport events chosen by the input. Checks that every
// (state, event) pair is handled without a crash, that the machine stays in
// a valid state, and that nothing is sent on a closed transport.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <vector>

#include "router/protocol/fsm.h"
#include "router/protocol/pdu.h"

namespace ul = relais::ul;
using ul::Event;
using ul::State;

namespace {

class Recorder : public ul::Effects {
 public:
  void ConnectTransport() override { open = true; }
  void SendPdu(std::vector<uint8_t> bytes) override {
    if (!open) abort();  // a PDU sent on a closed transport
    if (bytes.size() < 6) abort();
  }
  void CloseTransport() override { open = false; }
  void StartArtim() override {}
  void StopArtim() override {}
  void OnAssociateRequest(const ul::AssociateRq&) override {}
  void OnAssociateAccepted(const ul::AssociateAc&) override {}
  void OnAssociateRejected(const ul::AssociateRj&) override {}
  void OnTransportConnected() override {}
  void OnPData(const ul::PData&) override {}
  void OnReleaseRequest() override {}
  void OnReleaseConfirm() override {}
  void OnAbort(const std::optional<ul::Abort>&) override {}
  bool open = true;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Recorder effects;
  // First byte: acceptor (Sta2, transport open) or requestor (Sta1).
  const bool acceptor = (data[0] & 1) != 0;
  effects.open = acceptor;
  ul::StateMachine fsm(&effects, acceptor ? State::kSta2 : State::kSta1);
  ul::DecodeLimits limits;
  limits.max_pdata_length = 16384;
  limits.max_other_length = 65536;
  size_t off = 1;
  int steps = 0;
  while (off < size && steps++ < 64) {
    const uint8_t op = data[off++];
    if (op < 0xF0) {
      // A PDU from the peer: decode whatever follows.
      ul::DecodeResult r = ul::DecodePdu(std::span<const uint8_t>(data + off, size - off), limits);
      if (r.kind == ul::DecodeResult::Kind::kPdu) {
        off += r.consumed;
        fsm.Handle(ul::StateMachine::EventFor(r.pdu), &r.pdu);
      } else {
        fsm.Handle(Event::kEvt19);  // unrecognized or invalid PDU
        if (r.kind == ul::DecodeResult::Kind::kNeedMore) break;
        off += 1;
      }
    } else {
      // A local or transport event.
      static constexpr Event kLocal[] = {Event::kEvt1,  Event::kEvt2,  Event::kEvt5,  Event::kEvt7,
                                         Event::kEvt8,  Event::kEvt9,  Event::kEvt11, Event::kEvt14,
                                         Event::kEvt15, Event::kEvt17, Event::kEvt18, Event::kEvt17,
                                         Event::kEvt18, Event::kEvt15, Event::kEvt9,  Event::kEvt7};
      Event e = kLocal[op - 0xF0];
      std::vector<uint8_t> bytes;
      // Default values always fit their length fields: the Status is OK.
      if (e == Event::kEvt1) (void)ul::EncodeAssociateRq(ul::AssociateRq{}, &bytes);
      if (e == Event::kEvt7) (void)ul::EncodeAssociateAc(ul::AssociateAc{}, &bytes);
      if (e == Event::kEvt8) ul::EncodeAssociateRj(ul::AssociateRj{}, &bytes);
      if (e == Event::kEvt9) (void)ul::EncodePData(ul::PData{}, &bytes);
      if (e == Event::kEvt5) effects.open = true;
      if (e == Event::kEvt17) effects.open = false;  // the peer closed the connection
      if (e == Event::kEvt2) effects.open = true;
      fsm.Handle(e, nullptr, std::move(bytes));
    }
    const int s = static_cast<int>(fsm.state());
    if (s < 1 || s > 13) abort();
  }
  return 0;
}
