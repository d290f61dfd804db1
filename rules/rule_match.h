// Condition matching of the rules engine (internal to rules/): computes the
// leaves of a compiled rule (kTag, kAssoc, kTime; rule_compiled.h) against
// one header and the association's facts. rule_eval.cc runs the rules over
// these leaves (memo, flat program, explanations); rule_match.cc holds the
// matching itself. All of it runs on the calling thread; nothing here locks.
#ifndef RELAIS_RULES_RULE_MATCH_H_
#define RELAIS_RULES_RULE_MATCH_H_

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>

#include "rules/rule_compiled.h"

namespace relais::rules::internal {

// One top-level tag the rules use (RuleSetImpl::slot_tags_), found once per
// evaluation; its string value is fetched, decoded and trimmed at most once.
// Kept in per-thread scratch space, reused by every evaluation on the thread.
struct Slot {
  DcmElement* element;
  const char* str;  // cached getString result (nullptr = not fetched or not a string)
  uint32_t len;
  uint8_t fetched;          // 0 = not yet, 1 = string, 2 = not a string VR
  bool multi;               // fetched == 1: holds a value separator (PS3.5 6.4), not a text VR
  std::string_view single;  // fetched == 1 and !multi: the one value, trimmed
};

// Per-evaluation state. The pointers are owned by the evaluating thread's
// scratch space (rule_eval.cc) and by the caller of Evaluate; they live for
// one evaluation.
struct Context {
  DcmItem* header;
  const AssociationFacts* facts;
  Slot* slots;
  int8_t* memo;
  const Condition* const* leaves;  // RuleSetImpl::leaves_
  std::time_t now;
  int time_state;  // 0 = not converted, 1 = local is valid, 2 = failed
  struct tm local;
  int peer_state;  // 0 = not parsed, 1 = ok, 2 = unparsable
  uint8_t peer[16];
  std::string* decoded;      // t_decoded, one per slot
  int charset_state;         // 0 = not looked up, 1 = looked up
  std::string_view charset;  // the header's Specific Character Set (0008,0005), as stored
};

// Computes a leaf (kTag, kAssoc, kTime) and records it in ctx->memo.
// REQUIRES: c.kind is kTag, kAssoc or kTime.
bool ComputeLeaf(const Condition& c, Context* ctx);

// The tree walk, used for explanations: the result of `c` (any kind), leaves
// taken from the memo when computed. Same result as the flat program.
bool Match(const Condition& c, Context* ctx);

// What the condition saw, for explanations: " (value 'CT')", " (absent)",
// " (peer '10.0.0.1')", or "" (allocates; explain only).
std::string Observed(const Condition& c, Context* ctx);

}  // namespace relais::rules::internal

#endif  // RELAIS_RULES_RULE_MATCH_H_
