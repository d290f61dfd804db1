// UlConnection (router/net/ul_connection.h) over a fake transport: the
// decode loop finds the same PDUs wherever the reads cut the stream, a
// primitive issued inside an indication runs after the transition, invalid
// input is reported and stops decoding, and the timers, writes and close
// behave. Every test runs its loop to the end and checks that every handle
// was closed (uv_loop_close == 0).
#include "router/net/ul_connection.h"

#include <uv.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/router/net/fake_transport.h"

namespace relais::router {
namespace {

using testing::FakeTransport;
using testing::FakeWire;
using testing::PduReader;

constexpr char kVerification[] = "1.2.840.10008.1.1";
constexpr char kImplicitLe[] = "1.2.840.10008.1.2";

std::string Hex(std::span<const uint8_t> b) {
  std::string s;
  char buf[4];
  for (uint8_t c : b) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    s += buf;
  }
  return s;
}

std::vector<uint8_t> AssociateRqPdu() {
  ul::AssociateRq rq;
  rq.called_ae = "RELAIS";
  rq.calling_ae = "PEER";
  rq.contexts.push_back(ul::PresentationContextRq{1, kVerification, {kImplicitLe}});
  rq.contexts.push_back(ul::PresentationContextRq{3, "1.2.840.10008.5.1.4.1.1.7", {kImplicitLe}});
  std::vector<uint8_t> out;
  EXPECT_TRUE(ul::EncodeAssociateRq(rq, &out).ok());
  return out;
}

std::vector<uint8_t> AssociateAcPdu() {
  ul::AssociateAc ac;
  ac.called_ae = "RELAIS";
  ac.calling_ae = "PEER";
  ac.contexts.push_back(ul::PresentationContextAc{1, ul::ContextResult::kAcceptance, kImplicitLe});
  std::vector<uint8_t> out;
  EXPECT_TRUE(ul::EncodeAssociateAc(ac, &out).ok());
  return out;
}

// An acceptor's user that writes down every call, accepts every
// association from inside the indication (deferred by the connection) and
// answers a release at once.
class RecordingUser : public UlConnection::User {
 public:
  explicit RecordingUser(uv_loop_t* loop, uint32_t max_pdu = 16384, uint64_t artim_ms = 30000)
      : loop_(loop), conn(loop, this, max_pdu, artim_ms) {}

  std::string LogPrefix() const override { return "test"; }
  void OnAssociateRequest(const ul::AssociateRq& rq) override {
    log.push_back("associate-rq calling=" + rq.calling_ae + " contexts=" + std::to_string(rq.contexts.size()));
    conn.Fsm(ul::Event::kEvt7, nullptr, AssociateAcPdu());
    // Deferred: the transition that brought us here has not finished.
    log.push_back(std::string("after Evt7: ") + ul::StateName(conn.state()) + (conn.in_fsm() ? " in-fsm" : " outside") +
                  " written=" + std::to_string(wire_written()));
  }
  void OnAssociateAccepted(const ul::AssociateAc&) override { log.push_back("associate-ac"); }
  void OnAssociateRejected(const ul::AssociateRj&) override { log.push_back("associate-rj"); }
  void OnTransportConnected() override { log.push_back("connected"); }
  void OnPData(const ul::PData& pdata) override {
    for (const ul::Pdv& v : pdata.pdvs) {
      log.push_back("pdv ctx=" + std::to_string(v.context_id) + (v.is_command ? " cmd" : " data") +
                    (v.is_last ? " last " : " more ") + Hex(v.data));
    }
  }
  void OnReleaseRequest() override {
    log.push_back("release-rq");
    conn.Fsm(ul::Event::kEvt14);
  }
  void OnReleaseConfirm() override { log.push_back("release-rp"); }
  void OnAbort(const std::optional<ul::Abort>& abort) override {
    log.push_back(abort ? "abort source=" + std::to_string(static_cast<int>(abort->source)) : "abort (transport)");
  }
  void OnCloseNeeded() override {
    log.push_back("close-needed");
    conn.Close();
  }
  void OnTransportFailed(const TransportFailure& f) override {
    log.push_back("transport-failed kind=" + std::to_string(static_cast<int>(f.kind)) + " " + f.message);
    conn.Fsm(ul::Event::kEvt17);
    conn.Close();
  }
  void OnInvalidPdu(ul::AbortReason reason, const std::string& why) override {
    log.push_back("invalid reason=" + std::to_string(static_cast<int>(reason)));
    invalid_why = why;
    conn.StopInput();
  }
  void OnConnectionClosed() override {
    log.push_back("closed");
    closed = true;
  }
  void OnWriteDone() override { ++writes_done; }

  size_t wire_written() const { return wire_ ? wire_->written.size() : 0; }
  // Acceptor: the transport indication (Evt5), then reading.
  void Start(FakeWire* wire) {
    wire_ = wire;
    conn.Attach(std::make_unique<FakeTransport>(loop_, wire), nullptr);
    conn.Fsm(ul::Event::kEvt5);
    conn.StartReading();
  }

 private:
  uv_loop_t* loop_;

 public:
  UlConnection conn;
  std::vector<std::string> log;
  std::string invalid_why;
  bool closed = false;
  int writes_done = 0;

 private:
  FakeWire* wire_ = nullptr;
};

// Runs `loop` until `conn` is established. (UV_RUN_NOWAIT: UV_RUN_ONCE
// would sleep until the next timer once the fake has nothing to deliver.)
void RunUntilSta6(uv_loop_t* loop, const UlConnection& conn) {
  while (conn.state() != ul::State::kSta6 && uv_loop_alive(loop)) uv_run(loop, UV_RUN_NOWAIT);
}

struct Transcript {
  std::vector<std::string> log;
  std::vector<uint8_t> written;
  bool closed = false;
  int loop_close = -1;
};

// An acceptor reads `chunks` (each one read, in order), then the peer
// closes; the loop runs until everything is closed.
Transcript Accept(const std::vector<std::vector<uint8_t>>& chunks) {
  Transcript out;
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    RecordingUser user(&loop);
    user.Start(&wire);
    for (const auto& c : chunks) wire.Send(c);
    wire.SendEnd();
    uv_run(&loop, UV_RUN_DEFAULT);
    out.log = user.log;
    out.written = wire.written;
    out.closed = user.closed;
  }
  out.loop_close = uv_loop_close(&loop);
  return out;
}

// RQ; a P-DATA with a command in two PDVs; a P-DATA with a command PDV and
// a data PDV; RELEASE-RQ.
std::vector<uint8_t> Conversation() {
  std::vector<uint8_t> two_pdvs = testing::PDataPdu(1, true, false, std::vector<uint8_t>{1, 2, 3});
  std::vector<uint8_t> second = testing::PDataPdu(1, true, true, std::vector<uint8_t>{4, 5});
  // Two PDVs in one PDU: the second item appended, the PDU length patched.
  two_pdvs.insert(two_pdvs.end(), second.begin() + 6, second.end());
  uint32_t len = static_cast<uint32_t>(two_pdvs.size() - 6);
  two_pdvs[2] = static_cast<uint8_t>(len >> 24);
  two_pdvs[3] = static_cast<uint8_t>(len >> 16);
  two_pdvs[4] = static_cast<uint8_t>(len >> 8);
  two_pdvs[5] = static_cast<uint8_t>(len);
  return testing::Concat({AssociateRqPdu(), two_pdvs,
                          testing::PDataPdu(1, false, true, std::vector<uint8_t>(300, 0xAB)), testing::ReleaseRqPdu()});
}

TEST(UlConnectionTest, BytesSplitAtEveryOffsetYieldTheSamePdus) {
  const std::vector<uint8_t> stream = Conversation();
  const Transcript whole = Accept({stream});
  ASSERT_TRUE(whole.closed);
  EXPECT_EQ(whole.loop_close, 0);
  const std::vector<std::string> expected = {
      "associate-rq calling=PEER contexts=2",
      "after Evt7: Sta3 in-fsm written=0",
      "pdv ctx=1 cmd more 010203",
      "pdv ctx=1 cmd last 0405",
      "pdv ctx=1 data last " + Hex(std::vector<uint8_t>(300, 0xAB)),
      "release-rq",
      "transport-failed kind=1 end of file",  // the peer closes after our A-RELEASE-RP
      "close-needed",                         // AR-5 in Sta13
      "closed",
  };
  EXPECT_EQ(whole.log, expected);
  EXPECT_EQ(whole.written, testing::Concat({AssociateAcPdu(), testing::ReleaseRpPdu()}));

  for (size_t cut = 1; cut < stream.size(); ++cut) {
    Transcript split = Accept({std::vector<uint8_t>(stream.begin(), stream.begin() + cut),
                               std::vector<uint8_t>(stream.begin() + cut, stream.end())});
    ASSERT_EQ(split.log, expected) << "cut at " << cut;
    ASSERT_EQ(split.written, whole.written) << "cut at " << cut;
    ASSERT_EQ(split.loop_close, 0);
  }
  std::vector<std::vector<uint8_t>> bytes;
  for (uint8_t b : stream) bytes.push_back({b});
  Transcript byte_by_byte = Accept(bytes);
  EXPECT_EQ(byte_by_byte.log, expected);
  EXPECT_EQ(byte_by_byte.written, whole.written);
}

TEST(UlConnectionTest, PrimitiveFromInsideAnIndicationRunsAfterTheTransition) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    RecordingUser user(&loop);
    user.Start(&wire);
    wire.Send(AssociateRqPdu());
    RunUntilSta6(&loop, user.conn);
    // Inside the indication the state was Sta3 and nothing was written; the
    // A-ASSOCIATE-AC went out once AE-6 had finished.
    ASSERT_GE(user.log.size(), 2u);
    EXPECT_EQ(user.log[1], "after Evt7: Sta3 in-fsm written=0");
    EXPECT_EQ(user.conn.state(), ul::State::kSta6);
    PduReader reader;
    std::vector<PduReader::Item> got = reader.Feed(wire.written);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(std::holds_alternative<ul::AssociateAc>(got[0].pdu));
    user.conn.Close();
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(user.closed);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(UlConnectionTest, InvalidPduIsReportedAndNothingAfterItIsDecoded) {
  // An unknown PDU type (0x08), then a valid A-RELEASE-RQ that must not be read.
  std::vector<uint8_t> junk = {0x08, 0x00, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4};
  Transcript r = Accept({testing::Concat({AssociateRqPdu(), junk, testing::ReleaseRqPdu()})});
  ASSERT_GE(r.log.size(), 3u);
  EXPECT_EQ(r.log[2], "invalid reason=" + std::to_string(static_cast<int>(ul::AbortReason::kUnrecognizedPdu)));
  for (const std::string& l : r.log) EXPECT_NE(l, "release-rq");
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.loop_close, 0);
}

TEST(UlConnectionTest, OversizedPDataIsInvalidBeforeItsBodyArrives) {
  // Only the header of a P-DATA-TF announcing 1 MiB (over our 16 KiB).
  std::vector<uint8_t> header = {0x04, 0x00, 0x00, 0x10, 0x00, 0x00};
  Transcript r = Accept({AssociateRqPdu(), header});
  ASSERT_GE(r.log.size(), 3u);
  EXPECT_EQ(r.log[2], "invalid reason=" + std::to_string(static_cast<int>(ul::AbortReason::kInvalidPduParameterValue)));
  EXPECT_EQ(r.loop_close, 0);
}

TEST(UlConnectionTest, ArtimExpiryRunsEvt18AndAsksToClose) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    RecordingUser user(&loop, 16384, /*artim_ms=*/20);
    user.Start(&wire);  // Sta2, ARTIM running; the peer never sends an A-ASSOCIATE-RQ
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_EQ(user.log, (std::vector<std::string>{"close-needed", "closed"}));
    EXPECT_EQ(user.conn.state(), ul::State::kSta1);  // AA-2
    EXPECT_TRUE(wire.closed);
    EXPECT_TRUE(wire.close_reported);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(UlConnectionTest, CloseAfterWritesWaitsForTheLastWrite) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    RecordingUser user(&loop);
    user.Start(&wire);
    wire.Send(AssociateRqPdu());
    RunUntilSta6(&loop, user.conn);
    for (int i = 0; i < 3; ++i) uv_run(&loop, UV_RUN_NOWAIT);  // the A-ASSOCIATE-AC's write completes
    ASSERT_EQ(user.conn.writes_in_flight(), 0u);
    user.conn.CloseAfterWrites();
    user.conn.Fsm(ul::Event::kEvt15, nullptr,
                  testing::AbortPdu(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified));
    // The A-ABORT is queued, not yet written: no close yet.
    EXPECT_EQ(user.conn.writes_in_flight(), 1u);
    EXPECT_FALSE(wire.closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(wire.closed);
    EXPECT_TRUE(user.closed);
    PduReader reader;
    std::vector<PduReader::Item> got = reader.Feed(wire.written);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_TRUE(std::holds_alternative<ul::Abort>(got[1].pdu));
    EXPECT_EQ(user.conn.writes_in_flight(), 0u);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(UlConnectionTest, PausedConnectionReadsNothingUntilResumed) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    RecordingUser user(&loop);
    user.Start(&wire);
    user.conn.PauseReading();
    wire.Send(AssociateRqPdu());
    for (int i = 0; i < 5; ++i) uv_run(&loop, UV_RUN_NOWAIT);
    EXPECT_TRUE(user.log.empty());
    EXPECT_FALSE(wire.reading);
    user.conn.ResumeReading();
    RunUntilSta6(&loop, user.conn);
    EXPECT_EQ(user.log.front(), "associate-rq calling=PEER contexts=2");
    user.conn.Close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(UlConnectionTest, RequestorConnectsThenSendsItsAssociateRq) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    wire.on_write = [](FakeWire& w, std::span<const uint8_t>) { w.Send(AssociateAcPdu()); };
    RecordingUser user(&loop);
    user.conn.Attach(std::make_unique<FakeTransport>(&loop, &wire), nullptr);
    user.conn.Fsm(ul::Event::kEvt1, nullptr, AssociateRqPdu());
    EXPECT_EQ(user.conn.state(), ul::State::kSta4);
    EXPECT_EQ(wire.connects, 1);
    RunUntilSta6(&loop, user.conn);
    EXPECT_EQ(user.log, (std::vector<std::string>{"connected", "associate-ac"}));
    EXPECT_EQ(wire.written, AssociateRqPdu());
    EXPECT_TRUE(wire.reading);
    user.conn.Close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(UlConnectionTest, FailedConnectIsATransportFailure) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    FakeWire wire;
    wire.connect_result = Status::IOError("connect to 192.0.2.7:104 failed: connection refused");
    RecordingUser user(&loop);
    user.conn.Attach(std::make_unique<FakeTransport>(&loop, &wire), nullptr);
    user.conn.Fsm(ul::Event::kEvt1, nullptr, AssociateRqPdu());
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_FALSE(user.log.empty());
    EXPECT_EQ(user.log.front(), "transport-failed kind=0 connect to 192.0.2.7:104 failed: connection refused");
    EXPECT_TRUE(wire.written.empty());
    EXPECT_TRUE(user.closed);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace relais::router
