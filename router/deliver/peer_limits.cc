#include "router/deliver/peer_limits.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/file.h"

namespace relais::router {

std::string PeerKey(const std::string& ae_title, const std::string& host, uint16_t port) {
  return ae_title + "@" + host + ":" + std::to_string(port);
}

Result<PeerLimits> LoadPeerLimits(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return Status::NotFound(path + ": no peer limits kept yet");
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot read " + path + ": " + std::strerror(errno));
  PeerLimits limits;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    std::stringstream ss(line);
    for (std::string f; std::getline(ss, f, '\t');) fields.push_back(f);
    char* end = nullptr;
    PeerLimit l;
    bool ok = fields.size() == 4 && !fields[0].empty() && !fields[1].empty();
    if (ok) {
      errno = 0;
      const unsigned long ceiling = std::strtoul(fields[2].c_str(), &end, 10);
      ok = errno == 0 && *end == '\0' && ceiling >= 1 && ceiling <= 0xffff;
      l.ceiling = static_cast<uint32_t>(ceiling);
    }
    if (ok) {
      errno = 0;
      const long long until = std::strtoll(fields[3].c_str(), &end, 10);
      ok = errno == 0 && *end == '\0' && until > 0;
      l.until_unix_ms = until;
    }
    if (!ok) {
      return Status::InvalidArgument(path + ":" + std::to_string(number) +
                                     ": expected NAME<TAB>AE@HOST:PORT<TAB>CEILING<TAB>UNTIL_UNIX_MS; the file is "
                                     "ignored (delete it to forget every learnt limit)");
    }
    l.peer = fields[1];
    limits[fields[0]] = l;
  }
  return limits;
}

Status SavePeerLimits(const std::string& path, const PeerLimits& limits, int64_t now_unix_ms) {
  std::string text =
      "# relais: association limits learnt from peers (adaptive concurrency); "
      "NAME\tAE@HOST:PORT\tCEILING\tUNTIL_UNIX_MS\n";
  for (const auto& [name, l] : limits) {
    if (l.until_unix_ms <= now_unix_ms || l.ceiling == 0) continue;
    text += name + "\t" + l.peer + "\t" + std::to_string(l.ceiling) + "\t" + std::to_string(l.until_unix_ms) + "\n";
  }
  return WriteFileAtomically(path, text);
}

}  // namespace relais::router
