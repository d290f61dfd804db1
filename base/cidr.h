// IP addresses and CIDR blocks ("10.1.2.0/24", "fd00::/8", "192.0.2.7"),
// for access control (router/receive/access.h) and its configuration check.
// Header-only; no allocation.
#ifndef RELAIS_BASE_CIDR_H_
#define RELAIS_BASE_CIDR_H_

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace relais {

struct Cidr {
  int family = AF_INET;  // AF_INET or AF_INET6
  uint8_t addr[16] = {};
  int prefix = 32;  // bits that must match

  // "IP" (a /32 or /128) or "IP/PREFIX". nullopt when malformed, or when
  // the address has bits set beyond the prefix ("10.1.2.3/24": say
  // "10.1.2.0/24"), which is almost always a typo.
  static std::optional<Cidr> Parse(const std::string& text) {
    Cidr c;
    std::string ip = text;
    int prefix = -1;
    size_t slash = text.find('/');
    if (slash != std::string::npos) {
      ip = text.substr(0, slash);
      std::string p = text.substr(slash + 1);
      if (p.empty() || p.size() > 3) return std::nullopt;
      prefix = 0;
      for (char ch : p) {
        if (ch < '0' || ch > '9') return std::nullopt;
        prefix = prefix * 10 + (ch - '0');
      }
    }
    if (inet_pton(AF_INET, ip.c_str(), c.addr) == 1) {
      c.family = AF_INET;
      c.prefix = prefix < 0 ? 32 : prefix;
      if (c.prefix > 32) return std::nullopt;
    } else if (inet_pton(AF_INET6, ip.c_str(), c.addr) == 1) {
      c.family = AF_INET6;
      c.prefix = prefix < 0 ? 128 : prefix;
      if (c.prefix > 128) return std::nullopt;
    } else {
      return std::nullopt;
    }
    const int bytes = c.family == AF_INET ? 4 : 16;
    for (int bit = c.prefix; bit < bytes * 8; ++bit) {
      if (c.addr[bit / 8] & (0x80 >> (bit % 8))) return std::nullopt;
    }
    return c;
  }

  // True when `ip` (an IP literal; IPv4-mapped IPv6 "::ffff:a.b.c.d" counts
  // as IPv4) lies in this block.
  bool Contains(const std::string& ip) const {
    uint8_t a[16] = {};
    int fam;
    if (inet_pton(AF_INET, ip.c_str(), a) == 1) {
      fam = AF_INET;
    } else if (inet_pton(AF_INET6, ip.c_str(), a) == 1) {
      static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
      if (std::memcmp(a, kMapped, 12) == 0) {
        std::memmove(a, a + 12, 4);
        std::memset(a + 4, 0, 12);
        fam = AF_INET;
      } else {
        fam = AF_INET6;
      }
    } else {
      return false;
    }
    if (fam != family) return false;
    for (int bit = 0; bit < prefix; ++bit) {
      const uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
      if ((a[bit / 8] & m) != (addr[bit / 8] & m)) return false;
    }
    return true;
  }
};

}  // namespace relais

#endif  // RELAIS_BASE_CIDR_H_
