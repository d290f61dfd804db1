// AccessPolicy (router/receive/access.h): allow-lists of calling AE titles bound to
// addresses, and user identity negotiation checks.
#include "router/receive/access.h"

#include <gtest/gtest.h>

#include "base/cidr.h"

namespace relais::router {
namespace {

// SHA-256("s3cret"), from `printf %s s3cret | sha256sum`.
constexpr char kS3cretSha256[] = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

rules::ListenerConfig Listener() {
  rules::ListenerConfig c;
  c.ae_title = "RELAIS";
  return c;
}

TEST(CidrTest, ParsesAndContains) {
  std::optional<Cidr> c = Cidr::Parse("10.1.2.0/24");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->Contains("10.1.2.0"));
  EXPECT_TRUE(c->Contains("10.1.2.255"));
  EXPECT_FALSE(c->Contains("10.1.3.1"));
  EXPECT_TRUE(c->Contains("::ffff:10.1.2.9"));  // IPv4-mapped
  EXPECT_FALSE(c->Contains("fd00::1"));
  EXPECT_FALSE(c->Contains("not an ip"));
  std::optional<Cidr> one = Cidr::Parse("192.0.2.7");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->Contains("192.0.2.7"));
  EXPECT_FALSE(one->Contains("192.0.2.8"));
  std::optional<Cidr> v6 = Cidr::Parse("fd00::/8");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->Contains("fd12:3456::1"));
  EXPECT_FALSE(v6->Contains("fe80::1"));
  EXPECT_TRUE(Cidr::Parse("0.0.0.0/0")->Contains("203.0.113.5"));
  for (const char* bad : {"10.1.2.3/24", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/0008",
                          "300.1.1.1", "", "/8", "10.0.0.0/24/1"}) {
    EXPECT_FALSE(Cidr::Parse(bad)) << bad;
  }
}

TEST(AccessTest, EmptyPolicyAcceptsEveryone) {
  Result<AccessPolicy> p = AccessPolicy::Make(Listener());
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->Check("ANY", "203.0.113.9", std::nullopt).allowed);
  EXPECT_FALSE(p->restricts_callers());
  EXPECT_FALSE(p->requires_identity());
}

TEST(AccessTest, AllowListBindsAeTitlesToAddresses) {
  rules::ListenerConfig c = Listener();
  c.allow = {{"CT1", "10.1.2.0/24"}, {"MR1", ""}, {"*", "192.0.2.0/28"}};
  Result<AccessPolicy> p = AccessPolicy::Make(c);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->Check("CT1", "10.1.2.40", std::nullopt).allowed);
  EXPECT_TRUE(p->Check("MR1", "203.0.113.1", std::nullopt).allowed);
  EXPECT_TRUE(p->Check("WHATEVER", "192.0.2.14", std::nullopt).allowed);
  AccessPolicy::Decision moved = p->Check("CT1", "10.1.9.40", std::nullopt);
  EXPECT_FALSE(moved.allowed);
  EXPECT_EQ(moved.rj_reason, 3);  // calling AE title not recognized
  EXPECT_EQ(moved.label, "calling-ae");
  EXPECT_NE(moved.why.find("not allowed from 10.1.9.40"), std::string::npos) << moved.why;
  AccessPolicy::Decision stranger = p->Check("STRANGER", "10.1.2.40", std::nullopt);
  EXPECT_FALSE(stranger.allowed);
  EXPECT_NE(stranger.why.find("not in [[listener.allow]]"), std::string::npos) << stranger.why;
  EXPECT_FALSE(p->Check("ct1", "10.1.2.40", std::nullopt).allowed);  // AE titles are case-sensitive
  // Hostile AE titles are shown safely.
  AccessPolicy::Decision hostile = p->Check(std::string("A\nB\x01") + std::string(200, 'x'), "10.9.9.9", std::nullopt);
  EXPECT_FALSE(hostile.allowed);
  EXPECT_EQ(hostile.why.find('\n'), std::string::npos);
  EXPECT_LT(hostile.why.size(), 300u);
}

ul::UserIdentityRq Identity(uint8_t type, std::string user, std::string pass = "", bool positive = false) {
  ul::UserIdentityRq id;
  id.type = type;
  id.primary_field = std::move(user);
  id.secondary_field = std::move(pass);
  id.positive_response_requested = positive;
  return id;
}

TEST(AccessTest, UserIdentityIsChecked) {
  rules::ListenerConfig c = Listener();
  c.users = {{"modality", kS3cretSha256}, {"legacy", ""}};
  Result<AccessPolicy> p = AccessPolicy::Make(c);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  AccessPolicy::Decision ok = p->Check("CT1", "10.0.0.1", Identity(2, "modality", "s3cret", true));
  EXPECT_TRUE(ok.allowed) << ok.why;
  EXPECT_EQ(ok.user, "modality");
  ASSERT_TRUE(ok.identity_ac.has_value());  // positive response requested: empty server response
  EXPECT_TRUE(ok.identity_ac->empty());
  EXPECT_FALSE(p->Check("CT1", "10.0.0.1", Identity(2, "modality", "s3cret")).identity_ac.has_value());
  EXPECT_TRUE(p->Check("CT1", "10.0.0.1", Identity(1, "legacy")).allowed);

  struct Case {
    std::optional<ul::UserIdentityRq> id;
    const char* why;
  } cases[] = {
      {std::nullopt, "no user identity"},
      {Identity(2, "modality", "wrong"), "wrong passcode for user 'modality'"},
      {Identity(2, "modality", ""), "wrong passcode"},
      {Identity(1, "modality"), "must send a passcode"},
      {Identity(2, "nobody", "s3cret"), "unknown user 'nobody'"},
      {Identity(3, "modality", "ticket"), "type 3 is not supported"},
      {Identity(2, "legacy", "something"), "has no passcode configured"},
  };
  for (const Case& k : cases) {
    AccessPolicy::Decision d = p->Check("CT1", "10.0.0.1", k.id);
    EXPECT_FALSE(d.allowed) << k.why;
    EXPECT_EQ(d.label, "identity");
    EXPECT_EQ(d.rj_reason, 1);
    EXPECT_NE(d.why.find(k.why), std::string::npos) << d.why;
    EXPECT_EQ(d.why.find("s3cret"), std::string::npos) << "a passcode in a message: " << d.why;
  }
}

TEST(AccessTest, MalformedConfigIsRefused) {
  rules::ListenerConfig c = Listener();
  c.allow = {{"CT1", "10.1.2.3/24"}};
  EXPECT_FALSE(AccessPolicy::Make(c).ok());
  c = Listener();
  c.users = {{"u", "abcd"}};
  EXPECT_FALSE(AccessPolicy::Make(c).ok());
}

}  // namespace
}  // namespace relais::router
