// libFuzzer target: the TOML loaders (rules/rules.h, rules/routing.h): the
// appliance configuration and the rule/destination files. Every input must
// give a configuration or errors of the form FILE:LINE:COLUMN: message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "rules/routing.h"
#include "rules/rules.h"

namespace {

// Every line of an error message starts with "fuzz.toml:<line>:<col>: ".
void CheckErrors(const std::string& msg) {
  if (msg.empty()) abort();
  size_t start = 0;
  while (start < msg.size()) {
    size_t end = msg.find('\n', start);
    if (end == std::string::npos) end = msg.size();
    if (msg.compare(start, 10, "fuzz.toml:") != 0) abort();
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  relais::Result<relais::rules::AppConfig> cfg = relais::rules::ParseAppConfig(text, "fuzz.toml");
  if (!cfg.ok()) CheckErrors(cfg.status().message());
  auto rules = relais::rules::RuleSet::Parse(text, "fuzz.toml");
  if (!rules.ok()) CheckErrors(rules.status().message());
  return 0;
}
