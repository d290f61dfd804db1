#include "browser.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace relais::itest {

using nlohmann::json;

Browser::Browser(std::string dir) : dir_(std::move(dir)) {}

Browser::~Browser() {
  if (pid_ > 0) {
    if (to_ >= 0) Call("Browser.close", json::object(), /*in_page=*/false, 10);
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      usleep(50 * 1000);
    }
    if (pid_ > 0) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  if (to_ >= 0) close(to_);
  if (from_ >= 0) close(from_);
}

std::string Browser::Stderr() const {
  std::ifstream in(dir_ + "/chromium.err");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str().substr(0, 3000);
}

bool Browser::Open(const std::string& url) {
  signal(SIGPIPE, SIG_IGN);  // a browser that died answers EPIPE, not a signal
  int to[2], from[2];
  if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0) {
    error_ = std::string("pipe: ") + strerror(errno);
    return false;
  }
  const std::string profile = dir_ + "/chromium-profile";
  const std::string err = dir_ + "/chromium.err";
  std::vector<std::string> args = {kChromiumPath,
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--disable-quic",
                                   "--no-first-run",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--remote-debugging-pipe",
                                   "--user-data-dir=" + profile,
                                   "about:blank"};
  pid_ = fork();
  if (pid_ < 0) {
    error_ = std::string("fork: ") + strerror(errno);
    return false;
  }
  if (pid_ == 0) {
    setpgid(0, 0);
    // fds 3 and 4: the browser reads requests from 3 and writes to 4.
    int r = dup(to[0]), w = dup(from[1]);
    if (r < 0 || w < 0) _exit(127);
    if (r != 3) {
      if (w == 3) w = dup(w);
      dup2(r, 3);
    }
    if (w != 4) dup2(w, 4);
    int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    setenv("HOME", dir_.c_str(), 1);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(to[0]);
  close(from[1]);
  to_ = to[1];
  from_ = from[0];
  json t = Call("Target.createTarget", {{"url", url}}, /*in_page=*/false, 60);
  if (!t.contains("targetId")) return false;
  json a = Call("Target.attachToTarget", {{"targetId", t["targetId"]}, {"flatten", true}}, false, 30);
  if (!a.contains("sessionId")) return false;
  session_ = a["sessionId"].get<std::string>();
  // The page loads while we attach: wait for its document.
  if (WaitFor("document.readyState === 'complete' && document.body !== null", 60).is_null()) {
    error_ = "the page did not load: " + error_;
    return false;
  }
  return true;
}

json Browser::Call(const std::string& method, json params, bool in_page, int timeout_s) {
  error_.clear();
  const int id = next_id_++;
  json msg = {{"id", id}, {"method", method}, {"params", std::move(params)}};
  if (in_page) msg["sessionId"] = session_;
  std::string out = msg.dump();
  out.push_back('\0');
  for (size_t off = 0; off < out.size();) {
    ssize_t n = write(to_, out.data() + off, out.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = "cannot write to Chromium: " + std::string(strerror(errno));
      return json();
    }
    off += static_cast<size_t>(n);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    // Whole messages first: events are skipped, our answer returned.
    for (size_t nul; (nul = in_.find('\0')) != std::string::npos;) {
      json m = json::parse(in_.substr(0, nul), nullptr, false);
      in_.erase(0, nul + 1);
      if (m.is_discarded() || !m.contains("id") || m["id"] != id) continue;
      if (m.contains("error")) {
        error_ = method + ": " + m["error"].dump();
        return json();
      }
      return m.value("result", json::object());
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      error_ = method + ": no answer from Chromium within " + std::to_string(timeout_s) + " s";
      return json();
    }
    pollfd p{from_, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = read(from_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = method + ": Chromium closed its pipe (" + Stderr() + ")";
      return json();
    }
    in_.append(buf, static_cast<size_t>(n));
  }
}

json Browser::Eval(const std::string& expression, int timeout_s) {
  json r;
  // While the page navigates (its first load, a reload) its context goes
  // away under an evaluation: evaluate again in the new one.
  for (int tries = 0;; ++tries) {
    r = Call(
        "Runtime.evaluate",
        {{"expression", expression}, {"awaitPromise", true}, {"returnByValue", true}, {"timeout", timeout_s * 1000}},
        /*in_page=*/true, timeout_s + 10);
    if (!r.is_null() || tries >= 50 || (error_.find("context") == std::string::npos)) break;
    usleep(100 * 1000);
  }
  if (r.is_null()) return r;
  if (r.contains("exceptionDetails")) {
    error_ = "page threw: " + r["exceptionDetails"].dump();
    return json();
  }
  const json& v = r["result"];
  return v.contains("value") ? v["value"] : json();
}

json Browser::WaitFor(const std::string& condition, int timeout_s) {
  const std::string js =
      "new Promise((resolve) => { const t0 = Date.now(); (function check() { let v = null; "
      "try { v = (" +
      condition +
      "); } catch (e) { v = null; } "
      "if (v) resolve(v); else if (Date.now() - t0 > " +
      std::to_string(timeout_s * 1000) + ") resolve(null); else setTimeout(check, 100); })(); })";
  json v = Eval(js, timeout_s + 10);
  if (v.is_null() && error_.empty()) error_ = "never true: " + condition;
  return v;
}

bool Browser::Click(const std::string& selector) {
  json v = Eval("(() => { const e = document.querySelector(" + json(selector).dump() +
                "); if (!e) return false; e.click(); return true; })()");
  return v.is_boolean() && v.get<bool>();
}

bool Browser::Screenshot(const std::string& path, int width, int height) {
  json m = Call("Emulation.setDeviceMetricsOverride",
                {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}}, true, 30);
  if (m.is_null()) return false;
  json r = Call("Page.captureScreenshot", {{"format", "png"}}, /*in_page=*/true, 60);
  if (!r.contains("data") || !r["data"].is_string()) return false;
  // RFC 4648 base64.
  const std::string b64 = r["data"].get<std::string>();
  std::string png;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : b64) {
    int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
            : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
            : ch >= '0' && ch <= '9' ? ch - '0' + 52
            : ch == '+'              ? 62
            : ch == '/'              ? 63
                                     : -1;
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      png.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << png;
  if (!out) error_ = "cannot write " + path;
  return static_cast<bool>(out);
}

std::string Browser::Html() {
  json v = Eval("document.documentElement.outerHTML");
  return v.is_string() ? v.get<std::string>().substr(0, 20000) : error_;
}

}  // namespace relais::itest
