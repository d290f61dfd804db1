// The admin API's request helpers (router/operate/admin_request.h): the
// listings' query and cursor, percent-decoding and action bodies.
#include "router/operate/admin_request.h"

#include <gtest/gtest.h>

#include <string>

namespace relais::router::admin {
namespace {

TEST(AdminRequestTest, QueueQueryTakesTheSixParametersDecoded) {
  QueueQuery q;
  std::string error;
  ASSERT_TRUE(
      ParseQueueQuery("destination=ct%20archive&patient_id=P+1&&study_instance_uid=1.2&sop_instance_uid=1.3"
                      "&limit=1000&cursor=ab",
                      &q, &error))
      << error;
  EXPECT_EQ(q.destination, "ct archive");
  EXPECT_EQ(q.patient_id, "P 1");
  EXPECT_EQ(q.study_instance_uid, "1.2");
  EXPECT_EQ(q.sop_instance_uid, "1.3");
  EXPECT_EQ(q.limit, 1000u);
  EXPECT_EQ(q.cursor, "ab");
  QueueQuery defaults;
  ASSERT_TRUE(ParseQueueQuery("", &defaults, &error));
  EXPECT_EQ(defaults.limit, 100u);
}

TEST(AdminRequestTest, QueueQueryRefusesUnknownNamesBadEscapesAndLimitsOutOfRange) {
  for (const char* bad : {"limit=0", "limit=1001", "limit=-1", "limit=", "limit=5x", "limit=99999999999999999999"}) {
    QueueQuery q;
    std::string error;
    EXPECT_FALSE(ParseQueueQuery(bad, &q, &error)) << bad;
    EXPECT_EQ(error, "limit must be an integer from 1 to 1000") << bad;
  }
  QueueQuery q;
  std::string error;
  EXPECT_FALSE(ParseQueueQuery("destination=%zz", &q, &error));
  EXPECT_EQ(error, "bad percent-encoding in the query");
  EXPECT_FALSE(ParseQueueQuery("destination=%4", &q, &error));
  EXPECT_FALSE(ParseQueueQuery("colour=red", &q, &error));
  EXPECT_NE(error.find("unknown parameter \"colour\""), std::string::npos) << error;
}

TEST(AdminRequestTest, CursorRoundTripsAndOrdersRowsAfterIt) {
  store::QueueRow last;
  last.destination = "archive";
  last.priority = -5;
  last.object_id = 42;
  QueueCursor cur;
  ASSERT_TRUE(DecodeQueueCursor(EncodeQueueCursor(last), &cur));
  EXPECT_EQ(cur.destination, "archive");
  EXPECT_EQ(cur.priority, -5);
  EXPECT_EQ(cur.object_id, 42u);
  store::QueueRow r = last;
  EXPECT_FALSE(cur.Before(r));  // the row itself is on the previous page
  r.object_id = 43;
  EXPECT_TRUE(cur.Before(r));
  r.priority = -6;  // priority sorts descending
  r.object_id = 1;
  EXPECT_TRUE(cur.Before(r));
  r.destination = "aaa";
  EXPECT_FALSE(cur.Before(r));
}

TEST(AdminRequestTest, CursorsNotMadeByUsAreRefused) {
  QueueCursor cur;
  EXPECT_FALSE(DecodeQueueCursor("zz", &cur));
  EXPECT_FALSE(DecodeQueueCursor("abc", &cur));
  EXPECT_FALSE(DecodeQueueCursor("61", &cur));          // "a": no separators
  EXPECT_FALSE(DecodeQueueCursor("610031", &cur));      // "a\01": one separator
  EXPECT_FALSE(DecodeQueueCursor("6100780031", &cur));  // priority "x"
  EXPECT_FALSE(DecodeQueueCursor("61000031", &cur));    // empty priority
}

TEST(AdminRequestTest, BodiesMustBeEmptyOrAnObjectOfKnownFields) {
  json out;
  std::string error;
  EXPECT_TRUE(ParseBody(" \r\n", {}, &out, &error));
  EXPECT_EQ(out, json::object());
  EXPECT_TRUE(ParseBody(R"({"dead":true})", {"dead"}, &out, &error));
  EXPECT_FALSE(ParseBody(R"({"x":1})", {}, &out, &error));
  EXPECT_EQ(error, "unknown field \"x\": this takes no fields");
  EXPECT_FALSE(ParseBody(R"({"x":1})", {"dead", "uids"}, &out, &error));
  EXPECT_EQ(error, "unknown field \"x\"; allowed: dead, uids");
  EXPECT_FALSE(ParseBody("[1]", {}, &out, &error));
  EXPECT_EQ(error, "the body must be a JSON object");
  EXPECT_FALSE(ParseBody(std::string("{\"a\0\":1}", 9), {}, &out, &error));
  EXPECT_NE(error.find("NUL"), std::string::npos);
  EXPECT_FALSE(ParseBody(std::string(17, '[') + std::string(17, ']'), {}, &out, &error));
  EXPECT_EQ(error, "the body nests deeper than 16 levels");
  EXPECT_TRUE(ParseBody("{\"dead\":[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}", {"dead"}, &out, &error)) << error;
}

}  // namespace
}  // namespace relais::router::admin
