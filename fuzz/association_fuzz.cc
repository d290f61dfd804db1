// libFuzzer target: a whole DICOM association as Relais serves it. The
// input is written as a peer's byte stream to a real Server (router/receive/server.h)
// on 127.0.0.1, on its libuv loop, with a real Store in a temporary
// directory: PDU framing, the Upper Layer state machine, association
// negotiation, P-DATA reassembly, DIMSE commands, data set header parsing,
// routing-free storage and the responses. After the peer half-closes, the
// association must end (no hang) and be forgotten by the server (no leak).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include "base/log.h"
#include "router/receive/server.h"
#include "store/store.h"

namespace {

struct World {
  uv_loop_t loop;
  std::unique_ptr<relais::store::Store> store;
  std::unique_ptr<relais::router::Server> server;
  std::string dir;
  int port = 0;
};

World* world = nullptr;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

struct Client {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  uv_shutdown_t shutdown;
  std::string data;
  bool closed = false;
  char buf[65536];
};

void OnClosed(uv_handle_t* h) { static_cast<Client*>(h->data)->closed = true; }

void CloseClient(Client* c) {
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), OnClosed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  relais::SetLogLevel(relais::LogLevel::kError);
  world = new World;
  char tmpl[] = "/tmp/relais-fuzz-XXXXXX";
  world->dir = mkdtemp(tmpl);
  uv_loop_init(&world->loop);
  relais::store::Options so;
  so.path = world->dir;
  so.max_size = 256ull << 20;
  so.compression_threads = 1;
  auto opened = relais::store::Store::Open(so);
  if (!opened.ok()) {
    std::fprintf(stderr, "cannot open store: %s\n", opened.status().ToString().c_str());
    abort();
  }
  world->store = std::move(*opened);
  relais::router::ScpSettings settings;
  settings.ae_title = "RELAIS";
  settings.max_pdu = 16384;
  world->server = std::make_unique<relais::router::Server>(&world->loop, world->store.get(), settings);
  relais::router::Server* server = world->server.get();
  world->store->SetProgressCallback([server] { server->Post([server] { server->ResumePaused(); }); });
  world->port = FreePort();
  relais::Status s = world->server->Listen("127.0.0.1", static_cast<uint16_t>(world->port));
  if (!s.ok()) {
    std::fprintf(stderr, "cannot listen: %s\n", s.ToString().c_str());
    abort();
  }
  std::atexit([] { std::filesystem::remove_all(world->dir); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Client c;
  c.data.assign(reinterpret_cast<const char*>(data), size);
  uv_tcp_init(&world->loop, &c.tcp);
  c.tcp.data = &c;
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", world->port, &addr);
  c.connect.data = &c;
  uv_tcp_connect(&c.connect, &c.tcp, reinterpret_cast<const sockaddr*>(&addr), [](uv_connect_t* req, int status) {
    Client* c = static_cast<Client*>(req->data);
    if (status != 0) return CloseClient(c);
    uv_buf_t b = uv_buf_init(c->data.data(), static_cast<unsigned>(c->data.size()));
    c->write.data = c;
    uv_write(&c->write, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, [](uv_write_t* w, int) {
      Client* c = static_cast<Client*>(w->data);
      c->shutdown.data = c;
      if (uv_shutdown(&c->shutdown, reinterpret_cast<uv_stream_t*>(&c->tcp), [](uv_shutdown_t*, int) {}) != 0) {
        CloseClient(c);
      }
    });
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          Client* c = static_cast<Client*>(h->data);
          *b = uv_buf_init(c->buf, sizeof(c->buf));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          if (n < 0) CloseClient(static_cast<Client*>(s->data));
        });
  });
  // Until the server has closed the association and we saw it; the server
  // answers, then closes on the peer's half-close (PS3.8 Evt17) or aborts.
  // Commits finish on the store's thread and come back through Post.
  for (int spins = 0; !(c.closed && world->server->association_count() == 0); ++spins) {
    uv_run(&world->loop, UV_RUN_ONCE);
    if (spins > 2000000) abort();  // a hang
  }
  return 0;
}
