#include "kill9.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

namespace relais::itest {

bool SaveSentObject(DcmFileFormat& ff, E_FileWriteMode mode, const std::string& path, const std::string& uid,
                    SentObject* out, std::string* error) {
  OFCondition c =
      ff.saveFile(path.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_withoutGL, EPD_noChange, 0, 0, mode);
  if (c.bad()) {
    *error = "save " + path + ": " + c.text();
    return false;
  }
  out->path = path;
  out->uid = uid;
  if (!DatasetAfterMeta(ReadFile(path), &out->dataset)) {
    *error = "cannot find the data set in " + path;
    return false;
  }
  return true;
}

bool SendAndKill9(RelaisProcess& relais, const std::vector<std::vector<std::string>>& files, size_t want,
                  std::chrono::milliseconds cap, const std::string& log_prefix, Kill9Round* round) {
  *round = Kill9Round();
  std::vector<Child> senders(files.size());
  for (size_t k = 0; k < files.size(); ++k) {
    std::vector<std::string> argv = {"storescu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
    argv.insert(argv.end(), files[k].begin(), files[k].end());
    const std::string log = log_prefix + "-" + std::to_string(k) + ".log";
    if (!senders[k].Start(argv, log)) {
      ADD_FAILURE() << "cannot start storescu (" << log << ")";
      relais.Kill9();
      return false;
    }
  }
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + cap;
  while (std::chrono::steady_clock::now() < deadline) {
    size_t seen = 0;
    bool any_running = false;
    for (Child& c : senders) {
      seen += ParseStorescuVerbose(c.ReadLog()).acknowledged.size();
      any_running = c.running() || any_running;
    }
    if (seen >= want || !any_running) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  round->kill_after_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  relais.Kill9();

  for (Child& c : senders) {
    int status = c.Wait(60);
    if (status == -1) {
      ADD_FAILURE() << "storescu did not exit 60 s after Relais died";
      c.Stop(SIGKILL);
    }
    if (status != 0) round->interrupted = true;
    round->reports.push_back(ParseStorescuVerbose(c.ReadLog()));
  }
  return true;
}

}  // namespace relais::itest
