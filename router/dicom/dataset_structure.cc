// DataSetStructureGuard and CheckDataSetStructure: see dataset_structure.h.
#include "router/dicom/dataset_structure.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctag.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcxfer.h>

namespace relais::dicom {
namespace {

constexpr uint32_t kUndefinedLength = 0xFFFFFFFF;
constexpr uint64_t kNoEnd = ~uint64_t{0};
// Deepest nesting of sequences accepted (DICOM SR trees stay far below).
constexpr uint32_t kMaxNesting = 64;

// LengthGuard follows the element structure of the bytes just before DCMTK
// reads them (PS3.5 7.1 data elements, 7.5 nesting, A.4 encapsulation) and
// only looks at tags, VRs and lengths. It exists because DCMTK 3.6.7, reading
// from a DcmInputBufferStream that is not at its end, allocates an element's
// declared value length as soon as it has read the length field (a 0xFFFFFFF0
// length costs a 4 GiB allocation; the "larger than remaining bytes" check
// only fires at end of stream). The guard refuses any declared length that
// cannot fit in what is left of the header budget, before DCMTK sees it.
// Values are skipped, never copied; it is not a second parser of values.
//
// It also bounds nesting: DCMTK reads sequences recursively, and a data set
// of 100000 nested sequences (2 MB) exhausts the stack (a remote crash seen
// in other DICOM stacks' CVE history). More than kMaxNesting nested
// sequences are refused before DCMTK recurses into them.
class LengthGuard {
 public:
  // `stop_at_pixel_data`: stop where readUntilTag(Pixel Data) stops; false
  // scans the whole data set (CheckDataSetStructure).
  LengthGuard(bool implicit_vr, bool big_endian, uint64_t budget, bool stop_at_pixel_data = true)
      : implicit_(implicit_vr), big_endian_(big_endian), budget_(budget), stop_at_pixel_data_(stop_at_pixel_data) {}

  // Scans the next bytes. Returns an empty string, or why the data set is
  // refused. Once Pixel Data (or any later top-level tag) is reached, the
  // rest is ignored, as DCMTK stops there too: see stopped().
  std::string Scan(const uint8_t* p, size_t n) {
    size_t i = 0;
    while (i < n && !stopped_) {
      if (skip_ > 0) {
        size_t k = static_cast<size_t>(std::min<uint64_t>(skip_, n - i));
        skip_ -= k, i += k, pos_ += k;
        continue;
      }
      while (hdr_len_ == 0 && !stack_.empty() && stack_.back().end == pos_) Pop();
      if (hdr_len_ == 0 && !stack_.empty() && stack_.back().end < pos_) {
        return "data set cannot be parsed: an element runs past the end of its item or sequence at byte " +
               std::to_string(pos_);
      }
      size_t need = HeaderSize();
      size_t k = std::min(need - hdr_len_, n - i);
      std::copy(p + i, p + i + k, hdr_ + hdr_len_);
      hdr_len_ += k, i += k, pos_ += k;
      if (hdr_len_ < need) continue;
      if (need != HeaderSize()) continue;  // learnt the VR: needs 12 bytes
      std::string err = OnHeader();
      hdr_len_ = 0;
      if (!err.empty()) return err;
    }
    return {};
  }

  // True once the header of Pixel Data (or of a later top-level element)
  // was scanned; stop_offset() is then the byte just after that header.
  bool stopped() const { return stopped_; }
  uint64_t stop_offset() const { return pos_; }

  // At the end of the data set: "" or why it is truncated (the end falls
  // inside an element's header or value).
  std::string AtEnd() const {
    if (stopped_) return {};
    if (skip_ > 0) {
      return "data set cannot be parsed: it ends inside element " + TagText(value_tag_) + " at byte " +
             std::to_string(value_start_) + ", whose value declares " + std::to_string(value_len_) +
             " bytes but only " + std::to_string(value_len_ - skip_) + " arrived (truncated)";
    }
    if (hdr_len_ > 0) {
      return "data set cannot be parsed: it ends inside an element header at byte " + std::to_string(pos_ - hdr_len_) +
             " (truncated)";
    }
    return {};
  }

 private:
  enum class Kind { kSequence, kItem, kEncapsulated };
  struct Container {
    Kind kind;
    uint64_t end;  // kNoEnd: undefined length, ends with a delimiter
    bool implicit;
  };

  bool Implicit() const { return stack_.empty() ? implicit_ : stack_.back().implicit; }
  uint16_t U16(size_t at) const {
    return big_endian_ ? static_cast<uint16_t>(hdr_[at] << 8 | hdr_[at + 1])
                       : static_cast<uint16_t>(hdr_[at + 1] << 8 | hdr_[at]);
  }
  uint32_t U32(size_t at) const {
    return big_endian_ ? (uint32_t{U16(at)} << 16 | U16(at + 2)) : (uint32_t{U16(at + 2)} << 16 | U16(at));
  }
  bool IsItemTag() const { return hdr_len_ >= 2 && U16(0) == 0xFFFE; }
  // PS3.5 7.1.2: explicit VR elements with these VRs have a 2-byte reserved
  // field and a 4-byte length (DCMTK's own table decides).
  bool LongVr() const {
    char vr[3] = {static_cast<char>(hdr_[4]), static_cast<char>(hdr_[5]), 0};
    return DcmVR(vr).usesExtendedLengthEncoding();
  }
  size_t HeaderSize() const {
    if (hdr_len_ < 6 || IsItemTag() || Implicit()) return 8;  // PS3.5 7.5: items are always tag + 4-byte length
    return LongVr() ? 12 : 8;
  }
  static std::string TagText(uint32_t tag) {
    char text[16];
    snprintf(text, sizeof(text), "(%04X,%04X)", tag >> 16, tag & 0xFFFF);
    return text;
  }
  std::string TooLong(uint32_t g, uint32_t e, uint64_t len) const {
    return "data set cannot be parsed: element " + TagText(g << 16 | e) + " at byte " +
           std::to_string(pos_ - hdr_len_) + " declares " + std::to_string(len) +
           " bytes, more than the header may hold (" + std::to_string(budget_) + " bytes)";
  }
  void SkipValue(uint32_t g, uint32_t e, uint64_t start, uint32_t len) {
    skip_ = len;
    value_tag_ = g << 16 | e;
    value_start_ = start;
    value_len_ = len;
  }
  bool Fits(uint32_t len) const { return len <= budget_ && pos_ <= budget_ - len; }
  // Opens a sequence or item; "" or why the nesting is refused.
  std::string Push(Container c, uint64_t start) {
    if (c.kind != Kind::kItem && ++sequences_open_ > kMaxNesting) {
      return "data set cannot be parsed: sequences nested deeper than " + std::to_string(kMaxNesting) +
             " levels at byte " + std::to_string(start);
    }
    stack_.push_back(c);
    return {};
  }
  void Pop() {
    if (stack_.back().kind != Kind::kItem) --sequences_open_;
    stack_.pop_back();
  }

  std::string OnHeader() {
    const uint16_t g = U16(0), e = U16(2);
    const uint64_t start = pos_ - hdr_len_;
    if (g == 0xFFFE) {
      const uint32_t len = U32(4);
      if (e == 0xE000) {  // Item
        if (stack_.empty() || stack_.back().kind == Kind::kItem) {
          return "data set cannot be parsed: item tag outside a sequence at byte " + std::to_string(start);
        }
        if (stack_.back().kind == Kind::kEncapsulated) {  // PS3.5 A.4: opaque fragment
          if (len == kUndefinedLength || !Fits(len)) return TooLong(g, e, len);
          SkipValue(g, e, start, len);
          return {};
        }
        if (len == kUndefinedLength) return Push({Kind::kItem, kNoEnd, Implicit()}, start);
        if (!Fits(len)) return TooLong(g, e, len);
        return Push({Kind::kItem, pos_ + len, Implicit()}, start);
      }
      if (e == 0xE00D || e == 0xE0DD) {  // Item / Sequence Delimitation Item
        Kind want = e == 0xE00D ? Kind::kItem : Kind::kSequence;
        if (!stack_.empty() && stack_.back().end == kNoEnd &&
            (stack_.back().kind == want || (want == Kind::kSequence && stack_.back().kind == Kind::kEncapsulated))) {
          Pop();
        }
        // Otherwise DCMTK tolerates or rejects a stray delimiter; nothing to allocate.
        return {};
      }
      return "data set cannot be parsed: unexpected tag (FFFE," + std::to_string(e) + ") at byte " +
             std::to_string(start);
    }
    if (!stack_.empty() && stack_.back().kind != Kind::kItem) {
      return "data set cannot be parsed: element inside a sequence but outside an item at byte " +
             std::to_string(start);
    }
    if (stop_at_pixel_data_ && stack_.empty() && (uint32_t{g} << 16 | e) >= 0x7FE00010u) {
      stopped_ = true;  // readUntilTag stops at Pixel Data (7FE0,0010) or any higher tag
      return {};
    }
    bool implicit = Implicit();
    bool sq = false, un = false;
    uint32_t len;
    if (implicit) {
      len = U32(4);
      // Implicit VR: DCMTK knows a sequence from its dictionary, and reads a
      // defined-length one recursively too.
      sq = DcmTag(DcmTagKey(g, e)).getEVR() == EVR_SQ;
    } else {
      sq = hdr_[4] == 'S' && hdr_[5] == 'Q';
      un = hdr_[4] == 'U' && hdr_[5] == 'N';
      len = hdr_len_ == 12 ? U32(8) : U16(6);
    }
    if (len == kUndefinedLength) {
      bool pixel_data = g == 0x7FE0 && e == 0x0010;
      if (sq || (implicit && !pixel_data) || (un && !pixel_data)) {
        // An undefined-length UN is read as an implicit VR sequence (CP-246).
        return Push({Kind::kSequence, kNoEnd, implicit || un}, start);
      }
      return Push({Kind::kEncapsulated, kNoEnd, implicit}, start);
    }
    if (!Fits(len)) return TooLong(g, e, len);
    if (sq) {
      return Push({Kind::kSequence, pos_ + len, implicit}, start);
    } else {
      SkipValue(g, e, start, len);  // a defined-length value; its contents need no guard
    }
    return {};
  }

  bool implicit_;
  bool big_endian_;
  uint64_t budget_;
  uint64_t pos_ = 0;          // bytes scanned
  uint64_t skip_ = 0;         // value bytes still to skip
  uint32_t value_tag_ = 0;    // the element being skipped,
  uint64_t value_start_ = 0;  // where it starts,
  uint32_t value_len_ = 0;    // and its declared length
  uint8_t hdr_[12];
  size_t hdr_len_ = 0;
  bool stopped_ = false;
  bool stop_at_pixel_data_;
  uint32_t sequences_open_ = 0;
  std::vector<Container> stack_;
};

}  // namespace

class DataSetStructureGuard::Impl : public LengthGuard {
 public:
  using LengthGuard::LengthGuard;
};

DataSetStructureGuard::DataSetStructureGuard(bool implicit_vr, bool big_endian, uint64_t budget,
                                             bool stop_at_pixel_data)
    : impl_(std::make_unique<Impl>(implicit_vr, big_endian, budget, stop_at_pixel_data)) {}

DataSetStructureGuard::~DataSetStructureGuard() = default;

std::string DataSetStructureGuard::Scan(const uint8_t* p, size_t n) { return impl_->Scan(p, n); }

bool DataSetStructureGuard::stopped() const { return impl_->stopped(); }

uint64_t DataSetStructureGuard::stop_offset() const { return impl_->stop_offset(); }

std::string DataSetStructureGuard::AtEnd() const { return impl_->AtEnd(); }

Status CheckDataSetStructure(std::span<const uint8_t> dataset, const std::string& transfer_syntax_uid) {
  DcmXfer x(transfer_syntax_uid.c_str());
  if (x.getXfer() == EXS_Unknown)
    return Status::InvalidArgument("unknown transfer syntax '" + transfer_syntax_uid + "'");
  if (x.getStreamCompression() == ESC_zlib) return Status::OK();  // see the header
  LengthGuard guard(!x.isExplicitVR(), x.isBigEndian(), dataset.size(), /*stop_at_pixel_data=*/false);
  std::string err = guard.Scan(dataset.data(), dataset.size());
  if (!err.empty()) return Status::InvalidArgument(err);
  return Status::OK();
}

}  // namespace relais::dicom
