// Scrubber: the store's background scrub ([store] scrub_rate).
//
// Bit rot is found by reading, and a stored object may not be read again
// until a destination asks for a re-send, weeks later. The scrubber reads
// every object back, a bounded batch at a time (Store::Scrub: chunks, sizes,
// XXH3-64 checksum, as `relais store verify` does), from a cursor (object
// id) that wraps around to the first object after the last: one pass over
// the store after another, at about `rate_bytes_per_s` data set bytes per
// second (a batch that reads more than its share, e.g. one large object,
// pays it back by skipping later ticks).
//
// A damaged object is logged once per pass (event=scrub-damaged with its
// id, SOP Instance UID and what is wrong), counted (Metrics::ScrubBatch:
// relais_store_scrub_*), and raises the "scrub-damaged" alert (Alerts
// Sources::conditions, through Condition()) until a pass no longer finds
// it. The scrubber changes nothing: the admin runs
// `relais store verify --repair`, which quarantines unreadable objects.
//
// Threads: created, started and shut down on the loop thread; each batch
// runs on the libuv pool (uv_queue_work: reading a few MiB must not stall
// the sockets), one at a time.
#ifndef RELAIS_ROUTER_OPERATE_SCRUBBER_H_
#define RELAIS_ROUTER_OPERATE_SCRUBBER_H_

#include <uv.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "router/operate/alerts.h"
#include "store/store.h"

namespace relais::router {

class Metrics;

class Scrubber {
 public:
  // `store` and `metrics` (may be null) are not owned and must outlive it.
  // `rate_bytes_per_s` 0: Start() does nothing.
  Scrubber(uv_loop_t* loop, const store::Store* store, Metrics* metrics, uint64_t rate_bytes_per_s);
  ~Scrubber();
  Scrubber(const Scrubber&) = delete;
  Scrubber& operator=(const Scrubber&) = delete;

  // A batch every interval_ms, each reading about rate * interval bytes.
  void Start(uint64_t interval_ms = 1000);
  // Stops the timer and closes its handle; a batch on the pool finishes
  // first (the loop runs until then).
  void Shutdown();

  // What the "scrub-damaged" alert holds now: one Active (subject "store")
  // while damaged objects are known, else none.
  std::vector<Alerts::Active> Condition() const;

  // Damaged objects known: found in this pass or the last complete one.
  size_t damaged_known() const { return last_pass_.size() + this_pass_new_; }

 private:
  struct Work {
    uv_work_t req;
    Scrubber* self = nullptr;
    uint64_t from_id = 0;
    uint64_t max_bytes = 0;
    Result<store::ScrubBatch> result = store::ScrubBatch{};
  };
  void Tick();
  void Done(Work* w);

  uv_loop_t* loop_;
  const store::Store* store_;
  Metrics* metrics_;
  const uint64_t rate_;
  uint64_t interval_ms_ = 1000;
  int64_t credit_ = 0;  // bytes this tick may read; negative after a big object
  uint64_t cursor_ = 0;
  bool busy_ = false;
  bool shut_ = false;
  uv_timer_t timer_;
  bool timer_open_ = false;
  // Damaged objects by id: found in the last complete pass, and in this one.
  std::map<uint64_t, store::VerifyProblem> last_pass_, this_pass_;
  size_t this_pass_new_ = 0;  // of this_pass_, not in last_pass_
  int64_t damaged_since_unix_ms_ = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_SCRUBBER_H_
