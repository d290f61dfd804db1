// QueueSummaries: see queue_summaries.h.
#include "router/operate/queue_summaries.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "base/clock.h"
#include "base/log.h"

namespace relais::router {

QueueSummaries::QueueSummaries(const store::Store* store) : QueueSummaries(store, Options()) {}

QueueSummaries::QueueSummaries(const store::Store* store, Options options, std::function<int64_t()> now)
    : store_(store), options_(options), now_(now ? std::move(now) : std::function<int64_t()>(NowMs)) {}

QueueSummaries::~QueueSummaries() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t QueueSummaries::IntervalAfter(int64_t took_ms, const Options& options) {
  return std::max(options.min_interval_ms, options.cost_factor * std::max<int64_t>(took_ms, 0));
}

std::shared_ptr<const QueueSummaries::Snapshot> QueueSummaries::Read() {
  auto s = std::make_shared<Snapshot>();
  s->at_ms = now_();
  if (store_ == nullptr) {
    s->status = Status::Internal("no store");
  } else {
    Result<std::vector<store::Store::QueueSummary>> q = store_->SummarizeQueues();
    if (q.ok()) {
      s->queues = std::move(*q);
    } else {
      s->status = q.status();
    }
  }
  s->took_ms = now_() - s->at_ms;
  return s;
}

void QueueSummaries::Start() {
  std::shared_ptr<const Snapshot> first = Read();
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  latest_ = std::move(first);
  ++reads_;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void QueueSummaries::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  int64_t logged_wait = options_.min_interval_ms;
  while (!stop_) {
    const int64_t wait = IntervalAfter(latest_->took_ms, options_);
    // One line when the backlog makes the summary slow enough to be read
    // less often, and when it is back to the minimum: not one per read.
    if (wait >= 2 * logged_wait || (wait == options_.min_interval_ms && logged_wait != wait)) {
      RLOG_INFO("event=queue-summary-interval took_ms=%lld next_in_ms=%lld destinations=%zu",
                static_cast<long long>(latest_->took_ms), static_cast<long long>(wait), latest_->queues.size());
      logged_wait = wait;
    }
    if (cv_.wait_for(lock, std::chrono::milliseconds(wait), [this] { return stop_; })) break;
    lock.unlock();
    std::shared_ptr<const Snapshot> s = Read();
    if (!s->status.ok()) RLOG_WARN("event=queue-summary-failed error=\"%s\"", s->status.ToString().c_str());
    lock.lock();
    latest_ = std::move(s);
    ++reads_;
  }
}

std::shared_ptr<const QueueSummaries::Snapshot> QueueSummaries::Get() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return latest_;
  const int64_t now = now_();
  if (!latest_ || !latest_->status.ok() || now - latest_->at_ms >= options_.min_interval_ms || now < latest_->at_ms) {
    latest_ = Read();
    ++reads_;
  }
  return latest_;
}

uint64_t QueueSummaries::reads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reads_;
}

}  // namespace relais::router
