// ScuAssociation's asynchronous operations window (PS3.7 D.3.3.3) against a
// scripted peer on a fake transport (tests/router/net/fake_transport.h):
// what is proposed, how the answer is honoured, requests kept in flight,
// responses matched by Message ID in any order, and a response naming a
// Message ID not in flight. Each test runs its loop until everything is
// closed (uv_loop_close == 0).
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "router/deliver/scu_association.h"
#include "tests/router/deliver/scu_fake_peer.h"
#include "tests/router/net/fake_transport.h"

namespace relais::router {
namespace {

using testing::CommandAssembler;
using testing::FakeReader;
using testing::FakeTransport;
using testing::FakeWire;
using testing::kExplicitLe;
using testing::kSecondaryCapture;
using testing::PduReader;

// An acceptor that answers with `window` (nullopt: no 0x53 sub-item) and
// holds the C-STORE-RSPs until `hold` requests are complete, then answers
// them newest first (out of order). The status of each names its object:
// a SOP Instance UID ending in an odd digit gets 0xB000 (warning).
struct WindowPeer : testing::FakePeer {
  std::optional<ul::AsyncOpsWindow> window;
  size_t hold = 1;
  // Answer with this Message ID Being Responded To instead (0: the right one).
  uint16_t wrong_message_id = 0;

  size_t max_held = 0;  // the most complete requests waiting for a response at once
  size_t requests = 0;

 private:
  std::vector<uint8_t> OnAssociateRq(const ul::AssociateRq& a) override {
    ul::AssociateAc ac = testing::AcceptEveryContext(a);
    ac.user_info.async_ops = window;
    return testing::Encoded(ac);
  }
  void OnReleaseRq(FakeWire& w) override { Flush(w); }

  void OnPdv(FakeWire& w, const ul::Pdv& pdv, const std::vector<uint8_t>& bytes) override {
    if (pdv.is_command) {
      std::optional<dimse::Command> cmd = commands_.Add(pdv, bytes);
      if (!cmd) return;
      current_ = *cmd;
      context_ = pdv.context_id;
      return;
    }
    if (!pdv.is_last) return;
    ++requests;
    held_.push_back(current_);
    max_held = std::max(max_held, held_.size());
    if (held_.size() >= hold) Flush(w);
  }

  // Answers every held request, newest first.
  void Flush(FakeWire& w) {
    while (!held_.empty()) {
      dimse::Command rq = held_.back();
      held_.pop_back();
      const std::string& sop = rq.affected_sop_instance_uid;
      const uint16_t status = (sop.back() - '0') % 2 == 1 ? 0xB000 : 0x0000;
      dimse::Command rsp = dimse::MakeStoreResponse(rq, status);
      if (wrong_message_id != 0) rsp.message_id_responded_to = wrong_message_id;
      w.Send(testing::CommandPdu(context_, rsp));
    }
  }

  CommandAssembler commands_;
  dimse::Command current_;
  uint8_t context_ = 0;
  std::vector<dimse::Command> held_;
};

struct Outcomes {
  std::optional<Outcome> established;
  std::map<std::string, Outcome> results;  // by SOP Instance UID
  uint16_t window = 0;
  size_t max_outstanding = 0;
  bool closed = false;
  int loop_close = -1;
  FakeWire wire;
};

// Stores `objects` objects ("1.2.3.1", "1.2.3.2", ...), keeping as many in
// flight as the association's window allows, then releases.
void StoreAll(WindowPeer& peer, int objects, Outcomes* r) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  peer.Attach(r->wire);
  std::unique_ptr<ScuAssociation> scu;
  int next = 0;
  int answered = 0;
  std::function<void()> fill = [&]() {
    while (next < objects && scu->outstanding() < scu->window()) {
      std::string sop = "1.2.3." + std::to_string(++next);
      scu->Store(std::make_unique<FakeReader>(sop, std::vector<std::vector<uint8_t>>{std::vector<uint8_t>(3000, 0x5A)}),
                 [&, sop](Outcome o) {
                   r->results[sop] = o;
                   if (++answered == objects || !o.ok()) {
                     r->max_outstanding = scu->max_outstanding();
                     scu->Release();
                   } else {
                     fill();
                   }
                 });
    }
  };
  ScuConfig config;
  config.calling_ae = "RELAIS";
  config.called_ae = "PEER";
  config.host = "192.0.2.7";
  scu = std::make_unique<ScuAssociation>(
      &loop, config, std::vector<ContextProposal>{{kSecondaryCapture, {kExplicitLe}}},
      [&](Outcome o) {
        r->established = o;
        r->window = scu->window();
        if (o.ok()) fill();
      },
      [&]() {
        r->closed = true;
        scu.reset();
      });
  scu->Start(std::make_unique<FakeTransport>(&loop, &r->wire));
  uv_run(&loop, UV_RUN_DEFAULT);
  r->loop_close = uv_loop_close(&loop);
}

TEST(ScuAsyncWindowTest, ProposesAWindowOfSixteen) {
  WindowPeer peer;
  Outcomes r;
  StoreAll(peer, 1, &r);
  ASSERT_TRUE(peer.rq);
  ASSERT_TRUE(peer.rq->user_info.async_ops);
  EXPECT_EQ(peer.rq->user_info.async_ops->max_invoked, ScuAssociation::kProposedWindow);
  EXPECT_EQ(peer.rq->user_info.async_ops->max_performed, 1);
  EXPECT_EQ(r.loop_close, 0);
}

TEST(ScuAsyncWindowTest, KeepsTheAnsweredWindowInFlightAndMatchesOutOfOrderResponsesByMessageId) {
  WindowPeer peer;
  peer.window = ul::AsyncOpsWindow{4, 1};
  peer.hold = 4;
  Outcomes r;
  StoreAll(peer, 8, &r);
  ASSERT_TRUE(r.established && r.established->ok());
  EXPECT_EQ(r.window, 4);
  EXPECT_EQ(peer.max_held, 4u);  // four complete requests waited for their responses at once
  EXPECT_EQ(r.max_outstanding, 4u);
  ASSERT_EQ(r.results.size(), 8u);
  for (const auto& [sop, o] : r.results) {
    // Each object got its own response although they came newest first.
    const bool odd = (sop.back() - '0') % 2 == 1;
    EXPECT_EQ(o.kind, odd ? Outcome::Kind::kWarning : Outcome::Kind::kSuccess) << sop << " " << o.ToString();
    EXPECT_EQ(o.status, odd ? 0xB000 : 0x0000) << sop;
    EXPECT_GE(o.round_trip_ms, 0) << sop;
  }
  EXPECT_FALSE(peer.abort);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.loop_close, 0);
}

TEST(ScuAsyncWindowTest, NoAnswerMeansOneAtATime) {
  WindowPeer peer;  // answers no 0x53 sub-item, like storescp and Orthanc
  Outcomes r;
  StoreAll(peer, 3, &r);
  EXPECT_EQ(r.window, 1);
  EXPECT_EQ(peer.max_held, 1u);
  EXPECT_EQ(r.max_outstanding, 1u);
  ASSERT_EQ(r.results.size(), 3u);
  for (const auto& [sop, o] : r.results) EXPECT_TRUE(o.ok()) << sop << " " << o.ToString();
  EXPECT_EQ(r.loop_close, 0);
}

TEST(ScuAsyncWindowTest, UnlimitedOrLargerAnswersAreHeldToOurProposal) {
  for (uint16_t answered : {uint16_t{0}, uint16_t{500}}) {
    WindowPeer peer;
    peer.window = ul::AsyncOpsWindow{answered, 1};
    peer.hold = ScuAssociation::kProposedWindow;
    Outcomes r;
    StoreAll(peer, 32, &r);
    EXPECT_EQ(r.window, ScuAssociation::kProposedWindow) << answered;
    EXPECT_EQ(peer.max_held, ScuAssociation::kProposedWindow) << answered;
    EXPECT_EQ(r.results.size(), 32u);
    EXPECT_EQ(r.loop_close, 0);
  }
}

TEST(ScuAsyncWindowTest, AResponseToAMessageIdNotInFlightAbortsAndFailsEveryOperation) {
  WindowPeer peer;
  peer.window = ul::AsyncOpsWindow{3, 1};
  peer.hold = 3;
  peer.wrong_message_id = 999;
  Outcomes r;
  StoreAll(peer, 3, &r);
  ASSERT_EQ(r.results.size(), 3u);
  for (const auto& [sop, o] : r.results) {
    EXPECT_EQ(o.kind, Outcome::Kind::kAborted) << sop << " " << o.ToString();
    EXPECT_TRUE(o.IsTransient()) << sop;  // sent again later, not dead-lettered
  }
  EXPECT_NE(r.results.begin()->second.error.find("message id 999, which is not in flight"), std::string::npos)
      << r.results.begin()->second.error;
  EXPECT_TRUE(peer.abort);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.loop_close, 0);
}

}  // namespace
}  // namespace relais::router
