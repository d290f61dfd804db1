// Hostile peers and the asynchronous operations window (PS3.7 D.3.3.3): a
// raw client (hostile_peer.h) proposes a window or none, then sends more
// C-STOREs than it allows or repeats a Message ID. Relais must answer each
// C-STORE of a window with its own response, abort the offender with a log
// line that says why, and go on serving others.
#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "hostile_peer.h"

namespace relais::itest {
namespace {

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
