#include "router/deliver/send_work.h"

#include <span>
#include <utility>

#include "router/deliver/send_prep.h"

namespace relais::router {
namespace {

struct PrepareWork {
  uv_work_t req;
  PrepareJob job;
  PreparedObject result;
  std::function<void(PreparedObject)> done;
};

}  // namespace

PreparedObject PrepareStoredObject(const PrepareJob& job) {
  PreparedObject out;
  out.target_ts = job.target_ts;
  std::vector<uint8_t> raw;
  out.status = job.store->ReadObject(job.object_id, [&raw](std::span<const uint8_t> chunk) {
    raw.insert(raw.end(), chunk.begin(), chunk.end());
    return Status::OK();
  });
  if (!out.status.ok()) return out;
  Result<std::vector<uint8_t>> bytes = PrepareDataset(raw, job.stored_ts, out.target_ts, job.edits);
  if (!bytes.ok() && bytes.status().code() == Status::Code::kInvalidArgument && !job.fallback_ts.empty()) {
    out.fallback_reason = bytes.status().ToString();
    out.target_ts = job.fallback_ts;
    bytes = PrepareDataset(raw, job.stored_ts, out.target_ts, job.edits);
  }
  if (!bytes.ok()) {
    out.status = bytes.status();
    return out;
  }
  out.bytes = std::move(*bytes);
  return out;
}

void PrepareOnThreadPool(uv_loop_t* loop, PrepareJob job, std::function<void(PreparedObject)> done) {
  auto* w = new PrepareWork;
  w->req.data = w;
  w->job = std::move(job);
  w->done = std::move(done);
  uv_queue_work(
      loop, &w->req,
      [](uv_work_t* req) {
        auto* w = static_cast<PrepareWork*>(req->data);
        w->result = PrepareStoredObject(w->job);
      },
      [](uv_work_t* req, int) {
        auto* w = static_cast<PrepareWork*>(req->data);
        w->done(std::move(w->result));
        delete w;
      });
}

}  // namespace relais::router
