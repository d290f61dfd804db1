// wanlink: a user-space WAN link between two network namespaces, for tests
// and benchmarks on kernels without `tc netem`.
//
//   wanlink --ns-a NSA --ns-b NSB [--addr-a 10.77.0.1/24] [--addr-b 10.77.0.2/24]
//           [--dev wan0] [--mtu 1500] [--delay-ms D] [--loss P] [--seed S]
//           [--rate BYTES_PER_S] [--queue-ms Q | --queue-bytes N]
//           [--control PATH] [--ready-file PATH]
//   wanlink ctl PATH COMMAND...       (client: sends one command, prints the reply)
//
// It creates one TUN device (IFF_TUN | IFF_NO_PI, so every read(2) is one
// IPv4/IPv6 packet) in each namespace: it enters the namespace with setns(2),
// opens /dev/net/tun, and comes back; the device stays in the namespace it
// was created in and the fd stays valid. The address, MTU and IFF_UP are set
// with the classic SIOCSIF* ioctls on a socket made inside that namespace,
// so no `ip` command is needed. Each namespace then routes its /24 through
// its TUN device, and wanlink carries every packet to the other side.
//
// Each direction is one FIFO "wire" with this model, applied on arrival:
//   1. link down: the packet is dropped (counted `down`);
//   2. loss: dropped with probability P (counted `loss`), xorshift PRNG, --seed;
//   3. rate (if set): the packet is serialised on a virtual link of R bytes/s.
//      Its departure time is max(now, link_free) + size / R. If the backlog
//      (link_free - now) already exceeds the queue limit, the packet is
//      dropped (`queue`, tail drop, like a router's FIFO);
//   4. it is delivered (written to the other TUN) at departure + delay.
// Packets already on the wire when the link goes down are dropped at
// delivery (`down`). A delay change never reorders packets.
//
// Control (UNIX stream socket at --control; one command per line, one reply
// line each): "down", "up", "toggle", "loss P", "delay MS", "rate BYTES_PER_S"
// (0 = unlimited), "queue-ms MS", "stats". SIGUSR1 toggles down/up.
// SIGINT/SIGTERM print the stats and exit 0.
//
// One thread, epoll over the two TUN fds, a timerfd (absolute, CLOCK_MONOTONIC)
// for the next delivery, a signalfd and the control socket. Packet buffers
// live in a ring per direction that grows (doubling) only when full, so the
// steady state makes no allocation per packet.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int64_t kNsPerSec = 1000000000;
constexpr int64_t kNsPerMs = 1000000;
// Largest ring (packets) per direction: past it, arrivals are tail-dropped
// (counted `overflow`). 2^18 slots of 2 KiB = 512 MiB would be the worst
// case; it is only reached with a huge delay and no rate limit.
constexpr size_t kMaxSlots = size_t{1} << 18;
constexpr int kReadBatch = 256;  // packets read from one fd per wakeup

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * kNsPerSec + ts.tv_nsec;
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "wanlink: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// Link parameters, shared by both directions; changed by control commands.
struct LinkParams {
  int64_t delay_ns = 0;
  double loss = 0.0;                  // probability in [0, 1]
  uint64_t rate_bps = 0;              // bytes per second; 0 = unlimited
  int64_t queue_ns = 100 * kNsPerMs;  // backlog limit when rate_bps > 0
  uint64_t queue_bytes = 0;           // if non-zero, overrides queue_ns via the rate
  bool down = false;
};

struct Counters {
  uint64_t packets = 0, bytes = 0;  // delivered
  uint64_t loss = 0, queue = 0, down = 0, overflow = 0, write_errors = 0;
};

// One direction: packets read from `in_fd`, delivered to `out_fd`.
class Wire {
 public:
  Wire(const char* name, int in_fd, int out_fd, size_t slot_size)
      : name_(name), in_fd_(in_fd), out_fd_(out_fd), slot_size_(slot_size) {
    Grow(1024);
  }

  // Reads up to kReadBatch packets and applies the model to each.
  // `rnd` draws a uniform double in [0, 1).
  template <typename Rand>
  void ReadSome(const LinkParams& p, int64_t now, Rand&& rnd) {
    for (int i = 0; i < kReadBatch; ++i) {
      if (count_ == slots_.size() && slots_.size() < kMaxSlots) Grow(slots_.size() * 2);
      bool full = count_ == slots_.size();
      uint8_t* buf = full ? scratch_.data() : Data(Tail());
      ssize_t n = read(in_fd_, buf, slot_size_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        Die("read tun");
      }
      if (n == 0) return;
      if (p.down) {
        ++c_.down;
        continue;
      }
      if (p.loss > 0 && rnd() < p.loss) {
        ++c_.loss;
        continue;
      }
      if (full) {
        ++c_.overflow;
        continue;
      }
      int64_t depart = now;
      if (p.rate_bps > 0) {
        int64_t start = link_free_ > now ? link_free_ : now;
        int64_t limit = p.queue_bytes > 0 ? static_cast<int64_t>(p.queue_bytes * 1e9 / p.rate_bps) : p.queue_ns;
        if (start - now > limit) {
          ++c_.queue;
          continue;
        }
        depart = start + static_cast<int64_t>(n * 1e9 / p.rate_bps);
        link_free_ = depart;
      }
      int64_t at = depart + p.delay_ns;
      if (at < last_at_) at = last_at_;  // never reorder
      last_at_ = at;
      Slot& s = slots_[Tail()];
      s.at = at;
      s.len = static_cast<uint32_t>(n);
      ++count_;
    }
  }

  // Writes every packet due at `now`; drops them instead while down.
  void Deliver(bool down, int64_t now) {
    while (count_ > 0 && slots_[head_].at <= now) {
      Slot& s = slots_[head_];
      if (down) {
        ++c_.down;
      } else {
        ssize_t w = write(out_fd_, Data(head_), s.len);
        if (w == static_cast<ssize_t>(s.len)) {
          ++c_.packets;
          c_.bytes += s.len;
        } else {
          ++c_.write_errors;
        }
      }
      head_ = (head_ + 1) & (slots_.size() - 1);
      --count_;
    }
  }

  // Deadline of the next delivery, or -1 if empty.
  int64_t Next() const { return count_ > 0 ? slots_[head_].at : -1; }

  std::string Stats() const {
    char line[512];
    std::snprintf(line, sizeof line,
                  "%s: forwarded %" PRIu64 " packets %" PRIu64 " bytes; dropped loss %" PRIu64 " queue %" PRIu64
                  " down %" PRIu64 " overflow %" PRIu64 " write_errors %" PRIu64 "; in flight %zu",
                  name_, c_.packets, c_.bytes, c_.loss, c_.queue, c_.down, c_.overflow, c_.write_errors, count_);
    return line;
  }

 private:
  struct Slot {
    int64_t at;
    uint32_t len;
  };

  size_t Tail() const { return (head_ + count_) & (slots_.size() - 1); }
  uint8_t* Data(size_t i) { return bytes_.data() + i * slot_size_; }

  // Re-lays the ring out in order into `n` slots (a power of two).
  void Grow(size_t n) {
    std::vector<Slot> slots(n);
    std::vector<uint8_t> bytes(n * slot_size_);
    for (size_t k = 0; k < count_; ++k) {
      size_t from = (head_ + k) & (slots_.size() - 1);
      slots[k] = slots_[from];
      std::memcpy(bytes.data() + k * slot_size_, Data(from), slots_[from].len);
    }
    slots_.swap(slots);
    bytes_.swap(bytes);
    head_ = 0;
    if (scratch_.empty()) scratch_.resize(slot_size_);
  }

  const char* name_;
  int in_fd_, out_fd_;
  size_t slot_size_;
  std::vector<Slot> slots_;
  std::vector<uint8_t> bytes_;
  std::vector<uint8_t> scratch_;
  size_t head_ = 0, count_ = 0;
  int64_t link_free_ = 0;  // when the virtual serialiser is idle again
  int64_t last_at_ = 0;
  Counters c_;
};

// ---------------------------------------------------------------- setup

int OpenNetns(const std::string& name) {
  std::string path = name.find('/') == std::string::npos ? "/var/run/netns/" + name : name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "wanlink: open %s: %s\n", path.c_str(), std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

void SetIfAddr(int sock, const char* dev, unsigned long req, in_addr_t a) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = a;
  std::memcpy(&ifr.ifr_addr, &sin, sizeof sin);
  if (ioctl(sock, req, &ifr) < 0) Die("ioctl SIOCSIFADDR/NETMASK");
}

// Enters namespace `ns`, creates TUN `dev`, sets `cidr` (may be empty), MTU,
// a long tx queue and IFF_UP, and returns to the original namespace.
int MakeTun(const std::string& ns, const std::string& dev, const std::string& cidr, int mtu) {
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) Die("open /proc/self/ns/net");
  int target = OpenNetns(ns);
  if (setns(target, CLONE_NEWNET) < 0) Die("setns");
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) Die("open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) Die("ioctl TUNSETIFF");
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // bound to `ns`
  if (sock < 0) Die("socket");
  if (!cidr.empty()) {
    std::string ip = cidr;
    int prefix = 24;
    if (size_t slash = cidr.find('/'); slash != std::string::npos) {
      ip = cidr.substr(0, slash);
      prefix = std::atoi(cidr.c_str() + slash + 1);
    }
    in_addr a{};
    if (inet_pton(AF_INET, ip.c_str(), &a) != 1 || prefix < 1 || prefix > 32) {
      std::fprintf(stderr, "wanlink: bad address %s\n", cidr.c_str());
      std::exit(2);
    }
    SetIfAddr(sock, ifr.ifr_name, SIOCSIFADDR, a.s_addr);
    SetIfAddr(sock, ifr.ifr_name, SIOCSIFNETMASK, htonl(~uint32_t{0} << (32 - prefix)));
  }
  ifreq q{};
  std::memcpy(q.ifr_name, ifr.ifr_name, IFNAMSIZ);
  q.ifr_mtu = mtu;
  if (ioctl(sock, SIOCSIFMTU, &q) < 0) Die("ioctl SIOCSIFMTU");
  q.ifr_qlen = 10000;  // the kernel's queue towards us; ours does the dropping
  if (ioctl(sock, SIOCSIFTXQLEN, &q) < 0) Die("ioctl SIOCSIFTXQLEN");
  if (ioctl(sock, SIOCGIFFLAGS, &q) < 0) Die("ioctl SIOCGIFFLAGS");
  q.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(sock, SIOCSIFFLAGS, &q) < 0) Die("ioctl SIOCSIFFLAGS");
  close(sock);
  if (setns(self, CLONE_NEWNET) < 0) Die("setns back");
  close(self);
  close(target);
  return fd;
}

// ---------------------------------------------------------------- control

int ControlClient(const char* path, const std::string& cmd) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path, sizeof sun.sun_path - 1);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) < 0) {
    std::fprintf(stderr, "wanlink ctl: connect %s: %s\n", path, std::strerror(errno));
    return 1;
  }
  std::string line = cmd + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 1;
  shutdown(fd, SHUT_WR);
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, n);
  close(fd);
  std::fputs(reply.c_str(), stdout);
  return reply.rfind("ok", 0) == 0 ? 0 : 1;
}

struct ControlConn {
  int fd;
  std::string in;
};

struct Options {
  std::string ns_a, ns_b, addr_a = "10.77.0.1/24", addr_b = "10.77.0.2/24", dev = "wan0";
  std::string control, ready_file;
  int mtu = 1500;
  uint64_t seed = 1;
};

class Emulator {
 public:
  Emulator(int tun_a, int tun_b, size_t slot, LinkParams p, uint64_t seed)
      : params_(p),
        rng_(seed ? seed : 1),
        ab_("a->b", tun_a, tun_b, slot),
        ba_("b->a", tun_b, tun_a, slot),
        tun_a_(tun_a),
        tun_b_(tun_b) {}

  std::string Stats() const {
    char head[256];
    std::snprintf(head, sizeof head, "link %s delay_ms %.3f loss %.4f rate %" PRIu64 " queue_ms %.1f",
                  params_.down ? "down" : "up", params_.delay_ns / 1e6, params_.loss, params_.rate_bps, QueueMs());
    return std::string(head) + "\n" + ab_.Stats() + "\n" + ba_.Stats();
  }

  int Run(int ctl_fd);

 private:
  double Uniform() {  // xorshift64*, top 53 bits
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return ((rng_ * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
  }
  double QueueMs() const {
    if (params_.queue_bytes > 0 && params_.rate_bps > 0) return params_.queue_bytes * 1e3 / params_.rate_bps;
    return params_.queue_ns / 1e6;
  }
  std::string Command(const std::string& line);
  void HandleControl(ControlConn& c);

  LinkParams params_;
  uint64_t rng_;
  Wire ab_, ba_;
  int tun_a_, tun_b_;
  bool quit_ = false;
};

std::string Emulator::Command(const std::string& raw) {
  std::string line = raw;
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  std::string verb = line.substr(0, line.find(' '));
  std::string arg = line.size() > verb.size() ? line.substr(verb.size() + 1) : "";
  char* end = nullptr;
  double v = std::strtod(arg.c_str(), &end);
  bool num = !arg.empty() && end && *end == '\0' && v >= 0;
  if (verb == "down") {
    params_.down = true;
    return "ok down";
  }
  if (verb == "up") {
    params_.down = false;
    return "ok up";
  }
  if (verb == "toggle") {
    params_.down = !params_.down;
    return params_.down ? "ok down" : "ok up";
  }
  if (verb == "stats") {
    std::string s = Stats();
    for (char& ch : s)
      if (ch == '\n') ch = '|';
    return "ok " + s;
  }
  if (verb == "loss" && num && v <= 1) {
    params_.loss = v;
    return "ok loss " + arg;
  }
  if (verb == "delay" && num) {
    params_.delay_ns = static_cast<int64_t>(v * kNsPerMs);
    return "ok delay " + arg;
  }
  if (verb == "rate" && num) {
    params_.rate_bps = static_cast<uint64_t>(v);
    return "ok rate " + arg;
  }
  if (verb == "queue-ms" && num) {
    params_.queue_ns = static_cast<int64_t>(v * kNsPerMs);
    params_.queue_bytes = 0;
    return "ok queue-ms " + arg;
  }
  return "error unknown command: " + line;
}

void Emulator::HandleControl(ControlConn& c) {
  char buf[1024];
  ssize_t n;
  while ((n = read(c.fd, buf, sizeof buf)) > 0) {
    c.in.append(buf, n);
    if (c.in.size() > 65536) break;
  }
  for (size_t nl; (nl = c.in.find('\n')) != std::string::npos;) {
    std::string reply = Command(c.in.substr(0, nl)) + "\n";
    c.in.erase(0, nl + 1);
    if (write(c.fd, reply.data(), reply.size()) < 0) break;
  }
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || c.in.size() > 65536) {
    close(c.fd);
    c.fd = -1;
  }
}

int Emulator::Run(int ctl_fd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (ep < 0 || tfd < 0 || sfd < 0) Die("epoll/timerfd/signalfd");
  // epoll data: fd, or -2 - index for control connections.
  auto add = [&](int fd, uint64_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) Die("epoll_ctl");
  };
  add(tun_a_, tun_a_);
  add(tun_b_, tun_b_);
  add(tfd, tfd);
  add(sfd, sfd);
  if (ctl_fd >= 0) add(ctl_fd, ctl_fd);
  std::vector<ControlConn> conns;
  int64_t armed = -1;
  epoll_event evs[16];
  while (!quit_) {
    int64_t now = NowNs();
    ab_.Deliver(params_.down, now);
    ba_.Deliver(params_.down, now);
    int64_t next = ab_.Next();
    int64_t nb = ba_.Next();
    if (next < 0 || (nb >= 0 && nb < next)) next = nb;
    if (next != armed) {
      itimerspec its{};  // all zero disarms
      if (next >= 0) {
        its.it_value.tv_sec = next / kNsPerSec;
        its.it_value.tv_nsec = next % kNsPerSec;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
      }
      timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, nullptr);
      armed = next;
    }
    int n = epoll_wait(ep, evs, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    now = NowNs();
    for (int i = 0; i < n; ++i) {
      uint64_t tag = evs[i].data.u64;
      if (tag == static_cast<uint64_t>(tun_a_)) {
        ab_.ReadSome(params_, now, [this] { return Uniform(); });
      } else if (tag == static_cast<uint64_t>(tun_b_)) {
        ba_.ReadSome(params_, now, [this] { return Uniform(); });
      } else if (tag == static_cast<uint64_t>(tfd)) {
        uint64_t ticks;
        if (read(tfd, &ticks, sizeof ticks) < 0) {
        }
        armed = -1;  // re-arm after delivering
      } else if (tag == static_cast<uint64_t>(sfd)) {
        signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo == SIGUSR1) {
            params_.down = !params_.down;
            std::fprintf(stderr, "wanlink: SIGUSR1: link %s\n", params_.down ? "down" : "up");
          } else if (si.ssi_signo != SIGHUP) {
            quit_ = true;
          }
        }
      } else if (ctl_fd >= 0 && tag == static_cast<uint64_t>(ctl_fd)) {
        int c;
        while ((c = accept4(ctl_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          size_t slot = conns.size();
          for (size_t k = 0; k < conns.size(); ++k)
            if (conns[k].fd < 0) {
              slot = k;
              break;
            }
          if (slot == conns.size()) conns.push_back({-1, {}});
          conns[slot] = {c, {}};
          add(c, uint64_t{1} << 32 | slot);
        }
      } else if (tag >> 32 == 1) {
        ControlConn& c = conns[tag & 0xffffffff];
        if (c.fd >= 0) HandleControl(c);  // closing the fd removes it from epoll
      }
    }
  }
  std::printf("%s\n", Stats().c_str());
  std::fflush(stdout);
  return 0;
}

void Usage() {
  std::fputs(
      "usage: wanlink --ns-a NS --ns-b NS [--addr-a CIDR] [--addr-b CIDR] [--dev NAME]\n"
      "               [--mtu N] [--delay-ms D] [--loss P] [--seed S] [--rate BYTES_PER_S]\n"
      "               [--queue-ms Q | --queue-bytes N] [--control PATH] [--ready-file PATH]\n"
      "       wanlink ctl PATH COMMAND   (down|up|toggle|loss P|delay MS|rate B|queue-ms MS|stats)\n",
      stderr);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::strcmp(argv[1], "ctl") == 0) {
    std::string cmd;
    for (int i = 3; i < argc; ++i) cmd += (i > 3 ? " " : "") + std::string(argv[i]);
    return ControlClient(argv[2], cmd);
  }
  Options o;
  LinkParams p;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      Usage();
      return 0;
    }
    if (i + 1 >= argc) {
      Usage();
      return 2;
    }
    const char* v = argv[++i];
    if (a == "--ns-a") o.ns_a = v;
    else if (a == "--ns-b") o.ns_b = v;
    else if (a == "--addr-a") o.addr_a = v;
    else if (a == "--addr-b") o.addr_b = v;
    else if (a == "--dev") o.dev = v;
    else if (a == "--mtu") o.mtu = std::atoi(v);
    else if (a == "--delay-ms") p.delay_ns = static_cast<int64_t>(std::atof(v) * kNsPerMs);
    else if (a == "--loss") p.loss = std::atof(v);
    else if (a == "--seed") o.seed = std::strtoull(v, nullptr, 10);
    else if (a == "--rate") p.rate_bps = std::strtoull(v, nullptr, 10);
    else if (a == "--queue-ms") p.queue_ns = static_cast<int64_t>(std::atof(v) * kNsPerMs);
    else if (a == "--queue-bytes") p.queue_bytes = std::strtoull(v, nullptr, 10);
    else if (a == "--control") o.control = v;
    else if (a == "--ready-file") o.ready_file = v;
    else {
      Usage();
      return 2;
    }
  }
  if (o.ns_a.empty() || o.ns_b.empty() || o.mtu < 576 || o.mtu > 9000 || p.loss < 0 || p.loss > 1 || p.delay_ns < 0) {
    Usage();
    return 2;
  }
  int tun_a = MakeTun(o.ns_a, o.dev, o.addr_a, o.mtu);
  int tun_b = MakeTun(o.ns_b, o.dev, o.addr_b, o.mtu);
  int ctl = -1;
  if (!o.control.empty()) {
    unlink(o.control.c_str());
    ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (o.control.size() >= sizeof sun.sun_path) {
      std::fputs("wanlink: control path too long\n", stderr);
      return 2;
    }
    std::strncpy(sun.sun_path, o.control.c_str(), sizeof sun.sun_path - 1);
    if (ctl < 0 || bind(ctl, reinterpret_cast<sockaddr*>(&sun), sizeof sun) < 0 || listen(ctl, 16) < 0)
      Die("control socket");
  }
  signal(SIGPIPE, SIG_IGN);
  // Slot: MTU rounded up to 64 bytes (one read is one packet of at most MTU).
  size_t slot = (static_cast<size_t>(o.mtu) + 63) & ~size_t{63};
  Emulator emu(tun_a, tun_b, slot, p, o.seed);
  if (!o.ready_file.empty()) {
    FILE* f = std::fopen(o.ready_file.c_str(), "w");
    if (f) {
      std::fprintf(f, "%d\n", getpid());
      std::fclose(f);
    }
  }
  std::fprintf(stderr, "wanlink: ready: %s(%s) <-> %s(%s)\n", o.ns_a.c_str(), o.addr_a.c_str(), o.ns_b.c_str(),
               o.addr_b.c_str());
  int rc = emu.Run(ctl);
  if (!o.control.empty()) unlink(o.control.c_str());
  return rc;
}
