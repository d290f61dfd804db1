// A headless Chromium that a test drives, for dashboard tests that click:
// the Chrome DevTools Protocol over --remote-debugging-pipe (requests are
// JSON messages ended by a NUL byte, written to the browser's fd 3 and read
// from its fd 4), so no WebSocket and no extra package. One page (target)
// per Browser; JavaScript is evaluated in it and its answer returned.
//
// Waits are for conditions in the page (WaitFor), each bounded so that a
// broken page fails the test instead of hanging it; nothing asserts on time.
#ifndef RELAIS_TESTS_INTEGRATION_BROWSER_H_
#define RELAIS_TESTS_INTEGRATION_BROWSER_H_

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>

namespace relais::itest {

inline constexpr char kChromiumPath[] = "/usr/bin/chromium";

class Browser {
 public:
  // `dir`: an existing directory for the profile and Chromium's stderr
  // (dir/chromium.err).
  explicit Browser(std::string dir);
  ~Browser();  // closes the browser; kills its process group if it hangs
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Starts Chromium and opens `url` in a new page. False (with error()) if
  // Chromium does not start or answer.
  bool Open(const std::string& url);
  // Evaluates `expression` in the page (a promise is awaited) and returns
  // its value as JSON; a null JSON with error() set if it threw or the
  // browser did not answer within timeout_s.
  nlohmann::json Eval(const std::string& expression, int timeout_s = 60);
  // Evaluates `condition` in the page every 100 ms until it is truthy and
  // returns that value; null JSON if it never was within timeout_s.
  nlohmann::json WaitFor(const std::string& condition, int timeout_s = 60);
  // Clicks the first element matching the CSS `selector`; false if none.
  bool Click(const std::string& selector);
  // Writes a PNG of the visible part of the page (width x height CSS
  // pixels) to `path`; false (with error()) on failure.
  bool Screenshot(const std::string& path, int width = 1280, int height = 900);
  // document.documentElement.outerHTML, for failure messages.
  std::string Html();
  const std::string& error() const { return error_; }
  std::string Stderr() const;

 private:
  nlohmann::json Call(const std::string& method, nlohmann::json params, bool in_page, int timeout_s);

  std::string dir_;
  pid_t pid_ = -1;
  int to_ = -1;     // our end of the browser's fd 3
  int from_ = -1;   // our end of the browser's fd 4
  std::string in_;  // bytes read, not yet a whole message
  int next_id_ = 1;
  std::string session_;
  std::string error_;
};

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_BROWSER_H_
