// What the "nothing acknowledged is lost" tests share (crash_test,
// compress_kill_test): the objects they send, and the kill -9 round in which
// storescu processes send to a running `relais serve` that is killed with
// SIGKILL once enough objects are acknowledged; what each storescu saw
// acknowledged is what the store must hold after the restart.
#ifndef RELAIS_TESTS_INTEGRATION_KILL9_H_
#define RELAIS_TESTS_INTEGRATION_KILL9_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "harness.h"

namespace relais::itest {

// An object a kill -9 test sends: its Part 10 file, SOP Instance UID, and
// data set bytes (after the File Meta group), what the store must give back.
struct SentObject {
  std::string path;
  std::string uid;
  std::string dataset;
};

// Saves `ff` to `path` as Explicit VR Little Endian with explicit lengths
// (as storescu's DIMSE layer sends it, so that the file's data set bytes are
// the bytes sent) and fills `out` with `uid` and those bytes. False, with
// *error naming the file, on failure.
bool SaveSentObject(DcmFileFormat& ff, E_FileWriteMode mode, const std::string& path, const std::string& uid,
                    SentObject* out, std::string* error);

struct Kill9Round {
  // Per sender: the files it sent and those it saw answered with Success.
  std::vector<StorescuReport> reports;
  // A sender exited with an error after the kill: the kill cut a transfer.
  bool interrupted = false;
  // From the senders' start to the kill.
  int64_t kill_after_ms = 0;
};

// Starts one `storescu -v` per entry of `files` sending those files to
// `relais` (its output in LOG_PREFIX-K.log), waits until `want` files are
// acknowledged over all senders (an event, not a time), every sender has
// exited or `cap` has passed, then kills `relais` with SIGKILL and waits
// for the senders: one still running 60 s later is a test failure (and is
// killed). False, with a test failure, if a sender could not be started.
// REQUIRES: `relais` is running.
bool SendAndKill9(RelaisProcess& relais, const std::vector<std::vector<std::string>>& files, size_t want,
                  std::chrono::milliseconds cap, const std::string& log_prefix, Kill9Round* round);

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_KILL9_H_
