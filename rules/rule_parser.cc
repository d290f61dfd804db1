// The TOML side of the rules engine: RuleSet::Load / RuleSet::Parse. Reads
// [[destination]], [[rule]] and [settings] from one or more files, validates
// everything (every problem reported as FILE:LINE:COLUMN: message, in file
// order) and compiles the rules into rule_compiled.h structures.
//
// Two passes over the parsed documents: destinations of every file first,
// then rules and settings, so that a rule may forward to a destination
// defined in another file and pointers into the destination list are taken
// only once it is complete. Debian's toml++ 3.3 throws toml::parse_error;
// it is caught here and nothing throws out of this file.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <toml++/toml.h>

#include "rules/rule_compile.h"
#include "base/clock.h"
#include "rules/rule_compiled.h"
#include "rules/routing.h"
#include "rules/toml_util.h"

namespace relais::rules {
namespace internal {
namespace {

struct SourceDoc {
  std::string name;
  std::string text;
  toml::table root;
  bool parsed = false;
  std::unique_ptr<Errors> errors;
};

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

uint64_t NowMs(const CompileBudget& budget) {
  if (budget.now_ms) return budget.now_ms();
  return static_cast<uint64_t>(relais::NowMs());
}

std::string NumberText(double d) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(d);
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool ValidDate(std::string_view s) {
  if (s.size() != 8) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  int month = (s[4] - '0') * 10 + (s[5] - '0');
  int day = (s[6] - '0') * 10 + (s[7] - '0');
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

// "18:00" -> minutes; 24:00 allowed as an end.
bool ParseClock(std::string_view s, int* minutes) {
  if (s.size() != 5 || s[2] != ':') return false;
  for (size_t i : {0, 1, 3, 4}) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (m > 59 || h > 24 || (h == 24 && m != 0)) return false;
  *minutes = h * 60 + m;
  return true;
}

const std::vector<std::string_view> kRootKeys = {"destination", "rule", "settings"};
const std::vector<std::string_view> kMatchKeys = {"all", "any", "not", "calling_ae", "called_ae",
                                                   "peer", "listener", "time"};
const std::vector<std::string_view> kOperatorKeys = {"regex", "wildcard", "present", "min", "max", "from", "to"};

class Parser {
 public:
  Parser(std::vector<SourceDoc>* docs, const CompileBudget& budget, uint64_t start_ms)
      : docs_(docs), set_(std::make_shared<RuleSetImpl>()), budget_(budget), start_ms_(start_ms) {}

  Result<std::shared_ptr<const RuleSet>> Run();

 private:
  void CheckRoot(SourceDoc& doc);
  void ReadDestination(const toml::table& t, Errors* errors, const std::string& source);
  void ReadRule(const toml::table& t, Errors* errors, const std::string& source);
  void ReadSettings(const toml::node& n, Errors* errors, const std::string& source);
  const Destination* ResolveDestination(const toml::node& n, Errors* errors, const std::string& what);
  void ReadEdits(const toml::node& n, Errors* errors, const std::string& what, std::vector<TagEdit>* out);

  // Compiles the conditions of table `t` into `out` (kAll).
  void CompileTable(const toml::table& t, int depth, Errors* errors, Condition* out);
  bool CompileCondition(std::string_view key, const toml::key& key_node, const toml::node& n, int depth,
                        Errors* errors, Condition* out);
  bool CompileGroup(std::string_view key, const toml::node& n, int depth, Errors* errors, Condition* out);
  bool CompileValue(const std::string& subject, const toml::node& n, bool numbers_ok, Errors* errors,
                    Condition* out);
  bool CompileOperator(const std::string& subject, const toml::table& t, bool tag, Errors* errors, Condition* out);
  bool CompileTime(const toml::node& n, Errors* errors, Condition* out);
  bool CompilePeer(const toml::node& n, Errors* errors, Condition* out);
  void Finish(Condition* c);
  // After each rule: false, and an error at the rule, once the budget is
  // spent. OverBudget says the same without reporting (inside a rule: its
  // remaining regexes are not compiled).
  bool WithinBudget(const toml::node& rule, Errors* errors);
  bool OverBudget() const {
    return regex_memory_ > budget_.max_regex_memory ||
           (budget_.max_compile_ms != 0 && NowMs(budget_) - start_ms_ > budget_.max_compile_ms);
  }

  std::vector<SourceDoc>* docs_;
  std::shared_ptr<RuleSetImpl> set_;
  std::map<std::string, std::string> rule_where_;
  std::string catch_all_;        // name and position of the first catch-all rule with stop
  std::string catch_all_where_;
  std::string settings_where_;
  bool too_many_rules_ = false;
  std::vector<const toml::node*> unmatched_forward_;  // resolved after destinations
  const CompileBudget& budget_;
  const uint64_t start_ms_;
  uint64_t regex_memory_ = 0;  // RegexMemory of every regex compiled so far
};

// "512 KiB", "130 MiB".
std::string SizeText(uint64_t bytes) {
  return bytes < (uint64_t{10} << 20) ? std::to_string((bytes + 512) >> 10) + " KiB"
                                      : std::to_string((bytes + (1 << 19)) >> 20) + " MiB";
}

bool Parser::WithinBudget(const toml::node& rule, Errors* errors) {
  if (regex_memory_ > budget_.max_regex_memory) {
    errors->Add(rule.source(), "the regexes of the rules up to this one need about " + SizeText(regex_memory_) +
                                   ", more than the budget of " + SizeText(budget_.max_regex_memory) +
                                   " for all rules: simplify the regexes (a counted repeat of a Unicode class such "
                                   "as \\pL{50} compiles to some 60,000 instructions; prefer wildcard or a list of "
                                   "values), use fewer rules, or raise [rules] max_regex_memory");
    return false;
  }
  if (budget_.max_compile_ms != 0 && NowMs(budget_) - start_ms_ > budget_.max_compile_ms) {
    errors->Add(rule.source(), "compiling the rules took longer than " + std::to_string(budget_.max_compile_ms) +
                                   " ms, counted up to this rule (rule " + std::to_string(set_->rules_.size()) +
                                   "): simplify the regexes (counted repeats such as \\pL{50} are slow to "
                                   "compile), use fewer rules, or raise [rules] max_compile_time");
    return false;
  }
  return true;
}

void Parser::CheckRoot(SourceDoc& doc) {
  for (auto&& [key, node] : doc.root) {
    std::string_view k = key.str();
    if (std::find(kRootKeys.begin(), kRootKeys.end(), k) == kRootKeys.end()) {
      doc.errors->Add(key.source(), "unknown top-level key '" + std::string(k) + "'" + Suggest(k, kRootKeys));
      continue;
    }
    if (k == "settings") {
      if (!node.is_table()) doc.errors->Add(node.source(), "[settings] must be a table, got " + std::string(TypeName(node.type())));
    } else if (!node.is_array_of_tables()) {
      doc.errors->Add(node.source(), std::string(k) + " must be written [[" + std::string(k) + "]] (an array of tables)");
    }
  }
}

void Parser::ReadDestination(const toml::table& t, Errors* errors, const std::string& source) {
  Destination d;
  std::string name;
  if (const toml::node* n = t.get("name"); n != nullptr && n->is_string()) name = n->as_string()->get();
  TableReader r(t, name.empty() ? "destination" : "destination '" + name + "'", errors);
  d.where = Where(source, t.source());
  r.ReadString("name", &d.name, /*required=*/true);
  if (const toml::node* n = r.Node("name"); n != nullptr && n->is_string()) {
    if (!ValidName(d.name)) {
      errors->Add(n->source(), "destination name '" + d.name + "' must be 1-64 characters of A-Z a-z 0-9 _ . -");
    } else if (const Destination* other = set_->FindDestination(d.name)) {
      errors->Add(n->source(), "duplicate destination '" + d.name + "' (first defined at " + other->where + ")");
    }
  }
  r.ReadString("ae_title", &d.ae_title, /*required=*/true);
  if (const toml::node* n = r.Node("ae_title"); n != nullptr && n->is_string()) {
    if (auto why = AeTitleProblem(d.ae_title)) errors->Add(n->source(), "ae_title " + *why + " (PS3.5 AE)");
  }
  r.ReadString("host", &d.host, /*required=*/true);
  if (const toml::node* n = r.Node("host"); n != nullptr && n->is_string() && d.host.empty()) {
    errors->Add(n->source(), "host must not be empty");
  }
  r.ReadInt("port", 1, 65535, &d.port);
  r.ReadInt("max_associations", 1, 64, &d.max_associations);
  if (const toml::node* n = r.Take("transfer_syntaxes")) {
    if (const toml::array* a = n->as_array()) {
      for (const toml::node& e : *a) {
        std::string uid;
        if (!e.is_string()) {
          errors->Add(e.source(), "transfer_syntaxes entries must be strings, got " + std::string(TypeName(e.type())));
        } else if (auto err = ResolveTransferSyntax(e.as_string()->get(), &uid)) {
          errors->Add(e.source(), *err);
        } else {
          d.transfer_syntaxes.push_back(uid);
        }
      }
    } else {
      r.TypeError("transfer_syntaxes", *n, "a list of transfer syntax names or UIDs");
    }
  }
  if (const toml::node* n = r.Take("bandwidth_limit")) {
    if (const auto* i = n->as_integer(); i != nullptr && i->get() >= 0) {
      d.bandwidth_limit_bps = static_cast<uint64_t>(i->get());
    } else if (const auto* s = n->as_string()) {
      std::string_view v = s->get();
      if (v.ends_with("/s")) v.remove_suffix(2);
      std::optional<uint64_t> bytes = ParseSize(v);
      if (!bytes) {
        errors->Add(n->source(), "bandwidth_limit must be a rate such as \"2MB/s\" or \"500KiB/s\", got '" + s->get() + "'");
      } else {
        d.bandwidth_limit_bps = *bytes;
      }
    } else {
      r.TypeError("bandwidth_limit", *n, "a rate such as \"2MB/s\" or an integer (bytes per second)");
    }
  }
  if (const toml::node* n = r.Take("retry")) {
    if (const toml::table* rt = n->as_table()) {
      TableReader rr(*rt, "destination '" + d.name + "'.retry", errors);
      rr.ReadInt("max_attempts", 0, 1000000, &d.retry.max_attempts);
      rr.ReadDuration("max_age", &d.retry.max_age_s);
      rr.ReadDuration("initial_backoff", &d.retry.initial_backoff_s);
      rr.ReadDuration("max_backoff", &d.retry.max_backoff_s);
      rr.RejectUnknownKeys();
      if (d.retry.initial_backoff_s == 0) errors->Add(n->source(), "retry.initial_backoff must be at least 1s");
      if (d.retry.initial_backoff_s > d.retry.max_backoff_s) {
        errors->Add(n->source(), "retry.initial_backoff must not be longer than retry.max_backoff");
      }
    } else {
      r.TypeError("retry", *n, "a table such as { max_age = \"7d\" }");
    }
  }
  if (const toml::node* n = r.Take("tls")) {
    if (const toml::table* tt = n->as_table()) {
      TableReader tr(*tt, "destination '" + d.name + "'.tls", errors);
      d.tls = true;
      tr.ReadString("ca_file", &d.tls_ca_file, /*required=*/true);
      tr.ReadString("cert_file", &d.tls_cert_file);
      tr.ReadString("key_file", &d.tls_key_file);
      tr.RejectUnknownKeys();
      if (d.tls_cert_file.empty() != d.tls_key_file.empty()) {
        errors->Add(n->source(), "tls.cert_file and tls.key_file go together (give both or neither)");
      }
      for (std::string* p : {&d.tls_ca_file, &d.tls_cert_file, &d.tls_key_file}) {
        if (!p->empty()) *p = ResolvePath(*p, source);
      }
    } else {
      r.TypeError("tls", *n, "a table { ca_file = \"...\", cert_file = \"...\", key_file = \"...\" }");
    }
  }
  r.ReadDuration("hold_study", &d.hold_study_s);
  r.RejectUnknownKeys();
  set_->destinations_.push_back(std::move(d));
}

const Destination* Parser::ResolveDestination(const toml::node& n, Errors* errors, const std::string& what) {
  const auto* s = n.as_string();
  if (s == nullptr) {
    errors->Add(n.source(), what + " must name a destination (a string), got " + std::string(TypeName(n.type())));
    return nullptr;
  }
  if (const Destination* d = set_->FindDestination(s->get())) return d;
  std::vector<std::string_view> names;
  for (const Destination& d : set_->destinations_) names.push_back(d.name);
  errors->Add(n.source(), "unknown destination '" + s->get() + "'" +
                              (names.empty() ? std::string(" (no [[destination]] is defined)") : Suggest(s->get(), names)));
  return nullptr;
}

void Parser::ReadEdits(const toml::node& n, Errors* errors, const std::string& what, std::vector<TagEdit>* out) {
  const toml::array* a = n.as_array();
  if (a == nullptr) {
    errors->Add(n.source(), what + ".edits must be a list of edits such as [{ remove = \"(0009,1010)\" }]");
    return;
  }
  static const std::vector<std::string_view> kOps = {"set", "remove", "copy", "prefix"};
  for (const toml::node& e : *a) {
    const toml::table* t = e.as_table();
    if (t == nullptr) {
      errors->Add(e.source(), "an edit must be a table such as { set = \"InstitutionName\", value = \"X\" }");
      continue;
    }
    TableReader r(*t, what + " edit", errors);
    TagEdit edit;
    int ops = 0;
    const toml::node* target = nullptr;
    for (std::string_view op : kOps) {
      if (const toml::node* x = r.Take(op)) {
        ++ops;
        target = x;
        if (op == "set") edit.op = TagEdit::Op::kSet;
        if (op == "remove") edit.op = TagEdit::Op::kRemove;
        if (op == "copy") edit.op = TagEdit::Op::kCopy;
        if (op == "prefix") edit.op = TagEdit::Op::kPrefix;
      }
    }
    if (ops != 1) {
      errors->Add(e.source(), "an edit needs exactly one of set, remove, copy, prefix");
      r.RejectUnknownKeys();
      continue;
    }
    bool ok = true;
    if (!target->is_string()) {
      errors->Add(target->source(), "the tag of an edit must be a string (keyword or \"(gggg,eeee)\")");
      ok = false;
    } else {
      edit.target = target->as_string()->get();
      ResolvedTag rt;
      if (auto err = ResolveTag(edit.target, &rt)) {
        errors->Add(target->source(), *err);
        ok = false;
      } else if ((rt.tag >> 16) <= 0x0002 || rt.tag == 0x7FE00010u || (rt.tag & 0xFFFF) == 0 ||
                 ((rt.tag >> 16) == 0xFFFE)) {
        errors->Add(target->source(), "cannot edit " + FormatTag(rt.tag) +
                                          " (group 0000/0002, group lengths, items and Pixel Data are not editable)");
        ok = false;
      } else if (rt.is_sequence && edit.op != TagEdit::Op::kRemove) {
        errors->Add(target->source(), "'" + edit.target + "' is a sequence: it can only be removed");
        ok = false;
      }
      edit.tag = rt.tag;
    }
    if (edit.op == TagEdit::Op::kSet || edit.op == TagEdit::Op::kPrefix) {
      r.ReadString("value", &edit.value, /*required=*/true);
      if (edit.value.find('\0') != std::string::npos) {
        errors->Add(t->source(), "an edit value must not contain NUL");
        ok = false;
      }
    } else if (edit.op == TagEdit::Op::kCopy) {
      std::string from;
      r.ReadString("from", &from, /*required=*/true);
      if (const toml::node* f = r.Node("from"); f != nullptr && f->is_string()) {
        ResolvedTag rt;
        if (auto err = ResolveTag(from, &rt)) {
          errors->Add(f->source(), *err);
          ok = false;
        } else {
          edit.from_tag = rt.tag;
        }
      } else {
        ok = false;
      }
    }
    r.RejectUnknownKeys();
    if (ok) out->push_back(std::move(edit));
  }
}

bool Parser::CompileOperator(const std::string& subject, const toml::table& t, bool tag, Errors* errors,
                             Condition* out) {
  bool ok = true;
  int groups = 0;
  for (auto&& [key, node] : t) {
    std::string_view k = key.str();
    if (std::find(kOperatorKeys.begin(), kOperatorKeys.end(), k) == kOperatorKeys.end()) {
      errors->Add(key.source(), "unknown operator '" + std::string(k) + "' for " + subject + Suggest(k, kOperatorKeys));
      ok = false;
    }
  }
  if (!ok) return false;
  auto string_of = [&](std::string_view key, std::string* s) -> bool {
    const toml::node* n = t.get(key);
    if (n == nullptr) return false;
    if (!n->is_string()) {
      errors->Add(n->source(), subject + " " + std::string(key) + " must be a string, got " + TypeName(n->type()));
      ok = false;
      return false;
    }
    *s = n->as_string()->get();
    return true;
  };
  std::string s;
  if (string_of("regex", &s)) {
    ++groups;
    out->op = Condition::Op::kRegex;
    if (OverBudget()) {
      ok = false;  // reported at the rule (WithinBudget)
    } else if (auto err = CompileRegex(s, &out->regex)) {
      errors->Add(t.get("regex")->source(), *err);
      ok = false;
    } else {
      regex_memory_ += RegexMemory(*out->regex);
    }
    out->text = subject + " ~ regex " + Quote(s);
  }
  if (string_of("wildcard", &s)) {
    ++groups;
    out->op = Condition::Op::kWildcard;
    out->pattern = s;
    if (OverBudget()) {
      ok = false;  // reported at the rule (WithinBudget)
    } else if (auto err = CompileWildcard(s, &out->wildcard)) {
      errors->Add(t.get("wildcard")->source(), *err);
      ok = false;
    } else {  // its two programs count against the rule set's budget too
      regex_memory_ += RegexMemory(*out->wildcard.utf8) + RegexMemory(*out->wildcard.latin1);
    }
    out->text = subject + " like " + Quote(s);
  }
  if (const toml::node* n = t.get("present")) {
    ++groups;
    out->op = Condition::Op::kPresent;
    if (!tag) {
      errors->Add(n->source(), "present applies to tags only");
      ok = false;
    } else if (!n->is_boolean()) {
      errors->Add(n->source(), subject + " present must be true or false, got " + TypeName(n->type()));
      ok = false;
    } else {
      out->present = n->as_boolean()->get();
      out->text = subject + (out->present ? " present" : " absent");
    }
  }
  if (t.get("min") != nullptr || t.get("max") != nullptr) {
    ++groups;
    out->op = Condition::Op::kRange;
    for (std::string_view k : {"min", "max"}) {
      const toml::node* n = t.get(k);
      if (n == nullptr) continue;
      std::optional<double> v = n->value<double>();
      if (!n->is_number() || !v) {
        errors->Add(n->source(), subject + " " + std::string(k) + " must be a number, got " + TypeName(n->type()));
        ok = false;
        continue;
      }
      (k == "min" ? out->has_min : out->has_max) = true;
      (k == "min" ? out->min : out->max) = *v;
    }
    if (out->has_min && out->has_max && out->min > out->max) {
      errors->Add(t.source(), subject + " min must not be greater than max");
      ok = false;
    }
    out->text = subject + " in [" + (out->has_min ? NumberText(out->min) : "") + ", " +
                (out->has_max ? NumberText(out->max) : "") + "]";
  }
  if (t.get("from") != nullptr || t.get("to") != nullptr) {
    ++groups;
    out->op = Condition::Op::kDateRange;
    for (std::string_view k : {"from", "to"}) {
      const toml::node* n = t.get(k);
      if (n == nullptr) continue;
      std::string v;
      if (const auto* d = n->as_date()) {
        char buf[16];
        std::snprintf(buf, sizeof(buf), "%04u%02u%02u", static_cast<unsigned>(d->get().year),
                      static_cast<unsigned>(d->get().month), static_cast<unsigned>(d->get().day));
        v = buf;
      } else if (const auto* str = n->as_string()) {
        v = str->get();
      }
      if (!ValidDate(v)) {
        errors->Add(n->source(), subject + " " + std::string(k) +
                                     " must be a date \"YYYYMMDD\" (DICOM DA) or 2024-01-31");
        ok = false;
        continue;
      }
      (k == "from" ? out->from : out->to) = v;
    }
    if (!out->from.empty() && !out->to.empty() && out->from > out->to) {
      errors->Add(t.source(), subject + " from must not be after to");
      ok = false;
    }
    out->text = subject + " in " + (out->from.empty() ? "..." : out->from) + ".." + out->to;
  }
  if (groups == 0) {
    errors->Add(t.source(), subject + " needs an operator: regex, wildcard, present, min/max or from/to");
    return false;
  }
  if (groups > 1) {
    errors->Add(t.source(), subject + " has more than one operator; combine them with all = [...]");
    return false;
  }
  if (!tag && (out->op == Condition::Op::kRange || out->op == Condition::Op::kDateRange)) {
    errors->Add(t.source(), subject + " supports only a string, a list, regex or wildcard");
    return false;
  }
  return ok;
}

bool Parser::CompileValue(const std::string& subject, const toml::node& n, bool tag, Errors* errors,
                          Condition* out) {
  out->op = Condition::Op::kEquals;
  auto add = [&](const toml::node& v) -> bool {
    if (const auto* s = v.as_string()) {
      std::string t(TrimDicom(s->get()));
      double d;
      auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
      if (tag && !t.empty() && ec == std::errc() && end == t.data() + t.size()) out->numbers.push_back(d);
      out->values.push_back(std::move(t));
      return true;
    }
    if (tag && v.is_number()) {
      double d = *v.value<double>();
      out->numbers.push_back(d);
      out->values.push_back(v.is_integer() ? std::to_string(v.as_integer()->get()) : NumberText(d));
      return true;
    }
    errors->Add(v.source(), subject + " values must be " + (tag ? "strings or numbers" : "strings") + ", got " +
                                TypeName(v.type()));
    return false;
  };
  if (const toml::table* t = n.as_table()) return CompileOperator(subject, *t, tag, errors, out);
  if (const toml::array* a = n.as_array()) {
    if (a->empty()) {
      errors->Add(n.source(), subject + " = [] matches nothing; give at least one value");
      return false;
    }
    bool ok = true;
    for (const toml::node& v : *a) ok = add(v) && ok;
    std::string list;
    for (const std::string& v : out->values) list += (list.empty() ? "" : ", ") + v;
    out->text = subject + " = any of [" + list + "]";
    return ok;
  }
  if (n.is_string() || (tag && n.is_number())) {
    bool ok = add(n);
    if (ok) out->text = subject + " = " + Quote(out->values[0]);
    return ok;
  }
  errors->Add(n.source(), subject + " must be a string" + (tag ? ", a number" : std::string()) +
                              ", a list of them, or an operator table such as { regex = \"...\" }, got " +
                              TypeName(n.type()));
  return false;
}

bool Parser::CompilePeer(const toml::node& n, Errors* errors, Condition* out) {
  out->kind = Condition::Kind::kAssoc;
  out->field = Condition::Field::kPeer;
  out->op = Condition::Op::kCidr;
  std::vector<const toml::node*> items;
  if (const toml::array* a = n.as_array()) {
    for (const toml::node& e : *a) items.push_back(&e);
    if (items.empty()) {
      errors->Add(n.source(), "peer = [] matches nothing; give at least one address or network");
      return false;
    }
  } else {
    items.push_back(&n);
  }
  bool ok = true;
  std::string list;
  for (const toml::node* e : items) {
    Cidr c;
    if (!e->is_string()) {
      errors->Add(e->source(), "peer must be an IP address or CIDR such as \"10.1.0.0/16\", got " +
                                   std::string(TypeName(e->type())));
      ok = false;
    } else if (!ParseCidr(e->as_string()->get(), &c)) {
      errors->Add(e->source(), "bad CIDR '" + e->as_string()->get() +
                                   "': expected an IPv4/IPv6 address or network such as \"10.1.0.0/16\" (host bits zero)");
      ok = false;
    } else {
      out->cidrs.push_back(c);
      list += (list.empty() ? "" : ", ") + e->as_string()->get();
    }
  }
  out->text = "peer in [" + list + "]";
  return ok;
}

bool Parser::CompileTime(const toml::node& n, Errors* errors, Condition* out) {
  out->kind = Condition::Kind::kTime;
  const toml::table* t = n.as_table();
  if (t == nullptr) {
    errors->Add(n.source(), "time must be a table such as { days = [\"sat\", \"sun\"], hours = \"18:00-07:00\" }");
    return false;
  }
  TableReader r(*t, "time", errors);
  bool ok = true;
  std::string days_text, hours_text;
  if (const toml::node* d = r.Take("days")) {
    static const std::vector<std::string_view> kDays = {"sun", "mon", "tue", "wed", "thu", "fri", "sat",
                                                        "weekdays", "weekend"};
    const toml::array* a = d->as_array();
    if (a == nullptr || a->empty()) {
      errors->Add(d->source(), "time.days must be a non-empty list such as [\"mon\", \"tue\"]");
      ok = false;
    } else {
      out->days = 0;
      for (const toml::node& e : *a) {
        auto it = e.is_string() ? std::find(kDays.begin(), kDays.end(), e.as_string()->get()) : kDays.end();
        if (it == kDays.end()) {
          std::string got = e.is_string() ? e.as_string()->get() : TypeName(e.type());
          errors->Add(e.source(), "unknown day '" + got + "'" + Suggest(got, kDays));
          ok = false;
          continue;
        }
        size_t i = static_cast<size_t>(it - kDays.begin());
        if (i < 7) out->days |= static_cast<uint8_t>(1u << i);
        if (i == 7) out->days |= 0x3E;  // mon..fri
        if (i == 8) out->days |= 0x41;  // sat, sun
        days_text += (days_text.empty() ? "" : ", ") + e.as_string()->get();
      }
    }
  }
  if (const toml::node* h = r.Take("hours")) {
    const auto* s = h->as_string();
    int a = 0, b = 0;
    std::string_view v = s != nullptr ? std::string_view(s->get()) : std::string_view();
    if (s == nullptr || v.size() != 11 || v[5] != '-' || !ParseClock(v.substr(0, 5), &a) ||
        !ParseClock(v.substr(6), &b) || a == 1440) {
      errors->Add(h->source(), "bad time range: time.hours must be \"HH:MM-HH:MM\" such as \"18:00-07:00\" (24-hour clock)");
      ok = false;
    } else if (a == b) {
      errors->Add(h->source(), "bad time range '" + std::string(v) + "': start equals end (leave hours out for the whole day)");
      ok = false;
    } else {
      out->has_hours = true;
      out->start_minute = a;
      out->end_minute = b == 1440 ? 0 : b;
      if (b == 1440) out->end_minute = 1440;
      hours_text = std::string(v);
    }
  }
  r.RejectUnknownKeys();
  if (ok && days_text.empty() && hours_text.empty()) {
    errors->Add(n.source(), "time needs days, hours or both");
    ok = false;
  }
  out->text = "time" + (days_text.empty() ? "" : " days [" + days_text + "]") +
              (hours_text.empty() ? "" : " hours " + hours_text);
  return ok;
}

bool Parser::CompileGroup(std::string_view key, const toml::node& n, int depth, Errors* errors, Condition* out) {
  if (depth >= kMaxNesting) {
    errors->Add(n.source(), "conditions nested deeper than " + std::to_string(kMaxNesting) + " levels of all/any/not");
    return false;
  }
  if (key == "not") {
    out->kind = Condition::Kind::kNot;
    const toml::table* t = n.as_table();
    if (t == nullptr) {
      errors->Add(n.source(), "not must be a table of conditions such as { calling_ae = \"TEST\" }");
      return false;
    }
    Condition inner;
    CompileTable(*t, depth + 1, errors, &inner);
    out->children = std::move(inner.children);
    if (out->children.empty()) {
      errors->Add(n.source(), "not = {} would never match; give it a condition");
      return false;
    }
    std::string parts;
    for (const Condition& c : out->children) parts += (parts.empty() ? "" : " and ") + c.text;
    out->text = "not (" + parts + ")";
    return true;
  }
  out->kind = key == "all" ? Condition::Kind::kAll : Condition::Kind::kAny;
  const toml::array* a = n.as_array();
  if (a == nullptr || a->empty()) {
    errors->Add(n.source(), std::string(key) + " must be a non-empty list of condition tables such as [{ Modality = \"CT\" }]");
    return false;
  }
  std::string parts;
  for (const toml::node& e : *a) {
    const toml::table* t = e.as_table();
    if (t == nullptr) {
      errors->Add(e.source(), std::string(key) + " entries must be tables of conditions, got " + TypeName(e.type()));
      continue;
    }
    Condition group;
    group.kind = Condition::Kind::kAll;
    group.line = t->source().begin.line;
    group.column = t->source().begin.column;
    CompileTable(*t, depth + 1, errors, &group);
    std::string inner;
    for (const Condition& c : group.children) inner += (inner.empty() ? "" : " and ") + c.text;
    group.text = group.children.size() == 1 ? inner : "(" + inner + ")";
    parts += (parts.empty() ? "" : (key == "all" ? " and " : " or ")) + group.text;
    out->children.push_back(std::move(group));
  }
  out->text = std::string(key) + " (" + parts + ")";
  return true;
}

bool Parser::CompileCondition(std::string_view key, const toml::key& key_node, const toml::node& n, int depth,
                              Errors* errors, Condition* out) {
  out->line = key_node.source().begin.line;
  out->column = key_node.source().begin.column;
  if (key == "all" || key == "any" || key == "not") return CompileGroup(key, n, depth, errors, out);
  if (key == "time") return CompileTime(n, errors, out);
  if (key == "peer") return CompilePeer(n, errors, out);
  if (key == "calling_ae" || key == "called_ae" || key == "listener") {
    out->kind = Condition::Kind::kAssoc;
    out->field = key == "calling_ae" ? Condition::Field::kCallingAe
                 : key == "called_ae" ? Condition::Field::kCalledAe
                                      : Condition::Field::kListener;
    return CompileValue(std::string(key), n, /*tag=*/false, errors, out);
  }
  out->kind = Condition::Kind::kTag;
  // Lower-case keys are ours (DICOM keywords are CamelCase): suggest among them.
  if (!key.empty() && std::islower(static_cast<unsigned char>(key[0]))) {
    errors->Add(key_node.source(), "unknown condition '" + std::string(key) + "'" + Suggest(key, kMatchKeys));
    return false;
  }
  if (auto err = ResolveTagPath(key, &out->path)) {
    errors->Add(key_node.source(), *err);
    return false;
  }
  return CompileValue(std::string(key), n, /*tag=*/true, errors, out);
}

void Parser::CompileTable(const toml::table& t, int depth, Errors* errors, Condition* out) {
  out->kind = Condition::Kind::kAll;
  for (auto&& [key, node] : t) {
    Condition c;
    if (CompileCondition(key.str(), key, node, depth, errors, &c)) out->children.push_back(std::move(c));
  }
  // toml++ tables are ordered by key; explanations read better in file order.
  std::stable_sort(out->children.begin(), out->children.end(), [](const Condition& a, const Condition& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
}

void Parser::ReadRule(const toml::table& t, Errors* errors, const std::string& source) {
  CompiledRule rule;
  rule.where = Where(source, t.source());
  std::string shown;
  if (const toml::node* n = t.get("name"); n != nullptr && n->is_string()) shown = n->as_string()->get();
  TableReader r(t, shown.empty() ? "rule" : "rule '" + shown + "'", errors);
  r.ReadString("name", &rule.name, /*required=*/true);
  if (const toml::node* n = r.Node("name"); n != nullptr && n->is_string()) {
    if (rule.name.empty() || rule.name.size() > 128) {
      errors->Add(n->source(), "rule name must be 1-128 characters");
    } else if (auto it = rule_where_.find(rule.name); it != rule_where_.end()) {
      errors->Add(n->source(), "duplicate rule '" + rule.name + "' (first defined at " + it->second + ")");
    } else {
      rule_where_.emplace(rule.name, rule.where);
    }
  }
  r.ReadBool("stop", &rule.stop);
  r.ReadBool("drop", &rule.drop);
  r.ReadInt("priority", -1000, 1000, &rule.priority);
  const std::string what = "rule '" + rule.name + "'";
  const toml::node* fwd = r.Take("forward");
  if (fwd != nullptr) {
    if (const toml::array* a = fwd->as_array()) {
      for (const toml::node& e : *a) {
        ForwardTarget target;
        if (const toml::table* ft = e.as_table()) {
          TableReader fr(*ft, what + " forward", errors);
          const toml::node* to = fr.Take("to", /*required=*/true);
          if (to != nullptr) target.destination = ResolveDestination(*to, errors, "forward.to");
          if (const toml::node* ed = fr.Take("edits")) ReadEdits(*ed, errors, what + " forward", &target.edits);
          fr.RejectUnknownKeys();
        } else {
          target.destination = ResolveDestination(e, errors, "forward");
        }
        if (target.destination == nullptr) continue;
        for (const ForwardTarget& other : rule.forward) {
          if (other.destination == target.destination) {
            errors->Add(e.source(), "destination '" + target.destination->name + "' is named twice in " + what);
          }
        }
        rule.forward.push_back(std::move(target));
      }
    } else {
      r.TypeError("forward", *fwd, "a list of destination names such as [\"archive\"]");
    }
  }
  if (rule.drop && fwd != nullptr) {
    errors->Add(fwd->source(), what + " has both drop = true and forward; choose one");
  } else if (!rule.drop && fwd == nullptr) {
    errors->Add(t.source(), "missing required key 'forward' in " + what + " (or drop = true)");
  }
  const toml::node* match = r.Take("match");
  if (match != nullptr) {
    if (const toml::table* mt = match->as_table()) {
      CompileTable(*mt, 0, errors, &rule.match);
      rule.catch_all = mt->empty();
    } else {
      r.TypeError("match", *match, "a table ([rule.match])");
    }
  } else {
    rule.catch_all = true;
  }
  r.RejectUnknownKeys();
  if (!catch_all_.empty()) {
    errors->Add(t.source(), "unreachable rule after catch-all '" + catch_all_ + "' at " + catch_all_where_);
  } else if (rule.catch_all && (rule.stop || rule.drop)) {
    catch_all_ = rule.name;
    catch_all_where_ = rule.where;
  }
  set_->rules_.push_back(std::move(rule));
}

void Parser::ReadSettings(const toml::node& n, Errors* errors, const std::string& source) {
  const toml::table* t = n.as_table();
  if (t == nullptr) return;  // reported by CheckRoot
  if (!settings_where_.empty()) {
    errors->Add(n.source(), "[settings] already given at " + settings_where_ + " (one file only)");
    return;
  }
  settings_where_ = Where(source, n.source());
  TableReader r(*t, "settings", errors);
  if (const toml::node* u = r.Take("unmatched")) {
    if (const auto* s = u->as_string()) {
      static const std::vector<std::string_view> kPolicies = {"keep", "reject"};
      if (s->get() == "keep") {
        set_->unmatched_ = RuleSet::Unmatched::kKeep;
      } else if (s->get() == "reject") {
        set_->unmatched_ = RuleSet::Unmatched::kReject;
      } else {
        errors->Add(u->source(), "settings.unmatched must be \"keep\", \"reject\" or { forward = [...] }, got '" +
                                     s->get() + "'" + Suggest(s->get(), kPolicies));
      }
    } else if (const toml::table* ut = u->as_table()) {
      TableReader ur(*ut, "settings.unmatched", errors);
      const toml::node* f = ur.Take("forward", /*required=*/true);
      ur.RejectUnknownKeys();
      if (f != nullptr) {
        const toml::array* a = f->as_array();
        if (a == nullptr || a->empty()) {
          errors->Add(f->source(), "settings.unmatched.forward must be a non-empty list of destination names");
        } else {
          set_->unmatched_ = RuleSet::Unmatched::kForward;
          for (const toml::node& e : *a) {
            if (const Destination* d = ResolveDestination(e, errors, "settings.unmatched.forward")) {
              set_->unmatched_destinations_.push_back(d);
            }
          }
        }
      }
    } else {
      r.TypeError("unmatched", *u, "\"keep\", \"reject\" or { forward = [...] }");
    }
  }
  r.RejectUnknownKeys();
}

void CollectSlots(const Condition& c, std::vector<uint32_t>* tags, bool* uses_time) {
  if (c.kind == Condition::Kind::kTag) tags->push_back(c.path[0]);
  if (c.kind == Condition::Kind::kTime) *uses_time = true;
  for (const Condition& child : c.children) CollectSlots(child, tags, uses_time);
}

// Gives each leaf its slot (first tag of its path) and its memo id (equal
// leaves, by kind, text and values, share one).
void AssignSlots(Condition* c, const std::vector<uint32_t>& tags, std::map<std::string, size_t>* memo_ids) {
  if (c->kind == Condition::Kind::kTag) {
    c->slot = static_cast<size_t>(std::lower_bound(tags.begin(), tags.end(), c->path[0]) - tags.begin());
  }
  if (c->kind == Condition::Kind::kTag || c->kind == Condition::Kind::kAssoc || c->kind == Condition::Kind::kTime) {
    std::string key = std::to_string(static_cast<int>(c->kind)) + '\x1f' + c->text;
    for (const std::string& v : c->values) key += '\x1e' + v;
    c->memo = memo_ids->emplace(key, memo_ids->size()).first->second;
  }
  for (Condition& child : c->children) AssignSlots(&child, tags, memo_ids);
}

Result<std::shared_ptr<const RuleSet>> Parser::Run() {
  for (SourceDoc& doc : *docs_) {
    set_->source_files_.push_back(doc.name);
    if (doc.parsed) CheckRoot(doc);
  }
  // Pass 1: destinations (every file), so that the list is complete before
  // rules take pointers into it.
  for (SourceDoc& doc : *docs_) {
    if (!doc.parsed) continue;
    if (const toml::array* a = doc.root["destination"].as_array()) {
      for (const toml::node& n : *a) {
        if (const toml::table* t = n.as_table()) ReadDestination(*t, doc.errors.get(), doc.name);
      }
    }
  }
  // Pass 2: settings and rules, in file order, within the budget.
  bool over_budget = false;
  for (SourceDoc& doc : *docs_) {
    if (!doc.parsed || over_budget) continue;
    if (const toml::node* s = doc.root.get("settings")) ReadSettings(*s, doc.errors.get(), doc.name);
    if (const toml::array* a = doc.root["rule"].as_array()) {
      for (const toml::node& n : *a) {
        if (set_->rules_.size() >= kMaxRules) {
          if (!too_many_rules_) {
            doc.errors->Add(n.source(), "too many rules (at most " + std::to_string(kMaxRules) + ")");
            too_many_rules_ = true;
          }
          break;
        }
        if (budget_.cancel != nullptr && budget_.cancel->load(std::memory_order_relaxed)) {
          return Status::Unavailable("loading the rules was cancelled");
        }
        if (const toml::table* t = n.as_table()) ReadRule(*t, doc.errors.get(), doc.name);
        if (!WithinBudget(n, doc.errors.get())) {
          over_budget = true;
          break;
        }
      }
    }
  }
  std::string message;
  for (SourceDoc& doc : *docs_) {
    if (doc.errors->empty()) continue;
    if (!message.empty()) message += '\n';
    message += doc.errors->ToString();
  }
  if (!message.empty()) return Status::InvalidArgument(message);

  std::vector<uint32_t> tags;
  for (const CompiledRule& rule : set_->rules_) CollectSlots(rule.match, &tags, &set_->uses_time_);
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  std::map<std::string, size_t> memo_ids;
  for (CompiledRule& rule : set_->rules_) AssignSlots(&rule.match, tags, &memo_ids);
  set_->memo_count_ = memo_ids.size();
  set_->slot_tags_ = std::move(tags);
  set_->BuildCode();
  return std::shared_ptr<const RuleSet>(std::move(set_));
}

void ParseDoc(SourceDoc* doc) {
  doc->errors = std::make_unique<Errors>(doc->name);
  if (doc->text.size() > kMaxRuleFileBytes) {
    doc->errors->Add(1, 1, "file is too large (" + std::to_string(doc->text.size()) + " bytes; a rule file is at most " +
                               std::to_string(kMaxRuleFileBytes) + " bytes)");
    return;
  }
  if (!CheckTomlNesting(doc->text, doc->errors.get())) return;
  try {
    doc->root = toml::parse(doc->text, doc->name);
    doc->parsed = true;
  } catch (const toml::parse_error& e) {
    doc->errors->Add(e.source(), internal::OneLine(e.description()));
  } catch (const std::exception& e) {
    doc->errors->Add(1, 1, std::string("cannot parse: ") + e.what());
  }
}

Result<std::shared_ptr<const RuleSet>> Compile(std::vector<SourceDoc> docs, const CompileBudget& budget) {
  const uint64_t start_ms = NowMs(budget);
  for (SourceDoc& doc : docs) ParseDoc(&doc);
  Parser parser(&docs, budget, start_ms);
  return parser.Run();
}

// Reads at most kMaxRuleFileBytes + 1 bytes (enough to report "too large").
Status ReadFile(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = "cannot open rule file '" + path + "': " + std::strerror(err);
    return err == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  char buf[64 * 1024];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text->append(buf, static_cast<size_t>(in.gcount()));
    if (text->size() > kMaxRuleFileBytes) break;
  }
  if (in.bad()) return Status::IOError("cannot read rule file '" + path + "'");
  return Status::OK();
}

}  // namespace
}  // namespace internal

Result<std::shared_ptr<const RuleSet>> RuleSet::Parse(const std::string& text, const std::string& source_name,
                                                     const CompileBudget& budget) {
  std::vector<internal::SourceDoc> docs(1);
  docs[0].name = source_name;
  docs[0].text = text;
  return internal::Compile(std::move(docs), budget);
}

Result<std::shared_ptr<const RuleSet>> RuleSet::Load(const std::string& path, const CompileBudget& budget) {
  std::error_code ec;
  std::vector<std::string> files;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      if (entry.path().extension() == ".toml" && !entry.is_directory()) files.push_back(entry.path().string());
    }
    if (ec) return Status::IOError("cannot list rule directory '" + path + "': " + ec.message());
    std::sort(files.begin(), files.end());
    if (files.empty()) return Status::InvalidArgument("rule directory '" + path + "' has no *.toml file");
  } else {
    files.push_back(path);
  }
  std::vector<internal::SourceDoc> docs(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    docs[i].name = files[i];
    RELAIS_RETURN_IF_ERROR(internal::ReadFile(files[i], &docs[i].text));
  }
  return internal::Compile(std::move(docs), budget);
}

}  // namespace relais::rules
