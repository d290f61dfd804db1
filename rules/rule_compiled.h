// The compiled form of routing rules (internal to rules/). rule_parser.cc
// builds it from TOML, rule_eval.cc evaluates it (its leaves: rule_match.cc).
// Everything a rule needs at evaluation time is resolved here once: tag
// paths, RE2 programs, CIDRs, day masks, destination pointers - so that
// evaluation only compares.
#ifndef RELAIS_RULES_RULE_COMPILED_H_
#define RELAIS_RULES_RULE_COMPILED_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <re2/re2.h>

#include "rules/routing.h"

namespace relais::rules::internal {

// Limits against hostile rule files.
constexpr size_t kMaxRuleFileBytes = 4 << 20;  // per file
constexpr size_t kMaxRules = 10000;            // over all files
constexpr int kMaxNesting = 32;                // all/any/not depth
constexpr int64_t kMaxRegexMemory = 1 << 20;   // RE2::Options::max_mem per pattern

// An IPv4 or IPv6 network. IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d)
// so that one comparison handles both.
struct Cidr {
  uint8_t addr[16] = {};
  int prefix = 128;  // in bits of the 128-bit form
};
// Parses "10.0.0.0/8", "10.1.2.3", "fe80::/10". False when malformed.
bool ParseCidr(std::string_view text, Cidr* out);
// Parses an address (no prefix) into 16 bytes; false when malformed.
bool ParseIp(const char* text, uint8_t out[16]);
bool CidrContains(const Cidr& net, const uint8_t addr[16]);

// RE2::Options::max_mem of a compiled wildcard. Its DFA needs more than a
// regex budget: "*a*a*...*b" has one state per '*', each listing the
// loops before it (a 1,000-character pattern needs about 3 MiB; with less,
// RE2 falls back to its O(value x pattern) NFA).
constexpr int64_t kMaxWildcardMemory = 8 << 20;
// Most '*' in one wildcard: 1,000 fit kMaxWildcardMemory (measured); at
// 2,000 the DFA runs out and matching would be O(value x pattern) again.
constexpr size_t kMaxWildcardStars = 1000;

// A DICOM wildcard (PS3.4 C.2.2.2.4: '*' any sequence, '?' one character)
// compiled once by CompileWildcard (rule_compile.h) into RE2 programs that
// must match the whole value: linear in the value, no allocation once RE2's
// DFA cache is warm. Values are UTF-8, where '?' is one character; a value
// that is not valid UTF-8 is matched byte by byte instead (Latin-1), so that
// '*' still matches anything.
struct Wildcard {
  std::shared_ptr<const RE2> utf8;
  std::shared_ptr<const RE2> latin1;
};
// REQUIRES: `w` was filled by CompileWildcard.
bool WildcardMatch(const Wildcard& w, std::string_view value);

// Leading/trailing spaces (and NULs, the UI padding) are not significant
// (PS3.5 6.2).
std::string_view TrimDicom(std::string_view v);

struct Condition {
  enum class Kind { kAll, kAny, kNot, kTag, kAssoc, kTime };
  enum class Op { kEquals, kRegex, kWildcard, kPresent, kRange, kDateRange, kCidr };
  enum class Field { kCallingAe, kCalledAe, kPeer, kListener };

  Kind kind = Kind::kAll;
  std::string text;               // how it reads, for explanations: "Modality = any of [CT, MR]"
  uint32_t line = 0, column = 0;  // position of its key, to order explanations
  // Leaves (kTag, kAssoc, kTime): identical leaves share one id, so an
  // evaluation computes each distinct leaf at most once.
  size_t memo = 0;

  std::vector<Condition> children;  // kAll, kAny, kNot (kNot: all of children, negated)

  // kTag: path[0] in the data set, path[1] inside any item of path[0], ...
  std::vector<uint32_t> path;
  size_t slot = 0;                  // index of path[0] in RuleSetImpl::slot_tags_ (top-level lookups)
  Field field = Field::kCallingAe;  // kAssoc
  Op op = Op::kEquals;
  std::vector<std::string> values;   // kEquals: any of (trimmed)
  std::vector<double> numbers;       // kEquals: numeric forms (binary VRs)
  std::shared_ptr<const RE2> regex;  // kRegex (PartialMatch)
  std::string pattern;               // kWildcard: as written
  Wildcard wildcard;                 // kWildcard: compiled
  bool present = true;               // kPresent
  bool has_min = false, has_max = false;
  double min = 0, max = 0;  // kRange, inclusive
  std::string from, to;     // kDateRange, "YYYYMMDD" inclusive, empty = open
  std::vector<Cidr> cidrs;  // kCidr

  // kTime
  uint8_t days = 0x7F;  // bit 0 = Sunday (struct tm tm_wday)
  bool has_hours = false;
  int start_minute = 0, end_minute = 0;  // [start, end); start > end wraps past midnight
};

struct ForwardTarget {
  const Destination* destination = nullptr;
  std::vector<TagEdit> edits;
};

struct CompiledRule {
  std::string name;
  std::string where;  // "FILE:LINE:COLUMN"
  Condition match;    // kAll of the [rule.match] conditions
  std::vector<ForwardTarget> forward;
  int priority = 0;
  bool stop = false;
  bool drop = false;
  bool catch_all = false;  // no conditions
};

// The flat form Evaluate runs when no explanation is asked for (BuildCode).
// Each rule's condition tree is laid out in preorder, 8 bytes a node, so the
// 100 rules of a typical set fit in a few cache lines instead of walking
// ~300-byte Condition structs. The children of all/any/not are ordered
// cheapest first: leaves are pure and memoized, so the order changes what is
// computed, never the result.
struct CodeNode {
  enum class Op : uint8_t { kAll, kAny, kNot, kLeaf };
  Op op = Op::kLeaf;
  uint32_t arg = 0;  // kLeaf: leaf id (Condition::memo); others: index one past its subtree
};

// Where a rule's code is. Most rules are a plain conjunction of leaves
// (`conjunction`): code_[begin, end) are then all kLeaf, every one must hold
// (empty: a catch-all). Otherwise code_[begin] is the root of its tree.
struct RuleHead {
  uint32_t begin = 0;
  uint32_t end = 0;
  bool conjunction = true;
};

class RuleSetImpl final : public RuleSet {
 public:
  void Evaluate(DcmItem* header, const AssociationFacts& facts, std::time_t now, Decision* out,
                Explanation* explain) const override;
  const std::vector<Destination>& destinations() const override { return destinations_; }
  const Destination* FindDestination(const std::string& name) const override;
  Unmatched unmatched_policy() const override { return unmatched_; }
  const std::vector<const Destination*>& unmatched_destinations() const override { return unmatched_destinations_; }
  size_t rule_count() const override { return rules_.size(); }
  const std::vector<std::string>& source_files() const override { return source_files_; }

  // Filled by the parser; never changed after Load returns. destinations_
  // is complete before any pointer into it is taken.
  std::vector<Destination> destinations_;
  std::vector<CompiledRule> rules_;
  Unmatched unmatched_ = Unmatched::kKeep;
  std::vector<const Destination*> unmatched_destinations_;
  std::vector<std::string> source_files_;
  bool uses_time_ = false;
  // Distinct first tags of every tag condition's path, sorted: Evaluate
  // finds them all in one pass over the header.
  std::vector<uint32_t> slot_tags_;
  size_t memo_count_ = 0;  // distinct leaves

  // Fills code_, heads_ and leaves_ from rules_ (after slots and memo
  // ids are assigned). REQUIRES: rules_ is not changed afterwards (leaves_
  // points into it).
  void BuildCode();
  std::vector<CodeNode> code_;
  std::vector<RuleHead> heads_;           // per rule
  std::vector<const Condition*> leaves_;  // per leaf id: one of the equal leaves
};

}  // namespace relais::rules::internal

#endif  // RELAIS_RULES_RULE_COMPILED_H_
