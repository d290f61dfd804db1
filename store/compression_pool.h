// The compression threads of a read-write Store. Internal to store/.
#ifndef RELAIS_STORE_COMPRESSION_POOL_H_
#define RELAIS_STORE_COMPRESSION_POOL_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "store/chunk_codec.h"
#include "store/compression_level.h"

namespace relais::store {

class CompressionPool {
 public:
  // A job gets the compressor of the thread that runs it, set to the level
  // the pool chose for this job.
  using Job = std::function<void(ChunkCompressor&)>;

  struct Levels {
    int level = 1;          // fixed level, or the adaptive level's start
    bool adaptive = false;  // NextLevel within [min, max] (compression_level.h)
    int min = -1;
    int max = 1;
  };

  // Starts max(threads, 1) threads, each with its own zstd context.
  CompressionPool(int threads, Levels levels);
  ~CompressionPool();  // Stop()

  // Thread-safe. After Stop(), runs the job at once on the calling thread.
  void Submit(Job job);
  // Runs every queued job, then joins the threads. Idempotent.
  void Stop();
  // The level of the latest job (the adaptive level's current value).
  int level() const { return current_.load(std::memory_order_relaxed); }

 private:
  void Run();

  const Levels levels_;
  const int thread_count_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  LevelState state_;       // guarded by mu_
  std::atomic<int> current_;
  std::vector<std::thread> threads_;
};

}  // namespace relais::store

#endif  // RELAIS_STORE_COMPRESSION_POOL_H_
