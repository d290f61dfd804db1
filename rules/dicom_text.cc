#include "rules/dicom_text.h"

#include <iconv.h>

#include <memory>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcspchrs.h>

#include "base/text.h"
#include "rules/rule_compiled.h"

namespace relais::rules {
namespace {

// PS3.5 6.1.2.5.3: the delimiters after which ISO 2022 code extensions
// return to the default (CR, LF, FF and HT are added by DCMTK itself).
const OFString& Delimiters(TextKind kind) {
  static const OFString kValue("\\"), kPersonName("\\^="), kText("");
  switch (kind) {
    case TextKind::kValue: return kValue;
    case TextKind::kPersonName: return kPersonName;
    case TextKind::kText: return kText;
  }
  return kText;
}

// One DCMTK converter per character set seen on this thread (a handful in
// practice; the cache is bounded against a peer that sends many).
struct Converter {
  std::string charset;
  std::unique_ptr<DcmSpecificCharacterSet> dcmtk;  // null: DCMTK cannot convert from it
};
constexpr size_t kMaxConverters = 16;
thread_local std::vector<Converter> t_converters;

DcmSpecificCharacterSet* ConverterFor(std::string_view charset) {
  for (Converter& c : t_converters) {
    if (c.charset == charset) return c.dcmtk.get();
  }
  if (t_converters.size() >= kMaxConverters) t_converters.clear();
  Converter c;
  c.charset = std::string(charset);
  c.dcmtk = std::make_unique<DcmSpecificCharacterSet>();
  if (c.dcmtk->selectCharacterSet(OFString(c.charset.c_str()), "ISO_IR 192").bad()) c.dcmtk.reset();
  t_converters.push_back(std::move(c));
  return t_converters.back().dcmtk.get();
}

// The ISO 2022 Japanese sets DCMTK's iconv mapping lacks: IR 87 (JIS X 0208)
// and IR 159 (JIS X 0212), with or without IR 6. Their escape sequences
// (ESC $ B, ESC $ ( D, ESC ( B, ESC ( J) are those of ISO-2022-JP-2.
bool IsJapaneseIso2022(std::string_view charset) {
  bool japanese = false;
  while (true) {
    size_t bs = charset.find('\\');
    std::string_view term = internal::TrimDicom(charset.substr(0, bs));
    if (term == "ISO 2022 IR 87" || term == "ISO 2022 IR 159") {
      japanese = true;
    } else if (!term.empty() && term != "ISO 2022 IR 6") {
      return false;
    }
    if (bs == std::string_view::npos) return japanese;
    charset.remove_prefix(bs + 1);
  }
}

bool DecodeIso2022Jp(std::string_view value, std::string* out) {
  iconv_t cd = iconv_open("UTF-8", "ISO-2022-JP-2");
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  std::string result(value.size() * 3 + 16, '\0');
  char* in = const_cast<char*>(value.data());
  size_t in_left = value.size();
  char* o = result.data();
  size_t o_left = result.size();
  bool ok = iconv(cd, &in, &in_left, &o, &o_left) != static_cast<size_t>(-1) && in_left == 0 &&
            iconv(cd, nullptr, nullptr, &o, &o_left) != static_cast<size_t>(-1);
  iconv_close(cd);
  if (!ok) return false;
  result.resize(result.size() - o_left);
  if (!IsUtf8(result)) return false;
  *out = std::move(result);
  return true;
}

}  // namespace

bool NeedsDecoding(std::string_view value) {
  for (char ch : value) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 0x80 || c == 0x1B) return true;
  }
  return false;
}

void DecodeDicomTextInto(std::string_view value, std::string_view charset, TextKind kind, std::string* out) {
  out->clear();
  if (!NeedsDecoding(value)) {
    out->assign(value);
    return;
  }
  charset = internal::TrimDicom(charset);
  // The default repertoire and UTF-8 need no conversion; bytes that are not
  // UTF-8 there (an undeclared Latin-1 name) are shown, not guessed.
  if (charset.empty() || charset == "ISO_IR 6" || charset == "ISO_IR 192") {
    if (IsUtf8(value)) {
      out->assign(value);
      return;
    }
  } else if (charset == "ISO_IR 100") {
    // Latin-1, the daily case: bytes are code points (ISO 8859-1, as iconv
    // maps it for DCMTK; the unit test checks all 256 against DCMTK), so
    // it is decoded here, with no conversion object and no allocation once
    // `out` has grown.
    out->reserve(value.size() * 2);
    for (char ch : value) {
      unsigned char c = static_cast<unsigned char>(ch);
      if (c < 0x80) {
        out->push_back(ch);
      } else {
        out->push_back(static_cast<char>(0xC0 | (c >> 6)));
        out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
    }
    return;
  } else {
    // The Japanese sets first: DCMTK would log an error for each (unsupported).
    if (IsJapaneseIso2022(charset)) {
      if (DecodeIso2022Jp(value, out)) return;
    } else if (DcmSpecificCharacterSet* cs = ConverterFor(charset)) {
      OFString converted;
      if (cs->convertString(value.data(), value.size(), converted, Delimiters(kind)).good() &&
          IsUtf8(std::string_view(converted.c_str(), converted.length()))) {
        out->assign(converted.c_str(), converted.length());
        return;
      }
    }
  }
  *out = Utf8Visible(value);
}

std::string DecodeDicomText(std::string_view value, std::string_view charset, TextKind kind) {
  std::string out;
  DecodeDicomTextInto(value, charset, kind, &out);
  return out;
}

}  // namespace relais::rules
