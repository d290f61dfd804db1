// The live state of each destination (misconfigured, paused, down,
// backing-off, with the reason) as `relais serve` sees it, in a small file
// in the store directory, for the commands that run beside it (`relais queue
// ls`) and read the store, not the running scheduler (issue 14).
//
// The file, `<store path>/serve-state.json` (docs/cli.md, "Live state"), is
// one JSON object:
//   {"format":1,"pid":1234,"running":true,"written_unix_ms":...,
//    "destinations":[{"name":"telerad","state":"misconfigured",
//      "reason":"...","since_unix_ms":...,"next_try_unix_ms":...,
//      "consecutive_failures":3}, ...]}
// `state` is DestinationStats::state (idle, sending, backing-off, down,
// paused, misconfigured); `reason` says why for the last four ("" else).
// Serve rewrites it within a second of a change and at least every 10 s
// (so its age says whether it is current), and once more with
// "running":false when it stops cleanly. Each write goes to a temporary
// file renamed over the old one: a reader sees the old or the new file,
// never half of one. No fsync: after a power cut the file may be missing or
// empty, which a reader reports as "no live state"; serve rewrites it within
// a second of starting.
//
// Thread: ServeStateFile on the loop thread; ReadServeState anywhere.
#ifndef RELAIS_ROUTER_OPERATE_SERVE_STATE_H_
#define RELAIS_ROUTER_OPERATE_SERVE_STATE_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "router/deliver/destination_stats.h"

namespace relais::router {

// The file's name in the store directory.
inline constexpr char kServeStateFile[] = "serve-state.json";

// Writes the file from `source` (DeliveryScheduler::Stats) on a 1 s timer.
class ServeStateFile {
 public:
  ServeStateFile(uv_loop_t* loop, std::string store_path, std::function<std::vector<DestinationStats>()> source);
  ~ServeStateFile();
  ServeStateFile(const ServeStateFile&) = delete;
  ServeStateFile& operator=(const ServeStateFile&) = delete;

  // Writes the file now, then checks every second.
  void Start();
  // Writes the file with "running":false and closes the timer. Idempotent.
  // REQUIRES: before the loop stops running.
  void Shutdown();

 private:
  static void OnTimer(uv_timer_t* t) noexcept;
  void Write(bool running, bool force);

  uv_loop_t* loop_;
  std::string path_;
  std::function<std::vector<DestinationStats>()> source_;
  uv_timer_t timer_;
  bool started_ = false;
  bool stopped_ = false;
  std::string last_;           // the destinations part last written
  int64_t last_write_ms_ = 0;  // when
  bool warned_ = false;        // a failed write is logged once until one succeeds
};

// The file as read back.
struct ServeState {
  struct Destination {
    std::string state;
    std::string reason;
    int64_t since_unix_ms = 0;
    int64_t next_try_unix_ms = 0;
    uint32_t consecutive_failures = 0;
  };
  int64_t pid = 0;
  bool running = false;  // as written: false once serve stopped cleanly
  int64_t written_unix_ms = 0;
  std::map<std::string, Destination> destinations;
};

// The JSON text of the file (what Write renders), for tests.
std::string RenderServeState(const std::vector<DestinationStats>& dests, int64_t pid, bool running,
                             int64_t written_unix_ms);
// Reads `<store_path>/serve-state.json`. NotFound when there is none;
// Corruption when it does not parse (a file cut by a power loss).
Result<ServeState> ReadServeState(const std::string& store_path);
// True when the process that wrote the state still runs: `pid` exists and
// is a relais (its /proc comm, when readable).
bool ServeStateWriterAlive(const ServeState& state);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_SERVE_STATE_H_
