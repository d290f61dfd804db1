// Scrubber: see scrubber.h.
#include "router/operate/scrubber.h"

#include <algorithm>
#include <exception>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "router/record/metrics.h"

namespace relais::router {
namespace {

// Objects one batch checks at most, whatever their size (a store of tiny
// objects must not turn one batch into a long read transaction).
constexpr size_t kMaxObjectsPerBatch = 2000;

}  // namespace

Scrubber::Scrubber(uv_loop_t* loop, const store::Store* store, Metrics* metrics, uint64_t rate_bytes_per_s)
    : loop_(loop), store_(store), metrics_(metrics), rate_(rate_bytes_per_s) {}

// The timer handle lives in this object: Shutdown() must have been called
// and the loop run until the close callback (and any batch) before.
Scrubber::~Scrubber() = default;

void Scrubber::Start(uint64_t interval_ms) {
  if (rate_ == 0 || shut_ || timer_open_) return;
  interval_ms_ = interval_ms == 0 ? 1000 : interval_ms;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  RLOG_INFO("event=scrub-started rate_bytes_per_s=%llu: every stored object is read back and checked, in turn",
            static_cast<unsigned long long>(rate_));
  uv_timer_start(
      &timer_, [](uv_timer_t* t) noexcept { static_cast<Scrubber*>(t->data)->Tick(); }, interval_ms_, interval_ms_);
}

void Scrubber::Shutdown() {
  shut_ = true;
  if (!timer_open_) return;
  timer_open_ = false;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void Scrubber::Tick() {
  const int64_t share = static_cast<int64_t>(std::min<uint64_t>(rate_ * interval_ms_ / 1000, INT64_MAX / 4));
  credit_ = std::min(credit_ + std::max<int64_t>(share, 1), std::max<int64_t>(share, 1));
  if (busy_ || shut_ || credit_ <= 0) return;
  auto* w = new Work;
  w->req.data = w;
  w->self = this;
  w->from_id = cursor_;
  w->max_bytes = static_cast<uint64_t>(credit_);
  busy_ = true;
  int rc = uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) noexcept {
        auto* work = static_cast<Work*>(req->data);
        try {
          work->result = work->self->store_->Scrub(work->from_id, kMaxObjectsPerBatch, work->max_bytes);
        } catch (const std::exception& e) {
          work->result = Status::Internal(e.what());
        }
      },
      [](uv_work_t* req, int) noexcept {
        auto* work = static_cast<Work*>(req->data);
        work->self->Done(work);
      });
  if (rc != 0) {
    busy_ = false;
    delete w;
  }
}

void Scrubber::Done(Work* w) {
  busy_ = false;
  Result<store::ScrubBatch> r = std::move(w->result);
  delete w;
  if (!r.ok()) {
    RLOG_WARN("event=scrub-failed error=\"%s\": tried again at the next tick", r.status().ToString().c_str());
    return;
  }
  const store::ScrubBatch& b = *r;
  credit_ -= static_cast<int64_t>(b.raw_bytes);
  cursor_ = b.next_id;
  uint64_t newly = 0;
  for (const store::VerifyProblem& p : b.damaged) {
    if (!this_pass_.emplace(p.object_id, p).second) continue;
    ++newly;
    if (last_pass_.count(p.object_id) == 0) ++this_pass_new_;
    if (damaged_since_unix_ms_ == 0) damaged_since_unix_ms_ = NowUnixMs();
    RLOG_ERROR(
        "event=scrub-damaged id=%llu sop=%s what=\"%s\": this object cannot be read back as received; run "
        "`relais store verify --repair` to quarantine it, and have the sender send it again",
        static_cast<unsigned long long>(p.object_id), LogToken(p.sop_instance_uid).c_str(),
        LogEscape(p.what, true).c_str());
  }
  if (b.wrapped) {
    last_pass_ = std::move(this_pass_);
    this_pass_.clear();
    this_pass_new_ = 0;
    if (last_pass_.empty()) damaged_since_unix_ms_ = 0;
  }
  if (metrics_) metrics_->ScrubBatch(b.objects, b.raw_bytes, newly, b.wrapped, damaged_known());
}

std::vector<Alerts::Active> Scrubber::Condition() const {
  std::vector<Alerts::Active> out;
  if (damaged_known() == 0) return out;
  const std::map<uint64_t, store::VerifyProblem>& any = this_pass_.empty() ? last_pass_ : this_pass_;
  std::string example;
  if (!any.empty()) {
    const store::VerifyProblem& p = any.begin()->second;
    example = " (e.g. object " + std::to_string(p.object_id) + " " + p.sop_instance_uid + ": " + p.what + ")";
  }
  Alerts::Active a{"scrub-damaged", "store", "", damaged_since_unix_ms_};
  a.message = "The background scrub found " + std::to_string(damaged_known()) +
              " stored object(s) that cannot be read back as received" + example +
              ". Run `relais store verify --repair` to quarantine them (log lines event=scrub-damaged name each), "
              "and have their senders send them again; check the disk.";
  out.push_back(std::move(a));
  return out;
}

}  // namespace relais::router
