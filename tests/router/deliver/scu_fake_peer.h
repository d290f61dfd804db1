// Pieces of the scripted peers that ScuAssociation's fake-transport tests
// (scu_association_fake_peer_test.cc, scu_async_window_test.cc) put at the
// other end of the wire (tests/router/net/fake_transport.h): an object as
// the store hands it out, the acceptor's A-ASSOCIATE-AC, a DIMSE command
// put together from its PDV fragments, and the peer's PDU dispatch.
#ifndef RELAIS_TESTS_ROUTER_DELIVER_SCU_FAKE_PEER_H_
#define RELAIS_TESTS_ROUTER_DELIVER_SCU_FAKE_PEER_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "router/protocol/dimse.h"
#include "router/protocol/pdu.h"
#include "store/store.h"
#include "tests/router/net/fake_transport.h"

namespace relais::testing {

inline constexpr char kVerification[] = "1.2.840.10008.1.1";
inline constexpr char kImplicitLe[] = "1.2.840.10008.1.2";
inline constexpr char kExplicitLe[] = "1.2.840.10008.1.2.1";
inline constexpr char kSecondaryCapture[] = "1.2.840.10008.5.1.4.1.1.7";

// An object (Secondary Capture, Explicit VR Little Endian) as the store
// would hand it out, in `chunks`.
class FakeReader : public store::ObjectReader {
 public:
  FakeReader(std::string sop_instance, std::vector<std::vector<uint8_t>> chunks) : chunks_(std::move(chunks)) {
    meta_.sop_class_uid = kSecondaryCapture;
    meta_.sop_instance_uid = std::move(sop_instance);
    meta_.transfer_syntax_uid = kExplicitLe;
  }
  const store::ObjectMeta& meta() const override { return meta_; }
  Status Next(std::vector<uint8_t>* out, bool* done) override {
    *out = chunks_.at(next_++);
    *done = next_ == chunks_.size();
    return Status::OK();
  }

 private:
  store::ObjectMeta meta_;
  std::vector<std::vector<uint8_t>> chunks_;
  size_t next_ = 0;
};

// The answer of an acceptor that accepts every proposed context with its
// first transfer syntax: max PDU 16384, implementation class UID "1.2.3.4",
// no other user information (the caller adds it before encoding).
inline ul::AssociateAc AcceptEveryContext(const ul::AssociateRq& rq) {
  ul::AssociateAc ac;
  ac.called_ae = rq.called_ae;
  ac.calling_ae = rq.calling_ae;
  for (const ul::PresentationContextRq& c : rq.contexts) {
    ac.contexts.push_back(ul::PresentationContextAc{c.id, ul::ContextResult::kAcceptance, c.transfer_syntaxes[0]});
  }
  ac.user_info.max_length = 16384;
  ac.user_info.implementation_class_uid = "1.2.3.4";
  return ac;
}

// `ac` as bytes on the wire (a test failure if it does not encode).
inline std::vector<uint8_t> Encoded(const ul::AssociateAc& ac) {
  std::vector<uint8_t> out;
  EXPECT_TRUE(ul::EncodeAssociateAc(ac, &out).ok());
  return out;
}

// Puts a DIMSE command together from the command PDVs of P-DATA-TFs.
class CommandAssembler {
 public:
  // Takes one command PDV's bytes; returns the command once its last
  // fragment came (nullopt before, and on a command that does not decode,
  // which is a test failure).
  std::optional<dimse::Command> Add(const ul::Pdv& pdv, const std::vector<uint8_t>& bytes) {
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    if (!pdv.is_last) return std::nullopt;
    Result<dimse::Command> cmd = dimse::DecodeCommand(bytes_);
    bytes_.clear();
    if (!cmd.ok()) {
      ADD_FAILURE() << cmd.status().ToString();
      return std::nullopt;
    }
    return *cmd;
  }

 private:
  std::vector<uint8_t> bytes_;
};

// The acceptor at the other end of a FakeWire: decodes what the association
// writes and hands each PDU to a hook. It records the A-ASSOCIATE-RQ and an
// A-ABORT (then closes), answers an A-RELEASE-RQ with an A-RELEASE-RP (after
// OnReleaseRq) and closes, and notes a PDU that does not decode. Must
// outlive the wire it is attached to.
class FakePeer {
 public:
  virtual ~FakePeer() = default;

  void Attach(FakeWire& wire) {
    wire.on_write = [this](FakeWire& w, std::span<const uint8_t> bytes) {
      for (PduReader::Item& item : reader_.Feed(bytes)) Handle(w, item);
    };
  }

  // What it saw.
  std::optional<ul::AssociateRq> rq;
  std::optional<ul::Abort> abort;
  bool release_rq = false;
  bool invalid = false;

 protected:
  // The answer to the A-ASSOCIATE-RQ, as bytes.
  virtual std::vector<uint8_t> OnAssociateRq(const ul::AssociateRq& rq) = 0;
  // One PDV of a P-DATA-TF, in order.
  virtual void OnPdv(FakeWire& w, const ul::Pdv& pdv, const std::vector<uint8_t>& bytes) = 0;
  // Before the A-RELEASE-RP is sent.
  virtual void OnReleaseRq(FakeWire& /*w*/) {}

 private:
  void Handle(FakeWire& w, PduReader::Item& item) {
    if (item.invalid) {
      invalid = true;
      return;
    }
    if (auto* a = std::get_if<ul::AssociateRq>(&item.pdu)) {
      rq = *a;
      w.Send(OnAssociateRq(*a));
    } else if (auto* p = std::get_if<ul::PData>(&item.pdu)) {
      for (size_t i = 0; i < p->pdvs.size(); ++i) OnPdv(w, p->pdvs[i], item.pdv_data[i]);
    } else if (std::holds_alternative<ul::ReleaseRq>(item.pdu)) {
      release_rq = true;
      OnReleaseRq(w);
      w.Send(ReleaseRpPdu());
      w.SendEnd();
    } else if (auto* ab = std::get_if<ul::Abort>(&item.pdu)) {
      abort = *ab;
      w.SendEnd();
    }
  }

  PduReader reader_;
};

}  // namespace relais::testing

#endif  // RELAIS_TESTS_ROUTER_DELIVER_SCU_FAKE_PEER_H_
