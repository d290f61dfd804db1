// Header extraction throughput: a CT data set from the corpus, as it arrives
// over the network (explicit VR little endian, 16 KiB PDVs), parsed up to
// Pixel Data by HeaderParser.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcostrmb.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "router/dataset_header.h"

namespace {

std::vector<uint8_t> LoadCtDataSet() {
  DcmFileFormat ff;
  std::string path = std::string(RELAIS_CORPUS_DIR) + "/pynetdicom__CTImageStorage.dcm";
  if (ff.loadFile(path.c_str()).bad()) return {};
  DcmDataset* ds = ff.getDataset();
  std::vector<uint8_t> out;
  std::vector<char> buf(64 * 1024);
  DcmOutputBufferStream os(buf.data(), buf.size());
  ds->transferInit();
  OFCondition c = EC_StreamNotifyClient;
  while (c == EC_StreamNotifyClient) {
    c = ds->write(os, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
    if (c.good()) os.flush();
    void* p;
    offile_off_t n;
    os.flushBuffer(p, n);
    out.insert(out.end(), static_cast<uint8_t*>(p), static_cast<uint8_t*>(p) + n);
  }
  ds->transferEnd();
  return c.good() ? out : std::vector<uint8_t>{};
}

void BM_ParseHeaderCt(benchmark::State& state) {
  static const std::vector<uint8_t> bytes = LoadCtDataSet();
  if (bytes.empty()) {
    state.SkipWithError("cannot load pynetdicom__CTImageStorage.dcm");
    return;
  }
  const size_t pdv = 16 * 1024;
  uint64_t header_bytes = 0;
  for (auto _ : state) {
    relais::dicom::HeaderParser parser("1.2.840.10008.1.2.1");
    size_t off = 0;
    while (!parser.done() && off < bytes.size()) {
      size_t n = std::min(pdv, bytes.size() - off);
      parser.Feed(std::span(bytes.data() + off, n), off + n == bytes.size());
      off += n;
    }
    auto r = parser.result();
    if (!r.ok()) {
      state.SkipWithError(r.status().message().c_str());
      return;
    }
    benchmark::DoNotOptimize(r->sop_instance_uid.data());
    header_bytes += off;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(header_bytes));
}
BENCHMARK(BM_ParseHeaderCt);

}  // namespace

BENCHMARK_MAIN();
