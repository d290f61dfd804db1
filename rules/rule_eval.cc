// Evaluation of a compiled RuleSet (rule_compiled.h) against one header.
//
// Hot path, no allocation once warm: the top-level tags the rules use are
// found in ONE merge pass over the header's elements (both sorted by tag)
// into a per-thread scratch array; string values are read through DCMTK's
// getString (a pointer into the element, no copy) the first time a
// condition asks, split/trimmed once, and cached for the other rules. Rules
// run as the flat program of BuildCode (rule_compiled.h CodeNode): each
// distinct leaf is computed at most once per evaluation (memo), cheap leaves
// before regexes, and a rule stops at its first false leaf. Explanations
// walk the Condition tree instead (same results: leaves are pure). The
// leaves themselves are computed by rule_match.cc (rule_match.h).
#include <algorithm>
#include <optional>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcitem.h>

#include "rules/rule_compiled.h"
#include "rules/rule_match.h"

namespace relais::rules::internal {

namespace {

// Per-thread scratch space, reused by every evaluation on the thread.
thread_local std::vector<Slot> t_slots;
thread_local std::vector<std::string> t_decoded;  // per slot: the decoded value, when it needed decoding
thread_local std::vector<int8_t> t_memo;          // per leaf: -1 not computed, 0 false, 1 true

inline bool LeafValue(uint32_t id, Context* ctx) {
  int8_t memo = ctx->memo[id];
  if (memo >= 0) return memo == 1;
  return ComputeLeaf(*ctx->leaves[id], ctx);
}

// Runs the subtree of code[i] (CodeNode); same result as Match on the
// Condition it was built from.
bool Run(const CodeNode* code, uint32_t i, Context* ctx) {
  const CodeNode n = code[i];
  if (n.op == CodeNode::Op::kLeaf) return LeafValue(n.arg, ctx);
  // kAll and kNot stop at the first false child, kAny at the first true one.
  const bool stop_on = n.op == CodeNode::Op::kAny;
  for (uint32_t j = i + 1; j < n.arg;) {
    const CodeNode child = code[j];
    bool m;
    if (child.op == CodeNode::Op::kLeaf) {
      m = LeafValue(child.arg, ctx);
      ++j;
    } else {
      m = Run(code, j, ctx);
      j = child.arg;
    }
    if (m == stop_on) return n.op != CodeNode::Op::kAll;  // all: false; any: true; not: true
  }
  return n.op == CodeNode::Op::kAll;  // all: true; any: false; not (nothing false): false
}

bool IsLeaf(const Condition& c) {
  return c.kind == Condition::Kind::kTag || c.kind == Condition::Kind::kAssoc || c.kind == Condition::Kind::kTime;
}

// A rough static cost, to test cheap leaves before regexes and sequence walks.
uint32_t Cost(const Condition& c) {
  auto op_cost = [](Condition::Op op) -> uint32_t {
    switch (op) {
      case Condition::Op::kPresent: return 1;
      case Condition::Op::kEquals: return 2;
      case Condition::Op::kRange:
      case Condition::Op::kDateRange: return 3;
      case Condition::Op::kCidr:
      case Condition::Op::kWildcard: return 4;
      case Condition::Op::kRegex: return 20;
    }
    return 20;
  };
  switch (c.kind) {
    case Condition::Kind::kTag: return op_cost(c.op) + (c.path.size() > 1 ? 10 : 0);
    case Condition::Kind::kAssoc: return op_cost(c.op);
    case Condition::Kind::kTime: return 6;  // localtime_r, once per evaluation
    case Condition::Kind::kAll:
    case Condition::Kind::kAny:
    case Condition::Kind::kNot: {
      uint32_t sum = 0;
      for (const Condition& child : c.children) sum += Cost(child);
      return sum;
    }
  }
  return 0;
}

// The operands of `c`, with nested all-in-all and any-in-any lifted into it
// (all of (a, all of (b, c)) is all of (a, b, c)).
void Operands(const Condition& c, Condition::Kind kind, std::vector<const Condition*>* out) {
  for (const Condition& child : c.children) {
    if (child.kind == kind && kind != Condition::Kind::kNot) {
      Operands(child, kind, out);
    } else {
      out->push_back(&child);
    }
  }
}

void Emit(const Condition& c, std::vector<CodeNode>* code, std::vector<const Condition*>* leaves) {
  if (IsLeaf(c)) {
    if ((*leaves)[c.memo] == nullptr) (*leaves)[c.memo] = &c;
    code->push_back({CodeNode::Op::kLeaf, static_cast<uint32_t>(c.memo)});
    return;
  }
  std::vector<const Condition*> operands;
  Operands(c, c.kind, &operands);
  if (operands.size() == 1 && c.kind != Condition::Kind::kNot) {  // all of (x) and any of (x) are x
    Emit(*operands[0], code, leaves);
    return;
  }
  std::stable_sort(operands.begin(), operands.end(),
                   [](const Condition* a, const Condition* b) { return Cost(*a) < Cost(*b); });
  size_t at = code->size();
  CodeNode::Op op = c.kind == Condition::Kind::kAll   ? CodeNode::Op::kAll
                    : c.kind == Condition::Kind::kAny ? CodeNode::Op::kAny
                                                      : CodeNode::Op::kNot;
  code->push_back({op, 0});
  for (const Condition* operand : operands) Emit(*operand, code, leaves);
  (*code)[at].arg = static_cast<uint32_t>(code->size());
}

}  // namespace

void RuleSetImpl::BuildCode() {
  code_.clear();
  heads_.clear();
  leaves_.assign(memo_count_, nullptr);
  for (const CompiledRule& rule : rules_) {
    RuleHead head;
    head.begin = static_cast<uint32_t>(code_.size());
    Emit(rule.match, &code_, &leaves_);
    head.end = static_cast<uint32_t>(code_.size());
    const CodeNode& root = code_[head.begin];
    if (root.op == CodeNode::Op::kAll) {
      ++head.begin;  // its children, if they are all leaves
      for (uint32_t j = head.begin; j < head.end; ++j) {
        if (code_[j].op != CodeNode::Op::kLeaf) head.conjunction = false;
      }
      if (!head.conjunction) --head.begin;
    } else {
      head.conjunction = root.op == CodeNode::Op::kLeaf;
    }
    heads_.push_back(head);
  }
}

namespace {

const std::vector<TagEdit> kNoEdits;

// Records a matching rule in `out`; true when evaluation stops there (drop, stop).
bool Apply(const CompiledRule& rule, Decision* out) {
  out->matched_rules.push_back(&rule.name);
  if (rule.drop) {
    out->targets.clear();
    out->dropped = true;
    return true;
  }
  for (const ForwardTarget& f : rule.forward) {
    Decision::Target* t = out->targets.data();
    Decision::Target* end = t + out->targets.size();
    while (t != end && t->destination != f.destination) ++t;  // a handful of destinations: linear
    if (t != end) {
      t->priority = std::max(t->priority, rule.priority);  // a later STAT rule still hurries it
      continue;
    }
    out->targets.push_back({f.destination, rule.priority, &rule.name, f.edits.empty() ? &kNoEdits : &f.edits});
  }
  return rule.stop;
}

// Points each slot at its element of `header`, in one merge pass: header
// elements and `slot_tags` are both sorted by tag.
void FindSlots(DcmItem* header, const std::vector<uint32_t>& slot_tags, std::vector<Slot>* slots) {
  if (header == nullptr || slot_tags.empty()) return;
  size_t k = 0;
  for (DcmObject* o = header->nextInContainer(nullptr); o != nullptr && k < slot_tags.size();
       o = header->nextInContainer(o)) {
    uint32_t tag = (static_cast<uint32_t>(o->getGTag()) << 16) | o->getETag();
    while (k < slot_tags.size() && slot_tags[k] < tag) ++k;
    if (k < slot_tags.size() && slot_tags[k] == tag) (*slots)[k++].element = static_cast<DcmElement*>(o);
  }
}

// The rules in order on their compiled code, until one that stops matches.
// True when any rule matched.
bool EvaluateRules(const RuleSetImpl& set, Context* ctx, Decision* out) {
  bool any = false;
  // The hot loop: touches only heads_, code_ and the memo until a rule matches.
  // Locals, not ctx members: ComputeLeaf takes ctx, which would make the
  // compiler reload them for every leaf.
  const RuleHead* heads = set.heads_.data();
  const CodeNode* code = set.code_.data();
  const Condition* const* leaves = set.leaves_.data();
  const int8_t* known = ctx->memo;
  const size_t rule_count = set.heads_.size();
  for (size_t i = 0; i < rule_count; ++i) {
    const RuleHead head = heads[i];
    if (head.conjunction) {
      uint32_t j = head.begin;
      for (; j < head.end; ++j) {
        uint32_t id = code[j].arg;
        int8_t m = known[id];
        if (m < 0) m = ComputeLeaf(*leaves[id], ctx) ? 1 : 0;
        if (m == 0) break;
      }
      if (j < head.end) continue;
    } else if (!Run(code, head.begin, ctx)) {
      continue;
    }
    any = true;
    if (Apply(set.rules_[i], out)) break;
  }
  return any;
}

// With an explanation: the condition tree in file order, every top-level
// condition of every rule evaluated (allocates). True when any rule matched.
bool ExplainRules(const RuleSetImpl& set, Context* ctx, Decision* out, Explanation* explain) {
  bool any = false;
  const CompiledRule* stopped_by = nullptr;
  for (const CompiledRule& rule : set.rules_) {
    if (stopped_by != nullptr) {
      explain->rules.push_back(
          {rule.name, false, {"not evaluated: rule '" + stopped_by->name + "' matched and stops"}});
      continue;
    }
    Explanation::RuleTrace trace;
    trace.rule = rule.name;
    bool matched = true;
    if (rule.match.children.empty()) trace.reasons.push_back("no conditions: matches everything");
    for (const Condition& c : rule.match.children) {
      bool m = Match(c, ctx);
      matched = matched && m;
      trace.reasons.push_back(c.text + ": " + (m ? "yes" : "no") + Observed(c, ctx));
    }
    trace.matched = matched;
    explain->rules.push_back(std::move(trace));
    if (!matched) continue;
    any = true;
    if (Apply(rule, out)) stopped_by = &rule;
  }
  return any;
}

}  // namespace

const Destination* RuleSetImpl::FindDestination(const std::string& name) const {
  for (const Destination& d : destinations_) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

void RuleSetImpl::Evaluate(DcmItem* header, const AssociationFacts& facts, std::time_t now, Decision* out,
                           Explanation* explain) const {
  out->Clear();
  if (explain != nullptr) explain->rules.clear();

  std::vector<Slot>& slots = t_slots;
  slots.resize(slot_tags_.size());  // no allocation once the thread has seen this size
  for (Slot& s : slots) s = Slot{nullptr, nullptr, 0, 0, false, {}};
  if (t_decoded.size() < slots.size()) t_decoded.resize(slots.size());
  FindSlots(header, slot_tags_, &slots);

  std::vector<int8_t>& memo = t_memo;
  memo.assign(memo_count_, -1);

  Context ctx{};
  ctx.header = header;
  ctx.facts = &facts;
  ctx.slots = slots.data();
  ctx.memo = memo.data();
  ctx.leaves = leaves_.data();
  ctx.decoded = t_decoded.data();
  ctx.now = now;  // converted to local time only when a time condition asks

  out->unmatched = explain == nullptr ? !EvaluateRules(*this, &ctx, out) : !ExplainRules(*this, &ctx, out, explain);
}

}  // namespace relais::rules::internal
