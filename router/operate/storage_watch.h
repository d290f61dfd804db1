// StorageWatch: the store's water marks ([store] high_water, low_water).
//
// Every `interval_ms` (and on SampleNow) it measures how full the store is:
//   used     = Store::Stats::used_bytes (LMDB pages holding data; falls as
//              delivered objects are removed)
//   capacity = min(map_size, data.mdb size + space available to us on its
//              filesystem), so a disk filled by something else counts too
//   fraction = used / capacity
// When fraction reaches high_water, intake closes: Server::SetIntakeClosed
// with a reason naming the figures and what to do; new C-STOREs get 0xA700
// while delivery keeps draining. When it falls below low_water, intake
// opens again. Each crossing is logged (one line), audited, counted, and
// reported to the `on_change` callback (alerts).
//
// The watch samples once a second, so a burst can still reach a full disk
// before it closes intake: the store then refuses the objects whose commit
// fails (ResourceExhausted, also 0xA700; store/store.h Options::max_size)
// and goes on. The water marks keep the disk from filling in the common
// case; the store's refusal is the backstop.
//
// Thread: loop thread only.
#ifndef RELAIS_ROUTER_OPERATE_STORAGE_WATCH_H_
#define RELAIS_ROUTER_OPERATE_STORAGE_WATCH_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "store/store.h"

namespace relais::router {

class AuditLog;
class Server;

class StorageWatch {
 public:
  struct Usage {
    uint64_t used_bytes = 0;
    uint64_t capacity_bytes = 0;
    uint64_t map_size = 0;            // [store] max_size
    uint64_t file_bytes = 0;          // data.mdb on disk
    uint64_t fs_available_bytes = 0;  // statvfs f_bavail * f_frsize of the store's filesystem
    uint64_t fs_total_bytes = 0;
    double fraction = 0;  // used / capacity, 0..1 (can exceed 1 transiently)
    bool intake_closed = false;
    int64_t closed_since_unix_ms = 0;  // 0 while open
    uint64_t closings = 0;             // times intake closed since start
    int64_t sampled_unix_ms = 0;
  };

  // `server`, `audit` may be null (tests). Not owned.
  StorageWatch(uv_loop_t* loop, store::Store* store, Server* server, AuditLog* audit, std::string store_path,
               double high_water, double low_water);
  ~StorageWatch();
  StorageWatch(const StorageWatch&) = delete;
  StorageWatch& operator=(const StorageWatch&) = delete;

  // Called after each crossing, with the new usage.
  void SetOnChange(std::function<void(const Usage&)> fn) { on_change_ = std::move(fn); }
  // Samples now, then every interval_ms.
  void Start(uint64_t interval_ms = 1000);
  // Measures now and applies the water marks.
  void SampleNow();
  // Stops the timer and closes its handle (the loop then runs out of work).
  void Shutdown();

  const Usage& usage() const { return usage_; }
  double high_water() const { return high_; }
  // New water marks (SIGHUP reloading relais.toml), applied from the next
  // sample. REQUIRES: 0 < low_water <= high_water <= 1 (the config parser checks).
  void SetWaterMarks(double high_water, double low_water) {
    high_ = high_water;
    low_ = low_water;
  }
  double low_water() const { return low_; }

 private:
  // The "storage" audit record of an intake change: `event` with the usage
  // and the water marks, then `last` (the reason, or how long it was closed).
  void AuditIntake(const char* event, const Usage& u, std::string_view last_key, std::string_view last_value);

  uv_loop_t* loop_;
  store::Store* store_;
  Server* server_;
  AuditLog* audit_;
  std::string path_;
  double high_, low_;
  Usage usage_;
  std::function<void(const Usage&)> on_change_;
  uv_timer_t timer_;
  bool timer_open_ = false;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_STORAGE_WATCH_H_
