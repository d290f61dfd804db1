// DeliveryScheduler (delivery.h): how many associations a destination gets
// and which rows go on which — the adaptive concurrency controller's hooks
// (concurrency.h: associations counted, the target followed and logged) and
// the priority lane (an association beyond the target for rows of a higher
// priority than those being sent).
#include <algorithm>

#include "base/log.h"
#include "router/deliver/delivery.h"
#include "router/deliver/delivery_state.h"

namespace relais::router {
namespace {

constexpr size_t kMaxConnecting = 8;  // associations being opened at once per destination

}  // namespace

// Associations established and not closing (probes and the priority lane,
// which is one beyond the target, aside).
uint32_t DeliveryScheduler::OpenSenders(const Dest* d) {
  uint32_t n = 0;
  for (const auto& s : d->senders) n += s->established && !s->closing && !s->probe && !s->lane;
  return n;
}

// More associations are open than the concurrency target (it came down).
bool DeliveryScheduler::Surplus(const Dest* d) {
  uint32_t live = 0;
  for (const auto& s : d->senders) live += !s->closing && !s->probe && !s->lane;
  return live > d->concurrency->target();
}

// Associations in any state but the priority lane.
size_t DeliveryScheduler::CountedSenders(const Dest* d) {
  size_t n = 0;
  for (const auto& s : d->senders) n += !s->lane;
  return n;
}

void DeliveryScheduler::LogConcurrency(Dest* d) {
  const ConcurrencyController& c = *d->concurrency;
  if (c.changes() == d->concurrency_changes) return;
  d->concurrency_changes = c.changes();
  RLOG_INFO("dest=%s event=concurrency-target target=%u reason=%s open=%u ceiling=%u", d->cfg.name.c_str(), c.target(),
            c.reason().c_str(), OpenSenders(d), c.ceiling());
}

void DeliveryScheduler::Dispatch(Dest* d, int64_t now) {
  d->concurrency->Update(now, OpenSenders(d), !d->ready.empty());
  LogConcurrency(d);
  const uint32_t target = d->concurrency->target();
  for (size_t i = 0; i < d->senders.size(); ++i) {
    Sender* s = d->senders[i].get();
    if (!s->established || !s->HasRoom() || s->closing || s->probe) continue;
    if (s->generation == d->generation) SendNext(d, s);
    if (!s->busy && s->lane) {
      // Nothing of its priority waits: the lane closes.
      s->closing = true;
      s->assoc->Release();
      continue;
    }
    if (!s->busy && !s->closing && !d->ready.empty() && CountedSenders(d) >= target) {
      // It cannot carry any waiting row: make room for one planned for them.
      s->closing = true;
      s->assoc->Release();
    }
  }
  MaybeOpenLane(d);
  // Open more associations while rows wait that no association will take.
  // After a failure, one association tries the link before the others follow.
  const size_t limit = d->failures > 0 ? 1 : target;
  while (!d->ready.empty() && !d->down && CountedSenders(d) < limit) {
    size_t connecting = 0;
    for (auto& s : d->senders) connecting += !s->established && !s->closing;
    if (d->ready.size() <= connecting) break;
    // A step of the adaptive target (16 to 64) opens many at once: at most
    // kMaxConnecting connect together, as a peer may take no more
    // unassociated connections from one address (a Relais receiver evicts
    // the oldest beyond 8: a reset, not a refusal). Each that associates
    // opens the next.
    if (connecting >= kMaxConnecting) break;
    OpenSender(d, /*probe=*/false);
  }
}

void DeliveryScheduler::MaybeOpenLane(Dest* d) {
  if (d->ready.empty() || d->in_flight.empty() || d->down || d->failures > 0) return;
  const int32_t head = d->ready.begin()->first.priority;
  // in_flight is in queue order: its first row has the highest priority.
  if (d->in_flight.begin()->priority >= head) return;  // rows of its rank are being sent: it takes its turn
  const Row& first = d->ready.begin()->second;
  const ObjectKind kind{first.meta.sop_class_uid, first.meta.transfer_syntax_uid};
  size_t open = 0;
  for (auto& s : d->senders) open += !s->closing && !s->probe;
  if (open < d->concurrency->target()) return;  // below the target: Dispatch opens one planned for it
  for (auto& s : d->senders) {
    if (s->closing || s->probe) continue;
    if (s->lane) return;                         // one lane at a time
    if (s->established && s->HasRoom()) return;  // room: Dispatch gives it the row or makes room
    if (!s->established && std::find(s->proposed.begin(), s->proposed.end(), kind) != s->proposed.end()) {
      return;  // connecting, planned for it
    }
  }
  OpenSender(d, /*probe=*/false, /*lane=*/true, head);
  Sender* lane = d->senders.back().get();
  RLOG_INFO("dest=%s dassoc=%s event=priority-lane priority=%d in_flight=%zu target=%u", d->cfg.name.c_str(),
            lane->name.c_str(), head, d->in_flight.size(), d->concurrency->target());
}

}  // namespace relais::router
