// The requesting side of the DICOM Upper Layer on libuv: see the header.
//
// Handles: tcp_, artim_, op_timer_, dispatch_ and pace_ are initialised in
// Start() and freed only through their close callbacks; the getaddrinfo
// request, if any, is cancelled and its callback awaited. The object is
// finished (and `on_closed` called) when all five are closed and no request
// is pending.
//
// Timers: op_timer_ bounds whatever we wait for outside the state machine's
// ARTIM cells: the connect (resolve + TCP), the A-ASSOCIATE-AC (PS3.8 leaves
// Evt18 blank in Sta5, so this is ours), each operation (no progress for
// response_timeout_ms) and the A-RELEASE-RP. artim_ is the state machine's
// own ARTIM (Sta13 after our A-ABORT or A-RELEASE-RP).
//
// Re-entrancy: as in ScpAssociation, primitives issued from inside a state
// machine indication are queued and run after the current transition; user
// callbacks are queued and run from dispatch_ (a zero timer), never from
// inside a method of this class.
#include "router/deliver/scu_association.h"

#include <netdb.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "base/identity.h"
#include "base/log.h"
#include "base/text.h"
#include "router/protocol/presentation.h"
#include "router/net/tcp_tuning.h"
#include "router/net/tls.h"

namespace relais::router {
namespace {

using ul::Event;
using ul::State;

constexpr size_t kReadChunk = 64 * 1024;
// A response command set is a few hundred bytes.
constexpr size_t kMaxCommandBytes = 64 * 1024;
// Data set bytes queued for writing before we stop reading the store: the
// next chunk is read only when less than this is still being written.
constexpr uint64_t kMaxBufferedBytes = 256 * 1024;
// A peer advertising a maximum PDU length below this cannot carry a command
// set in a sensible number of PDUs; we refuse to talk to it.
constexpr uint32_t kMinPeerMaxPdu = 128;
// PDV data size we use when the peer sets no limit (PS3.8 D.1: 0 = none).
constexpr uint32_t kUnlimitedPdvData = 256 * 1024;

struct WriteReq {
  uv_write_t req;
  std::vector<uint8_t> bytes;
};

const char* RejectSourceName(ul::RejectSource s) {
  switch (s) {
    case ul::RejectSource::kServiceUser: return "service-user";
    case ul::RejectSource::kServiceProviderAcse: return "service-provider (ACSE)";
    case ul::RejectSource::kServiceProviderPresentation: return "service-provider (presentation)";
  }
  return "?";
}

// PS3.8 Table 9-21: reason meanings by source.
std::string RejectReasonText(ul::RejectSource s, uint8_t reason) {
  if (s == ul::RejectSource::kServiceUser) {
    switch (reason) {
      case ul::kRjNoReasonGiven: return "no reason given";
      case ul::kRjApplicationContextNotSupported: return "application context name not supported";
      case ul::kRjCallingAeNotRecognized: return "calling AE title not recognized";
      case ul::kRjCalledAeNotRecognized: return "called AE title not recognized";
      default: break;
    }
  } else if (s == ul::RejectSource::kServiceProviderAcse) {
    if (reason == 1) return "no reason given";
    if (reason == ul::kRjProtocolVersionNotSupported) return "protocol version not supported";
  } else {
    if (reason == ul::kRjTemporaryCongestion) return "temporary congestion";
    if (reason == ul::kRjLocalLimitExceeded) return "local limit exceeded";
  }
  return "reason " + std::to_string(reason);
}

Outcome MakeOutcome(Outcome::Kind kind, std::string error, uint16_t status = 0) {
  Outcome o;
  o.kind = kind;
  o.status = status;
  o.error = std::move(error);
  return o;
}

}  // namespace

// ---- construction and start -------------------------------------------------------

ScuAssociation::ScuAssociation(uv_loop_t* loop, ScuConfig config, std::vector<ContextProposal> proposals,
                               std::function<void(Outcome)> on_established, std::function<void()> on_closed)
    : loop_(loop),
      config_(std::move(config)),
      proposals_(std::move(proposals)),
      on_established_(std::move(on_established)),
      on_closed_(std::move(on_closed)),
      fsm_(this, State::kSta1) {
  limits_.max_pdata_length = config_.max_pdu;
  tcp_.data = this;
  artim_.data = this;
  op_timer_.data = this;
  dispatch_.data = this;
  pace_.data = this;
  resolve_req_.data = this;
  connect_req_.data = this;
}

ScuAssociation::~ScuAssociation() {
  if (started_ && !finished_) {
    RLOG_ERROR("%s destroyed before on_closed: libuv handles leak (a bug in the owner)", Prefix().c_str());
  }
}

std::string ScuAssociation::Prefix() const {
  return "scu " + config_.calling_ae + "->" + config_.called_ae + "@" + config_.host + ":" +
         std::to_string(config_.port);
}

void ScuAssociation::Start() {
  if (started_) return;
  started_ = true;
  uv_tcp_init(loop_, &tcp_);
  uv_timer_init(loop_, &artim_);
  uv_timer_init(loop_, &op_timer_);
  uv_timer_init(loop_, &dispatch_);
  uv_timer_init(loop_, &pace_);
  handles_open_ = 5;
  if (proposals_.empty() || proposals_.size() > 128) {
    Fail(MakeOutcome(Outcome::Kind::kLocalError, "between 1 and 128 presentation contexts must be proposed"));
    StartClose();
    return;
  }
  ArmOpTimer(config_.connect_timeout_ms);
  if (uv_ip4_addr(config_.host.c_str(), config_.port, reinterpret_cast<sockaddr_in*>(&addr_)) == 0 ||
      uv_ip6_addr(config_.host.c_str(), config_.port, reinterpret_cast<sockaddr_in6*>(&addr_)) == 0) {
    BeginAssociate();
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(config_.port);
  resolving_ = true;
  int rc = uv_getaddrinfo(loop_, &resolve_req_, &ScuAssociation::OnResolved, config_.host.c_str(), port.c_str(),
                          &hints);
  if (rc != 0) {
    resolving_ = false;
    Fail(MakeOutcome(Outcome::Kind::kTransportError,
                     "cannot resolve '" + config_.host + "': " + uv_strerror(rc)));
    StartClose();
  }
}

void ScuAssociation::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
  auto* self = static_cast<ScuAssociation*>(req->data);
  self->resolving_ = false;
  if (status == 0 && res != nullptr && !self->closing_) {
    std::memcpy(&self->addr_, res->ai_addr, std::min<size_t>(res->ai_addrlen, sizeof(self->addr_)));
  }
  uv_freeaddrinfo(res);
  if (self->closing_) {
    self->MaybeFinish();  // may destroy self
    return;
  }
  if (status != 0) {
    self->Fail(MakeOutcome(Outcome::Kind::kTransportError,
                           "cannot resolve '" + self->config_.host + "': " + uv_strerror(status)));
    self->StartClose();
    return;
  }
  self->BeginAssociate();
}

// PS3.8 9.3.2: the A-ASSOCIATE-RQ. Presentation context ids are odd, in
// proposal order (9.3.2.2); user information carries our maximum PDU length
// (D.1) and implementation identity (PS3.7 D.3.3.2).
void ScuAssociation::BeginAssociate() {
  ul::AssociateRq rq;
  rq.called_ae = config_.called_ae;
  rq.calling_ae = config_.calling_ae;
  for (size_t i = 0; i < proposals_.size(); ++i) {
    rq.contexts.push_back(ul::PresentationContextRq{static_cast<uint8_t>(2 * i + 1),
                                                    proposals_[i].abstract_syntax,
                                                    proposals_[i].transfer_syntaxes});
  }
  rq.user_info.max_length = config_.max_pdu;
  rq.user_info.implementation_class_uid = kImplementationClassUid;
  rq.user_info.implementation_version_name = kImplementationVersionName;
  std::vector<uint8_t> bytes;
  if (Status s = ul::EncodeAssociateRq(rq, &bytes); !s.ok()) {
    // Our own proposals (configured UIDs) do not fit: nothing is sent.
    RLOG_ERROR("%s event=associate-rq-unencodable error=\"%s\"", Prefix().c_str(), s.message().c_str());
    Fail(MakeOutcome(Outcome::Kind::kLocalError, "A-ASSOCIATE-RQ not sent: " + s.message()));
    StartClose();
    return;
  }
  Fsm(Event::kEvt1, nullptr, std::move(bytes));  // AE-1: ConnectTransport
}

// ---- state machine plumbing ----------------------------------------------------------

void ScuAssociation::Fsm(Event event, const ul::Pdu* pdu, std::vector<uint8_t> bytes) {
  if (closing_) return;
  if (in_fsm_) {
    deferred_.push_back(Deferred{event, std::move(bytes)});
    return;
  }
  in_fsm_ = true;
  State before = fsm_.state();
  ul::Action action = fsm_.Handle(event, pdu, std::move(bytes));
  RLOG_DEBUG("%s fsm %s %s %s -> %s", Prefix().c_str(), ul::StateName(before), ul::EventName(event),
             ul::ActionName(action), ul::StateName(fsm_.state()));
  in_fsm_ = false;
  while (!deferred_.empty() && !closing_) {
    Deferred d = std::move(deferred_.front());
    deferred_.pop_front();
    Fsm(d.event, nullptr, std::move(d.bytes));
  }
  deferred_.clear();
  if (close_after_writes_ && writes_in_flight_ == 0 && !in_fsm_) StartClose();
}

void ScuAssociation::ConnectTransport() {
  int rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&addr_),
                          &ScuAssociation::OnConnect);
  if (rc != 0) {
    transport_error_ = "connect to " + config_.host + ":" + std::to_string(config_.port) + " failed: " +
                       uv_strerror(rc);
    Fsm(Event::kEvt17);  // deferred: runs after AE-1
  }
}

void ScuAssociation::OnConnect(uv_connect_t* req, int status) noexcept {
  auto* self = static_cast<ScuAssociation*>(req->data);
  if (self->closing_) return;  // cancelled by uv_close
  if (status != 0) {
    self->transport_error_ = "connect to " + self->config_.host + ":" + std::to_string(self->config_.port) +
                             " failed: " + uv_strerror(status);
    self->Fsm(Event::kEvt17);  // Sta4: AA-4
    return;
  }
  // Nagle off: a C-STORE-RQ's last PDU must not wait for an ACK.
  uv_tcp_nodelay(&self->tcp_, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_), &ScuAssociation::OnAlloc, &ScuAssociation::OnRead);
  if (self->config_.tls) {
    // The A-ASSOCIATE-RQ waits inside the channel until the handshake is done.
    self->tls_ = std::make_unique<TlsChannel>(self->config_.tls, self->config_.host);
    Status s = self->tls_->Start();
    if (!s.ok()) {
      self->transport_error_ = s.message();
      self->Fsm(Event::kEvt17);
      return;
    }
    self->FlushTls();
  }
  self->Fsm(Event::kEvt2);  // AE-2: send the A-ASSOCIATE-RQ
}

void ScuAssociation::OnTransportConnected() {
  RLOG_DEBUG("%s connected; A-ASSOCIATE-RQ sent", Prefix().c_str());
  ArmOpTimer(config_.artim_timeout_ms);  // wait for the AC or RJ
}

void ScuAssociation::SendPdu(std::vector<uint8_t> bytes) {
  if (closing_ || bytes.empty()) return;
  if (tls_) {
    Status s = tls_->Send(bytes);
    if (!s.ok()) {
      transport_error_ = s.message();
      Fsm(Event::kEvt17);
      StartClose();
      return;
    }
    FlushTls();
    return;
  }
  WriteRaw(std::move(bytes));
}

void ScuAssociation::FlushTls() {
  std::vector<uint8_t> out;
  tls_->TakeOutput(&out);
  if (!out.empty()) WriteRaw(std::move(out));
}

void ScuAssociation::WriteRaw(std::vector<uint8_t> bytes) {
  if (closing_ || bytes.empty()) return;
  auto* w = new WriteReq;
  w->bytes = std::move(bytes);
  w->req.data = this;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(w->bytes.data()), w->bytes.size());
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, &ScuAssociation::OnWrite);
  if (rc != 0) {
    delete w;
    transport_error_ = std::string("write failed: ") + uv_strerror(rc);
    Fsm(Event::kEvt17);
    StartClose();
    return;
  }
  ++writes_in_flight_;
  write_bytes_pending_ += w->bytes.size();
}

void ScuAssociation::OnWrite(uv_write_t* req, int status) noexcept {
  auto* w = reinterpret_cast<WriteReq*>(req);
  auto* self = static_cast<ScuAssociation*>(req->data);
  --self->writes_in_flight_;
  self->write_bytes_pending_ -= w->bytes.size();
  delete w;
  if (self->closing_) return;
  if (status != 0) {
    self->transport_error_ = std::string("write failed: ") + uv_strerror(status);
    self->Fsm(Event::kEvt17);
    self->StartClose();
    return;
  }
  if (self->close_after_writes_) {
    if (self->writes_in_flight_ == 0) self->StartClose();
    return;
  }
  if (self->op_) {
    self->ArmOpTimer(self->config_.response_timeout_ms);  // progress
    self->PumpData();
  }
}

void ScuAssociation::CloseTransport() { StartClose(); }

void ScuAssociation::StartArtim() {
  if (closing_) return;
  uv_timer_start(&artim_, &ScuAssociation::OnArtimTimer, config_.artim_timeout_ms, 0);
}

void ScuAssociation::StopArtim() {
  if (closing_) return;
  uv_timer_stop(&artim_);
}

void ScuAssociation::OnArtimTimer(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScuAssociation*>(t->data);
  RLOG_WARN("%s ARTIM timer expired in %s", self->Prefix().c_str(), ul::StateName(self->fsm_.state()));
  self->Fsm(Event::kEvt18);
  self->StartClose();
}

void ScuAssociation::ArmOpTimer(uint64_t ms) {
  if (closing_) return;
  uv_timer_start(&op_timer_, &ScuAssociation::OnOpTimer, ms, 0);
}

void ScuAssociation::OnOpTimer(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScuAssociation*>(t->data);
  const State s = self->fsm_.state();
  const std::string where = self->config_.host + ":" + std::to_string(self->config_.port);
  if (self->resolving_ || s == State::kSta1 || s == State::kSta4) {
    self->Fail(MakeOutcome(Outcome::Kind::kTimeout, "no connection to " + where + " within " +
                                                        std::to_string(self->config_.connect_timeout_ms) + " ms"));
    self->StartClose();
    return;
  }
  if (s == State::kSta5) {
    std::string why = "no A-ASSOCIATE-AC from " + where + " within " +
                      std::to_string(self->config_.artim_timeout_ms) + " ms";
    self->Fail(MakeOutcome(Outcome::Kind::kTimeout, why));
    self->AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, why);
    return;
  }
  if (self->op_) {
    std::string why = "no progress or response within " + std::to_string(self->config_.response_timeout_ms) + " ms";
    self->Fail(MakeOutcome(Outcome::Kind::kTimeout, why));
    self->AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, why);
    return;
  }
  if (self->releasing_) {
    self->AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified,
                    "no A-RELEASE-RP within " + std::to_string(self->config_.artim_timeout_ms) + " ms");
  }
}

// ---- callbacks to the owner ----------------------------------------------------------

void ScuAssociation::Deliver(std::function<void()> fn) {
  callbacks_.push_back(std::move(fn));
  if (started_ && !closing_) uv_timer_start(&dispatch_, &ScuAssociation::OnDispatch, 0, 0);
  // When closing, MaybeFinish runs what is left before on_closed.
}

void ScuAssociation::OnDispatch(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScuAssociation*>(t->data);
  std::deque<std::function<void()>> run;
  run.swap(self->callbacks_);
  for (auto& fn : run) fn();
}

void ScuAssociation::Fail(Outcome outcome) {
  if (!established_ && on_established_) {
    RLOG_WARN("%s event=association-failed %s", Prefix().c_str(), outcome.ToString().c_str());
    auto cb = std::move(on_established_);
    on_established_ = nullptr;
    Deliver([cb = std::move(cb), outcome = std::move(outcome)]() { cb(outcome); });
    return;
  }
  if (op_) {
    CompleteOp(std::move(outcome));
    return;
  }
  RLOG_DEBUG("%s (no operation waiting) %s", Prefix().c_str(), outcome.ToString().c_str());
}

// ---- association negotiation ------------------------------------------------------------

void ScuAssociation::OnAssociateRequest(const ul::AssociateRq&) {}  // never: we are the requestor

void ScuAssociation::OnAssociateAccepted(const ul::AssociateAc& ac) {
  uv_timer_stop(&op_timer_);
  peer_max_pdu_ = ac.user_info.max_length;
  if (peer_max_pdu_ != 0 && peer_max_pdu_ < kMinPeerMaxPdu) {
    std::string why = "peer's maximum PDU length " + std::to_string(peer_max_pdu_) + " is unusably small";
    Fail(MakeOutcome(Outcome::Kind::kAborted, why));
    AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, why);
    return;
  }
  // PS3.8 9.3.3.2: each result names the id of a proposed context.
  for (const ul::PresentationContextAc& c : ac.contexts) {
    if (c.result != ul::ContextResult::kAcceptance) continue;
    if (c.id % 2 == 0 || (c.id - 1u) / 2 >= proposals_.size()) {
      RLOG_WARN("%s A-ASSOCIATE-AC accepts context %u, which we did not propose: ignored", Prefix().c_str(),
                c.id);
      continue;
    }
    const ContextProposal& p = proposals_[(c.id - 1u) / 2];
    if (std::find(p.transfer_syntaxes.begin(), p.transfer_syntaxes.end(), c.transfer_syntax) ==
        p.transfer_syntaxes.end()) {
      RLOG_WARN("%s context %u accepted with transfer syntax %s, which we did not propose: ignored",
                Prefix().c_str(), c.id, c.transfer_syntax.c_str());
      continue;
    }
    accepted_.push_back(AcceptedContext{c.id, p.abstract_syntax, c.transfer_syntax});
  }
  established_ = true;
  RLOG_INFO("%s event=association-established contexts=%zu/%zu peer_max_pdu=%u impl=%s", Prefix().c_str(),
            accepted_.size(), proposals_.size(), peer_max_pdu_, ac.user_info.implementation_class_uid.c_str());
  if (on_established_) {
    auto cb = std::move(on_established_);
    on_established_ = nullptr;
    Deliver([cb = std::move(cb)]() { cb(Outcome{}); });
  }
}

void ScuAssociation::OnAssociateRejected(const ul::AssociateRj& rj) {
  uv_timer_stop(&op_timer_);
  Outcome o;
  o.kind = Outcome::Kind::kRejected;
  o.reject_result = rj.result;
  o.reject_source = rj.source;
  o.reject_reason = rj.reason;
  o.error = std::string("A-ASSOCIATE-RJ (") +
            (rj.result == ul::RejectResult::kPermanent ? "permanent" : "transient") + ", source " +
            RejectSourceName(rj.source) + ": " + RejectReasonText(rj.source, rj.reason) + ")";
  Fail(std::move(o));
}

bool ScuAssociation::established() const {
  return established_ && !closing_ && !releasing_ && !release_wanted_ && fsm_.state() == State::kSta6;
}

uint32_t ScuAssociation::MaxPdvData() const {
  // PS3.8 D.1: the limit is the PDU length field of a P-DATA-TF, i.e. the
  // whole PDV item list; one PDV item adds 4 (length) + 2 (context id,
  // message control header) bytes (9.3.5.1).
  if (peer_max_pdu_ == 0) return kUnlimitedPdvData;
  return peer_max_pdu_ - 6;
}

// ---- operations -----------------------------------------------------------------------

void ScuAssociation::Store(std::unique_ptr<store::ObjectReader> reader, std::function<void(Outcome)> done) {
  auto refuse = [&](Outcome::Kind kind, std::string why) {
    Deliver([done = std::move(done), o = MakeOutcome(kind, std::move(why))]() { done(o); });
  };
  if (!reader) return refuse(Outcome::Kind::kLocalError, "no object reader");
  if (op_) return refuse(Outcome::Kind::kLocalError, "an operation is already in flight");
  if (!established()) return refuse(Outcome::Kind::kAborted, "the association is not established");
  const store::ObjectMeta& meta = reader->meta();
  const AcceptedContext* ctx = nullptr;
  std::string other_ts;
  for (const AcceptedContext& c : accepted_) {
    if (c.abstract_syntax != meta.sop_class_uid) continue;
    if (c.transfer_syntax == meta.transfer_syntax_uid) {
      ctx = &c;
      break;
    }
    other_ts += (other_ts.empty() ? "" : ", ") + c.transfer_syntax;
  }
  if (ctx == nullptr) {
    std::string why = other_ts.empty()
                          ? "SOP class " + meta.sop_class_uid + " was not accepted by the peer"
                          : "SOP class " + meta.sop_class_uid + " was accepted only with transfer syntax " +
                                other_ts + "; the object is stored in " + meta.transfer_syntax_uid;
    RLOG_WARN("%s sop=%s event=no-context %s", Prefix().c_str(), meta.sop_instance_uid.c_str(), why.c_str());
    return refuse(Outcome::Kind::kNoContext, std::move(why));
  }
  Op op;
  op.store = true;
  op.message_id = next_message_id_;
  op.context_id = ctx->id;
  op.sop_instance_uid = meta.sop_instance_uid;
  op.done = std::move(done);
  dimse::Command rq;
  rq.command_field = dimse::CommandField::kCStoreRq;
  rq.message_id = op.message_id;
  rq.affected_sop_class_uid = meta.sop_class_uid;
  rq.affected_sop_instance_uid = meta.sop_instance_uid;
  rq.priority = 0;  // MEDIUM (PS3.7 C.4.1.1.2)
  rq.data_set_type = dimse::kDataSetPresent;
  op.reader = std::move(reader);
  StartOp(std::move(op), rq);
  PumpData();
}

void ScuAssociation::Echo(std::function<void(Outcome)> done) {
  auto refuse = [&](Outcome::Kind kind, std::string why) {
    Deliver([done = std::move(done), o = MakeOutcome(kind, std::move(why))]() { done(o); });
  };
  if (op_) return refuse(Outcome::Kind::kLocalError, "an operation is already in flight");
  if (!established()) return refuse(Outcome::Kind::kAborted, "the association is not established");
  const AcceptedContext* ctx = nullptr;
  for (const AcceptedContext& c : accepted_) {
    if (c.abstract_syntax == ul::kVerificationSopClass) {
      ctx = &c;
      break;
    }
  }
  if (ctx == nullptr) return refuse(Outcome::Kind::kNoContext, "Verification was not accepted by the peer");
  Op op;
  op.message_id = next_message_id_;
  op.context_id = ctx->id;
  op.all_sent = true;
  op.done = std::move(done);
  dimse::Command rq;
  rq.command_field = dimse::CommandField::kCEchoRq;
  rq.message_id = op.message_id;
  rq.affected_sop_class_uid = ul::kVerificationSopClass;
  rq.data_set_type = dimse::kNoDataSet;
  StartOp(std::move(op), rq);
}

void ScuAssociation::StartOp(Op op, const dimse::Command& rq) {
  if (++next_message_id_ == 0) next_message_id_ = 1;  // PS3.7 E.1: any value; skip 0
  op_.emplace(std::move(op));
  command_bytes_.clear();
  ArmOpTimer(config_.response_timeout_ms);
  std::vector<uint8_t> body = dimse::EncodeCommand(rq);
  SendPData(op_->context_id, true, body, true);
}

// PS3.8 9.3.5 and Annex E: one PDV per P-DATA-TF PDU, at most MaxPdvData()
// bytes; the message control header says command/data set and last
// fragment. The command set and the data set never share a PDV (PS3.7 8.1).
void ScuAssociation::SendPData(uint8_t context_id, bool is_command, std::span<const uint8_t> data, bool last) {
  if (data.empty() && !last) return;
  const size_t max = MaxPdvData();
  size_t off = 0;
  do {
    size_t n = std::min(max, data.size() - off);
    bool is_last = last && off + n == data.size();
    std::vector<uint8_t> pdu;
    pdu.reserve(12 + n);
    if (Status s = ul::EncodePDataHeader(context_id, is_command, is_last, static_cast<uint32_t>(n), &pdu);
        !s.ok()) {
      // MaxPdvData() keeps n in range; refuse rather than wrap if it ever does not.
      Fail(MakeOutcome(Outcome::Kind::kLocalError, s.message()));
      AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, s.message());
      return;
    }
    pdu.insert(pdu.end(), data.begin() + off, data.begin() + off + n);
    Fsm(Event::kEvt9, nullptr, std::move(pdu));  // DT-1
    off += n;
  } while (off < data.size() && !closing_);
}

// Reads the next chunk only while less than kMaxBufferedBytes are queued
// for writing; OnWrite calls back here as writes complete.
void ScuAssociation::PumpData() {
  std::vector<uint8_t> chunk;
  while (op_ && op_->reader && !closing_ && !close_after_writes_ && write_bytes_pending_ < kMaxBufferedBytes) {
    if (config_.rate_limiter) {
      uint64_t wait = config_.rate_limiter->DelayMs(uv_now(loop_));
      if (wait > 0) {
        // The pause is not the peer's fault: it must not count against it.
        ArmOpTimer(config_.response_timeout_ms + wait);
        uv_timer_start(&pace_, &ScuAssociation::OnPace, wait, 0);
        return;
      }
    }
    bool done = false;
    Status s = op_->reader->Next(&chunk, &done);
    if (!s.ok()) {
      std::string why = "reading object " + op_->sop_instance_uid + " from the store: " + s.ToString();
      Outcome o = MakeOutcome(Outcome::Kind::kLocalError, why);
      o.store_code = s.code();
      Fail(std::move(o));
      // Part of the data set is on the wire: only an abort ends it.
      AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, why);
      return;
    }
    if (config_.rate_limiter) config_.rate_limiter->Consume(chunk.size(), uv_now(loop_));
    SendPData(op_->context_id, false, chunk, done);
    if (done && op_) {
      op_->reader.reset();
      op_->all_sent = true;
    }
  }
}

void ScuAssociation::OnPace(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScuAssociation*>(t->data);
  if (!self->closing_) self->PumpData();
}

void ScuAssociation::CompleteOp(Outcome outcome) {
  uv_timer_stop(&op_timer_);
  Op op = std::move(*op_);
  op_.reset();
  command_bytes_.clear();
  if (outcome.ok()) {
    RLOG_INFO("%s msg=%u sop=%s event=%s %s", Prefix().c_str(), op.message_id, op.sop_instance_uid.c_str(),
              op.store ? "c-store" : "c-echo", outcome.ToString().c_str());
  } else {
    RLOG_WARN("%s msg=%u sop=%s event=%s %s", Prefix().c_str(), op.message_id, op.sop_instance_uid.c_str(),
              op.store ? "c-store" : "c-echo", outcome.ToString().c_str());
  }
  Deliver([done = std::move(op.done), outcome = std::move(outcome)]() { done(outcome); });
  if (release_wanted_ && !releasing_ && !closing_ && fsm_.state() == State::kSta6) {
    releasing_ = true;
    Fsm(Event::kEvt11);  // AR-1
    ArmOpTimer(config_.artim_timeout_ms);
  }
}

// ---- receiving ------------------------------------------------------------------------

void ScuAssociation::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* self = static_cast<ScuAssociation*>(h->data);
  if (self->tls_) {
    self->tls_buf_.resize(kReadChunk);
    buf->base = reinterpret_cast<char*>(self->tls_buf_.data());
    buf->len = self->tls_buf_.size();
    return;
  }
  std::span<uint8_t> tail = self->in_.WritableTail(kReadChunk);
  buf->base = reinterpret_cast<char*>(tail.data());
  buf->len = tail.size();
}

void ScuAssociation::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
  static_cast<ScuAssociation*>(s->data)->HandleRead(nread);
}

void ScuAssociation::HandleRead(ssize_t nread) {
  if (closing_) return;
  if (nread < 0) {
    transport_error_ = nread == UV_EOF ? "connection closed by the peer"
                                       : std::string("read failed: ") + uv_strerror(static_cast<int>(nread));
    if (tls_ && !tls_->handshake_done()) {
      transport_error_ = "TLS handshake failed: " + transport_error_ +
                         " (does the peer speak DICOM TLS on this port? check its certificate settings)";
    }
    Fsm(Event::kEvt17);  // AA-4 (Sta5-12) or AR-5 (Sta13)
    StartClose();
    return;
  }
  if (nread == 0) return;
  if (tls_) {
    tls_plain_.clear();
    Status s = tls_->Receive(std::span<const uint8_t>(tls_buf_.data(), static_cast<size_t>(nread)), &tls_plain_);
    FlushTls();  // handshake messages, and what waited for the handshake
    if (!s.ok() && s.code() != Status::Code::kUnavailable) {
      transport_error_ = s.message();
      Fsm(Event::kEvt17);
      StartClose();
      return;
    }
    if (!tls_plain_.empty()) {
      std::span<uint8_t> tail = in_.WritableTail(tls_plain_.size());
      std::memcpy(tail.data(), tls_plain_.data(), tls_plain_.size());
      in_.Commit(tls_plain_.size());
    }
  } else {
    in_.Commit(static_cast<size_t>(nread));
  }
  RearmQuickAck(&tcp_);  // a Nagle-on peer would wait ~40 ms for our ACK
  ProcessInput();
}

void ScuAssociation::ProcessInput() {
  while (!closing_ && !input_dead_ && !in_.empty()) {
    std::span<const uint8_t> avail = in_.Unread();
    ul::DecodeResult r = ul::DecodePdu(avail, limits_);
    if (r.kind == ul::DecodeResult::Kind::kNeedMore) break;
    if (r.kind == ul::DecodeResult::Kind::kInvalid) {
      Fail(MakeOutcome(Outcome::Kind::kAborted, "invalid PDU from the peer: " + r.error));
      AbortWith(ul::AbortSource::kServiceProvider, r.abort_reason, r.error);
      break;
    }
    in_.Consume(r.consumed);
    Fsm(ul::StateMachine::EventFor(r.pdu), &r.pdu);
  }
}

void ScuAssociation::OnPData(const ul::PData& pdata) {
  auto protocol_error = [this](const std::string& why) {
    Fail(MakeOutcome(Outcome::Kind::kAborted, "protocol error: " + why));
    AbortWith(ul::AbortSource::kServiceProvider, ul::AbortReason::kUnexpectedPduParameter, why);
  };
  for (const ul::Pdv& pdv : pdata.pdvs) {
    if (input_dead_ || closing_) return;
    if (!op_) return protocol_error("P-DATA while no request is in flight");
    if (pdv.context_id != op_->context_id) {
      return protocol_error("response PDV on presentation context " + std::to_string(pdv.context_id) +
                            ", request was on " + std::to_string(op_->context_id));
    }
    if (!pdv.is_command) return protocol_error("data set PDV in a response that has none");
    if (command_bytes_.size() + pdv.data.size() > kMaxCommandBytes) {
      return protocol_error("response command set larger than 64 KiB");
    }
    command_bytes_.insert(command_bytes_.end(), pdv.data.begin(), pdv.data.end());
    if (pdv.is_last) HandleResponse();
  }
}

void ScuAssociation::HandleResponse() {
  auto protocol_error = [this](const std::string& why) {
    Fail(MakeOutcome(Outcome::Kind::kAborted, "protocol error: " + why));
    AbortWith(ul::AbortSource::kServiceProvider, ul::AbortReason::kInvalidPduParameterValue, why);
  };
  Result<dimse::Command> decoded = dimse::DecodeCommand(command_bytes_);
  command_bytes_.clear();
  if (!decoded.ok()) return protocol_error("malformed response command: " + decoded.status().message());
  const dimse::Command& rsp = *decoded;
  const dimse::CommandField expected = op_->store ? dimse::CommandField::kCStoreRsp : dimse::CommandField::kCEchoRsp;
  if (rsp.command_field != expected) {
    return protocol_error(std::string("expected ") + dimse::CommandFieldName(expected) + ", got " +
                          dimse::CommandFieldName(rsp.command_field));
  }
  // PS3.7 9.1.1.2 / 9.3.1.2: a response names the request's Message ID.
  if (!rsp.message_id_responded_to || *rsp.message_id_responded_to != op_->message_id) {
    return protocol_error("response to message id " +
                          (rsp.message_id_responded_to ? std::to_string(*rsp.message_id_responded_to)
                                                       : std::string("(none)")) +
                          ", but message " + std::to_string(op_->message_id) + " is in flight");
  }
  if (!rsp.status) return protocol_error("response without a Status (0000,0900)");
  const uint16_t status = *rsp.status;
  const bool early = !op_->all_sent;
  Outcome o = MakeOutcome(ClassifyStatus(status), rsp.error_comment, status);
  if (op_->store && !rsp.affected_sop_instance_uid.empty() && rsp.affected_sop_instance_uid != op_->sop_instance_uid) {
    RLOG_WARN("%s msg=%u C-STORE-RSP names SOP instance %s, we sent %s", Prefix().c_str(), op_->message_id,
              LogToken(rsp.affected_sop_instance_uid).c_str(), op_->sop_instance_uid.c_str());
  }
  if (o.kind == Outcome::Kind::kFailure && o.error.empty()) o.error = "peer answered " + DimseStatusHex(status);
  CompleteOp(std::move(o));
  if (early) {
    // The peer answered before the last data set PDV; the rest cannot be
    // sent, and the peer would read it as a new message.
    AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified,
              "response arrived before the data set was complete");
  }
}

// ---- release and abort ------------------------------------------------------------------

void ScuAssociation::Release() {
  if (!started_ || closing_ || releasing_ || release_wanted_) return;
  if (fsm_.state() != State::kSta6 || !established_) {
    // Not established (yet): there is nothing to release.
    Abort();
    return;
  }
  release_wanted_ = true;
  if (op_) return;  // CompleteOp sends the A-RELEASE-RQ
  releasing_ = true;
  Fsm(Event::kEvt11);  // AR-1
  ArmOpTimer(config_.artim_timeout_ms);
}

void ScuAssociation::OnReleaseRequest() {
  if (fsm_.state() == State::kSta9) {
    // Release collision, requestor side (Table 9-10: Evt12 in Sta7 is AR-8,
    // next Sta9): answer with A-RELEASE-RP (AR-9, Sta11), then wait for the
    // peer's (AR-3).
    Fsm(Event::kEvt14);
    return;
  }
  // Sta8: the acceptor asks to release (PS3.7 allows only the requestor to;
  // we agree anyway). The operation in flight, if any, cannot finish.
  RLOG_WARN("%s event=release-requested-by-peer", Prefix().c_str());
  Fail(MakeOutcome(Outcome::Kind::kAborted, "the peer released the association"));
  established_ = false;
  Fsm(Event::kEvt14);  // AR-4: A-RELEASE-RP, ARTIM; the peer closes
}

void ScuAssociation::OnReleaseConfirm() {
  RLOG_INFO("%s event=released", Prefix().c_str());
  established_ = false;
}

void ScuAssociation::OnAbort(const std::optional<ul::Abort>& abort) {
  established_ = false;
  if (abort) {
    Fail(MakeOutcome(Outcome::Kind::kAborted,
                     std::string("association aborted (A-ABORT source ") +
                         (abort->source == ul::AbortSource::kServiceUser ? "service-user" : "service-provider") +
                         ", reason " + std::to_string(static_cast<int>(abort->reason)) + ")"));
  } else {
    Fail(MakeOutcome(Outcome::Kind::kTransportError,
                     transport_error_.empty() ? "connection lost" : transport_error_));
  }
}

void ScuAssociation::Abort() {
  if (!started_ || closing_) return;
  Fail(MakeOutcome(Outcome::Kind::kAborted, "aborted locally"));
  AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, "local abort");
}

// PS3.8 9.3.8: A-ABORT. In Sta1 (resolving) and Sta4 (connecting) there is
// no association to abort: just close. Otherwise AA-1 sends the PDU (Sta13,
// ARTIM running) and we close as soon as it is written.
void ScuAssociation::AbortWith(ul::AbortSource source, ul::AbortReason reason, const std::string& why) {
  if (closing_ || close_after_writes_) return;
  input_dead_ = true;
  established_ = false;
  const State s = fsm_.state();
  if (s == State::kSta1 || s == State::kSta4 || s == State::kSta13) {
    StartClose();
    return;
  }
  RLOG_INFO("%s event=abort-sent state=%s reason=\"%s\"", Prefix().c_str(), ul::StateName(s), why.c_str());
  std::vector<uint8_t> bytes;
  ul::EncodeAbort(ul::Abort{source, reason}, &bytes);
  close_after_writes_ = true;
  Fsm(Event::kEvt15, nullptr, std::move(bytes));  // AA-1 (deferred if inside an indication)
}

// ---- closing ---------------------------------------------------------------------------

void ScuAssociation::StartClose() {
  if (closing_ || !started_) return;
  // Whoever still waits learns why (first cause wins; see Fail).
  Fail(MakeOutcome(Outcome::Kind::kAborted,
                   transport_error_.empty() ? "the association closed" : transport_error_));
  closing_ = true;
  established_ = false;
  deferred_.clear();
  if (op_) op_->reader.reset();
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &ScuAssociation::OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&artim_), &ScuAssociation::OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&op_timer_), &ScuAssociation::OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&dispatch_), &ScuAssociation::OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&pace_), &ScuAssociation::OnClose);
  RLOG_DEBUG("%s closing", Prefix().c_str());
}

void ScuAssociation::OnClose(uv_handle_t* h) noexcept {
  auto* self = static_cast<ScuAssociation*>(h->data);
  --self->handles_open_;
  self->MaybeFinish();  // may destroy self
}

void ScuAssociation::MaybeFinish() {
  if (handles_open_ > 0 || resolving_ || finished_) return;
  finished_ = true;
  // Callbacks not yet dispatched run now, in order; they may queue more.
  while (!callbacks_.empty()) {
    std::function<void()> fn = std::move(callbacks_.front());
    callbacks_.pop_front();
    fn();
  }
  std::function<void()> on_closed = std::move(on_closed_);
  on_closed_ = nullptr;
  if (on_closed) on_closed();  // may destroy this: nothing after
}

}  // namespace relais::router
