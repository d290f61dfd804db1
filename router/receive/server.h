// Room router/receive/ (DESIGN.md, "The rooms of router/"): taking objects
// in. The listener and loop (server.h), the SCP association
// (association.h), access policy (access.h), data set header parsing
// (dataset_header.h) and DCMTK's UID dictionary for negotiation
// (uid_dictionary.h).
// May include: base/, protocol/, net/, record/ (audit, counters), rules/,
// the store, libuv, DCMTK. Not deliver/ or operate/.
//
// Server: the libuv loop that owns the DICOM listener, every accepted
// association, the signal handlers, and the bridge from store threads back
// to the loop. Internal to router/.
//
// Thread: everything runs on the loop thread except Post(), which any
// thread may call, and the reading and compiling of a rules reload, which
// runs on the libuv pool (RequestRulesReload).
#ifndef RELAIS_ROUTER_RECEIVE_SERVER_H_
#define RELAIS_ROUTER_RECEIVE_SERVER_H_

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "router/protocol/presentation.h"
#include "router/receive/access.h"
#include "rules/routing.h"
#include "rules/rules.h"
#include "store/store.h"

namespace relais::router {

class AuditLog;
class Metrics;
class TlsContext;
class ScpAssociation;

// Settings an association needs, copied from the config at start.
struct ScpSettings {
  std::string ae_title;
  uint32_t max_pdu = 262144;
  uint32_t max_associations = 64;
  uint64_t artim_timeout_ms = 30000;
  uint64_t idle_timeout_ms = 300000;
  ul::AcceptPolicy accept;
  // An association stops reading its socket while more than this many bytes
  // of its objects wait to be committed (back-pressure).
  uint64_t max_uncommitted_bytes = 16u << 20;
  // Rule file or directory; empty: no rules (objects are kept, unrouted).
  std::string rules_path;
  // Budget of every load of the rules ([rules] max_regex_memory,
  // max_compile_time). Its clock and cancel flag are the Server's own.
  rules::CompileBudget rules_budget;
  // Who may associate ([[listener.allow]], [[listener.user]]).
  AccessPolicy access;
};

class Server {
 public:
  Server(uv_loop_t* loop, store::Store* store, ScpSettings settings);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on host:port. Loop thread.
  Status Listen(const std::string& host, uint16_t port);
  // A second listener on host:port whose connections speak DICOM TLS with
  // `tls` (router/net/tls.h); same AE title and settings. Loop thread.
  Status ListenTls(const std::string& host, uint16_t port, std::shared_ptr<TlsContext> tls);
  // Stops accepting, aborts every association, closes every handle; the
  // loop then runs out of work. Loop thread.
  void Shutdown();

  // Graceful stop (SIGTERM): stops accepting at once, lets the open
  // associations finish (their peers release them) for at most
  // `deadline_ms`, then Shutdown()s, aborting whatever is still open; commits
  // already under way complete and are answered. `done` runs on the loop
  // after the Shutdown. Loop thread.
  void Drain(uint64_t deadline_ms, std::function<void()> done);
  bool draining() const { return draining_; }

  // Runs `fn` on the loop thread soon. Any thread.
  void Post(std::function<void()> fn);

  store::Store* store() { return store_; }
  const ScpSettings& settings() const { return settings_; }
  uv_loop_t* loop() { return loop_; }
  size_t association_count() const { return associations_.size(); }
  // Associations accepted and not yet closed (for max_associations).
  uint32_t established_count() const { return established_; }
  // The ARTIM timeout for a connection accepted now: settings().artim_timeout_ms,
  // or at most 5 s while connections that have not associated fill half of
  // the connection cap.
  uint64_t ArtimForNewConnection() const;
  void OnEstablished(int delta) { established_ += delta; }

  // Loads the rules from settings().rules_path and starts watching them
  // for changes (reloaded on change and on SIGHUP, with
  // RequestRulesReload). Synchronous: at startup nothing is served yet; the
  // budget bounds it. Loop thread.
  Status InitRules();
  // Reloads the rules without blocking the loop: they are read and
  // compiled on a worker thread (the libuv pool) while the old rules go on
  // serving, and swapped in on the loop thread when done. A request made
  // while a reload runs is coalesced: one more reload runs after it (for
  // "file changed", only if the files changed meanwhile). The outcome is
  // logged ("event=rules-reload-started", then "event=rules-reloaded" or
  // "event=rules-reload-failed" with every error at file:line:column),
  // audited and counted; a failure keeps the old rules. Loop thread.
  // `done`, when given, is called on the loop thread with the outcome of
  // the reload that serves this request (OK; InvalidArgument with one
  // "FILE:LINE:COLUMN: message" per line, the old rules kept; Unavailable
  // when no rules are configured or Relais is shutting down), for a caller
  // that answers with it (the admin API).
  using RulesReloadDone = std::function<void(Status)>;
  void RequestRulesReload(const char* why, RulesReloadDone done = nullptr);
  // Reloads the rules on the calling (loop) thread and returns the outcome
  // (the admin API uses RequestRulesReload with `done` instead): on failure keeps
  // the old ones, logs every error with file:line:column, counts the
  // failure and returns the errors (InvalidArgument, one
  // "FILE:LINE:COLUMN: message" per line); Unavailable when no rules are
  // configured. Blocks the loop for as long as the compile takes (at most
  // the budget); prefer RequestRulesReload. Loop thread.
  Status ReloadRules(const char* why);
  // The current rules (null when no rules are configured). An association
  // keeps the snapshot it took when it was accepted.
  std::shared_ptr<const rules::RuleSet> rules() const { return rules_; }
  uint64_t rule_reloads() const { return rule_reloads_; }
  // Called with the new rules after each successful load (InitRules and
  // every reload). Set before InitRules.
  void SetRulesListener(std::function<void(std::shared_ptr<const rules::RuleSet>)> fn) {
    rules_listener_ = std::move(fn);
  }
  uint64_t rule_reload_failures() const { return rule_reload_failures_; }
  // Called on the loop thread after each reload's outcome is in force
  // (success or failure), e.g. to evaluate the alerts at once.
  void SetRulesOutcomeListener(std::function<void()> fn) { rules_outcome_listener_ = std::move(fn); }
  // The first error of the last reload when it failed ("FILE:LINE:COLUMN:
  // message"), empty when the rules in force are what the files hold (the
  // last load succeeded). Cleared by the next successful load. Loop thread.
  const std::string& rules_reload_error() const { return rules_reload_error_; }
  // When the last failed reload happened, and when the rules in force were
  // loaded (Unix ms; 0 when none). Loop thread.
  int64_t rules_reload_failed_unix_ms() const { return rules_reload_failed_unix_ms_; }
  int64_t rules_loaded_unix_ms() const { return rules_loaded_unix_ms_; }
  // The audit trail (null: none). Not owned; must outlive the Server.
  void SetAudit(AuditLog* audit) { audit_ = audit; }
  AuditLog* audit() const { return audit_; }
  // [audit] on_failure = "refuse" (true, the default) or "continue": whether
  // intake stops while the audit trail cannot be written (association.cc,
  // "Audit failure"). Set before Start. Loop thread.
  void SetAuditRequired(bool required) { audit_required_ = required; }
  // True when an audit trail is configured, required, and failing now.
  bool AuditBlocksIntake() const;
  // Counters of the listener (null: none). Not owned; must outlive the Server.
  void SetMetrics(Metrics* metrics) { metrics_ = metrics; }
  Metrics* metrics() const { return metrics_; }
  // Intake gate (storage water marks): while `reason` is not empty, every
  // new C-STORE is answered 0xA700 (Refused: Out of Resources) with
  // `reason` as its Error Comment; its data set is read and discarded.
  // Associations, C-ECHO and delivery go on. Loop thread.
  void SetIntakeClosed(std::string reason) { intake_closed_ = std::move(reason); }
  const std::string& intake_closed() const { return intake_closed_; }

  // Association bookkeeping (loop thread).
  ScpAssociation* FindAssociation(uint64_t id);
  // Store progress: let associations paused for back-pressure read again.
  void ResumePaused();
  void OnAssociationClosed(uint64_t id);

 private:
  // Connections cannot starve associations (issue 13): per peer address and
  // at the connection cap, the oldest connection that has not associated is
  // closed to make room for `a`; established associations never are.
  void MakeRoomFor(ScpAssociation* a);
  // The oldest connection other than `except` that has not associated and is
  // not closing (from `peer_ip` only, when not empty), and how many there are.
  ScpAssociation* OldestUnassociated(const ScpAssociation* except, const std::string& peer_ip, size_t* count) const;
  void Evict(ScpAssociation* victim, const char* reason, const ScpAssociation* for_whom);
  // Connections held and not closing.
  size_t LiveConnections() const;

  static void OnConnection(uv_stream_t* server, int status) noexcept;
  static void OnAsync(uv_async_t* handle) noexcept;
  static void OnRulesChanged(uv_fs_event_t* handle, const char* filename, int events, int status) noexcept;
  static void OnRulesDebounce(uv_timer_t* handle) noexcept;
  struct RulesLoad;
  static void OnRulesLoadWork(uv_work_t* req) noexcept;
  static void OnRulesLoadDone(uv_work_t* req, int status) noexcept;
  void StartRulesLoad(const std::string& why, std::vector<RulesReloadDone> done);
  // Installs a finished load, or logs why it failed; keeps the newest:
  // a load started before the rules in force were loaded is dropped.
  Status ApplyRules(uint64_t seq, const std::string& why, const std::string& fingerprint,
                    Result<std::shared_ptr<const rules::RuleSet>> loaded);
  rules::CompileBudget RulesBudget() const;
  void Accept(uv_tcp_t* listener, std::shared_ptr<TlsContext> tls);
  Status Bind(uv_tcp_t* handle, const std::string& host, uint16_t port, const char* what);
  static std::string RulesFingerprint(const std::string& path);
  void RunPosted();

  uv_loop_t* loop_;
  store::Store* store_;
  ScpSettings settings_;
  uv_tcp_t listener_;
  bool listening_ = false;
  uv_tcp_t tls_listener_;
  bool tls_listening_ = false;
  std::shared_ptr<TlsContext> tls_;
  uv_async_t async_;
  bool shutting_down_ = false;
  bool async_closed_ = false;  // guarded by posted_mu_
  uint32_t established_ = 0;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<ScpAssociation>> associations_;
  std::shared_ptr<const rules::RuleSet> rules_;
  std::function<void(std::shared_ptr<const rules::RuleSet>)> rules_listener_;
  uint64_t rule_reloads_ = 0;
  AuditLog* audit_ = nullptr;
  bool audit_required_ = true;
  Metrics* metrics_ = nullptr;
  std::string intake_closed_;
  uint64_t rule_reload_failures_ = 0;
  std::string rules_reload_error_;  // first error of the failed reload now reported, or empty
  int64_t rules_reload_failed_unix_ms_ = 0;
  int64_t rules_loaded_unix_ms_ = 0;
  std::function<void()> rules_outcome_listener_;
  uv_fs_event_t rules_watch_;
  bool rules_watching_ = false;
  std::string rules_fingerprint_;      // contents of the rule files last loaded (or last failed)
  RulesLoad* rules_load_ = nullptr;    // the reload running on the pool, if any (owned by its request)
  bool rules_reload_pending_ = false;  // asked for while one ran
  std::string rules_reload_pending_why_;
  std::vector<RulesReloadDone> rules_reload_pending_done_;  // told the outcome of the pending reload
  uint64_t rules_load_seq_ = 0;                             // loads started
  uint64_t rules_applied_seq_ = 0;                          // the load whose outcome is in force
  std::atomic<bool> rules_cancel_{false};                   // set at Shutdown: a running load stops between rules
  uv_timer_t rules_debounce_;
  bool rules_debounce_open_ = false;
  bool draining_ = false;
  std::function<void()> drain_done_;
  uv_timer_t drain_timer_;
  bool drain_timer_open_ = false;
  void FinishDrain(const char* why);
  void CloseListeners();
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECEIVE_SERVER_H_
