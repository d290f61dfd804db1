// Send preparation: see send_prep.h.
#include "router/deliver/send_prep.h"

#include "router/dicom/dataset_structure.h"

#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcistrmf.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcwcache.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>

namespace relais::router {
namespace {

// Transfer syntax UIDs (PS3.5 Annex A, PS3.6 Annex A).
constexpr char kVerification[] = "1.2.840.10008.1.1";
constexpr char kExplicitVrBigEndian[] = "1.2.840.10008.1.2.2";
constexpr char kDeflated[] = "1.2.840.10008.1.2.1.99";
constexpr char kDeflatedImageFrame[] = "1.2.840.10008.1.2.8.1";
constexpr char kRle[] = "1.2.840.10008.1.2.5";
constexpr char kJpegBaseline[] = "1.2.840.10008.1.2.4.50";
constexpr char kJpegExtended[] = "1.2.840.10008.1.2.4.51";
constexpr char kJpegSpectral[] = "1.2.840.10008.1.2.4.53";     // retired
constexpr char kJpegProgressive[] = "1.2.840.10008.1.2.4.55";  // retired
constexpr char kJpegLossless[] = "1.2.840.10008.1.2.4.57";
constexpr char kJpegLosslessSv1[] = "1.2.840.10008.1.2.4.70";
constexpr char kJpegLsLossless[] = "1.2.840.10008.1.2.4.80";
constexpr char kJpegLsNearLossless[] = "1.2.840.10008.1.2.4.81";
constexpr char kJpeg2000Lossless[] = "1.2.840.10008.1.2.4.90";
constexpr char kHtj2kLossless[] = "1.2.840.10008.1.2.4.201";
constexpr char kHtj2kLosslessRpcl[] = "1.2.840.10008.1.2.4.202";

// PS3.8 9.3.2.2: presentation context ids are odd numbers 1..255.
constexpr size_t kMaxContexts = 128;

// Element values longer than this are not read from the stream at parse time
// but skipped and loaded afterwards (see ReadDataset).
constexpr uint32_t kMaxReadLength = 64 * 1024;
// A deflated data set may inflate to at most this many bytes (deflate can
// expand ~1000:1; this bounds what a hostile stored object can cost).
constexpr uint64_t kMaxInflatedBytes = uint64_t{1} << 30;
// Output is produced through a DcmOutputBufferStream of this size.
constexpr size_t kWriteBufferBytes = 1 << 20;

bool In(const std::string& ts, std::initializer_list<const char*> set) {
  return std::any_of(set.begin(), set.end(), [&](const char* s) { return ts == s; });
}

bool IsDeflated(const std::string& ts) { return ts == kDeflated; }

// Syntaxes whose pixel data DCMTK 3.6.7 can decode with the codecs that
// RegisterCodecs registers (dcmjpeg, dcmjpls, RLE), or that need no codec.
bool DcmtkCanDecode(const std::string& ts) {
  return IsUncompressedSyntax(ts) || IsDeflated(ts) ||
         In(ts, {kRle, kJpegBaseline, kJpegExtended, kJpegSpectral, kJpegProgressive, kJpegLossless, kJpegLosslessSv1,
                 kJpegLsLossless, kJpegLsNearLossless});
}

// Lossless syntaxes DCMTK 3.6.7 can encode with the registered encoders.
bool DcmtkCanEncodeLossless(const std::string& ts) { return In(ts, {kJpegLsLossless, kJpegLosslessSv1, kRle}); }

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::Internal(std::string("cannot buffer the data set in memory: ") + strerror(errno));
    }
    p += w, n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

// Inflates a deflated data set (PS3.5 A.5: raw deflate, RFC 1951, of an
// explicit VR little endian data set) into `fd` with DCMTK's zlib filter.
// Never setEos() on the inflater (DCMTK 3.6.7's filter then hands back bytes
// it never wrote for a truncated stream): the deflate stream must reach its
// own end, which the filter reports as eos().
Status InflateInto(std::span<const uint8_t> deflated, int fd) {
  DcmInputBufferStream in;
  if (OFCondition c = in.installCompressionFilter(ESC_zlib); c.bad()) {
    return Status::Internal(std::string("cannot inflate a deflated data set: ") + c.text());
  }
  if (!deflated.empty()) in.setBuffer(deflated.data(), static_cast<offile_off_t>(deflated.size()));
  std::vector<uint8_t> buf(64 * 1024);
  uint64_t total = 0;
  Status s;
  while (s.ok()) {
    offile_off_t got = in.read(buf.data(), static_cast<offile_off_t>(buf.size()));
    if (got <= 0) break;
    total += static_cast<uint64_t>(got);
    if (total > kMaxInflatedBytes) {
      s = Status::InvalidArgument("data set cannot be parsed: deflated data set inflates to more than " +
                                  std::to_string(kMaxInflatedBytes) + " bytes");
      break;
    }
    s = WriteAll(fd, buf.data(), static_cast<size_t>(got));
  }
  const bool good = in.good(), eos = in.eos();
  if (!deflated.empty()) in.releaseBuffer();
  RELAIS_RETURN_IF_ERROR(s);
  if (!good) {
    return Status::InvalidArgument(std::string("data set cannot be parsed: deflate stream is corrupt: ") +
                                   in.status().text());
  }
  if (!eos) return Status::InvalidArgument("data set cannot be parsed: deflate stream is truncated");
  return Status::OK();
}

// Parses the whole data set into `ds`, every value loaded into memory.
//
// Why through a file: DCMTK 3.6.7 allocates an element's declared value
// length as soon as it reads the length field when it reads from a buffer
// stream, even one whose end is known (a 0xFFFFFFF0 length costs a 4 GiB
// allocation before "larger than remaining bytes" is noticed). From a file
// stream, a value longer than maxReadLength is skipped with a bounded seek
// instead and only loaded later, so a length larger than the bytes left is
// refused without allocating it. The bytes go to an anonymous memory file
// (memfd), read back through /proc/self/fd.
Status ReadDataset(std::span<const uint8_t> bytes, E_TransferSyntax xfer, bool deflated, DcmDataset* ds) {
  Fd fd(memfd_create("relais-send-prep", MFD_CLOEXEC));
  if (fd.get() < 0) return Status::Internal(std::string("memfd_create: ") + strerror(errno));
  if (deflated) {
    RELAIS_RETURN_IF_ERROR(InflateInto(bytes, fd.get()));
  } else {
    RELAIS_RETURN_IF_ERROR(WriteAll(fd.get(), bytes.data(), bytes.size()));
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd.get());
  DcmInputFileStream in{OFFilename(path.c_str())};
  if (!in.good()) {
    return Status::Internal("cannot read the buffered data set from " + path + ": " + in.status().text());
  }
  ds->transferInit();
  OFCondition c = ds->read(in, xfer, EGL_noChange, kMaxReadLength);
  ds->transferEnd();
  if (c == EC_StreamNotifyClient) {
    return Status::InvalidArgument("data set cannot be parsed: it ends inside an element (truncated)");
  }
  if (c.bad()) return Status::InvalidArgument(std::string("data set cannot be parsed: ") + c.text());
  // Values skipped above are loaded now, while the memory file is open; each
  // was checked to lie within the file.
  c = ds->loadAllDataIntoMemory();
  if (c.bad()) return Status::InvalidArgument(std::string("data set cannot be loaded: ") + c.text());
  return Status::OK();
}

// Encodes `ds` in `xfer` (deflated syntaxes: DcmDataset::write installs the
// zlib filter itself) into a growing vector, flushing the fixed-size
// DcmOutputBufferStream whenever DCMTK reports it full.
Result<std::vector<uint8_t>> WriteDataset(DcmDataset* ds, E_TransferSyntax xfer, size_t size_hint) {
  std::vector<uint8_t> buf(kWriteBufferBytes);
  std::vector<uint8_t> out;
  out.reserve(size_hint);
  DcmOutputBufferStream stream(buf.data(), static_cast<offile_off_t>(buf.size()));
  auto drain = [&] {
    void* p = nullptr;
    offile_off_t n = 0;
    stream.flushBuffer(p, n);
    if (n > 0) out.insert(out.end(), static_cast<uint8_t*>(p), static_cast<uint8_t*>(p) + n);
  };
  DcmWriteCache cache;
  ds->transferInit();
  OFCondition c;
  do {
    c = ds->write(stream, xfer, EET_ExplicitLength, &cache, EGL_recalcGL);
    drain();
  } while (c == EC_StreamNotifyClient);
  if (c.good()) {
    // Drains a compression filter, which may need several rounds.
    for (;;) {
      stream.flush();
      drain();
      if (stream.isFlushed()) break;
    }
  }
  ds->transferEnd();
  if (c.bad()) return Status::InvalidArgument(std::string("cannot encode the data set: ") + c.text());
  if (!stream.good()) {
    return Status::Internal(std::string("cannot encode the data set: ") + stream.status().text());
  }
  return out;
}

class MemoryReader : public store::ObjectReader {
 public:
  MemoryReader(store::ObjectMeta meta, std::vector<uint8_t> bytes, size_t chunk_size)
      : meta_(std::move(meta)), bytes_(std::move(bytes)), chunk_size_(std::max<size_t>(chunk_size, 1)) {}

  const store::ObjectMeta& meta() const override { return meta_; }

  Status Next(std::vector<uint8_t>* out, bool* done) override {
    const size_t n = std::min(chunk_size_, bytes_.size() - pos_);
    out->assign(bytes_.begin() + static_cast<ptrdiff_t>(pos_), bytes_.begin() + static_cast<ptrdiff_t>(pos_ + n));
    pos_ += n;
    *done = pos_ == bytes_.size();
    return Status::OK();
  }

 private:
  store::ObjectMeta meta_;
  std::vector<uint8_t> bytes_;
  size_t chunk_size_;
  size_t pos_ = 0;
};

}  // namespace

void RegisterCodecs() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Never a new SOP Instance UID: Relais forwards the same instance, and the
    // only lossy step allowed (decoding an already lossy object) adds no loss.
    DJDecoderRegistration::registerCodecs(EDC_photometricInterpretation, EUC_never);
    DJEncoderRegistration::registerCodecs(ECC_lossyYCbCr, EUC_never);
    DJLSDecoderRegistration::registerCodecs(EJLSUC_never);
    // Raw mode (preferCookedEncoding false, as dcmcjpls): cooked mode needs
    // dcmimage's colour support and refuses RGB images without it.
    DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, /*preferCookedEncoding=*/OFFalse, 0, OFTrue, EJLSUC_never);
    DcmRLEDecoderRegistration::registerCodecs(OFFalse);
    DcmRLEEncoderRegistration::registerCodecs(OFFalse);
  });
}

bool IsUncompressedSyntax(const std::string& ts) {
  return In(ts, {kImplicitVrLittleEndian, kExplicitVrLittleEndian, kExplicitVrBigEndian});
}

bool IsLosslessSyntax(const std::string& ts) {
  return IsUncompressedSyntax(ts) || IsDeflated(ts) || ts == kDeflatedImageFrame ||
         In(ts, {kRle, kJpegLossless, kJpegLosslessSv1, kJpegLsLossless, kJpeg2000Lossless, kHtj2kLossless,
                 kHtj2kLosslessRpcl});
}

bool CanConvert(const std::string& from, const std::string& to) {
  if (from == to) return true;
  if (IsUncompressedSyntax(to) || IsDeflated(to)) return DcmtkCanDecode(from);
  if (DcmtkCanEncodeLossless(to)) return IsUncompressedSyntax(from) || IsDeflated(from);
  return false;
}

std::vector<ContextProposal> PlanContexts(const std::vector<ObjectKind>& kinds,
                                          const std::vector<std::string>& preferred) {
  std::vector<ContextProposal> out;
  out.push_back({kVerification, {kImplicitVrLittleEndian}});
  // SOP classes in order of first appearance, each with its stored syntaxes
  // in order of first appearance.
  std::vector<std::pair<std::string, std::vector<std::string>>> classes;
  for (const ObjectKind& k : kinds) {
    auto it = std::find_if(classes.begin(), classes.end(), [&](const auto& c) { return c.first == k.sop_class_uid; });
    if (it == classes.end()) {
      classes.push_back({k.sop_class_uid, {}});
      it = classes.end() - 1;
    }
    if (std::find(it->second.begin(), it->second.end(), k.transfer_syntax_uid) == it->second.end()) {
      it->second.push_back(k.transfer_syntax_uid);
    }
  }
  // An SCP picks ONE syntax per context, by its own preference (most prefer
  // Explicit VR Little Endian), so every syntax we want honoured gets a
  // context of its own; a context listing several would come back as the
  // SCP's favourite and strand objects stored in the others.
  const std::vector<std::string> fallback = {kExplicitVrLittleEndian, kImplicitVrLittleEndian};
  auto in_fallback = [&](const std::string& ts) {
    return std::find(fallback.begin(), fallback.end(), ts) != fallback.end();
  };
  for (const auto& [sop_class, stored] : classes) {
    std::vector<std::string> singles;
    auto add_single = [&](const std::string& ts) {
      if (!in_fallback(ts) && std::find(singles.begin(), singles.end(), ts) == singles.end()) singles.push_back(ts);
    };
    for (const std::string& p : preferred) {
      bool any = std::any_of(stored.begin(), stored.end(), [&](const std::string& s) { return CanConvert(s, p); });
      if (any) add_single(p);
    }
    // Stored syntaxes always alone, plain ones too: an object the peer takes
    // as stored is sent byte for byte, without DCMTK touching it.
    for (const std::string& s : stored) {
      if (std::find(singles.begin(), singles.end(), s) == singles.end()) singles.push_back(s);
    }
    // A SOP class is proposed whole or not at all; the caller sends the rest
    // on a later association.
    if (out.size() + singles.size() + 1 > kMaxContexts) break;
    for (const std::string& ts : singles) out.push_back({sop_class, {ts}});
    out.push_back({sop_class, fallback});
  }
  return out;
}

std::optional<SendChoice> ChooseContext(const std::vector<ScuAssociation::AcceptedContext>& accepted,
                                        const ObjectKind& kind, const std::vector<std::string>& preferred) {
  const std::string& stored = kind.transfer_syntax_uid;
  // The first accepted context (in the peer's order) for this SOP class in
  // `ts`, if `stored` can be turned into `ts` without loss.
  auto find = [&](const std::string& ts) -> std::optional<SendChoice> {
    if (!CanConvert(stored, ts)) return std::nullopt;
    for (const auto& c : accepted) {
      if (c.abstract_syntax == kind.sop_class_uid && c.transfer_syntax == ts) {
        return SendChoice{c.id, c.transfer_syntax, ts != stored};
      }
    }
    return std::nullopt;
  };
  for (const std::string& p : preferred) {
    if (auto c = find(p)) return c;
  }
  for (const std::string& ts : {stored, std::string(kExplicitVrLittleEndian), std::string(kImplicitVrLittleEndian)}) {
    if (auto c = find(ts)) return c;
  }
  return std::nullopt;
}

Result<std::vector<uint8_t>> PrepareDataset(std::span<const uint8_t> dataset, const std::string& stored_ts,
                                            const std::string& target_ts, const std::vector<rules::TagEdit>& edits) {
  RegisterCodecs();
  if (!dcmDataDict.isDictionaryLoaded()) {
    return Status::Internal("DCMTK data dictionary is not loaded (check DCMDICTPATH)");
  }
  const E_TransferSyntax stored_xfer = DcmXfer(stored_ts.c_str()).getXfer();
  if (stored_xfer == EXS_Unknown) {
    return Status::InvalidArgument("stored transfer syntax " + stored_ts + " is not known to DCMTK");
  }
  const E_TransferSyntax target_xfer = DcmXfer(target_ts.c_str()).getXfer();
  if (target_xfer == EXS_Unknown) {
    return Status::InvalidArgument("target transfer syntax " + target_ts + " is not known to DCMTK");
  }
  if (!CanConvert(stored_ts, target_ts)) {
    return Status::InvalidArgument("cannot convert " + stored_ts + " to " + target_ts + " without loss");
  }

  // DCMTK reads nested sequences recursively: refuse a hostile structure
  // (also after Pixel Data, which the receive-time header check stops at).
  RELAIS_RETURN_IF_ERROR(dicom::CheckDataSetStructure(dataset, stored_ts));
  DcmDataset ds;
  const bool deflated_in = DcmXfer(stored_xfer).getStreamCompression() != ESC_none;
  RELAIS_RETURN_IF_ERROR(ReadDataset(dataset, deflated_in ? EXS_LittleEndianExplicit : stored_xfer, deflated_in, &ds));
  RELAIS_RETURN_IF_ERROR(rules::ApplyEdits(edits, &ds));

  // A deflated target is explicit VR little endian in memory, deflated on write.
  const bool deflated_out = DcmXfer(target_xfer).getStreamCompression() != ESC_none;
  const E_TransferSyntax rep_xfer = deflated_out ? EXS_LittleEndianExplicit : target_xfer;
  const DJLSRepresentationParameter jpeg_ls_lossless(2, OFTrue);
  const DJ_RPLossless jpeg_sv1(/*aPrediction=*/1, /*aPt=*/0);  // PS3.5 A.4.1: process 14, selection value 1
  const DcmRepresentationParameter* param = nullptr;
  if (target_ts == kJpegLsLossless) param = &jpeg_ls_lossless;
  if (target_ts == kJpegLosslessSv1) param = &jpeg_sv1;
  // Same syntax: the pixel data is carried as it is, never decoded and
  // re-encoded (a representation parameter would not match the stored one).
  OFCondition c = rep_xfer == (deflated_in ? EXS_LittleEndianExplicit : stored_xfer)
                      ? EC_Normal
                      : ds.chooseRepresentation(rep_xfer, param);
  if (c.bad()) {
    return Status::InvalidArgument("cannot convert the data set from " + stored_ts + " to " + target_ts + ": " +
                                   c.text());
  }
  if (!ds.canWriteXfer(target_xfer, deflated_in ? EXS_LittleEndianExplicit : stored_xfer)) {
    return Status::InvalidArgument("cannot convert the data set from " + stored_ts + " to " + target_ts +
                                   ": DCMTK cannot write its pixel data in the target syntax");
  }
  return WriteDataset(&ds, target_xfer, dataset.size() + dataset.size() / 4 + 4096);
}

std::unique_ptr<store::ObjectReader> MakeMemoryReader(store::ObjectMeta meta, std::vector<uint8_t> bytes,
                                                      const std::string& transfer_syntax, size_t chunk_size) {
  meta.transfer_syntax_uid = transfer_syntax;
  meta.raw_size = bytes.size();
  meta.checksum = XXH3_64bits(bytes.data(), bytes.size());
  return std::make_unique<MemoryReader>(std::move(meta), std::move(bytes), chunk_size);
}

}  // namespace relais::router
