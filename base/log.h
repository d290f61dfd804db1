// One line per event, to stderr (journald picks it up under systemd).
//
// Format: "2026-11-28T08:30:00.123Z INFO  assoc=12 calling=CTSCAN1 ... message".
// Thread-safe: each line is written with a single write(2).
#ifndef RELAIS_BASE_LOG_H_
#define RELAIS_BASE_LOG_H_

#include <cstdarg>

namespace relais {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below `level` are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

// printf-style; appends the newline.
void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace relais

#define RLOG_DEBUG(...) ::relais::Log(::relais::LogLevel::kDebug, __VA_ARGS__)
#define RLOG_INFO(...) ::relais::Log(::relais::LogLevel::kInfo, __VA_ARGS__)
#define RLOG_WARN(...) ::relais::Log(::relais::LogLevel::kWarn, __VA_ARGS__)
#define RLOG_ERROR(...) ::relais::Log(::relais::LogLevel::kError, __VA_ARGS__)

#endif  // RELAIS_BASE_LOG_H_
