// Parser (rule_parser.h): a rule's [rule.match] conditions, compiled into
// rule_compiled.h Conditions: tag values (equality, regex, wildcard,
// presence, ranges, dates), the association (calling/called AE, peer,
// listener), the time of day, and all/any/not groups.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <toml++/toml.h>

#include "rules/routing.h"
#include "rules/rule_compile.h"
#include "rules/rule_compiled.h"
#include "rules/rule_parser.h"
#include "rules/toml_util.h"

namespace relais::rules::internal {
namespace {

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string NumberText(double d) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(d);
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

const std::vector<std::string_view> kMatchKeys = {"all",       "any",  "not",      "calling_ae",
                                                  "called_ae", "peer", "listener", "time"};
const std::vector<std::string_view> kOperatorKeys = {"regex", "wildcard", "present", "min", "max", "from", "to"};

// False, with an error for each, when `t` has keys that are not operators.
bool OnlyKnownOperators(const std::string& subject, const toml::table& t, Errors* errors) {
  bool ok = true;
  for (auto&& [key, node] : t) {
    std::string_view k = key.str();
    if (std::find(kOperatorKeys.begin(), kOperatorKeys.end(), k) == kOperatorKeys.end()) {
      errors->Add(key.source(), "unknown operator '" + std::string(k) + "' for " + subject + Suggest(k, kOperatorKeys));
      ok = false;
    }
  }
  return ok;
}

// { present = true/false }: whether a tag is there (tags only).
bool CompilePresent(const std::string& subject, const toml::node& n, bool tag, Errors* errors, Condition* out) {
  if (!tag) {
    errors->Add(n.source(), "present applies to tags only");
    return false;
  }
  if (!n.is_boolean()) {
    errors->Add(n.source(), subject + " present must be true or false, got " + TypeName(n.type()));
    return false;
  }
  out->present = n.as_boolean()->get();
  out->text = subject + (out->present ? " present" : " absent");
  return true;
}

// { min = ..., max = ... }: a numeric range (either end may be absent).
bool CompileNumberRange(const std::string& subject, const toml::table& t, Errors* errors, Condition* out) {
  bool ok = true;
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
  return ok;
}

// { from = ..., to = ... }: a date range, DICOM DA or TOML dates.
bool CompileDateRange(const std::string& subject, const toml::table& t, Errors* errors, Condition* out) {
  bool ok = true;
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
      errors->Add(n->source(),
                  subject + " " + std::string(k) + " must be a date \"YYYYMMDD\" (DICOM DA) or 2024-01-31");
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
  return ok;
}

}  // namespace

bool Parser::CompileOperator(const std::string& subject, const toml::table& t, bool tag, Errors* errors,
                             Condition* out) {
  if (!OnlyKnownOperators(subject, t, errors)) return false;
  bool ok = true;
  int groups = 0;
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
    if (!CompilePresent(subject, *n, tag, errors, out)) ok = false;
  }
  if (t.get("min") != nullptr || t.get("max") != nullptr) {
    ++groups;
    out->op = Condition::Op::kRange;
    if (!CompileNumberRange(subject, t, errors, out)) ok = false;
  }
  if (t.get("from") != nullptr || t.get("to") != nullptr) {
    ++groups;
    out->op = Condition::Op::kDateRange;
    if (!CompileDateRange(subject, t, errors, out)) ok = false;
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

bool Parser::CompileValue(const std::string& subject, const toml::node& n, bool tag, Errors* errors, Condition* out) {
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
      errors->Add(e->source(),
                  "bad CIDR '" + e->as_string()->get() +
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
    static const std::vector<std::string_view> kDays = {"sun", "mon", "tue",      "wed",    "thu",
                                                        "fri", "sat", "weekdays", "weekend"};
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
      errors->Add(h->source(),
                  "bad time range: time.hours must be \"HH:MM-HH:MM\" such as \"18:00-07:00\" (24-hour clock)");
      ok = false;
    } else if (a == b) {
      errors->Add(h->source(),
                  "bad time range '" + std::string(v) + "': start equals end (leave hours out for the whole day)");
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
    errors->Add(n.source(),
                std::string(key) + " must be a non-empty list of condition tables such as [{ Modality = \"CT\" }]");
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
    out->field = key == "calling_ae"  ? Condition::Field::kCallingAe
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

}  // namespace relais::rules::internal
