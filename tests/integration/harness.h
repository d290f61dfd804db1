// Test harness for integration tests: runs the real `relais` binary and
// DCMTK's tools as child processes on 127.0.0.1, in a temp directory that is
// removed afterwards.
#ifndef RELAIS_TESTS_INTEGRATION_HARNESS_H_
#define RELAIS_TESTS_INTEGRATION_HARNESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/clock.h"

namespace relais::itest {

// A fresh temp directory, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t FreePort();

// Result of a finished child process.
struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] (searched in PATH) with `env` added to the environment, waits
// at most `timeout_s`, and returns its output. Killed (SIGKILL) on timeout.
RunResult RunCommand(const std::vector<std::string>& argv, int timeout_s = 300,
                     const std::map<std::string, std::string>& env = {});

// A child process running in the background; output goes to `log_path`.
class Child {
 public:
  Child() = default;
  ~Child();  // SIGKILLs and reaps the process if still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;

  bool Start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::map<std::string, std::string>& env = {});
  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig`; waits at most timeout_s for exit; returns the exit status
  // as waitpid gives it, or -1 if it did not exit in time.
  int Stop(int sig, int timeout_s = 30);
  // Waits for the process to exit by itself; -1 on timeout.
  int Wait(int timeout_s);
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

// Settings for the relais config a test writes.
struct RelaisOptions {
  std::string ae_title = "RELAIS";
  uint32_t max_associations = 64;
  uint32_t max_pdu = 262144;
  uint32_t artim_timeout_s = 30;
  uint32_t idle_timeout_s = 300;
  std::string max_size;                    // e.g. "4MiB"; empty: default
  std::string extra;                       // appended verbatim to the config
  std::map<std::string, std::string> env;  // added to `relais serve`'s environment
};

// One `relais serve` with its own config and store in a temp dir.
class RelaisProcess {
 public:
  explicit RelaisProcess(const std::string& dir, RelaisOptions options = {});
  // Starts and waits until the port accepts connections (false on failure;
  // the log says why).
  bool Start();
  void Kill9();
  // SIGTERM, wait for a clean exit; returns the exit code.
  int Terminate();
  uint16_t port() const { return port_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& store_path() const { return store_path_; }
  std::string Log() const { return child_.ReadLog(); }
  pid_t pid() const { return child_.pid(); }
  bool running() { return child_.running(); }
  // Resident memory of the process (VmRSS) in KiB, 0 if unknown.
  uint64_t RssKiB() const;

  // `relais store ls --json` parsed into SOP Instance UID -> JSON line.
  std::map<std::string, std::string> StoreList() const;
  // `relais store export UID -o OUT`; true on success.
  bool Export(const std::string& uid, const std::string& out_path) const;

 private:
  std::string dir_;
  RelaisOptions options_;
  uint16_t port_ = 0;
  std::string config_path_;
  std::string store_path_;
  Child child_;
  int starts_ = 0;
};

// A blocking TCP socket connected to 127.0.0.1:port, or -1. The caller
// closes it.
int ConnectLoopback(uint16_t port);

// A connection to 127.0.0.1:port from source address 127.0.0.`host` (all of
// 127/8 is loopback), so that one test is many peers; -1 on failure.
int ConnectFrom(int host, uint16_t port);

// True if the server has closed `fd` (a read returns 0 or an error, after
// any A-ABORT it sent first). Does not block.
bool ClosedByServer(int fd);

// How many times `needle` occurs in `text` (e.g. log events).
int CountOccurrences(const std::string& text, const std::string& needle);

// True once a TCP connect to 127.0.0.1:port succeeds, within timeout_ms.
bool WaitForPort(uint16_t port, int timeout_ms);

// Files in `dir` (non-recursive), sorted.
std::vector<std::string> ListFiles(const std::string& dir);
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& data);

// The value of "key":"..." in a one-line JSON object (no nesting), or "".
std::string JsonField(const std::string& json, const std::string& key);

// Corpus directory and path of the relais binary (compile definitions).
std::string CorpusDir();
std::string RelaisBinary();

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_HARNESS_H_

// ---- Additions for crash_test / hostile_test ---------------------------------
// (Own guard: appended after the main include guard.)
#ifndef RELAIS_TESTS_INTEGRATION_HARNESS_CRASH_HOSTILE_H_
#define RELAIS_TESTS_INTEGRATION_HARNESS_CRASH_HOSTILE_H_

namespace relais::itest {

// The data set bytes of a DICOM Part 10 file: everything after the 128-byte
// preamble, "DICM" and the File Meta Information group (0002,xxxx), which
// PS3.10 7.1 says is always Explicit VR Little Endian. Walks the meta
// elements one by one (it does not trust (0002,0000) alone). Returns false
// if `part10` is not a well-formed Part 10 file.
bool DatasetAfterMeta(const std::string& part10, std::string* dataset);

// The value of (0002,0010) Transfer Syntax UID of a Part 10 file, without
// padding, or "" if absent.
std::string Part10TransferSyntax(const std::string& part10);

// What one `storescu -v` run said, in order. A file counts as acknowledged
// only if "Received Store Response (Success)" followed its "Sending file:".
struct StorescuReport {
  std::vector<std::string> sent;          // every "Sending file: X"
  std::vector<std::string> acknowledged;  // files answered with Success
};
StorescuReport ParseStorescuVerbose(const std::string& output);

// Milliseconds since an arbitrary fixed point (steady clock): base's.
using ::relais::NowMs;

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_HARNESS_CRASH_HOSTILE_H_

// ---- Additions for corpus / parallel / store_full / large_object tests ------
// (Own guard: appended after the main include guard.)
#ifndef RELAIS_TESTS_INTEGRATION_HARNESS_STORESCU_H_
#define RELAIS_TESTS_INTEGRATION_HARNESS_STORESCU_H_

#include <map>
#include <string>

namespace relais::itest {

// Peak resident memory (VmHWM in /proc/PID/status) of process `pid`, in KiB;
// 0 if unknown (e.g. the process is gone).
uint64_t PeakRssKiB(pid_t pid);

// What one storescu run said about one input file.
struct StorescuOutcome {
  bool sent = false;          // "Sending file: X" appeared
  bool acknowledged = false;  // ... and its C-STORE-RSP status was Success
  std::string response;       // "(TEXT)" of "Received Store Response (TEXT)"
                              // with -v; the DIMSE Status line text with -d
  int status = -1;            // DIMSE status from the `-d` dump; -1 if unknown
  std::string reason;         // storescu's E:/W: lines about this file
};

// Parses the output of `storescu -v` or `storescu -d`, keyed by file path as
// given on the command line. Files storescu dropped while checking its input
// ("..., ignoring file") get sent = false and the warnings that led there
// (DCMTK's parse errors come just before) as `reason`. A file sent twice
// (e.g. --repeat) keeps its last outcome.
std::map<std::string, StorescuOutcome> ParseStorescuOutcomes(const std::string& output);

// Sends `files` with `storescu -v -nh -aec RELAIS EXTRA_ARGS 127.0.0.1 PORT`
// in one association; returns the paths acknowledged with Success.
// `extra_args` e.g. {"-xf", cfg, profile}.
std::vector<std::string> StorescuAcked(uint16_t port, const std::vector<std::string>& files,
                                       const std::vector<std::string>& extra_args = {});

// Writes `count` copies of the DICOM file `source` into `dir` (which must
// exist), each with a fresh SOP Instance UID from dcmGenerateUniqueIdentifier,
// in Explicit VR Little Endian and encoded as DIMSE sends a data set
// (explicit-length sequences and items, recalculated group lengths), so that
// storescu puts each file's data set bytes on the wire unchanged. Returns the
// paths in order and appends the UIDs to `uids`; an empty vector on error.
std::vector<std::string> MakeCopiesWithNewUids(const std::string& source, const std::string& dir, int count,
                                               std::vector<std::string>* uids);

// True if the data set of Part 10 file `a` (after its File Meta group) has
// the same bytes as that of `b`; compares in 1 MiB blocks, so it works for
// files of any size. On mismatch `why` says where.
bool SameDataSet(const std::string& a, const std::string& b, std::string* why);

// The data set bytes of Part 10 file `path` (everything after the File Meta
// group, located through (0002,0000) File Meta Information Group Length,
// PS3.10 7.1). False if the file does not start that way.
bool ReadDataSetAfterGroupLength(const std::string& path, std::string* data_set);

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_HARNESS_STORESCU_H_

// ---- Additions for rules_test ------------------------------------------------
// (Own guard: appended after the main include guard.)
#ifndef RELAIS_TESTS_INTEGRATION_HARNESS_RULES_H_
#define RELAIS_TESTS_INTEGRATION_HARNESS_RULES_H_

#include <string>
#include <vector>

namespace relais::itest {

// The elements of the array "key":[...] in a one-line JSON object (the first
// occurrence of the key at any depth). String elements are returned
// unquoted and unescaped; any other element (object, array, number, literal)
// is returned as its raw JSON text. Empty if the key is absent, is not an
// array, or the text is malformed.
std::vector<std::string> JsonArrayField(const std::string& json, const std::string& key);

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_HARNESS_RULES_H_
