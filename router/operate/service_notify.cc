// ServiceNotifier: see service_notify.h.
#include "router/operate/service_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace relais::router {

ServiceNotifier::ServiceNotifier(uv_loop_t* loop) : loop_(loop) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  uint64_t usec = 0;
  // > 0: systemd expects pings (WATCHDOG_USEC, and WATCHDOG_PID is ours or unset).
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) watchdog_ms_ = usec / 1000 == 0 ? 1 : usec / 1000;
}

ServiceNotifier::~ServiceNotifier() = default;

void ServiceNotifier::Send(const std::string& state) {
  if (!enabled_) return;
  int rc = sd_notify(0, state.c_str());
  if (rc < 0) {
    RLOG_WARN("event=sd-notify-failed reason=\"%s\": systemd was not told \"%.40s\"", std::strerror(-rc),
              state.c_str());
  }
}

void ServiceNotifier::Ready(const std::string& status) {
  Send("READY=1\nSTATUS=" + status);
  if (watchdog_ms_ == 0 || timer_open_) return;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  // Half the interval, as sd_watchdog_enabled(3) recommends.
  uint64_t every = watchdog_ms_ / 2 == 0 ? 1 : watchdog_ms_ / 2;
  uv_timer_start(&timer_, &OnWatchdog, every, every);
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // never keeps the loop alive alone
  RLOG_INFO("event=watchdog interval_ms=%llu: systemd restarts Relais if the event loop stops answering",
            static_cast<unsigned long long>(watchdog_ms_));
}

void ServiceNotifier::Status(const std::string& status) { Send("STATUS=" + status); }

void ServiceNotifier::Stopping(const std::string& status, uint64_t drain_ms) {
  Send("STOPPING=1\nSTATUS=" + status + "\nEXTEND_TIMEOUT_USEC=" + std::to_string((drain_ms + 10000) * 1000));
}

void ServiceNotifier::Shutdown() {
  if (!timer_open_) return;
  timer_open_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void ServiceNotifier::OnWatchdog(uv_timer_t* t) noexcept { static_cast<ServiceNotifier*>(t->data)->Send("WATCHDOG=1"); }

}  // namespace relais::router
