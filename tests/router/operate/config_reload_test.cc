#include "router/operate/config_reload.h"

#include <gtest/gtest.h>

namespace relais::router {
namespace {

rules::AppConfig Base() {
  rules::AppConfig c;
  c.listener.ae_title = "RELAIS";
  c.store.path = "/var/lib/relais/store";
  c.admin.enabled = true;
  c.admin.tokens.push_back({"alice", "admin", std::string(64, 'a')});
  return c;
}

TEST(ConfigReloadTest, SameConfigChangesNothing) {
  ConfigChanges c = DiffConfig(Base(), Base());
  EXPECT_FALSE(c.any_live());
  EXPECT_TRUE(c.restart_needed.empty());
}

TEST(ConfigReloadTest, NewTokenAlertsAndWaterMarksApplyLive) {
  rules::AppConfig after = Base();
  after.admin.tokens.push_back({"bob", "viewer", std::string(64, 'b')});
  after.alerts.command = "/usr/local/bin/page";
  after.store.high_water = 0.95;
  ConfigChanges c = DiffConfig(Base(), after);
  EXPECT_TRUE(c.admin_tokens);
  EXPECT_TRUE(c.alerts);
  EXPECT_TRUE(c.water_marks);
  EXPECT_TRUE(c.restart_needed.empty());
}

TEST(ConfigReloadTest, ChangedRoleIsATokenChange) {
  rules::AppConfig after = Base();
  after.admin.tokens[0].role = "viewer";
  EXPECT_TRUE(DiffConfig(Base(), after).admin_tokens);
}

TEST(ConfigReloadTest, ListenerStoreAndTlsNeedARestart) {
  rules::AppConfig after = Base();
  after.listener.port = 104;
  after.store.path = "/srv/store";
  after.tls.enabled = true;
  after.admin.port = 9000;
  ConfigChanges c = DiffConfig(Base(), after);
  EXPECT_FALSE(c.any_live());
  EXPECT_EQ(c.restart_needed, (std::vector<std::string>{"[listener] port", "[store] path", "[admin] port", "[tls]"}));
}

TEST(ConfigReloadTest, RetentionsApplyLive) {
  rules::AppConfig before = Base();
  before.delivery.retention_s = 7 * 86400;
  rules::AppConfig after = before;
  after.delivery.retention_s = 86400;
  after.delivery.dead_letter_retention_s = 3600;
  after.store.history_retention_s = 90 * 86400;
  ConfigChanges c = DiffConfig(before, after);
  EXPECT_TRUE(c.any_live());
  EXPECT_TRUE(c.restart_needed.empty()) << c.restart_needed.front();
  EXPECT_EQ(c.retentions, (std::vector<std::string>{"[store] history_retention 31536000s -> 7776000s",
                                                    "[delivery] retention 604800s -> 86400s",
                                                    "[delivery] dead_letter_retention 2592000s -> 3600s"}));
}

}  // namespace
}  // namespace relais::router
