// `relais find`: studies in the store's delivery history by patient ID,
// name, accession, study UID, modality, date or calling AE, each with what
// went where (queued / sent / dead per destination). Opens the store
// read-only, so it works while `relais serve` runs.
#ifndef RELAIS_ROUTER_CLI_FIND_CLI_H_
#define RELAIS_ROUTER_CLI_FIND_CLI_H_

#include <CLI/CLI.hpp>
#include <string>

#include "router/operate/study_search.h"
#include "store/store.h"

namespace relais::router {

struct FindArgs {
  std::string config_path;
  std::string from, to;  // as typed; checked by FindCommand
  StudyQuery query;
  bool json = false;
};

// Adds the `find` subcommand to `app`, its options written into *args
// (which must outlive the parse).
CLI::App* AddFindCommand(CLI::App* app, FindArgs* args);

// Prints the matching studies (text, or StudiesJson with --json). Returns
// 0 (also when nothing matches: "no study matches" on stderr), 1 on a store
// error, 2 on a bad date.
int FindCommand(const store::Options& options, const FindArgs& args);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_FIND_CLI_H_
