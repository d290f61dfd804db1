// DICOM text to UTF-8, by the data set's Specific Character Set.
//
// Values of the VRs that Specific Character Set (0008,0005) governs (SH, LO,
// ST, LT, PN, UC, UT: PS3.5 6.1.2.3) arrive in the character set(s) the data
// set declares: ISO_IR 100 (Latin-1, the daily case in French-speaking
// hospitals) and the other single-byte sets, ISO_IR 192 (UTF-8), GB18030,
// GBK, and ISO 2022 code extensions (PS3.5 6.1.2.5). Relais matches rules on,
// and shows operators, the decoded text; the stored bytes stay as received.
//
// Decoding uses DCMTK's DcmSpecificCharacterSet (glibc iconv underneath). The
// Japanese ISO 2022 sets IR 87 and IR 159, which that build does not map, are
// decoded with glibc's ISO-2022-JP-2 converter. Whatever cannot be decoded (an
// unknown or unsupported character set, a byte the set does not define) falls
// back to base/text.h Utf8Visible: valid UTF-8 is kept, other bytes show as
// "\xHH". The result is always valid UTF-8.
//
// Threads: any; converters are cached per thread.
#ifndef RELAIS_RULES_DICOM_TEXT_H_
#define RELAIS_RULES_DICOM_TEXT_H_

#include <string>
#include <string_view>

namespace relais::rules {

// How a value's delimiters reset ISO 2022 code extensions (PS3.5 6.1.2.5.3).
enum class TextKind {
  kValue,       // SH, LO, UC: values separated by '\'
  kPersonName,  // PN: '\', '^' and '=' (component groups)
  kText,        // ST, LT, UT: CR, LF, FF and HT only
};

// True when `value` needs decoding under a non-default character set: it
// holds a byte >= 0x80 or ESC (0x1B). Pure ASCII decodes to itself.
bool NeedsDecoding(std::string_view value);

// `value` decoded from the Specific Character Set `charset` (the element's
// string as stored, e.g. "ISO_IR 100" or "\ISO 2022 IR 87"; empty = the
// default repertoire) to UTF-8. Never fails: see the fallback above.
std::string DecodeDicomText(std::string_view value, std::string_view charset, TextKind kind);

// Appends the decoding of `value` to `out` (cleared first); for callers that
// reuse a buffer.
void DecodeDicomTextInto(std::string_view value, std::string_view charset, TextKind kind, std::string* out);

}  // namespace relais::rules

#endif  // RELAIS_RULES_DICOM_TEXT_H_
