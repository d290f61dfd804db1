// Tag edits (routing.h): the one-line text form kept in the store's queue
// rows, and their application to a data set with DCMTK.
//
// Text form, version 1:   "" for no edits, else
//   v1;OP|GGGGEEEE|TARGET|VALUE|FFFFEEEE;OP|...
// OP is set, remove, copy or prefix; the tags are 8 upper-case hex digits
// (FFFFEEEE is the copy source, 00000000 otherwise); TARGET and VALUE are
// percent-encoded: '%', '|', ';' and bytes below 0x20 or 0x7F become %XX,
// so the line never holds a newline or a separator.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dctag.h>

#include <cstdio>

#include "rules/dicom_text.h"
#include "rules/routing.h"
#include "rules/rule_compile.h"
#include "rules/rule_compiled.h"

namespace relais::rules {
namespace {

const char* OpName(TagEdit::Op op) {
  switch (op) {
    case TagEdit::Op::kSet: return "set";
    case TagEdit::Op::kRemove: return "remove";
    case TagEdit::Op::kCopy: return "copy";
    case TagEdit::Op::kPrefix: return "prefix";
  }
  return "?";
}

void Escape(const std::string& in, std::string* out) {
  static const char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : in) {
    if (c == '%' || c == '|' || c == ';' || c < 0x20 || c == 0x7F) {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xF]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool Unescape(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      int hi = i + 1 < in.size() ? Hex(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? Hex(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else {
      out->push_back(in[i]);
    }
  }
  return true;
}

bool ParseTag8(std::string_view s, uint32_t* tag) {
  if (s.size() != 8) return false;
  uint32_t v = 0;
  for (char c : s) {
    int d = Hex(c);
    if (d < 0) return false;
    v = v << 4 | static_cast<uint32_t>(d);
  }
  *tag = v;
  return true;
}

DcmTagKey Key(uint32_t tag) { return DcmTagKey(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xFFFF)); }

// Puts `value` into `tag` of `item`, replacing any existing element. The VR
// is the existing element's, else the dictionary's; unknown (private tags
// without a dictionary entry) or UN becomes LO (PS3.5 6.2).
Status PutString(DcmItem* item, uint32_t tag, const std::string& value) {
  DcmTag t(Key(tag));
  DcmElement* existing = nullptr;
  if (item->findAndGetElement(Key(tag), existing, OFFalse).good() && existing != nullptr) {
    t = existing->getTag();
  }
  DcmEVR vr = t.getEVR();
  if (vr == EVR_UN || vr == EVR_UNKNOWN || vr == EVR_UNKNOWN2B) t.setVR(DcmVR(EVR_LO));
  if (t.getEVR() == EVR_SQ) return Status::InvalidArgument("cannot set sequence " + internal::FormatTag(tag));
  OFCondition c = item->putAndInsertString(t, value.c_str(), OFTrue);
  if (c.bad()) {
    return Status::InvalidArgument("cannot set " + internal::FormatTag(tag) + " to '" + value + "': " + c.text());
  }
  return Status::OK();
}

}  // namespace

std::string EncodeEdits(const std::vector<TagEdit>& edits) {
  if (edits.empty()) return "";
  std::string out = "v1";
  char buf[16];
  for (const TagEdit& e : edits) {
    out += ';';
    out += OpName(e.op);
    std::snprintf(buf, sizeof(buf), "|%08X|", e.tag);
    out += buf;
    Escape(e.target, &out);
    out += '|';
    Escape(e.value, &out);
    std::snprintf(buf, sizeof(buf), "|%08X", e.from_tag);
    out += buf;
  }
  return out;
}

Result<std::vector<TagEdit>> DecodeEdits(const std::string& text) {
  std::vector<TagEdit> edits;
  if (text.empty()) return edits;
  std::string_view s = text;
  if (!s.starts_with("v1;")) return Status::Corruption("tag edits: unknown encoding (expected 'v1;...')");
  s.remove_prefix(3);
  while (true) {
    size_t semi = s.find(';');
    std::string_view entry = s.substr(0, semi);
    std::string_view fields[5];
    size_t n = 0, start = 0;
    while (n < 5) {
      size_t bar = entry.find('|', start);
      fields[n++] = entry.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start);
      if (bar == std::string_view::npos) break;
      start = bar + 1;
      if (n == 5) return Status::Corruption("tag edits: too many fields in '" + std::string(entry) + "'");
    }
    if (n != 5) return Status::Corruption("tag edits: expected 5 fields in '" + std::string(entry) + "'");
    TagEdit e;
    if (fields[0] == "set") e.op = TagEdit::Op::kSet;
    else if (fields[0] == "remove") e.op = TagEdit::Op::kRemove;
    else if (fields[0] == "copy") e.op = TagEdit::Op::kCopy;
    else if (fields[0] == "prefix") e.op = TagEdit::Op::kPrefix;
    else return Status::Corruption("tag edits: unknown operation '" + std::string(fields[0]) + "'");
    if (!ParseTag8(fields[1], &e.tag) || !ParseTag8(fields[4], &e.from_tag)) {
      return Status::Corruption("tag edits: bad tag in '" + std::string(entry) + "'");
    }
    if (!Unescape(fields[2], &e.target) || !Unescape(fields[3], &e.value)) {
      return Status::Corruption("tag edits: bad escape in '" + std::string(entry) + "'");
    }
    edits.push_back(std::move(e));
    if (semi == std::string_view::npos) break;
    s.remove_prefix(semi + 1);
  }
  return edits;
}

namespace {

// Edit values are UTF-8 (rule files are). Before one that is not plain
// ASCII goes into a data set in another character set, the data set is
// converted to UTF-8 (its Specific Character Set becomes ISO_IR 192), so that
// the destination never gets two encodings in one object.
Status PrepareForUtf8Values(const std::vector<TagEdit>& edits, DcmItem* dataset) {
  bool non_ascii = false;
  for (const TagEdit& e : edits) {
    if ((e.op == TagEdit::Op::kSet || e.op == TagEdit::Op::kPrefix) && NeedsDecoding(e.value)) non_ascii = true;
  }
  if (!non_ascii) return Status::OK();
  OFString charset;
  if (dataset->findAndGetOFStringArray(DCM_SpecificCharacterSet, charset, OFFalse).bad()) charset.clear();
  std::string_view cs = internal::TrimDicom(std::string_view(charset.c_str(), charset.length()));
  if (cs == "ISO_IR 192") return Status::OK();
  OFCondition c = dataset->convertToUTF8();
  if (c.bad()) {
    return Status::InvalidArgument("cannot write the UTF-8 text of an edit into this object: its character set '" +
                                   std::string(cs) + "' cannot be converted to UTF-8 (" + c.text() +
                                   "); use ASCII in the rule's edit for these objects");
  }
  if (cs.empty()) {  // the default repertoire had no (0008,0005) to update
    c = dataset->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
    if (c.bad()) return Status::Internal(std::string("cannot set Specific Character Set: ") + c.text());
  }
  return Status::OK();
}

}  // namespace

Status ApplyEdits(const std::vector<TagEdit>& edits, DcmItem* dataset) {
  if (dataset == nullptr) return Status::InvalidArgument("ApplyEdits: no data set");
  RELAIS_RETURN_IF_ERROR(PrepareForUtf8Values(edits, dataset));
  for (const TagEdit& e : edits) {
    switch (e.op) {
      case TagEdit::Op::kRemove: {
        OFCondition c = dataset->findAndDeleteElement(Key(e.tag), OFFalse, OFFalse);
        if (c.bad() && c != EC_TagNotFound) {
          return Status::Internal("cannot remove " + internal::FormatTag(e.tag) + ": " + c.text());
        }
        break;
      }
      case TagEdit::Op::kSet: RELAIS_RETURN_IF_ERROR(PutString(dataset, e.tag, e.value)); break;
      case TagEdit::Op::kCopy:
      case TagEdit::Op::kPrefix: {
        uint32_t source = e.op == TagEdit::Op::kCopy ? e.from_tag : e.tag;
        OFString v;
        // Absent source: nothing to copy or prefix (documented in README).
        if (dataset->findAndGetOFStringArray(Key(source), v, OFFalse).bad()) break;
        std::string value = e.op == TagEdit::Op::kPrefix ? e.value + v.c_str() : std::string(v.c_str());
        RELAIS_RETURN_IF_ERROR(PutString(dataset, e.tag, value));
        break;
      }
    }
  }
  return Status::OK();
}

}  // namespace relais::rules
