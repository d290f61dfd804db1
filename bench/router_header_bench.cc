// Header extraction throughput: a CT data set from the corpus, as it arrives
// over the network (explicit VR little endian, 16 KiB PDVs), parsed up to
// Pixel Data by HeaderParser.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dctk.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "router/receive/dataset_header.h"

namespace {

// Benchmarks get no RELAIS_CORPUS_DIR definition: take $RELAIS_CORPUS_DIR,
// else the corpus next to the source tree (../shared/corpus).
std::string CorpusDir() {
  if (const char* env = std::getenv("RELAIS_CORPUS_DIR")) return env;
#ifdef RELAIS_CORPUS_DIR
  return RELAIS_CORPUS_DIR;
#else
  std::string here = __FILE__;  // .../main/bench/router_header_bench.cc
  return here.substr(0, here.rfind('/')) + "/../../shared/corpus";
#endif
}

std::vector<uint8_t> LoadCtDataSet() {
  DcmFileFormat ff;
  std::string path = CorpusDir() + "/pynetdicom__CTImageStorage.dcm";
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
