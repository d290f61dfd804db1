// PeerLimits: the association ceilings learnt from peers (adaptive
// concurrency, concurrency.h), kept across restarts so that a restarted
// Relais does not open more associations than a peer refused a moment ago.
//
// The file, `<store path>/peer-limits.tsv` (README.md, "Learnt peer
// limits"; advisory, not part of the store format), is text: a comment line, then one line per destination
// that refused an association:
//   NAME <TAB> AE@HOST:PORT <TAB> CEILING <TAB> UNTIL_UNIX_MS
// A limit holds until UNTIL (24 h after the refusal by default) and only
// for the same AE title, host and port: a destination moved to another peer
// starts afresh. The file is a hint: a missing or unreadable one means no
// limit is known (the peer is asked again), never a failure to serve.
//
// Thread: the caller's; no state. Writes replace the file atomically
// (temporary file, rename).
#ifndef RELAIS_ROUTER_DELIVER_PEER_LIMITS_H_
#define RELAIS_ROUTER_DELIVER_PEER_LIMITS_H_

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"

namespace relais::router {

inline constexpr char kPeerLimitsFile[] = "peer-limits.tsv";

struct PeerLimit {
  std::string peer;  // "AE@HOST:PORT"
  uint32_t ceiling = 0;
  int64_t until_unix_ms = 0;
};

// Destination name -> its limit.
using PeerLimits = std::map<std::string, PeerLimit>;

// "AE@HOST:PORT".
std::string PeerKey(const std::string& ae_title, const std::string& host, uint16_t port);

// Reads `path`. NotFound when there is none; InvalidArgument naming the
// file and line for a line that does not parse (the rest is not used).
Result<PeerLimits> LoadPeerLimits(const std::string& path);
// Writes `limits` to `path`, leaving out those expired at `now_unix_ms`.
Status SavePeerLimits(const std::string& path, const PeerLimits& limits, int64_t now_unix_ms);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_PEER_LIMITS_H_
