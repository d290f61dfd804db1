// The audit trail end to end (issue 5): a real `relais serve` with
// [audit] path = "audit.jsonl" records an accepted and a rejected
// association, the object received and its delivery to a storescp; the file
// verifies with `relais audit verify`, and editing one line makes it fail
// at that line. With rotate_size and syslog: the trail spans several files
// that verify as one chain, and every record also reaches a syslog receiver
// as an IHE ATNA message (PS3.15 A.5, RFC 5424 over UDP).
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

// Index of the first line with kind `kind` and every key=value of `want`; -1 if none.
int FindRecord(const std::vector<std::string>& lines, const std::string& kind,
               const std::vector<std::pair<std::string, std::string>>& want) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (JsonField(lines[i], "kind") != kind) continue;
    bool all = true;
    for (const auto& [k, v] : want) all = all && JsonField(lines[i], k) == v;
    if (all) return static_cast<int>(i);
  }
  return -1;
}

TEST(AuditTrailTest, AssociationsObjectAndDeliveryAreRecordedAndAnEditIsFound) {
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  StorescpOptions opts;
  opts.ae_title = "ARCHIVE";
  StorescpPeer peer(tmp / "peer", opts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer.port()) + "\n\n[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n");
  RelaisOptions options;
  // A relative audit path: next to the configuration file.
  options.extra = "\n[rules]\npath = \"" + rules + "\"\n\n[audit]\npath = \"audit.jsonl\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string config_dir = relais.config_path().substr(0, relais.config_path().rfind('/'));
  const std::string audit = config_dir + "/audit.jsonl";

  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", 1, &uids);
  ASSERT_EQ(files.size(), 1u);
  RunResult ok = RunCommand(
      {"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port()), files[0]}, 60);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  RunResult wrong = RunCommand(
      {"storescu", "-aet", "MODALITY2", "-aec", "WRONG", "127.0.0.1", std::to_string(relais.port()), files[0]}, 60);
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;

  // Wait for the delivery's record (written when the attempt is recorded).
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && ReadFile(audit).find("\"kind\":\"delivery\"") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(peer.Received().count(uids[0]), 1u) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  std::vector<std::string> lines = SplitLines(ReadFile(audit));
  ASSERT_GE(lines.size(), 6u) << ReadFile(audit);
  EXPECT_EQ(JsonField(lines[0], "kind"), "segment");
  EXPECT_EQ(JsonField(lines[0], "reason"), "new_file");
  EXPECT_GE(FindRecord(lines, "rules", {{"action", "load"}, {"result", "ok"}, {"path", rules}}), 0);

  int accepted =
      FindRecord(lines, "association", {{"calling_ae", "MODALITY1"}, {"called_ae", "RELAIS"}, {"result", "accepted"}});
  ASSERT_GE(accepted, 0) << ReadFile(audit);
  EXPECT_THAT(JsonField(lines[accepted], "peer"), StartsWith("127.0.0.1:"));

  int rejected =
      FindRecord(lines, "association", {{"calling_ae", "MODALITY2"}, {"called_ae", "WRONG"}, {"result", "rejected"}});
  ASSERT_GE(rejected, 0) << ReadFile(audit);
  EXPECT_THAT(JsonField(lines[rejected], "reason"), HasSubstr("called AE title 'WRONG' is not ours"));

  int object =
      FindRecord(lines, "object",
                 {{"sop_instance_uid", uids[0]}, {"result", "stored"}, {"calling_ae", "MODALITY1"}, {"to", "archive"}});
  ASSERT_GE(object, 0) << ReadFile(audit);
  EXPECT_NE(JsonField(lines[object], "patient_id"), "");
  EXPECT_NE(JsonField(lines[object], "study_instance_uid"), "");

  int delivery = FindRecord(
      lines, "delivery",
      {{"sop_instance_uid", uids[0]}, {"destination", "archive"}, {"result", "success"}, {"status", "0x0000"}});
  ASSERT_GE(delivery, 0) << ReadFile(audit);
  EXPECT_EQ(JsonField(lines[delivery], "patient_id"), JsonField(lines[object], "patient_id"));
  EXPECT_EQ(JsonField(lines[delivery], "study_instance_uid"), JsonField(lines[object], "study_instance_uid"));
  EXPECT_THAT(JsonField(lines[delivery], "association"), HasSubstr("ARCHIVE"));

  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr("OK: " + std::to_string(lines.size()) + " records"));

  // An auditor-unfriendly edit: the object went to another patient.
  std::string& line = lines[object];
  std::string pid = "\"patient_id\":\"" + JsonField(line, "patient_id") + "\"";
  line.replace(line.find(pid), pid.size(), "\"patient_id\":\"SOMEONE-ELSE\"");
  std::string edited;
  for (const std::string& l : lines) edited += l + "\n";
  WriteFile(audit, edited);
  verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr(audit + ":" + std::to_string(object + 1) + ": hash does not match"));
}

// A UDP syslog receiver on 127.0.0.1: keeps every datagram.
class UdpReceiver {
 public:
  UdpReceiver() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      std::string buf(70000, '\0');
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
        if (n <= 0) continue;
        std::lock_guard<std::mutex> lock(mu_);
        got_.push_back(buf.substr(0, static_cast<size_t>(n)));
      }
    });
  }
  ~UdpReceiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  std::vector<std::string> Messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_;
  }
  // The messages holding every one of `parts`.
  std::vector<std::string> With(const std::vector<std::string>& parts) {
    std::vector<std::string> out;
    for (const std::string& m : Messages()) {
      bool all = true;
      for (const std::string& p : parts) all = all && m.find(p) != std::string::npos;
      if (all) out.push_back(m);
    }
    return out;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> got_;
  std::thread thread_;
};

TEST(AuditTrailTest, RotatedFilesVerifyAsOneChainAndRecordsReachSyslog) {
  TempDir tmp;
  for (const char* d : {"peer", "relais", "copies"}) ASSERT_EQ(mkdir((tmp / d).c_str(), 0755), 0);
  UdpReceiver syslog;
  StorescpOptions opts;
  opts.ae_title = "ARCHIVE";
  StorescpPeer peer(tmp / "peer", opts);
  ASSERT_TRUE(peer.Start()) << peer.Log();
  const std::string rules = tmp / "rules.toml";
  WriteFile(rules, "[[destination]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(peer.port()) + "\n\n[[rule]]\nname = \"all\"\nforward = [\"archive\"]\n");
  RelaisOptions options;
  // 4 KiB (the smallest the config takes) is about ten records: several files.
  options.extra =
      "\n[rules]\npath = \"" + rules + "\"\n\n[audit]\npath = \"" + std::string(tmp / "trail") +
      "/audit.jsonl\"\nrotate_size = \"4KiB\"\nsyslog = \"udp://127.0.0.1:" + std::to_string(syslog.port()) + "\"\n";
  ASSERT_EQ(mkdir((tmp / "trail").c_str(), 0755), 0);
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  const std::string audit = (tmp / "trail") + "/audit.jsonl";

  const int kObjects = 12;
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/dcm4che__MR01.dcm", tmp / "copies", kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  std::vector<std::string> argv = {
      "storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1", std::to_string(relais.port())};
  argv.insert(argv.end(), files.begin(), files.end());
  RunResult ok = RunCommand(argv, 120);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  RunResult wrong = RunCommand(
      {"storescu", "-aet", "MODALITY2", "-aec", "WRONG", "127.0.0.1", std::to_string(relais.port()), files[0]}, 60);
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;

  // Every object delivered, and its delivery recorded (in whichever file).
  auto trail = [&] {
    std::vector<std::string> paths = ListFiles(tmp / "trail");
    // ListFiles sorts: "audit.jsonl" first, then the rotated files by time; the current file is the newest.
    EXPECT_FALSE(paths.empty());
    if (!paths.empty() && paths.front() == audit) std::rotate(paths.begin(), paths.begin() + 1, paths.end());
    return paths;
  };
  auto deliveries = [&] {
    size_t n = 0;
    for (const std::string& f : trail()) {
      for (const std::string& l : SplitLines(ReadFile(f))) n += JsonField(l, "kind") == "delivery" ? 1 : 0;
    }
    return n;
  };
  int64_t deadline = NowMs() + 90000;
  while (NowMs() < deadline && deliveries() < static_cast<size_t>(kObjects)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(peer.Received().size(), static_cast<size_t>(kObjects)) << relais.Log();
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();

  const std::vector<std::string> paths = trail();
  ASSERT_GE(paths.size(), 3u) << "expected rotations at 4 KiB";
  EXPECT_EQ(paths.back(), audit);
  std::vector<std::string> all;  // every record, in chain order
  for (size_t i = 0; i < paths.size(); ++i) {
    std::vector<std::string> lines = SplitLines(ReadFile(paths[i]));
    ASSERT_FALSE(lines.empty()) << paths[i];
    if (i > 0) {
      EXPECT_EQ(JsonField(lines[0], "reason"), "rotated") << paths[i];
      EXPECT_EQ(JsonField(lines[0], "prev_file"), paths[i - 1].substr(paths[i - 1].rfind('/') + 1));
    }
    all.insert(all.end(), lines.begin(), lines.end());
  }
  int accepted = FindRecord(all, "association", {{"calling_ae", "MODALITY1"}, {"result", "accepted"}});
  int rejected = FindRecord(all, "association", {{"calling_ae", "MODALITY2"}, {"result", "rejected"}});
  int object = FindRecord(all, "object", {{"sop_instance_uid", uids[0]}, {"result", "stored"}});
  int delivery = FindRecord(all, "delivery", {{"sop_instance_uid", uids[0]}, {"result", "success"}});
  ASSERT_GE(accepted, 0);
  ASSERT_GE(rejected, 0);
  ASSERT_GE(object, 0);
  ASSERT_GE(delivery, 0);

  // The whole trail verifies as one chain.
  std::vector<std::string> verify_argv = {RelaisBinary(), "audit", "verify"};
  verify_argv.insert(verify_argv.end(), paths.begin(), paths.end());
  RunResult verify = RunCommand(verify_argv, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr("OK: " + std::to_string(all.size()) + " records in " +
                                       std::to_string(paths.size()) + " files"));

  // The same records as ATNA messages: RFC 5424, MSGID IHE+RFC-3881, DICOM codes.
  for (const std::string& m : syslog.Messages()) {
    EXPECT_TRUE(m.rfind("<85>1 ", 0) == 0 || m.rfind("<84>1 ", 0) == 0) << m.substr(0, 80);
    EXPECT_THAT(m, HasSubstr(" relais "));
    EXPECT_THAT(m, HasSubstr(" IHE+RFC-3881 - \xEF\xBB\xBF<AuditMessage>"));
    EXPECT_THAT(m, testing::EndsWith("</AuditMessage>"));
  }
  EXPECT_EQ(syslog.With({"csd-code=\"110114\"", "UserID=\"MODALITY1\"", "EventOutcomeIndicator=\"0\""}).size(), 1u);
  EXPECT_EQ(syslog.With({"csd-code=\"110113\"", "UserID=\"MODALITY2\"", "EventOutcomeIndicator=\"4\""}).size(), 1u);
  const std::string uid_attr = "UID=\"" + uids[0] + "\"";
  EXPECT_EQ(syslog.With({"csd-code=\"110104\"", "EventActionCode=\"C\"", uid_attr, "UserID=\"MODALITY1\""}).size(), 1u);
  EXPECT_EQ(syslog.With({"csd-code=\"110104\"", "EventActionCode=\"R\"", uid_attr, "UserID=\"ARCHIVE\""}).size(), 1u);
  EXPECT_GE(syslog.With({"ParticipantObjectID=\"" + JsonField(all[object], "patient_id") + "\""}).size(),
            2u * kObjects);  // every object received and delivered names the patient

  // An edit in the second file: verify names that file and line.
  std::vector<std::string> second = SplitLines(ReadFile(paths[1]));
  ASSERT_GE(second.size(), 2u);
  std::string& line = second[1];
  size_t at = line.find("\"time\":\"");
  ASSERT_NE(at, std::string::npos);
  line[at + 8] = line[at + 8] == '2' ? '1' : '2';  // the year's first digit
  std::string edited;
  for (const std::string& l : second) edited += l + "\n";
  WriteFile(paths[1], edited);
  verify = RunCommand(verify_argv, 60);
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr(paths[1] + ":2: hash does not match"));

  // A missing middle file is found where the gap is.
  std::vector<std::string> gap_argv = {RelaisBinary(), "audit", "verify", paths[0]};
  gap_argv.insert(gap_argv.end(), paths.begin() + 2, paths.end());
  verify = RunCommand(gap_argv, 60);
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr(paths[2] + ":1: continues '" + paths[1].substr(paths[1].rfind('/') + 1)));
}

// One HTTP/1.1 request on its own connection; the status of the answer (0: none).
int HttpStatus(uint16_t port, const std::string& request) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return 0;
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string response;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (response.find("\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response.rfind("HTTP/1.", 0) == 0 && response.size() >= 12 ? std::atoi(response.c_str() + 9) : 0;
}

// The issue "every byte from outside is data": 20 unauthenticated admin
// requests with 400 KB paths used to add 16 MB to the trail, and an
// operator's huge destination name made a record that verify refused.
TEST(AuditTrailTest, FloodsOfHugeRefusedRequestsAddLittleAndTheTrailStillVerifies) {
  TempDir tmp;
  ASSERT_EQ(mkdir((tmp / "relais").c_str(), 0755), 0);
  const std::string token = "operator-5e1d7c3b9a2f";
  WriteFile(tmp / "tok", token);
  const std::string sha = RunCommand({"sha256sum", tmp / "tok"}, 30).output.substr(0, 64);
  const uint16_t admin_port = FreePort();
  const std::string audit = tmp / "audit.jsonl";
  RelaisOptions options;
  options.extra = "\n[audit]\npath = \"" + audit +
                  "\"\n\n[admin]\nhost = \"127.0.0.1\"\nport = " + std::to_string(admin_port) +
                  "\n\n[[admin.token]]\nname = \"tech\"\nrole = \"operator\"\nsha256 = \"" + sha + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  ASSERT_TRUE(WaitForPort(admin_port, 10000)) << relais.Log();
  const size_t before = ReadFile(audit).size();
  ASSERT_GT(before, 0u);

  const std::string big(400 * 1024, 'x');
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(HttpStatus(admin_port, "GET /api/queue/" + big + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
              401)
        << i;
  }
  // An operator acting on a destination with a 400 KB name (about the most
  // h2o takes in a request; AdminApiTest tries 1.5 MB without HTTP).
  const std::string name(400 * 1024, 'n');
  EXPECT_EQ(HttpStatus(admin_port, "POST /api/destinations/" + name +
                                       "/pause HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                       "Bearer " +
                                       token + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            404);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();  // closing the trail writes the summary

  const std::string text = ReadFile(audit);
  EXPECT_LT(text.size() - before, 64u * 1024) << "the trail grew by " << text.size() - before << " bytes";
  const std::vector<std::string> lines = SplitLines(text);
  std::vector<std::string> refused;
  for (const std::string& l : lines) {
    if (JsonField(l, "kind") == "admin" && JsonField(l, "status") == "401") refused.push_back(l);
  }
  ASSERT_EQ(refused.size(), 2u) << text.substr(0, 4000);
  EXPECT_THAT(JsonField(refused[0], "path"), HasSubstr("...[cut, " + std::to_string(big.size() + 11) + " bytes]"));
  EXPECT_EQ(JsonField(refused[1], "address"), "127.0.0.1");
  EXPECT_EQ(JsonField(refused[1], "repeated"), "19");  // exactly the other 19
  EXPECT_EQ(JsonField(refused[1], "since"), JsonField(refused[0], "time"));
  const int pause = FindRecord(lines, "admin", {{"token", "tech"}, {"status", "404"}});
  ASSERT_GE(pause, 0) << text.substr(0, 4000);
  EXPECT_THAT(JsonField(lines[pause], "detail"), HasSubstr("...[cut, " + std::to_string(name.size() + 42) + " bytes]"));

  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr("OK: " + std::to_string(lines.size()) + " records"));
}

// A peer that retries a refused association in a loop: one record, then one
// summary with the exact count, and the chain verifies.
TEST(AuditTrailTest, RepeatedRejectedAssociationsAreOneRecordAndACount) {
  TempDir tmp;
  ASSERT_EQ(mkdir((tmp / "relais").c_str(), 0755), 0);
  const std::string audit = tmp / "audit.jsonl";
  RelaisOptions options;
  options.extra = "\n[audit]\npath = \"" + audit + "\"\n";
  RelaisProcess relais(tmp / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  for (int i = 0; i < 12; ++i) {
    RunResult r =
        RunCommand({"echoscu", "-aet", "PROBE", "-aec", "NOTRELAIS", "127.0.0.1", std::to_string(relais.port())}, 30);
    EXPECT_NE(r.exit_code, 0) << r.output;  // called AE not recognized
  }
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();  // closing the trail writes the summary
  const std::vector<std::string> lines = SplitLines(ReadFile(audit));
  std::vector<std::string> rejected;
  for (const std::string& l : lines) {
    if (JsonField(l, "kind") == "association" &&
        (JsonField(l, "result") == "rejected" || !JsonField(l, "repeated").empty())) {
      rejected.push_back(l);
    }
  }
  ASSERT_EQ(rejected.size(), 2u) << ReadFile(audit);
  EXPECT_EQ(JsonField(rejected[0], "calling_ae"), "PROBE");
  EXPECT_EQ(JsonField(rejected[1], "repeated"), "11");
  RunResult verify = RunCommand({RelaisBinary(), "audit", "verify", audit}, 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

}  // namespace
}  // namespace relais::itest
