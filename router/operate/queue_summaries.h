// QueueSummaries: Store::SummarizeQueues (rows, dead rows and the oldest
// row per destination) for the admin API, the metrics and the alerts,
// without making them pay for it on the loop thread.
//
// SummarizeQueues reads every queued row: about 0.1 ms at 1k rows, 12-25 ms
// at 100k, 100-190 ms at 1M (bench/dispatch_bench BM_SummarizeQueues). The
// admin API, the metrics page and the alerts each wanted it up to once a
// second on the loop thread, so a week's backlog stalled intake and
// delivery for a fifth of every second.
//
// Started (`relais serve`): a thread of its own reads the summary once in
// Start, then again after max(min_interval_ms, cost_factor x the last
// read's time); Get returns the latest at once. So the loop never waits for
// it, a read costs at most 1/cost_factor of one core, and the figures are
// at most that interval old: a second on an ordinary store, ~3 s with a
// million rows queued.
//
// Not started (tests, tools): Get reads on the calling thread when the
// last read is min_interval_ms old, as the admin API did before.
//
// Thread: Get from any thread; Start and the destructor from one.
#ifndef RELAIS_ROUTER_OPERATE_QUEUE_SUMMARIES_H_
#define RELAIS_ROUTER_OPERATE_QUEUE_SUMMARIES_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace relais::router {

class QueueSummaries {
 public:
  struct Options {
    int64_t min_interval_ms = 1000;
    int64_t cost_factor = 20;  // a read takes at most 1/20 of one core
  };
  struct Snapshot {
    Status status;  // of the read; `queues` is empty when it failed
    std::vector<store::Store::QueueSummary> queues;
    int64_t at_ms = 0;  // when the read started (steady clock, NowMs)
    int64_t took_ms = 0;
  };

  // `store` must outlive this. `now` is a test seam (steady ms, NowMs).
  explicit QueueSummaries(const store::Store* store);
  QueueSummaries(const store::Store* store, Options options, std::function<int64_t()> now = nullptr);
  ~QueueSummaries();
  QueueSummaries(const QueueSummaries&) = delete;
  QueueSummaries& operator=(const QueueSummaries&) = delete;

  // Reads once, then keeps reading on a thread of its own.
  void Start();
  // The latest summary (never null).
  std::shared_ptr<const Snapshot> Get();
  // The wait before the next read after one that took `took_ms`.
  static int64_t IntervalAfter(int64_t took_ms, const Options& options);
  // Reads done so far (tests).
  uint64_t reads() const;

 private:
  std::shared_ptr<const Snapshot> Read();
  void Loop();

  const store::Store* store_;
  const Options options_;
  std::function<int64_t()> now_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const Snapshot> latest_;
  uint64_t reads_ = 0;
  bool started_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_QUEUE_SUMMARIES_H_
