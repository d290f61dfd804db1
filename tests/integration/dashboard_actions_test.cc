// The dashboard's study page actions and role-aware buttons (issue 14),
// clicked in headless Chromium (tests/integration/browser.h) against a real
// `relais serve` and real storescp peers:
// - a viewer sees no action button anywhere;
// - an operator's study page shows the history of /api/studies/UID, its
//   "Send now" ends a 10-minute backoff (the objects arrive at once) and its
//   re-route sends a delivered study to a second storescp;
// - an admin's purge lists what it will remove, asks, and removes only
//   that: another study's row at the same destination stays, and a
//   confirmation that no longer matches the queue does nothing; the
//   destination card's purge works the same way.
// The waits bound a hang (60 s, far below the 10-minute backoff): a pass
// means the action worked, whatever the machine's speed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/sha256.h"
#include "browser.h"
#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

using nlohmann::json;

constexpr char kViewer[] = "viewer-dashboard-actions-1";
constexpr char kOperator[] = "operator-dashboard-actions-1";
constexpr char kAdmin[] = "admin-dashboard-actions-1";

StorescpOptions Scp(const std::string& ae, uint16_t port = 0) {
  StorescpOptions o;
  o.ae_title = ae;
  o.port = port;
  return o;
}

std::string Destination(const std::string& name, uint16_t port) {
  return "[[destination]]\nname = \"" + name + "\"\nae_title = \"" + name +
         "\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) +
         "\nretry = { initial_backoff = \"10m\", max_backoff = \"10m\" }\n\n";
}

std::string Token(const std::string& name, const std::string& role, const std::string& token) {
  return "[[admin.token]]\nname = \"" + name + "\"\nrole = \"" + role + "\"\nsha256 = \"" + Sha256Hex(token) + "\"\n";
}

json Api(uint16_t port, const std::string& path, const std::string& token = kViewer) {
  RunResult r = RunCommand({"curl", "-s", "-m", "30", "-H", "Authorization: Bearer " + token,
                            "http://127.0.0.1:" + std::to_string(port) + path},
                           60);
  return json::parse(r.output, nullptr, false);
}

json Dest(const json& study, const std::string& name) {
  for (const auto& d : study["destinations"]) {
    if (d.value("destination", "") == name) return d;
  }
  return json::object();
}

bool WaitReceived(const StorescpPeer& scp, const std::vector<std::string>& uids, int timeout_s) {
  const int64_t deadline = NowMs() + timeout_s * 1000LL;
  for (;;) {
    auto got = scp.Received();
    bool all = true;
    for (const std::string& u : uids) all = all && got.count(u) != 0;
    if (all) return true;
    if (NowMs() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// (destination, uid) of the live queue rows at `dest`.
std::set<std::string> QueueUids(uint16_t port, const std::string& dest) {
  std::set<std::string> out;
  json q = Api(port, "/api/queue?destination=" + dest);
  for (const auto& r : q["rows"]) out.insert(r.value("sop_instance_uid", ""));
  return out;
}

std::string Url(uint16_t port, const std::string& token, const std::string& study) {
  return "http://127.0.0.1:" + std::to_string(port) + "/#token=" + token + "&study=" + study;
}

// True once the page has its first poll and the study page drawn.
const char kPageReady[] =
    "document.body.hasAttribute('data-ready') && document.querySelectorAll('[data-test=study-page-dest]').length > 0 "
    "&& document.querySelectorAll('#destinations .dest').length === 4";
// The text of the study page's result message ("" when none).
const char kMessage[] = "(document.querySelector('[data-test=study-action-message]') || {textContent: ''}).textContent";
// Every action control on the page.
const char kActionControls[] =
    "[...document.querySelectorAll('#destinations button, #study-page button, #study-page select, "
    "#dest-purge-panel button')].map(b => b.getAttribute('data-test')).join(' ')";

TEST(DashboardActionsTest, StudyPageActionsAsViewerOperatorAndAdmin) {
  struct stat st;
  if (stat(kChromiumPath, &st) != 0) GTEST_SKIP() << kChromiumPath << " is not installed (scripts/setup.sh)";
  TempDir dir;
  for (const char* d : {"pacs", "second", "telerad", "copies", "relais", "b-viewer", "b-operator", "b-admin"}) {
    ASSERT_EQ(::mkdir((dir / d).c_str(), 0755), 0);
  }
  StorescpPeer pacs(dir / "pacs", Scp("PACS"));
  StorescpPeer second(dir / "second", Scp("SECOND"));
  StorescpPeer telerad(dir / "telerad", Scp("TELERAD"));
  ASSERT_TRUE(pacs.Start()) << pacs.Log();
  ASSERT_TRUE(second.Start()) << second.Log();
  ASSERT_TRUE(telerad.Start()) << telerad.Log();
  const uint16_t telerad_port = telerad.port();
  telerad.Stop();                            // an outage: its rows wait out a 10-minute backoff
  const uint16_t offline_port = FreePort();  // nothing ever listens: its rows stay queued
  const std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("PACS", pacs.port()) + Destination("SECOND", second.port()) +
                       Destination("TELERAD", telerad_port) + Destination("OFFLINE", offline_port) +
                       "[[rule]]\nname = \"all\"\nforward = [\"PACS\", \"TELERAD\", \"OFFLINE\"]\n");
  const uint16_t admin_port = FreePort();
  RelaisOptions options;
  options.extra = "\n[delivery]\nretention = \"1h\"\n\n[rules]\npath = \"" + rules +
                  "\"\n\n[admin]\nhost = \"127.0.0.1\"\nport = " + std::to_string(admin_port) + "\n\n" +
                  Token("v", "viewer", kViewer) + Token("op", "operator", kOperator) + Token("boss", "admin", kAdmin);
  RelaisProcess relais(dir / "relais", options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // Study S: two CT objects; another study (an MR) shares the destinations.
  std::vector<std::string> uids;
  std::vector<std::string> files =
      MakeCopiesWithNewUids(CorpusDir() + "/pydicom__77654033_CT2_17106.dcm", dir / "copies", 2, &uids);
  ASSERT_EQ(files.size(), 2u);
  const std::string study = TagValue(files[0], "StudyInstanceUID");
  const std::string mr = CorpusDir() + "/dcm4che__MR01.dcm";
  const std::string mr_uid = TagValue(mr, "SOPInstanceUID");
  ASSERT_FALSE(study.empty());
  RunResult sent = RunCommand({"storescu", "-aet", "MODALITY1", "-aec", "RELAIS", "127.0.0.1",
                               std::to_string(relais.port()), files[0], files[1], mr},
                              120);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  ASSERT_TRUE(WaitReceived(pacs, {uids[0], uids[1], mr_uid}, 60)) << relais.Log();
  // TELERAD and OFFLINE failed once and wait out their backoff.
  for (const int64_t deadline = NowMs() + 60000;;) {
    json d = Api(admin_port, "/api/destinations");
    int waiting = 0;
    for (const auto& x : d["destinations"]) {
      const std::string state = x.value("state", "");
      if ((x.value("name", "") == "TELERAD" || x.value("name", "") == "OFFLINE") &&
          (state == "down" || state == "backing-off"))
        ++waiting;
    }
    if (waiting == 2) break;
    ASSERT_LT(NowMs(), deadline) << d.dump() << "\n" << relais.Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  json api = Api(admin_port, "/api/studies/" + study);
  ASSERT_EQ(Dest(api, "PACS").value("sent", 0), 2) << api.dump();
  ASSERT_TRUE(telerad.Restart(Scp("TELERAD", telerad_port))) << telerad.Log();

  // A viewer: the page and the study page, without a single action control.
  {
    Browser b(dir / "b-viewer");
    ASSERT_TRUE(b.Open(Url(admin_port, kViewer, study))) << b.error() << b.Stderr();
    ASSERT_FALSE(b.WaitFor(kPageReady).is_null()) << b.error() << "\n" << b.Html();
    EXPECT_EQ(b.Eval(kActionControls), "") << b.Html();
    EXPECT_EQ(b.Eval("document.querySelector('[data-test=read-only]').classList.contains('hidden')"), false);
  }

  // An operator: the same history as the API, send now and re-route.
  {
    Browser b(dir / "b-operator");
    ASSERT_TRUE(b.Open(Url(admin_port, kOperator, study))) << b.error() << b.Stderr();
    ASSERT_FALSE(b.WaitFor(kPageReady).is_null()) << b.error() << "\n" << b.Html();
    api = Api(admin_port, "/api/studies/" + study);
    json lines = b.Eval(
        "Object.fromEntries([...document.querySelectorAll('[data-test=study-page-dest]')]"
        ".map(li => [li.getAttribute('data-dest'), li.firstChild.textContent]))");
    ASSERT_EQ(lines.size(), api["destinations"].size()) << lines.dump() << "\n" << api.dump();
    for (const auto& d : api["destinations"]) {
      const std::string name = d.value("destination", "");
      const std::string line = lines.value(name, "");
      SCOPED_TRACE(name + ": " + line);
      EXPECT_EQ(line.rfind(name + ": ", 0), 0u);
      const int queued = d.value("queued", 0), sent_n = d.value("sent", 0), attempts = d.value("attempts", 0);
      EXPECT_EQ(line.find("queued " + std::to_string(queued)) != std::string::npos, queued > 0);
      EXPECT_EQ(line.find("sent " + std::to_string(sent_n) + " (") != std::string::npos, sent_n > 0);
      EXPECT_NE(line.find(std::to_string(attempts) + " attempt"), std::string::npos);
    }
    EXPECT_EQ(b.Eval("document.querySelector('[data-test=study-page-objects]').getAttribute('data-value')"),
              std::to_string(api["stored_objects"].size()));
    // Operator's controls: send now, retry, re-route, pause; no purge.
    const std::string controls = b.Eval(kActionControls).get<std::string>();
    EXPECT_NE(controls.find("study-send-now"), std::string::npos) << controls;
    EXPECT_NE(controls.find("reroute-select"), std::string::npos) << controls;
    EXPECT_NE(controls.find("pause-button"), std::string::npos) << controls;
    EXPECT_EQ(controls.find("purge"), std::string::npos) << controls;

    // Send now to TELERAD (back up, but its backoff has 10 minutes to run).
    ASSERT_TRUE(b.Click("button[data-test=study-send-now][data-dest=TELERAD]")) << b.Html();
    json msg = b.WaitFor(kMessage);
    EXPECT_EQ(msg, "Sending 2 queued objects now (TELERAD).") << b.Html();
    ASSERT_TRUE(WaitReceived(telerad, uids, 60)) << relais.Log();

    // Re-route the delivered study to SECOND, which no rule sends to.
    EXPECT_TRUE(second.Received().empty());
    // Nothing is chosen in advance.
    ASSERT_TRUE(b.Click("button[data-test=reroute-button]"));
    EXPECT_EQ(b.WaitFor(std::string(kMessage) + ".includes('Choose') && " + kMessage),
              "Choose the destination to send the study's stored objects to.")
        << b.Html();
    ASSERT_EQ(b.Eval("(() => { const s = document.querySelector('[data-test=reroute-select]'); s.value = 'SECOND'; "
                     "return s.value; })()"),
              "SECOND")
        << b.Html();
    ASSERT_TRUE(b.Click("button[data-test=reroute-button]"));
    msg = b.WaitFor(std::string(kMessage) + ".includes('SECOND') && " + kMessage);
    EXPECT_EQ(msg, "Sending 2 objects of this study to SECOND (re-routed by hand).") << b.Html();
    ASSERT_TRUE(WaitReceived(second, uids, 60)) << relais.Log();
    EXPECT_EQ(second.Received().count(mr_uid), 0u);
  }

  // An admin: purge of the study at OFFLINE, shown, cancelled, confirmed.
  {
    Browser b(dir / "b-admin");
    ASSERT_TRUE(b.Open(Url(admin_port, kAdmin, study))) << b.error() << b.Stderr();
    ASSERT_FALSE(b.WaitFor(kPageReady).is_null()) << b.error() << "\n" << b.Html();
    const std::set<std::string> before = QueueUids(admin_port, "OFFLINE");
    ASSERT_EQ(before, (std::set<std::string>{uids[0], uids[1], mr_uid}));
    EXPECT_NE(b.Eval(kActionControls).get<std::string>().find("purge-button"), std::string::npos);

    const char kShown[] =
        "document.querySelector('[data-test=purge-confirm]') && [...document.querySelectorAll('[data-test=purge-row]')]"
        ".map(r => r.getAttribute('data-dest') + ' ' + r.getAttribute('data-uid')).sort().join(',')";
    const std::string expected = "OFFLINE " + std::min(uids[0], uids[1]) + ",OFFLINE " + std::max(uids[0], uids[1]);
    ASSERT_TRUE(b.Click("button[data-test=study-purge][data-dest=OFFLINE]")) << b.Html();
    EXPECT_EQ(b.WaitFor(kShown), expected) << b.Html();
    // The confirmation as an admin sees it, kept in the build tree:
    // BUILD/router/relais -> BUILD/test-artifacts/dashboard-study-purge.png.
    std::string artifacts = RelaisBinary();
    for (int i = 0; i < 2; ++i) artifacts = artifacts.substr(0, artifacts.rfind('/'));
    artifacts += "/test-artifacts";
    ::mkdir(artifacts.c_str(), 0755);
    b.Eval("document.getElementById('study-page').scrollIntoView()");
    EXPECT_TRUE(b.Screenshot(artifacts + "/dashboard-study-purge.png")) << b.error();
    ASSERT_TRUE(b.Click("button[data-test=purge-cancel-button]"));
    EXPECT_EQ(b.Eval("document.querySelector('[data-test=purge-confirm]')"), nullptr);
    EXPECT_EQ(QueueUids(admin_port, "OFFLINE"), before);  // asking removed nothing

    // Shown, then one of its rows purged elsewhere (the CLI, another
    // admin): the confirmation no longer matches, nothing is done, and the
    // page says so with the API's message.
    ASSERT_TRUE(b.Click("button[data-test=study-purge][data-dest=OFFLINE]")) << b.Html();
    EXPECT_EQ(b.WaitFor(kShown), expected) << b.Html();
    RunResult other = RunCommand(
        {"curl", "-s", "-m", "30", "-H", std::string("Authorization: Bearer ") + kAdmin, "-H",
         "Content-Type: application/json", "-d", json({{"uids", {uids[0]}}, {"destination", "OFFLINE"}}).dump(),
         "http://127.0.0.1:" + std::to_string(admin_port) + "/api/queue/purge"},
        60);
    ASSERT_EQ(json::parse(other.output, nullptr, false), json({{"purged", 1}})) << other.output;
    ASSERT_TRUE(b.Click("button[data-test=purge-confirm-button]"));
    json msg = b.WaitFor(std::string(kMessage) + ".includes('purge') && " + kMessage);
    EXPECT_EQ(msg,
              "Could not purge this study at OFFLINE: the selection changed: it has 1 rows now, 2 were confirmed; "
              "nothing was done, look again")
        << b.Html();
    EXPECT_EQ(b.Eval("document.querySelector('[data-test=study-action-message]').getAttribute('data-value')"), "error");
    EXPECT_EQ(QueueUids(admin_port, "OFFLINE"), (std::set<std::string>{uids[1], mr_uid}));

    // Looked at again: the one row left, purged.
    ASSERT_TRUE(b.Click("button[data-test=study-purge][data-dest=OFFLINE]")) << b.Html();
    EXPECT_EQ(b.WaitFor(kShown), "OFFLINE " + uids[1]) << b.Html();
    ASSERT_TRUE(b.Click("button[data-test=purge-confirm-button]"));
    msg = b.WaitFor(std::string(kMessage) + ".includes('Purged') && " + kMessage);
    EXPECT_EQ(msg, "Purged 1 row of this study at OFFLINE.") << b.Html();
    EXPECT_EQ(QueueUids(admin_port, "OFFLINE"), std::set<std::string>{mr_uid});  // the other study's row stays
    json after = Api(admin_port, "/api/studies/" + study);
    EXPECT_EQ(Dest(after, "PACS").value("sent", 0), 2) << after.dump();
    EXPECT_EQ(Dest(after, "OFFLINE").value("queued", -1), 0) << after.dump();

    // The destination card's purge (the queue of OFFLINE: the MR left),
    // through the same dry run and confirmation.
    ASSERT_FALSE(b.WaitFor("document.querySelector('button[data-test=purge-button][data-name=OFFLINE]')").is_null())
        << b.Html();
    ASSERT_TRUE(b.Click("button[data-test=purge-button][data-name=OFFLINE]"));
    EXPECT_EQ(b.WaitFor(kShown), "OFFLINE " + mr_uid) << b.Html();
    ASSERT_TRUE(b.Click("#dest-purge-panel button[data-test=purge-confirm-button]"));
    EXPECT_EQ(b.WaitFor("document.querySelector('[data-test=action-message]').textContent"),
              "Purged 1 row of the queue of OFFLINE.")
        << b.Html();
    EXPECT_TRUE(QueueUids(admin_port, "OFFLINE").empty());
  }
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

}  // namespace
}  // namespace relais::itest
