// The scheduler's read of one destination's queue (DeliveryScheduler::Refill,
// delivery.h): which rows are due now, in queue order, with their object
// records. Separate from the scheduler so that its cost can be measured
// against the real store (bench/dispatch_bench.cc) and tested alone.
// Internal to router/deliver/.
//
// Thread: any; reads the store in one read transaction per call.
#ifndef RELAIS_ROUTER_DELIVER_QUEUE_SCAN_H_
#define RELAIS_ROUTER_DELIVER_QUEUE_SCAN_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::router {

struct ScanRequest {
  std::string destination;
  int64_t now = 0;
  // hold_study: a study's rows wait until no object of it arrived for this long (0: no hold).
  int64_t hold_ms = 0;
  // retry.max_age: rows of objects received longer ago are returned in `expired` (0: none).
  int64_t max_age_ms = 0;
  // Due rows wanted at most.
  size_t want = 256;
  // The destination's backoff end: a row an admin made due (send now) before it ends it.
  int64_t next_try = 0;
};

struct ScannedRow {
  store::QueueRow q;
  store::ObjectMeta meta;  // without routes and matched rules
};

struct ScanResult {
  std::vector<ScannedRow> found;    // due, in queue order
  std::vector<ScannedRow> expired;  // older than max_age_ms
  int64_t next_due = 0;             // earliest time a row not yet due becomes due (0: none)
  bool more = false;                // stopped at `want`: more due rows wait behind
  bool send_now = false;            // an admin made a failed row due during the backoff
  uint64_t examined = 0;            // queue rows read (the scan's cost)
};

// Reads the rows of req.destination in queue order, until `want` due rows
// are found. Cost: the rows skipped before them (those the scheduler
// already holds, rows in their own backoff, rows of studies still held),
// plus `want` object records; never the whole backlog. hold_study reads a
// study's last arrival from its history record (Store::FindStudy; the
// object's own arrival when the study has none). `known(priority, id)`
// says the scheduler already holds the row (ready or in flight): it is
// skipped. `send_now_seen` remembers (priority, id, attempts) of rows that
// already ended a backoff, so that each does it once.
Status ScanQueue(const store::Store& store, const ScanRequest& req,
                 const std::function<bool(int32_t priority, uint64_t id)>& known,
                 std::set<std::tuple<int32_t, uint64_t, uint32_t>>* send_now_seen, ScanResult* out);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_QUEUE_SCAN_H_
