// DeliveryScheduler (delivery.h): association limits learnt from peers kept
// across restarts (peer_limits.h), so that a restart does not open again the
// associations a peer refused a moment ago. The file is a hint: when it
// cannot be read or written, Relais says so once and learns the limit anew.
#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "router/deliver/delivery.h"
#include "router/deliver/delivery_state.h"

namespace relais::router {

void DeliveryScheduler::RestorePeerLimit(Dest* d) {
  auto it = peer_limits_.find(d->cfg.name);
  if (it == peer_limits_.end()) return;
  const PeerLimit& l = it->second;
  const int64_t now = NowUnixMs();
  if (d->concurrency->fixed() || l.peer != PeerKey(d->cfg.ae_title, d->cfg.host, d->cfg.port) || l.until_unix_ms <= now)
    return;
  d->concurrency->RestoreCeiling(l.ceiling, l.until_unix_ms);
  d->concurrency_changes = d->concurrency->changes();
  RLOG_INFO("dest=%s event=concurrency-ceiling-restored ceiling=%u peer=%s for_s=%lld target=%u", d->cfg.name.c_str(),
            l.ceiling, LogEscape(l.peer, false).c_str(), static_cast<long long>((l.until_unix_ms - now) / 1000),
            d->concurrency->target());
}

void DeliveryScheduler::KeepPeerLimit(Dest* d) {
  if (settings_.peer_limits_path.empty()) return;
  const ConcurrencyController& c = *d->concurrency;
  PeerLimit l;
  l.peer = PeerKey(d->cfg.ae_title, d->cfg.host, d->cfg.port);
  l.ceiling = c.ceiling();
  l.until_unix_ms = c.ceiling_until_ms();
  auto it = peer_limits_.find(d->cfg.name);
  if (it != peer_limits_.end() && it->second.peer == l.peer && it->second.ceiling == l.ceiling &&
      it->second.until_unix_ms + 60000 > l.until_unix_ms)
    return;  // already written (within a minute)
  peer_limits_[d->cfg.name] = l;
  Status s = SavePeerLimits(settings_.peer_limits_path, peer_limits_, NowUnixMs());
  if (!s.ok()) {
    RLOG_WARN(
        "dest=%s event=peer-limits-not-kept reason=\"%s\" fix=\"check that the store directory is writable; "
        "after a restart the limit is learnt again\"",
        d->cfg.name.c_str(), LogEscape(s.ToString(), true).c_str());
  }
}

}  // namespace relais::router
