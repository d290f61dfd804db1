// Tag edits as people read them (issue 14): `relais object show` prints a
// route's edits, stored encoded by rules::EncodeEdits
// ("v1;set|00080080|InstitutionName|Hospital X|00000000"), as
//   set (0008,0080) InstitutionName = "Hospital X"
// joined by "; ".
#ifndef RELAIS_ROUTER_CLI_EDITS_TEXT_H_
#define RELAIS_ROUTER_CLI_EDITS_TEXT_H_

#include <string>

namespace relais::router {

// The readable form of `encoded` (rules::DecodeEdits); "" for no edits;
// `encoded` itself, escaped, when it does not decode. Values are escaped
// like log text (base/text.h LogEscape).
std::string EditsText(const std::string& encoded);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_EDITS_TEXT_H_
