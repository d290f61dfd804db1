// ScuAssociation against real peers on 127.0.0.1: DCMTK's storescp (started
// here with fork/exec), `relais serve`, a listening socket that never
// answers, and a port with no listener. Every test runs the loop to
// completion and checks that every handle was closed (uv_loop_close == 0).
#include "router/deliver/scu_association.h"
#include "tests/router/loopback.h"
#include "tests/router/part10.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "store/store.h"

namespace relais::router {
namespace {

namespace fs = std::filesystem;

constexpr char kExplicitLe[] = "1.2.840.10008.1.2.1";
constexpr char kImplicitLe[] = "1.2.840.10008.1.2";
constexpr char kVerification[] = "1.2.840.10008.1.1";
constexpr char kSecondaryCapture[] = "1.2.840.10008.5.1.4.1.1.7";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "relais-scu-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

using relais::testing::FreePort;

using relais::testing::PortOpen;

// A child process (argv[0] searched in PATH), output to `log`; killed and
// reaped on destruction.
class Child {
 public:
  bool Start(const std::vector<std::string>& argv, const std::string& log) {
    log_ = log;
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    return true;
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool WaitForPort(uint16_t port) {
    for (int i = 0; i < 300; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (PortOpen(port)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  std::string Log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A Part 10 file split into what the sender needs. PS3.10 7.1: 128-byte
// preamble, "DICM", then the File Meta group (0002,xxxx) in Explicit VR
// Little Endian; the data set follows it.
using relais::testing::ParsePart10;
using relais::testing::Part10;

// Puts `data_set` into `store` as one object; returns its id (0 on error).
uint64_t PutObject(store::Store& store, const Part10& obj) {
  std::unique_ptr<store::ObjectWriter> w = store.NewObject();
  for (size_t off = 0; off < obj.data_set.size(); off += 100000) {
    size_t n = std::min<size_t>(100000, obj.data_set.size() - off);
    w->Append({reinterpret_cast<const uint8_t*>(obj.data_set.data()) + off, n});
  }
  store::ObjectMeta meta;
  meta.sop_class_uid = obj.sop_class;
  meta.sop_instance_uid = obj.sop_instance;
  meta.transfer_syntax_uid = obj.transfer_syntax;
  std::promise<uint64_t> p;
  w->Finish(meta, [&p](Status s, const store::ObjectMeta& m) { p.set_value(s.ok() ? m.id : 0); });
  return p.get_future().get();
}

using Op = std::function<void(ScuAssociation&, std::function<void(Outcome)>)>;

// One association: connect, run `ops` in order once established, release,
// and run the loop until everything is closed.
struct Session {
  std::optional<Outcome> established;
  std::vector<Outcome> results;
  bool closed = false;
  int loop_close = -1;
};

Session RunSession(ScuConfig config, std::vector<ContextProposal> proposals, std::vector<Op> ops, bool release = true) {
  Session s;
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::unique_ptr<ScuAssociation> scu;
  size_t next = 0;
  std::function<void()> run_next;
  run_next = [&]() {
    if (next == ops.size()) {
      if (release) scu->Release();
      else scu->Abort();
      return;
    }
    Op& op = ops[next++];
    op(*scu, [&](Outcome o) {
      s.results.push_back(o);
      run_next();
    });
  };
  scu = std::make_unique<ScuAssociation>(
      &loop, std::move(config), std::move(proposals),
      [&](Outcome o) {
        s.established = o;
        if (o.ok()) run_next();
      },
      [&]() {
        s.closed = true;
        scu.reset();  // destroying from on_closed is allowed
      });
  scu->Start();
  uv_run(&loop, UV_RUN_DEFAULT);
  s.loop_close = uv_loop_close(&loop);
  return s;
}

Op EchoOp() {
  return [](ScuAssociation& a, std::function<void(Outcome)> done) { a.Echo(std::move(done)); };
}

Op StoreOp(store::Store* st, uint64_t id) {
  return [st, id](ScuAssociation& a, std::function<void(Outcome)> done) {
    Result<std::unique_ptr<store::ObjectReader>> r = st->OpenObject(id);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    a.Store(std::move(*r), std::move(done));
  };
}

ScuConfig Config(uint16_t port) {
  ScuConfig c;
  c.calling_ae = "RELAIS";
  c.called_ae = "STORESCP";
  c.host = "127.0.0.1";
  c.port = port;
  c.connect_timeout_ms = 5000;
  c.artim_timeout_ms = 5000;
  c.response_timeout_ms = 30000;
  return c;
}

class ScuAssociationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::Options o;
    o.path = dir_.path() + "/store";
    o.compression_level = 0;
    auto s = store::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    out_ = dir_.path() + "/received";
    fs::create_directories(out_);
  }

  // Starts storescp writing received files bit for bit into out_.
  void StartStorescp(std::vector<std::string> extra) {
    port_ = FreePort();
    std::vector<std::string> argv = {"storescp", "-aet", "STORESCP", "-od", out_, "+B"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(std::to_string(port_));
    ASSERT_TRUE(peer_.Start(argv, dir_.path() + "/storescp.log"));
    ASSERT_TRUE(peer_.WaitForPort(port_)) << peer_.Log();
  }

  // The data set of the file storescp received for `sop_instance`.
  std::string Received(const std::string& sop_instance) {
    for (const auto& e : fs::directory_iterator(out_)) {
      Part10 p;
      if (ParsePart10(ReadFile(e.path().string()), &p) && p.sop_instance == sop_instance) return p.data_set;
    }
    return "<not received>";
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::string out_;
  uint16_t port_ = 0;
  Child peer_;
};

// ---- real peers ----

TEST_F(ScuAssociationTest, EchoWithStorescp) {
  StartStorescp({});
  Session s = RunSession(Config(port_), {{kVerification, {kImplicitLe}}}, {EchoOp(), EchoOp()});
  ASSERT_TRUE(s.established && s.established->ok()) << (s.established ? s.established->ToString() : "none");
  ASSERT_EQ(s.results.size(), 2u);
  for (const Outcome& o : s.results) EXPECT_EQ(o.kind, Outcome::Kind::kSuccess) << o.ToString();
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, CorpusObjectsArriveByteIdentical) {
  StartStorescp({"+xa"});
  const char* files[] = {"dcm4che__MR01.dcm", "dicom3tools__0051.dcm", "dcm4che__CT-JPEGLosslessSV1.dcm",
                         "dcm4che__YBR_FULL-RLE.dcm", "dicomparser__CT1_UNC.implicit_little_endian.dcm"};
  std::vector<Part10> objs;
  std::vector<Op> ops;
  std::vector<ContextProposal> proposals = {{kVerification, {kImplicitLe}}};
  for (const char* f : files) {
    Part10 p;
    ASSERT_TRUE(ParsePart10(ReadFile(std::string(RELAIS_CORPUS_DIR) + "/" + f), &p)) << f;
    uint64_t id = PutObject(*store_, p);
    ASSERT_NE(id, 0u) << f;
    proposals.push_back({p.sop_class, {p.transfer_syntax}});
    ops.push_back(StoreOp(store_.get(), id));
    objs.push_back(std::move(p));
  }
  Session s = RunSession(Config(port_), proposals, ops);
  ASSERT_TRUE(s.established && s.established->ok());
  ASSERT_EQ(s.results.size(), objs.size());
  for (size_t i = 0; i < objs.size(); ++i) {
    EXPECT_EQ(s.results[i].kind, Outcome::Kind::kSuccess) << files[i] << ": " << s.results[i].ToString();
    std::string got = Received(objs[i].sop_instance);
    EXPECT_EQ(got.size(), objs[i].data_set.size()) << files[i];
    EXPECT_TRUE(got == objs[i].data_set) << files[i] << " differs";
  }
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, FortyMegabyteObjectStreamsThroughSmallPeerPdus) {
  StartStorescp({"--max-pdu", "16384"});
  // Explicit VR Little Endian data set (PS3.5 7.1.2): SOP Class UID
  // (0008,0016) UI, SOP Instance UID (0008,0018) UI, Pixel Data (7FE0,0010)
  // OB with a 4-byte length.
  Part10 p;
  p.sop_class = kSecondaryCapture;
  p.sop_instance = "1.2.826.0.1.3680043.2.1125.99.40";
  p.transfer_syntax = kExplicitLe;
  auto element = [&](uint16_t g, uint16_t e, const char* vr, const std::string& v) {
    std::string el = {char(g & 0xFF), char(g >> 8), char(e & 0xFF), char(e >> 8), vr[0], vr[1]};
    el += {char(v.size() & 0xFF), char(v.size() >> 8)};
    p.data_set += el + v;
  };
  element(0x0008, 0x0016, "UI", std::string(kSecondaryCapture) + '\0');  // 26 bytes, even
  element(0x0008, 0x0018, "UI", p.sop_instance);                         // 32 bytes, even
  const uint32_t n = 40u << 20;
  p.data_set += std::string("\xE0\x7F\x10\x00OB\0\0", 8);
  p.data_set += {char(n & 0xFF), char((n >> 8) & 0xFF), char((n >> 16) & 0xFF), char(n >> 24)};
  size_t start = p.data_set.size();
  p.data_set.resize(start + n);
  uint32_t x = 12345;
  for (size_t i = start; i < p.data_set.size(); ++i) {
    x = x * 1103515245 + 12345;
    p.data_set[i] = static_cast<char>(x >> 24);
  }
  uint64_t id = PutObject(*store_, p);
  ASSERT_NE(id, 0u);
  Session s = RunSession(Config(port_), {{kSecondaryCapture, {kExplicitLe}}}, {StoreOp(store_.get(), id)});
  ASSERT_TRUE(s.established && s.established->ok()) << s.established->ToString();
  ASSERT_EQ(s.results.size(), 1u);
  EXPECT_EQ(s.results[0].kind, Outcome::Kind::kSuccess) << s.results[0].ToString() << "\n" << peer_.Log();
  EXPECT_TRUE(Received(p.sop_instance) == p.data_set);
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, SopClassNotAcceptedInItsTransferSyntaxIsNoContext) {
  StartStorescp({});  // without +xa: uncompressed transfer syntaxes only
  Part10 jpeg, mr;
  ASSERT_TRUE(ParsePart10(ReadFile(std::string(RELAIS_CORPUS_DIR) + "/dcm4che__CT-JPEGLosslessSV1.dcm"), &jpeg));
  ASSERT_TRUE(ParsePart10(ReadFile(std::string(RELAIS_CORPUS_DIR) + "/dcm4che__MR01.dcm"), &mr));
  uint64_t jpeg_id = PutObject(*store_, jpeg);
  uint64_t mr_id = PutObject(*store_, mr);
  // The JPEG context is refused (partially accepted association); MR's SOP
  // class is accepted but only in Explicit VR LE, while the object is stored
  // in Implicit VR LE; Verification is not proposed at all.
  Session s = RunSession(Config(port_), {{jpeg.sop_class, {jpeg.transfer_syntax}}, {mr.sop_class, {kExplicitLe}}},
                         {StoreOp(store_.get(), jpeg_id), StoreOp(store_.get(), mr_id), EchoOp()});
  ASSERT_TRUE(s.established && s.established->ok());
  ASSERT_EQ(s.results.size(), 3u);
  for (const Outcome& o : s.results) {
    EXPECT_EQ(o.kind, Outcome::Kind::kNoContext) << o.ToString();
    EXPECT_FALSE(o.IsTransient());
  }
  EXPECT_NE(s.results[1].error.find(kExplicitLe), std::string::npos) << s.results[1].error;
  EXPECT_TRUE(fs::is_empty(out_));
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, RefusedAssociationIsRejected) {
  StartStorescp({"--refuse"});
  Session s = RunSession(Config(port_), {{kVerification, {kImplicitLe}}}, {EchoOp()});
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kRejected) << s.established->ToString();
  EXPECT_TRUE(s.results.empty());
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, WrongCalledAeAtRelaisIsPermanentRejection) {
  port_ = FreePort();
  std::ofstream(dir_.path() + "/relais.toml")
      << "[listener]\nae_title = \"RELAIS\"\nhost = \"127.0.0.1\"\nport = " << port_ << "\n\n[store]\npath = \""
      << dir_.path() << "/relais-store\"\n";
  ASSERT_TRUE(
      peer_.Start({RELAIS_BINARY, "serve", "--config", dir_.path() + "/relais.toml"}, dir_.path() + "/relais.log"));
  ASSERT_TRUE(peer_.WaitForPort(port_)) << peer_.Log();
  ScuConfig c = Config(port_);
  c.called_ae = "NOT_RELAIS";
  Session s = RunSession(c, {{kVerification, {kImplicitLe}}}, {EchoOp()});
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kRejected) << s.established->ToString();
  EXPECT_EQ(s.established->reject_result, ul::RejectResult::kPermanent);
  EXPECT_EQ(s.established->reject_source, ul::RejectSource::kServiceUser);
  EXPECT_EQ(s.established->reject_reason, ul::kRjCalledAeNotRecognized);
  EXPECT_FALSE(s.established->IsTransient());
  EXPECT_EQ(s.loop_close, 0);

  c.called_ae = "RELAIS";  // and the right one works
  Session ok = RunSession(c, {{kVerification, {kImplicitLe}}}, {EchoOp()});
  ASSERT_TRUE(ok.established && ok.established->ok());
  ASSERT_EQ(ok.results.size(), 1u);
  EXPECT_EQ(ok.results[0].kind, Outcome::Kind::kSuccess);
  EXPECT_EQ(ok.loop_close, 0);
}

TEST_F(ScuAssociationTest, NoListenerIsTransportError) {
  Session s = RunSession(Config(FreePort()), {{kVerification, {kImplicitLe}}}, {EchoOp()});
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kTransportError) << s.established->ToString();
  EXPECT_TRUE(s.established->IsTransient());
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, SilentPeerTimesOutWaitingForAssociateAc) {
  // The kernel completes the TCP handshake (backlog) but nobody ever reads.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ScuConfig c = Config(ntohs(a.sin_port));
  c.artim_timeout_ms = 300;
  auto t0 = std::chrono::steady_clock::now();
  Session s = RunSession(c, {{kVerification, {kImplicitLe}}}, {EchoOp()});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  close(fd);
  ASSERT_TRUE(s.established);
  EXPECT_EQ(s.established->kind, Outcome::Kind::kTimeout) << s.established->ToString();
  EXPECT_TRUE(s.established->IsTransient());
  EXPECT_LT(ms, 3000);
  EXPECT_EQ(s.loop_close, 0);
}

TEST_F(ScuAssociationTest, AbortBeforeEstablishedReportsAborted) {
  StartStorescp({});
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::optional<Outcome> est;
  bool closed = false;
  ScuAssociation scu(
      &loop, Config(port_), {{kVerification, {kImplicitLe}}}, [&](Outcome o) { est = o; }, [&]() { closed = true; });
  scu.Start();
  scu.Abort();
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_TRUE(est);
  EXPECT_EQ(est->kind, Outcome::Kind::kAborted);
  EXPECT_TRUE(closed);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace relais::router
