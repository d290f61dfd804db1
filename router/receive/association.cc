#include "router/receive/association.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/clock.h"
#include "base/hex.h"
#include "base/identity.h"
#include "base/log.h"
#include "base/text.h"
#include "router/net/tls.h"
#include "router/net/uv_transport.h"
#include "router/protocol/presentation.h"
#include "router/receive/server.h"
#include "router/receive/uid_dictionary.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

namespace relais::router {
namespace {

using ul::Event;

// Largest command set we reassemble; a real one is a few hundred bytes.
constexpr size_t kMaxCommandBytes = 64 * 1024;

}  // namespace

ScpAssociation::ScpAssociation(Server* server, uint64_t id)
    : server_(server),
      id_(id),
      conn_(server->loop(), this, server->settings().max_pdu, server->ArtimForNewConnection()) {
  idle_.data = this;
}

ScpAssociation::~ScpAssociation() = default;

std::string ScpAssociation::peer_ip() const {
  std::string ip = peer_.substr(0, peer_.rfind(':'));
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

std::string ScpAssociation::Prefix() const {
  std::string p = "assoc=" + std::to_string(id_) + " peer=" + peer_;
  if (!calling_ae_.empty()) p += " calling=" + LogToken(calling_ae_);
  return p;
}

bool ScpAssociation::Start(uv_stream_t* listener, std::shared_ptr<TlsContext> tls) {
  auto tcp = std::make_unique<UvTcpTransport>(server_->loop());
  Status accepted = tcp->Accept(listener);
  Attach(std::move(tcp), std::move(tls));
  if (!accepted.ok()) {
    RLOG_WARN("assoc=%llu accept failed: %s", static_cast<unsigned long long>(id_), accepted.message().c_str());
    StartClose();
    return false;
  }
  Begin();
  return true;
}

void ScpAssociation::Start(std::unique_ptr<Transport> transport, std::shared_ptr<TlsContext> tls) {
  Attach(std::move(transport), std::move(tls));
  Begin();
}

void ScpAssociation::Attach(std::unique_ptr<Transport> transport, std::shared_ptr<TlsContext> tls) {
  conn_.Attach(std::move(transport), std::move(tls));
  uv_timer_init(server_->loop(), &idle_);
  handles_open_ = 2;
}

void ScpAssociation::Begin() {
  peer_ = conn_.peer_address();
  RLOG_INFO("%s event=connect%s", Prefix().c_str(), conn_.tls() ? " tls=1" : "");
  conn_.Fsm(Event::kEvt5);
  conn_.StartReading();
  ResetIdleTimer();
}

// ---- the connection's events -----------------------------------------------------

void ScpAssociation::OnTransportFailed(const TransportFailure& f) {
  switch (f.kind) {
    case TransportFailure::Kind::kPeerClosed:
    case TransportFailure::Kind::kRead: return ConnectionLost(f);
    case TransportFailure::Kind::kWrite: RLOG_WARN("%s write failed: %s", Prefix().c_str(), f.message.c_str()); break;
    case TransportFailure::Kind::kTlsReceive:
      RLOG_WARN("%s event=tls-failed reason=\"%s\"", Prefix().c_str(), f.message.c_str());
      if (Metrics* m = server_->metrics()) m->AssociationRejected("tls");
      if (AuditLog* a = server_->audit()) {  // a peer retrying in a loop is one record and a count
        a->RecordRefusal("association", AuditAddressOf(peer_),
                         {{"peer", peer_}, {"result", "rejected"}, {"reason", f.message}, {"tls", "1"}}, {"reason"});
      }
      break;
    case TransportFailure::Kind::kTlsSend:
      RLOG_WARN("%s event=tls-failed reason=\"%s\"", Prefix().c_str(), f.message.c_str());
      break;
    case TransportFailure::Kind::kConnect:  // an acceptor does not connect
      break;
  }
  StartClose();
}

// The peer closed the connection or reading failed (Evt17).
void ScpAssociation::ConnectionLost(const TransportFailure& f) {
  if (f.kind == TransportFailure::Kind::kRead) RLOG_WARN("%s read error: %s", Prefix().c_str(), f.message.c_str());
  ul::State s = conn_.state();
  conn_.Fsm(Event::kEvt17);
  if (s != ul::State::kSta13 && s != ul::State::kSta1) {
    RLOG_WARN("%s event=connection-lost state=%s pending=%zu", Prefix().c_str(), ul::StateName(s), pending_.size());
  }
  StartClose();
}

void ScpAssociation::OnTlsEstablished() {
  std::string subject = conn_.tls()->PeerSubject();
  RLOG_INFO("%s event=tls-established protocol=\"%s\" peer_certificate=\"%s\"", Prefix().c_str(),
            conn_.tls()->Description().c_str(), subject.empty() ? "none" : subject.c_str());
}

void ScpAssociation::OnBytesReceived(size_t n) {
  bytes_received_ += n;
  ResetIdleTimer();
}

// A protocol error raised inside the PDU's indication is handled now.
void ScpAssociation::OnPduHandled() {
  if (!pending_protocol_error_) return;
  auto [reason, why] = *pending_protocol_error_;
  pending_protocol_error_.reset();
  ProtocolError(reason, why);
}

void ScpAssociation::ResetIdleTimer() {
  if (closing_) return;
  uv_timer_start(&idle_, &ScpAssociation::OnIdle, server_->settings().idle_timeout_ms, 0);
}

void ScpAssociation::OnIdle(uv_timer_t* t) noexcept {
  auto* self = static_cast<ScpAssociation*>(t->data);
  if (!self->pending_.empty()) {  // we are the slow side: wait for the store
    self->ResetIdleTimer();
    return;
  }
  RLOG_WARN("%s idle for %llu s in %s: aborting", self->Prefix().c_str(),
            static_cast<unsigned long long>(self->server_->settings().idle_timeout_ms / 1000),
            ul::StateName(self->conn_.state()));
  self->AbortNow("idle timeout");
}

void ScpAssociation::AbortNow(const char* why) {
  if (closing_) return;
  ul::State s = conn_.state();
  if (s == ul::State::kSta1 || s == ul::State::kSta13) {
    StartClose();
    return;
  }
  RLOG_INFO("%s event=abort-sent reason=\"%s\"", Prefix().c_str(), why);
  std::vector<uint8_t> bytes;
  ul::EncodeAbort(ul::Abort{ul::AbortSource::kServiceUser, ul::AbortReason::kNotSpecified}, &bytes);
  conn_.Fsm(Event::kEvt15, nullptr, std::move(bytes));
  // AA-1 leaves us in Sta13 waiting for the peer to close; do not wait.
  StartClose();
}

void ScpAssociation::ProtocolError(ul::AbortReason reason, const std::string& why) {
  if (conn_.in_fsm()) {  // raised from inside an indication: handle after it (OnPduHandled)
    if (!pending_protocol_error_) pending_protocol_error_.emplace(reason, why);
    return;
  }
  RLOG_WARN("%s event=protocol-error state=%s reason=\"%s\": sending A-ABORT", Prefix().c_str(),
            ul::StateName(conn_.state()), why.c_str());
  conn_.StopInput();
  std::vector<uint8_t> bytes;
  ul::EncodeAbort(ul::Abort{ul::AbortSource::kServiceProvider, reason}, &bytes);
  conn_.Fsm(Event::kEvt19, nullptr, std::move(bytes));
  DropIncoming();
  // Do not wait for the peer (it may be hostile): close once the abort is out.
  StartClose();
}

void ScpAssociation::MaybeResumeReading() {
  if (!conn_.paused() || closing_) return;
  if (incoming_ && incoming_->writer &&
      incoming_->writer->UncommittedBytes() > server_->settings().max_uncommitted_bytes) {
    return;
  }
  conn_.ResumeReading();
}

// ---- association negotiation ---------------------------------------------------

// PS3.8 9.3.2, 9.3.4: the A-ASSOCIATE-RQ is checked (protocol version,
// application context, called AE title, access policy, the association
// limit), then answered with an A-ASSOCIATE-AC or -RJ.
void ScpAssociation::OnAssociateRequest(const ul::AssociateRq& rq) {
  calling_ae_ = rq.calling_ae;
  called_ae_ = rq.called_ae;
  AccessPolicy::Decision access;
  if (std::optional<Rejection> r = CheckAssociateRq(rq, &access)) return Reject(*r);
  size_t accepted = 0;
  ul::AssociateAc ac = NegotiateAssociateAc(rq, access, &accepted);
  // The answer echoes what the peer sent (role selections): it may not fit
  // its length fields. Encoded before anything counts the association.
  std::vector<uint8_t> bytes;
  if (Status s = ul::EncodeAssociateAc(ac, &bytes); !s.ok()) {
    RLOG_ERROR("%s event=associate-ac-unencodable error=\"%s\"", Prefix().c_str(), s.message().c_str());
    contexts_.clear();
    return Reject(Rejection{ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser, ul::kRjNoReasonGiven,
                            "unencodable", "our A-ASSOCIATE-AC would not fit its length fields"});
  }
  Accept(rq, access, accepted, std::move(bytes));
}

std::optional<ScpAssociation::Rejection> ScpAssociation::CheckAssociateRq(const ul::AssociateRq& rq,
                                                                          AccessPolicy::Decision* access) {
  const ScpSettings& cfg = server_->settings();
  // PS3.8 9.3.2: only bit 0 of the protocol version is tested.
  if ((rq.protocol_version & 1) == 0) {
    return Rejection{ul::RejectResult::kPermanent, ul::RejectSource::kServiceProviderAcse,
                     ul::kRjProtocolVersionNotSupported, "protocol-version", "protocol version not supported"};
  }
  if (rq.application_context != ul::kApplicationContextName) {
    return Rejection{ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser,
                     ul::kRjApplicationContextNotSupported, "application-context", "application context not supported"};
  }
  if (rq.called_ae != cfg.ae_title) {
    return Rejection{ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser, ul::kRjCalledAeNotRecognized,
                     "called-ae",
                     "called AE title '" + rq.called_ae + "' is not ours ('" + cfg.ae_title +
                         "'): configure the sender to call " + cfg.ae_title};
  }
  *access = cfg.access.Check(rq.calling_ae, PeerIp(), rq.user_info.user_identity_rq);
  if (!access->allowed) {
    return Rejection{ul::RejectResult::kPermanent, ul::RejectSource::kServiceUser, access->rj_reason, access->label,
                     access->why};
  }
  if (server_->established_count() >= cfg.max_associations) {
    return Rejection{ul::RejectResult::kTransient, ul::RejectSource::kServiceProviderPresentation,
                     ul::kRjLocalLimitExceeded, "limit", "too many associations (listener.max_associations)"};
  }
  return std::nullopt;
}

void ScpAssociation::Reject(const Rejection& r) {
  if (Metrics* m = server_->metrics()) m->AssociationRejected(r.label.c_str());
  RLOG_WARN("%s called=%s event=association-rejected reason=\"%s\"", Prefix().c_str(), LogToken(called_ae_).c_str(),
            LogEscape(r.why, true).c_str());
  // A peer retrying in a loop is one audit record and a count (RecordRefusal).
  if (AuditLog* a = server_->audit()) {
    a->RecordRefusal("association", AuditAddressOf(peer_),
                     {{"calling_ae", calling_ae_},
                      {"called_ae", called_ae_},
                      {"peer", peer_},
                      {"result", "rejected"},
                      {"reason", r.why}},
                     {"reason", "calling_ae", "called_ae"});
  }
  std::vector<uint8_t> bytes;
  ul::EncodeAssociateRj(ul::AssociateRj{r.result, r.source, r.reason}, &bytes);
  conn_.Fsm(Event::kEvt8, nullptr, std::move(bytes));
}

// The A-ASSOCIATE-AC: presentation contexts negotiated (PS3.8 9.3.3.2,
// the accepted ones kept in contexts_), our user information.
ul::AssociateAc ScpAssociation::NegotiateAssociateAc(const ul::AssociateRq& rq, const AccessPolicy::Decision& access,
                                                     size_t* accepted) {
  const ScpSettings& cfg = server_->settings();
  ul::AssociateAc ac;
  ac.called_ae = rq.called_ae;
  ac.calling_ae = rq.calling_ae;
  ac.application_context = ul::kApplicationContextName;
  ac.contexts = ul::NegotiateContexts(rq.contexts, cfg.accept, DcmtkUidDictionary());
  for (size_t i = 0; i < ac.contexts.size(); ++i) {
    const ul::PresentationContextAc& c = ac.contexts[i];
    if (c.result == ul::ContextResult::kAcceptance) {
      contexts_[c.id] = Context{rq.contexts[i].abstract_syntax, c.transfer_syntax};
      ++*accepted;
    }
  }
  ac.user_info.max_length = cfg.max_pdu;
  if (access.identity_ac) ac.user_info.user_identity_ac = *access.identity_ac;
  ac.user_info.implementation_class_uid = kImplementationClassUid;
  ac.user_info.implementation_version_name = kImplementationVersionName;
  // PS3.7 D.3.3.4: answer each role selection; we only act as SCP for storage.
  for (const ul::RoleSelection& r : rq.user_info.roles) {
    ac.user_info.roles.push_back(ul::RoleSelection{r.sop_class_uid, r.scu_role, false});
  }
  // PS3.7 D.3.3.3: the requestor may have up to kMaxOperationsInvoked
  // C-STOREs outstanding (fewer if it proposed fewer; 0 is "unlimited", which
  // we bound too). We invoke nothing on it: performed 1. Each object is still
  // acknowledged only after its own commit; the window lets one association
  // keep the link busy while the store's group commit takes several at once.
  window_ = 1;
  if (rq.user_info.async_ops) {
    const uint16_t asked = rq.user_info.async_ops->max_invoked;
    window_ = asked == 0 ? kMaxOperationsInvoked : std::min(asked, kMaxOperationsInvoked);
    ac.user_info.async_ops = ul::AsyncOpsWindow{window_, 1};
  }
  return ac;
}

// Counts, records and sends the A-ASSOCIATE-AC (`bytes`); the rules in
// force now are the ones this association uses.
void ScpAssociation::Accept(const ul::AssociateRq& rq, const AccessPolicy::Decision& access, size_t accepted,
                            std::vector<uint8_t> bytes) {
  peer_max_pdu_ = rq.user_info.max_length;
  rules_ = server_->rules();
  facts_.calling_ae = calling_ae_;
  facts_.called_ae = called_ae_;
  facts_.peer_ip = PeerIp();
  facts_.listener = "default";
  established_ = true;
  server_->OnEstablished(+1);
  if (Metrics* m = server_->metrics()) m->AssociationAccepted();
  if (AuditLog* a = server_->audit()) {
    a->Record("association", {{"calling_ae", calling_ae_},
                              {"called_ae", called_ae_},
                              {"peer", peer_},
                              {"result", "accepted"},
                              {"user", access.user},
                              {"tls", conn_.tls() ? conn_.tls()->Description() : std::string()}});
  }
  RLOG_INFO("%s called=%s event=association-accepted contexts=%zu/%zu peer_max_pdu=%u impl=%s", Prefix().c_str(),
            LogToken(called_ae_).c_str(), accepted, rq.contexts.size(), peer_max_pdu_,
            LogToken(rq.user_info.implementation_class_uid).c_str());
  conn_.Fsm(Event::kEvt7, nullptr, std::move(bytes));
}

// The peer's IP address without port or brackets: "10.0.0.5", "fe80::1".
std::string ScpAssociation::PeerIp() const {
  std::string ip = peer_.substr(0, peer_.rfind(':'));
  if (ip.size() > 2 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

// Checks a SOP Instance UID a peer sent. A character other than digits and
// dots is refused: PS3.4 B.2.3 offers 0xA900 (the data set does not match
// the SOP Class) and 0xCxxx (cannot understand); the SOP Class is not in
// question here, an unreadable attribute is, so Cannot Understand (0xC000)
// with an Error Comment (PS3.7 C.4.2) it is. Such a UID would also become a
// store key and a name in logs and folder destinations. Other deviations
// from PS3.5 9.1 (empty or zero-led components) are only logged: senders
// in the field produce them and the value is still harmless; more than 64
// characters is refused by the store. Returns false when refused.
bool ScpAssociation::AcceptSopInstanceUid(uint16_t msg, const char* where, const std::string& uid) const {
  const dimse::UidProblem problem = dimse::CheckUid(uid);
  if (problem == dimse::UidProblem::kNone) return true;
  const bool refuse = problem == dimse::UidProblem::kBadCharacter;
  RLOG_WARN("%s msg=%u event=%s %s \"%s\" %s", Prefix().c_str(), msg, refuse ? "uid-refused" : "uid-deviation", where,
            LogEscape(uid, /*quoted=*/true).c_str(), dimse::UidProblemText(problem));
  return !refuse;
}

// ---- data transfer -------------------------------------------------------------

void ScpAssociation::OnPData(const ul::PData& pdata) {
  for (const ul::Pdv& pdv : pdata.pdvs) {
    if (pending_protocol_error_ || closing_) return;
    if (contexts_.find(pdv.context_id) == contexts_.end()) {
      ProtocolError(ul::AbortReason::kInvalidPduParameterValue,
                    "PDV on presentation context " + std::to_string(pdv.context_id) + ", which was not accepted");
      return;
    }
    if (pdv.is_command) {
      if (incoming_) {
        ProtocolError(ul::AbortReason::kUnexpectedPduParameter,
                      "command PDV while the previous command's data set is incomplete");
        return;
      }
      if (!command_bytes_.empty() && pdv.context_id != command_context_) {
        ProtocolError(ul::AbortReason::kInvalidPduParameterValue,
                      "command fragments on different presentation contexts");
        return;
      }
      if (command_bytes_.size() + pdv.data.size() > kMaxCommandBytes) {
        ProtocolError(ul::AbortReason::kInvalidPduParameterValue, "command set larger than 64 KiB");
        return;
      }
      command_context_ = pdv.context_id;
      command_bytes_.insert(command_bytes_.end(), pdv.data.begin(), pdv.data.end());
      if (pdv.is_last) HandleCommand(pdv.context_id);
    } else {
      HandleData(pdv);
    }
  }
}

void ScpAssociation::HandleCommand(uint8_t context_id) {
  Result<dimse::Command> decoded = dimse::DecodeCommand(command_bytes_);
  command_bytes_.clear();
  if (!decoded.ok()) {
    ProtocolError(ul::AbortReason::kInvalidPduParameterValue, "malformed DIMSE command: " + decoded.status().message());
    return;
  }
  dimse::Command& cmd = *decoded;
  const Context& ctx = contexts_[context_id];
  switch (cmd.command_field) {
    case dimse::CommandField::kCEchoRq:
      if (cmd.has_data_set()) break;  // answered after the (discarded) data set
      RLOG_INFO("%s event=c-echo msg=%u", Prefix().c_str(), cmd.message_id.value_or(0));
      SendCommand(context_id, dimse::MakeEchoResponse(cmd, dimse::kStatusSuccess));
      return;
    case dimse::CommandField::kCStoreRq: {
      if (!cmd.has_data_set()) {
        RLOG_WARN("%s event=c-store-refused msg=%u reason=\"C-STORE-RQ without a data set\"", Prefix().c_str(),
                  cmd.message_id.value_or(0));
        if (Metrics* m = server_->metrics()) m->ObjectRefused(dimse::kStatusCannotUnderstand);
        SendCommand(context_id,
                    dimse::MakeStoreResponse(cmd, dimse::kStatusCannotUnderstand, "C-STORE-RQ without a data set"));
        return;
      }
      // PS3.7 D.3.3.3: no more outstanding than the window we answered, and
      // each with its own Message ID (its C-STORE-RSP names it).
      const uint16_t msg = cmd.message_id.value_or(0);
      if (pending_.size() >= window_) {
        ProtocolError(ul::AbortReason::kUnexpectedPduParameter,
                      "C-STORE-RQ msg=" + std::to_string(msg) + " while " + std::to_string(pending_.size()) +
                          " are outstanding: the asynchronous operations window negotiated allows " +
                          std::to_string(window_) + " (PS3.7 D.3.3.3)");
        return;
      }
      for (const Pending& p : pending_) {
        if (p.message_id == msg) {
          ProtocolError(ul::AbortReason::kInvalidPduParameterValue,
                        "C-STORE-RQ msg=" + std::to_string(msg) +
                            " while a request with the same Message ID is outstanding (PS3.7 9.1.1.1)");
          return;
        }
      }
      Incoming in;
      if (server_->metrics() != nullptr) in.arrived = NowSteadySeconds();
      in.command = std::move(cmd);
      in.context_id = context_id;
      in.store = true;
      if (ctx.abstract_syntax == ul::kVerificationSopClass) {
        in.failed = true;
        in.fail_status = dimse::kStatusSopClassNotSupported;
        in.fail_reason = "C-STORE on the Verification presentation context";
      } else if (!AcceptSopInstanceUid(in.command.message_id.value_or(0), "Affected SOP Instance UID (0000,1000)",
                                       in.command.affected_sop_instance_uid)) {
        // The data set that follows is read and dropped; then the answer.
        in.failed = true;
        in.fail_status = dimse::kStatusCannotUnderstand;
        in.fail_reason = "Affected SOP Instance UID: not only digits and dots";
      } else if (!server_->intake_closed().empty()) {
        in.failed = true;
        in.fail_status = dimse::kStatusOutOfResources;
        in.fail_reason = server_->intake_closed();
      } else if (server_->AuditBlocksIntake()) {
        // Audit failure (on_failure = "refuse"): nothing is received
        // unaudited. The "refused" record Refuse() writes is the probe: once
        // it reaches the file, the trail is no longer failing and the next
        // C-STORE is received again.
        in.failed = true;
        in.fail_status = dimse::kStatusOutOfResources;
        in.fail_reason = kAuditFailingReason;
      } else {
        in.writer = server_->store()->NewObject();
        in.header = std::make_unique<dicom::HeaderParser>(ctx.transfer_syntax);
      }
      incoming_.emplace(std::move(in));
      return;
    }
    case dimse::CommandField::kCCancelRq: return;  // PS3.7 9.3.2.3: nothing to cancel; no response.
    default: break;
  }
  if (static_cast<uint16_t>(cmd.command_field) & 0x8000) {
    ProtocolError(ul::AbortReason::kUnexpectedPduParameter,
                  std::string("unexpected response command ") + dimse::CommandFieldName(cmd.command_field));
    return;
  }
  if (cmd.has_data_set()) {
    Incoming in;
    in.command = std::move(cmd);
    in.context_id = context_id;
    in.store = false;
    incoming_.emplace(std::move(in));
    return;
  }
  RLOG_WARN("%s event=unsupported-command command=%s msg=%u", Prefix().c_str(),
            dimse::CommandFieldName(cmd.command_field), cmd.message_id.value_or(0));
  SendCommand(context_id, dimse::MakeUnsupportedResponse(cmd));
}

void ScpAssociation::HandleData(const ul::Pdv& pdv) {
  if (!incoming_) {
    ProtocolError(ul::AbortReason::kUnexpectedPduParameter, "data set PDV without a command");
    return;
  }
  Incoming& in = *incoming_;
  if (pdv.context_id != in.context_id) {
    ProtocolError(ul::AbortReason::kInvalidPduParameterValue,
                  "data set PDV on a different presentation context than its command");
    return;
  }
  in.bytes += pdv.data.size();
  if (in.store && !in.failed) {
    // The header is parsed before the bytes go to the store, so that the
    // chunk where pixels start already knows their layout (byte shuffle).
    if (!in.header->done()) {
      in.header->Feed(pdv.data, pdv.is_last);
      if (in.header->done()) {
        Result<dicom::HeaderInfo> info = in.header->result();
        if (!info.ok()) {
          in.failed = true;
          in.fail_status = dimse::kStatusCannotUnderstand;
          in.fail_reason = info.status().message();
          in.writer->Abort();
          in.writer.reset();
        } else if (info->sample_bytes != 0) {
          in.writer->SetPixelLayout(info->pixel_offset, info->sample_bytes);
        }
      }
    }
    if (in.writer) in.writer->Append(pdv.data);
    if (in.writer && in.writer->UncommittedBytes() > server_->settings().max_uncommitted_bytes) {
      conn_.PauseReading();
    }
  }
  if (pdv.is_last) FinishIncoming();
}

void ScpAssociation::FinishIncoming() {
  Incoming in = std::move(*incoming_);
  incoming_.reset();
  const dimse::Command& rq = in.command;
  if (!in.store) {
    if (rq.command_field == dimse::CommandField::kCEchoRq) {
      SendCommand(in.context_id, dimse::MakeEchoResponse(rq, dimse::kStatusSuccess));
    } else {
      RLOG_WARN("%s event=unsupported-command command=%s msg=%u", Prefix().c_str(),
                dimse::CommandFieldName(rq.command_field), rq.message_id.value_or(0));
      SendCommand(in.context_id, dimse::MakeUnsupportedResponse(rq));
    }
    return;
  }
  store::ObjectMeta meta;
  if (!in.failed && Describe(in, &meta)) return Commit(in, std::move(meta));
  Refuse(in);
}

// Answers every C-STORE whose commit (or refusal) is done, in completion
// order: with a window of several, a later object committed in an earlier
// batch is not held behind an earlier one (PS3.7 D.3.3.3 lets responses
// come in any order; each names its request's Message ID).
void ScpAssociation::FlushResponses() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    Pending p = std::move(*it);
    it = pending_.erase(it);
    if (closing_) continue;
    SendCommand(p.context_id, dimse::MakeStoreResponse(p.rq, p.status, p.comment));
  }
  SendReleaseResponseIfIdle();
}

void ScpAssociation::NoteOutstanding() {
  const uint32_t n = static_cast<uint32_t>(pending_.size());
  if (n <= max_outstanding_) return;
  max_outstanding_ = n;
  if (Metrics* m = server_->metrics()) m->OutstandingSeen(n);
}

void ScpAssociation::SendCommand(uint8_t context_id, const dimse::Command& cmd) {
  if (closing_) return;
  std::vector<uint8_t> body = dimse::EncodeCommand(cmd);
  // PS3.8 D.1: the peer's maximum applies to the PDV list of each P-DATA-TF.
  size_t max_data = body.size();
  if (peer_max_pdu_ != 0 && peer_max_pdu_ > 6 && peer_max_pdu_ - 6 < max_data) max_data = peer_max_pdu_ - 6;
  size_t off = 0;
  do {
    size_t n = std::min(max_data, body.size() - off);
    bool last = off + n == body.size();
    std::vector<uint8_t> pdu;
    pdu.reserve(12 + n);
    if (Status s = ul::EncodePDataHeader(context_id, true, last, static_cast<uint32_t>(n), &pdu); !s.ok()) {
      // Not reachable with a command set of a few hundred bytes; never wrap.
      RLOG_ERROR("%s event=pdata-unencodable error=\"%s\"", Prefix().c_str(), s.message().c_str());
      AbortNow("P-DATA-TF does not fit its length fields");
      return;
    }
    pdu.insert(pdu.end(), body.begin() + off, body.begin() + off + n);
    conn_.Fsm(Event::kEvt9, nullptr, std::move(pdu));
    off += n;
  } while (off < body.size());
}

// ---- release and abort ---------------------------------------------------------

void ScpAssociation::OnReleaseRequest() {
  RLOG_INFO("%s event=release-requested pending=%zu", Prefix().c_str(), pending_.size());
  release_requested_ = true;
  if (incoming_) {
    RLOG_WARN("%s release requested in the middle of a data set: dropping it", Prefix().c_str());
    DropIncoming();
  }
  SendReleaseResponseIfIdle();
}

void ScpAssociation::SendReleaseResponseIfIdle() {
  if (!release_requested_ || !pending_.empty() || incoming_ || closing_) return;
  release_requested_ = false;
  std::vector<uint8_t> bytes;
  ul::EncodeReleaseRp(&bytes);
  RLOG_INFO("%s event=released objects=%llu failed=%llu bytes=%llu window=%u max_outstanding=%u", Prefix().c_str(),
            static_cast<unsigned long long>(objects_ok_), static_cast<unsigned long long>(objects_failed_),
            static_cast<unsigned long long>(bytes_received_), window_, max_outstanding_);
  conn_.Fsm(Event::kEvt14, nullptr, std::move(bytes));
}

void ScpAssociation::OnAbort(const std::optional<ul::Abort>& abort) {
  if (abort) {
    RLOG_WARN("%s event=abort-received source=%d reason=%d pending=%zu", Prefix().c_str(),
              static_cast<int>(abort->source), static_cast<int>(abort->reason), pending_.size());
  }
  DropIncoming();
}

void ScpAssociation::DropIncoming() {
  if (incoming_ && incoming_->writer) incoming_->writer->Abort();
  incoming_.reset();
  command_bytes_.clear();
}

// ---- closing ---------------------------------------------------------------------

void ScpAssociation::StartClose() {
  if (closing_) return;
  closing_ = true;
  DropIncoming();
  if (established_) server_->OnEstablished(-1);
  established_ = false;
  uv_timer_stop(&idle_);
  conn_.Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), &ScpAssociation::OnClose);
  RLOG_INFO("%s event=closed objects=%llu failed=%llu max_outstanding=%u", Prefix().c_str(),
            static_cast<unsigned long long>(objects_ok_), static_cast<unsigned long long>(objects_failed_),
            max_outstanding_);
}

void ScpAssociation::OnClose(uv_handle_t* h) noexcept {
  static_cast<ScpAssociation*>(h->data)->HandleClosed();  // may destroy the association
}

void ScpAssociation::HandleClosed() {
  if (--handles_open_ == 0) server_->OnAssociationClosed(id_);  // deletes this
}

}  // namespace relais::router
