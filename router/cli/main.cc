// Room router/cli/ (DESIGN.md, "The rooms of router/"): the `relais`
// commands (main.cc; queue_cli.h, rules_cli.h, backup_cli.h). Top of the
// house: may include any room, router/router.h, rules/ and the store;
// nothing includes cli/.
//
// relais: the command line. Thin wiring; the work is in the libraries.
#include <openssl/rand.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <functional>
#include <string>

#include "base/clock.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/text.h"
#include "router/cli/backup_cli.h"
#include "router/cli/cli_audit.h"
#include "router/cli/dest_name.h"
#include "router/cli/find_cli.h"
#include "router/cli/queue_cli.h"
#include "router/cli/route_cli.h"
#include "router/cli/rules_cli.h"
#include "router/cli/store_cli.h"
#include "router/operate/admin_api.h"
#include "router/record/audit.h"
#include "router/router.h"
#include "rules/routing.h"
#include "rules/rules.h"
#include "store/store.h"

namespace {

using relais::IsoTime;
using relais::JsonEscape;
using relais::JsonList;
using relais::LogEscape;
using relais::Result;
using relais::Status;

int Fail(const Status& s) {
  std::fprintf(stderr, "relais: %s\n", s.message().c_str());
  return s.code() == Status::Code::kInvalidArgument ? 2 : 1;
}

// Where every command looks for the appliance configuration without --config.
constexpr const char* kDefaultConfigPath = "/etc/relais/relais.toml";

Result<relais::rules::AppConfig> LoadConfig(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) {
    return Status::InvalidArgument("no configuration file at " + path + ": pass --config FILE" +
                                   (path == kDefaultConfigPath ? " (the default is " + path + ")" : ""));
  }
  Result<relais::rules::AppConfig> cfg = relais::rules::LoadAppConfig(path);
  if (cfg.ok()) relais::router::SetCliAuditPath(cfg->audit.path);  // CLI actions are audited there
  return cfg;
}

relais::store::Options StoreOptions(const relais::rules::AppConfig& cfg) {
  relais::store::Options so;
  so.path = cfg.store.path;
  so.max_size = cfg.store.max_size;
  so.read_only = true;
  // For the expiry times shown (store ls); admin commands neither commit
  // nor sweep. retention_ms as serve's: an object that `relais queue purge`
  // leaves without rows is kept like a delivered one (issue 14).
  so.retention_ms = static_cast<int64_t>(cfg.delivery.retention_s) * 1000;
  so.unrouted_retention_ms = static_cast<int64_t>(cfg.delivery.unrouted_retention_s) * 1000;
  so.dead_retention_ms = static_cast<int64_t>(cfg.delivery.dead_letter_retention_s) * 1000;
  so.dropped_retention_ms = static_cast<int64_t>(cfg.delivery.dropped_retention_s) * 1000;
  return so;
}

Result<std::unique_ptr<relais::store::Store>> OpenStoreReadOnly(const relais::rules::AppConfig& cfg) {
  return relais::store::Store::Open(StoreOptions(cfg));
}

// `relais route`: the destinations are those of the rule files the
// configuration names.
int CmdRoute(const std::string& config_path, const relais::router::RouteSelection& sel) {
  if (sel.uids.empty() && sel.study_uid.empty()) {
    std::fprintf(stderr, "relais route: say what to route: SOP Instance UIDs, or --study STUDY_INSTANCE_UID\n");
    return 2;
  }
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  if (cfg->rules_path.empty()) {
    std::fprintf(stderr, "relais route: no rules in %s ([rules] path): no destination to route to\n",
                 config_path.c_str());
    return 2;
  }
  return relais::router::RouteCommand(StoreOptions(*cfg), cfg->rules_path, sel);
}

// Runs `fn` with the store options of the configuration at `config_path`.
template <typename Fn>
int WithStore(const std::string& config_path, Fn fn) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  return fn(StoreOptions(*cfg));
}

// As WithStore, the --dest of `sel` first resolved to a destination name
// (case-insensitively, or exit 2 naming the known ones: dest_name.h).
template <typename Fn>
int WithQueueStore(const std::string& config_path, relais::router::QueueSelection* sel, Fn fn) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  relais::store::Options so = StoreOptions(*cfg);
  Status s = relais::router::ResolveDestinationName(cfg->rules_path, so, &sel->destination);
  if (!s.ok()) return Fail(s);
  return fn(so);
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

void PrintJson(const relais::store::ObjectMeta& m, const relais::store::ObjectLife& life) {
  std::printf(
      "{\"id\":%llu,\"sop_instance_uid\":\"%s\",\"sop_class_uid\":\"%s\",\"study_instance_uid\":\"%s\","
      "\"series_instance_uid\":\"%s\",\"patient_id\":\"%s\",\"modality\":\"%s\",\"transfer_syntax_uid\":\"%s\","
      "\"raw_size\":%llu,\"stored_size\":%llu,\"chunks\":%u,\"received\":\"%s\",\"calling_ae\":\"%s\","
      "\"called_ae\":\"%s\",\"peer\":\"%s\",\"checksum\":\"%016llx\",\"routing\":\"%s\",\"matched_rules\":[%s],"
      "\"destinations\":[%s],\"class\":\"%s\",\"goes\":\"%s\"}\n",
      static_cast<unsigned long long>(m.id), JsonEscape(m.sop_instance_uid).c_str(),
      JsonEscape(m.sop_class_uid).c_str(), JsonEscape(m.study_instance_uid).c_str(),
      JsonEscape(m.series_instance_uid).c_str(), JsonEscape(m.patient_id).c_str(), JsonEscape(m.modality).c_str(),
      JsonEscape(m.transfer_syntax_uid).c_str(), static_cast<unsigned long long>(m.raw_size),
      static_cast<unsigned long long>(m.stored_size), m.chunk_count, IsoTime(m.received_unix_ms).c_str(),
      JsonEscape(m.calling_ae).c_str(), JsonEscape(m.called_ae).c_str(), JsonEscape(m.peer_address).c_str(),
      static_cast<unsigned long long>(m.checksum), JsonEscape(m.routing).c_str(), JsonList(m.matched_rules).c_str(),
      JsonList(Destinations(m)).c_str(), relais::store::ObjectClassName(life.object_class),
      relais::router::GoesText(life).c_str());
}

int CmdServe(const std::string& config_path, const std::string& log_level) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  std::string level = log_level.empty() ? cfg->log.level : log_level;
  if (level == "debug") relais::SetLogLevel(relais::LogLevel::kDebug);
  if (level == "warn") relais::SetLogLevel(relais::LogLevel::kWarn);
  if (level == "error") relais::SetLogLevel(relais::LogLevel::kError);
  RLOG_INFO("event=start version=%s revision=%s config=%s", RELAIS_VERSION, RELAIS_GIT_REVISION, config_path.c_str());
  relais::router::SetAdminBuildInfo(RELAIS_VERSION, RELAIS_GIT_REVISION);
  Status s = relais::router::Serve(*cfg);
  if (!s.ok()) return Fail(s);
  return 0;
}

int CmdStoreLs(const std::string& config_path, const relais::router::ObjectSelection& sel, bool json) {
  Result<relais::rules::AppConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  auto store = OpenStoreReadOnly(*cfg);
  if (!store.ok()) return Fail(store.status());
  if (!json) {
    std::printf("%-64s %-4s %-22s %10s %10s %-24s %-16s %-8s %-24s %-16s %-9s %s\n", "SOP_INSTANCE_UID", "MOD", "TS",
                "BYTES", "STORED", "RECEIVED", "CALLING_AE", "ROUTING", "RULES", "DESTINATIONS", "CLASS", "GOES");
  }
  uint64_t n = 0;
  Status error;
  auto print = [&](const relais::store::ObjectMeta& m) {
    Result<relais::store::ObjectLife> life = (*store)->GetLife(m.id);
    if (life.status().IsNotFound()) return true;  // removed meanwhile
    if (!life.ok()) {
      error = life.status();
      return false;
    }
    ++n;
    if (json) {
      PrintJson(m, *life);
    } else {
      const std::string& ts = m.transfer_syntax_uid;
      // Peer text is shown escaped (control characters, bytes that are not UTF-8).
      std::printf("%-64s %-4s %-22s %10llu %10llu %-24s %-16s %-8s %-24s %-16s %-9s %s\n",
                  LogEscape(m.sop_instance_uid).c_str(), m.modality.empty() ? "-" : LogEscape(m.modality).c_str(),
                  LogEscape(ts).c_str(), static_cast<unsigned long long>(m.raw_size),
                  static_cast<unsigned long long>(m.stored_size), IsoTime(m.received_unix_ms).c_str(),
                  LogEscape(m.calling_ae).c_str(), m.routing.empty() ? "-" : m.routing.c_str(),
                  Joined(m.matched_rules).c_str(), Joined(Destinations(m)).c_str(),
                  relais::store::ObjectClassName(life->object_class), relais::router::GoesText(*life).c_str());
    }
    return true;
  };
  Status s;
  if (sel.empty()) {
    s = (*store)->List(print);
  } else {
    Result<std::vector<uint64_t>> ids = relais::router::SelectObjects(**store, sel, relais::NowUnixMs());
    s = ids.status();
    for (uint64_t id : ids.ok() ? *ids : std::vector<uint64_t>()) {
      Result<relais::store::ObjectMeta> m = (*store)->Get(id);
      if (m.ok() && !print(*m)) break;
    }
  }
  if (s.ok()) s = error;
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
  // The rule files `serve` will load, loaded by the same code and under the
  // same budget (router/serve.cc), so that an ExecStartPre check that passes
  // means `serve` starts.
  size_t rule_count = 0;
  if (!cfg->rules_path.empty()) {
    relais::rules::CompileBudget budget;
    budget.max_regex_memory = cfg->rules_max_regex_memory;
    budget.max_compile_ms = cfg->rules_max_compile_s * 1000;
    auto loaded = relais::rules::RuleSet::Load(cfg->rules_path, budget);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s: rules %s: %s\n", config_path.c_str(), cfg->rules_path.c_str(),
                   loaded.status().message().c_str());
      return 1;
    }
    rule_count = (*loaded)->rule_count();
  }
  std::printf("%s: OK (listener %s on %s:%u, store %s)\n", config_path.c_str(), cfg->listener.ae_title.c_str(),
              cfg->listener.host.c_str(), cfg->listener.port, cfg->store.path.c_str());
  if (!cfg->rules_path.empty()) std::printf("%s: OK (%zu rules)\n", cfg->rules_path.c_str(), rule_count);
  else std::printf("no [rules] path: objects are stored and not routed\n");
  return 0;
}

// `relais admin token NAME`: a new random token (32 bytes from OpenSSL's
// CSPRNG, base64url without padding) and the [[admin.token]] lines holding
// only its SHA-256; the token itself is shown once and stored nowhere.
int CmdAdminToken(const std::string& name, const std::string& role) {
  if (name.empty() || name.size() > 64) {
    std::fprintf(stderr, "relais admin token: NAME must be 1-64 characters\n");
    return 2;
  }
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    std::fprintf(stderr, "relais admin token: the random generator failed (OpenSSL RAND_bytes)\n");
    return 1;
  }
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string token;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      token += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) token += kAlphabet[(acc << (6 - bits)) & 63];
  std::printf("token: %s\n", token.c_str());
  std::printf("(shown once: give it to its user; Relais keeps only its SHA-256)\n\n");
  std::printf("[[admin.token]]\nname = \"%s\"\nrole = \"%s\"\nsha256 = \"%s\"\n", JsonEscape(name).c_str(),
              role.c_str(), relais::Sha256Hex(token).c_str());
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

  CLI::App* admin = app.add_subcommand("admin", "Admin API tools");
  admin->require_subcommand(1);
  std::string token_name;
  std::string token_role = "viewer";
  CLI::App* atoken = admin->add_subcommand("token", "Make a new admin API token and print its [[admin.token]] lines");
  atoken->add_option("NAME", token_name, "Who uses it (shown in logs and the audit trail)")->required();
  atoken->add_option("--role", token_role, "viewer, operator or admin (default: viewer)")
      ->check(CLI::IsMember({"viewer", "operator", "admin"}));

  CLI::App* config = app.add_subcommand("config", "Configuration tools");
  config->require_subcommand(1);
  std::string check_path;
  CLI::App* check = config->add_subcommand("check", "Validate a configuration file");
  check->add_option("FILE", check_path, "Configuration file (default: /etc/relais/relais.toml)");

  CLI::App* store = app.add_subcommand(
      "store", "Inspect the object store (ls/verify/export read-only), remove objects (purge); works while serving");
  store->require_subcommand(1);
  CLI::App* ls = store->add_subcommand("ls", "List stored objects");
  ls->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  bool json = false;
  ls->add_flag("--json", json, "One JSON object per line");
  relais::router::ObjectSelection osel;
  std::string older_than, class_name;
  bool purge_dry_run = false;
  auto add_selectors = [&](CLI::App* cmd) {
    cmd->add_option("--uid", osel.uids, "SOP Instance UID (repeatable)");
    cmd->add_option("--study", osel.study, "Study Instance UID");
    cmd->add_option("--older-than", older_than, "Received longer ago than this (\"30d\", \"12h\")");
    cmd->add_option("--class", class_name, "queued, dead, delivered, unrouted or dropped")
        ->check(CLI::IsMember({"queued", "dead", "delivered", "unrouted", "dropped"}));
  };
  add_selectors(ls);
  CLI::App* spurge = store->add_subcommand(
      "purge",
      "Remove objects (with their rows and attempt log) by selector; selectors combine (AND); works while serving");
  spurge->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  add_selectors(spurge);
  spurge->add_flag("--dry-run", purge_dry_run, "Only list what would be removed");
  CLI::App* sverify = store->add_subcommand(
      "verify", "Read every object back and check chunks, checksums, indexes and rows; exit 1 on any problem");
  sverify->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  bool verify_repair = false;
  sverify->add_flag("--repair", verify_repair,
                    "Move unreadable objects to the quarantine list (with the reason), remove orphan rows and "
                    "chunks, recompute the byte totals; works while serving");
  CLI::App* exp = store->add_subcommand("export", "Write one object as a DICOM Part 10 file");
  exp->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  std::string uid;
  std::string out;
  exp->add_option("SOP_INSTANCE_UID", uid, "SOP Instance UID of the object")->required();
  exp->add_option("-o,--output", out, "Output file")->required();

  CLI::App* queue = app.add_subcommand("queue", "Delivery queues and dead letters (works while serving)");
  queue->require_subcommand(1);
  relais::router::QueueSelection qsel;
  bool qjson = false;
  CLI::App* qls = queue->add_subcommand("ls", "List queued and dead-letter rows");
  qls->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  qls->add_option("--dest", qsel.destination, "Only this destination");
  qls->add_flag("--dead", qsel.dead, "Only dead-letter rows");
  qls->add_flag("--json", qjson, "One JSON object per line");
  qls->add_option("--study", qsel.study, "Only the stored objects of this Study Instance UID");
  qls->add_option("UID", qsel.uids, "Only these SOP Instance UIDs");
  CLI::App* qretry = queue->add_subcommand(
      "retry", "Send again: dead-letter rows back to the queue, queued rows due now (after fixing the cause)");
  qretry->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  qretry->add_option("--dest", qsel.destination,
                     "Only this destination; alone: send its queued rows now (resets its backoff)");
  qretry->add_option("--study", qsel.study, "Only the stored objects of this Study Instance UID (send now)");
  auto* qretry_dead = qretry->add_flag("--dead", qsel.dead, "Every dead-letter row");
  auto* qretry_uids = qretry->add_option("UID", qsel.uids, "SOP Instance UIDs to send again");
  qretry_dead->excludes(qretry_uids);
  CLI::App* qpurge =
      queue->add_subcommand("purge", "Delete rows: they will not be sent (objects nobody needs are removed)");
  qpurge->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  auto* qpurge_dest = qpurge->add_option("--dest", qsel.destination, "Only (or every row of) this destination");
  auto* qpurge_dead = qpurge->add_flag("--dead", qsel.dead, "Dead-letter rows only");
  qpurge->add_option("--study", qsel.study, "Only the rows of this Study Instance UID's stored objects");
  auto* qpurge_uids = qpurge->add_option("UID", qsel.uids, "SOP Instance UIDs");
  relais::router::PurgeConfirm purge_confirm;
  purge_confirm.interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
  qpurge->add_flag("--dry-run", purge_confirm.dry_run, "Only show what would be purged");
  qpurge->add_flag("--yes,-y", purge_confirm.yes, "Do not ask (required without a terminal)");
  (void)qpurge_dest;
  (void)qpurge_dead;
  (void)qpurge_uids;

  relais::router::RouteSelection rsel;
  CLI::App* route = app.add_subcommand(
      "route", "Send stored objects to a destination of the rules, as a manual action (works while serving)");
  route->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  route->add_option("--to", rsel.to, "Destination name (one of the rules' destinations)")->required();
  auto* route_study = route->add_option("--study", rsel.study_uid, "Every stored object of this Study Instance UID");
  auto* route_uids = route->add_option("UID", rsel.uids, "SOP Instance UIDs");
  route_study->excludes(route_uids);
  relais::router::FindArgs find_args;
  CLI::App* find = relais::router::AddFindCommand(&app, &find_args);

  CLI::App* object = app.add_subcommand("object", "One stored object");
  object->require_subcommand(1);
  std::string show_uid;
  bool show_json = false;
  CLI::App* oshow = object->add_subcommand("show", "Where it came from, which rule, where it goes, every attempt");
  oshow->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  oshow->add_option("SOP_INSTANCE_UID", show_uid, "SOP Instance UID")->required();
  oshow->add_flag("--json", show_json, "One JSON object");

  std::string backup_dir;
  CLI::App* backup = app.add_subcommand("backup", "Consistent hot copy of the store into DIR (works while serving)");
  backup->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  backup->add_option("DIR", backup_dir, "New or empty directory for the backup")->required();
  CLI::App* restore = app.add_subcommand("restore", "Put a backup back as the store (its path must hold no store)");
  restore->add_option("--config,-c", config_path, "Appliance configuration (TOML)")->required();
  restore->add_option("DIR", backup_dir, "Directory written by relais backup")->required();

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

  CLI::App* audit = app.add_subcommand("audit", "Audit trail tools");
  audit->require_subcommand(1);
  std::vector<std::string> audit_paths;
  CLI::App* averify = audit->add_subcommand("verify",
                                            "Check the hash chain of audit files given oldest first (audit.jsonl.* "
                                            "audit.jsonl); report the first broken line");
  averify->add_option("FILE", audit_paths, "Audit files (JSON lines), oldest first")->required();

  // --config is optional everywhere: kDefaultConfigPath unless given.
  config_path = kDefaultConfigPath;
  std::function<void(CLI::App*)> default_config = [&](CLI::App* cmd) {
    for (CLI::App* sub : cmd->get_subcommands([](CLI::App*) { return true; })) {
      if (CLI::Option* o = sub->get_option_no_throw("--config")) {
        o->required(false);
        o->description(std::string(o->get_description()) + " (default: " + kDefaultConfigPath + ")");
      }
      default_config(sub);
    }
  };
  default_config(&app);

  CLI11_PARSE(app, argc, argv);

  if (averify->parsed()) return relais::router::AuditVerifyCommand(audit_paths);

  if (rcheck->parsed()) return relais::router::RulesCheck(rules_check_path);
  if (rtest->parsed()) return relais::router::RulesTest(rt);

  if (atoken->parsed()) return CmdAdminToken(token_name, token_role);
  if (serve->parsed()) return CmdServe(config_path, log_level);
  if (check->parsed()) return CmdConfigCheck(check_path.empty() ? std::string(kDefaultConfigPath) : check_path);
  if (ls->parsed() || spurge->parsed()) {
    if (!older_than.empty()) {
      osel.older_than_ms = relais::router::ParseCliDuration(older_than);
      if (!osel.older_than_ms) {
        std::fprintf(stderr, "relais store: --older-than must be a duration such as 30d, 12h, 45m or 90s\n");
        return 2;
      }
    }
    if (!class_name.empty()) {
      relais::store::ObjectClass c;
      relais::store::ParseObjectClass(class_name, &c);
      osel.cls = c;
    }
  }
  if (ls->parsed()) return CmdStoreLs(config_path, osel, json);
  if (spurge->parsed()) {
    if (osel.empty()) {
      std::fprintf(stderr, "relais store purge: say what to remove: --uid, --study, --older-than and/or --class\n");
      return 2;
    }
    return WithStore(config_path, [&](const auto& so) { return relais::router::StorePurge(so, osel, purge_dry_run); });
  }
  if (exp->parsed()) return CmdStoreExport(config_path, uid, out);
  if (sverify->parsed()) {
    return WithStore(config_path, [&](const auto& so) { return relais::router::VerifyCommand(so, verify_repair); });
  }
  if (find->parsed()) {
    if (find_args.config_path.empty()) find_args.config_path = config_path;  // the default
    return WithStore(find_args.config_path, [&](const auto& so) { return relais::router::FindCommand(so, find_args); });
  }
  if (qls->parsed()) {
    return WithQueueStore(config_path, &qsel, [&](const auto& so) { return relais::router::QueueLs(so, qsel, qjson); });
  }
  if (route->parsed()) return CmdRoute(config_path, rsel);
  if (qretry->parsed()) {
    if (!qsel.dead && qsel.uids.empty() && qsel.destination.empty() && qsel.study.empty()) {
      std::fprintf(stderr,
                   "relais queue retry: say what to retry: --dead, --dest NAME (send now), --study UID, or SOP "
                   "Instance UIDs\n");
      return 2;
    }
    return WithQueueStore(config_path, &qsel, [&](const auto& so) { return relais::router::QueueRetry(so, qsel); });
  }
  if (qpurge->parsed()) {
    if (!qsel.dead && qsel.uids.empty() && qsel.destination.empty() && qsel.study.empty()) {
      std::fprintf(stderr,
                   "relais queue purge: say what to purge: --dead, --dest NAME, --study UID, or SOP Instance UIDs\n");
      return 2;
    }
    return WithQueueStore(config_path, &qsel,
                          [&](const auto& so) { return relais::router::QueuePurge(so, qsel, purge_confirm); });
  }
  if (backup->parsed()) {
    return WithStore(config_path, [&](const auto& so) { return relais::router::BackupCommand(so, backup_dir); });
  }
  if (restore->parsed()) {
    return WithStore(config_path, [&](const auto& so) { return relais::router::RestoreCommand(so, backup_dir); });
  }
  if (oshow->parsed()) {
    return WithStore(config_path, [&](const auto& so) { return relais::router::ObjectShow(so, show_uid, show_json); });
  }
  return 1;
}
