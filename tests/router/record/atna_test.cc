// Tests for the IHE ATNA export (router/record/atna.h): the DICOM audit message
// (PS3.15 A.5), RFC 5424 framing, and delivery over UDP and TCP.
#include "router/record/atna.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "router/record/audit.h"

namespace relais::router {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// A Patient ID that tries to break out of the attribute and the element.
const char kHostilePid[] = "P<1>&\"x'</AuditMessage><!--";

AtnaEvent ObjectEvent(const std::string& pid = "PID-1", const std::string& result = "stored") {
  AtnaEvent e;
  e.kind = "object";
  e.seq = 7;
  e.unix_ms = 1795860192123;  // 2026-11-28T10:03:12.123Z
  e.fields = {{"calling_ae", "CTSCAN1"},
              {"peer", "10.1.2.3:40112"},
              {"patient_id", pid},
              {"study_instance_uid", "1.2.3.4"},
              {"sop_instance_uid", "1.2.3.4.5"},
              {"result", result},
              {"status", "0x0000"}};
  return e;
}

AtnaSource Source() {
  AtnaSource s;
  s.ae_title = "RELAIS";
  s.hostname = "router1.example";
  return s;
}

// A small XML 1.0 well-formedness check (elements nest, attributes quoted,
// no raw '<' or stray '&' in text or values, only the five predefined and
// numeric entities). Returns "" or what is wrong.
std::string XmlProblem(const std::string& x) {
  std::vector<std::string> open;
  size_t i = 0;
  auto entity_ok = [&](size_t at) {
    size_t semi = x.find(';', at);
    if (semi == std::string::npos || semi - at > 10) return false;
    std::string ent = x.substr(at + 1, semi - at - 1);
    if (ent == "amp" || ent == "lt" || ent == "gt" || ent == "quot" || ent == "apos") return true;
    return ent.size() > 1 && ent[0] == '#' && ent.find_first_not_of("0123456789", 1) == std::string::npos;
  };
  bool root_done = false;
  while (i < x.size()) {
    if (x[i] == '<') {
      if (root_done) return "content after the root element";
      size_t end = x.find('>', i);
      if (end == std::string::npos) return "unterminated tag";
      std::string tag = x.substr(i + 1, end - i - 1);
      if (tag.rfind("!--", 0) == 0 || tag.rfind("?", 0) == 0) return "comment or PI: " + tag;
      if (!tag.empty() && tag[0] == '/') {
        if (open.empty() || open.back() != tag.substr(1)) return "mismatched </" + tag.substr(1) + ">";
        open.pop_back();
        if (open.empty()) root_done = true;
      } else {
        bool self = !tag.empty() && tag.back() == '/';
        if (self) tag.pop_back();
        size_t sp = tag.find(' ');
        std::string name = tag.substr(0, sp);
        if (name.empty()) return "empty tag name";
        // Attributes: name="value" pairs, values without '<' and with good entities.
        size_t k = sp == std::string::npos ? tag.size() : sp;
        while (k < tag.size()) {
          while (k < tag.size() && tag[k] == ' ') ++k;
          if (k >= tag.size()) break;
          size_t eq = tag.find("=\"", k);
          if (eq == std::string::npos) return "attribute without =\" in <" + name + ">";
          size_t close = tag.find('"', eq + 2);
          if (close == std::string::npos) return "unterminated attribute in <" + name + ">";
          for (size_t v = eq + 2; v < close; ++v) {
            if (tag[v] == '<') return "raw '<' in an attribute of <" + name + ">";
            if (tag[v] == '&') {
              size_t abs = i + 1 + v;
              if (!entity_ok(abs)) return "bad entity in an attribute of <" + name + ">";
            }
          }
          k = close + 1;
        }
        if (self) {
          if (open.empty()) root_done = true;
        } else {
          open.push_back(name);
        }
      }
      i = end + 1;
    } else {
      if (open.empty()) return "text outside the root element";
      if (x[i] == '&' && !entity_ok(i)) return "bad entity in text";
      if (x[i] == '>') return "raw '>' in text";
      ++i;
    }
  }
  return open.empty() && root_done ? "" : "unclosed elements";
}

// xmllint (Debian libxml2-utils), when installed: a real parser's opinion.
void XmllintAgrees(const std::string& xml) {
  if (!std::filesystem::exists("/usr/bin/xmllint")) return;
  std::string path = (std::filesystem::temp_directory_path() / ("relais_atna_" + std::to_string(getpid()) + ".xml"));
  {
    std::ofstream out(path, std::ios::binary);
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" << xml;
  }
  std::string cmd = "/usr/bin/xmllint --noout " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int rc = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << out << "\n" << xml;
}

// The value of attribute `name` in the first element <`element` ...>.
std::string Attr(const std::string& xml, const std::string& element, const std::string& name, size_t from = 0) {
  size_t at = xml.find("<" + element + " ", from);
  if (at == std::string::npos) return "<none>";
  size_t end = xml.find('>', at);
  std::string tag = xml.substr(at, end - at);
  size_t a = tag.find(" " + name + "=\"");
  if (a == std::string::npos) return "<none>";
  a += name.size() + 3;
  return tag.substr(a, tag.find('"', a) - a);
}

// ---- escaping ---------------------------------------------------------------------

TEST(XmlEscapeTest, EscapesMarkupAndReplacesWhatXmlCannotHold) {
  EXPECT_EQ(XmlEscape("P<1>&\"x'"), "P&lt;1&gt;&amp;&quot;x&apos;");
  EXPECT_EQ(XmlEscape("plain 1.2.3"), "plain 1.2.3");
  EXPECT_EQ(XmlEscape("a\tb\nc\r"), "a&#9;b&#10;c&#13;");
  // C0 controls are not XML 1.0 Chars: U+FFFD (EF BF BD).
  EXPECT_EQ(XmlEscape(std::string("a\x01"
                                  "b\x00",
                                  4)),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
  // Well-formed UTF-8 stays: e-acute (C3 A9), euro (E2 82 AC), U+1F600 (F0 9F 98 80).
  EXPECT_EQ(XmlEscape("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"), "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  // ISO 8859-1 "M\xFCller" (a Patient ID not in UTF-8): the byte becomes U+FFFD.
  EXPECT_EQ(XmlEscape("M\xFCller"), "M\xEF\xBF\xBDller");
  // Overlong '/' (C0 AF), a surrogate (ED A0 80), truncated sequences, U+FFFE (EF BF BE).
  EXPECT_EQ(XmlEscape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(XmlEscape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(XmlEscape("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(XmlEscape("\xEF\xBF\xBE"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  // Past U+10FFFF (F4 90 80 80): four replacement characters.
  EXPECT_EQ(XmlEscape("\xF4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(XmlEscapeTest, EveryByteValueGivesWellFormedText) {
  for (int b = 0; b < 256; ++b) {
    std::string v = "<A x=\"" + XmlEscape(std::string(1, static_cast<char>(b))) + "\">" +
                    XmlEscape(std::string(1, static_cast<char>(b))) + "</A>";
    EXPECT_EQ(XmlProblem(v), "") << b;
  }
}

// ---- the audit message ---------------------------------------------------------------

TEST(AtnaMessageTest, ObjectReceivedIsDicomInstancesTransferred) {
  bool failed = true;
  std::string x = AtnaAuditMessage(ObjectEvent(), Source(), &failed);
  EXPECT_FALSE(failed);
  EXPECT_EQ(XmlProblem(x), "") << x;
  XmllintAgrees(x);
  EXPECT_THAT(x, StartsWith("<AuditMessage><EventIdentification EventActionCode=\"C\" "
                            "EventDateTime=\"2026-11-28T10:03:12.123Z\" EventOutcomeIndicator=\"0\">"
                            "<EventID csd-code=\"110104\" codeSystemName=\"DCM\" "
                            "originalText=\"DICOM Instances Transferred\"/></EventIdentification>"));
  // The modality sent (requestor, source), we received (destination).
  EXPECT_THAT(x, HasSubstr("<ActiveParticipant UserID=\"CTSCAN1\" AlternativeUserID=\"AETITLES=CTSCAN1\" "
                           "UserIsRequestor=\"true\" NetworkAccessPointID=\"10.1.2.3\" "
                           "NetworkAccessPointTypeCode=\"2\"><RoleIDCode csd-code=\"110153\" codeSystemName=\"DCM\" "
                           "originalText=\"Source Role ID\"/></ActiveParticipant>"));
  EXPECT_THAT(x, HasSubstr("<ActiveParticipant UserID=\"RELAIS\" AlternativeUserID=\"AETITLES=RELAIS\" "
                           "UserName=\"relais\" UserIsRequestor=\"false\" NetworkAccessPointID=\"router1.example\" "
                           "NetworkAccessPointTypeCode=\"1\"><RoleIDCode csd-code=\"110152\""));
  EXPECT_THAT(x, HasSubstr("<AuditSourceIdentification AuditSourceID=\"router1.example\">"
                           "<AuditSourceTypeCode csd-code=\"4\"/></AuditSourceIdentification>"));
  EXPECT_THAT(x, HasSubstr("<ParticipantObjectIdentification ParticipantObjectID=\"1.2.3.4\" "
                           "ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">"
                           "<ParticipantObjectIDTypeCode csd-code=\"110180\" codeSystemName=\"DCM\" "
                           "originalText=\"Study Instance UID\"/><ParticipantObjectDescription>"
                           "<SOPClass NumberOfInstances=\"1\"><Instance UID=\"1.2.3.4.5\"/></SOPClass>"
                           "</ParticipantObjectDescription></ParticipantObjectIdentification>"));
  EXPECT_THAT(x, HasSubstr("<ParticipantObjectIdentification ParticipantObjectID=\"PID-1\" "
                           "ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">"
                           "<ParticipantObjectIDTypeCode csd-code=\"2\" codeSystemName=\"RFC-3881\" "
                           "originalText=\"Patient Number\"/></ParticipantObjectIdentification></AuditMessage>"));
  // Schema order (PS3.15 A.5.1): event, participants, source, objects.
  EXPECT_LT(x.find("<ActiveParticipant"), x.find("<AuditSourceIdentification"));
  EXPECT_LT(x.find("<AuditSourceIdentification"), x.find("<ParticipantObjectIdentification"));
}

TEST(AtnaMessageTest, HostilePatientIdIsEscaped) {
  std::string x = AtnaAuditMessage(ObjectEvent(kHostilePid), Source(), nullptr);
  EXPECT_EQ(XmlProblem(x), "") << x;
  XmllintAgrees(x);
  EXPECT_THAT(x, HasSubstr("ParticipantObjectID=\"P&lt;1&gt;&amp;&quot;x&apos;&lt;/AuditMessage&gt;&lt;!--\""));
  EXPECT_EQ(x.find("</AuditMessage>"), x.size() - 15);  // only the real end tag
  // In every value: a hostile AE title, peer and reason too.
  AtnaEvent e;
  e.kind = "association";
  e.unix_ms = 1000;
  e.fields = {{"calling_ae", "A\"><B>"},
              {"called_ae", "X&Y"},
              {"peer", "[::1]:5"},
              {"result", "rejected"},
              {"reason", "called AE title '<script>' is not ours\x01"}};
  x = AtnaAuditMessage(e, Source(), nullptr);
  EXPECT_EQ(XmlProblem(x), "") << x;
  XmllintAgrees(x);
  EXPECT_EQ(Attr(x, "ActiveParticipant", "UserID"), "A&quot;&gt;&lt;B&gt;");
  EXPECT_EQ(Attr(x, "ActiveParticipant", "NetworkAccessPointID"), "::1");
}

TEST(AtnaMessageTest, EventsMapToTheirDicomCodes) {
  struct Case {
    std::string kind;
    std::vector<std::pair<std::string, std::string>> fields;
    std::string event_id;
    std::string event_type;  // "" = none
    std::string action;
    std::string outcome;
  };
  const std::vector<Case> cases = {
      {"segment", {{"reason", "new_file"}}, "110100", "110120", "E", "0"},
      {"association",
       {{"calling_ae", "M1"}, {"called_ae", "RELAIS"}, {"peer", "127.0.0.1:9"}, {"result", "accepted"}},
       "110114",
       "110122",
       "E",
       "0"},
      {"association",
       {{"calling_ae", "M2"},
        {"called_ae", "WRONG"},
        {"peer", "127.0.0.1:9"},
        {"result", "rejected"},
        {"reason", "called AE title 'WRONG' is not ours"}},
       "110113",
       "110126",
       "E",
       "4"},
      {"object", {{"calling_ae", "M1"}, {"result", "refused"}, {"status", "0xA700"}}, "110104", "", "C", "4"},
      {"object", {{"calling_ae", "M1"}, {"result", "failed"}, {"status", "0xA700"}}, "110104", "", "C", "8"},
      {"delivery", {{"destination", "archive"}, {"result", "success"}}, "110104", "", "R", "0"},
      {"delivery", {{"destination", "archive"}, {"result", "retry"}}, "110104", "", "R", "4"},
      {"delivery", {{"destination", "archive"}, {"result", "dead"}}, "110104", "", "R", "8"},
      {"rules", {{"action", "reload"}, {"result", "failed"}}, "110113", "110131", "E", "4"},
      {"admin",
       {{"token", ""},
        {"client", "10.0.0.9:5000"},
        {"method", "GET"},
        {"path", "/api/v1/status"},
        {"result", "refused"},
        {"status", "401"}},
       "110114",
       "110122",
       "E",
       "4"},
      {"admin",
       {{"token", "night-op"},
        {"role", "viewer"},
        {"method", "POST"},
        {"path", "/api/v1/purge"},
        {"result", "refused"},
        {"status", "403"}},
       "110113",
       "110132",
       "E",
       "4"},
      {"admin",
       {{"token", "ops"},
        {"method", "POST"},
        {"path", "/api/v1/destinations/archive/pause"},
        {"result", "ok"},
        {"status", "200"},
        {"detail", "paused archive"}},
       "110113",
       "110131",
       "E",
       "0"},
      {"admin",
       {{"token", "ops"}, {"method", "POST"}, {"path", "/api/v1/retry"}, {"result", "refused"}, {"status", "404"}},
       "110113",
       "110131",
       "E",
       "4"},
      {"admin",
       {{"token", "ops"},
        {"method", "POST"},
        {"path", "/api/v1/rules/reload"},
        {"result", "failed"},
        {"status", "500"}},
       "110113",
       "110131",
       "E",
       "8"},
  };
  for (const Case& c : cases) {
    AtnaEvent e;
    e.kind = c.kind;
    e.unix_ms = 1000;
    e.fields = c.fields;
    bool failed = false;
    std::string x = AtnaAuditMessage(e, Source(), &failed);
    SCOPED_TRACE(c.kind + " " + e.Get("result"));
    EXPECT_EQ(XmlProblem(x), "") << x;
    EXPECT_EQ(Attr(x, "EventID", "csd-code"), c.event_id);
    EXPECT_EQ(Attr(x, "EventTypeCode", "csd-code"), c.event_type.empty() ? "<none>" : c.event_type);
    EXPECT_EQ(Attr(x, "EventIdentification", "EventActionCode"), c.action);
    EXPECT_EQ(Attr(x, "EventIdentification", "EventOutcomeIndicator"), c.outcome);
    EXPECT_EQ(failed, c.outcome != "0");
    if (c.outcome != "0") {
      EXPECT_THAT(x, HasSubstr("<EventOutcomeDescription>"));
    }
    // Exactly one requestor (none for the application starting by itself).
    size_t requestors = 0;
    for (size_t at = x.find("UserIsRequestor=\"true\""); at != std::string::npos;
         at = x.find("UserIsRequestor=\"true\"", at + 1)) {
      ++requestors;
    }
    EXPECT_EQ(requestors, c.kind == "segment" ? 0u : 1u) << x;
  }
}

TEST(AtnaMessageTest, DeliveryNamesTheDestinationNodeAndUsAsRequestor) {
  AtnaEvent e;
  e.kind = "delivery";
  e.unix_ms = 1000;
  e.fields = {{"destination", "archive"},    {"association", "D3 ARCHIVE@10.0.0.5:104"},
              {"patient_id", "P1"},          {"study_instance_uid", "1.2"},
              {"sop_instance_uid", "1.2.3"}, {"result", "success"}};
  AtnaSource s = Source();
  s.calling_ae_title = "RELAIS_OUT";
  std::string x = AtnaAuditMessage(e, s, nullptr);
  EXPECT_THAT(x, HasSubstr("<ActiveParticipant UserID=\"RELAIS_OUT\" AlternativeUserID=\"AETITLES=RELAIS_OUT\" "
                           "UserName=\"relais\" UserIsRequestor=\"true\""));
  EXPECT_THAT(x, HasSubstr("<ActiveParticipant UserID=\"ARCHIVE\" AlternativeUserID=\"AETITLES=ARCHIVE\" "
                           "UserName=\"archive\" UserIsRequestor=\"false\" NetworkAccessPointID=\"10.0.0.5\" "
                           "NetworkAccessPointTypeCode=\"2\"><RoleIDCode csd-code=\"110152\""));
  EXPECT_THAT(x, HasSubstr("ParticipantObjectID=\"P1\""));
}

TEST(AtnaMessageTest, AdminRequestNamesTheTokenClientAndRequest) {
  AtnaEvent e;
  e.kind = "admin";
  e.unix_ms = 1000;
  e.fields = {{"token", "ops<1>"},
              {"role", "operator"},
              {"client", "192.0.2.7:51000"},
              {"method", "POST"},
              {"path", "/api/v1/destinations/a&b/pause"},
              {"result", "ok"},
              {"status", "200"},
              {"detail", "paused a&b"}};
  std::string x = AtnaAuditMessage(e, Source(), nullptr);
  EXPECT_EQ(XmlProblem(x), "") << x;
  XmllintAgrees(x);
  EXPECT_THAT(x, HasSubstr("<ActiveParticipant UserID=\"ops&lt;1&gt;\" UserIsRequestor=\"true\" "
                           "NetworkAccessPointID=\"192.0.2.7\" NetworkAccessPointTypeCode=\"2\"/>"));
  EXPECT_THAT(x, HasSubstr("<ParticipantObjectIdentification ParticipantObjectID=\"POST "
                           "/api/v1/destinations/a&amp;b/pause\" ParticipantObjectTypeCode=\"2\" "
                           "ParticipantObjectTypeCodeRole=\"13\"><ParticipantObjectIDTypeCode csd-code=\"12\" "
                           "codeSystemName=\"RFC-3881\" originalText=\"URI\"/></ParticipantObjectIdentification>"));
}

TEST(AtnaMessageTest, RotationAndUnknownKindsAreNotEvents) {
  AtnaEvent e;
  e.kind = "segment";
  e.fields = {{"reason", "rotated"}, {"prev_file", "audit.jsonl.20261128T140312Z"}};
  EXPECT_EQ(AtnaAuditMessage(e, Source(), nullptr), "");
  e.kind = "something-new";
  EXPECT_EQ(AtnaAuditMessage(e, Source(), nullptr), "");
}

// ---- RFC 5424 / RFC 6587 ---------------------------------------------------------

TEST(SyslogFramingTest, Rfc5424HeaderAndPri) {
  // facility 10 (authpriv) * 8 + severity 5 (notice) = 85.
  EXPECT_EQ(SyslogMessage(10, 5, 1000, "router1", "relais", "42", "IHE+RFC-3881", "<A/>"),
            "<85>1 1970-01-01T00:00:01.000Z router1 relais 42 IHE+RFC-3881 - \xEF\xBB\xBF<A/>");
  EXPECT_THAT(SyslogMessage(10, 4, 1000, "h", "a", "1", "m", ""), StartsWith("<84>1 "));
  EXPECT_THAT(SyslogMessage(0, 0, 1000, "h", "a", "1", "m", ""), StartsWith("<0>1 "));
  EXPECT_THAT(SyslogMessage(23, 7, 1000, "h", "a", "1", "m", ""), StartsWith("<191>1 "));
  // Empty fields are the NILVALUE; spaces and non-ASCII are not PRINTUSASCII; lengths are capped.
  EXPECT_EQ(SyslogMessage(10, 5, 1000, "", "my app", "", std::string(40, 'm'), "x"),
            "<85>1 1970-01-01T00:00:01.000Z - my_app - " + std::string(32, 'm') + " - \xEF\xBB\xBFx");
  EXPECT_EQ(SyslogMessage(10, 5, 1000, "h\xC3\xA9", std::string(60, 'a'), "1", "m", "x"),
            "<85>1 1970-01-01T00:00:01.000Z h__ " + std::string(48, 'a') + " 1 m - \xEF\xBB\xBFx");
}

TEST(SyslogFramingTest, OctetCountingCountsOctets) {
  EXPECT_EQ(OctetCountingFrame("abc"), "3 abc");
  EXPECT_EQ(OctetCountingFrame(""), "0 ");
  EXPECT_EQ(OctetCountingFrame("\xC3\xA9"), "2 \xC3\xA9");  // one character, two octets
  std::string big(12345, 'x');
  EXPECT_EQ(OctetCountingFrame(big), "12345 " + big);
}

TEST(SyslogFramingTest, ParsesTargets) {
  Result<SyslogTarget> t = ParseSyslogTarget("udp://127.0.0.1:514");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->tcp);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 514);
  t = ParseSyslogTarget("tcp://[::1]:6514");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->tcp);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 6514);
  t = ParseSyslogTarget("tcp://collector.example:601");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "collector.example");
  for (const char* bad :
       {"", "udp://", "udp://host", "udp://:514", "udp://host:0", "udp://host:65536", "udp://host:99999999999999",
        "udp://host:5x", "tls://host:6514", "http://host:80/x", "tcp://[::1]", "tcp://[::1:514", "udp://a b:514"}) {
    EXPECT_EQ(ParseSyslogTarget(bad).status().code(), Status::Code::kInvalidArgument) << bad;
  }
}

// ---- delivery ------------------------------------------------------------------------

// A socket bound to 127.0.0.1 on a free port.
int BoundSocket(int type, uint16_t* port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return -1;
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  if (type == SOCK_STREAM) ::listen(fd, 4);
  return fd;
}

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

std::string RecvDatagram(int fd, int timeout_ms = 5000) {
  if (!Readable(fd, timeout_ms)) return "";
  std::string buf(70000, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  return n > 0 ? buf.substr(0, static_cast<size_t>(n)) : "";
}

// Reads one RFC 6587 octet-counted frame from a stream.
bool ReadFrame(int fd, std::string* pending, std::string* msg, int timeout_ms = 5000) {
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    size_t sp = pending->find(' ');
    if (sp != std::string::npos) {
      size_t len = std::stoul(pending->substr(0, sp));
      if (pending->size() >= sp + 1 + len) {
        *msg = pending->substr(sp + 1, len);
        pending->erase(0, sp + 1 + len);
        return true;
      }
    }
    int64_t left = deadline - NowMs();
    if (left <= 0 || !Readable(fd, static_cast<int>(left))) return false;
    char buf[8192];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    pending->append(buf, static_cast<size_t>(n));
  }
}

// The XML of a syslog message, after the header and the BOM.
std::string XmlOf(const std::string& syslog) {
  size_t at = syslog.find(" - \xEF\xBB\xBF");
  return at == std::string::npos ? "" : syslog.substr(at + 6);
}

TEST(AtnaExporterTest, UdpSendsOneMessagePerDatagram) {
  uint16_t port = 0;
  int rx = BoundSocket(SOCK_DGRAM, &port);
  ASSERT_GE(rx, 0);
  {
    AtnaExporter::Options o;
    o.target = *ParseSyslogTarget("udp://127.0.0.1:" + std::to_string(port));
    o.source = Source();
    AtnaExporter exporter(o);
    exporter.Submit(ObjectEvent("P1"));
    exporter.Submit(ObjectEvent(kHostilePid, "failed"));
    exporter.Submit(ObjectEvent("P3"));
    for (const char* pid : {"P1", "hostile", "P3"}) {
      std::string d = RecvDatagram(rx);
      SCOPED_TRACE(pid);
      ASSERT_FALSE(d.empty());
      // A failed transfer is a warning (84), the others notices (85).
      EXPECT_THAT(d,
                  StartsWith(std::string(pid) == "hostile" ? "<84>1 2026-11-28T10:03:12.123Z router1.example relais "
                                                           : "<85>1 2026-11-28T10:03:12.123Z router1.example relais "));
      EXPECT_THAT(d, HasSubstr(" IHE+RFC-3881 - \xEF\xBB\xBF<AuditMessage>"));
      std::string x = XmlOf(d);
      EXPECT_EQ(XmlProblem(x), "") << x;  // whole: one message, one datagram
    }
    EXPECT_FALSE(Readable(rx, 100));
    const int64_t deadline = NowMs() + 2000;
    while (exporter.sent() < 3 && NowMs() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(exporter.sent(), 3u);
    EXPECT_EQ(exporter.dropped(), 0u);
  }
  ::close(rx);
}

TEST(AtnaExporterTest, TcpUsesOctetCountingAndReconnects) {
  uint16_t port = 0;
  int lfd = BoundSocket(SOCK_STREAM, &port);
  ASSERT_GE(lfd, 0);
  AtnaExporter::Options o;
  o.target = *ParseSyslogTarget("tcp://127.0.0.1:" + std::to_string(port));
  o.source = Source();
  AtnaExporter exporter(o);
  exporter.Submit(ObjectEvent("P1"));
  exporter.Submit(ObjectEvent("P2"));
  ASSERT_TRUE(Readable(lfd, 5000));
  int c1 = ::accept(lfd, nullptr, nullptr);
  ASSERT_GE(c1, 0);
  std::string pending, msg;
  ASSERT_TRUE(ReadFrame(c1, &pending, &msg));
  EXPECT_THAT(msg, StartsWith("<85>1 "));
  EXPECT_THAT(msg, HasSubstr("ParticipantObjectID=\"P1\""));
  EXPECT_EQ(XmlProblem(XmlOf(msg)), "");
  ASSERT_TRUE(ReadFrame(c1, &pending, &msg));
  EXPECT_THAT(msg, HasSubstr("ParticipantObjectID=\"P2\""));
  // The collector restarts: the exporter notices the closed connection and connects again.
  ::close(c1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  exporter.Submit(ObjectEvent("P3"));
  ASSERT_TRUE(Readable(lfd, 10000));
  int c2 = ::accept(lfd, nullptr, nullptr);
  ASSERT_GE(c2, 0);
  pending.clear();
  ASSERT_TRUE(ReadFrame(c2, &pending, &msg, 10000));
  EXPECT_THAT(msg, HasSubstr("ParticipantObjectID=\"P3\""));
  ::close(c2);
  ::close(lfd);
}

TEST(AtnaExporterTest, DownCollectorNeverBlocksAndDropsAreCounted) {
  for (const char* scheme : {"tcp", "udp"}) {
    SCOPED_TRACE(scheme);
    uint16_t port = 0;
    int fd = BoundSocket(std::string(scheme) == "tcp" ? SOCK_STREAM : SOCK_DGRAM, &port);
    ::close(fd);  // nobody listens there now
    AtnaExporter::Options o;
    o.target = *ParseSyslogTarget(std::string(scheme) + "://127.0.0.1:" + std::to_string(port));
    o.source = Source();
    o.max_queue = 10;
    int64_t t0 = NowMs();
    {
      AtnaExporter exporter(o);
      for (int i = 0; i < 200; ++i) exporter.Submit(ObjectEvent("P" + std::to_string(i)));
      EXPECT_LT(NowMs() - t0, 500) << "Submit() waited";
      const bool tcp = std::string(scheme) == "tcp";
      const int64_t deadline = NowMs() + 3000;
      // TCP: nothing connects, so nothing is sent; past the queue, events are dropped.
      // UDP cannot know: a datagram leaves, and only the next send hears the ICMP
      // refusal; every event is still sent or dropped, none waits.
      auto settled = [&] { return tcp ? exporter.dropped() >= 190 : exporter.sent() + exporter.dropped() == 200; };
      while (!settled() && NowMs() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      EXPECT_TRUE(settled()) << "sent " << exporter.sent() << " dropped " << exporter.dropped();
      EXPECT_GE(exporter.dropped(), tcp ? 190u : 1u);
      if (tcp) {
        EXPECT_EQ(exporter.sent(), 0u);
      }
      t0 = NowMs();
    }
    EXPECT_LT(NowMs() - t0, 2500) << "shutdown waited for a collector that is down";
  }
}

TEST(AtnaExporterTest, UnresolvableHostDropsWithoutBlocking) {
  AtnaExporter::Options o;
  o.target = *ParseSyslogTarget("udp://no-such-host.invalid:514");
  o.source = Source();
  AtnaExporter exporter(o);
  int64_t t0 = NowMs();
  exporter.Submit(ObjectEvent());
  EXPECT_LT(NowMs() - t0, 100);
  const int64_t deadline = NowMs() + 5000;
  while (exporter.dropped() < 1 && NowMs() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(exporter.dropped(), 1u);
}

// AuditLog with syslog: every record reaches the file and the collector; a
// rotation is not an event.
TEST(AtnaAuditLogTest, RecordsGoToTheFileAndToSyslog) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("relais_atna_log_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  uint16_t port = 0;
  int rx = BoundSocket(SOCK_DGRAM, &port);
  ASSERT_GE(rx, 0);
  {
    AuditLog::Options o;
    o.syslog = "udp://127.0.0.1:" + std::to_string(port);
    o.ae_title = "ROUTER";
    o.rotate_size = 300;  // rotates after (nearly) every record
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open((dir / "audit.jsonl").string(), o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    (*log)->Record(
        "association",
        {{"calling_ae", "MOD1"}, {"called_ae", "ROUTER"}, {"peer", "127.0.0.1:4000"}, {"result", "accepted"}});
    (*log)->Record("object", {{"calling_ae", "MOD1"},
                              {"peer", "127.0.0.1:4000"},
                              {"patient_id", kHostilePid},
                              {"study_instance_uid", "1.2"},
                              {"sop_instance_uid", "1.2.3"},
                              {"result", "stored"}});
    std::vector<std::string> got;
    for (int i = 0; i < 3; ++i) got.push_back(RecvDatagram(rx));
    EXPECT_THAT(got[0], HasSubstr("csd-code=\"110100\""));  // the log opened: Application Start
    EXPECT_THAT(got[1], HasSubstr("csd-code=\"110114\""));
    EXPECT_THAT(got[1], HasSubstr("UserID=\"MOD1\""));
    EXPECT_THAT(got[2], HasSubstr("csd-code=\"110104\""));
    EXPECT_THAT(got[2], HasSubstr("ParticipantObjectID=\"P&lt;1&gt;&amp;&quot;x&apos;&lt;/AuditMessage&gt;&lt;!--\""));
    EXPECT_THAT(got[2], HasSubstr("UserID=\"ROUTER\""));
    for (const std::string& g : got) EXPECT_EQ(XmlProblem(XmlOf(g)), "") << g;
    EXPECT_FALSE(Readable(rx, 200)) << "the rotated segments were sent too";
    EXPECT_GE((*log)->rotations(), 2u);
    EXPECT_EQ((*log)->atna_dropped(), 0u);
  }
  ::close(rx);
  std::filesystem::remove_all(dir);
}

TEST(AtnaAuditLogTest, DownCollectorDoesNotSlowOrFailTheAuditWrite) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("relais_atna_down_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  uint16_t port = 0;
  int fd = BoundSocket(SOCK_STREAM, &port);
  ::close(fd);
  {
    AuditLog::Options o;
    o.syslog = "tcp://127.0.0.1:" + std::to_string(port);
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open((dir / "audit.jsonl").string(), o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    const int64_t t0 = NowMs();
    for (int i = 0; i < 500; ++i) (*log)->Record("delivery", {{"destination", "a"}, {"result", "success"}});
    EXPECT_LT(NowMs() - t0, 2000);
    EXPECT_EQ((*log)->records_written(), 501u);
    EXPECT_EQ((*log)->write_failures(), 0u);
    EXPECT_EQ((*log)->atna_sent(), 0u);
  }
  Result<AuditLog::VerifyReport> r = AuditLog::Verify((dir / "audit.jsonl").string());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bad_line, 0u);
  EXPECT_EQ(r->records, 501u);
  std::filesystem::remove_all(dir);
}

TEST(AtnaAuditLogTest, HugeValuesReachTheCollectorBoundedAndRepeatsAsOneSummary) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("relais_atna_huge_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  uint16_t port = 0;
  int rx = BoundSocket(SOCK_DGRAM, &port);
  ASSERT_GE(rx, 0);
  // '<' takes 1 byte in JSON and 4 in XML: the most a bounded value can grow.
  const std::string huge(1536 * 1024, '<');
  {
    AuditLog::Options o;
    o.syslog = "udp://127.0.0.1:" + std::to_string(port);
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open((dir / "audit.jsonl").string(), o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_THAT(RecvDatagram(rx), HasSubstr("csd-code=\"110100\""));  // the log opened
    (*log)->Record("admin", {{"token", huge},
                             {"role", "operator"},
                             {"client", "192.0.2.7:51000"},
                             {"method", huge},
                             {"path", "/api/destinations/" + huge + "/pause"},
                             {"result", "refused"},
                             {"status", "404"},
                             {"detail", "no destination named " + huge}});
    std::string m = RecvDatagram(rx);
    ASSERT_FALSE(m.empty()) << "not sent (too large for a datagram?)";
    EXPECT_LT(m.size(), 32u * 1024);
    EXPECT_EQ(XmlProblem(XmlOf(m)), "");
    EXPECT_THAT(m, HasSubstr("...[cut, " + std::to_string(huge.size()) + " bytes]"));
    for (int i = 0; i < 20; ++i) {
      (*log)->RecordRefusal("admin", "192.0.2.9",
                            {{"token", ""},
                             {"client", "192.0.2.9:" + std::to_string(1000 + i)},
                             {"method", "GET"},
                             {"path", "/x"},
                             {"result", "refused"},
                             {"status", "401"},
                             {"detail", "no token"}},
                            {"token", "result", "status", "detail"});
    }
    m = RecvDatagram(rx);
    EXPECT_THAT(m, HasSubstr("csd-code=\"110114\""));  // the first refusal: a failed login
    EXPECT_FALSE(Readable(rx, 200)) << "a repeat was sent on its own";
  }  // closing writes and sends the summary
  std::string m = RecvDatagram(rx);
  EXPECT_THAT(m, HasSubstr("csd-code=\"110114\""));
  EXPECT_THAT(m, HasSubstr("NetworkAccessPointID=\"192.0.2.9\""));
  EXPECT_THAT(m, HasSubstr("repeated=19"));
  EXPECT_EQ(XmlProblem(XmlOf(m)), "");
  ::close(rx);
  Result<AuditLog::VerifyReport> r = AuditLog::Verify((dir / "audit.jsonl").string());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bad_line, 0u) << r->error;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace relais::router
