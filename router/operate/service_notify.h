// ServiceNotifier: tells systemd (sd_notify, Type=notify units) how the
// service is doing, on the server's libuv loop:
//   READY=1 once the listeners are bound (clients may connect),
//   WATCHDOG=1 every half WatchdogSec from a loop timer, so a loop that hangs
//     stops the pings and systemd restarts the service (Restart=on-failure),
//   STATUS=... a one-line summary shown by `systemctl status`,
//   STOPPING=1 when a stop signal starts the drain, with EXTEND_TIMEOUT_USEC
//     covering the drain deadline.
// Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op.
//
// Threads: loop thread only.
#ifndef RELAIS_ROUTER_OPERATE_SERVICE_NOTIFY_H_
#define RELAIS_ROUTER_OPERATE_SERVICE_NOTIFY_H_

#include <uv.h>

#include <cstdint>
#include <string>

namespace relais::router {

class ServiceNotifier {
 public:
  explicit ServiceNotifier(uv_loop_t* loop);
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // READY=1 with `status`, and starts the watchdog pings if systemd asked
  // for them (WATCHDOG_USEC).
  void Ready(const std::string& status);
  // STATUS=`status`.
  void Status(const std::string& status);
  // STOPPING=1 with `status`; asks systemd for `drain_ms` more than its stop
  // timeout. Watchdog pings go on until Shutdown().
  void Stopping(const std::string& status, uint64_t drain_ms);
  // Stops the watchdog timer (closes its handle). Idempotent.
  void Shutdown();

  // The watchdog interval systemd asked for, in ms (0: none).
  uint64_t watchdog_ms() const { return watchdog_ms_; }

 private:
  void Send(const std::string& state);
  static void OnWatchdog(uv_timer_t* t) noexcept;

  uv_loop_t* loop_;
  uv_timer_t timer_;
  bool timer_open_ = false;
  bool enabled_ = false;  // NOTIFY_SOCKET is set
  uint64_t watchdog_ms_ = 0;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_OPERATE_SERVICE_NOTIFY_H_
