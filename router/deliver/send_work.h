// Send preparation on the libuv thread pool: an object that needs tag edits
// or a transfer syntax conversion is read whole from the store and rewritten
// with DCMTK (send_prep.h PrepareDataset) off the loop thread; the scheduler
// (delivery.cc) then sends the bytes from memory.
//
// Thread: PrepareOnThreadPool is called on the loop thread and `done` runs
// there; PrepareStoredObject runs on any thread (a pool thread here), after
// RegisterCodecs().
#ifndef RELAIS_ROUTER_DELIVER_SEND_WORK_H_
#define RELAIS_ROUTER_DELIVER_SEND_WORK_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "rules/routing.h"
#include "store/store.h"

namespace relais::router {

// One object to rewrite for one destination.
struct PrepareJob {
  store::Store* store = nullptr;  // not owned; outlives the job
  uint64_t object_id = 0;
  std::string stored_ts;  // the object's stored transfer syntax
  std::string target_ts;  // of the accepted context to send on
  // Tried when target_ts cannot be produced for this object (DCMTK's
  // encoders refuse e.g. float or 1-bit pixels): a syntax the association
  // also accepted that the object needs no compression for. Empty: none.
  std::string fallback_ts;
  std::vector<rules::TagEdit> edits;
};

// What came of a PrepareJob.
struct PreparedObject {
  // The store's error (NotFound: replaced or purged meanwhile) or
  // PrepareDataset's; OK with `bytes` the data set to send.
  Status status;
  std::vector<uint8_t> bytes;
  std::string target_ts;        // the job's target, or its fallback when that was used
  std::string fallback_reason;  // why the target was not used, for the log; "" when it was
};

// Reads the object and rewrites it: first to job.target_ts; when that is
// refused as InvalidArgument and a fallback is given, to job.fallback_ts.
PreparedObject PrepareStoredObject(const PrepareJob& job);

// Runs PrepareStoredObject on `loop`'s thread pool; `done` runs on the loop
// thread with its result.
void PrepareOnThreadPool(uv_loop_t* loop, PrepareJob job, std::function<void(PreparedObject)> done);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_SEND_WORK_H_
