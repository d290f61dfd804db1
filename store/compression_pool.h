// The compression threads of a read-write Store. Internal to store/.
#ifndef RELAIS_STORE_COMPRESSION_POOL_H_
#define RELAIS_STORE_COMPRESSION_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "store/chunk_codec.h"

namespace relais::store {

class CompressionPool {
 public:
  // A job gets the compressor of the thread that runs it.
  using Job = std::function<void(ChunkCompressor&)>;

  // Starts max(threads, 1) threads, each with its own zstd context at `level`.
  CompressionPool(int threads, int level);
  ~CompressionPool();  // Stop()

  // Thread-safe. After Stop(), runs the job at once on the calling thread.
  void Submit(Job job);
  // Runs every queued job, then joins the threads. Idempotent.
  void Stop();

 private:
  void Run();

  const int level_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace relais::store

#endif  // RELAIS_STORE_COMPRESSION_POOL_H_
