// libFuzzer target: data set header extraction (router/receive/dataset_header.h),
// which parses every received data set up to Pixel Data with DCMTK. The
// input format is in fuzz/header_input.h.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include "fuzz/header_input.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  relais::fuzz::HeaderRun run = relais::fuzz::RunHeaderInput(data, size);
  if (!run.finished) abort();  // the last fragment must finish it
  const auto& r = run.result;
  if (r.ok() && r->sop_instance_uid.empty()) abort();  // required
  if (!r.ok() && r.status().message().empty()) abort();
  return 0;
}
