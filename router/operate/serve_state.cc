// The live destination state file: see the header.
#include "router/operate/serve_state.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "base/clock.h"
#include "base/file.h"
#include "base/json_safe.h"
#include "base/log.h"

namespace relais::router {
namespace {

using nlohmann::json;

constexpr int kFormat = 1;
constexpr uint64_t kCheckMs = 1000;      // a change is written within this
constexpr int64_t kHeartbeatMs = 10000;  // and the file at least this often

std::string FilePath(const std::string& store_path) { return store_path + "/" + kServeStateFile; }

// Why a destination is in its state; since when (0: unknown).
std::pair<std::string, int64_t> ReasonOf(const DestinationStats& d) {
  if (d.state == "misconfigured") return {d.misconfigured_reason, d.misconfigured_since_unix_ms};
  if (d.state == "paused") return {"paused by an admin (relais queue resume, or the admin API)", 0};
  if (d.state == "down" || d.state == "backing-off") return {d.last_error, d.failing_since_unix_ms};
  return {"", 0};
}

json DestinationsJson(const std::vector<DestinationStats>& dests) {
  json out = json::array();
  for (const DestinationStats& d : dests) {
    auto [reason, since] = ReasonOf(d);
    out.push_back(json{{"name", d.name},
                       {"state", d.state},
                       {"reason", reason},
                       {"since_unix_ms", since},
                       {"next_try_unix_ms", d.next_try_unix_ms},
                       {"consecutive_failures", d.consecutive_failures}});
  }
  return out;
}

}  // namespace

std::string RenderServeState(const std::vector<DestinationStats>& dests, int64_t pid, bool running,
                             int64_t written_unix_ms) {
  return JsonDump(json{{"format", kFormat},
                       {"pid", pid},
                       {"running", running},
                       {"written_unix_ms", written_unix_ms},
                       {"destinations", DestinationsJson(dests)}}) +
         "\n";
}

ServeStateFile::ServeStateFile(uv_loop_t* loop, std::string store_path,
                               std::function<std::vector<DestinationStats>()> source)
    : loop_(loop), path_(FilePath(store_path)), source_(std::move(source)) {
  timer_.data = this;
}

ServeStateFile::~ServeStateFile() = default;

void ServeStateFile::Start() {
  if (started_) return;
  started_ = true;
  uv_timer_init(loop_, &timer_);
  Write(/*running=*/true, /*force=*/true);
  uv_timer_start(&timer_, &ServeStateFile::OnTimer, kCheckMs, kCheckMs);
}

void ServeStateFile::Shutdown() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  Write(/*running=*/false, /*force=*/true);
}

void ServeStateFile::OnTimer(uv_timer_t* t) noexcept {
  static_cast<ServeStateFile*>(t->data)->Write(/*running=*/true, /*force=*/false);
}

void ServeStateFile::Write(bool running, bool force) {
  const std::vector<DestinationStats> dests = source_();
  const std::string now_part = JsonDump(DestinationsJson(dests));
  const int64_t now = NowUnixMs();
  if (!force && now_part == last_ && now - last_write_ms_ < kHeartbeatMs) return;
  Status s = WriteFileAtomically(path_, RenderServeState(dests, ::getpid(), running, now));
  if (!s.ok()) {
    if (!warned_) {
      RLOG_WARN("event=serve-state-write-failed path=%s reason=\"%s\" (relais queue ls will not show live states)",
                path_.c_str(), s.message().c_str());
    }
    warned_ = true;
    return;
  }
  warned_ = false;
  last_ = now_part;
  last_write_ms_ = now;
}

Result<ServeState> ReadServeState(const std::string& store_path) {
  const std::string path = FilePath(store_path);
  std::ifstream in(path);
  if (!in) return Status::NotFound("no " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  json j = json::parse(buf.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("destinations") || !j["destinations"].is_array()) {
    return Status::Corruption(path + " does not parse (cut by a crash?); relais serve rewrites it within a second");
  }
  ServeState st;
  try {
    st.pid = j.value("pid", int64_t{0});
    st.running = j.value("running", false);
    st.written_unix_ms = j.value("written_unix_ms", int64_t{0});
    for (const json& d : j["destinations"]) {
      if (!d.is_object() || !d.contains("name") || !d["name"].is_string()) continue;
      ServeState::Destination out;
      out.state = d.value("state", "");
      out.reason = d.value("reason", "");
      out.since_unix_ms = d.value("since_unix_ms", int64_t{0});
      out.next_try_unix_ms = d.value("next_try_unix_ms", int64_t{0});
      out.consecutive_failures = d.value("consecutive_failures", uint32_t{0});
      st.destinations[d["name"].get<std::string>()] = std::move(out);
    }
  } catch (const json::exception& e) {  // a field of the wrong type
    return Status::Corruption(path + ": " + e.what());
  }
  return st;
}

bool ServeStateWriterAlive(const ServeState& state) {
  if (state.pid <= 0 || !state.running) return false;
  const pid_t pid = static_cast<pid_t>(state.pid);
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  // A pid reused by another program after a crash: its name says so.
  std::ifstream comm("/proc/" + std::to_string(state.pid) + "/comm");
  std::string name;
  if (comm && std::getline(comm, name)) return name.rfind("relais", 0) == 0;
  return true;
}

}  // namespace relais::router
