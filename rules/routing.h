// Routing rules and destinations: the TOML rule files admins write, parsed,
// validated (every error as FILE:LINE:COLUMN: message), compiled once into
// an immutable RuleSet, and evaluated against each received object's header
// and its association. The syntax is specified in rules/README.md.
//
// Threads: a RuleSet is immutable after Load and may be evaluated from any
// number of threads at once. Share it as std::shared_ptr<const RuleSet>; a
// reload builds a new one (an association keeps the one it started with).
#ifndef RELAIS_RULES_ROUTING_H_
#define RELAIS_RULES_ROUTING_H_

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

class DcmItem;  // DCMTK; kept out of this header

namespace relais::rules {

// One `bandwidth` window of a destination: `limit_bps` (0 = unlimited) in
// force on the days in `days` (bit 0 Sunday .. bit 6 Saturday, the day the
// window starts) from `from_s` to `to_s` (seconds after local midnight). A
// window with to_s <= from_s crosses midnight and ends the next day; from_s
// == to_s == 0 is the whole day.
struct BandwidthWindow {
  uint64_t limit_bps = 0;
  uint8_t days = 0x7F;
  uint32_t from_s = 0;
  uint32_t to_s = 0;
};

// The bandwidth cap in force at a local time and when it next changes.
struct BandwidthNow {
  uint64_t limit_bps = 0;   // 0 = unlimited (no window matches, or "unlimited")
  int64_t next_change = 0;  // local seconds of the next change of limit_bps (>
                            // local_s), or local_s + 8 days when it never does
};

// The first of `windows` that holds at `local_s` (seconds since 1970-01-01
// 00:00 of local time: unix seconds plus the UTC offset; no DST handling) and
// the next time the cap changes. Pure; rules/README.md "Bandwidth windows".
BandwidthNow BandwidthAt(const std::vector<BandwidthWindow>& windows, int64_t local_s);

// A place objects are delivered to ([[destination]]); router/deliver/delivery.h
// uses these settings. `tls` is parsed and validated, but this build cannot
// speak DICOM TLS yet: a tls destination is never sent anything (its rows
// wait) rather than sent in clear text.
struct Destination {
  std::string name;      // unique, [A-Za-z0-9_.-]+
  std::string ae_title;  // called AE title of the peer, 1-16 chars
  std::string host;      // host name or IP literal
  uint16_t port = 104;
  // Parallel outgoing associations, 1-64. kAdaptive (the default): Relais
  // finds the number itself (router/deliver/concurrency.h), at most
  // max_associations (64 when not written). kFixed: always max_associations.
  enum class Concurrency { kAdaptive, kFixed };
  Concurrency concurrency = Concurrency::kAdaptive;
  uint32_t max_associations = 64;
  struct Retry {
    uint32_t max_attempts = 0;       // 0 = no limit (age limit only)
    uint64_t max_age_s = 7 * 86400;  // give up (dead letter) after this
    uint64_t initial_backoff_s = 10;
    uint64_t max_backoff_s = 1800;
  } retry;
  std::vector<std::string> transfer_syntaxes;  // preferred, in order (UIDs; names accepted in TOML)
  uint64_t bandwidth_limit_bps = 0;            // bytes/s, 0 = unlimited (`bandwidth_limit`)
  // `bandwidth`: time-of-day windows; when not empty they replace
  // bandwidth_limit_bps (the parser refuses both at once).
  std::vector<BandwidthWindow> bandwidth;
  // `priority_above_limit`: the priority lane (rows above the default
  // priority) is not paced by the bandwidth cap.
  bool priority_above_limit = false;
  bool tls = false;
  std::string tls_ca_file, tls_cert_file, tls_key_file;
  uint64_t hold_study_s = 0;  // hold a study until it is quiet this long (0 = send at once)
  // Whether an object received again (same SOP Instance UID) is sent again
  // to this destination when it was already delivered there within
  // resend_window_s: kAlways sends it; kNever does not; kIfChanged sends it
  // only when its content differs (checksum) from what was delivered.
  enum class Resend { kAlways, kNever, kIfChanged };
  Resend resend = Resend::kIfChanged;
  uint64_t resend_window_s = 30 * 86400;  // a delivery older than this no longer suppresses
  std::string where;                      // "FILE:LINE:COLUMN" of its table, for messages
};

// A tag edit applied when sending to one destination (never to the stored copy).
struct TagEdit {
  enum class Op { kSet, kRemove, kCopy, kPrefix };
  Op op = Op::kSet;
  std::string target;     // as written: keyword or "(gggg,eeee)"
  uint32_t tag = 0;       // resolved (group << 16 | element)
  std::string value;      // kSet, kPrefix
  uint32_t from_tag = 0;  // kCopy source
};

// Facts about the association an object arrived on.
struct AssociationFacts {
  std::string calling_ae;
  std::string called_ae;
  std::string peer_ip;   // "10.1.2.3" or "::1" (no port)
  std::string listener;  // listener name ("default" for [listener])
};

// What evaluation decided for one object. Reuse one Decision across calls:
// Evaluate clears it but keeps its capacity (no allocation once warm).
struct Decision {
  struct Target {
    const Destination* destination = nullptr;     // owned by the RuleSet
    int priority = 0;                             // higher is sent first
    const std::string* rule = nullptr;            // name of the rule that asked for it
    const std::vector<TagEdit>* edits = nullptr;  // may be empty, never null when set
  };
  std::vector<const std::string*> matched_rules;  // in evaluation order
  std::vector<Target> targets;                    // one per destination (first rule wins)
  bool dropped = false;                           // a matching rule said drop: no destination
  bool unmatched = false;                         // no rule matched; see RuleSet::unmatched_policy()

  void Clear() {
    matched_rules.clear();
    targets.clear();
    dropped = false;
    unmatched = false;
  }
};

// Why each rule did or did not match (relais rules test --explain).
struct Explanation {
  struct RuleTrace {
    std::string rule;
    bool matched = false;
    std::vector<std::string> reasons;  // "Modality = 'CT' matched any of [CT, MR]", ...
  };
  std::vector<RuleTrace> rules;
};

// Bounds on loading a rule set (RuleSet::Load, Parse), so that a careless
// or hostile rule file cannot hold the process or its memory for long. Each
// regex is also limited on its own (1 MiB of RE2 program memory). Past a
// bound the load fails like any invalid file: InvalidArgument, the error at
// the FILE:LINE:COLUMN of the rule where it stopped, saying what to change.
struct CompileBudget {
  // Estimated memory of every compiled regex of the set together (RE2
  // keeps about 8 bytes per program instruction; `\pL{50}` is ~60,000).
  // Default: 128 MiB ([rules] max_regex_memory).
  uint64_t max_regex_memory = uint64_t{128} << 20;
  // Time to read and compile the whole set, checked between rules; 0 = no
  // limit. Default: 10 s ([rules] max_compile_time), well inside the 30 s
  // systemd watchdog even for the synchronous load at startup.
  uint64_t max_compile_ms = 10000;
  // The clock of max_compile_ms, in milliseconds. Default (null): the
  // steady clock. Tests pass a fake one.
  std::function<uint64_t()> now_ms;
  // When set and true (from any thread), loading stops before the next
  // rule and fails with Unavailable (a shutdown does not wait for it).
  // Not owned; must outlive the load.
  const std::atomic<bool>* cancel = nullptr;
};

class RuleSet {
 public:
  // What happens to an object no rule matches.
  enum class Unmatched {
    kKeep,     // default: stored and listed as unrouted; nothing is lost
    kReject,   // C-STORE refused (the sender keeps it)
    kForward,  // sent to unmatched_destinations()
  };

  // Loads a rule file, or every *.toml in a directory (name order). On
  // failure: InvalidArgument whose message holds every error, one per line,
  // "FILE:LINE:COLUMN: message".
  // Obeys `budget` (see CompileBudget). Runs on the calling thread, which
  // may be any thread; it can take up to budget.max_compile_ms.
  static Result<std::shared_ptr<const RuleSet>> Load(const std::string& path,
                                                     const CompileBudget& budget = CompileBudget());
  // Same from text; `source_name` is used in messages.
  static Result<std::shared_ptr<const RuleSet>> Parse(const std::string& text, const std::string& source_name,
                                                      const CompileBudget& budget = CompileBudget());

  virtual ~RuleSet() = default;

  // Evaluates every rule in order against `header` (the data set header
  // parsed by DCMTK) and `facts`, at local time `now`. Thread-safe; does not
  // allocate once `out` has capacity (when `explain` is null).
  virtual void Evaluate(DcmItem* header, const AssociationFacts& facts, std::time_t now, Decision* out,
                        Explanation* explain = nullptr) const = 0;

  virtual const std::vector<Destination>& destinations() const = 0;
  virtual const Destination* FindDestination(const std::string& name) const = 0;
  virtual Unmatched unmatched_policy() const = 0;
  virtual const std::vector<const Destination*>& unmatched_destinations() const = 0;
  virtual size_t rule_count() const = 0;
  // The files it was loaded from, for reload-on-change.
  virtual const std::vector<std::string>& source_files() const = 0;
};

// Encodes tag edits as one line of text for the store's queue rows, and back.
std::string EncodeEdits(const std::vector<TagEdit>& edits);
Result<std::vector<TagEdit>> DecodeEdits(const std::string& text);
// Applies edits to a data set (used at send time, and by `rules test`).
Status ApplyEdits(const std::vector<TagEdit>& edits, DcmItem* dataset);

}  // namespace relais::rules

#endif  // RELAIS_RULES_ROUTING_H_
