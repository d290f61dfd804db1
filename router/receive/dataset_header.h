// Incremental extraction of a C-STORE data set's header, for the ingest path.
//
// A C-STORE-RQ data set arrives as P-DATA-TF fragments (PDVs, PS3.8 9.3.5)
// in the transfer syntax of its presentation context, with no File Meta
// Information (PS3.7 9.3.1.1). HeaderParser follows those bytes, in order,
// with a structure guard, collects them up to Pixel Data (7FE0,0010), and
// then has DCMTK's DcmDataset::readUntilTag read that header at once from a
// DcmInputBufferStream: the header - everything before Pixel Data - is kept
// as a DcmDataset for the rules, pixel bytes are never copied or held. (DCMTK
// fed fragment by fragment, as dimse.cc does, loses its place on some
// malformed data sets; see dataset_header.cc.)
//
// Hostile input: the parser never crashes or hangs, refuses a header larger
// than max_header_bytes, and refuses an element whose declared value length
// could not fit in that limit before DCMTK would allocate it (DCMTK 3.6.7
// allocates an element's declared length as soon as it reads the length
// field when reading from a buffer stream).
//
// The structure guard (router/dicom/dataset_structure.h) is shared with
// send preparation, which checks whole data sets with it.
//
// Threads: one HeaderParser is used by one thread at a time (typically a libuv
// pool thread, per DESIGN.md). DCMTK's dictionary must be loaded (it is
// loaded on first use by DCMTK; the parser reports an error if it is not).
#ifndef RELAIS_ROUTER_RECEIVE_DATASET_HEADER_H_
#define RELAIS_ROUTER_RECEIVE_DATASET_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

class DcmDataset;

namespace relais::dicom {

// The values the router needs from every stored object (PS3.3 C.12.1, C.7.*).
struct HeaderInfo {
  std::string sop_class_uid;        // (0008,0016), required
  std::string sop_instance_uid;     // (0008,0018), required
  std::string study_instance_uid;   // (0020,000D), empty when absent
  std::string series_instance_uid;  // (0020,000E), empty when absent
  std::string patient_id;           // (0010,0020), empty when absent
  std::string modality;             // (0008,0060), empty when absent
  // For the study's delivery history (store FORMAT.md `history`):
  std::string patient_name;      // (0010,0010) decoded to UTF-8, PN with ^
  std::string accession_number;  // (0008,0050), decoded to UTF-8
  std::string study_date;        // (0008,0020), YYYYMMDD as received
  // Where native pixel samples start, for the store's byte shuffle
  // (store::ObjectWriter::SetPixelLayout): the offset in the data set bytes
  // as received of the Pixel Data (7FE0,0010) value, and Bits Allocated
  // (0028,0100) / 8. Both 0 unless the transfer syntax is native little
  // endian (implicit or explicit VR; not deflated, not encapsulated, not
  // big endian), Pixel Data was reached and Bits Allocated is 16, 32 or 64.
  uint64_t pixel_offset = 0;
  uint32_t sample_bytes = 0;
};

class HeaderParser {
 public:
  // Default limit for the header (everything before Pixel Data).
  static constexpr size_t kDefaultMaxHeaderBytes = size_t{64} << 20;

  // `transfer_syntax_uid`: of the presentation context the data set arrives
  // on (e.g. "1.2.840.10008.1.2.1"); an unknown UID makes the parser done at
  // once, with an error. `max_header_bytes`: headers larger than this are
  // refused (bounds memory whatever the peer sends).
  explicit HeaderParser(const std::string& transfer_syntax_uid, size_t max_header_bytes = kDefaultMaxHeaderBytes);
  ~HeaderParser();

  HeaderParser(const HeaderParser&) = delete;
  HeaderParser& operator=(const HeaderParser&) = delete;

  // Feeds the next bytes of the data set, in order. `last`: these are the
  // final bytes of the data set (the PDV with the "last fragment" bit).
  // `data` need only stay valid during the call. Once done(), further calls
  // are cheap no-ops (bytes after Pixel Data are ignored).
  void Feed(std::span<const uint8_t> data, bool last);

  // True once Pixel Data was reached, the data set ended, or an error
  // occurred.
  bool done() const;

  // REQUIRES: done(). The extracted values, or InvalidArgument saying why the
  // data set was refused ("data set cannot be parsed: ...", "data set has no
  // SOP Instance UID (0008,0018)", "header larger than N bytes", ...).
  Result<HeaderInfo> result() const;

  // The parsed header (every element before Pixel Data), owned by the parser
  // and valid until it is destroyed. Only meaningful when result().ok().
  DcmDataset* dataset();

  // Bytes handed to Feed so far.
  uint64_t bytes_fed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace relais::dicom

#endif  // RELAIS_ROUTER_RECEIVE_DATASET_HEADER_H_
