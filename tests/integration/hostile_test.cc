// Hostile peers (DESIGN.md: "Bad input gets a clear answer and hurts nobody
// else"). A raw TCP client (hostile_peer.h) sends malformed or abusive byte
// streams; after each case Relais must still be alive and answer echoscu,
// and it must have closed the hostile connection itself, with an A-ABORT or
// A-ASSOCIATE-RJ where PS3.8 Table 9-10 says so.
// The asynchronous operations window cases are in hostile_async_test.cc.
#include "hostile_peer.h"

namespace relais::itest {
namespace {

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

}  // namespace
}  // namespace relais::itest
