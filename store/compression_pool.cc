#include "store/compression_pool.h"

namespace relais::store {

CompressionPool::CompressionPool(int threads, Levels levels)
    : levels_(levels), thread_count_(threads < 1 ? 1 : threads), current_(levels.level) {
  if (levels_.adaptive && levels_.level != 0) {
    state_.level = levels_.level;
    state_ = NextLevel(state_, 1, thread_count_, levels_.min, levels_.max);  // inside the bounds
    current_ = state_.level;
  }
  for (int i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { Run(); });
}

CompressionPool::~CompressionPool() { Stop(); }

void CompressionPool::Submit(Job job) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      lock.unlock();  // the woken thread takes the lock at once: let it
      cv_.notify_one();
      return;
    }
  }
  ChunkCompressor compressor(current_.load());
  job(compressor);
}

void CompressionPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void CompressionPool::Run() {
  ChunkCompressor compressor(current_.load());
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
      if (levels_.adaptive && levels_.level != 0) {
        state_ = NextLevel(state_, jobs_.size(), thread_count_, levels_.min, levels_.max);
        current_.store(state_.level, std::memory_order_relaxed);
      }
    }
    compressor.set_level(current_.load(std::memory_order_relaxed));
    job(compressor);
  }
}

}  // namespace relais::store
