// IHE ATNA export of the audit trail (issue 5): every audit record
// (router/record/audit.h) is also sent, as a DICOM audit message, to a syslog
// collector (an IHE Audit Record Repository).
//
// Message: the DICOM Audit Message schema (PS3.15 A.5.1, derived from
// RFC 3881), one <AuditMessage> per record, with codes from PS3.16 (DCM):
//
//   record                          EventID                        EventTypeCode          Action  Outcome
//   segment (log opened)            110100 Application Activity    110120 Application Start  E    0
//   association accepted            110114 User Authentication     110122 Login              E    0
//   association rejected            110113 Security Alert          110126 Node Authentication E   4
//   object stored / refused / failed 110104 DICOM Instances Transferred  -                   C    0 / 4 / 8
//   delivery success / other        110104 DICOM Instances Transferred  -                   R    0 / 4 or 8
//   rules load / reload             110113 Security Alert          110131 Software Configuration E 0 / 4
//   admin, HTTP 401 (no/bad token)  110114 User Authentication     110122 Login              E    4
//   admin, HTTP 403 (role too low)  110113 Security Alert          110132 Use of Restricted Function E 4
//   admin, other (an action)        110113 Security Alert          110131 Software Configuration E 0 / 4 / 8
//
// A summary of repeated admin refusals (AuditLog::RecordRefusal) maps like
// the refusals it counts (by its "status"); its NetworkAccessPointID is its
// "address" and its EventOutcomeDescription says "repeated=N; since=...".
// A segment record written by a rotation is not an event and is not sent.
// Participants (PS3.15 A.5.2.1-2): a DICOM node is UserID = its AE title,
// AlternativeUserID = "AETITLES=<AE>", NetworkAccessPointID = its IP
// (type 2); Relais itself is UserID = our AE title, UserName "relais",
// NetworkAccessPointID = host name (type 1). The requestor
// (UserIsRequestor="true") is whoever opened the association. Objects:
// the study (type 2, role 3 Report, ID type 110180 Study Instance UID, with
// the SOP Instance UID as <SOPClass><Instance UID=.../>) and the patient
// (type 1, role 1, ID type 2 "Patient Number" RFC-3881); for admin
// records the token name is the requesting user and "METHOD /path" the
// object (type 2, role 13, ID type 12 URI). Every value is
// XML-escaped; bytes that are not UTF-8, and characters XML 1.0 forbids,
// become U+FFFD. Values arrive bounded as in the file (router/record/audit.h:
// kAuditMaxFieldBytes each, a few of them per message), so a message of a
// record whatever its input stays well under a UDP datagram's 65507 bytes.
//
// Transport: an RFC 5424 syslog message, PRI = facility 10
// (security/authorization) * 8 + severity 5 (notice) or 4 (warning, for a
// failure outcome), VERSION 1, HOSTNAME, APP-NAME "relais", PROCID (pid),
// MSGID "IHE+RFC-3881" (IHE ITI TF-2 3.20), STRUCTURED-DATA "-", MSG = BOM +
// the XML (RFC 5424 6.4). Over UDP one message per datagram (RFC 5426);
// over TCP octet-counting framing "LEN SP MSG" (RFC 6587 3.4.1).
#ifndef RELAIS_ROUTER_RECORD_ATNA_H_
#define RELAIS_ROUTER_RECORD_ATNA_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"

namespace relais::router {

// One audit record, as written to the file.
struct AtnaEvent {
  std::string kind;  // "segment", "association", "object", "delivery", "rules", "admin"
  uint64_t seq = 0;
  int64_t unix_ms = 0;  // the record's "time"
  std::vector<std::pair<std::string, std::string>> fields;
  // The field's value; empty if absent.
  std::string Get(std::string_view key) const;
};

// Who writes the messages.
struct AtnaSource {
  std::string ae_title = "RELAIS";  // our listener AE title
  std::string calling_ae_title;     // our AE title towards destinations; empty = ae_title
  std::string hostname;             // this node; also the AuditSourceID
};

// The record as a PS3.15 A.5.1 <AuditMessage> (no XML declaration), or ""
// when the record is not an event (see the table above). Sets *failed when
// its EventOutcomeIndicator is not 0.
std::string AtnaAuditMessage(const AtnaEvent& event, const AtnaSource& source, bool* failed);

// `s` as XML character data or attribute value: & < > " ' escaped,
// invalid UTF-8 and characters outside the XML 1.0 Char production as U+FFFD.
std::string XmlEscape(std::string_view s);

// RFC 5424 section 6: "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG".
// REQUIRES: facility 0-23, severity 0-7. Header fields are cut to their
// RFC 5424 maximum lengths and characters outside PRINTUSASCII become '_';
// an empty one becomes the NILVALUE "-".
std::string SyslogMessage(int facility, int severity, int64_t unix_ms, std::string_view hostname,
                          std::string_view app_name, std::string_view procid, std::string_view msgid,
                          std::string_view msg);
// RFC 6587 3.4.1 octet counting: "<decimal length of msg> SP msg".
std::string OctetCountingFrame(std::string_view msg);

struct SyslogTarget {
  bool tcp = false;
  std::string host;  // a name, an IPv4 literal or a bracketed IPv6 literal's inside
  uint16_t port = 0;
};
// Parses "udp://HOST:PORT" or "tcp://HOST:PORT" (IPv6 as "[::1]").
// Errors: InvalidArgument.
Result<SyslogTarget> ParseSyslogTarget(const std::string& url);

// Sends audit events to a syslog collector from its own thread. Submit()
// never blocks on the network: events wait in a bounded queue; past it they
// are dropped and counted. A collector that is down costs dropped messages
// and a log line at most once a minute, never a stalled caller; TCP
// reconnects with backoff (0.5 s doubling to 30 s).
class AtnaExporter {
 public:
  struct Options {
    SyslogTarget target;
    AtnaSource source;
    size_t max_queue = 10000;        // events waiting; Default: 10000
    int64_t io_timeout_ms = 2000;    // one TCP connect or send; Default: 2 s
    int64_t drain_ms = 2000;         // on destruction, time left to send what waits; Default: 2 s
    int64_t max_backoff_ms = 30000;  // Default: 30 s
  };
  explicit AtnaExporter(Options options);
  // Sends what is queued for at most drain_ms (while the collector takes
  // it), drops the rest, and joins the thread.
  ~AtnaExporter();
  AtnaExporter(const AtnaExporter&) = delete;
  AtnaExporter& operator=(const AtnaExporter&) = delete;

  // Any thread; constant time, no I/O.
  void Submit(AtnaEvent event);

  uint64_t sent() const;     // messages handed to the transport whole
  uint64_t dropped() const;  // queue full, send failed, or left at shutdown

 private:
  void Run();
  // Sends one framed message; false (and the connection closed) on failure.
  bool SendOne(const std::string& datagram_or_frame, int64_t deadline_ms);
  bool Connect(int64_t deadline_ms);
  void CloseSocket();
  void NoteDrop(uint64_t n, const std::string& why);  // REQUIRES: mu_ held

  const Options options_;
  const std::string procid_;
  int fd_ = -1;  // Run()'s thread only
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<AtnaEvent> queue_;   // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  uint64_t sent_ = 0;             // guarded by mu_
  uint64_t dropped_ = 0;          // guarded by mu_
  uint64_t dropped_logged_ = 0;   // guarded by mu_
  int64_t last_drop_log_ms_ = 0;  // guarded by mu_
  std::thread thread_;
};

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECORD_ATNA_H_
