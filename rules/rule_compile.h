// Compile-time helpers of the rules engine (internal to rules/): DICOM
// dictionary lookups, transfer syntax names, RE2 compilation (regexes and
// wildcards). Each returns
// nullopt on success or the error message (without position).
#ifndef RELAIS_RULES_RULE_COMPILE_H_
#define RELAIS_RULES_RULE_COMPILE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rule_compiled.h"

namespace relais::rules::internal {

struct ResolvedTag {
  uint32_t tag = 0;
  bool is_sequence = false;
  bool known_vr = false;  // found in the dictionary
};

// "Modality", "(0009,1010)", "0009,1010" or "00091010". Keywords go through
// the DCMTK dictionary; an unknown one gets a "did you mean".
std::optional<std::string> ResolveTag(std::string_view text, ResolvedTag* out);
// "ReferencedStudySequence.ReferencedSOPClassUID": every part but the last
// must be a sequence (when the dictionary knows it).
std::optional<std::string> ResolveTagPath(std::string_view text, std::vector<uint32_t>* path);
// A PS3.6 transfer syntax keyword ("JPEGLSLossless") or a UID DCMTK knows.
std::optional<std::string> ResolveTransferSyntax(std::string_view text, std::string* uid);
// RE2 with max_mem = kMaxRegexMemory; the error is RE2's own text.
std::optional<std::string> CompileRegex(const std::string& pattern, std::shared_ptr<const RE2>* out);
// What a compiled regex holds in memory, estimated: RE2 keeps about 8 bytes
// per instruction of its program plus about 1 KiB of its own (measured with
// RE2 of Debian 12: `\pL{50}`, 59,654 instructions, takes 484 KB).
uint64_t RegexMemory(const RE2& re);
// A DICOM wildcard ('*', '?'; everything else literal) to RE2 full-match
// programs with max_mem = kMaxWildcardMemory. More than kMaxWildcardStars
// '*' is an error: matching would no longer be linear.
std::optional<std::string> CompileWildcard(std::string_view pattern, Wildcard* out);
// "(0009,1010)".
std::string FormatTag(uint32_t tag);

}  // namespace relais::rules::internal

#endif  // RELAIS_RULES_RULE_COMPILE_H_
