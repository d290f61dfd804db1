// The clock, in one place. Two readings, never mixed:
// - NowUnixMs(): wall time, milliseconds since the Unix epoch. For times
//   that are stored, shown or compared with stored times (received_unix_ms,
//   next attempts, audit records, alerts). It can jump when the system
//   clock is set.
// - NowMs(): the steady clock, milliseconds since an arbitrary fixed point.
//   For intervals, deadlines and timeouts within one process.
// Code whose timing is tested takes a clock as a function (AuditLog's
// Options::clock, AdminApi::SetClock, rules' CompileBudget::now_ms) and
// defaults to these; tests pass a fake one. Thread: any.
#ifndef RELAIS_BASE_CLOCK_H_
#define RELAIS_BASE_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace relais {

// Wall time: milliseconds since 1970-01-01T00:00:00Z.
inline int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Steady time: milliseconds since an arbitrary fixed point; never goes back.
inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Steady-clock seconds, for latencies (e.g. relais_cstore_latency_seconds:
// from a C-STORE-RQ's command to its commit).
inline double NowSteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace relais

#endif  // RELAIS_BASE_CLOCK_H_
