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
//
// The Parser (rule_parser.h) is defined in three files along its seams: this
// one (the passes, [[rule]], [settings], the budget, loading the files),
// rule_parser_destination.cc and rule_parser_condition.cc.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <toml++/toml.h>

#include "base/clock.h"
#include "rules/routing.h"
#include "rules/rule_compiled.h"
#include "rules/rule_parser.h"
#include "rules/toml_util.h"

namespace relais::rules {
namespace internal {
namespace {

uint64_t NowMs(const CompileBudget& budget) {
  if (budget.now_ms) return budget.now_ms();
  return static_cast<uint64_t>(relais::NowMs());
}

const std::vector<std::string_view> kRootKeys = {"destination", "rule", "settings"};

// "512 KiB", "130 MiB".
std::string SizeText(uint64_t bytes) {
  return bytes < (uint64_t{10} << 20) ? std::to_string((bytes + 512) >> 10) + " KiB"
                                      : std::to_string((bytes + (1 << 19)) >> 20) + " MiB";
}

}  // namespace

bool Parser::OverBudget() const {
  return regex_memory_ > budget_.max_regex_memory ||
         (budget_.max_compile_ms != 0 && NowMs(budget_) - start_ms_ > budget_.max_compile_ms);
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
      if (!node.is_table())
        doc.errors->Add(node.source(), "[settings] must be a table, got " + std::string(TypeName(node.type())));
    } else if (!node.is_array_of_tables()) {
      doc.errors->Add(node.source(),
                      std::string(k) + " must be written [[" + std::string(k) + "]] (an array of tables)");
    }
  }
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

namespace {

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

}  // namespace

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

namespace {

void ParseDoc(SourceDoc* doc) {
  doc->errors = std::make_unique<Errors>(doc->name);
  if (doc->text.size() > kMaxRuleFileBytes) {
    doc->errors->Add(1, 1,
                     "file is too large (" + std::to_string(doc->text.size()) + " bytes; a rule file is at most " +
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
