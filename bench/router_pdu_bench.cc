// Benchmarks for the DICOM Upper Layer PDU codec (router/protocol/pdu.h). Inputs are
// built once, outside the timed loops.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "router/protocol/pdu.h"

namespace relais::ul {
namespace {

// An A-ASSOCIATE-RQ like storescu's: `n` storage contexts with three transfer
// syntaxes each, and a usual user information item.
AssociateRq MakeRq(int n) {
  AssociateRq rq;
  rq.called_ae = "ANY-SCP";
  rq.calling_ae = "STORESCU";
  for (int i = 0; i < n; ++i) {
    rq.contexts.push_back({static_cast<uint8_t>(2 * i + 1),
                           "1.2.840.10008.5.1.4.1.1." + std::to_string(i + 1),
                           {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2"}});
  }
  rq.user_info.max_length = 16384;
  rq.user_info.implementation_class_uid = "1.2.276.0.7230010.3.0.3.6.7";
  rq.user_info.implementation_version_name = "OFFIS_DCMTK_367";
  return rq;
}

AssociateAc MakeAc(int n) {
  AssociateAc ac;
  ac.called_ae = "ANY-SCP";
  ac.calling_ae = "STORESCU";
  for (int i = 0; i < n; ++i) {
    ac.contexts.push_back({static_cast<uint8_t>(2 * i + 1), ContextResult::kAcceptance, "1.2.840.10008.1.2.1"});
  }
  ac.user_info.max_length = 262144;
  ac.user_info.implementation_class_uid = "1.2.3.4.5.6";
  ac.user_info.implementation_version_name = "RELAIS_010";
  return ac;
}

void BM_DecodeAssociateRq(benchmark::State& state) {
  std::vector<uint8_t> bytes;
  if (!EncodeAssociateRq(MakeRq(static_cast<int>(state.range(0))), &bytes).ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  const DecodeLimits limits;
  for (auto _ : state) {
    DecodeResult r = DecodePdu(bytes, limits);
    benchmark::DoNotOptimize(r);
    if (r.kind != DecodeResult::Kind::kPdu) state.SkipWithError("decode failed");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeAssociateRq)->Arg(2)->Arg(64);

// A 256 KiB P-DATA-TF PDU (PDU length 262144, our default maximum) holding
// one PDV: the decoder must not touch the data.
void BM_DecodePData(benchmark::State& state) {
  const uint32_t pdu_length = 262144;
  std::vector<uint8_t> bytes;
  if (!EncodePDataHeader(1, false, true, pdu_length - 6, &bytes).ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  bytes.resize(6 + pdu_length, 0x5A);
  const DecodeLimits limits;
  for (auto _ : state) {
    DecodeResult r = DecodePdu(bytes, limits);
    benchmark::DoNotOptimize(r);
    if (r.kind != DecodeResult::Kind::kPdu) state.SkipWithError("decode failed");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodePData);

void BM_EncodeAssociateAc(benchmark::State& state) {
  const AssociateAc ac = MakeAc(static_cast<int>(state.range(0)));
  std::vector<uint8_t> out;
  size_t size = 0;
  for (auto _ : state) {
    out.clear();  // keeps the capacity: measures encoding, not allocation
    if (!EncodeAssociateAc(ac, &out).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(out.data());
    size = out.size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeAssociateAc)->Arg(2)->Arg(64);

}  // namespace
}  // namespace relais::ul

BENCHMARK_MAIN();
