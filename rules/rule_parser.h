// The TOML side of the rules engine, internal to rules/: the parser that
// RuleSet::Load / RuleSet::Parse (rule_parser.cc) run over the rule files.
// Only rules/ includes toml++ (STYLE.md); this header is not for the rest of
// the tree.
#ifndef RELAIS_RULES_RULE_PARSER_H_
#define RELAIS_RULES_RULE_PARSER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "rules/routing.h"
#include "rules/rule_compiled.h"
#include "rules/toml_util.h"

namespace relais::rules::internal {

// One rule file: its name, its text and, once parsed, its TOML tree and the
// errors found in it.
struct SourceDoc {
  std::string name;
  std::string text;
  toml::table root;
  bool parsed = false;
  std::unique_ptr<Errors> errors;
};

// Compiles the parsed documents into one RuleSet. Its members are defined
// along the file's seams: rule_parser.cc (the passes, [[rule]], [settings],
// the budget), rule_parser_destination.cc ([[destination]], forward targets,
// edits) and rule_parser_condition.cc (match conditions).
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
  bool CompileCondition(std::string_view key, const toml::key& key_node, const toml::node& n, int depth, Errors* errors,
                        Condition* out);
  bool CompileGroup(std::string_view key, const toml::node& n, int depth, Errors* errors, Condition* out);
  bool CompileValue(const std::string& subject, const toml::node& n, bool numbers_ok, Errors* errors, Condition* out);
  bool CompileOperator(const std::string& subject, const toml::table& t, bool tag, Errors* errors, Condition* out);
  bool CompileTime(const toml::node& n, Errors* errors, Condition* out);
  bool CompilePeer(const toml::node& n, Errors* errors, Condition* out);
  // After each rule: false, and an error at the rule, once the budget is
  // spent. OverBudget says the same without reporting (inside a rule: its
  // remaining regexes are not compiled).
  bool WithinBudget(const toml::node& rule, Errors* errors);
  bool OverBudget() const;

  std::vector<SourceDoc>* docs_;
  std::shared_ptr<RuleSetImpl> set_;
  std::map<std::string, std::string> rule_where_;
  std::string catch_all_;  // name and position of the first catch-all rule with stop
  std::string catch_all_where_;
  std::string settings_where_;
  bool too_many_rules_ = false;
  std::vector<const toml::node*> unmatched_forward_;  // resolved after destinations
  const CompileBudget& budget_;
  const uint64_t start_ms_;
  uint64_t regex_memory_ = 0;  // RegexMemory of every regex compiled so far
};

}  // namespace relais::rules::internal

#endif  // RELAIS_RULES_RULE_PARSER_H_
