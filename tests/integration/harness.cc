#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace relais::itest {
namespace {

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

pid_t Spawn(const std::vector<std::string>& argv, int out_fd, const std::map<std::string, std::string>& env) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child.
  setpgid(0, 0);
  dup2(out_fd, STDOUT_FILENO);
  dup2(out_fd, STDERR_FILENO);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, STDIN_FILENO);
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

int WaitPid(pid_t pid, int timeout_ms, int* status) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return 0;
    if (r < 0) return -2;
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    SleepMs(5);
  }
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/relais-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* p = mkdtemp(buf.data());
  path_ = p ? p : "/tmp";
}

TempDir::~TempDir() {
  if (std::getenv("RELAIS_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  uint16_t port = ntohs(a.sin_port);
  close(fd);
  return port;
}

int ConnectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int ConnectFrom(int host, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl(0x7F000000u | static_cast<uint32_t>(host));
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool ClosedByServer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) != 1) return false;
  char b[256];
  while (true) {
    ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (n > 0) continue;  // an A-ABORT before the close
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

int CountOccurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool WaitForPort(uint16_t port, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    close(fd);
    if (rc == 0) return true;
    SleepMs(20);
  }
  return false;
}

RunResult RunCommand(const std::vector<std::string>& argv, int timeout_s,
                     const std::map<std::string, std::string>& env) {
  RunResult r;
  char path[] = "/tmp/relais-run-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return r;
  pid_t pid = Spawn(argv, fd, env);
  int status = 0;
  int w = WaitPid(pid, timeout_s * 1000, &status);
  if (w == -1) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  close(fd);
  r.output = ReadFile(path);
  unlink(path);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  if (w == -1) r.output += "\n[harness: killed after " + std::to_string(timeout_s) + " s timeout]\n";
  return r;
}

Child::~Child() {
  if (pid_ > 0) Stop(SIGKILL, 10);
}

Child::Child(Child&& o) noexcept : pid_(o.pid_), log_path_(std::move(o.log_path_)) { o.pid_ = -1; }

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0) Stop(SIGKILL, 10);
    pid_ = o.pid_;
    log_path_ = std::move(o.log_path_);
    o.pid_ = -1;
  }
  return *this;
}

bool Child::Start(const std::vector<std::string>& argv, const std::string& log_path,
                  const std::map<std::string, std::string>& env) {
  log_path_ = log_path;
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return false;
  pid_ = Spawn(argv, fd, env);
  close(fd);
  return pid_ > 0;
}

bool Child::running() {
  if (pid_ <= 0) return false;
  int status;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Child::Stop(int sig, int timeout_s) {
  if (pid_ <= 0) return 0;
  kill(pid_, sig);
  int status = 0;
  int w = WaitPid(pid_, timeout_s * 1000, &status);
  if (w == -1) return -1;
  pid_ = -1;
  return status;
}

int Child::Wait(int timeout_s) {
  if (pid_ <= 0) return 0;
  int status = 0;
  int w = WaitPid(pid_, timeout_s * 1000, &status);
  if (w == -1) return -1;
  pid_ = -1;
  return status;
}

std::string Child::ReadLog() const { return ReadFile(log_path_); }

RelaisProcess::RelaisProcess(const std::string& dir, RelaisOptions options) : dir_(dir), options_(std::move(options)) {
  port_ = FreePort();
  config_path_ = dir_ + "/relais.toml";
  store_path_ = dir_ + "/store";
  std::ostringstream c;
  c << "[listener]\n"
    << "ae_title = \"" << options_.ae_title << "\"\n"
    << "host = \"127.0.0.1\"\n"
    << "port = " << port_ << "\n"
    << "max_associations = " << options_.max_associations << "\n"
    << "max_pdu = " << options_.max_pdu << "\n"
    << "artim_timeout_s = " << options_.artim_timeout_s << "\n"
    << "idle_timeout_s = " << options_.idle_timeout_s << "\n"
    << "\n[store]\n"
    << "path = \"" << store_path_ << "\"\n";
  if (!options_.max_size.empty()) c << "max_size = \"" << options_.max_size << "\"\n";
  c << options_.extra << "\n";
  WriteFile(config_path_, c.str());
}

bool RelaisProcess::Start() {
  ++starts_;
  std::string log = dir_ + "/relais.log";
  const size_t log_before = ReadFile(log).size();  // the log is appended to across restarts
  if (!child_.Start({RelaisBinary(), "serve", "--config", config_path_}, log, options_.env)) return false;
  // Ready when this start has logged that it listens and the port answers.
  // The port alone is not enough: while Relais is down after a kill, another
  // test's process may take the port, or a connect may meet itself (a
  // loopback connect whose ephemeral source port is the port it dials).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child_.running()) return false;
    const std::string text = ReadFile(log);
    if (text.size() > log_before && text.find("event=listening ", log_before) != std::string::npos) {
      return WaitForPort(port_, 10000);
    }
    SleepMs(20);
  }
  return false;
}

void RelaisProcess::Kill9() { child_.Stop(SIGKILL, 10); }

int RelaisProcess::Terminate() {
  int status = child_.Stop(SIGTERM, 60);
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

uint64_t RelaisProcess::RssKiB() const {
  std::string s = ReadFile("/proc/" + std::to_string(child_.pid()) + "/status");
  size_t p = s.find("VmRSS:");
  if (p == std::string::npos) return 0;
  return std::strtoull(s.c_str() + p + 6, nullptr, 10);
}

std::map<std::string, std::string> RelaisProcess::StoreList() const {
  std::map<std::string, std::string> out;
  RunResult r = RunCommand({RelaisBinary(), "store", "ls", "--config", config_path_, "--json"}, 120);
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    std::string uid = JsonField(line, "sop_instance_uid");
    if (!uid.empty()) out[uid] = line;
  }
  return out;
}

bool RelaisProcess::Export(const std::string& uid, const std::string& out_path) const {
  RunResult r = RunCommand({RelaisBinary(), "store", "export", "--config", config_path_, uid, "-o", out_path}, 120);
  return r.exit_code == 0;
}

std::vector<std::string> ListFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

std::string JsonField(const std::string& json, const std::string& key) {
  std::string needle = "\"" + key + "\":\"";
  size_t p = json.find(needle);
  if (p == std::string::npos) return "";
  p += needle.size();
  std::string out;
  while (p < json.size() && json[p] != '"') {
    if (json[p] == '\\' && p + 1 < json.size()) ++p;
    out += json[p++];
  }
  return out;
}

std::string CorpusDir() { return RELAIS_CORPUS_DIR; }
std::string RelaisBinary() { return RELAIS_BINARY; }

}  // namespace relais::itest

// ---- Additions for crash_test / hostile_test ---------------------------------

namespace relais::itest {
namespace {

uint16_t Le16(const std::string& s, size_t p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(s[p]) | (static_cast<uint8_t>(s[p + 1]) << 8));
}

uint32_t Le32(const std::string& s, size_t p) {
  return static_cast<uint32_t>(Le16(s, p)) | (static_cast<uint32_t>(Le16(s, p + 2)) << 16);
}

// PS3.5 7.1.2: VRs whose explicit-VR header has 2 reserved bytes and a
// 32-bit length.
bool HasLongLength(const std::string& vr) {
  static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* v : kLong) {
    if (vr == v) return true;
  }
  return false;
}

// Walks the File Meta group; calls fn(element, value_offset, value_length)
// for each element. Returns the offset just past the group, or npos.
template <typename Fn>
size_t WalkMeta(const std::string& f, Fn fn) {
  // PS3.10 7.1: 128-byte preamble, then "DICM".
  if (f.size() < 132 || f.compare(128, 4, "DICM") != 0) return std::string::npos;
  size_t p = 132;
  while (p + 8 <= f.size()) {
    uint16_t group = Le16(f, p);
    if (group != 0x0002) return p;
    uint16_t element = Le16(f, p + 2);
    std::string vr = f.substr(p + 4, 2);
    size_t len;
    size_t value;
    if (HasLongLength(vr)) {
      if (p + 12 > f.size()) return std::string::npos;
      len = Le32(f, p + 8);
      value = p + 12;
    } else {
      len = Le16(f, p + 6);
      value = p + 8;
    }
    if (len == 0xFFFFFFFFu || value + len > f.size()) return std::string::npos;
    fn(element, value, len);
    p = value + len;
  }
  return p == f.size() ? p : std::string::npos;
}

}  // namespace

bool DatasetAfterMeta(const std::string& part10, std::string* dataset) {
  size_t end = WalkMeta(part10, [](uint16_t, size_t, size_t) {});
  if (end == std::string::npos) return false;
  *dataset = part10.substr(end);
  return true;
}

std::string Part10TransferSyntax(const std::string& part10) {
  std::string ts;
  WalkMeta(part10, [&](uint16_t element, size_t value, size_t len) {
    if (element == 0x0010) ts = part10.substr(value, len);
  });
  while (!ts.empty() && (ts.back() == '\0' || ts.back() == ' ')) ts.pop_back();
  return ts;
}

StorescuReport ParseStorescuVerbose(const std::string& output) {
  StorescuReport r;
  std::istringstream in(output);
  std::string line;
  std::string current;
  static const std::string kSending = "Sending file: ";
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t p = line.find(kSending);
    if (p != std::string::npos) {
      current = line.substr(p + kSending.size());
      r.sent.push_back(current);
      continue;
    }
    if (line.find("Received Store Response (Success)") != std::string::npos && !current.empty()) {
      r.acknowledged.push_back(current);
      current.clear();  // one response per file
    }
  }
  return r;
}

}  // namespace relais::itest

// ---- Additions for corpus / parallel / store_full / large_object tests ------

namespace relais::itest {

uint64_t PeakRssKiB(pid_t pid) {
  std::string s = ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t p = s.find("VmHWM:");
  if (p == std::string::npos) return 0;
  return std::strtoull(s.c_str() + p + 6, nullptr, 10);
}

std::vector<std::string> StorescuAcked(uint16_t port, const std::vector<std::string>& files,
                                       const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv = {"storescu", "-v", "-nh", "-aec", "RELAIS"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  argv.insert(argv.end(), {"127.0.0.1", std::to_string(port)});
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult r = RunCommand(argv, 300);
  std::vector<std::string> acked;
  for (const auto& [path, o] : ParseStorescuOutcomes(r.output)) {
    if (o.acknowledged) acked.push_back(path);
  }
  return acked;
}

std::map<std::string, StorescuOutcome> ParseStorescuOutcomes(const std::string& output) {
  std::map<std::string, StorescuOutcome> out;
  std::istringstream in(output);
  std::string line;
  std::string pending;  // E:/W: lines not yet attributed to a file
  std::string current;  // file whose C-STORE is in progress
  static const std::string kSending = "Sending file: ";
  static const std::string kIgnoring = ", ignoring file";
  static const std::string kInFile = "in file: ";
  static const std::string kResponse = "Received Store Response";
  static const std::string kStatus = "DIMSE Status";
  auto is_diag = [](const std::string& l) {
    return l.rfind("E: ", 0) == 0 || l.rfind("W: ", 0) == 0 || l.find("XMIT: W:") != std::string::npos;
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (size_t p = line.find(kSending); p != std::string::npos) {
      current = line.substr(p + kSending.size());
      StorescuOutcome& o = out[current];
      o = StorescuOutcome{};
      o.sent = true;
      pending.clear();
      continue;
    }
    // Check phase: "W: <why> in file: PATH[: UID], ignoring file".
    if (size_t e = line.rfind(kIgnoring); e != std::string::npos && current.empty()) {
      size_t f = line.find(kInFile);
      if (f != std::string::npos && f < e) {
        std::string path = line.substr(f + kInFile.size(), e - f - kInFile.size());
        // Strip a trailing ": <SOP class UID>" if the path itself has none.
        if (size_t c = path.find(": "); c != std::string::npos) path.resize(c);
        StorescuOutcome& o = out[path];
        o.sent = false;
        o.reason = pending + line;
        pending.clear();
        continue;
      }
    }
    if (current.empty()) {
      if (is_diag(line)) pending += line + "\n";
      continue;
    }
    StorescuOutcome& o = out[current];
    if (size_t p = line.find(kResponse); p != std::string::npos) {
      size_t open = line.find('(', p);
      size_t close = line.rfind(')');
      if (open != std::string::npos && close != std::string::npos && close > open) {
        o.response = line.substr(open + 1, close - open - 1);
        o.acknowledged = o.response == "Success";
      }
    } else if (size_t p = line.find(kStatus); p != std::string::npos) {
      size_t hex = line.find("0x", p);
      if (hex != std::string::npos) {
        o.status = static_cast<int>(std::strtol(line.c_str() + hex + 2, nullptr, 16));
        o.response = line.substr(hex);
        o.acknowledged = o.status == 0;
      }
    } else if (is_diag(line)) {
      o.reason += line + "\n";
    } else if (line.find("Releasing Association") != std::string::npos ||
               line.find("Aborting Association") != std::string::npos) {
      current.clear();
    }
  }
  return out;
}

}  // namespace relais::itest

// DCMTK-based helpers (integration_test links relais_dcmtk).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <cstdio>

namespace relais::itest {

std::vector<std::string> MakeCopiesWithNewUids(const std::string& source, const std::string& dir, int count,
                                               std::vector<std::string>* uids) {
  std::vector<std::string> paths;
  DcmFileFormat ff;
  if (ff.loadFile(source.c_str()).bad()) return {};
  // Read every value now: the source file is not touched again.
  ff.loadAllDataIntoMemory();
  DcmDataset* ds = ff.getDataset();
  for (int i = 0; i < count; ++i) {
    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    if (ds->putAndInsertString(DCM_SOPInstanceUID, uid).bad()) return {};
    // Let saveFile rebuild the meta header for the new UID.
    ff.getMetaInfo()->clear();
    char name[32];
    std::snprintf(name, sizeof(name), "/obj%05d.dcm", i);
    std::string path = dir + name;
    // The DIMSE encoding: dcmnet/dimse.cc g_dimse_send_* defaults.
    if (ff.saveFile(path.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_withoutPadding)
            .bad()) {
      return {};
    }
    paths.push_back(path);
    uids->push_back(uid);
  }
  return paths;
}

namespace {

// Offset of the data set in a Part 10 file: 128-byte preamble, "DICM", then
// the File Meta group, whose first element (0002,0000) UL gives the length
// of the rest of the group (PS3.10 7.1). 0 if `f` does not look like that.
uint64_t DataSetOffset(std::ifstream& f) {
  char head[144];
  if (!f.read(head, sizeof(head))) return 0;
  if (std::memcmp(head + 128, "DICM", 4) != 0) return 0;
  const auto* u = reinterpret_cast<const uint8_t*>(head + 132);
  // (0002,0000) "UL" length 4: 02 00 00 00 55 4C 04 00 <value>.
  if (u[0] != 0x02 || u[1] != 0 || u[2] != 0 || u[3] != 0 || u[4] != 'U' || u[5] != 'L') return 0;
  uint32_t len = u[8] | (u[9] << 8) | (u[10] << 16) | (static_cast<uint32_t>(u[11]) << 24);
  return 144 + static_cast<uint64_t>(len);
}

}  // namespace

bool ReadDataSetAfterGroupLength(const std::string& path, std::string* data_set) {
  std::ifstream f(path, std::ios::binary);
  uint64_t offset = DataSetOffset(f);
  if (offset == 0) return false;
  std::string all = ReadFile(path);
  if (offset > all.size()) return false;
  *data_set = all.substr(offset);
  return true;
}

bool SameDataSet(const std::string& a, const std::string& b, std::string* why) {
  std::ifstream fa(a, std::ios::binary);
  std::ifstream fb(b, std::ios::binary);
  uint64_t oa = DataSetOffset(fa);
  uint64_t ob = DataSetOffset(fb);
  if (oa == 0 || ob == 0) {
    *why = "not a Part 10 file with (0002,0000) first: " + (oa == 0 ? a : b);
    return false;
  }
  fa.clear();
  fb.clear();
  fa.seekg(static_cast<std::streamoff>(oa));
  fb.seekg(static_cast<std::streamoff>(ob));
  std::vector<char> ba(1 << 20);
  std::vector<char> bb(1 << 20);
  uint64_t pos = 0;
  while (true) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    std::streamsize na = fa.gcount();
    std::streamsize nb = fb.gcount();
    std::streamsize n = std::min(na, nb);
    for (std::streamsize i = 0; i < n; ++i) {
      if (ba[i] != bb[i]) {
        *why = "data sets differ at data set offset " + std::to_string(pos + i);
        return false;
      }
    }
    if (na != nb) {
      *why = "data sets differ in length (one ends at data set offset " + std::to_string(pos + n) + ")";
      return false;
    }
    if (na == 0) return true;
    pos += static_cast<uint64_t>(na);
  }
}

}  // namespace relais::itest

// ---- Additions for rules_test ------------------------------------------------

namespace relais::itest {
namespace {

// Index just past the JSON string that starts at json[p] == '"', or npos.
// Appends the unescaped contents to *out when out is not null (\uXXXX is
// kept as written: the tests compare ASCII names).
size_t SkipJsonString(const std::string& json, size_t p, std::string* out) {
  ++p;  // opening quote
  while (p < json.size()) {
    char c = json[p];
    if (c == '"') return p + 1;
    if (c == '\\') {
      if (p + 1 >= json.size()) return std::string::npos;
      char e = json[p + 1];
      if (out != nullptr) {
        switch (e) {
          case 'n': *out += '\n'; break;
          case 't': *out += '\t'; break;
          case 'r': *out += '\r'; break;
          case 'u': *out += "\\u"; break;
          default: *out += e; break;
        }
      }
      p += 2;
      continue;
    }
    if (out != nullptr) *out += c;
    ++p;
  }
  return std::string::npos;
}

// Index just past the JSON value that starts at json[p], or npos.
size_t SkipJsonValue(const std::string& json, size_t p) {
  if (p >= json.size()) return std::string::npos;
  if (json[p] == '"') return SkipJsonString(json, p, nullptr);
  if (json[p] == '{' || json[p] == '[') {
    int depth = 0;
    while (p < json.size()) {
      char c = json[p];
      if (c == '"') {
        p = SkipJsonString(json, p, nullptr);
        if (p == std::string::npos) return p;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
    return std::string::npos;
  }
  while (p < json.size() && json[p] != ',' && json[p] != ']' && json[p] != '}') ++p;
  return p;
}

size_t SkipSpace(const std::string& json, size_t p) {
  while (p < json.size() && (json[p] == ' ' || json[p] == '\t' || json[p] == '\n' || json[p] == '\r')) ++p;
  return p;
}

}  // namespace

std::vector<std::string> JsonArrayField(const std::string& json, const std::string& key) {
  std::string needle = "\"" + key + "\":";
  size_t p = json.find(needle);
  if (p == std::string::npos) return {};
  p = SkipSpace(json, p + needle.size());
  if (p >= json.size() || json[p] != '[') return {};
  std::vector<std::string> out;
  p = SkipSpace(json, p + 1);
  if (p < json.size() && json[p] == ']') return out;
  while (p < json.size()) {
    if (json[p] == '"') {
      std::string s;
      size_t end = SkipJsonString(json, p, &s);
      if (end == std::string::npos) return {};
      out.push_back(s);
      p = end;
    } else {
      size_t end = SkipJsonValue(json, p);
      if (end == std::string::npos) return {};
      std::string raw = json.substr(p, end - p);
      while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t')) raw.pop_back();
      out.push_back(raw);
      p = end;
    }
    p = SkipSpace(json, p);
    if (p >= json.size()) return {};
    if (json[p] == ']') return out;
    if (json[p] != ',') return {};
    p = SkipSpace(json, p + 1);
  }
  return {};
}

}  // namespace relais::itest
