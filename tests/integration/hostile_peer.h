// A raw DICOM peer for hostile tests (hostile_test.cc, hostile_async_test.cc):
// PDUs built by hand from PS3.8 section 9.3 (not with router/protocol/pdu.h, so
// that an encoder bug in Relais cannot hide a decoder bug), a blocking TCP
// client that reads them back, and the HostileTest fixture (a Relais with a
// 2 s ARTIM and 16 KiB PDUs).
#ifndef RELAIS_TESTS_INTEGRATION_HOSTILE_PEER_H_
#define RELAIS_TESTS_INTEGRATION_HOSTILE_PEER_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/sanitizer.h"
#include "base/text.h"
#include "harness.h"

namespace relais::itest {

constexpr char kVerification[] = "1.2.840.10008.1.1";
constexpr char kCtImageStorage[] = "1.2.840.10008.5.1.4.1.1.2";
constexpr char kStudyRootFind[] = "1.2.840.10008.5.1.4.1.2.2.1";  // not a storage class: refused
constexpr char kImplicitLittleEndian[] = "1.2.840.10008.1.2";
constexpr char kExplicitLittleEndian[] = "1.2.840.10008.1.2.1";

// PS3.8 9.3.1 PDU types.
constexpr uint8_t kAssociateRq = 0x01;
constexpr uint8_t kAssociateAc = 0x02;
constexpr uint8_t kAssociateRj = 0x03;
constexpr uint8_t kPData = 0x04;
constexpr uint8_t kReleaseRq = 0x05;
constexpr uint8_t kReleaseRp = 0x06;
constexpr uint8_t kAbort = 0x07;

// ---- byte building ----------------------------------------------------------

inline void Put16Be(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v >> 8));
  s->push_back(static_cast<char>(v));
}
inline void Put32Be(std::string* s, uint32_t v) {
  Put16Be(s, static_cast<uint16_t>(v >> 16));
  Put16Be(s, static_cast<uint16_t>(v));
}
inline void Put16Le(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v));
  s->push_back(static_cast<char>(v >> 8));
}
inline void Put32Le(std::string* s, uint32_t v) {
  Put16Le(s, static_cast<uint16_t>(v));
  Put16Le(s, static_cast<uint16_t>(v >> 16));
}
inline uint16_t Get16Be(const std::string& s, size_t p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[p]) << 8) | static_cast<uint8_t>(s[p + 1]));
}
inline uint32_t Get32Be(const std::string& s, size_t p) {
  return (static_cast<uint32_t>(Get16Be(s, p)) << 16) | Get16Be(s, p + 2);
}
inline uint16_t Get16Le(const std::string& s, size_t p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(s[p]) | (static_cast<uint8_t>(s[p + 1]) << 8));
}
inline uint32_t Get32Le(const std::string& s, size_t p) {
  return static_cast<uint32_t>(Get16Le(s, p)) | (static_cast<uint32_t>(Get16Le(s, p + 2)) << 16);
}

// A PDU: type, reserved byte, 32-bit big-endian length, body (PS3.8 9.3.1).
inline std::string Pdu(uint8_t type, const std::string& body) {
  std::string s(1, static_cast<char>(type));
  s.push_back(0);
  Put32Be(&s, static_cast<uint32_t>(body.size()));
  return s + body;
}

// An item or sub-item: type, reserved byte, 16-bit big-endian length.
inline std::string Item(uint8_t type, const std::string& body) {
  std::string s(1, static_cast<char>(type));
  s.push_back(0);
  Put16Be(&s, static_cast<uint16_t>(body.size()));
  return s + body;
}

inline std::string Ae(const std::string& ae) {  // 16 bytes, space padded
  std::string s = ae.substr(0, 16);
  s.resize(16, ' ');
  return s;
}

struct ProposedContext {
  uint8_t id;
  std::string abstract_syntax;
  std::vector<std::string> transfer_syntaxes;
};

// PS3.8 9.3.2: A-ASSOCIATE-RQ.
// `user_info_extra`: more user information sub-items (e.g. AsyncOps()).
inline std::string AssociateRq(const std::string& called, const std::vector<ProposedContext>& contexts,
                               uint32_t max_pdu = 16384, const std::string& user_info_extra = "") {
  std::string b;
  Put16Be(&b, 0x0001);                         // protocol version
  b += std::string(2, '\0');                   // reserved
  b += Ae(called) + Ae("HOSTILE");             // called, calling AE
  b += std::string(32, '\0');                  // reserved
  b += Item(0x10, "1.2.840.10008.3.1.1.1");    // 9.3.2.1 application context
  for (const ProposedContext& c : contexts) {  // 9.3.2.2 presentation contexts
    std::string pc;
    pc.push_back(static_cast<char>(c.id));
    pc += std::string(3, '\0');
    pc += Item(0x30, c.abstract_syntax);
    for (const std::string& ts : c.transfer_syntaxes) pc += Item(0x40, ts);
    b += Item(0x20, pc);
  }
  std::string ml;  // PS3.8 D.1 maximum length sub-item
  Put32Be(&ml, max_pdu);
  std::string ui = Item(0x51, ml) + Item(0x52, "1.2.3.4.5.6.7.8");  // + implementation class UID
  b += Item(0x50, ui + user_info_extra);
  return Pdu(kAssociateRq, b);
}

// PS3.7 D.3.3.3: asynchronous operations window sub-item (0x53).
inline std::string AsyncOps(uint16_t invoked, uint16_t performed) {
  std::string b;
  Put16Be(&b, invoked);
  Put16Be(&b, performed);
  return Item(0x53, b);
}

struct Pdv {
  uint8_t context_id;
  uint8_t control;  // PS3.8 E.2: bit 0 command, bit 1 last fragment
  std::string data;
};

// PS3.8 9.3.5: P-DATA-TF with its PDV items (4-byte item length, context id,
// message control header, data).
inline std::string PData(const std::vector<Pdv>& pdvs) {
  std::string b;
  for (const Pdv& p : pdvs) {
    Put32Be(&b, static_cast<uint32_t>(p.data.size() + 2));
    b.push_back(static_cast<char>(p.context_id));
    b.push_back(static_cast<char>(p.control));
    b += p.data;
  }
  return Pdu(kPData, b);
}

// PS3.7 Annex E / 6.3.1: a command element, Implicit VR Little Endian.
inline void CmdElement(std::string* s, uint16_t element, const std::string& value) {
  Put16Le(s, 0x0000);
  Put16Le(s, element);
  Put32Le(s, static_cast<uint32_t>(value.size()));
  *s += value;
}
inline std::string Us(uint16_t v) {
  std::string s;
  Put16Le(&s, v);
  return s;
}
inline std::string Uid(std::string u) {
  if (u.size() % 2) u.push_back('\0');
  return u;
}
inline std::string WithGroupLength(const std::string& elements) {
  std::string s;
  std::string len;
  Put32Le(&len, static_cast<uint32_t>(elements.size()));
  CmdElement(&s, 0x0000, len);
  return s + elements;
}

// C-ECHO-RQ (PS3.7 9.3.5.1).
inline std::string EchoRq(uint16_t msg_id) {
  std::string e;
  CmdElement(&e, 0x0002, Uid(kVerification));
  CmdElement(&e, 0x0100, Us(0x0030));
  CmdElement(&e, 0x0110, Us(msg_id));
  CmdElement(&e, 0x0800, Us(0x0101));
  return WithGroupLength(e);
}

// C-STORE-RQ (PS3.7 9.3.1.1), data set follows.
inline std::string StoreRq(uint16_t msg_id, const std::string& sop_class, const std::string& sop_instance) {
  std::string e;
  CmdElement(&e, 0x0002, Uid(sop_class));
  CmdElement(&e, 0x0100, Us(0x0001));
  CmdElement(&e, 0x0110, Us(msg_id));
  CmdElement(&e, 0x0700, Us(0x0000));
  CmdElement(&e, 0x0800, Us(0x0000));
  CmdElement(&e, 0x1000, Uid(sop_instance));
  return WithGroupLength(e);
}

// Finds a US element in a command set; nullopt if absent or malformed.
inline std::optional<uint16_t> CommandUs(const std::string& cmd, uint16_t element) {
  size_t p = 0;
  while (p + 8 <= cmd.size()) {
    uint16_t g = Get16Le(cmd, p), e = Get16Le(cmd, p + 2);
    uint32_t len = Get32Le(cmd, p + 4);
    if (p + 8 + len > cmd.size()) return std::nullopt;
    if (g == 0 && e == element && len == 2) return Get16Le(cmd, p + 8);
    p += 8 + len;
  }
  return std::nullopt;
}

// ---- the raw client ---------------------------------------------------------

struct RxPdu {
  uint8_t type = 0;
  std::string body;
};

class RawClient {
 public:
  enum class Rx { kPdu, kClosed, kTimeout };

  ~RawClient() { Close(); }

  bool Connect(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    timeval tv{5, 0};  // blocking calls never hang the test
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }

  // False if the peer has closed (EPIPE/ECONNRESET) or on timeout.
  bool Send(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // Reads one whole PDU within timeout_ms. kClosed when the peer closed or
  // reset the connection (a partial PDU before the close is dropped).
  Rx ReadPdu(int timeout_ms, RxPdu* out) {
    int64_t deadline = NowMs() + timeout_ms;
    std::string header;
    Rx r = ReadExact(6, deadline, &header);
    if (r != Rx::kPdu) return r;
    out->type = static_cast<uint8_t>(header[0]);
    uint32_t len = Get32Be(header, 2);
    if (len > (1u << 24)) return Rx::kClosed;  // nonsense from Relais: treat as broken
    out->body.clear();
    return ReadExact(len, deadline, &out->body);
  }

  // Reads until the peer closes; PDUs received meanwhile go to `seen`.
  // True when closed within timeout_ms.
  bool WaitClosed(int timeout_ms, std::vector<RxPdu>* seen = nullptr) {
    int64_t deadline = NowMs() + timeout_ms;
    while (true) {
      RxPdu p;
      Rx r = ReadPdu(static_cast<int>(std::max<int64_t>(0, deadline - NowMs())), &p);
      if (r == Rx::kClosed) return true;
      if (r == Rx::kTimeout) return false;
      if (seen) seen->push_back(std::move(p));
    }
  }

 private:
  Rx ReadExact(size_t n, int64_t deadline, std::string* out) {
    while (out->size() < n) {
      int left = static_cast<int>(deadline - NowMs());
      if (left <= 0) return Rx::kTimeout;
      pollfd pfd{fd_, POLLIN, 0};
      int pr = poll(&pfd, 1, left);
      if (pr == 0) return Rx::kTimeout;
      if (pr < 0) {
        if (errno == EINTR) continue;
        return Rx::kClosed;
      }
      char buf[65536];
      size_t want = std::min(sizeof(buf), n - out->size());
      ssize_t got = recv(fd_, buf, want, 0);
      if (got == 0) return Rx::kClosed;
      if (got < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return Rx::kClosed;  // ECONNRESET and friends
      }
      out->append(buf, static_cast<size_t>(got));
    }
    return Rx::kPdu;
  }

  int fd_ = -1;
};

// Accepted presentation context ids of an A-ASSOCIATE-AC (PS3.8 9.3.3.2).
inline std::vector<uint8_t> AcceptedContexts(const std::string& ac_body) {
  std::vector<uint8_t> out;
  size_t p = 68;  // version, reserved, AE titles, reserved
  while (p + 4 <= ac_body.size()) {
    uint8_t type = static_cast<uint8_t>(ac_body[p]);
    uint16_t len = Get16Be(ac_body, p + 2);
    if (type == 0x21 && len >= 4 && ac_body[p + 6] == 0) out.push_back(static_cast<uint8_t>(ac_body[p + 4]));
    p += 4 + len;
  }
  return out;
}

// The command set carried by a P-DATA-TF holding one command PDV.
inline std::string CommandOf(const RxPdu& pdu) {
  std::string cmd;
  size_t p = 0;
  while (p + 6 <= pdu.body.size()) {
    uint32_t len = Get32Be(pdu.body, p);
    if (len < 2 || p + 4 + len > pdu.body.size()) break;
    if (pdu.body[p + 5] & 1) cmd += pdu.body.substr(p + 6, len - 2);
    p += 4 + len;
  }
  return cmd;
}

inline std::string Hex(const std::string& s, size_t max = 16) {
  std::string out;
  char b[4];
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    std::snprintf(b, sizeof(b), "%02x", static_cast<uint8_t>(s[i]));
    out += b;
  }
  return out;
}

inline std::string Describe(const std::vector<RxPdu>& seen) {
  std::string s;
  for (const RxPdu& p : seen) s += "[type " + std::to_string(p.type) + " body " + Hex(p.body) + "]";
  return s.empty() ? "(nothing)" : s;
}

const std::vector<ProposedContext> kEchoAndCt = {
    {1, kVerification, {kImplicitLittleEndian}},
    {3, kCtImageStorage, {kExplicitLittleEndian, kImplicitLittleEndian}},
    {5, kStudyRootFind, {kImplicitLittleEndian}},
};

// ---- fixture ------------------------------------------------------------------

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RelaisOptions o;
    o.artim_timeout_s = 2;
    o.max_pdu = 16384;
    relais_ = std::make_unique<RelaisProcess>(dir_.path(), o);
    ASSERT_TRUE(relais_->Start()) << relais_->Log();
  }

  void TearDown() override {
    if (relais_->running()) {
      EXPECT_EQ(relais_->Terminate(), 0) << relais_->Log();
    }
  }

  // Relais is alive and a real peer still gets C-ECHO success.
  void ExpectStillServing(const std::string& after) {
    ASSERT_TRUE(relais_->running()) << "Relais died after: " << after << "\n" << relais_->Log();
    RunResult r = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais_->port())}, 30);
    EXPECT_EQ(r.exit_code, 0) << "echoscu after " << after << ":\n" << r.output << relais_->Log();
  }

  // Connects and establishes an association; returns the accepted ids.
  std::vector<uint8_t> Associate(RawClient* c) {
    EXPECT_TRUE(c->Connect(relais_->port()));
    EXPECT_TRUE(c->Send(AssociateRq("RELAIS", kEchoAndCt)));
    RxPdu ac;
    EXPECT_EQ(c->ReadPdu(5000, &ac), RawClient::Rx::kPdu);
    EXPECT_EQ(ac.type, kAssociateAc) << Hex(ac.body, 64);
    return AcceptedContexts(ac.body);
  }

  // The connection is closed by Relais within timeout_ms, and the first
  // PDU it sent (if `expect_type` != 0) is of that type. Returns the PDUs.
  std::vector<RxPdu> ExpectClosedWith(RawClient* c, uint8_t expect_type, const std::string& what,
                                      int timeout_ms = 5000) {
    std::vector<RxPdu> seen;
    int64_t t0 = NowMs();
    bool closed = c->WaitClosed(timeout_ms, &seen);
    EXPECT_TRUE(closed) << what << ": Relais did not close the connection within " << timeout_ms << " ms";
    if (expect_type != 0) {
      EXPECT_FALSE(seen.empty()) << what << ": closed without a PDU";
      if (!seen.empty()) {
        EXPECT_EQ(seen[0].type, expect_type) << what << ": got " << Describe(seen);
      }
    }
    std::printf("[hostile] %s: closed=%d after %lld ms, got %s\n", what.c_str(), closed,
                static_cast<long long>(NowMs() - t0), Describe(seen).c_str());
    return seen;
  }

  TempDir dir_;
  std::unique_ptr<RelaisProcess> relais_;
};

// Finds a string element in a command set (Error Comment, 0000,0902);
// nullopt if absent or malformed.
inline std::optional<std::string> CommandString(const std::string& cmd, uint16_t element) {
  size_t p = 0;
  while (p + 8 <= cmd.size()) {
    uint16_t g = Get16Le(cmd, p), e = Get16Le(cmd, p + 2);
    uint32_t len = Get32Le(cmd, p + 4);
    if (p + 8 + len > cmd.size()) return std::nullopt;
    if (g == 0 && e == element) return cmd.substr(p + 8, len);
    p += 8 + len;
  }
  return std::nullopt;
}

// One Explicit VR Little Endian element with a 16-bit length (PS3.5 7.1.2),
// its value padded to even length (UI with NUL, the others with a space).
inline void ExplicitElement(std::string* s, uint16_t group, uint16_t element, const char* vr, std::string value) {
  if (value.size() % 2) value.push_back(std::string(vr) == "UI" ? '\0' : ' ');
  Put16Le(s, group);
  Put16Le(s, element);
  *s += vr;
  Put16Le(s, static_cast<uint16_t>(value.size()));
  *s += value;
}

// A small CT header, Explicit VR Little Endian, with the given SOP Instance UID.
inline std::string CtDataSet(const std::string& sop_instance) {
  std::string d;
  ExplicitElement(&d, 0x0008, 0x0016, "UI", kCtImageStorage);
  ExplicitElement(&d, 0x0008, 0x0018, "UI", sop_instance);
  ExplicitElement(&d, 0x0008, 0x0060, "CS", "CT");
  ExplicitElement(&d, 0x0010, 0x0020, "LO", "HOSTILE-UID");
  ExplicitElement(&d, 0x0020, 0x000D, "UI", "1.2.826.0.1.3680043.2.1143.5");
  ExplicitElement(&d, 0x0020, 0x000E, "UI", "1.2.826.0.1.3680043.2.1143.5.1");
  return d;
}

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_HOSTILE_PEER_H_
