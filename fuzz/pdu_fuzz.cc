// libFuzzer target: the PDU decoder (router/protocol/pdu.h) fed through the receive
// buffer (router/protocol/pdu_input.h) the way an association reads its socket: the
// input arrives in reads of varying size and every complete PDU is decoded
// in place. Checks the decoder's contract: it never consumes more than it
// was given, never reports a PDU of zero bytes, and an invalid PDU ends the
// stream (the association would abort).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "router/protocol/pdu.h"
#include "router/protocol/pdu_input.h"

using relais::router::PduInputBuffer;
namespace ul = relais::ul;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // First byte: read size pattern (1..256 bytes per read).
  const size_t read_size = static_cast<size_t>(data[0]) + 1;
  data += 1;
  size -= 1;
  ul::DecodeLimits limits;
  limits.max_pdata_length = 16384;  // small, so the limit paths are reached
  limits.max_other_length = 65536;
  PduInputBuffer in;
  size_t off = 0;
  while (off < size) {
    size_t n = read_size < size - off ? read_size : size - off;
    std::span<uint8_t> tail = in.WritableTail(n);
    std::memcpy(tail.data(), data + off, n);
    in.Commit(n);
    off += n;
    for (;;) {
      std::span<const uint8_t> unread = in.Unread();
      if (unread.empty()) break;
      ul::DecodeResult r = ul::DecodePdu(unread, limits);
      if (r.kind == ul::DecodeResult::Kind::kNeedMore) break;
      if (r.kind == ul::DecodeResult::Kind::kInvalid) {
        if (r.error.empty()) abort();  // an invalid PDU must say why
        return 0;
      }
      if (r.consumed == 0 || r.consumed > unread.size()) abort();
      // Re-encode what can be re-encoded. The encoder may refuse (it adds
      // sub-items the peer left out, so a full item can grow past 65535),
      // but then it must say why and leave the output untouched.
      std::vector<uint8_t> out;
      relais::Status s;
      if (auto* rq = std::get_if<ul::AssociateRq>(&r.pdu)) s = ul::EncodeAssociateRq(*rq, &out);
      if (auto* ac = std::get_if<ul::AssociateAc>(&r.pdu)) s = ul::EncodeAssociateAc(*ac, &out);
      if (auto* pd = std::get_if<ul::PData>(&r.pdu)) s = ul::EncodePData(*pd, &out);
      if (!s.ok() && (s.message().empty() || !out.empty())) abort();
      in.Consume(r.consumed);
    }
  }
  return 0;
}
