// PduInputBuffer: the receive buffer of one association (SCP or SCU).
// Bytes are read straight into its tail and decoded in place from its front
// (router/protocol/pdu.h works on spans of it; decoded PDVs point into it). It holds
// at most one partial PDU plus one read, so its size is bounded by the
// decode limits. Thread: one association's loop thread.
#ifndef RELAIS_ROUTER_PROTOCOL_PDU_INPUT_H_
#define RELAIS_ROUTER_PROTOCOL_PDU_INPUT_H_

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace relais::router {

class PduInputBuffer {
 public:
  // Room for the next read: at least `min` writable bytes after the unread
  // ones (compacting first). Invalidates spans from Unread().
  std::span<uint8_t> WritableTail(size_t min) {
    if (buf_.size() - end_ < min) {
      if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (buf_.size() - end_ < min) buf_.resize(end_ + min);
    }
    return std::span<uint8_t>(buf_.data() + end_, buf_.size() - end_);
  }
  // `n` bytes were read into the tail WritableTail returned.
  void Commit(size_t n) { end_ += n; }
  // Received bytes not yet decoded.
  std::span<const uint8_t> Unread() const { return std::span<const uint8_t>(buf_.data() + begin_, end_ - begin_); }
  bool empty() const { return begin_ == end_; }
  // The first `n` unread bytes were decoded.
  void Consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

 private:
  std::vector<uint8_t> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_PROTOCOL_PDU_INPUT_H_
