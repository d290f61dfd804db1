// `relais queue ls|retry|purge` and `relais object show`: the admin's view of
// delivery. They open the store themselves (read-only, or in admin mode for
// retry/purge: LMDB serializes them with a running `relais serve`, which
// notices the changed rows within its rescan interval, about 2 s).
#ifndef RELAIS_ROUTER_CLI_QUEUE_CLI_H_
#define RELAIS_ROUTER_CLI_QUEUE_CLI_H_

#include <string>
#include <vector>

#include "router/operate/queue_ops.h"  // QueueSelection
#include "store/store.h"

namespace relais::router {

// Lists live and dead rows (one line each, or one JSON object per line),
// then a per-destination summary on stderr. Returns 0, or 1 on a store error.
int QueueLs(const store::Options& options, const QueueSelection& sel, bool json);
// Requeues the selected rows: dead ones back to the queue, live ones due
// now. REQUIRES: sel.dead or sel.uids non-empty. Returns 0, 1 on a store
// error, 2 when a UID is unknown.
int QueueRetry(const store::Options& options, const QueueSelection& sel);
// How `relais queue purge` asks before it deletes.
struct PurgeConfirm {
  bool dry_run = false;  // only show what would be removed
  bool yes = false;      // do not ask
  // Whether to ask on the terminal; when false and !yes, purge refuses.
  // Default: standard input and error are terminals.
  bool interactive = false;
};
// Deletes the selected rows, after showing what goes (rows per destination,
// the first rows with UID and patient ID) and, unless confirm.yes, asking
// on the terminal. An object stays while another row holds it or, once
// delivered somewhere, for options.retention_ms. Audited (cli_audit.h).
// REQUIRES: sel.dead, sel.uids or sel.destination set. Returns like
// QueueRetry; 2 also when not confirmed (no terminal and no --yes, or "no").
int QueuePurge(const store::Options& options, const QueueSelection& sel, const PurgeConfirm& confirm);
// Everything about one object: where it came from, which rules matched,
// its rows (queued / dead) and every delivery attempt.
int ObjectShow(const store::Options& options, const std::string& uid, bool json);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_CLI_QUEUE_CLI_H_
