// The live destination state file (router/operate/serve_state.h): what serve
// writes is what `relais queue ls` reads back, written at once on a change,
// "running": false after a clean stop; a missing, cut or foreign file is
// reported, never trusted.
#include "router/operate/serve_state.h"

#include <unistd.h>
#include <uv.h>

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

using store::testing::TempDir;

DestinationStats Dest(const std::string& name, const std::string& state) {
  DestinationStats d;
  d.name = name;
  d.state = state;
  return d;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

TEST(ServeStateTest, WhatServeWritesIsReadBackWithTheReasons) {
  TempDir dir;
  DestinationStats tele = Dest("telerad", "misconfigured");
  tele.misconfigured_reason = "telerad: the certificate of 127.0.0.1:11112 does not name '127.0.0.1'";
  tele.misconfigured_since_unix_ms = 1700000000000;
  tele.next_try_unix_ms = 1700000300000;
  DestinationStats pacs = Dest("pacs", "backing-off");
  pacs.last_error = "transport-error: connection refused";
  pacs.failing_since_unix_ms = 1700000001000;
  pacs.consecutive_failures = 3;
  Write(dir.Sub(kServeStateFile), RenderServeState({tele, pacs, Dest("idle", "idle")}, ::getpid(), true, 42));
  Result<ServeState> st = ReadServeState(dir.path());
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->pid, ::getpid());
  EXPECT_TRUE(st->running);
  EXPECT_EQ(st->written_unix_ms, 42);
  ASSERT_EQ(st->destinations.size(), 3u);
  EXPECT_EQ(st->destinations["telerad"].state, "misconfigured");
  EXPECT_EQ(st->destinations["telerad"].reason, tele.misconfigured_reason);
  EXPECT_EQ(st->destinations["telerad"].since_unix_ms, 1700000000000);
  EXPECT_EQ(st->destinations["telerad"].next_try_unix_ms, 1700000300000);
  EXPECT_EQ(st->destinations["pacs"].reason, pacs.last_error);
  EXPECT_EQ(st->destinations["pacs"].consecutive_failures, 3u);
  EXPECT_EQ(st->destinations["idle"].reason, "");
}

TEST(ServeStateTest, TheWriterIsAliveOnlyWhileItsProcessRunsAndBeforeItsCleanStop) {
  ServeState st;
  st.pid = ::getpid();
  st.running = true;
  // This test binary is not called relais: a reused pid is not taken for serve.
  EXPECT_FALSE(ServeStateWriterAlive(st));
  st.running = false;
  EXPECT_FALSE(ServeStateWriterAlive(st));
  st.running = true;
  st.pid = 0;
  EXPECT_FALSE(ServeStateWriterAlive(st));
  st.pid = 0x3FFFFFFF;  // above any pid_max
  EXPECT_FALSE(ServeStateWriterAlive(st));
}

TEST(ServeStateTest, MissingCutOrForeignFilesAreReportedNotTrusted) {
  TempDir dir;
  EXPECT_TRUE(ReadServeState(dir.path()).status().IsNotFound());
  for (const char* text : {"", "{\"format\":1,\"pid\":12,\"destinations\":[{\"name\":\"a\"", "[]", "{\"pid\":1}",
                           "{\"pid\":\"x\",\"destinations\":[]}",
                           "{\"destinations\":[{\"name\":\"a\",\"consecutive_failures\":\"many\"}]}"}) {
    Write(dir.Sub(kServeStateFile), text);
    Result<ServeState> st = ReadServeState(dir.path());
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_EQ(st.status().code(), Status::Code::kCorruption) << text;
  }
}

TEST(ServeStateTest, AChangeIsWrittenWithinASecondAndAStopSaysSo) {
  TempDir dir;
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  std::vector<DestinationStats> now = {Dest("telerad", "sending")};
  ServeStateFile file(&loop, dir.path(), [&] { return now; });
  file.Start();
  Result<ServeState> st = ReadServeState(dir.path());
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->destinations["telerad"].state, "sending");
  EXPECT_TRUE(st->running);
  now[0].state = "misconfigured";
  now[0].misconfigured_reason = "wrong called AE";
  // Runs the loop until the timer wrote the change (event-driven: no sleep).
  uv_timer_t stop;
  uv_timer_init(&loop, &stop);
  struct Ctx {
    std::string path;
    bool seen = false;
  } ctx{dir.path()};
  stop.data = &ctx;
  uv_timer_start(
      &stop,
      [](uv_timer_t* t) {
        auto* c = static_cast<Ctx*>(t->data);
        Result<ServeState> s = ReadServeState(c->path);
        if (s.ok() && s->destinations["telerad"].state == "misconfigured") {
          c->seen = true;
          uv_timer_stop(t);
        }
      },
      50, 50);
  while (!ctx.seen && uv_run(&loop, UV_RUN_ONCE) != 0) {
  }
  EXPECT_TRUE(ctx.seen);
  st = ReadServeState(dir.path());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->destinations["telerad"].reason, "wrong called AE");
  uv_close(reinterpret_cast<uv_handle_t*>(&stop), nullptr);
  file.Shutdown();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0) << "a handle was left open";
  st = ReadServeState(dir.path());
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->running);
  EXPECT_FALSE(ServeStateWriterAlive(*st));
}

}  // namespace
}  // namespace relais::router
