#include "router/deliver/destination_stats.h"

namespace relais::router {

void DestinationTally::NoteFailure(FailureClass cls, int64_t now, const std::string& destination,
                                   const std::string& sop, const std::string& association, const char* result,
                                   uint16_t status, const std::string& error) {
  ++failed;
  ++failures_by_class[static_cast<size_t>(cls)];
  last_error = error;
  last_error_ms = now;
  recent.push_front(FailureEvent{now, destination, sop, association, result, status, error});
  if (recent.size() > kRecentFailures) recent.pop_back();
}

void DestinationTally::NoteSent(uint64_t bytes, int64_t now) {
  int64_t second = now / 1000;
  size_t slot = static_cast<size_t>(second % 60);
  if (rate_second[slot] != second) {
    rate_second[slot] = second;
    rate_bytes[slot] = 0;
  }
  rate_bytes[slot] += bytes;
}

double DestinationTally::BytesPerSecond(int64_t now) const {
  int64_t second = now / 1000;
  uint64_t sum = 0;
  for (size_t i = 0; i < 60; ++i) {
    if (rate_second[i] > second - 60 && rate_second[i] <= second) sum += rate_bytes[i];
  }
  return static_cast<double>(sum) / 60.0;
}

void DestinationTally::Report(int64_t now, DestinationStats* st) const {
  st->sent = sent;
  st->failed = failed;
  st->dead = dead;
  st->bytes_sent = bytes_sent;
  st->last_error = last_error;
  st->last_error_unix_ms = last_error_ms;
  st->retries = retries;
  for (FailureClass c : kFailureClasses) {
    uint64_t n = failures_by_class[static_cast<size_t>(c)];
    if (n != 0) st->failures_by_class[FailureClassName(c)] = n;
  }
  st->sent_bytes_per_s = BytesPerSecond(now);
}

}  // namespace relais::router
