// relais: the command line. Thin wiring; the work is in the libraries.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <ctime>
#include <string>

#include "base/log.h"
#include "router/router.h"
#include "router/rules_cli.h"
#include "rules/rules.h"
#include "store/store.h"

namespace {

using relais::Result;
using relais::Status;

int Fail(const Status& s) {
  std::fprintf(stderr, "relais: %s\n", s.message().c_str());
  return s.code() == Status::Code::kInvalidArgument ? 2 : 1;
}

Result<relais::rules::AppConfig> LoadConfig(const std::string& path) {
  return relais::rules::LoadAppConfig(path);
}

Result<std::unique_ptr<relais::store::Store>> OpenStoreReadOnly(const relais::rules::AppConfig& cfg) {
  relais::store::Options so;
  so.path = cfg.store.path;
  so.max_size = cfg.store.max_size;
  so.read_only = true;
  return relais::store::Store::Open(so);
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string IsoTime(int64_t unix_ms) {
  time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  return buf;
}

std::string JsonList(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "\"" : ",\"") + JsonEscape(s) + "\"";
  return out;
}

std::vector<std::string> Destinations(const relais::store::ObjectMeta& m) {
  std::vector<std::string> out;
  for (const auto& r : m.routes) out.push_back(r.destination);
  return out;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out.empty() ? "-" : out;
}

void PrintJson(const relais::store::ObjectMeta& m) {
  std::printf(
      "{\"id\":%llu,\"sop_instance_uid\":\"%s\",\"sop_class_uid\":\"%s\",\"study_instance_uid\":\"%s\","
      "\"series_instance_uid\":\"%s\",\"patient_id\":\"%s\",\"modality\":\"%s\",\"transfer_syntax_uid\":\"%s\","
      "\"raw_size\":%llu,\"stored_size\":%llu,\"chunks\":%u,\"received\":\"%s\",\"calling_ae\":\"%s\","
      "\"called_ae\":\"%s\",\"peer\":\"%s\",\"checksum\":\"%016llx\",\"routing\":\"%s\",\"matched_rules\":[%s],"
      "\"destinations\":[%s]}\n",
      static_cast<unsigned long long>(m.id), JsonEscape(m.sop_instance_uid).c_str(),
      JsonEscape(m.sop_class_uid).c_str(), JsonEscape(m.study_instance_uid).c_str(),
      JsonEscape(m.series_instance_uid).c_str(), JsonEscape(m.patient_id).c_str(), JsonEscape(m.modality).c_str(),
      JsonEscape(m.transfer_syntax_uid).c_str(), static_cast<unsigned long long>(m.raw_size),
      static_cast<unsigned long long>(m.stored_size), m.chunk_count, IsoTime(m.received_unix_ms).c_str(),
      JsonEscape(m.calling_ae).c_str(), JsonEscape(m.called_ae).c_str(), JsonEscape(m.peer_address).c_str(),
      static_cast<unsigned long long>(m.checksum), JsonEscape(m.routing).c_str(), JsonList(m.matched_rules).c_str(),
      JsonList(Destinations(m)).c_str());
}

int CmdServe(const std::string& config_path, const std::string& log_level) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  std::string level = log_level.empty() ? cfg->log.level : log_level;
  if (level == "debug") relais::SetLogLevel(relais::LogLevel::kDebug);
  if (level == "warn") relais::SetLogLevel(relais::LogLevel::kWarn);
  if (level == "error") relais::SetLogLevel(relais::LogLevel::kError);
  RLOG_INFO("event=start version=%s revision=%s config=%s", RELAIS_VERSION, RELAIS_GIT_REVISION,
            config_path.c_str());
  Status s = relais::router::Serve(*cfg);
  if (!s.ok()) return Fail(s);
  return 0;
}

int CmdStoreLs(const std::string& config_path, bool json) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  auto store = OpenStoreReadOnly(*cfg);
  if (!store.ok()) return Fail(store.status());
  if (!json) {
    std::printf("%-64s %-4s %-22s %10s %10s %-24s %-16s %-8s %-24s %s\n", "SOP_INSTANCE_UID", "MOD", "TS", "BYTES",
                "STORED", "RECEIVED", "CALLING_AE", "ROUTING", "RULES", "DESTINATIONS");
  }
  uint64_t n = 0;
  Status s = (*store)->List([&](const relais::store::ObjectMeta& m) {
    ++n;
    if (json) {
      PrintJson(m);
    } else {
      const std::string& ts = m.transfer_syntax_uid;
      std::printf("%-64s %-4s %-22s %10llu %10llu %-24s %-16s %-8s %-24s %s\n", m.sop_instance_uid.c_str(),
                  m.modality.empty() ? "-" : m.modality.c_str(), ts.c_str(),
                  static_cast<unsigned long long>(m.raw_size), static_cast<unsigned long long>(m.stored_size),
                  IsoTime(m.received_unix_ms).c_str(), m.calling_ae.c_str(),
                  m.routing.empty() ? "-" : m.routing.c_str(), Joined(m.matched_rules).c_str(),
                  Joined(Destinations(m)).c_str());
    }
    return true;
  });
  if (!s.ok()) return Fail(s);
  if (!json) std::fprintf(stderr, "%llu objects\n", static_cast<unsigned long long>(n));
  return 0;
}

int CmdStoreExport(const std::string& config_path, const std::string& uid, const std::string& out) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  auto store = OpenStoreReadOnly(*cfg);
  if (!store.ok()) return Fail(store.status());
  Status s = (*store)->ExportPart10(uid, out);
  if (!s.ok()) return Fail(s);
  return 0;
}

int CmdConfigCheck(const std::string& config_path) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
    return 1;
  }
  std::printf("%s: OK (listener %s on %s:%u, store %s)\n", config_path.c_str(), cfg->listener.ae_title.c_str(),
              cfg->listener.host.c_str(), cfg->listener.port, cfg->store.path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Relais: a DICOM store-and-forward router"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("relais ") + RELAIS_VERSION + " (" + RELAIS_GIT_REVISION + ")");

  std::string config_path;
  std::string log_level;
  CLI::App* serve = app.add_subcommand("serve", "Run the DICOM listener in the foreground");
  serve->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  serve->add_option("--log-level", log_level, "debug, info, warn or error (overrides [log] level)")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));

  CLI::App* config = app.add_subcommand("config", "Configuration tools");
  config->require_subcommand(1);
  std::string check_path;
  CLI::App* check = config->add_subcommand("check", "Validate a configuration file");
  check->add_option("FILE", check_path, "Configuration file")->required();

  CLI::App* store = app.add_subcommand("store", "Inspect the object store (read-only, works while serving)");
  store->require_subcommand(1);
  CLI::App* ls = store->add_subcommand("ls", "List stored objects");
  ls->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  bool json = false;
  ls->add_flag("--json", json, "One JSON object per line");
  CLI::App* exp = store->add_subcommand("export", "Write one object as a DICOM Part 10 file");
  exp->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  std::string uid;
  std::string out;
  exp->add_option("SOP_INSTANCE_UID", uid, "SOP Instance UID of the object")->required();
  exp->add_option("-o,--output", out, "Output file")->required();

  CLI::App* rules = app.add_subcommand("rules", "Rule file tools");
  rules->require_subcommand(1);
  std::string rules_check_path;
  CLI::App* rcheck = rules->add_subcommand("check", "Validate a rule file or directory");
  rcheck->add_option("PATH", rules_check_path, "Rule file or directory of *.toml")->required();
  relais::router::RulesTestOptions rt;
  CLI::App* rtest = rules->add_subcommand("test", "Dry run: where would these files go?");
  rtest->add_option("--rules", rt.rules_path, "Rule file or directory")->required();
  rtest->add_option("--calling-ae", rt.calling_ae, "Calling AE title of the pretend sender");
  rtest->add_option("--called-ae", rt.called_ae, "Called AE title");
  rtest->add_option("--peer", rt.peer_ip, "IP address of the pretend sender");
  rtest->add_option("--listener", rt.listener, "Listener name");
  rtest->add_option("--at", rt.at, "Pretend local time, \"YYYY-MM-DD HH:MM\" (default: now)");
  rtest->add_flag("--explain", rt.explain, "Say why each rule did or did not match");
  rtest->add_flag("--json", rt.json, "One JSON object per file");
  rtest->add_option("FILE", rt.files, "DICOM files")->required();

  CLI11_PARSE(app, argc, argv);

  if (rcheck->parsed()) return relais::router::RulesCheck(rules_check_path);
  if (rtest->parsed()) return relais::router::RulesTest(rt);

  if (serve->parsed()) return CmdServe(config_path, log_level);
  if (check->parsed()) return CmdConfigCheck(check_path);
  if (ls->parsed()) return CmdStoreLs(config_path, json);
  if (exp->parsed()) return CmdStoreExport(config_path, uid, out);
  return 1;
}
