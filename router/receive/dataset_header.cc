// HeaderParser: see dataset_header.h.
#include "router/receive/dataset_header.h"

#include <algorithm>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "router/dicom/dataset_structure.h"
#include "rules/dicom_text.h"

namespace relais::dicom {

struct HeaderParser::Impl {
  Impl(const std::string& ts_uid, size_t max_bytes) : max_header_bytes(max_bytes) {
    DcmXfer x(ts_uid.c_str());
    xfer = x.getXfer();
    // PS3.5 A.5: a deflated data set is raw deflate (RFC 1951) of an explicit
    // VR little endian one. It is inflated first (by DCMTK's zlib filter on a
    // second buffer stream), so the guard sees the same bytes as DCMTK, which
    // then reads plain explicit VR little endian.
    if (xfer != EXS_Unknown && x.getStreamCompression() == ESC_zlib) {
      deflated = true;
      xfer = EXS_LittleEndianExplicit;
    }
  }

  void Fail(std::string why) {
    done = true;
    error = std::move(why);
  }
  void Process(const uint8_t* p, size_t n, bool last);
  void Inflate(const uint8_t* p, size_t n, bool last);

  E_TransferSyntax xfer = EXS_Unknown;
  size_t max_header_bytes;
  bool deflated = false;
  std::unique_ptr<DataSetStructureGuard> guard;
  DcmDataset dataset;
  std::vector<uint8_t> header;  // the header bytes so far, read by DCMTK at once
  uint64_t fed = 0;             // bytes given to Feed
  uint64_t processed = 0;       // (inflated) bytes scanned by the guard
  bool done = false;
  std::string error;              // empty: no error
  DcmInputBufferStream inflater;  // deflated input, read back inflated
  std::vector<uint8_t> zout;
};

HeaderParser::HeaderParser(const std::string& transfer_syntax_uid, size_t max_header_bytes)
    : impl_(std::make_unique<Impl>(transfer_syntax_uid, max_header_bytes)) {
  Impl& s = *impl_;
  if (s.xfer == EXS_Unknown) {
    s.Fail("unknown transfer syntax '" + transfer_syntax_uid + "'");
    return;
  }
  if (!dcmDataDict.isDictionaryLoaded()) {
    s.Fail("DCMTK data dictionary is not loaded (check DCMDICTPATH)");
    return;
  }
  DcmXfer x(s.xfer);
  s.guard = std::make_unique<DataSetStructureGuard>(!x.isExplicitVR(), x.isBigEndian(), max_header_bytes);
  if (s.deflated) {
    if (OFCondition c = s.inflater.installCompressionFilter(ESC_zlib); c.bad()) {
      s.Fail(std::string("cannot inflate a deflated data set: ") + c.text());
      return;
    }
    s.zout.resize(64 * 1024);
  }
}

HeaderParser::~HeaderParser() = default;

void HeaderParser::Feed(std::span<const uint8_t> data, bool last) {
  Impl& s = *impl_;
  if (s.done) return;
  s.fed += data.size();
  if (s.deflated) {
    s.Inflate(data.data(), data.size(), last);
  } else {
    s.Process(data.data(), data.size(), last);
  }
}

void HeaderParser::Impl::Inflate(const uint8_t* p, size_t n, bool last) {
  // Never setEos() on the inflater: DCMTK 3.6.7's zlib filter, told that a
  // truncated deflate stream has ended, hands back bytes it never wrote
  // (seen as uninitialised memory in element values). Instead, after the
  // last fragment, the stream must have reached its own end (Z_STREAM_END),
  // which the filter reports as eos().
  if (n > 0) inflater.setBuffer(p, static_cast<offile_off_t>(n));
  // Drain everything the filter can inflate from this input. A deflate bomb
  // is bounded by Process, which refuses more than max_header_bytes.
  while (!done) {
    offile_off_t got = inflater.read(zout.data(), static_cast<offile_off_t>(zout.size()));
    if (got <= 0) break;
    Process(zout.data(), static_cast<size_t>(got), false);
  }
  if (n > 0 && !done) inflater.releaseBuffer();
  if (done) return;
  if (!inflater.good()) {
    Fail(std::string("data set cannot be parsed: deflate stream is corrupt: ") + inflater.status().text());
  } else if (last) {
    if (!inflater.eos()) {
      Fail("data set cannot be parsed: deflate stream is truncated");
      return;
    }
    Process(nullptr, 0, true);  // end of the data set: DCMTK decides whether it is complete
  }
}

// DCMTK reads the header once, from one buffer holding all of it: bytes are
// collected (only the header, never pixel data) until the guard has seen the
// Pixel Data element's tag and length or the data set ended. DCMTK 3.6.7
// resuming a read suspended in the middle of an element can lose its place:
// an element that appears twice is dropped with its value half read, and an
// element out of tag order moves the item's cursor to another element; in
// both cases the next call reads value bytes as element headers (header_fuzz
// found a 4 GiB allocation this way: fuzz/corpus/header/regression-*).
void HeaderParser::Impl::Process(const uint8_t* p, size_t n, bool last) {
  if (done || (n == 0 && !last)) return;
  const uint64_t before = processed;
  processed += n;
  if (std::string err = guard->Scan(p, n); !err.empty()) {
    Fail(std::move(err));
    return;
  }
  const bool stopped = guard->stopped();
  // Up to the end of the Pixel Data element's header; nothing after it.
  const size_t take = stopped ? static_cast<size_t>(guard->stop_offset() - before) : n;
  if (take > 0) header.insert(header.end(), p, p + take);
  if (!stopped && !last) {
    if (header.size() > max_header_bytes) {
      Fail("data set header larger than " + std::to_string(max_header_bytes) + " bytes");
    }
    return;
  }
  if (std::string err = guard->AtEnd(); !err.empty()) {
    Fail(std::move(err));
    return;
  }
  DcmInputBufferStream stream;
  if (!header.empty()) stream.setBuffer(header.data(), static_cast<offile_off_t>(header.size()));
  // At the end of the data set DCMTK checks that every element is complete;
  // after the Pixel Data header it stops without reading the value.
  if (!stopped) stream.setEos();
  dataset.transferInit();
  OFCondition cond = dataset.readUntilTag(stream, xfer, EGL_noChange, DCM_MaxReadLength, DCM_PixelData);
  dataset.transferEnd();
  if (!header.empty()) stream.releaseBuffer();
  std::vector<uint8_t>().swap(header);
  if (cond.good()) {
    done = true;
  } else if (cond == EC_StreamNotifyClient) {
    Fail(stopped ? "data set cannot be parsed: DCMTK did not stop at Pixel Data"
                 : "data set cannot be parsed: it ends inside an element (truncated)");
  } else {
    Fail(std::string("data set cannot be parsed: ") + cond.text());
  }
}

bool HeaderParser::done() const { return impl_->done; }

uint64_t HeaderParser::bytes_fed() const { return impl_->fed; }

DcmDataset* HeaderParser::dataset() { return &impl_->dataset; }

Result<HeaderInfo> HeaderParser::result() const {
  const Impl& s = *impl_;
  if (!s.done) return Status::Internal("HeaderParser::result() before done()");
  if (!s.error.empty()) return Status::InvalidArgument(s.error);
  DcmDataset& ds = const_cast<DcmDataset&>(s.dataset);
  auto get = [&](const DcmTagKey& tag) {
    OFString v;
    if (ds.findAndGetOFString(tag, v).bad()) return std::string();
    return std::string(v.c_str(), v.length());
  };
  HeaderInfo info;
  info.sop_class_uid = get(DCM_SOPClassUID);
  info.sop_instance_uid = get(DCM_SOPInstanceUID);
  info.study_instance_uid = get(DCM_StudyInstanceUID);
  info.series_instance_uid = get(DCM_SeriesInstanceUID);
  // Patient ID is LO: kept decoded to UTF-8 by the data set's Specific
  // Character Set (all its values), as operators search and read it.
  OFString charset;
  if (ds.findAndGetOFStringArray(DCM_SpecificCharacterSet, charset).bad()) charset.clear();
  info.patient_id = rules::DecodeDicomText(get(DCM_PatientID), std::string_view(charset.c_str(), charset.length()),
                                           rules::TextKind::kValue);
  info.modality = get(DCM_Modality);
  const std::string_view cs(charset.c_str(), charset.length());
  info.patient_name = rules::DecodeDicomText(get(DCM_PatientName), cs, rules::TextKind::kPersonName);
  info.accession_number = rules::DecodeDicomText(get(DCM_AccessionNumber), cs, rules::TextKind::kValue);
  info.study_date = get(DCM_StudyDate);
  // PS3.5 A.1, A.2: native little endian pixel data (never encapsulated in
  // these transfer syntaxes); the guard stopped just after the Pixel Data
  // element's header, i.e. at its value's first byte. (DCMTK's readUntilTag
  // does not keep the Pixel Data element, so its length is not checked: the
  // shuffle is exact whatever the bytes.)
  Uint16 bits = 0;
  if (!s.deflated && (s.xfer == EXS_LittleEndianImplicit || s.xfer == EXS_LittleEndianExplicit) && s.guard->stopped() &&
      ds.findAndGetUint16(DCM_BitsAllocated, bits).good() && (bits == 16 || bits == 32 || bits == 64)) {
    info.pixel_offset = s.guard->stop_offset();
    info.sample_bytes = bits / 8;
  }
  if (info.sop_class_uid.empty()) return Status::InvalidArgument("data set has no SOP Class UID (0008,0016)");
  if (info.sop_instance_uid.empty()) {
    return Status::InvalidArgument("data set has no SOP Instance UID (0008,0018)");
  }
  return info;
}

}  // namespace relais::dicom
