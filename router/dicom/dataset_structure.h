// Room router/dicom/ (DESIGN.md, "The rooms of router/"): checks of DICOM
// data sets shared by both sides of the router, below receive/ and deliver/:
// the header parser of the ingest path (receive/dataset_header.h) and send
// preparation (deliver/send_prep.h) both guard DCMTK with it.
// May include: base/; DCMTK in .cc files only. Not the other rooms.
//
// The element structure of a data set, checked before DCMTK reads it (PS3.5
// 7.1 data elements, 7.5 nesting, A.4 encapsulation): only tags, VRs and
// lengths are looked at, values are skipped, never copied. Two reasons,
// both seen as remote crashes or allocations in DICOM stacks:
// - DCMTK 3.6.7, reading from a DcmInputBufferStream that is not at its end,
//   allocates an element's declared value length as soon as it has read the
//   length field (a 0xFFFFFFF0 length costs a 4 GiB allocation; its "larger
//   than the remaining bytes" check only fires at the end of the stream).
//   The guard refuses a declared length that cannot fit in the budget.
// - DCMTK reads sequences recursively; a data set of 100000 nested sequences
//   (2 MB) exhausts the stack. More than 64 nested sequences are refused.
//
// Threads: one guard is used by one thread at a time; CheckDataSetStructure
// from any thread. DCMTK's dictionary must be loaded (implicit VR sequences
// are known from it).
#ifndef RELAIS_ROUTER_DICOM_DATASET_STRUCTURE_H_
#define RELAIS_ROUTER_DICOM_DATASET_STRUCTURE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

namespace relais::dicom {

// Follows the structure of a data set fed in order, in pieces.
class DataSetStructureGuard {
 public:
  // `budget`: the most bytes the data set (or its header) may hold; no
  // declared length may reach past it. `stop_at_pixel_data`: stop where
  // DCMTK's readUntilTag(Pixel Data) stops (the header parser); false scans
  // the whole data set (CheckDataSetStructure).
  DataSetStructureGuard(bool implicit_vr, bool big_endian, uint64_t budget, bool stop_at_pixel_data = true);
  ~DataSetStructureGuard();
  DataSetStructureGuard(const DataSetStructureGuard&) = delete;
  DataSetStructureGuard& operator=(const DataSetStructureGuard&) = delete;

  // Scans the next bytes. Returns an empty string, or why the data set is
  // refused. Once Pixel Data (or any later top-level tag) is reached, the
  // rest is ignored, as DCMTK stops there too: see stopped().
  std::string Scan(const uint8_t* p, size_t n);

  // True once the header of Pixel Data (or of a later top-level element)
  // was scanned; stop_offset() is then the byte just after that header.
  bool stopped() const;
  uint64_t stop_offset() const;

  // At the end of the data set: "" or why it is truncated (the end falls
  // inside an element's header or value).
  std::string AtEnd() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Checks the element structure of a whole data set (not only its header)
// before DCMTK reads it: every declared length fits in the bytes given, and
// sequences nest at most 64 deep (DCMTK recurses per level). OK, or
// InvalidArgument saying what and where. Deflated data sets are not checked
// (OK): their structure is checked after inflation by the reader's limits.
Status CheckDataSetStructure(std::span<const uint8_t> dataset, const std::string& transfer_syntax_uid);

}  // namespace relais::dicom

#endif  // RELAIS_ROUTER_DICOM_DATASET_STRUCTURE_H_
