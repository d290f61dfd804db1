// ScpAssociation over a fake transport (tests/router/net/fake_transport.h):
// the test is the requesting peer, writes PDUs and reads the answers. The
// association needs a Server: a real one on the test's loop that does not
// listen and has no store (nothing here stores an object: a C-STORE's
// commit comes back through Server::FindAssociation, which only knows
// associations the Server accepted itself). Every test runs the loop until
// the association has closed and checks that every handle was closed.
#include "router/receive/association.h"

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "router/receive/server.h"
#include "tests/router/net/fake_transport.h"

namespace relais::router {
namespace {

using testing::FakeTransport;
using testing::FakeWire;
using testing::PduReader;

constexpr char kVerification[] = "1.2.840.10008.1.1";
constexpr char kImplicitLe[] = "1.2.840.10008.1.2";
constexpr char kExplicitLe[] = "1.2.840.10008.1.2.1";
constexpr char kCtImage[] = "1.2.840.10008.5.1.4.1.1.2";
constexpr char kPatientRootFind[] = "1.2.840.10008.5.1.4.1.2.1.1";  // Query/Retrieve: not served

std::vector<uint8_t> AssociateRqPdu(const std::string& called_ae = "RELAIS") {
  ul::AssociateRq rq;
  rq.called_ae = called_ae;
  rq.calling_ae = "MODALITY";
  rq.contexts.push_back(ul::PresentationContextRq{1, kVerification, {kImplicitLe}});
  rq.contexts.push_back(ul::PresentationContextRq{3, kCtImage, {kExplicitLe, kImplicitLe}});
  rq.contexts.push_back(ul::PresentationContextRq{5, kPatientRootFind, {kImplicitLe}});
  rq.user_info.max_length = 32768;
  rq.user_info.implementation_class_uid = "1.2.3.4";
  std::vector<uint8_t> out;
  EXPECT_TRUE(ul::EncodeAssociateRq(rq, &out).ok());
  return out;
}

dimse::Command EchoRq(uint16_t message_id) {
  dimse::Command rq;
  rq.command_field = dimse::CommandField::kCEchoRq;
  rq.message_id = message_id;
  rq.affected_sop_class_uid = kVerification;
  rq.data_set_type = dimse::kNoDataSet;
  return rq;
}

class ScpAssociationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ScpSettings settings;
    settings.ae_title = "RELAIS";
    settings.max_pdu = 16384;
    settings.artim_timeout_ms = 2000;
    settings.idle_timeout_ms = 10000;
    server_ = std::make_unique<Server>(&loop_, nullptr, settings);
  }
  void TearDown() override {
    if (assoc_ && !wire_.closed) assoc_->AbortNow("end of test");
    server_->Shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);  // every handle closes, the association's too
    assoc_.reset();
    server_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Accepts the fake connection; what the association writes is decoded
  // into got_.
  void Start() {
    wire_.on_write = [this](FakeWire&, std::span<const uint8_t> bytes) {
      for (PduReader::Item& item : reader_.Feed(bytes)) got_.push_back(std::move(item));
    };
    assoc_ = std::make_unique<ScpAssociation>(server_.get(), 1);
    assoc_->Start(std::make_unique<FakeTransport>(&loop_, &wire_));
  }
  // Runs the loop until `n` PDUs have come back or the connection closed.
  // (UV_RUN_NOWAIT: UV_RUN_ONCE would sleep until the next timer, the idle
  // timeout, once the fake transport has nothing left to deliver.)
  void RunUntil(size_t n) {
    while (got_.size() < n && !wire_.close_reported) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  // Runs the loop until the association has closed its connection.
  void RunUntilClosed() {
    while (!wire_.close_reported) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  template <typename T>
  const T* Got(size_t i) {
    if (i >= got_.size()) return nullptr;
    return std::get_if<T>(&got_[i].pdu);
  }

  uv_loop_t loop_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<ScpAssociation> assoc_;
  FakeWire wire_;
  PduReader reader_;
  std::vector<PduReader::Item> got_;
};

TEST_F(ScpAssociationTest, AssociateRqIsAnsweredWithAnAcThenReleased) {
  Start();
  wire_.Send(AssociateRqPdu());
  RunUntil(1);
  const ul::AssociateAc* ac = Got<ul::AssociateAc>(0);
  ASSERT_NE(ac, nullptr);
  EXPECT_EQ(ac->called_ae, "RELAIS");
  EXPECT_EQ(ac->calling_ae, "MODALITY");
  EXPECT_EQ(ac->user_info.max_length, 16384u);  // our limit, from the settings
  ASSERT_EQ(ac->contexts.size(), 3u);
  EXPECT_EQ(ac->contexts[0].result, ul::ContextResult::kAcceptance);
  EXPECT_EQ(ac->contexts[0].transfer_syntax, kImplicitLe);
  EXPECT_EQ(ac->contexts[1].result, ul::ContextResult::kAcceptance);
  EXPECT_EQ(ac->contexts[2].result, ul::ContextResult::kAbstractSyntaxNotSupported);
  EXPECT_EQ(server_->established_count(), 1u);

  wire_.Send(testing::ReleaseRqPdu());
  RunUntil(2);
  EXPECT_NE(Got<ul::ReleaseRp>(1), nullptr);
  EXPECT_FALSE(wire_.closed);  // AR-4: the requestor closes (ARTIM bounds the wait)
  wire_.SendEnd();
  RunUntilClosed();
  EXPECT_TRUE(wire_.closed);
  EXPECT_EQ(server_->established_count(), 0u);
}

TEST_F(ScpAssociationTest, EchoRqIsAnsweredWithSuccess) {
  Start();
  wire_.Send(AssociateRqPdu());
  // The command in two fragments, in two P-DATA-TF PDUs, in one read.
  std::vector<uint8_t> cmd = dimse::EncodeCommand(EchoRq(7));
  std::span<const uint8_t> all(cmd);
  wire_.Send(testing::Concat(
      {testing::PDataPdu(1, true, false, all.first(10)), testing::PDataPdu(1, true, true, all.subspan(10))}));
  RunUntil(2);
  const ul::PData* p = Got<ul::PData>(1);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(got_[1].pdv_data.size(), 1u);
  EXPECT_EQ(p->pdvs[0].context_id, 1);
  EXPECT_TRUE(p->pdvs[0].is_command);
  EXPECT_TRUE(p->pdvs[0].is_last);
  Result<dimse::Command> rsp = dimse::DecodeCommand(got_[1].pdv_data[0]);
  ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
  EXPECT_EQ(rsp->command_field, dimse::CommandField::kCEchoRsp);
  EXPECT_EQ(rsp->message_id_responded_to, 7);
  EXPECT_EQ(rsp->status, dimse::kStatusSuccess);

  wire_.Send(testing::ReleaseRqPdu());
  RunUntil(3);
  EXPECT_NE(Got<ul::ReleaseRp>(2), nullptr);
  wire_.SendEnd();
  RunUntilClosed();
}

TEST_F(ScpAssociationTest, WrongCalledAeIsRejected) {
  Start();
  wire_.Send(AssociateRqPdu("SOMEONE_ELSE"));
  RunUntil(1);
  const ul::AssociateRj* rj = Got<ul::AssociateRj>(0);
  ASSERT_NE(rj, nullptr);
  EXPECT_EQ(rj->result, ul::RejectResult::kPermanent);
  EXPECT_EQ(rj->source, ul::RejectSource::kServiceUser);
  EXPECT_EQ(rj->reason, ul::kRjCalledAeNotRecognized);
  EXPECT_EQ(server_->established_count(), 0u);
  wire_.SendEnd();  // AE-8 left us in Sta13: the peer closes
  RunUntilClosed();
  EXPECT_TRUE(wire_.closed);
}

TEST_F(ScpAssociationTest, MalformedPduIsAbortedAndTheConnectionClosed) {
  Start();
  wire_.Send(AssociateRqPdu());
  RunUntil(1);
  ASSERT_NE(Got<ul::AssociateAc>(0), nullptr);
  wire_.Send({0x08, 0x00, 0x00, 0x00, 0x00, 0x02, 0xDE, 0xAD});  // PDU type 0x08 does not exist
  RunUntilClosed();
  const ul::Abort* abort = Got<ul::Abort>(1);
  ASSERT_NE(abort, nullptr);
  EXPECT_EQ(abort->source, ul::AbortSource::kServiceProvider);
  EXPECT_EQ(abort->reason, ul::AbortReason::kUnrecognizedPdu);
  EXPECT_TRUE(wire_.closed);  // without waiting for the peer
  EXPECT_EQ(server_->established_count(), 0u);
}

TEST_F(ScpAssociationTest, OversizedPDataIsAbortedBeforeItsBodyArrives) {
  Start();
  wire_.Send(AssociateRqPdu());
  // A P-DATA-TF header announcing 1 MiB, over the 16 KiB we accept.
  wire_.Send({0x04, 0x00, 0x00, 0x10, 0x00, 0x00});
  RunUntilClosed();
  ASSERT_NE(Got<ul::AssociateAc>(0), nullptr);
  const ul::Abort* abort = Got<ul::Abort>(1);
  ASSERT_NE(abort, nullptr);
  EXPECT_EQ(abort->source, ul::AbortSource::kServiceProvider);
  EXPECT_EQ(abort->reason, ul::AbortReason::kInvalidPduParameterValue);
  EXPECT_TRUE(wire_.closed);
}

TEST_F(ScpAssociationTest, CommandOnARefusedContextIsAProtocolError) {
  Start();
  wire_.Send(AssociateRqPdu());
  // Context 5 (Query/Retrieve) was refused: the error is found inside the
  // P-DATA indication and handled after it.
  wire_.Send(testing::CommandPdu(5, EchoRq(1)));
  RunUntilClosed();
  const ul::Abort* abort = Got<ul::Abort>(1);
  ASSERT_NE(abort, nullptr);
  EXPECT_EQ(abort->source, ul::AbortSource::kServiceProvider);
  EXPECT_EQ(abort->reason, ul::AbortReason::kInvalidPduParameterValue);
  EXPECT_EQ(got_.size(), 2u);  // no C-ECHO-RSP
}

TEST_F(ScpAssociationTest, PeerVanishingMidAssociationClosesIt) {
  Start();
  wire_.Send(AssociateRqPdu());
  RunUntil(1);
  EXPECT_EQ(server_->established_count(), 1u);
  wire_.SendEnd(/*eof=*/false, "connection reset by peer");
  RunUntilClosed();
  EXPECT_TRUE(wire_.closed);
  EXPECT_EQ(server_->established_count(), 0u);
}

TEST_F(ScpAssociationTest, AbortNowSendsAnAbortAndCloses) {
  Start();
  wire_.Send(AssociateRqPdu());
  RunUntil(1);
  assoc_->AbortNow("test");
  RunUntilClosed();
  const ul::Abort* abort = Got<ul::Abort>(1);
  ASSERT_NE(abort, nullptr);
  EXPECT_EQ(abort->source, ul::AbortSource::kServiceUser);
}

}  // namespace
}  // namespace relais::router
