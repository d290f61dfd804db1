// FakeTransport: a Transport (router/net/transport.h) without a socket, for
// unit tests of UlConnection and of the associations over it, on a real
// libuv loop (their timers are real).
//
// The test owns a FakeWire, which outlives the transport: it records what
// the connection wrote and carries what the scripted peer sends. The peer
// reads each write at once (FakeWire::on_write, where a script answers with
// Send). Like libuv, the transport calls nothing of its sink back from
// inside one of its methods: connect results, write completions, the bytes
// the peer sends and the close are delivered from a zero timer on the
// loop. After Close(), writes still in flight complete with an error, then
// OnTransportClosed comes from the timer's close callback.
//
// PduReader turns what a side wrote back into PDUs (router/protocol/pdu.h),
// whatever the cut between writes.
#ifndef RELAIS_TESTS_ROUTER_NET_FAKE_TRANSPORT_H_
#define RELAIS_TESTS_ROUTER_NET_FAKE_TRANSPORT_H_

#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "router/net/transport.h"
#include "router/protocol/dimse.h"
#include "router/protocol/pdu.h"

namespace relais::testing {

class FakeTransport;

// The test's end of the fake connection.
struct FakeWire {
  // ---- what the connection did (read by the test) ----
  std::vector<uint8_t> written;  // every byte written, in order
  size_t writes = 0;             // Write() calls
  int connects = 0;              // Connect() calls
  bool reading = false;          // between StartReading and StopReading
  bool closed = false;           // Close() was called
  bool close_reported = false;   // OnTransportClosed was delivered

  // ---- the script ----
  // What Connect() reports (from the loop).
  Status connect_result = Status::OK();
  // Each write as the peer reads it, from inside Write (answer with Send:
  // what it sends is delivered later, from the loop).
  std::function<void(FakeWire&, std::span<const uint8_t>)> on_write;
  // Largest read the connection gets (0: each Send is one read, if the
  // connection's buffer takes it).
  size_t max_read = 0;
  std::string peer_address = "192.0.2.7:4711";

  // ---- the peer's actions ----
  // Bytes for the connection to read, as one chunk (split by max_read).
  void Send(std::vector<uint8_t> bytes);
  // The peer closes the connection (eof) or the read fails (`error`).
  void SendEnd(bool eof = true, std::string error = "connection reset by peer");

  FakeTransport* transport = nullptr;  // while one is alive
};

class FakeTransport final : public router::Transport {
 public:
  FakeTransport(uv_loop_t* loop, FakeWire* wire) : wire_(wire) {
    uv_timer_init(loop, &pump_);
    pump_.data = this;
    wire_->transport = this;
  }
  ~FakeTransport() override {
    if (wire_->transport == this) wire_->transport = nullptr;
  }

  void SetSink(Sink* sink) override { sink_ = sink; }
  Status Connect() override {
    ++wire_->connects;
    events_.push_back(Event{Event::kConnected, wire_->connect_result});
    Arm();
    return Status::OK();
  }
  void StartReading() override {
    if (closing_) return;
    wire_->reading = true;
    Arm();
  }
  void StopReading() override { wire_->reading = false; }
  Status Write(std::vector<uint8_t> bytes) override {
    if (closing_) return Status::IOError("bad file descriptor");
    ++wire_->writes;
    wire_->written.insert(wire_->written.end(), bytes.begin(), bytes.end());
    if (wire_->on_write) wire_->on_write(*wire_, bytes);
    in_flight_.push_back(bytes.size());
    events_.push_back(Event{Event::kWritten, Status::OK()});
    Arm();
    return Status::OK();
  }
  void Close() override {
    if (closing_) return;
    closing_ = true;
    wire_->closed = true;
    wire_->reading = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&pump_), &FakeTransport::OnClose);
  }
  std::string PeerAddress() const override { return wire_->peer_address; }

  // Called by FakeWire.
  void Inbound() { Arm(); }

 private:
  friend struct FakeWire;
  struct Event {
    enum Kind { kConnected, kWritten } kind;
    Status status;
  };

  void Arm() {
    if (!closing_) uv_timer_start(&pump_, &FakeTransport::OnPump, 0, 0);
  }

  static void OnPump(uv_timer_t* t) noexcept { static_cast<FakeTransport*>(t->data)->Pump(); }

  void Pump() {
    while (!closing_ && !events_.empty()) {
      Event e = std::move(events_.front());
      events_.pop_front();
      if (e.kind == Event::kConnected) {
        sink_->OnConnected(e.status);
        continue;
      }
      size_t n = in_flight_.front();
      in_flight_.pop_front();
      sink_->OnWritten(n, Status::OK());
    }
    DeliverReads();
  }

  void DeliverReads() {
    while (!closing_ && wire_->reading && !inbound_.empty()) {
      Chunk& c = inbound_.front();
      if (c.end) {
        Chunk end = std::move(c);
        inbound_.pop_front();
        sink_->OnReadEnd(end.eof, end.error);
        continue;
      }
      std::span<uint8_t> room = sink_->ReadBuffer(c.bytes.size() - c.offset);
      size_t n = std::min(room.size(), c.bytes.size() - c.offset);
      if (wire_->max_read != 0) n = std::min(n, wire_->max_read);
      std::memcpy(room.data(), c.bytes.data() + c.offset, n);
      c.offset += n;
      if (c.offset == c.bytes.size()) inbound_.pop_front();
      sink_->OnRead(n);
    }
  }

  static void OnClose(uv_handle_t* h) noexcept {
    auto* self = static_cast<FakeTransport*>(h->data);
    // Writes still in flight are cancelled, as libuv does, before the close.
    while (!self->in_flight_.empty()) {
      size_t n = self->in_flight_.front();
      self->in_flight_.pop_front();
      self->sink_->OnWritten(n, Status::IOError("operation canceled"));
    }
    self->wire_->close_reported = true;
    self->sink_->OnTransportClosed();  // may destroy self
  }

  struct Chunk {
    std::vector<uint8_t> bytes;
    size_t offset = 0;
    bool end = false;
    bool eof = false;
    std::string error;
  };

  FakeWire* wire_;
  Sink* sink_ = nullptr;
  uv_timer_t pump_;
  bool closing_ = false;
  std::deque<Event> events_;
  std::deque<size_t> in_flight_;
  std::deque<Chunk> inbound_;
};

inline void FakeWire::Send(std::vector<uint8_t> bytes) {
  if (transport == nullptr || bytes.empty()) return;
  transport->inbound_.push_back(FakeTransport::Chunk{std::move(bytes), 0, false, false, {}});
  transport->Inbound();
}

inline void FakeWire::SendEnd(bool eof, std::string error) {
  if (transport == nullptr) return;
  transport->inbound_.push_back(FakeTransport::Chunk{{}, 0, true, eof, eof ? "end of file" : std::move(error)});
  transport->Inbound();
}

// Decodes the PDUs in a byte stream fed in pieces.
class PduReader {
 public:
  // Appends `bytes` and returns every PDU now complete (PDVs copied out).
  struct Item {
    ul::Pdu pdu;
    std::vector<std::vector<uint8_t>> pdv_data;  // PData only: each PDV's bytes
    bool invalid = false;
  };
  std::vector<Item> Feed(std::span<const uint8_t> bytes) {
    buf_.insert(buf_.end(), bytes.begin(), bytes.end());
    std::vector<Item> out;
    while (!buf_.empty()) {
      ul::DecodeResult r = ul::DecodePdu(buf_, ul::DecodeLimits{0, 0});
      if (r.kind == ul::DecodeResult::Kind::kNeedMore) break;
      if (r.kind == ul::DecodeResult::Kind::kInvalid) {
        out.push_back(Item{{}, {}, true});
        buf_.clear();
        break;
      }
      Item item{std::move(r.pdu), {}, false};
      if (auto* p = std::get_if<ul::PData>(&item.pdu)) {
        for (ul::Pdv& v : p->pdvs) {
          item.pdv_data.emplace_back(v.data.begin(), v.data.end());
          v.data = {};
        }
      }
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(r.consumed));
      out.push_back(std::move(item));
    }
    return out;
  }

 private:
  std::vector<uint8_t> buf_;
};

// ---- PDUs a test peer sends (PS3.8 9.3) ----

// One P-DATA-TF with one PDV.
inline std::vector<uint8_t> PDataPdu(uint8_t context_id, bool is_command, bool is_last, std::span<const uint8_t> data) {
  std::vector<uint8_t> pdu;
  Status s = ul::EncodePDataHeader(context_id, is_command, is_last, static_cast<uint32_t>(data.size()), &pdu);
  if (!s.ok()) return {};
  pdu.insert(pdu.end(), data.begin(), data.end());
  return pdu;
}

// A DIMSE command in one P-DATA-TF.
inline std::vector<uint8_t> CommandPdu(uint8_t context_id, const dimse::Command& cmd) {
  return PDataPdu(context_id, true, true, dimse::EncodeCommand(cmd));
}

inline std::vector<uint8_t> AbortPdu(ul::AbortSource source, ul::AbortReason reason) {
  std::vector<uint8_t> out;
  ul::EncodeAbort(ul::Abort{source, reason}, &out);
  return out;
}

inline std::vector<uint8_t> ReleaseRqPdu() {
  std::vector<uint8_t> out;
  ul::EncodeReleaseRq(&out);
  return out;
}

inline std::vector<uint8_t> ReleaseRpPdu() {
  std::vector<uint8_t> out;
  ul::EncodeReleaseRp(&out);
  return out;
}

inline std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace relais::testing

#endif  // RELAIS_TESTS_ROUTER_NET_FAKE_TRANSPORT_H_
