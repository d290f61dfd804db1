// Transport: one byte stream to one peer, as the upper-layer connection
// (ul_connection.h) uses it. The real one is a TCP connection on libuv
// (uv_transport.h); tests use a scripted fake (tests/router/net/
// fake_transport.h). DICOM TLS is not here: it runs above, in the
// connection, so that every transport carries it alike.
//
// Events come back through Transport::Sink, from the loop, never from
// inside a Transport method: a Write() completes later, a Close() reports
// later. Reads go straight into the buffer the sink hands out (no copy).
//
// Ownership: the sink (the connection) owns the transport. After Close() it
// keeps the transport alive until Sink::OnTransportClosed, and may destroy
// it from there (the transport touches nothing of its own afterwards).
// Thread: the loop thread only.
#ifndef RELAIS_ROUTER_NET_TRANSPORT_H_
#define RELAIS_ROUTER_NET_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace relais::router {

class Transport {
 public:
  class Sink {
   public:
    virtual ~Sink() = default;
    // Connect() finished: OK, or why not, in words that name the peer
    // ("connect to 10.0.0.5:104 failed: connection refused", "cannot
    // resolve 'pacs': unknown node or service").
    virtual void OnConnected(Status status) = 0;
    // Where the next read goes (not empty); `suggested` is how much the
    // transport would like room for, a hint.
    virtual std::span<uint8_t> ReadBuffer(size_t suggested) = 0;
    // `n` > 0 bytes were read into the span ReadBuffer returned last.
    virtual void OnRead(size_t n) = 0;
    // No more reads: the peer closed (`eof`), or reading failed (`error`
    // says why, e.g. "connection reset by peer").
    virtual void OnReadEnd(bool eof, const std::string& error) = 0;
    // A Write() of `bytes` bytes completed: OK, or why it failed (writes
    // cancelled by Close() fail too).
    virtual void OnWritten(size_t bytes, Status status) = 0;
    // Close() is done; the transport may be destroyed now.
    virtual void OnTransportClosed() = 0;
  };

  virtual ~Transport() = default;

  // Where events go from now on. REQUIRES: called once, before the rest.
  virtual void SetSink(Sink* sink) = 0;
  // Requestor side: connects to the peer the transport was made for; the
  // result comes to Sink::OnConnected, unless this returns an error (it
  // failed at once, and no callback follows).
  virtual Status Connect() = 0;
  // Reads (Sink::ReadBuffer, OnRead) until StopReading, Close or the end.
  virtual void StartReading() = 0;
  virtual void StopReading() = 0;
  // Queues `bytes` (not empty); Sink::OnWritten(bytes.size(), ...) follows,
  // unless this returns an error (nothing was queued; the message says why).
  virtual Status Write(std::vector<uint8_t> bytes) = 0;
  // Closes the stream; queued writes are cancelled. Sink::OnTransportClosed
  // follows once everything is released. Idempotent.
  virtual void Close() = 0;
  // The peer, for logs: "10.0.0.5:4711", "[fe80::1]:4711", "?" if unknown.
  virtual std::string PeerAddress() const = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_TRANSPORT_H_
