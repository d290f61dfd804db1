// The requesting side of the DICOM Upper Layer: see the header. Below DIMSE,
// everything (transport, TLS, PDU decoding, the state machine and its
// re-entrancy rule, ARTIM) is the UlConnection's (router/net/ul_connection.h).
//
// Handles: op_timer_, dispatch_ and pace_ are initialised in Start() and
// freed only through their close callbacks; the connection reports closed
// once its transport and ARTIM timer are. The object is finished (and
// `on_closed` called) when all four are closed.
//
// Timers: op_timer_ bounds whatever we wait for outside the state machine's
// ARTIM cells: the connect (resolve + TCP), the A-ASSOCIATE-AC (PS3.8 leaves
// Evt18 blank in Sta5, so this is ours), each operation (no progress for
// response_timeout_ms) and the A-RELEASE-RP. The connection's ARTIM is the
// state machine's own (Sta13 after our A-ABORT or A-RELEASE-RP).
//
// Re-entrancy: primitives issued from inside a state machine indication are
// queued by the connection and run after the current transition; user
// callbacks are queued and run from dispatch_ (a zero timer), never from
// inside a method of this class.
#include "router/deliver/scu_association.h"

#include <algorithm>
#include <utility>

#include "base/hex.h"
#include "base/identity.h"
#include "base/log.h"
#include "base/text.h"
#include "router/net/tls.h"
#include "router/net/uv_transport.h"
#include "router/protocol/presentation.h"

namespace relais::router {
namespace {

using ul::Event;
using ul::State;

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
      conn_(loop, this, config_.max_pdu, config_.artim_timeout_ms) {
  op_timer_.data = this;
  dispatch_.data = this;
  pace_.data = this;
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
  Start(std::make_unique<UvTcpTransport>(loop_, config_.host, config_.port));
}

void ScuAssociation::Start(std::unique_ptr<Transport> transport) {
  if (started_) return;
  started_ = true;
  conn_.Attach(std::move(transport), config_.tls, config_.host);
  uv_timer_init(loop_, &op_timer_);
  uv_timer_init(loop_, &dispatch_);
  uv_timer_init(loop_, &pace_);
  handles_open_ = 4;
  if (proposals_.empty() || proposals_.size() > 128) {
    Fail(MakeOutcome(Outcome::Kind::kLocalError, "between 1 and 128 presentation contexts must be proposed"));
    StartClose();
    return;
  }
  ArmOpTimer(config_.connect_timeout_ms);  // name resolution and TCP connect
  BeginAssociate();
}

// PS3.8 9.3.2: the A-ASSOCIATE-RQ. Presentation context ids are odd, in
// proposal order (9.3.2.2); user information carries our maximum PDU length
// (D.1) and implementation identity (PS3.7 D.3.3.2).
void ScuAssociation::BeginAssociate() {
  ul::AssociateRq rq;
  rq.called_ae = config_.called_ae;
  rq.calling_ae = config_.calling_ae;
  for (size_t i = 0; i < proposals_.size(); ++i) {
    rq.contexts.push_back(ul::PresentationContextRq{static_cast<uint8_t>(2 * i + 1), proposals_[i].abstract_syntax,
                                                    proposals_[i].transfer_syntaxes});
  }
  rq.user_info.max_length = config_.max_pdu;
  rq.user_info.implementation_class_uid = kImplementationClassUid;
  rq.user_info.implementation_version_name = kImplementationVersionName;
  // PS3.7 D.3.3.3: we may invoke up to kProposedWindow C-STOREs at once; we
  // perform nothing for the peer (1).
  rq.user_info.async_ops = ul::AsyncOpsWindow{kProposedWindow, 1};
  std::vector<uint8_t> bytes;
  if (Status s = ul::EncodeAssociateRq(rq, &bytes); !s.ok()) {
    // Our own proposals (configured UIDs) do not fit: nothing is sent.
    RLOG_ERROR("%s event=associate-rq-unencodable error=\"%s\"", Prefix().c_str(), s.message().c_str());
    Fail(MakeOutcome(Outcome::Kind::kLocalError, "A-ASSOCIATE-RQ not sent: " + s.message()));
    StartClose();
    return;
  }
  conn_.Fsm(Event::kEvt1, nullptr, std::move(bytes));  // AE-1: the transport connects
}

// ---- the connection's events -------------------------------------------------------

void ScuAssociation::OnTransportConnected() {
  RLOG_DEBUG("%s connected; A-ASSOCIATE-RQ sent", Prefix().c_str());
  ArmOpTimer(config_.artim_timeout_ms);  // wait for the AC or RJ
}

// What went wrong with the transport becomes the Outcome of whoever waits
// (through Evt17's A-P-ABORT indication, or the close).
void ScuAssociation::OnTransportFailed(const TransportFailure& f) {
  using Kind = TransportFailure::Kind;
  switch (f.kind) {
    case Kind::kConnect:
      // Sta4: AA-4 reports it and closes. Inside AE-1 (a connect that failed
      // at once) the event is deferred: nothing may close before it runs.
      transport_error_ = f.message;
      conn_.Fsm(Event::kEvt17);
      return;
    case Kind::kPeerClosed: transport_error_ = "connection closed by the peer"; break;
    case Kind::kRead: transport_error_ = "read failed: " + f.message; break;
    case Kind::kWrite: transport_error_ = "write failed: " + f.message; break;
    case Kind::kTlsSend:
    case Kind::kTlsReceive:
      transport_error_ = f.message;
      transport_tls_ = f.tls;
      break;
  }
  if ((f.kind == Kind::kPeerClosed || f.kind == Kind::kRead) && conn_.tls() && !conn_.tls()->handshake_done()) {
    transport_error_ = "TLS handshake failed: " + transport_error_ +
                       " (does the peer speak DICOM TLS on this port? check its certificate settings)";
  }
  conn_.Fsm(Event::kEvt17);  // AA-4 (Sta5-12) or AR-5 (Sta13)
  StartClose();
}

void ScuAssociation::OnInvalidPdu(ul::AbortReason reason, const std::string& why) {
  Fail(MakeOutcome(Outcome::Kind::kAborted, "invalid PDU from the peer: " + why));
  AbortWith(ul::AbortSource::kServiceProvider, reason, why);
}

// A write is out: progress for the operations in flight, and room for more
// of the data set being sent.
void ScuAssociation::OnWriteDone() {
  if (ops_.empty()) return;
  ArmOpTimer(config_.response_timeout_ms);
  PumpData();
}

void ScuAssociation::ArmOpTimer(uint64_t ms) {
  if (closing_) return;
  uv_timer_start(&op_timer_, &ScuAssociation::OnOpTimer, ms, 0);
}

void ScuAssociation::OnOpTimer(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScuAssociation*>(t->data);
  const State s = self->conn_.state();
  const std::string where = self->config_.host + ":" + std::to_string(self->config_.port);
  if (s == State::kSta1 || s == State::kSta4) {  // resolving or connecting
    self->Fail(MakeOutcome(Outcome::Kind::kTimeout, "no connection to " + where + " within " +
                                                        std::to_string(self->config_.connect_timeout_ms) + " ms"));
    self->StartClose();
    return;
  }
  if (s == State::kSta5) {
    std::string why =
        "no A-ASSOCIATE-AC from " + where + " within " + std::to_string(self->config_.artim_timeout_ms) + " ms";
    self->Fail(MakeOutcome(Outcome::Kind::kTimeout, why));
    self->AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, why);
    return;
  }
  if (!self->ops_.empty()) {
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
  if (!ops_.empty()) {
    while (!ops_.empty()) CompleteOp(0, outcome);
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
      RLOG_WARN("%s A-ASSOCIATE-AC accepts context %u, which we did not propose: ignored", Prefix().c_str(), c.id);
      continue;
    }
    const ContextProposal& p = proposals_[(c.id - 1u) / 2];
    if (std::find(p.transfer_syntaxes.begin(), p.transfer_syntaxes.end(), c.transfer_syntax) ==
        p.transfer_syntaxes.end()) {
      RLOG_WARN("%s context %u accepted with transfer syntax %s, which we did not propose: ignored", Prefix().c_str(),
                c.id, c.transfer_syntax.c_str());
      continue;
    }
    accepted_.push_back(AcceptedContext{c.id, p.abstract_syntax, c.transfer_syntax});
  }
  // PS3.7 D.3.3.3: no answer means one at a time; 0 means unlimited, which
  // we hold to what we proposed (so is an answer above it).
  window_ = 1;
  if (ac.user_info.async_ops) {
    const uint16_t w = ac.user_info.async_ops->max_invoked;
    window_ = w == 0 || w > kProposedWindow ? kProposedWindow : w;
  }
  established_ = true;
  RLOG_INFO("%s event=association-established contexts=%zu/%zu peer_max_pdu=%u window=%u impl=%s", Prefix().c_str(),
            accepted_.size(), proposals_.size(), peer_max_pdu_, window_, ac.user_info.implementation_class_uid.c_str());
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
  o.error = std::string("A-ASSOCIATE-RJ (") + (rj.result == ul::RejectResult::kPermanent ? "permanent" : "transient") +
            ", source " + RejectSourceName(rj.source) + ": " + RejectReasonText(rj.source, rj.reason) + ")";
  Fail(std::move(o));
}

bool ScuAssociation::established() const {
  return established_ && !closing_ && !releasing_ && !release_wanted_ && conn_.state() == State::kSta6;
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
  if (ops_.size() >= window_) {
    return refuse(Outcome::Kind::kLocalError,
                  "the asynchronous operations window (" + std::to_string(window_) + ") is full");
  }
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
                          : "SOP class " + meta.sop_class_uid + " was accepted only with transfer syntax " + other_ts +
                                "; the object is stored in " + meta.transfer_syntax_uid;
    RLOG_WARN("%s sop=%s event=no-context %s", Prefix().c_str(), meta.sop_instance_uid.c_str(), why.c_str());
    return refuse(Outcome::Kind::kNoContext, std::move(why));
  }
  Op op;
  op.store = true;
  op.message_id = next_message_id_;
  op.context_id = ctx->id;
  op.sop_instance_uid = meta.sop_instance_uid;
  op.done = std::move(done);
  dimse::Command& rq = op.rq;
  rq.command_field = dimse::CommandField::kCStoreRq;
  rq.message_id = op.message_id;
  rq.affected_sop_class_uid = meta.sop_class_uid;
  rq.affected_sop_instance_uid = meta.sop_instance_uid;
  rq.priority = 0;  // MEDIUM (PS3.7 C.4.1.1.2)
  rq.data_set_type = dimse::kDataSetPresent;
  op.reader = std::move(reader);
  StartOp(std::move(op));
}

void ScuAssociation::Echo(std::function<void(Outcome)> done) {
  auto refuse = [&](Outcome::Kind kind, std::string why) {
    Deliver([done = std::move(done), o = MakeOutcome(kind, std::move(why))]() { done(o); });
  };
  if (ops_.size() >= window_) {
    return refuse(Outcome::Kind::kLocalError,
                  "the asynchronous operations window (" + std::to_string(window_) + ") is full");
  }
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
  dimse::Command& rq = op.rq;
  rq.command_field = dimse::CommandField::kCEchoRq;
  rq.message_id = op.message_id;
  rq.affected_sop_class_uid = ul::kVerificationSopClass;
  rq.data_set_type = dimse::kNoDataSet;
  StartOp(std::move(op));
}

// Message IDs count up from 1 and are never reused while in flight: the
// window (at most kProposedWindow) is far below 65535.
void ScuAssociation::StartOp(Op op) {
  if (++next_message_id_ == 0) next_message_id_ = 1;  // PS3.7 E.1: any value; skip 0
  ops_.push_back(std::move(op));
  max_outstanding_ = std::max(max_outstanding_, ops_.size());
  if (ops_.size() == 1) ArmOpTimer(config_.response_timeout_ms);
  PumpData();
}

ScuAssociation::Op* ScuAssociation::Sending() {
  for (Op& op : ops_) {
    if (!op.command_sent || !op.all_sent) return &op;
  }
  return nullptr;
}

// PS3.8 9.3.5 and Annex E: one PDV per P-DATA-TF PDU, at most MaxPdvData()
// bytes; the message control header says command/data set and last
// fragment. The command set and the data set never share a PDV (PS3.7 8.1).
// All the PDUs of one call go out as one write (a 256 KiB chunk to a peer
// with DCMTK's 16 KiB PDUs is 16 PDUs): one buffer and one system call
// instead of one per PDU. DT-1 passes the bytes through unchanged, so a run
// of P-DATA-TF PDUs is sent exactly as the same PDUs one by one would be.
void ScuAssociation::SendPData(uint8_t context_id, bool is_command, std::span<const uint8_t> data, bool last) {
  if (data.empty() && !last) return;
  const size_t max = MaxPdvData();
  const size_t pdus = data.empty() ? 1 : (data.size() + max - 1) / max;
  std::vector<uint8_t> bytes;
  bytes.reserve(data.size() + pdus * 12);
  size_t off = 0;
  do {
    size_t n = std::min(max, data.size() - off);
    bool is_last = last && off + n == data.size();
    if (Status s = ul::EncodePDataHeader(context_id, is_command, is_last, static_cast<uint32_t>(n), &bytes); !s.ok()) {
      // MaxPdvData() keeps n in range; refuse rather than wrap if it ever does not.
      Fail(MakeOutcome(Outcome::Kind::kLocalError, s.message()));
      AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, s.message());
      return;
    }
    bytes.insert(bytes.end(), data.begin() + off, data.begin() + off + n);
    off += n;
  } while (off < data.size());
  conn_.Fsm(Event::kEvt9, nullptr, std::move(bytes));  // DT-1
}

// Puts the next command, then its data set, on the wire: reads the next
// chunk only while less than kMaxBufferedBytes are queued for writing;
// OnWriteDone calls back here as writes complete. Data sets go one after
// another (PS3.8 9.3.5: one message's PDVs are not interleaved with
// another's); with a window, the next command follows the previous data set
// without waiting for its response. Paced (a rate limiter), a chunk goes out
// in slices of about 20 ms of the rate (at least 16 KiB), each paid for
// before it is sent: the rate holds over short spans too, not only on
// average over whole chunks (up to 256 KiB).
void ScuAssociation::PumpData() {
  while (!closing_ && !conn_.closing_after_writes() && conn_.write_bytes_pending() < kMaxBufferedBytes) {
    Op* op = Sending();
    if (op == nullptr) return;
    const uint16_t msg = op->message_id;
    const uint8_t context_id = op->context_id;
    if (!op->command_sent) {
      op->command_sent = true;
      op->sent_at = uv_now(loop_);
      std::vector<uint8_t> body = dimse::EncodeCommand(op->rq);
      SendPData(context_id, true, body, true);
      continue;
    }
    if (config_.rate_limiter) {
      uint64_t wait = config_.rate_limiter->DelayMs(uv_now(loop_));
      if (wait > 0) {
        // The pause is not the peer's fault: it must not count against it.
        ArmOpTimer(config_.response_timeout_ms + wait);
        uv_timer_start(&pace_, &ScuAssociation::OnPace, wait, 0);
        return;
      }
    }
    if (op->chunk_sent >= op->chunk.size()) {
      bool done = false;
      // The association's spare buffer, so that its memory is reused (a
      // fresh 256 KiB buffer per chunk cost more in page faults than
      // decompressing the chunk). Not cleared: Next sets its size, and a
      // reused buffer is then not zero-filled again for every chunk.
      if (op->chunk.capacity() == 0) op->chunk.swap(chunk_);
      op->chunk_sent = 0;
      Status s = op->reader->Next(&op->chunk, &done);
      if (!s.ok()) {
        std::string why = "reading object " + op->sop_instance_uid + " from the store: " + s.ToString();
        Outcome o = MakeOutcome(Outcome::Kind::kLocalError, why);
        o.store_code = s.code();
        CompleteOp(IndexOf(msg), std::move(o));
        // Part of the data set is on the wire: only an abort ends it. The
        // others in flight are not at fault: aborted, they are sent again.
        Fail(MakeOutcome(Outcome::Kind::kAborted, "association aborted: " + why));
        AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, why);
        return;
      }
      op->chunk_last = done;
      if (done) op->reader.reset();
    }
    size_t n = op->chunk.size() - op->chunk_sent;
    if (config_.rate_limiter && config_.rate_limiter->bytes_per_s() > 0) {
      n = std::min<size_t>(n, std::max<uint64_t>(16384, config_.rate_limiter->bytes_per_s() / 50));
    }
    const bool last = op->chunk_last && op->chunk_sent + n == op->chunk.size();
    if (config_.rate_limiter) config_.rate_limiter->Consume(n, uv_now(loop_));
    SendPData(context_id, false, std::span<const uint8_t>(op->chunk.data() + op->chunk_sent, n), last);
    // Sending may have failed the operations (a write error): look it up again.
    Op* again = FindOp(msg);
    if (again == nullptr) return;
    again->chunk_sent += n;
    if (last) {
      again->chunk.swap(chunk_);  // back to the spare (its bytes kept): a sent op keeps no buffer
      again->chunk_sent = 0;
      again->all_sent = true;
    }
  }
}

void ScuAssociation::OnPace(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScuAssociation*>(t->data);
  if (!self->closing_) self->PumpData();
}

void ScuAssociation::CompleteOp(size_t index, Outcome outcome) {
  Op op = std::move(ops_[index]);
  ops_.erase(ops_.begin() + static_cast<std::ptrdiff_t>(index));
  if (ops_.empty()) uv_timer_stop(&op_timer_);
  if (outcome.ok()) {
    RLOG_INFO("%s msg=%u sop=%s event=%s %s", Prefix().c_str(), op.message_id, op.sop_instance_uid.c_str(),
              op.store ? "c-store" : "c-echo", outcome.ToString().c_str());
  } else {
    RLOG_WARN("%s msg=%u sop=%s event=%s %s", Prefix().c_str(), op.message_id, op.sop_instance_uid.c_str(),
              op.store ? "c-store" : "c-echo", outcome.ToString().c_str());
  }
  Deliver([done = std::move(op.done), outcome = std::move(outcome)]() { done(outcome); });
  MaybeRelease();
}

void ScuAssociation::MaybeRelease() {
  if (ops_.empty() && release_wanted_ && !releasing_ && !closing_ && conn_.state() == State::kSta6) {
    releasing_ = true;
    conn_.Fsm(Event::kEvt11);  // AR-1
    ArmOpTimer(config_.artim_timeout_ms);
  }
}

ScuAssociation::Op* ScuAssociation::FindOp(uint16_t message_id) {
  for (Op& op : ops_) {
    if (op.message_id == message_id) return &op;
  }
  return nullptr;
}

size_t ScuAssociation::IndexOf(uint16_t message_id) const {
  for (size_t i = 0; i < ops_.size(); ++i) {
    if (ops_[i].message_id == message_id) return i;
  }
  return ops_.size();
}

// ---- receiving ------------------------------------------------------------------------

void ScuAssociation::OnPData(const ul::PData& pdata) {
  auto protocol_error = [this](const std::string& why) {
    Fail(MakeOutcome(Outcome::Kind::kAborted, "protocol error: " + why));
    AbortWith(ul::AbortSource::kServiceProvider, ul::AbortReason::kUnexpectedPduParameter, why);
  };
  for (const ul::Pdv& pdv : pdata.pdvs) {
    if (conn_.input_stopped() || closing_) return;
    if (ops_.empty()) return protocol_error("P-DATA while no request is in flight");
    if (!pdv.is_command) return protocol_error("data set PDV in a response that has none");
    if (!command_bytes_.empty() && pdv.context_id != command_context_) {
      return protocol_error("response command fragments on presentation contexts " + std::to_string(command_context_) +
                            " and " + std::to_string(pdv.context_id));
    }
    if (command_bytes_.size() + pdv.data.size() > kMaxCommandBytes) {
      return protocol_error("response command set larger than 64 KiB");
    }
    command_context_ = pdv.context_id;
    command_bytes_.insert(command_bytes_.end(), pdv.data.begin(), pdv.data.end());
    if (pdv.is_last) HandleResponse();
  }
}

// PS3.7 9.1.1.2 / 9.3.1.2: a response names its request's Message ID; with
// a window, responses may come in any order, each matched to its request.
// A response to a Message ID not in flight (or whose command we have not
// sent) is a protocol error: A-ABORT, and every operation in flight is
// reported aborted (sent again later).
void ScuAssociation::HandleResponse() {
  auto protocol_error = [this](const std::string& why) {
    Fail(MakeOutcome(Outcome::Kind::kAborted, "protocol error: " + why));
    AbortWith(ul::AbortSource::kServiceProvider, ul::AbortReason::kInvalidPduParameterValue, why);
  };
  Result<dimse::Command> decoded = dimse::DecodeCommand(command_bytes_);
  command_bytes_.clear();
  if (!decoded.ok()) return protocol_error("malformed response command: " + decoded.status().message());
  const dimse::Command& rsp = *decoded;
  if (!rsp.message_id_responded_to) return protocol_error("response without Message ID Being Responded To");
  const uint16_t msg = *rsp.message_id_responded_to;
  const size_t index = IndexOf(msg);
  if (index == ops_.size() || !ops_[index].command_sent) {
    std::string in_flight;
    for (const Op& op : ops_) {
      if (op.command_sent) in_flight += (in_flight.empty() ? "" : ",") + std::to_string(op.message_id);
    }
    return protocol_error("response to message id " + std::to_string(msg) + ", which is not in flight (in flight: " +
                          (in_flight.empty() ? std::string("none") : in_flight) + ")");
  }
  Op& op = ops_[index];
  if (command_context_ != op.context_id) {
    return protocol_error("response on presentation context " + std::to_string(command_context_) + ", request was on " +
                          std::to_string(op.context_id));
  }
  const dimse::CommandField expected = op.store ? dimse::CommandField::kCStoreRsp : dimse::CommandField::kCEchoRsp;
  if (rsp.command_field != expected) {
    return protocol_error(std::string("expected ") + dimse::CommandFieldName(expected) + ", got " +
                          dimse::CommandFieldName(rsp.command_field));
  }
  if (!rsp.status) return protocol_error("response without a Status (0000,0900)");
  const uint16_t status = *rsp.status;
  const bool early = !op.all_sent;
  Outcome o = MakeOutcome(ClassifyStatus(status), rsp.error_comment, status);
  o.round_trip_ms = static_cast<int64_t>(uv_now(loop_) - op.sent_at);
  if (op.store && !rsp.affected_sop_instance_uid.empty() && rsp.affected_sop_instance_uid != op.sop_instance_uid) {
    RLOG_WARN("%s msg=%u C-STORE-RSP names SOP instance %s, we sent %s", Prefix().c_str(), op.message_id,
              LogToken(rsp.affected_sop_instance_uid).c_str(), op.sop_instance_uid.c_str());
  }
  if (o.kind == Outcome::Kind::kFailure && o.error.empty()) o.error = "peer answered " + Hex4(status);
  CompleteOp(index, std::move(o));
  if (early) {
    // The peer answered before the last data set PDV; the rest cannot be
    // sent, and the peer would read it as a new message.
    Fail(MakeOutcome(Outcome::Kind::kAborted, "the peer answered an object before its data set was complete"));
    AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified,
              "response arrived before the data set was complete");
    return;
  }
  if (!ops_.empty()) ArmOpTimer(config_.response_timeout_ms);  // a response is progress
}

// ---- release and abort ------------------------------------------------------------------

void ScuAssociation::Release() {
  if (!started_ || closing_ || releasing_ || release_wanted_) return;
  if (conn_.state() != State::kSta6 || !established_) {
    // Not established (yet): there is nothing to release.
    Abort();
    return;
  }
  release_wanted_ = true;
  if (!ops_.empty()) return;  // CompleteOp sends the A-RELEASE-RQ
  releasing_ = true;
  conn_.Fsm(Event::kEvt11);  // AR-1
  ArmOpTimer(config_.artim_timeout_ms);
}

void ScuAssociation::OnReleaseRequest() {
  if (conn_.state() == State::kSta9) {
    // Release collision, requestor side (Table 9-10: Evt12 in Sta7 is AR-8,
    // next Sta9): answer with A-RELEASE-RP (AR-9, Sta11), then wait for the
    // peer's (AR-3).
    conn_.Fsm(Event::kEvt14);
    return;
  }
  // Sta8: the acceptor asks to release (PS3.7 allows only the requestor to;
  // we agree anyway). The operations in flight, if any, cannot finish.
  RLOG_WARN("%s event=release-requested-by-peer", Prefix().c_str());
  Fail(MakeOutcome(Outcome::Kind::kAborted, "the peer released the association"));
  established_ = false;
  conn_.Fsm(Event::kEvt14);  // AR-4: A-RELEASE-RP, ARTIM; the peer closes
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
    Outcome o =
        MakeOutcome(Outcome::Kind::kTransportError, transport_error_.empty() ? "connection lost" : transport_error_);
    o.tls = transport_tls_;
    Fail(std::move(o));
  }
}

void ScuAssociation::Abort() {
  if (!started_ || closing_) return;
  Fail(MakeOutcome(Outcome::Kind::kAborted, "aborted locally"));
  AbortWith(ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified, "local abort");
}

// PS3.8 9.3.8: A-ABORT. In Sta1 (not started) and Sta4 (resolving, connecting) there is
// no association to abort: just close. Otherwise AA-1 sends the PDU (Sta13,
// ARTIM running) and we close as soon as it is written.
void ScuAssociation::AbortWith(ul::AbortSource source, ul::AbortReason reason, const std::string& why) {
  if (closing_ || conn_.closing_after_writes()) return;
  conn_.StopInput();
  established_ = false;
  const State s = conn_.state();
  if (s == State::kSta1 || s == State::kSta4 || s == State::kSta13) {
    StartClose();
    return;
  }
  RLOG_INFO("%s event=abort-sent state=%s reason=\"%s\"", Prefix().c_str(), ul::StateName(s), why.c_str());
  std::vector<uint8_t> bytes;
  ul::EncodeAbort(ul::Abort{source, reason}, &bytes);
  conn_.CloseAfterWrites();
  conn_.Fsm(Event::kEvt15, nullptr, std::move(bytes));  // AA-1 (deferred if inside an indication)
}

// ---- closing ---------------------------------------------------------------------------

void ScuAssociation::StartClose() {
  if (closing_ || !started_) return;
  // Whoever still waits learns why (first cause wins; see Fail).
  Outcome o =
      MakeOutcome(Outcome::Kind::kAborted, transport_error_.empty() ? "the association closed" : transport_error_);
  if (transport_tls_.failed()) {
    o.kind = Outcome::Kind::kTransportError;
    o.tls = transport_tls_;
  }
  Fail(std::move(o));
  closing_ = true;
  established_ = false;
  conn_.Close();  // drops primitives still queued
  for (Op& op : ops_) op.reader.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&op_timer_), &ScuAssociation::OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&dispatch_), &ScuAssociation::OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&pace_), &ScuAssociation::OnClose);
  RLOG_DEBUG("%s closing", Prefix().c_str());
}

void ScuAssociation::OnClose(uv_handle_t* h) noexcept {
  static_cast<ScuAssociation*>(h->data)->HandleClosed();  // may destroy the object
}

void ScuAssociation::OnConnectionClosed() { HandleClosed(); }

void ScuAssociation::HandleClosed() {
  --handles_open_;
  MaybeFinish();  // may destroy this
}

void ScuAssociation::MaybeFinish() {
  if (handles_open_ > 0 || finished_) return;
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
