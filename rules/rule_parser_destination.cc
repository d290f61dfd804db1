// Parser (rule_parser.h): [[destination]] tables, the destinations a rule
// forwards to, and the tag edits of a forward target.
#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <string_view>
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

// The store remembers deliveries for the longest window (store/FORMAT.md
// `delivered`): a year bounds that table.
constexpr uint64_t kMaxResendWindowS = 365 * 86400;

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

// [[destination]] transfer_syntaxes: names or UIDs, in the order preferred.
void ReadTransferSyntaxes(const toml::node* n, TableReader* r, Errors* errors, Destination* d) {
  if (const toml::array* a = n->as_array()) {
    for (const toml::node& e : *a) {
      std::string uid;
      if (!e.is_string()) {
        errors->Add(e.source(), "transfer_syntaxes entries must be strings, got " + std::string(TypeName(e.type())));
      } else if (auto err = ResolveTransferSyntax(e.as_string()->get(), &uid)) {
        errors->Add(e.source(), *err);
      } else {
        d->transfer_syntaxes.push_back(uid);
      }
    }
  } else {
    r->TypeError("transfer_syntaxes", *n, "a list of transfer syntax names or UIDs");
  }
}

// A rate: "2MB/s", "500KiB/s" or bytes per second; `unlimited_ok`: also
// "unlimited" (0). Errors name `key`.
bool ReadRate(const toml::node* n, std::string_view key, bool unlimited_ok, TableReader* r, Errors* errors,
              uint64_t* out) {
  if (const auto* i = n->as_integer(); i != nullptr && i->get() >= 0) {
    *out = static_cast<uint64_t>(i->get());
    return true;
  }
  if (const auto* s = n->as_string()) {
    std::string_view v = s->get();
    if (unlimited_ok && v == "unlimited") {
      *out = 0;
      return true;
    }
    if (v.ends_with("/s")) v.remove_suffix(2);
    std::optional<uint64_t> bytes = ParseSize(v);
    if (!bytes) {
      errors->Add(n->source(), (unlimited_ok ? r->Full(key) : std::string(key)) +
                                   " must be a rate such as \"2MB/s\" or \"500KiB/s\"" +
                                   (unlimited_ok ? " or \"unlimited\"" : "") + ", got '" + s->get() + "'");
      return false;
    }
    *out = *bytes;
    return true;
  }
  r->TypeError(key, *n, "a rate such as \"2MB/s\" or an integer (bytes per second)");
  return false;
}

// [[destination]] bandwidth_limit: "2MB/s", "500KiB/s" or bytes per second.
void ReadBandwidthLimit(const toml::node* n, TableReader* r, Errors* errors, Destination* d) {
  ReadRate(n, "bandwidth_limit", /*unlimited_ok=*/false, r, errors, &d->bandwidth_limit_bps);
}

// "HH:MM" or "HH:MM:SS" (00:00-24:00) as seconds after midnight.
std::optional<uint32_t> ParseClock(std::string_view v) {
  auto two = [&](size_t at) -> int {
    if (v.size() < at + 2 || v[at] < '0' || v[at] > '9' || v[at + 1] < '0' || v[at + 1] > '9') return -1;
    return (v[at] - '0') * 10 + (v[at + 1] - '0');
  };
  if ((v.size() != 5 && v.size() != 8) || v[2] != ':' || (v.size() == 8 && v[5] != ':')) return std::nullopt;
  int h = two(0), m = two(3), sec = v.size() == 8 ? two(6) : 0;
  if (h < 0 || m < 0 || sec < 0 || m > 59 || sec > 59 || h > 24 || (h == 24 && (m != 0 || sec != 0))) {
    return std::nullopt;
  }
  return static_cast<uint32_t>((h * 60 + m) * 60 + sec) % 86400;
}

// "mon-fri", "sat,sun", "fri-mon" (wraps), "mon-fri,sun" as a bit set (bit 0 Sunday).
std::optional<uint8_t> ParseDays(std::string_view v) {
  static constexpr std::string_view kNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
  auto day = [](std::string_view n) -> int {
    for (int i = 0; i < 7; ++i) {
      if (n == kNames[i]) return i;
    }
    return -1;
  };
  uint8_t bits = 0;
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view part = v.substr(0, comma);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    if (comma != std::string_view::npos && v.empty()) return std::nullopt;
    size_t dash = part.find('-');
    int a = day(part.substr(0, dash));
    int b = dash == std::string_view::npos ? a : day(part.substr(dash + 1));
    if (a < 0 || b < 0) return std::nullopt;
    for (int i = a;; i = (i + 1) % 7) {
      bits |= static_cast<uint8_t>(1u << i);
      if (i == b) break;
    }
  }
  if (bits == 0) return std::nullopt;
  return bits;
}

// [[destination]] bandwidth = [ { limit, days, from, to }, ... ].
void ReadBandwidth(const toml::node* n, TableReader* r, Errors* errors, Destination* d) {
  const toml::array* a = n->as_array();
  if (a == nullptr) {
    r->TypeError("bandwidth", *n,
                 "a list of windows such as [ { limit = \"2MB/s\", from = \"07:00\", to = \"19:00\" } ]");
    return;
  }
  if (a->empty()) errors->Add(n->source(), "destination '" + d->name + "'.bandwidth must list at least one window");
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    const toml::table* t = e.as_table();
    std::string name = "destination '" + d->name + "'.bandwidth[" + std::to_string(i) + "]";
    if (t == nullptr) {
      errors->Add(e.source(), name +
                                  " must be a table such as { limit = \"2MB/s\", days = \"mon-fri\", from = "
                                  "\"07:00\", to = \"19:00\" }, got " +
                                  TypeName(e.type()));
      continue;
    }
    TableReader wr(*t, name, errors);
    BandwidthWindow w;
    if (const toml::node* l = wr.Take("limit", /*required=*/true)) {
      ReadRate(l, "limit", /*unlimited_ok=*/true, &wr, errors, &w.limit_bps);
    }
    std::string days, from, to;
    wr.ReadString("days", &days);
    wr.ReadString("from", &from);
    wr.ReadString("to", &to);
    if (const toml::node* dn = wr.Node("days"); dn != nullptr && dn->is_string()) {
      if (auto bits = ParseDays(days)) {
        w.days = *bits;
      } else {
        errors->Add(dn->source(), name +
                                      ".days must be days such as \"mon-fri\" or \"sat,sun\" (sun mon tue wed "
                                      "thu fri sat), got '" +
                                      days + "'");
      }
    }
    const toml::node* fn = wr.Node("from");
    const toml::node* tn = wr.Node("to");
    bool from_ok = fn != nullptr && fn->is_string(), to_ok = tn != nullptr && tn->is_string();
    for (auto [node, text, ok, out] :
         {std::tuple{fn, &from, from_ok, &w.from_s}, std::tuple{tn, &to, to_ok, &w.to_s}}) {
      if (!ok) continue;
      if (auto s = ParseClock(*text)) {
        *out = *s;
      } else {
        errors->Add(node->source(), name + "." + (out == &w.from_s ? "from" : "to") +
                                        " must be a local time \"HH:MM\" or \"HH:MM:SS\", got '" + *text + "'");
      }
    }
    if ((fn != nullptr) != (tn != nullptr)) {
      errors->Add(t->source(), name + " needs both from and to (or neither for the whole day)");
    } else if (from_ok && to_ok && w.from_s == w.to_s && w.from_s != 0) {  // 00:00-24:00: the whole day
      errors->Add(t->source(), name + ": from and to must differ (leave both out for the whole day)");
    }
    wr.RejectUnknownKeys();
    d->bandwidth.push_back(w);
  }
}

// [[destination]] retry = { max_attempts, max_age, initial_backoff, max_backoff }.
void ReadRetry(const toml::node* n, TableReader* r, Errors* errors, Destination* d) {
  if (const toml::table* rt = n->as_table()) {
    TableReader rr(*rt, "destination '" + d->name + "'.retry", errors);
    rr.ReadInt("max_attempts", 0, 1000000, &d->retry.max_attempts);
    rr.ReadDuration("max_age", &d->retry.max_age_s);
    rr.ReadDuration("initial_backoff", &d->retry.initial_backoff_s);
    rr.ReadDuration("max_backoff", &d->retry.max_backoff_s);
    rr.RejectUnknownKeys();
    if (d->retry.initial_backoff_s == 0) errors->Add(n->source(), "retry.initial_backoff must be at least 1s");
    if (d->retry.initial_backoff_s > d->retry.max_backoff_s) {
      errors->Add(n->source(), "retry.initial_backoff must not be longer than retry.max_backoff");
    }
  } else {
    r->TypeError("retry", *n, "a table such as { max_age = \"7d\" }");
  }
}

// [[destination]] tls = { ca_file, cert_file, key_file }, paths relative to
// the rule file `source`.
void ReadTls(const toml::node* n, TableReader* r, Errors* errors, const std::string& source, Destination* d) {
  if (const toml::table* tt = n->as_table()) {
    TableReader tr(*tt, "destination '" + d->name + "'.tls", errors);
    d->tls = true;
    tr.ReadString("ca_file", &d->tls_ca_file, /*required=*/true);
    tr.ReadString("cert_file", &d->tls_cert_file);
    tr.ReadString("key_file", &d->tls_key_file);
    tr.RejectUnknownKeys();
    if (d->tls_cert_file.empty() != d->tls_key_file.empty()) {
      errors->Add(n->source(), "tls.cert_file and tls.key_file go together (give both or neither)");
    }
    for (std::string* p : {&d->tls_ca_file, &d->tls_cert_file, &d->tls_key_file}) {
      if (!p->empty()) *p = ResolvePath(*p, source);
    }
  } else {
    r->TypeError("tls", *n, "a table { ca_file = \"...\", cert_file = \"...\", key_file = \"...\" }");
  }
}

}  // namespace

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
  std::string concurrency;
  r.ReadEnum("concurrency", {"adaptive", "fixed"}, &concurrency);
  if (concurrency == "fixed") {
    d.concurrency = Destination::Concurrency::kFixed;
    if (r.Node("max_associations") == nullptr) {
      errors->Add(r.Node("concurrency")->source(),
                  "destination '" + d.name +
                      "': concurrency = \"fixed\" needs max_associations (the number of associations to keep)");
    }
  }
  if (const toml::node* n = r.Take("transfer_syntaxes")) ReadTransferSyntaxes(n, &r, errors, &d);
  if (const toml::node* n = r.Take("bandwidth_limit")) ReadBandwidthLimit(n, &r, errors, &d);
  if (const toml::node* n = r.Take("bandwidth")) {
    ReadBandwidth(n, &r, errors, &d);
    if (const toml::node* old = r.Node("bandwidth_limit")) {
      errors->Add(old->source(), "destination '" + d.name +
                                     "': bandwidth_limit and bandwidth go not together (write the always-on cap as "
                                     "the last bandwidth window, { limit = \"...\" })");
    }
  }
  r.ReadBool("priority_above_limit", &d.priority_above_limit);
  if (const toml::node* n = r.Take("retry")) ReadRetry(n, &r, errors, &d);
  if (const toml::node* n = r.Take("tls")) ReadTls(n, &r, errors, source, &d);
  r.ReadDuration("hold_study", &d.hold_study_s);
  std::string resend;
  r.ReadEnum("resend", {"if-changed", "never", "always"}, &resend);
  if (resend == "never") d.resend = Destination::Resend::kNever;
  if (resend == "always") d.resend = Destination::Resend::kAlways;
  r.ReadDuration("resend_window", &d.resend_window_s);
  if (const toml::node* n = r.Node("resend_window"); n != nullptr && d.resend_window_s > kMaxResendWindowS) {
    errors->Add(n->source(), "destination '" + d.name + "'.resend_window must be at most 365d, got " +
                                 std::to_string(d.resend_window_s) + " seconds");
  }
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
  errors->Add(n.source(),
              "unknown destination '" + s->get() + "'" +
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

}  // namespace relais::rules::internal
