// ScpAssociation (association.h): a C-STORE's data set is complete; here it
// is described from its header, routed by the rules, handed to the store,
// and answered once the store's commit is durable (or refused with its
// failure status). The C-STORE-RSP never goes out before the commit.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>

#include <ctime>
#include <vector>

#include "base/clock.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/text.h"
#include "router/receive/association.h"
#include "router/receive/server.h"
#include "router/record/audit.h"
#include "router/record/metrics.h"

namespace relais::router {
namespace {

uint16_t StatusFor(const Status& s) {
  if (s.ok()) return dimse::kStatusSuccess;
  if (s.IsResourceExhausted()) return dimse::kStatusOutOfResources;
  return dimse::kStatusProcessingFailure;
}

}  // namespace

// Fills `meta` from the data set's header, the association and the rules.
// False (with in.failed, fail_status and fail_reason) when the object is
// refused: an unreadable header, a bad SOP Instance UID, or the rules.
bool ScpAssociation::Describe(Incoming& in, store::ObjectMeta* meta) {
  const dimse::Command& rq = in.command;
  const uint16_t msg = rq.message_id.value_or(0);
  Result<dicom::HeaderInfo> info = in.header->result();
  if (!info.ok()) {
    in.failed = true;
    in.fail_status = dimse::kStatusCannotUnderstand;
    in.fail_reason = info.status().message();
    return false;
  }
  if (!AcceptSopInstanceUid(msg, "SOP Instance UID (0008,0018)", info->sop_instance_uid)) {
    in.failed = true;
    in.fail_status = dimse::kStatusCannotUnderstand;
    in.fail_reason = "SOP Instance UID (0008,0018): not only digits and dots";
    return false;
  }
  meta->sop_class_uid = info->sop_class_uid.empty() ? rq.affected_sop_class_uid : info->sop_class_uid;
  meta->sop_instance_uid = info->sop_instance_uid.empty() ? rq.affected_sop_instance_uid : info->sop_instance_uid;
  if (!info->sop_instance_uid.empty() && info->sop_instance_uid != rq.affected_sop_instance_uid) {
    RLOG_WARN("%s msg=%u sop=%s event=uid-mismatch command_sop=%s: keeping the data set's UID", Prefix().c_str(), msg,
              LogToken(info->sop_instance_uid).c_str(), LogToken(rq.affected_sop_instance_uid).c_str());
  }
  meta->study_instance_uid = info->study_instance_uid;
  meta->series_instance_uid = info->series_instance_uid;
  meta->patient_id = info->patient_id;
  meta->modality = info->modality;
  meta->patient_name = info->patient_name;
  meta->accession_number = info->accession_number;
  meta->study_date = info->study_date;
  meta->transfer_syntax_uid = contexts_[in.context_id].transfer_syntax;
  meta->received_unix_ms = NowUnixMs();
  meta->calling_ae = calling_ae_;
  meta->called_ae = called_ae_;
  meta->peer_address = peer_;
  if (!Route(*in.header, meta, &in.fail_status, &in.fail_reason)) {
    in.failed = true;
    return false;
  }
  return true;
}

// Hands the object to the store; the C-STORE-RSP waits for the commit
// (OnStoreCommitted).
void ScpAssociation::Commit(Incoming& in, store::ObjectMeta meta) {
  const uint16_t msg = in.command.message_id.value_or(0);
  pending_.push_back(Pending{msg, in.context_id, in.command, in.arrived, false, 0, {}});
  NoteOutstanding();
  Server* server = server_;
  uint64_t id = id_;
  in.writer->Finish(std::move(meta), [server, id, msg](Status s, const store::ObjectMeta& m) {
    server->Post([server, id, msg, s, m]() {
      ScpAssociation* a = server->FindAssociation(id);
      if (a != nullptr) {
        a->OnStoreCommitted(msg, s, m);
      } else {
        RLOG_INFO("assoc=%llu msg=%u sop=%s event=%s after the association closed (not acknowledged)",
                  static_cast<unsigned long long>(id), msg, LogToken(m.sop_instance_uid).c_str(),
                  s.ok() ? "stored" : "store-failed");
      }
    });
  });
}

// Answers a refused C-STORE with its failure status, behind the commits
// still pending.
void ScpAssociation::Refuse(Incoming& in) {
  const dimse::Command& rq = in.command;
  const uint16_t msg = rq.message_id.value_or(0);
  if (in.writer) in.writer->Abort();
  if (Metrics* m = server_->metrics()) m->ObjectRefused(in.fail_status);
  ++objects_failed_;
  RLOG_WARN("%s msg=%u sop=%s event=c-store-refused status=0x%04X reason=\"%s\"", Prefix().c_str(), msg,
            LogToken(rq.affected_sop_instance_uid).c_str(), in.fail_status, LogEscape(in.fail_reason, true).c_str());
  if (AuditLog* a = server_->audit())
    a->Record("object", {{"calling_ae", calling_ae_},
                         {"peer", peer_},
                         {"sop_instance_uid", rq.affected_sop_instance_uid},
                         {"result", "refused"},
                         {"status", Hex4(in.fail_status)},
                         {"reason", in.fail_reason}});
  pending_.push_back(Pending{msg, in.context_id, rq, in.arrived, true, in.fail_status, in.fail_reason});
  NoteOutstanding();
  FlushResponses();
}

namespace {

// A route to `d`, carrying its resend policy to the store's commit.
store::Route MakeRoute(const rules::Destination& d, int32_t priority, std::string rule, std::string edits) {
  store::Route r{d.name, priority, std::move(rule), std::move(edits)};
  switch (d.resend) {
    case rules::Destination::Resend::kAlways: r.resend = store::Resend::kAlways; break;
    case rules::Destination::Resend::kNever: r.resend = store::Resend::kNever; break;
    case rules::Destination::Resend::kIfChanged: r.resend = store::Resend::kIfChanged; break;
  }
  r.resend_window_ms = static_cast<int64_t>(d.resend_window_s) * 1000;
  return r;
}

}  // namespace

bool ScpAssociation::Route(dicom::HeaderParser& header, store::ObjectMeta* meta, uint16_t* status,
                           std::string* reason) {
  if (!rules_) return true;  // no rules configured: keep, unrouted
  rules_->Evaluate(header.dataset(), facts_, std::time(nullptr), &decision_);
  for (const std::string* r : decision_.matched_rules) meta->matched_rules.push_back(*r);
  if (decision_.dropped) {
    meta->routing = "dropped";
    return true;
  }
  if (decision_.unmatched) {
    switch (rules_->unmatched_policy()) {
      case rules::RuleSet::Unmatched::kReject:
        *status = dimse::kStatusNotAuthorized;
        *reason = "no routing rule matched and the rules say unmatched = \"reject\"";
        return false;
      case rules::RuleSet::Unmatched::kForward:
        meta->routing = "routed";
        for (const rules::Destination* d : rules_->unmatched_destinations()) {
          meta->routes.push_back(MakeRoute(*d, 0, "(unmatched)", ""));
        }
        return true;
      case rules::RuleSet::Unmatched::kKeep: meta->routing = "unrouted"; return true;
    }
  }
  meta->routing = "routed";
  for (const rules::Decision::Target& t : decision_.targets) {
    meta->routes.push_back(MakeRoute(*t.destination, t.priority, t.rule ? *t.rule : std::string(),
                                     t.edits ? rules::EncodeEdits(*t.edits) : std::string()));
  }
  return true;
}

void ScpAssociation::OnStoreCommitted(uint16_t message_id, Status status, const store::ObjectMeta& meta) {
  double arrived = -1;
  for (Pending& p : pending_) {
    if (!p.done && p.message_id == message_id) {
      p.done = true;
      p.status = StatusFor(status);
      if (!status.ok()) p.comment = status.message();
      arrived = p.arrived;
      break;
    }
  }
  if (Metrics* m = server_->metrics()) {
    if (status.ok()) {
      m->ObjectReceived(meta.raw_size, arrived < 0 ? 0.0 : NowSteadySeconds() - arrived, NowUnixMs());
      if (meta.duplicate_of != 0) m->ObjectDuplicate();
      if (!meta.suppressed.empty()) m->RoutesSuppressed(meta.suppressed.size());
    } else {
      m->ObjectRefused(StatusFor(status));
    }
  }
  if (status.ok() && meta.duplicate_of != 0) {
    // The same bytes as the stored object: acknowledged, nothing new kept.
    ++objects_ok_;
    bool audited = AuditObject(meta, "stored", "0x0000", {"duplicate", "identical"}, {});
    RLOG_INFO("%s msg=%u sop=%s event=duplicate-identical object=%llu bytes=%llu: already stored, not queued again",
              Prefix().c_str(), message_id, LogToken(meta.sop_instance_uid).c_str(),
              static_cast<unsigned long long>(meta.duplicate_of), static_cast<unsigned long long>(meta.raw_size));
    if (!audited) RefuseUnaudited(message_id, meta);
  } else if (status.ok()) {
    ++objects_ok_;
    std::string suppressed;
    for (const std::string& d : meta.suppressed) suppressed += (suppressed.empty() ? "" : ",") + d;
    std::string routes;
    for (const store::Route& r : meta.routes) routes += (routes.empty() ? "" : ",") + r.destination;
    bool audited = AuditObject(meta, "stored", "0x0000", {"routing", meta.routing}, {"to", routes});
    if (!audited) RefuseUnaudited(message_id, meta);
    RLOG_INFO("%s msg=%u sop=%s event=stored modality=%s bytes=%llu stored=%llu routing=%s to=%s%s%s", Prefix().c_str(),
              message_id, LogToken(meta.sop_instance_uid).c_str(), LogToken(meta.modality).c_str(),
              static_cast<unsigned long long>(meta.raw_size), static_cast<unsigned long long>(meta.stored_size),
              meta.routing.empty() ? "none" : meta.routing.c_str(), routes.empty() ? "-" : routes.c_str(),
              suppressed.empty() ? "" : " suppressed=", suppressed.c_str());
  } else {
    ++objects_failed_;
    AuditObject(meta, "failed", Hex4(StatusFor(status)), {"reason", status.message()}, {});
    RLOG_WARN("%s msg=%u sop=%s event=store-failed status=0x%04X reason=\"%s\"", Prefix().c_str(), message_id,
              LogToken(meta.sop_instance_uid).c_str(), StatusFor(status), LogEscape(status.message(), true).c_str());
  }
  FlushResponses();
  MaybeResumeReading();
}

bool ScpAssociation::AuditObject(const store::ObjectMeta& meta, std::string_view result, std::string_view status,
                                 AuditLog::Field extra1, AuditLog::Field extra2) {
  AuditLog* a = server_->audit();
  if (a == nullptr) return true;
  std::vector<AuditLog::Field> fields = {{"calling_ae", calling_ae_},
                                         {"peer", peer_},
                                         {"patient_id", meta.patient_id},
                                         {"study_instance_uid", meta.study_instance_uid},
                                         {"sop_instance_uid", meta.sop_instance_uid},
                                         {"result", result},
                                         {"status", status},
                                         extra1};
  if (!extra2.first.empty()) fields.push_back(extra2);
  return a->Record("object", fields);
}

void ScpAssociation::RefuseUnaudited(uint16_t message_id, const store::ObjectMeta& meta) {
  if (!server_->AuditBlocksIntake()) return;  // on_failure = "continue": the audit log counts it
  // Audit failure, on_failure = "refuse": the object is committed (the
  // store's commit came first) but is not acknowledged. The sender keeps it
  // and sends it again; that copy replaces this one (same SOP Instance UID,
  // FORMAT.md) or is its identical duplicate, and is audited then.
  for (Pending& p : pending_) {
    if (p.message_id == message_id && p.done && p.status == dimse::kStatusSuccess) {
      p.status = dimse::kStatusOutOfResources;
      p.comment = kAuditFailingReason;
      break;
    }
  }
  RLOG_ERROR(
      "%s msg=%u sop=%s event=audit-refused status=0xA700: stored, but its audit record could not be "
      "written; answered Out of Resources so that the sender sends it again ([audit] on_failure = "
      "\"refuse\")",
      Prefix().c_str(), message_id, LogToken(meta.sop_instance_uid).c_str());
}

}  // namespace relais::router
