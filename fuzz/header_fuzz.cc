// libFuzzer target: data set header extraction (router/dataset_header.h),
// which parses every received data set up to Pixel Data with DCMTK. The
// first input byte picks the transfer syntax of the presentation context,
// the second the size of the PDV fragments the data set arrives in. A small
// header limit makes the "header too large" path reachable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include "router/dataset_header.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const char* const kSyntaxes[] = {
      "1.2.840.10008.1.2",       "1.2.840.10008.1.2.1",    "1.2.840.10008.1.2.2",
      "1.2.840.10008.1.2.1.99",  "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
      "1.2.840.10008.1.2.4.80",  "1.2.840.10008.1.2.5",    "1.2.3.4.unknown"};
  const char* ts = kSyntaxes[data[0] % (sizeof(kSyntaxes) / sizeof(kSyntaxes[0]))];
  const size_t piece = static_cast<size_t>(data[1]) * 16 + 1;
  data += 2;
  size -= 2;
  relais::dicom::HeaderParser parser(ts, /*max_header_bytes=*/1 << 16);
  size_t off = 0;
  do {
    size_t n = piece < size - off ? piece : size - off;
    parser.Feed(std::span<const uint8_t>(data + off, n), off + n == size);
    off += n;
  } while (off < size && !parser.done());
  if (off == size && !parser.done()) abort();  // the last fragment must finish it
  relais::Result<relais::dicom::HeaderInfo> r = parser.result();
  if (r.ok() && r->sop_instance_uid.empty()) abort();  // required
  if (!r.ok() && r.status().message().empty()) abort();
  return 0;
}
