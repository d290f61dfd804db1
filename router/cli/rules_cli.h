// `relais rules check` and `relais rules test`: the admin's tools for rule
// files. Thin: the work is in rules/ (RuleSet) and DCMTK (reading files).
#ifndef RELAIS_ROUTER_CLI_RULES_CLI_H_
#define RELAIS_ROUTER_CLI_RULES_CLI_H_

#include <string>
#include <vector>

namespace relais::router {

// Validates a rule file or directory. Prints every error as
// FILE:LINE:COLUMN: message (stdout) and returns 1, or prints a summary and
// returns 0.
int RulesCheck(const std::string& path);

struct RulesTestOptions {
  std::string rules_path;
  std::string calling_ae = "ANY-SCU";
  std::string called_ae = "RELAIS";
  std::string peer_ip = "127.0.0.1";
  std::string listener = "default";
  std::string at;  // "YYYY-MM-DD HH:MM" local time; empty = now
  bool explain = false;
  bool json = false;
  std::vector<std::string> files;
};

// Dry run: for each DICOM file, which rules match and where it would go,
// with the tag edits per destination. Returns 0, or 1 if a file or the
// rules could not be read.
int RulesTest(const RulesTestOptions& options);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_RULES_CLI_H_
