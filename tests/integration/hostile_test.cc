// Hostile peers (DESIGN.md: "Bad input gets a clear answer and hurts nobody
// else"). A raw TCP client written here sends malformed or abusive byte
// streams; after each case Relais must still be alive and answer echoscu,
// and it must have closed the hostile connection itself, with an A-ABORT or
// A-ASSOCIATE-RJ where PS3.8 Table 9-10 says so.
//
// PDUs are built by hand from PS3.8 section 9.3 (not with router/protocol/pdu.h), so
// that an encoder bug in Relais cannot hide a decoder bug.
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
namespace {

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

void Put16Be(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v >> 8));
  s->push_back(static_cast<char>(v));
}
void Put32Be(std::string* s, uint32_t v) {
  Put16Be(s, static_cast<uint16_t>(v >> 16));
  Put16Be(s, static_cast<uint16_t>(v));
}
void Put16Le(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v));
  s->push_back(static_cast<char>(v >> 8));
}
void Put32Le(std::string* s, uint32_t v) {
  Put16Le(s, static_cast<uint16_t>(v));
  Put16Le(s, static_cast<uint16_t>(v >> 16));
}
uint16_t Get16Be(const std::string& s, size_t p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[p]) << 8) | static_cast<uint8_t>(s[p + 1]));
}
uint32_t Get32Be(const std::string& s, size_t p) {
  return (static_cast<uint32_t>(Get16Be(s, p)) << 16) | Get16Be(s, p + 2);
}
uint16_t Get16Le(const std::string& s, size_t p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(s[p]) | (static_cast<uint8_t>(s[p + 1]) << 8));
}
uint32_t Get32Le(const std::string& s, size_t p) {
  return static_cast<uint32_t>(Get16Le(s, p)) | (static_cast<uint32_t>(Get16Le(s, p + 2)) << 16);
}

// A PDU: type, reserved byte, 32-bit big-endian length, body (PS3.8 9.3.1).
std::string Pdu(uint8_t type, const std::string& body) {
  std::string s(1, static_cast<char>(type));
  s.push_back(0);
  Put32Be(&s, static_cast<uint32_t>(body.size()));
  return s + body;
}

// An item or sub-item: type, reserved byte, 16-bit big-endian length.
std::string Item(uint8_t type, const std::string& body) {
  std::string s(1, static_cast<char>(type));
  s.push_back(0);
  Put16Be(&s, static_cast<uint16_t>(body.size()));
  return s + body;
}

std::string Ae(const std::string& ae) {  // 16 bytes, space padded
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
std::string AssociateRq(const std::string& called, const std::vector<ProposedContext>& contexts,
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
std::string AsyncOps(uint16_t invoked, uint16_t performed) {
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
std::string PData(const std::vector<Pdv>& pdvs) {
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
void CmdElement(std::string* s, uint16_t element, const std::string& value) {
  Put16Le(s, 0x0000);
  Put16Le(s, element);
  Put32Le(s, static_cast<uint32_t>(value.size()));
  *s += value;
}
std::string Us(uint16_t v) {
  std::string s;
  Put16Le(&s, v);
  return s;
}
std::string Uid(std::string u) {
  if (u.size() % 2) u.push_back('\0');
  return u;
}
std::string WithGroupLength(const std::string& elements) {
  std::string s;
  std::string len;
  Put32Le(&len, static_cast<uint32_t>(elements.size()));
  CmdElement(&s, 0x0000, len);
  return s + elements;
}

// C-ECHO-RQ (PS3.7 9.3.5.1).
std::string EchoRq(uint16_t msg_id) {
  std::string e;
  CmdElement(&e, 0x0002, Uid(kVerification));
  CmdElement(&e, 0x0100, Us(0x0030));
  CmdElement(&e, 0x0110, Us(msg_id));
  CmdElement(&e, 0x0800, Us(0x0101));
  return WithGroupLength(e);
}

// C-STORE-RQ (PS3.7 9.3.1.1), data set follows.
std::string StoreRq(uint16_t msg_id, const std::string& sop_class, const std::string& sop_instance) {
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
std::optional<uint16_t> CommandUs(const std::string& cmd, uint16_t element) {
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
std::vector<uint8_t> AcceptedContexts(const std::string& ac_body) {
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
std::string CommandOf(const RxPdu& pdu) {
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

std::string Hex(const std::string& s, size_t max = 16) {
  std::string out;
  char b[4];
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    std::snprintf(b, sizeof(b), "%02x", static_cast<uint8_t>(s[i]));
    out += b;
  }
  return out;
}

std::string Describe(const std::vector<RxPdu>& seen) {
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

// PS3.8 Table 9-10, Sta2 (awaiting A-ASSOCIATE-RQ), Evt19 (unrecognized or
// invalid PDU) -> AA-1: send A-ABORT, close.
TEST_F(HostileTest, GarbageBytesGetAbortAndClose) {
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  std::string garbage = "GET / HTTP/1.1\r\nHost: relais\r\n\r\n";
  for (int i = 0; i < 200; ++i) garbage.push_back(static_cast<char>((i * 37 + 11) & 0xFF));
  c.Send(garbage);
  ExpectClosedWith(&c, kAbort, "garbage");
  ExpectStillServing("garbage bytes");
}

// A peer that goes away in the middle of its A-ASSOCIATE-RQ: Relais sees the
// end of the stream (Evt17) and closes its side.
TEST_F(HostileTest, TruncatedAssociateRqThenHalfClose) {
  std::string rq = AssociateRq("RELAIS", kEchoAndCt);
  for (size_t cut : {size_t{3}, size_t{6}, size_t{40}, rq.size() / 2, rq.size() - 1}) {
    RawClient c;
    ASSERT_TRUE(c.Connect(relais_->port()));
    c.Send(rq.substr(0, cut));
    c.ShutdownWrite();
    ExpectClosedWith(&c, 0, "truncated A-ASSOCIATE-RQ at " + std::to_string(cut));
  }
  ExpectStillServing("truncated A-ASSOCIATE-RQ");
}

// A PDU header announcing 4 GB: refused from the header alone, at once (well
// before ARTIM, 2 s here), with an A-ABORT; nothing is allocated.
TEST_F(HostileTest, FourGigabytePduLengthIsRefusedAtOnce) {
  uint64_t rss_before = relais_->RssKiB();
  for (uint8_t type : {kAssociateRq, kPData, uint8_t{0x09}}) {
    RawClient c;
    ASSERT_TRUE(c.Connect(relais_->port()));
    std::string header = {static_cast<char>(type), 0, '\xFF', '\xFF', '\xFF', '\xFF'};
    c.Send(header);
    int64_t t0 = NowMs();
    std::vector<RxPdu> seen = ExpectClosedWith(&c, kAbort, "4 GB PDU of type " + std::to_string(type), 1500);
    EXPECT_LT(NowMs() - t0, 1500);
  }
  // Also after association, on a P-DATA-TF (Sta6, Evt19 -> AA-8: A-ABORT).
  {
    RawClient c;
    Associate(&c);
    c.Send(std::string{kPData, 0, '\xFF', '\xFF', '\xFF', '\xFF'});
    ExpectClosedWith(&c, kAbort, "4 GB P-DATA-TF in Sta6", 1500);
  }
  uint64_t rss_after = relais_->RssKiB();
  EXPECT_LT(rss_after, rss_before + 64 * 1024) << "RSS " << rss_before << " -> " << rss_after << " KiB";
  ExpectStillServing("4 GB PDU length");
}

// PS3.8 D.1: our A-ASSOCIATE-AC said 16384; a P-DATA-TF above it is invalid.
TEST_F(HostileTest, PDataLargerThanNegotiatedMaxPduIsAborted) {
  RawClient c;
  std::vector<uint8_t> ids = Associate(&c);
  ASSERT_FALSE(ids.empty());
  std::string data(20000, '\0');
  c.Send(PData({{ids[0], 0x03, data}}));
  ExpectClosedWith(&c, kAbort, "P-DATA-TF of 20006 bytes over max 16384");
  ExpectStillServing("oversized P-DATA-TF");
}

// Sta2, Evt10 (P-DATA-TF) -> AA-1: A-ABORT.
TEST_F(HostileTest, PDataBeforeAssociationIsAborted) {
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  c.Send(PData({{1, 0x03, EchoRq(1)}}));
  ExpectClosedWith(&c, kAbort, "P-DATA-TF in Sta2");
  ExpectStillServing("P-DATA before association");
}

// PS3.8 9.3.4: A-ASSOCIATE-RJ, result 1 (permanent), source 1 (service
// user), reason 7 (called AE title not recognized). Relais then waits in
// Sta13 for us to close, at most ARTIM (2 s).
TEST_F(HostileTest, WrongCalledAeIsRejectedWithReason7) {
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  c.Send(AssociateRq("SOMEONEELSE", kEchoAndCt));
  std::vector<RxPdu> seen = ExpectClosedWith(&c, kAssociateRj, "wrong called AE");
  ASSERT_FALSE(seen.empty());
  ASSERT_EQ(seen[0].body.size(), 4u);
  EXPECT_EQ(static_cast<uint8_t>(seen[0].body[1]), 1);  // result: rejected-permanent
  EXPECT_EQ(static_cast<uint8_t>(seen[0].body[2]), 1);  // source: service user
  EXPECT_EQ(static_cast<uint8_t>(seen[0].body[3]), 7);  // reason: called AE not recognized
  ExpectStillServing("wrong called AE");
}

// An AE title is peer text: a newline, ESC or quote in it cannot write a
// line of its own into the log (one line per event), and the log stays UTF-8.
TEST_F(HostileTest, AeTitleCannotForgeLogLines) {
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  c.Send(AssociateRq("A\nERROR ev=F\x1b\xff", kEchoAndCt));  // 14 bytes
  ExpectClosedWith(&c, kAssociateRj, "forged called AE");
  ExpectStillServing("forged called AE");
  const std::string log = relais_->Log();
  EXPECT_NE(log.find("A\\nERROR"), std::string::npos) << log;  // shown escaped...
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_NE(line.rfind("ERROR ev=F", 0), 0u) << "forged line: " << line;  // ...never as a line
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
    EXPECT_TRUE(IsUtf8(line)) << line;
  }
}

// The A-ASSOCIATE-AC echoes each role selection (PS3.7 D.3.3.4): a peer that
// sends one with a UID of 65,500 bytes fills its own user information item
// to the brim, and our answer (the same plus our implementation sub-items)
// no longer fits a 2-byte item length. Before the fix the length wrapped
// and the peer got a corrupt A-ASSOCIATE-AC; now the association is
// rejected (permanent, service user, no reason given) and Relais goes on.
TEST_F(HostileTest, AssociateAcThatWouldOverflowItsLengthFieldIsRejected) {
  std::string b;
  Put16Be(&b, 0x0001);
  b += std::string(2, '\0');
  b += Ae("RELAIS") + Ae("HOSTILE");
  b += std::string(32, '\0');
  b += Item(0x10, "1.2.840.10008.3.1.1.1");
  std::string pc(1, '\x01');
  pc += std::string(3, '\0');
  pc += Item(0x30, kCtImageStorage) + Item(0x40, kImplicitLittleEndian);
  b += Item(0x20, pc);
  std::string ml;
  Put32Be(&ml, 16384);
  std::string role;                                             // PS3.7 D.3.3.4.1: UID length, UID, SCU role, SCP role
  const std::string huge_uid = "1." + std::string(65498, '1');  // 65,500 bytes
  Put16Be(&role, static_cast<uint16_t>(huge_uid.size()));
  role += huge_uid + "\x01\x01";
  std::string ui = Item(0x51, ml) + Item(0x52, "1.2") + Item(0x54, role);
  ASSERT_LE(ui.size(), 65535u) << "the request itself must be well-formed";
  b += Item(0x50, ui);
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  ASSERT_TRUE(c.Send(Pdu(kAssociateRq, b)));
  std::vector<RxPdu> seen = ExpectClosedWith(&c, kAssociateRj, "A-ASSOCIATE-AC too long for its fields");
  ASSERT_FALSE(seen.empty());
  ASSERT_EQ(seen[0].body.size(), 4u);
  EXPECT_EQ(static_cast<uint8_t>(seen[0].body[1]), 1);  // result: rejected-permanent
  EXPECT_EQ(static_cast<uint8_t>(seen[0].body[2]), 1);  // source: service user
  EXPECT_EQ(static_cast<uint8_t>(seen[0].body[3]), 1);  // reason: no reason given
  EXPECT_NE(relais_->Log().find("associate-ac-unencodable"), std::string::npos) << relais_->Log();
  ExpectStillServing("an A-ASSOCIATE-AC that would not fit");
}

// Sta6, Evt19 (unrecognized PDU type) -> AA-8: A-ABORT, source 2 (service
// provider), reason 1 (unrecognized PDU) (PS3.8 Table 9-26).
TEST_F(HostileTest, UnknownPduTypeIsAborted) {
  RawClient c;
  Associate(&c);
  c.Send(Pdu(0x09, std::string(10, 'x')));
  std::vector<RxPdu> seen = ExpectClosedWith(&c, kAbort, "unknown PDU type 0x09");
  if (!seen.empty() && seen[0].body.size() == 4) {
    EXPECT_EQ(static_cast<uint8_t>(seen[0].body[2]), 2) << "abort source";
    EXPECT_EQ(static_cast<uint8_t>(seen[0].body[3]), 1) << "abort reason";
  }
  ExpectStillServing("unknown PDU type");
}

// A C-STORE whose data set cannot be parsed gets a failure status (PS3.4
// B.2.3: 0xCxxx cannot understand, or 0xA9xx data set does not match), and
// the association stays usable: a C-ECHO and a release follow.
TEST_F(HostileTest, GarbageDataSetGetsFailureStatusAndAssociationLives) {
  RawClient c;
  std::vector<uint8_t> ids = Associate(&c);
  ASSERT_EQ(ids.size(), 2u) << "expected contexts 1 and 3 accepted, 5 (C-FIND) refused";
  // Garbage data sets: an element whose length runs past the end, and noise.
  std::string past_end;
  Put16Le(&past_end, 0x0008);
  Put16Le(&past_end, 0x0018);
  past_end += "UI";
  Put16Le(&past_end, 0x0100);  // 256 bytes announced, 6 present
  past_end += "1.2.3.";
  std::string noise;
  for (int i = 0; i < 3000; ++i) noise.push_back(static_cast<char>((i * 131 + 7) & 0xFF));
  uint16_t msg = 1;
  for (const std::string& dataset : {past_end, noise}) {
    ASSERT_TRUE(c.Send(
        PData({{3, 0x03, StoreRq(msg, kCtImageStorage, "1.2.826.0.1.3680043.2.1143.999." + std::to_string(msg))}})));
    for (size_t off = 0; off < dataset.size(); off += 8000) {
      bool last = off + 8000 >= dataset.size();
      ASSERT_TRUE(c.Send(PData({{3, static_cast<uint8_t>(last ? 0x02 : 0x00), dataset.substr(off, 8000)}})));
    }
    RxPdu rsp;
    ASSERT_EQ(c.ReadPdu(10000, &rsp), RawClient::Rx::kPdu) << relais_->Log();
    ASSERT_EQ(rsp.type, kPData) << Hex(rsp.body);
    std::string cmd = CommandOf(rsp);
    EXPECT_EQ(CommandUs(cmd, 0x0100), 0x8001) << "not a C-STORE-RSP";
    EXPECT_EQ(CommandUs(cmd, 0x0120), msg) << "message id responded to";
    std::optional<uint16_t> status = CommandUs(cmd, 0x0900);
    ASSERT_TRUE(status.has_value());
    std::printf("[hostile] garbage data set %u: status 0x%04X\n", msg, *status);
    EXPECT_TRUE((*status & 0xF000) == 0xC000 || (*status & 0xFF00) == 0xA900)
        << "status 0x" << std::hex << *status << " for a data set that cannot be parsed";
    ++msg;
  }
  // Still usable: C-ECHO on context 1.
  ASSERT_TRUE(c.Send(PData({{1, 0x03, EchoRq(msg)}})));
  RxPdu rsp;
  ASSERT_EQ(c.ReadPdu(5000, &rsp), RawClient::Rx::kPdu);
  EXPECT_EQ(CommandUs(CommandOf(rsp), 0x0100), 0x8030);
  EXPECT_EQ(CommandUs(CommandOf(rsp), 0x0900), 0x0000);
  // And releases cleanly (PS3.8 9.3.6/9.3.7: 4 reserved bytes each).
  ASSERT_TRUE(c.Send(Pdu(kReleaseRq, std::string(4, '\0'))));
  ExpectClosedWith(&c, kReleaseRp, "release after garbage data sets");
  EXPECT_TRUE(relais_->StoreList().empty()) << "a garbage data set was stored";
  ExpectStillServing("garbage data set");
}

// Finds a string element in a command set (Error Comment, 0000,0902);
// nullopt if absent or malformed.
std::optional<std::string> CommandString(const std::string& cmd, uint16_t element) {
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
void ExplicitElement(std::string* s, uint16_t group, uint16_t element, const char* vr, std::string value) {
  if (value.size() % 2) value.push_back(std::string(vr) == "UI" ? '\0' : ' ');
  Put16Le(s, group);
  Put16Le(s, element);
  *s += vr;
  Put16Le(s, static_cast<uint16_t>(value.size()));
  *s += value;
}

// A small CT header, Explicit VR Little Endian, with the given SOP Instance UID.
std::string CtDataSet(const std::string& sop_instance) {
  std::string d;
  ExplicitElement(&d, 0x0008, 0x0016, "UI", kCtImageStorage);
  ExplicitElement(&d, 0x0008, 0x0018, "UI", sop_instance);
  ExplicitElement(&d, 0x0008, 0x0060, "CS", "CT");
  ExplicitElement(&d, 0x0010, 0x0020, "LO", "HOSTILE-UID");
  ExplicitElement(&d, 0x0020, 0x000D, "UI", "1.2.826.0.1.3680043.2.1143.5");
  ExplicitElement(&d, 0x0020, 0x000E, "UI", "1.2.826.0.1.3680043.2.1143.5.1");
  return d;
}

// A SOP Instance UID that is not digits and dots (a path, a 0xFF byte, a
// control byte), in the command or in the data set, is refused with 0xC000
// and an Error Comment, nothing is stored, the log carries the bytes
// escaped, and the association and Relais go on. Zero-led components are
// only logged. Before the fix every one of these was stored.
TEST_F(HostileTest, SopInstanceUidWithForeignCharactersIsRefusedAndNotStored) {
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  // Explicit VR Little Endian only, so that CtDataSet's encoding is the one negotiated.
  ASSERT_TRUE(c.Send(AssociateRq(
      "RELAIS", {{1, kVerification, {kImplicitLittleEndian}}, {3, kCtImageStorage, {kExplicitLittleEndian}}})));
  RxPdu ac;
  ASSERT_EQ(c.ReadPdu(5000, &ac), RawClient::Rx::kPdu);
  ASSERT_EQ(ac.type, kAssociateAc) << Hex(ac.body, 64);
  ASSERT_EQ(AcceptedContexts(ac.body), (std::vector<uint8_t>{1, 3}));

  const std::string good = "1.2.826.0.1.3680043.2.1143.77";
  struct Case {
    const char* what;
    std::string command_uid;
    std::string dataset_uid;
    uint16_t want_status;
  };
  const std::vector<Case> cases = {
      {"path in the data set", good + ".1", "1.2.3/../x", 0xC000},
      {"path in both", "1.2.3/../x", "1.2.3/../x", 0xC000},
      {"0xFF in the data set", good + ".2", "1.2.3.\xFF", 0xC000},
      {"0xFF in the command", "1.2.3.\xFF", good + ".3", 0xC000},
      {"control byte and letters in the command", std::string("1.2\x01\x1B[2J.abc"), good + ".4", 0xC000},
      {"valid", good + ".5", good + ".5", 0x0000},
      {"zero-led component (logged only)", "1.2.03.4", "1.2.03.4", 0x0000},
  };
  uint16_t msg = 1;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    const std::string dataset = CtDataSet(k.dataset_uid);
    ASSERT_TRUE(c.Send(PData({{3, 0x03, StoreRq(msg, kCtImageStorage, k.command_uid)}})));
    ASSERT_TRUE(c.Send(PData({{3, 0x02, dataset}})));
    RxPdu rsp;
    ASSERT_EQ(c.ReadPdu(10000, &rsp), RawClient::Rx::kPdu) << relais_->Log();
    ASSERT_EQ(rsp.type, kPData) << Hex(rsp.body);
    const std::string cmd = CommandOf(rsp);
    EXPECT_EQ(CommandUs(cmd, 0x0100), 0x8001) << "not a C-STORE-RSP";
    EXPECT_EQ(CommandUs(cmd, 0x0120), msg);
    EXPECT_EQ(CommandUs(cmd, 0x0900), k.want_status) << relais_->Log();
    if (k.want_status != 0) {
      std::optional<std::string> comment = CommandString(cmd, 0x0902);
      ASSERT_TRUE(comment.has_value()) << "no Error Comment";
      EXPECT_NE(comment->find("digits and dots"), std::string::npos) << *comment;
      for (char ch : *comment) EXPECT_TRUE(ch >= 0x20 && ch < 0x7F) << "raw byte in the Error Comment";
    }
    ++msg;
  }
  ASSERT_TRUE(c.Send(Pdu(kReleaseRq, std::string(4, '\0'))));
  ExpectClosedWith(&c, kReleaseRp, "release after foreign UIDs");

  std::map<std::string, std::string> stored = relais_->StoreList();
  EXPECT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored.count(good + ".5"), 1u);
  EXPECT_EQ(stored.count("1.2.03.4"), 1u);
  for (const auto& [uid, _] : stored) {
    EXPECT_EQ(uid.find_first_not_of("0123456789."), std::string::npos) << "stored: " << uid;
  }
  const std::string log = relais_->Log();
  EXPECT_NE(log.find("uid-refused"), std::string::npos) << log;
  EXPECT_NE(log.find("uid-deviation"), std::string::npos) << log;
  EXPECT_NE(log.find("1.2.3.\\xFF"), std::string::npos) << "the 0xFF byte is logged escaped";
  EXPECT_EQ(log.find('\xFF'), std::string::npos) << "a raw 0xFF byte reached the log";
  EXPECT_EQ(log.find('\x1B'), std::string::npos) << "a raw escape byte reached the log";
  ExpectStillServing("foreign SOP Instance UIDs");
}

// A command set that cannot be decoded: the association is aborted.
TEST_F(HostileTest, GarbageCommandIsAborted) {
  RawClient c;
  Associate(&c);
  std::string garbage;
  Put16Le(&garbage, 0x0000);
  Put16Le(&garbage, 0x0100);
  Put32Le(&garbage, 0xFFFFFFF0u);  // length far past the end
  garbage += "\x01\x00";
  c.Send(PData({{1, 0x03, garbage}}));
  ExpectClosedWith(&c, kAbort, "garbage command PDV");
  ExpectStillServing("garbage command");
}

TEST_F(HostileTest, DataPdvWithoutCommandIsAborted) {
  RawClient c;
  Associate(&c);
  c.Send(PData({{3, 0x02, std::string(64, '\0')}}));
  ExpectClosedWith(&c, kAbort, "data PDV with no command");
  ExpectStillServing("data PDV without a command");
}

TEST_F(HostileTest, PdvOnRefusedOrUnknownContextIsAborted) {
  for (uint8_t id : {uint8_t{5}, uint8_t{7}}) {  // 5: proposed and refused; 7: never proposed
    RawClient c;
    std::vector<uint8_t> ids = Associate(&c);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), id), 0);
    c.Send(PData({{id, 0x03, EchoRq(1)}}));
    ExpectClosedWith(&c, kAbort, "PDV on context " + std::to_string(id));
  }
  ExpectStillServing("PDV on a context that was not accepted");
}

// Malformed PDV items inside a well-framed P-DATA-TF (PS3.8 9.3.5.1: the
// item length counts the context id and control byte, so it is >= 2, and
// items must exactly fill the PDU), and a command set that never ends.
TEST_F(HostileTest, MalformedPdvItemsAreAborted) {
  std::vector<std::pair<std::string, std::string>> cases;
  {
    std::string b;
    Put32Be(&b, 1);  // item length 1: no room for the control byte
    b += "\x01";
    cases.emplace_back("PDV item length 1", Pdu(kPData, b));
  }
  {
    std::string b;
    Put32Be(&b, 0);
    cases.emplace_back("PDV item length 0", Pdu(kPData, b));
  }
  {
    std::string b;
    Put32Be(&b, 500);  // item runs past the end of the PDU
    b += std::string("\x01\x03", 2) + std::string(20, '\0');
    cases.emplace_back("PDV item past the PDU end", Pdu(kPData, b));
  }
  cases.emplace_back("empty P-DATA-TF", Pdu(kPData, ""));
  {
    // 5 x 16000 bytes of command fragments, never the last: over any sane
    // command set size; Relais must stop buffering.
    std::string s;
    for (int i = 0; i < 5; ++i) s += PData({{1, 0x01, std::string(16000, '\0')}});
    cases.emplace_back("80 kB command set", s);
  }
  for (const auto& [what, bytes] : cases) {
    RawClient c;
    Associate(&c);
    c.Send(bytes);
    ExpectClosedWith(&c, kAbort, what);
  }
  ExpectStillServing("malformed PDV items");
}

// Valid PDUs in the wrong state: a second A-ASSOCIATE-RQ in Sta6 (Evt6 ->
// AA-8) and an A-RELEASE-RQ in Sta2 (Evt12 -> AA-1) both get an A-ABORT.
TEST_F(HostileTest, PdusInTheWrongStateAreAborted) {
  {
    RawClient c;
    Associate(&c);
    c.Send(AssociateRq("RELAIS", kEchoAndCt));
    ExpectClosedWith(&c, kAbort, "second A-ASSOCIATE-RQ in Sta6");
  }
  {
    RawClient c;
    ASSERT_TRUE(c.Connect(relais_->port()));
    c.Send(Pdu(kReleaseRq, std::string(4, '\0')));
    ExpectClosedWith(&c, kAbort, "A-RELEASE-RQ in Sta2");
  }
  ExpectStillServing("PDUs in the wrong state");
}

// Slow loris: one byte of a valid A-ASSOCIATE-RQ every 200 ms. ARTIM (2 s,
// started at the connection, PS3.8 9.1.5) must cut it; bytes do not reset it.
TEST_F(HostileTest, SlowLorisIsCutByArtim) {
  std::string rq = AssociateRq("RELAIS", kEchoAndCt);
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  int64_t t0 = NowMs();
  bool closed = false;
  for (size_t i = 0; i < rq.size() && NowMs() - t0 < 15000; ++i) {
    if (!c.Send(rq.substr(i, 1))) {
      closed = true;
      break;
    }
    RxPdu p;
    RawClient::Rx r = c.ReadPdu(200, &p);
    if (r == RawClient::Rx::kClosed) {
      closed = true;
      break;
    }
    ASSERT_NE(r, RawClient::Rx::kPdu) << "Relais answered a half-sent A-ASSOCIATE-RQ: type " << int(p.type);
  }
  int64_t elapsed = NowMs() - t0;
  std::printf("[hostile] slow loris closed=%d after %lld ms\n", closed, static_cast<long long>(elapsed));
  EXPECT_TRUE(closed) << "slow loris still connected after " << elapsed << " ms";
  EXPECT_GE(elapsed, 1500);
  EXPECT_LE(elapsed, 5000);
  ExpectStillServing("slow loris");
}

TEST_F(HostileTest, SilentConnectionIsCutByArtim) {
  RawClient c;
  ASSERT_TRUE(c.Connect(relais_->port()));
  int64_t t0 = NowMs();
  ExpectClosedWith(&c, 0, "silent connection", 6000);
  int64_t elapsed = NowMs() - t0;
  EXPECT_GE(elapsed, 1500);
  EXPECT_LE(elapsed, 5000);
  ExpectStillServing("silent connection");
}

// 50 connections that never speak do not keep a real peer out, and are all
// closed by ARTIM.
TEST_F(HostileTest, FiftySilentConnectionsDoNotBlockEcho) {
  std::vector<std::unique_ptr<RawClient>> silent;
  for (int i = 0; i < 50; ++i) {
    silent.push_back(std::make_unique<RawClient>());
    ASSERT_TRUE(silent.back()->Connect(relais_->port())) << i;
  }
  RunResult r = RunCommand({"echoscu", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais_->port())}, 30);
  EXPECT_EQ(r.exit_code, 0) << "echoscu with 50 silent connections open:\n" << r.output;
  int still_open = 0;
  for (auto& c : silent) {
    if (!c->WaitClosed(6000)) ++still_open;
  }
  EXPECT_EQ(still_open, 0) << "silent connections not closed by ARTIM";
  ExpectStillServing("50 silent connections");
}

// 300 hostile connections in a row: resident memory must not keep growing
// (a leak per connection or a buffer sized from a hostile length would).
TEST_F(HostileTest, ThreeHundredHostileConnectionsDoNotGrowMemory) {
#if RELAIS_ASAN
  // Under AddressSanitizer freed memory sits in a quarantine (256 MB by
  // default) and would count as growth: run a Relais with a small one.
  const char* old_env = std::getenv("ASAN_OPTIONS");
  std::string saved = old_env ? old_env : "";
  setenv("ASAN_OPTIONS", (saved + (saved.empty() ? "" : ":") + "quarantine_size_mb=1").c_str(), 1);
  std::string asan_dir = dir_ / "small-quarantine";
  std::filesystem::create_directories(asan_dir);
  RelaisOptions o;
  o.artim_timeout_s = 2;
  o.max_pdu = 16384;
  relais_ = std::make_unique<RelaisProcess>(asan_dir, o);
  bool started = relais_->Start();
  if (old_env) {
    setenv("ASAN_OPTIONS", saved.c_str(), 1);
  } else {
    unsetenv("ASAN_OPTIONS");
  }
  ASSERT_TRUE(started) << relais_->Log();
#endif
  const std::string rq = AssociateRq("RELAIS", kEchoAndCt);
  auto one = [&](int i) {
    RawClient c;
    if (!c.Connect(relais_->port())) return;
    switch (i % 6) {
      case 0: c.Send(std::string{kPData, 0, '\xFF', '\xFF', '\xFF', '\xFF'}); break;
      case 1: c.Send(std::string(300, '\xA5')); break;
      case 2:
        c.Send(rq.substr(0, rq.size() / 2));  // then we hang up
        c.Close();
        return;
      case 3: c.Send(AssociateRq("SOMEONEELSE", kEchoAndCt)); break;
      case 4: c.Send(rq + Pdu(0x09, std::string(4, '\0'))); break;
      case 5: c.Send(rq + PData({{3, 0x03, std::string(100, '\xEE')}})); break;
    }
    // Read what Relais answers; hang up after at most 3 s (the wrong-AE case
    // waits for us in Sta13).
    c.WaitClosed(i % 6 == 3 ? 50 : 3000);
  };
  for (int i = 0; i < 30; ++i) one(i);  // warm up allocator and store
  uint64_t before = relais_->RssKiB();
  for (int i = 0; i < 300; ++i) one(i);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  uint64_t after = relais_->RssKiB();
  std::printf("[hostile] VmRSS %llu KiB -> %llu KiB after 300 hostile connections\n",
              static_cast<unsigned long long>(before), static_cast<unsigned long long>(after));
  ASSERT_GT(before, 0u);
  EXPECT_LT(after, before + 30 * 1024) << "VmRSS grew by " << (after - before) << " KiB";
  ExpectStillServing("300 hostile connections");
}

// A sender with Nagle on (DCMTK reads TCP_NODELAY=0 from the environment)
// still gets its C-ECHO and C-STOREs through.
TEST_F(HostileTest, NagleOnSenderWorks) {
  std::map<std::string, std::string> nagle = {{"TCP_NODELAY", "0"}};
  RunResult echo =
      RunCommand({"echoscu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais_->port())}, 60, nagle);
  EXPECT_EQ(echo.exit_code, 0) << echo.output;
  std::string file = CorpusDir() + "/pydicom__CT_small.dcm";
  RunResult store = RunCommand(
      {"storescu", "-v", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais_->port()), file, file, file}, 60, nagle);
  EXPECT_EQ(store.exit_code, 0) << store.output;
  StorescuReport report = ParseStorescuVerbose(store.output);
  EXPECT_EQ(report.acknowledged.size(), 3u) << store.output;
  EXPECT_EQ(relais_->StoreList().size(), 1u);  // the same object three times
}

// ---- asynchronous operations window (PS3.7 D.3.3.3) ----------------------------

// The window Relais answered in an A-ASSOCIATE-AC body: (invoked, performed),
// or nullopt without a 0x53 sub-item.
std::optional<std::pair<uint16_t, uint16_t>> AnsweredWindow(const std::string& ac_body) {
  size_t p = 68;  // PS3.8 9.3.3: items start after the fixed fields
  while (p + 4 <= ac_body.size()) {
    uint8_t type = static_cast<uint8_t>(ac_body[p]);
    uint16_t len = Get16Be(ac_body, p + 2);
    if (type == 0x50) {
      for (size_t q = p + 4; q + 4 <= p + 4 + len;) {
        uint16_t sub_len = Get16Be(ac_body, q + 2);
        if (static_cast<uint8_t>(ac_body[q]) == 0x53 && sub_len == 4) {
          return std::make_pair(Get16Be(ac_body, q + 4), Get16Be(ac_body, q + 6));
        }
        q += 4 + sub_len;
      }
    }
    p += 4 + len;
  }
  return std::nullopt;
}

class HostileAsyncTest : public HostileTest {
 protected:
  // Associates proposing `async` (nullopt: no window) and returns the window answered.
  std::optional<std::pair<uint16_t, uint16_t>> AssociateAsync(RawClient* c,
                                                              std::optional<std::pair<uint16_t, uint16_t>> async) {
    EXPECT_TRUE(c->Connect(relais_->port()));
    // Explicit VR Little Endian only, so that CtDataSet's encoding is the one negotiated.
    EXPECT_TRUE(c->Send(AssociateRq(
        "RELAIS", {{1, kVerification, {kImplicitLittleEndian}}, {3, kCtImageStorage, {kExplicitLittleEndian}}}, 16384,
        async ? AsyncOps(async->first, async->second) : std::string())));
    RxPdu ac;
    EXPECT_EQ(c->ReadPdu(5000, &ac), RawClient::Rx::kPdu);
    EXPECT_EQ(ac.type, kAssociateAc) << Hex(ac.body, 64);
    return AnsweredWindow(ac.body);
  }

  // C-STORE-RQs with these Message IDs and their data sets, all in one write
  // (Relais reads them before any commit can come back).
  static std::string Stores(const std::vector<uint16_t>& ids) {
    std::string bytes;
    for (uint16_t id : ids) {
      const std::string uid = "1.2.826.0.1.3680043.2.1143.77." + std::to_string(id) + "." + std::to_string(NowMs());
      bytes += PData({{3, 0x03, StoreRq(id, kCtImageStorage, uid)}});
      bytes += PData({{3, 0x02, CtDataSet(uid)}});
    }
    return bytes;
  }
};

// Relais grants a window (at most 16) and answers every C-STORE of it with
// its own C-STORE-RSP naming its Message ID, each after its commit.
TEST_F(HostileAsyncTest, AWindowOfStoresIsAnsweredOneResponseEach) {
  RawClient c;
  std::optional<std::pair<uint16_t, uint16_t>> w = AssociateAsync(&c, std::make_pair(uint16_t{40}, uint16_t{3}));
  ASSERT_TRUE(w.has_value()) << "no asynchronous operations window answered";
  EXPECT_EQ(w->first, 16) << "invoked: held to what Relais grants";
  EXPECT_EQ(w->second, 1) << "performed";
  ASSERT_TRUE(c.Send(Stores({11, 12, 13, 14})));
  std::set<uint16_t> answered;
  for (int i = 0; i < 4; ++i) {
    RxPdu rsp;
    ASSERT_EQ(c.ReadPdu(10000, &rsp), RawClient::Rx::kPdu) << relais_->Log();
    ASSERT_EQ(rsp.type, kPData) << Hex(rsp.body);
    std::string cmd = CommandOf(rsp);
    EXPECT_EQ(CommandUs(cmd, 0x0100), 0x8001) << "not a C-STORE-RSP";
    EXPECT_EQ(CommandUs(cmd, 0x0900), 0x0000) << "status";
    std::optional<uint16_t> id = CommandUs(cmd, 0x0120);
    ASSERT_TRUE(id.has_value());
    answered.insert(*id);
  }
  EXPECT_EQ(answered, (std::set<uint16_t>{11, 12, 13, 14}));
  ASSERT_TRUE(c.Send(Pdu(kReleaseRq, std::string(4, '\0'))));
  ExpectClosedWith(&c, kReleaseRp, "release after a window of stores");
  EXPECT_EQ(relais_->StoreList().size(), 4u);
  // More than one was outstanding at once (the log of the association).
  EXPECT_NE(relais_->Log().find("window=16 max_outstanding=4"), std::string::npos) << relais_->Log();
  ExpectStillServing("a window of stores");
}

// More C-STOREs outstanding than the window answered (1 when none was
// proposed, 2 when 2 was) is a protocol error: A-ABORT, and the log says
// which window was exceeded. Relais and other associations go on.
TEST_F(HostileAsyncTest, MoreStoresThanTheWindowAreAborted) {
  for (std::optional<std::pair<uint16_t, uint16_t>> proposed :
       {std::optional<std::pair<uint16_t, uint16_t>>(), std::make_optional(std::make_pair(uint16_t{2}, uint16_t{1}))}) {
    const uint16_t window = proposed ? 2 : 1;
    RawClient c;
    std::optional<std::pair<uint16_t, uint16_t>> w = AssociateAsync(&c, proposed);
    EXPECT_EQ(w.has_value(), proposed.has_value());
    std::vector<uint16_t> ids;
    for (uint16_t i = 1; i <= window + 1; ++i) ids.push_back(i);
    ASSERT_TRUE(c.Send(Stores(ids)));
    std::vector<RxPdu> seen = ExpectClosedWith(&c, 0, "window " + std::to_string(window) + " exceeded");
    EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [](const RxPdu& p) { return p.type == kAbort; }))
        << Describe(seen);
    EXPECT_NE(relais_->Log().find("the asynchronous operations window negotiated allows " + std::to_string(window)),
              std::string::npos)
        << relais_->Log();
    ExpectStillServing("window exceeded");
  }
}

// Two outstanding C-STOREs with one Message ID: their responses could not
// be told apart. A-ABORT; Relais goes on.
TEST_F(HostileAsyncTest, ADuplicateMessageIdIsAborted) {
  RawClient c;
  ASSERT_TRUE(AssociateAsync(&c, std::make_pair(uint16_t{4}, uint16_t{1})).has_value());
  ASSERT_TRUE(c.Send(Stores({7, 7})));
  std::vector<RxPdu> seen = ExpectClosedWith(&c, 0, "duplicate message id");
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [](const RxPdu& p) { return p.type == kAbort; })) << Describe(seen);
  EXPECT_NE(relais_->Log().find("C-STORE-RQ msg=7 while a request with the same Message ID is outstanding"),
            std::string::npos)
      << relais_->Log();
  ExpectStillServing("duplicate message id");
}

}  // namespace
}  // namespace relais::itest
