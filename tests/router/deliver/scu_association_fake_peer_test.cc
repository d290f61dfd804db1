// ScuAssociation against a scripted peer on a fake transport
// (tests/router/net/fake_transport.h): no socket, no process, every byte
// the association writes decoded and answered by the script. Each test
// runs its loop until everything is closed (uv_loop_close == 0).
#include "router/deliver/scu_association.h"

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/router/deliver/scu_fake_peer.h"
#include "tests/router/net/fake_transport.h"

namespace relais::router {
namespace {

using testing::CommandAssembler;
using testing::FakeReader;
using testing::FakeTransport;
using testing::FakeWire;
using testing::kExplicitLe;
using testing::kImplicitLe;
using testing::kSecondaryCapture;
using testing::kVerification;
using testing::PduReader;

// The acceptor at the other end: decodes what the association writes and
// answers as its script says. By default it accepts every proposed
// context with its first transfer syntax, answers C-ECHO and C-STORE with
// Success once the request (and its data set) is complete, and answers an
// A-RELEASE-RQ with an A-RELEASE-RP, then closes.
struct ScriptedPeer : testing::FakePeer {
  // The answer to the A-ASSOCIATE-RQ (default: the A-ASSOCIATE-AC above).
  std::function<std::vector<uint8_t>(const ul::AssociateRq&)> on_associate;
  // The answer to a complete request (default: success).
  std::function<std::vector<uint8_t>(const dimse::Command& rq)> on_request;
  // Called when a request's command is complete, before its data set.
  std::function<void(FakeWire&, const dimse::Command& rq)> on_command;

  // What it saw, besides FakePeer's.
  std::vector<dimse::Command> commands;
  std::vector<uint8_t> data_set;  // the data set bytes of the last C-STORE

 private:
  std::vector<uint8_t> OnAssociateRq(const ul::AssociateRq& a) override {
    return on_associate ? on_associate(a) : Accept(a);
  }

  void OnPdv(FakeWire& w, const ul::Pdv& pdv, const std::vector<uint8_t>& bytes) override {
    if (pdv.is_command) {
      std::optional<dimse::Command> cmd = assembler_.Add(pdv, bytes);
      if (!cmd) return;
      commands.push_back(*cmd);
      context_ = pdv.context_id;
      data_set.clear();
      if (on_command) on_command(w, *cmd);
      if (!cmd->has_data_set()) Answer(w);
      return;
    }
    data_set.insert(data_set.end(), bytes.begin(), bytes.end());
    if (pdv.is_last) Answer(w);
  }

  void Answer(FakeWire& w) {
    const dimse::Command& rq = commands.back();
    if (on_request) {
      w.Send(on_request(rq));
    } else if (rq.command_field == dimse::CommandField::kCEchoRq) {
      w.Send(testing::CommandPdu(context_, dimse::MakeEchoResponse(rq, dimse::kStatusSuccess)));
    } else {
      w.Send(testing::CommandPdu(context_, dimse::MakeStoreResponse(rq, dimse::kStatusSuccess)));
    }
  }

  static std::vector<uint8_t> Accept(const ul::AssociateRq& rq) {
    return testing::Encoded(testing::AcceptEveryContext(rq));
  }

  CommandAssembler assembler_;
  uint8_t context_ = 0;
};

using Op = std::function<void(ScuAssociation&, std::function<void(Outcome)>)>;

Op EchoOp() {
  return [](ScuAssociation& a, std::function<void(Outcome)> done) { a.Echo(std::move(done)); };
}

Op StoreOp(std::string sop_instance, std::vector<std::vector<uint8_t>> chunks) {
  return [sop_instance, chunks](ScuAssociation& a, std::function<void(Outcome)> done) {
    a.Store(std::make_unique<FakeReader>(sop_instance, chunks), std::move(done));
  };
}

struct Session {
  std::optional<Outcome> established;
  std::vector<Outcome> results;
  bool closed = false;
  int loop_close = -1;
  FakeWire wire;
};

ScuConfig Config() {
  ScuConfig c;
  c.calling_ae = "RELAIS";
  c.called_ae = "PEER";
  c.host = "192.0.2.7";
  c.port = 104;
  return c;
}

std::vector<ContextProposal> Proposals() {
  return {{kVerification, {kImplicitLe}}, {kSecondaryCapture, {kExplicitLe}}};
}

// One association with `peer` over a fake wire: once established, runs
// `ops` in order, then releases; the loop runs until everything is closed.
void RunSession(ScriptedPeer& peer, std::vector<Op> ops, Session* s, ScuConfig config = Config()) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  peer.Attach(s->wire);
  std::unique_ptr<ScuAssociation> scu;
  size_t next = 0;
  std::function<void()> run_next = [&]() {
    if (next == ops.size()) return scu->Release();
    ops[next++](*scu, [&](Outcome o) {
      s->results.push_back(o);
      if (o.ok()) {
        run_next();
      } else {
        scu->Release();  // aborts instead when the association is gone
      }
    });
  };
  scu = std::make_unique<ScuAssociation>(
      &loop, std::move(config), Proposals(),
      [&](Outcome o) {
        s->established = o;
        if (o.ok()) run_next();
      },
      [&]() {
        s->closed = true;
        scu.reset();  // allowed from on_closed
      });
  scu->Start(std::make_unique<FakeTransport>(&loop, &s->wire));
  uv_run(&loop, UV_RUN_DEFAULT);
  s->loop_close = uv_loop_close(&loop);
}

TEST(ScuAssociationFakePeerTest, EchoAfterAssociateAcSucceedsAndReleases) {
  ScriptedPeer peer;
  Session s;
  RunSession(peer, {EchoOp()}, &s);
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kSuccess) << s.established->ToString();
  ASSERT_EQ(s.results.size(), 1u);
  EXPECT_EQ(s.results[0].kind, Outcome::Kind::kSuccess) << s.results[0].ToString();
  // The A-ASSOCIATE-RQ: our AE titles, context ids 1 and 3 in proposal order.
  ASSERT_TRUE(peer.rq);
  EXPECT_EQ(peer.rq->calling_ae, "RELAIS");
  EXPECT_EQ(peer.rq->called_ae, "PEER");
  ASSERT_EQ(peer.rq->contexts.size(), 2u);
  EXPECT_EQ(peer.rq->contexts[0].id, 1);
  EXPECT_EQ(peer.rq->contexts[1].id, 3);
  ASSERT_EQ(peer.commands.size(), 1u);
  EXPECT_EQ(peer.commands[0].command_field, dimse::CommandField::kCEchoRq);
  EXPECT_TRUE(peer.release_rq);
  EXPECT_FALSE(peer.abort);
  EXPECT_EQ(s.wire.connects, 1);
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, StoreResponseStatusesBecomeTheirOutcomeKinds) {
  ScriptedPeer peer;
  const std::vector<uint16_t> statuses = {0xB000, 0xA700};
  size_t answered = 0;
  peer.on_request = [&](const dimse::Command& rq) {
    uint16_t st = statuses.at(answered++);
    return testing::CommandPdu(3, dimse::MakeStoreResponse(rq, st));
  };
  std::vector<std::vector<uint8_t>> chunks = {std::vector<uint8_t>(40000, 0x11), std::vector<uint8_t>(123, 0x22)};
  Session s;
  // A warning lets the session go on; the failure ends it (RunSession releases).
  RunSession(peer, {StoreOp("1.2.3.1", chunks), StoreOp("1.2.3.2", chunks)}, &s);
  ASSERT_TRUE(s.established && s.established->ok());
  ASSERT_EQ(s.results.size(), 2u);
  EXPECT_EQ(s.results[0].kind, Outcome::Kind::kWarning) << s.results[0].ToString();
  EXPECT_EQ(s.results[0].status, 0xB000);
  EXPECT_EQ(s.results[1].kind, Outcome::Kind::kFailure) << s.results[1].ToString();
  EXPECT_EQ(s.results[1].status, 0xA700);
  EXPECT_TRUE(s.results[1].IsTransient());
  // The peer got the whole data set, PDV by PDV, and the request's UIDs.
  std::vector<uint8_t> expected = chunks[0];
  expected.insert(expected.end(), chunks[1].begin(), chunks[1].end());
  EXPECT_EQ(peer.data_set, expected);
  ASSERT_EQ(peer.commands.size(), 2u);
  EXPECT_EQ(peer.commands[1].affected_sop_instance_uid, "1.2.3.2");
  EXPECT_EQ(peer.commands[1].affected_sop_class_uid, kSecondaryCapture);
  EXPECT_TRUE(peer.release_rq);
  EXPECT_EQ(s.loop_close, 0);

  ScriptedPeer refusing;
  refusing.on_request = [](const dimse::Command& rq) {
    return testing::CommandPdu(3, dimse::MakeStoreResponse(rq, 0xA900, "SOP class not supported"));
  };
  Session r;
  RunSession(refusing, {StoreOp("1.2.3.3", chunks)}, &r);
  ASSERT_EQ(r.results.size(), 1u);
  EXPECT_EQ(r.results[0].kind, Outcome::Kind::kFailure);
  EXPECT_EQ(r.results[0].status, 0xA900);
  EXPECT_EQ(r.results[0].error, "SOP class not supported");
  EXPECT_FALSE(r.results[0].IsTransient());
  EXPECT_EQ(r.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, AssociateRjIsARejectedOutcome) {
  ScriptedPeer peer;
  peer.on_associate = [](const ul::AssociateRq&) {
    std::vector<uint8_t> out;
    ul::EncodeAssociateRj(
        ul::AssociateRj{ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser, ul::kRjCalledAeNotRecognized},
        &out);
    return out;
  };
  Session s;
  RunSession(peer, {EchoOp()}, &s);
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kRejected) << s.established->ToString();
  EXPECT_EQ(s.established->reject_result, ul::RejectResult::kPermanent);
  EXPECT_EQ(s.established->reject_source, ul::RejectSource::kServiceUser);
  EXPECT_EQ(s.established->reject_reason, ul::kRjCalledAeNotRecognized);
  EXPECT_NE(s.established->error.find("called AE title not recognized"), std::string::npos);
  EXPECT_FALSE(s.established->IsTransient());
  EXPECT_TRUE(s.results.empty());
  EXPECT_TRUE(s.wire.closed);  // AE-4 closes the transport
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, AbortDuringAStoreAbortsTheOperation) {
  ScriptedPeer peer;
  // The peer aborts as soon as it has the C-STORE-RQ's command.
  peer.on_command = [](FakeWire& w, const dimse::Command& rq) {
    if (rq.command_field == dimse::CommandField::kCStoreRq) {
      w.Send(testing::AbortPdu(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified));
    }
  };
  peer.on_request = [](const dimse::Command&) { return std::vector<uint8_t>{}; };  // never answers
  Session s;
  RunSession(peer, {StoreOp("1.2.3.4", {std::vector<uint8_t>(200000, 0x33)})}, &s);
  ASSERT_TRUE(s.established && s.established->ok());
  ASSERT_EQ(s.results.size(), 1u);
  EXPECT_EQ(s.results[0].kind, Outcome::Kind::kAborted) << s.results[0].ToString();
  EXPECT_NE(s.results[0].error.find("A-ABORT source service-user"), std::string::npos) << s.results[0].error;
  EXPECT_TRUE(s.results[0].IsTransient());
  EXPECT_TRUE(s.wire.closed);  // AA-3 closes the transport
  EXPECT_FALSE(peer.release_rq);
  EXPECT_EQ(s.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, MalformedPduIsAnsweredWithAnAbortAndReportedAborted) {
  // A P-DATA-TF whose PDV item claims more bytes than the PDU holds
  // (PS3.8 9.3.5.1), in answer to the C-ECHO-RQ.
  ScriptedPeer peer;
  peer.on_request = [](const dimse::Command&) {
    return std::vector<uint8_t>{0x04, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x01, 0x03, 0x00, 0x00};
  };
  Session s;
  RunSession(peer, {EchoOp()}, &s);
  ASSERT_TRUE(s.established && s.established->ok());
  ASSERT_EQ(s.results.size(), 1u);
  EXPECT_EQ(s.results[0].kind, Outcome::Kind::kAborted) << s.results[0].ToString();
  EXPECT_NE(s.results[0].error.find("invalid PDU from the peer"), std::string::npos) << s.results[0].error;
  // Our A-ABORT: service-provider, the decoder's reason.
  ASSERT_TRUE(peer.abort);
  EXPECT_EQ(peer.abort->source, ul::AbortSource::kServiceProvider);
  EXPECT_EQ(peer.abort->reason, ul::AbortReason::kInvalidPduParameterValue);
  EXPECT_TRUE(s.wire.closed);
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, UnknownPduTypeInsteadOfAnAcAbortsTheAssociation) {
  ScriptedPeer peer;
  peer.on_associate = [](const ul::AssociateRq&) {
    return std::vector<uint8_t>{0x08, 0x00, 0x00, 0x00, 0x00, 0x02, 0xDE, 0xAD};
  };
  Session s;
  RunSession(peer, {EchoOp()}, &s);
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kAborted) << s.established->ToString();
  ASSERT_TRUE(peer.abort);
  EXPECT_EQ(peer.abort->source, ul::AbortSource::kServiceProvider);
  EXPECT_EQ(peer.abort->reason, ul::AbortReason::kUnrecognizedPdu);
  EXPECT_EQ(s.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, PeerClosingMidOperationIsATransportError) {
  ScriptedPeer peer;
  peer.on_command = [](FakeWire& w, const dimse::Command&) { w.SendEnd(); };
  peer.on_request = [](const dimse::Command&) { return std::vector<uint8_t>{}; };
  Session s;
  RunSession(peer, {EchoOp()}, &s);
  ASSERT_EQ(s.results.size(), 1u);
  EXPECT_EQ(s.results[0].kind, Outcome::Kind::kTransportError) << s.results[0].ToString();
  EXPECT_EQ(s.results[0].error, "connection closed by the peer");
  EXPECT_EQ(s.loop_close, 0);
}

TEST(ScuAssociationFakePeerTest, FailedConnectIsATransportErrorNamingThePeer) {
  ScriptedPeer peer;
  Session s;
  s.wire.connect_result = Status::IOError("connect to 192.0.2.7:104 failed: connection refused");
  RunSession(peer, {EchoOp()}, &s);
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kTransportError);
  EXPECT_EQ(s.established->error, "connect to 192.0.2.7:104 failed: connection refused");
  EXPECT_TRUE(s.established->IsTransient());
  EXPECT_TRUE(s.wire.written.empty());
  EXPECT_EQ(s.loop_close, 0);
}

}  // namespace
}  // namespace relais::router
