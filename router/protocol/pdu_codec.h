// Internal to router/protocol/: the byte-level pieces that the PDU codec's
// files share (pdu.cc: the PDU header, P-DATA-TF, the fixed-size PDUs;
// pdu_associate.cc: A-ASSOCIATE-RQ/AC and their items). Not for the rest of
// the tree: pdu.h is the codec's interface.
#ifndef RELAIS_ROUTER_PROTOCOL_PDU_CODEC_H_
#define RELAIS_ROUTER_PROTOCOL_PDU_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "router/protocol/pdu.h"

namespace relais::ul::internal {

inline constexpr size_t kPduHeaderSize = 6;
// PS3.8 Table 9-11: protocol version (2), reserved (2), called AE (16),
// calling AE (16), reserved (32).
inline constexpr size_t kAssociateFixedSize = 68;
// PS3.8 Tables 9-21, 9-24, 9-25, 9-26: four bytes after the header.
inline constexpr size_t kShortPduBodySize = 4;
inline constexpr size_t kAeTitleSize = 16;

// ---------------------------------------------------------------- reading

inline uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t LoadU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

inline std::string HexByte(uint8_t b) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string s = "0x";
  s += kDigits[b >> 4];
  s += kDigits[b & 0xF];
  return s;
}

// Failure of a nested parse: message plus the abort reason to use.
struct ParseError {
  std::string message;
  AbortReason reason = AbortReason::kInvalidPduParameterValue;
};

inline bool Fail(ParseError* err, std::string message, AbortReason reason = AbortReason::kInvalidPduParameterValue) {
  err->message = std::move(message);
  err->reason = reason;
  return false;
}

// PS3.8 9.3.2 / 9.3.3: the body of an A-ASSOCIATE-RQ or -AC (after the PDU
// header; REQUIRES: at least kAssociateFixedSize bytes, checked on the
// header). False with `err` set when it is invalid (pdu_associate.cc).
bool ParseAssociateRq(std::span<const uint8_t> body, AssociateRq* rq, ParseError* err);
bool ParseAssociateAc(std::span<const uint8_t> body, AssociateAc* ac, ParseError* err);

// ---------------------------------------------------------------- writing

inline constexpr size_t kMaxU16 = 0xFFFF;
inline constexpr size_t kMaxU32 = 0xFFFFFFFF;

// Appends one PDU to `bytes`. A value that does not fit its length field is
// refused, never wrapped: the first such field is remembered in `error`, and
// Finish() then removes everything this Writer appended and returns it.
class Writer {
 public:
  Writer(const char* pdu_name, std::vector<uint8_t>* out) : name_(pdu_name), out_(out), start_(out->size()) {}

  void U8(uint8_t v) { out_->push_back(v); }
  void U16(uint16_t v) {
    out_->push_back(static_cast<uint8_t>(v >> 8));
    out_->push_back(static_cast<uint8_t>(v));
  }
  void U32(uint32_t v) {
    out_->push_back(static_cast<uint8_t>(v >> 24));
    out_->push_back(static_cast<uint8_t>(v >> 16));
    out_->push_back(static_cast<uint8_t>(v >> 8));
    out_->push_back(static_cast<uint8_t>(v));
  }
  void Bytes(std::string_view s) { out_->insert(out_->end(), s.begin(), s.end()); }
  void Zeros(size_t n) { out_->insert(out_->end(), n, 0); }
  size_t size() const { return out_->size(); }

  // A 2-byte length and the bytes (PS3.7 D.3.3.4-D.3.3.7 fields).
  void LengthPrefixed(std::string_view s, const char* what) {
    if (!Fits(s.size(), kMaxU16, what)) return;
    U16(static_cast<uint16_t>(s.size()));
    Bytes(s);
  }
  // A 2-byte length patched by EndU16Length over what follows it.
  size_t BeginU16Length() {
    size_t at = size();
    U16(0);
    return at;
  }
  void EndU16Length(size_t at, const char* what) {
    const size_t n = size() - at - 2;
    if (Fits(n, kMaxU16, what)) PatchU16(at, static_cast<uint16_t>(n));
  }

  // Item header (PS3.8 9.3.2): type, reserved (second byte, 0 unless given),
  // 2-byte length patched by EndItem.
  size_t BeginItem(uint8_t type, uint8_t second = 0) {
    size_t at = size();
    U8(type);
    U8(second);
    U16(0);
    return at;
  }
  void EndItem(size_t at, const char* what) {
    const size_t n = size() - at - 4;
    if (Fits(n, kMaxU16, what)) PatchU16(at + 2, static_cast<uint16_t>(n));
  }
  void StringItem(uint8_t type, std::string_view s, const char* what) {
    size_t at = BeginItem(type);
    Bytes(s);
    EndItem(at, what);
  }

  // PDU header (PS3.8 9.3.1): type, reserved, 4-byte length patched by EndPdu.
  size_t BeginPdu(PduType type) {
    size_t at = size();
    U8(static_cast<uint8_t>(type));
    U8(0);
    U32(0);
    return at;
  }
  void EndPdu(size_t at) {
    const size_t n = size() - at - kPduHeaderSize;
    if (Fits(n, kMaxU32, "PDU")) PatchU32(at + 2, static_cast<uint32_t>(n));
  }

  // OK, or the first field that did not fit (and `out` as it was before).
  Status Finish() {
    if (error_.empty()) return Status::OK();
    out_->resize(start_);
    return Status::InvalidArgument(std::string(name_) + ": " + error_);
  }

 private:
  bool Fits(size_t n, size_t max, const char* what) {
    if (n <= max) return true;
    if (error_.empty()) {
      error_ = std::string(what) + " is " + std::to_string(n) + " bytes long; its length field holds at most " +
               std::to_string(max);
    }
    return false;
  }
  void PatchU16(size_t at, uint16_t v) {
    (*out_)[at] = static_cast<uint8_t>(v >> 8);
    (*out_)[at + 1] = static_cast<uint8_t>(v);
  }
  void PatchU32(size_t at, uint32_t v) {
    (*out_)[at] = static_cast<uint8_t>(v >> 24);
    (*out_)[at + 1] = static_cast<uint8_t>(v >> 16);
    (*out_)[at + 2] = static_cast<uint8_t>(v >> 8);
    (*out_)[at + 3] = static_cast<uint8_t>(v);
  }

  const char* name_;
  std::vector<uint8_t>* out_;
  size_t start_;
  std::string error_;
};

}  // namespace relais::ul::internal

#endif  // RELAIS_ROUTER_PROTOCOL_PDU_CODEC_H_
