// StorageWatch: see storage_watch.h.
#include "router/operate/storage_watch.h"

#include <sys/statvfs.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "base/clock.h"
#include "base/log.h"
#include "router/receive/server.h"
#include "router/record/audit.h"

namespace relais::router {
namespace {

// "8.0 MiB", "1.5 GiB", "512 B": binary units, one decimal.
std::string HumanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

// Whole percent, rounded down so that "90%" is never shown below a 90% mark
// that was not reached (and up to the mark exactly when reached).
std::string Percent(double fraction) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%d%%", static_cast<int>(fraction * 100 + 1e-9));
  return buf;
}

std::string U64(uint64_t v) { return std::to_string(v); }

// The Error Comment of the 0xA700 answers. (0000,0902) is LO: at most 64
// characters reach the sender (PS3.5 6.2, PS3.7 C.4.1.1.4; dimse.cc cuts
// the rest), so the first 64 say what and what to do; the rest is for the
// log and the audit trail.
std::string IntakeClosedReason(double fraction, double high, uint64_t capacity, bool disk_bound) {
  return "Relais store " + Percent(fraction) + " full (high-water " + Percent(high) + " of " + HumanBytes(capacity) +
         "): retry later; delivery is draining it" +
         (disk_bound ? " (capacity is bounded by the free space left on the disk)" : "");
}

}  // namespace

StorageWatch::StorageWatch(uv_loop_t* loop, store::Store* store, Server* server, AuditLog* audit,
                           std::string store_path, double high_water, double low_water)
    : loop_(loop),
      store_(store),
      server_(server),
      audit_(audit),
      path_(std::move(store_path)),
      high_(high_water),
      low_(low_water) {}

// The timer handle lives in this object: Shutdown() must have been called
// and the loop run until the close callback before destruction.
StorageWatch::~StorageWatch() = default;

void StorageWatch::Start(uint64_t interval_ms) {
  if (!timer_open_) {
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    timer_open_ = true;
  }
  SampleNow();
  if (interval_ms == 0) interval_ms = 1000;
  uv_timer_start(
      &timer_, [](uv_timer_t* t) noexcept { static_cast<StorageWatch*>(t->data)->SampleNow(); }, interval_ms,
      interval_ms);
}

void StorageWatch::Shutdown() {
  if (!timer_open_) return;
  timer_open_ = false;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void StorageWatch::SampleNow() {
  store::Store::Stats st = store_->GetStats();
  Usage u = usage_;
  u.used_bytes = st.used_bytes;
  u.map_size = st.map_size;
  u.file_bytes = st.file_bytes;
  u.fs_available_bytes = 0;
  u.fs_total_bytes = 0;
  struct statvfs vfs;
  bool have_fs = ::statvfs(path_.c_str(), &vfs) == 0;
  if (have_fs) {
    u.fs_available_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    u.fs_total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  }
  // The file can grow into the free space of its filesystem, up to the map.
  u.capacity_bytes = u.map_size;
  if (have_fs && u.file_bytes + u.fs_available_bytes < u.capacity_bytes) {
    u.capacity_bytes = u.file_bytes + u.fs_available_bytes;
  }
  u.fraction = u.capacity_bytes > 0 ? static_cast<double>(u.used_bytes) / static_cast<double>(u.capacity_bytes) : 0;
  u.sampled_unix_ms = NowUnixMs();
  const bool disk_bound = u.capacity_bytes < u.map_size;

  bool changed = false;
  if (!u.intake_closed && u.fraction >= high_) {
    u.intake_closed = true;
    u.closed_since_unix_ms = u.sampled_unix_ms;
    ++u.closings;
    changed = true;
    std::string reason = IntakeClosedReason(u.fraction, high_, u.capacity_bytes, disk_bound);
    RLOG_WARN(
        "event=intake-closed used=%llu capacity=%llu percent=%.1f high=%.0f%% low=%.0f%%%s: new C-STOREs are "
        "refused with 0xA700 until usage falls below the low-water mark; delivery goes on",
        static_cast<unsigned long long>(u.used_bytes), static_cast<unsigned long long>(u.capacity_bytes),
        u.fraction * 100, high_ * 100, low_ * 100, disk_bound ? " bound=disk" : "");
    AuditIntake("intake-closed", u, "reason", reason);
    if (server_) server_->SetIntakeClosed(std::move(reason));
  } else if (u.intake_closed && u.fraction < low_) {
    const int64_t closed_ms = u.sampled_unix_ms - u.closed_since_unix_ms;
    u.intake_closed = false;
    u.closed_since_unix_ms = 0;
    changed = true;
    RLOG_INFO(
        "event=intake-reopened used=%llu capacity=%llu percent=%.1f low=%.0f%% closed_ms=%lld: C-STOREs are "
        "accepted again",
        static_cast<unsigned long long>(u.used_bytes), static_cast<unsigned long long>(u.capacity_bytes),
        u.fraction * 100, low_ * 100, static_cast<long long>(closed_ms));
    AuditIntake("intake-reopened", u, "closed_ms", std::to_string(closed_ms));
    if (server_) server_->SetIntakeClosed("");
  }
  usage_ = u;
  if (changed && on_change_) on_change_(usage_);
}

void StorageWatch::AuditIntake(const char* event, const Usage& u, std::string_view last_key,
                               std::string_view last_value) {
  if (audit_ == nullptr) return;
  audit_->Record("storage", {{"event", event},
                             {"used_bytes", U64(u.used_bytes)},
                             {"capacity_bytes", U64(u.capacity_bytes)},
                             {"percent", Percent(u.fraction)},
                             {"high_water", Percent(high_)},
                             {"low_water", Percent(low_)},
                             {last_key, last_value}});
}

}  // namespace relais::router
