// How header_fuzz reads its input, shared with the replay test
// (tests/router/receive/fuzz_replay_test.cc) so that every checked-in input in
// fuzz/corpus/header/ is also a plain unit test: the first byte picks the
// transfer syntax of the presentation context, the second the size of the
// PDV fragments the data set arrives in (1..4081 bytes), the rest is the
// data set. The header limit is small so that "header too large" is reachable.
#ifndef RELAIS_FUZZ_HEADER_INPUT_H_
#define RELAIS_FUZZ_HEADER_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/status.h"
#include "router/receive/dataset_header.h"

namespace relais::fuzz {

struct HeaderRun {
  bool finished = false;  // the parser was done after the last fragment
  Result<dicom::HeaderInfo> result = Status::Internal("input shorter than 2 bytes");
};

inline HeaderRun RunHeaderInput(const uint8_t* data, size_t size) {
  HeaderRun run;
  if (size < 2) return run;
  static const char* const kSyntaxes[] = {"1.2.840.10008.1.2",      "1.2.840.10008.1.2.1",    "1.2.840.10008.1.2.2",
                                          "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                                          "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5",    "1.2.3.4.unknown"};
  const char* ts = kSyntaxes[data[0] % (sizeof(kSyntaxes) / sizeof(kSyntaxes[0]))];
  const size_t piece = static_cast<size_t>(data[1]) * 16 + 1;
  data += 2;
  size -= 2;
  dicom::HeaderParser parser(ts, /*max_header_bytes=*/1 << 16);
  size_t off = 0;
  do {
    size_t n = piece < size - off ? piece : size - off;
    parser.Feed(std::span<const uint8_t>(data + off, n), off + n == size);
    off += n;
  } while (off < size && !parser.done());
  run.finished = parser.done();
  if (run.finished) run.result = parser.result();
  return run;
}

}  // namespace relais::fuzz

#endif  // RELAIS_FUZZ_HEADER_INPUT_H_
