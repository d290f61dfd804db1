// IHE ATNA export (router/record/atna.h): DICOM audit messages over syslog.
#include "router/record/atna.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"

namespace relais::router {
namespace {

constexpr int kFacilityAuth = 10;  // RFC 5424 Table 1: security/authorization messages
constexpr int kSeverityWarning = 4;
constexpr int kSeverityNotice = 5;
constexpr char kBom[] = "\xEF\xBB\xBF";
// RFC 5426 3.2 / IPv4: the largest UDP payload.
constexpr size_t kMaxDatagram = 65507;

// A coded value (PS3.15 A.5.1 CodedValueType).
struct Code {
  const char* code;
  const char* system;  // codeSystemName
  const char* text;    // originalText (the DICOM Code Meaning)
};

// PS3.16 CID 400 Audit Event ID.
constexpr Code kApplicationActivity{"110100", "DCM", "Application Activity"};
constexpr Code kInstancesTransferred{"110104", "DCM", "DICOM Instances Transferred"};
constexpr Code kSecurityAlert{"110113", "DCM", "Security Alert"};
constexpr Code kUserAuthentication{"110114", "DCM", "User Authentication"};
// PS3.16 CID 401 Audit Event Type Code.
constexpr Code kApplicationStart{"110120", "DCM", "Application Start"};
constexpr Code kLogin{"110122", "DCM", "Login"};
constexpr Code kNodeAuthentication{"110126", "DCM", "Node Authentication"};
constexpr Code kSoftwareConfiguration{"110131", "DCM", "Software Configuration"};
constexpr Code kUseOfRestrictedFunction{"110132", "DCM", "Use of Restricted Function"};
// PS3.16 CID 402 Audit Active Participant Role ID Code.
constexpr Code kRoleApplication{"110150", "DCM", "Application"};
constexpr Code kRoleDestination{"110152", "DCM", "Destination Role ID"};
constexpr Code kRoleSource{"110153", "DCM", "Source Role ID"};
// PS3.16 CID 404 Audit Participant Object ID Type Code; RFC 3881 5.5.4.
constexpr Code kIdStudyInstanceUid{"110180", "DCM", "Study Instance UID"};
constexpr Code kIdPatientNumber{"2", "RFC-3881", "Patient Number"};
constexpr Code kIdUri{"12", "RFC-3881", "URI"};

void AppendCode(std::string* out, const char* element, const Code& c) {
  *out += "<";
  *out += element;
  *out += " csd-code=\"";
  *out += c.code;
  *out += "\" codeSystemName=\"";
  *out += c.system;
  *out += "\" originalText=\"";
  *out += c.text;
  *out += "\"/>";
}

void AppendAttr(std::string* out, const char* name, std::string_view value) {
  *out += " ";
  *out += name;
  *out += "=\"";
  *out += XmlEscape(value);
  *out += "\"";
}

struct Participant {
  std::string user_id;
  std::string alternative_user_id;
  std::string user_name;
  bool requestor = false;
  std::string nap_id;
  int nap_type = 0;  // 1 machine name, 2 IP address; 0 = absent
  const Code* role = nullptr;
};

void AppendParticipant(std::string* out, const Participant& p) {
  *out += "<ActiveParticipant";
  AppendAttr(out, "UserID", p.user_id.empty() ? std::string("-") : p.user_id);
  if (!p.alternative_user_id.empty()) AppendAttr(out, "AlternativeUserID", p.alternative_user_id);
  if (!p.user_name.empty()) AppendAttr(out, "UserName", p.user_name);
  AppendAttr(out, "UserIsRequestor", p.requestor ? "true" : "false");
  if (!p.nap_id.empty() && p.nap_type != 0) {
    AppendAttr(out, "NetworkAccessPointID", p.nap_id);
    AppendAttr(out, "NetworkAccessPointTypeCode", std::to_string(p.nap_type));
  }
  if (p.role != nullptr) {
    *out += ">";
    AppendCode(out, "RoleIDCode", *p.role);
    *out += "</ActiveParticipant>";
  } else {
    *out += "/>";
  }
}

// "127.0.0.1:5104" or "[::1]:5104" -> the address.
std::string HostOfPeer(const std::string& peer) {
  if (!peer.empty() && peer.front() == '[') {
    size_t close = peer.find(']');
    return close == std::string::npos ? peer : peer.substr(1, close - 1);
  }
  size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

bool LooksLikeIp(const std::string& host) {
  return !host.empty() &&
         (host.find(':') != std::string::npos || host.find_first_not_of("0123456789.") == std::string::npos);
}

// A remote DICOM node.
Participant Node(const std::string& ae, const std::string& host, bool requestor, const Code* role) {
  Participant p;
  p.user_id = ae;
  if (!ae.empty()) p.alternative_user_id = "AETITLES=" + ae;  // PS3.15 A.5.2.2
  p.requestor = requestor;
  p.nap_id = host;
  p.nap_type = host.empty() ? 0 : (LooksLikeIp(host) ? 2 : 1);
  p.role = role;
  return p;
}

// Relais itself.
Participant Self(const std::string& ae, const AtnaSource& s, bool requestor, const Code* role) {
  Participant p = Node(ae, s.hostname, requestor, role);
  p.user_name = "relais";
  return p;
}

// The study and patient objects (PS3.15 A.5.3.4 DICOM Instances Transferred).
void AppendObjects(std::string* out, const AtnaEvent& e) {
  const std::string study = e.Get("study_instance_uid");
  const std::string sop = e.Get("sop_instance_uid");
  const std::string patient = e.Get("patient_id");
  if (!study.empty() || !sop.empty()) {
    *out += "<ParticipantObjectIdentification";
    AppendAttr(out, "ParticipantObjectID", study.empty() ? std::string("-") : study);
    *out += " ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">";
    AppendCode(out, "ParticipantObjectIDTypeCode", kIdStudyInstanceUid);
    if (!sop.empty()) {
      *out += "<ParticipantObjectDescription><SOPClass NumberOfInstances=\"1\"><Instance";
      AppendAttr(out, "UID", sop);
      *out += "/></SOPClass></ParticipantObjectDescription>";
    }
    *out += "</ParticipantObjectIdentification>";
  }
  if (!patient.empty()) {
    *out += "<ParticipantObjectIdentification";
    AppendAttr(out, "ParticipantObjectID", patient);
    *out += " ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">";
    AppendCode(out, "ParticipantObjectIDTypeCode", kIdPatientNumber);
    *out += "</ParticipantObjectIdentification>";
  }
}

// The free text of a failure: reason, error, status.
std::string Description(const AtnaEvent& e) {
  std::string d;
  for (const char* k : {"reason", "error", "detail", "status", "result", "repeated", "since", "until"}) {
    std::string v = e.Get(k);
    if (v.empty()) continue;
    d += (d.empty() ? "" : "; ") + std::string(k) + "=" + v;
  }
  return d;
}

// Replaces a header field's characters outside PRINTUSASCII (RFC 5424 6).
std::string PrintUsAscii(std::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, std::min(s.size(), max))) {
    out.push_back(c >= 33 && c <= 126 ? c : '_');
  }
  return out.empty() ? "-" : out;
}

}  // namespace

std::string AtnaEvent::Get(std::string_view key) const {
  for (const auto& [k, v] : fields) {
    if (k == key) return v;
  }
  return "";
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        case '\t': out += "&#9;"; break;  // kept as characters even in attributes
        case '\n': out += "&#10;"; break;
        case '\r': out += "&#13;"; break;
        default:
          if (c < 0x20 || c == 0x7F) {
            out += "\xEF\xBF\xBD";  // XML 1.0 2.2: not a Char (0x7F is, but is never meant)
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // RFC 3629: a well-formed multi-byte sequence, or U+FFFD for one byte.
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    uint32_t cp = len == 4 ? (c & 0x07u) : len == 3 ? (c & 0x0Fu) : (c & 0x1Fu);
    bool ok = len != 0 && c <= 0xF4 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if (ok) {
      static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) && cp != 0xFFFE && cp != 0xFFFF;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

namespace {

// What an audit message says of one record, before it is written as XML.
struct MessageShape {
  const Code* event_id = nullptr;
  const Code* event_type = nullptr;  // null: none
  char action = 'E';                 // EventActionCode
  int outcome = 0;                   // EventOutcomeIndicator: 0, 4, 8
  std::vector<Participant> participants;
  bool objects = false;  // the record names a study/instance (AppendObjects)
  std::string request;   // admin: "POST /api/v1/..."
};

// A delivery: we (the source, requestor) sent to the destination named by
// the association's name ("D3 ARCHIVE@10.0.0.5:104").
void ShapeDelivery(const AtnaEvent& e, const std::string& result, const std::string& our_calling_ae,
                   const AtnaSource& source, MessageShape* m) {
  m->event_id = &kInstancesTransferred;
  m->action = 'R';
  m->outcome = result == "success" || result == "warning" ? 0 : result == "retry" ? 4 : 8;
  std::string assoc = e.Get("association");
  std::string ae = e.Get("destination");
  std::string host;
  size_t sp = assoc.find(' ');
  size_t at = assoc.rfind('@');
  if (sp != std::string::npos && at != std::string::npos && at > sp) {
    ae = assoc.substr(sp + 1, at - sp - 1);
    host = HostOfPeer(assoc.substr(at + 1));
  }
  m->participants.push_back(Self(our_calling_ae, source, true, &kRoleSource));
  Participant dest = Node(ae, host, false, &kRoleDestination);
  dest.user_name = e.Get("destination");
  m->participants.push_back(dest);
  m->objects = true;
}

// Admin API (docs/admin-api.md, router/operate/admin_api.cc): refused
// requests and every action; "status" is the HTTP status.
void ShapeAdmin(const AtnaEvent& e, const std::string& result, const std::string& our_ae, const AtnaSource& source,
                MessageShape* m) {
  const std::string http = e.Get("status");
  const bool unauthenticated = http == "401";
  const bool forbidden = http == "403";
  m->event_id = unauthenticated ? &kUserAuthentication : &kSecurityAlert;
  m->event_type = unauthenticated ? &kLogin : forbidden ? &kUseOfRestrictedFunction : &kSoftwareConfiguration;
  m->outcome = result == "ok" ? 0 : result == "failed" ? 8 : 4;
  Participant user;
  user.user_id = e.Get("token").empty() ? std::string("unknown") : e.Get("token");
  user.requestor = true;
  std::string client = e.Get("client").empty() ? e.Get("peer") : e.Get("client");
  // A summary of repeated refusals names the "address" (no port).
  user.nap_id = client.empty() ? e.Get("address") : HostOfPeer(client);
  user.nap_type = user.nap_id.empty() ? 0 : (LooksLikeIp(user.nap_id) ? 2 : 1);
  m->participants.push_back(user);
  m->participants.push_back(Self(our_ae, source, false, &kRoleApplication));
  m->request = e.Get("method") + " " + e.Get("path");
}

// The shape of `e`'s message; false for a record that is not sent (a
// rotation segment, an unknown kind).
bool ShapeOf(const AtnaEvent& e, const AtnaSource& source, MessageShape* m) {
  const std::string result = e.Get("result");
  const std::string our_ae = source.ae_title.empty() ? std::string("RELAIS") : source.ae_title;
  const std::string our_calling_ae = source.calling_ae_title.empty() ? our_ae : source.calling_ae_title;
  if (e.kind == "segment") {
    if (e.Get("reason") == "rotated") return false;  // the file changed, nothing happened
    m->event_id = &kApplicationActivity;
    m->event_type = &kApplicationStart;
    m->participants.push_back(Self(our_ae, source, false, &kRoleApplication));
  } else if (e.kind == "association") {
    const bool accepted = result == "accepted";
    m->event_id = accepted ? &kUserAuthentication : &kSecurityAlert;
    m->event_type = accepted ? &kLogin : &kNodeAuthentication;
    m->outcome = accepted ? 0 : 4;
    m->participants.push_back(Node(e.Get("calling_ae"), HostOfPeer(e.Get("peer")), true, nullptr));
    m->participants.push_back(Self(e.Get("called_ae").empty() ? our_ae : e.Get("called_ae"), source, false, nullptr));
  } else if (e.kind == "object") {
    m->event_id = &kInstancesTransferred;
    m->action = 'C';
    m->outcome = result == "stored" ? 0 : result == "refused" ? 4 : 8;
    m->participants.push_back(Node(e.Get("calling_ae"), HostOfPeer(e.Get("peer")), true, &kRoleSource));
    m->participants.push_back(Self(our_ae, source, false, &kRoleDestination));
    m->objects = true;
  } else if (e.kind == "delivery") {
    ShapeDelivery(e, result, our_calling_ae, source, m);
  } else if (e.kind == "rules") {
    m->event_id = &kSecurityAlert;
    m->event_type = &kSoftwareConfiguration;
    m->outcome = result == "ok" ? 0 : 4;
    m->participants.push_back(Self(our_ae, source, true, &kRoleApplication));
  } else if (e.kind == "admin") {
    ShapeAdmin(e, result, our_ae, source, m);
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::string AtnaAuditMessage(const AtnaEvent& e, const AtnaSource& source, bool* failed) {
  MessageShape m;
  if (!ShapeOf(e, source, &m)) return "";
  if (failed != nullptr) *failed = m.outcome != 0;

  std::string x;
  x.reserve(1536);
  x += "<AuditMessage><EventIdentification EventActionCode=\"";
  x.push_back(m.action);
  x += "\"";
  AppendAttr(&x, "EventDateTime", IsoTime(e.unix_ms));  // PS3.15 A.5.2.5: with the zone (Z)
  x += " EventOutcomeIndicator=\"" + std::to_string(m.outcome) + "\">";
  AppendCode(&x, "EventID", *m.event_id);
  if (m.event_type != nullptr) AppendCode(&x, "EventTypeCode", *m.event_type);
  std::string description = Description(e);
  if (m.outcome != 0 && !description.empty()) {
    x += "<EventOutcomeDescription>" + XmlEscape(description) + "</EventOutcomeDescription>";
  }
  x += "</EventIdentification>";
  for (const Participant& p : m.participants) AppendParticipant(&x, p);
  x += "<AuditSourceIdentification";
  AppendAttr(&x, "AuditSourceID", source.hostname.empty() ? std::string("relais") : source.hostname);
  x += "><AuditSourceTypeCode csd-code=\"4\"/></AuditSourceIdentification>";  // 4: application server process
  if (m.objects) AppendObjects(&x, e);
  if (m.request.size() > 1) {
    // The request acted on: a system object named by its URI (RFC 3881 ID type 12).
    x += "<ParticipantObjectIdentification";
    AppendAttr(&x, "ParticipantObjectID", m.request);
    x += " ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"13\">";
    AppendCode(&x, "ParticipantObjectIDTypeCode", kIdUri);
    x += "</ParticipantObjectIdentification>";
  }
  x += "</AuditMessage>";
  return x;
}

std::string SyslogMessage(int facility, int severity, int64_t unix_ms, std::string_view hostname,
                          std::string_view app_name, std::string_view procid, std::string_view msgid,
                          std::string_view msg) {
  // RFC 5424 6.2.1: PRIVAL = facility * 8 + severity.
  std::string out = "<" + std::to_string(facility * 8 + severity) + ">1 ";
  out += IsoTime(unix_ms);  // 6.2.3: FULL-DATE "T" FULL-TIME, here in UTC with milliseconds
  out += " " + PrintUsAscii(hostname, 255);
  out += " " + PrintUsAscii(app_name, 48);
  out += " " + PrintUsAscii(procid, 128);
  out += " " + PrintUsAscii(msgid, 32);
  out += " - ";  // STRUCTURED-DATA: NILVALUE
  out += kBom;   // 6.4: MSG-UTF8 starts with the BOM
  out.append(msg);
  return out;
}

std::string OctetCountingFrame(std::string_view msg) { return std::to_string(msg.size()) + " " + std::string(msg); }

Result<SyslogTarget> ParseSyslogTarget(const std::string& url) {
  SyslogTarget t;
  std::string rest;
  if (url.rfind("udp://", 0) == 0) {
    rest = url.substr(6);
  } else if (url.rfind("tcp://", 0) == 0) {
    t.tcp = true;
    rest = url.substr(6);
  } else {
    return Status::InvalidArgument("syslog target '" + url + "' is not udp://HOST:PORT or tcp://HOST:PORT");
  }
  std::string port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return Status::InvalidArgument("syslog target '" + url + "': bad [IPv6]:PORT");
    }
    t.host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return Status::InvalidArgument("syslog target '" + url + "' has no :PORT");
    t.host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (t.host.empty() || t.host.find_first_of("/ ") != std::string::npos) {
    return Status::InvalidArgument("syslog target '" + url + "' has no valid host");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) == 0 || std::stoul(port) > 65535) {
    return Status::InvalidArgument("syslog target '" + url + "' has no valid port (1-65535)");
  }
  t.port = static_cast<uint16_t>(std::stoul(port));
  return t;
}

// ---- AtnaExporter -------------------------------------------------------------

AtnaExporter::AtnaExporter(Options options) : options_(std::move(options)), procid_(std::to_string(getpid())) {
  thread_ = std::thread([this] { Run(); });
}

AtnaExporter::~AtnaExporter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  CloseSocket();
}

void AtnaExporter::Submit(AtnaEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return;
  if (queue_.size() >= options_.max_queue) {
    NoteDrop(1, "queue full (" + std::to_string(options_.max_queue) + " waiting)");
    return;
  }
  queue_.push_back(std::move(event));
  cv_.notify_one();
}

uint64_t AtnaExporter::sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sent_;
}

uint64_t AtnaExporter::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

void AtnaExporter::NoteDrop(uint64_t n, const std::string& why) {
  dropped_ += n;
  const int64_t now = NowMs();
  if (last_drop_log_ms_ == 0 || now - last_drop_log_ms_ >= 60000) {
    RLOG_WARN("event=atna-dropped target=%s:%s:%u dropped=%llu since_last=%llu reason=\"%s\"",
              options_.target.tcp ? "tcp" : "udp", options_.target.host.c_str(), options_.target.port,
              static_cast<unsigned long long>(dropped_), static_cast<unsigned long long>(dropped_ - dropped_logged_),
              why.c_str());
    last_drop_log_ms_ = now;
    dropped_logged_ = dropped_;
  }
}

void AtnaExporter::CloseSocket() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool AtnaExporter::Connect(int64_t deadline_ms) {
  CloseSocket();
  addrinfo hints{};
  hints.ai_socktype = options_.target.tcp ? SOCK_STREAM : SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(options_.target.port);
  if (getaddrinfo(options_.target.host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    errno = EHOSTUNREACH;
    return false;
  }
  for (addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int wait = static_cast<int>(std::max<int64_t>(0, deadline_ms - NowMs()));
      int err = ETIMEDOUT;
      if (::poll(&p, 1, wait) == 1) {
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      fd_ = fd;
    } else {
      int err = errno;
      ::close(fd);
      errno = err;
    }
  }
  freeaddrinfo(res);
  return fd_ >= 0;
}

bool AtnaExporter::SendOne(const std::string& bytes, int64_t deadline_ms) {
  if (fd_ >= 0 && options_.target.tcp) {
    // A collector that closed its end shows as readable with EOF.
    pollfd p{fd_, POLLIN, 0};
    char c;
    if (::poll(&p, 1, 0) == 1 && ::recv(fd_, &c, 1, MSG_DONTWAIT | MSG_PEEK) <= 0) CloseSocket();
  }
  if (fd_ < 0 && !Connect(deadline_ms)) return false;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      if (!options_.target.tcp) break;  // a datagram goes whole or not at all
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      int wait = static_cast<int>(std::max<int64_t>(0, deadline_ms - NowMs()));
      if (wait > 0 && ::poll(&p, 1, wait) == 1) continue;
      errno = ETIMEDOUT;
    }
    int err = errno;
    // UDP: a refused earlier datagram surfaces here; the socket stays usable.
    if (options_.target.tcp || done == 0) CloseSocket();
    errno = err;
    return false;
  }
  return true;
}

void AtnaExporter::Run() {
  int64_t backoff_ms = 0;      // TCP: wait before the next connect
  int64_t retry_at_ms = 0;     // monotonic
  int64_t drain_deadline = 0;  // monotonic; set once stop_ is seen
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stop_ && drain_deadline == 0) drain_deadline = NowMs() + options_.drain_ms;
    if (stop_ && (queue_.empty() || NowMs() >= drain_deadline)) break;
    if (queue_.empty()) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      continue;
    }
    if (NowMs() < retry_at_ms) {
      if (stop_) break;  // down at shutdown: do not wait for it
      cv_.wait_for(lock, std::chrono::milliseconds(retry_at_ms - NowMs()), [this] { return stop_; });
      continue;
    }
    AtnaEvent e = queue_.front();  // stays queued until sent (TCP retries it)
    lock.unlock();
    bool failed = false;
    std::string xml = AtnaAuditMessage(e, options_.source, &failed);
    std::string msg;
    bool sent = true;
    std::string why;
    bool too_large = false;  // for UDP: dropped, never retried
    if (!xml.empty()) {
      msg = SyslogMessage(kFacilityAuth, failed ? kSeverityWarning : kSeverityNotice, e.unix_ms,
                          options_.source.hostname, "relais", procid_, "IHE+RFC-3881", xml);
      if (options_.target.tcp) msg = OctetCountingFrame(msg);
      if (!options_.target.tcp && msg.size() > kMaxDatagram) {
        sent = false;
        too_large = true;
        why = "message of " + std::to_string(msg.size()) + " bytes is too large for UDP";
      } else {
        const bool was_connected = fd_ >= 0;
        int64_t deadline = NowMs() + options_.io_timeout_ms;
        if (stop_) deadline = std::min(deadline, drain_deadline);
        sent = SendOne(msg, deadline);
        if (!sent) why = std::strerror(errno);
        if (sent && options_.target.tcp && !was_connected) {
          RLOG_INFO("event=atna-connected target=tcp:%s:%u", options_.target.host.c_str(), options_.target.port);
        }
      }
    }
    lock.lock();
    if (sent) {
      if (!xml.empty()) ++sent_;
      queue_.pop_front();
      backoff_ms = 0;
    } else if (options_.target.tcp && !too_large) {
      // Keep the event; try again after a pause that doubles up to the cap.
      backoff_ms = backoff_ms == 0 ? 500 : std::min(backoff_ms * 2, options_.max_backoff_ms);
      retry_at_ms = NowMs() + backoff_ms;
      if (queue_.size() >= options_.max_queue) {
        queue_.pop_front();
        NoteDrop(1, "collector unreachable: " + why);
      } else if (last_drop_log_ms_ == 0 || NowMs() - last_drop_log_ms_ >= 60000) {
        RLOG_WARN("event=atna-send-failed target=tcp:%s:%u queued=%zu retry_in_ms=%lld reason=\"%s\"",
                  options_.target.host.c_str(), options_.target.port, queue_.size(), static_cast<long long>(backoff_ms),
                  why.c_str());
        last_drop_log_ms_ = NowMs();
      }
    } else {
      queue_.pop_front();
      NoteDrop(1, why);
    }
  }
  if (!queue_.empty()) NoteDrop(queue_.size(), "not sent before shutdown");
  queue_.clear();
}

}  // namespace relais::router
