#include "store/compression_pool.h"

namespace relais::store {

CompressionPool::CompressionPool(int threads, int level) : level_(level) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

CompressionPool::~CompressionPool() { Stop(); }

void CompressionPool::Submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  ChunkCompressor compressor(level_);
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
  ChunkCompressor compressor(level_);
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job(compressor);
  }
}

}  // namespace relais::store
