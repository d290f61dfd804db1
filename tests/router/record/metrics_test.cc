// Metrics (router/record/metrics.h) and RenderPrometheus (router/operate/prometheus.h): the page is parsed back
// as a Prometheus scraper would (text exposition format 0.0.4) and its
// figures checked against what was fed in.
#include "router/record/metrics.h"
#include "router/operate/prometheus.h"
#include "tests/router/loopback.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "router/operate/storage_watch.h"
#include "router/receive/server.h"
#include "tests/store/store_test_util.h"

namespace relais::router {
namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
  std::string line;
};

struct Parsed {
  std::map<std::string, std::string> types;  // family -> counter/gauge/histogram/...
  std::set<std::string> helps;
  std::vector<Sample> samples;
  std::vector<std::string> errors;
  std::vector<std::string> family_order;  // family of each sample, in page order
};

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

bool ParseValue(const std::string& s, double* out) {
  if (s == "+Inf") return *out = INFINITY, true;
  if (s == "-Inf") return *out = -INFINITY, true;
  if (s == "NaN") return *out = NAN, true;
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// The family a sample belongs to: its own name, or a histogram's name
// without _bucket/_sum/_count.
std::string FamilyOf(const Parsed& p, const std::string& name) {
  if (p.types.count(name) != 0) return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string sfx = suffix;
    if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
      std::string base = name.substr(0, name.size() - sfx.size());
      auto it = p.types.find(base);
      if (it != p.types.end() && it->second == "histogram") return base;
    }
  }
  return "";
}

Parsed Parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      std::string rest = line.substr(7);
      p.helps.insert(rest.substr(0, rest.find(' ')));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream f(line.substr(7));
      std::string name, type;
      f >> name >> type;
      if (p.types.count(name) != 0) p.errors.push_back("TYPE twice: " + line);
      if (type != "counter" && type != "gauge" && type != "histogram") p.errors.push_back("odd TYPE: " + line);
      p.types[name] = type;
      continue;
    }
    Sample s;
    s.line = line;
    size_t i = 0;
    if (line.empty() || !IsNameStart(line[0])) {
      p.errors.push_back("not a sample: '" + line + "'");
      continue;
    }
    while (i < line.size() && IsNameChar(line[i])) ++i;
    s.name = line.substr(0, i);
    bool bad = false;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t start = i;
        while (i < line.size() && IsNameChar(line[i])) ++i;
        std::string key = line.substr(start, i - start);
        if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          bad = true;
          break;
        }
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            if (i + 1 >= line.size()) break;
            char e = line[i + 1];
            if (e == 'n') {
              value += '\n';
            } else if (e == '\\' || e == '"') {
              value += e;
            } else {
              bad = true;
            }
            i += 2;
          } else {
            value += line[i++];
          }
        }
        if (i >= line.size()) {
          bad = true;
          break;
        }
        ++i;  // closing quote
        if (s.labels.count(key) != 0) bad = true;
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) bad = true;
      ++i;  // '}'
    }
    if (bad || i >= line.size() || line[i] != ' ' || !ParseValue(line.substr(i + 1), &s.value)) {
      p.errors.push_back("bad sample: '" + line + "'");
      continue;
    }
    std::string family = FamilyOf(p, s.name);
    if (family.empty()) p.errors.push_back("sample without a TYPE before it: " + line);
    p.family_order.push_back(family);
    p.samples.push_back(std::move(s));
  }
  return p;
}

std::string Key(const std::string& name, const std::map<std::string, std::string>& labels) {
  std::string k = name + "{";
  for (const auto& [a, b] : labels) k += a + "=" + b + ";";
  return k + "}";
}

// The checks every rendered page must pass. Returns the problems found.
std::vector<std::string> Validate(const Parsed& p) {
  std::vector<std::string> errors = p.errors;
  std::set<std::string> seen;
  for (const Sample& s : p.samples) {
    if (!seen.insert(Key(s.name, s.labels)).second) errors.push_back("duplicate sample: " + s.line);
  }
  // A family's samples are contiguous.
  std::set<std::string> finished;
  for (size_t i = 0; i < p.family_order.size(); ++i) {
    if (i > 0 && p.family_order[i] != p.family_order[i - 1]) finished.insert(p.family_order[i - 1]);
    if (finished.count(p.family_order[i]) != 0) errors.push_back("family split: " + p.samples[i].line);
  }
  for (const auto& [name, type] : p.types) {
    if (p.helps.count(name) == 0) errors.push_back("no HELP: " + name);
    if (name.rfind("relais_", 0) != 0) errors.push_back("no relais_ prefix: " + name);
    bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    if (type == "counter" && !total) errors.push_back("counter without _total: " + name);
    if (type != "counter" && total) errors.push_back("_total on a " + type + ": " + name);
  }
  // Histograms: per label set (le aside), buckets ascend in le and count,
  // the last is +Inf and equals _count; _sum is there.
  for (const auto& [name, type] : p.types) {
    if (type != "histogram") continue;
    std::map<std::string, std::vector<const Sample*>> buckets;
    std::map<std::string, double> counts, sums;
    for (const Sample& s : p.samples) {
      auto labels = s.labels;
      labels.erase("le");
      std::string k = Key("", labels);
      if (s.name == name + "_bucket") {
        if (s.labels.count("le") == 0) errors.push_back("bucket without le: " + s.line);
        buckets[k].push_back(&s);
      } else if (s.name == name + "_count") {
        counts[k] = s.value;
      } else if (s.name == name + "_sum") {
        sums[k] = s.value;
      }
    }
    if (buckets.empty()) errors.push_back("histogram without buckets: " + name);
    for (const auto& [k, list] : buckets) {
      double last_le = -INFINITY, last_count = 0;
      for (const Sample* b : list) {
        double le = 0;
        if (!ParseValue(b->labels.at("le"), &le) || le <= last_le) errors.push_back("le not ascending: " + b->line);
        if (b->value < last_count) errors.push_back("bucket not cumulative: " + b->line);
        last_le = le;
        last_count = b->value;
      }
      if (list.back()->labels.at("le") != "+Inf") errors.push_back("last bucket is not +Inf: " + name + k);
      if (counts.count(k) == 0 || counts[k] != list.back()->value) {
        errors.push_back("+Inf bucket != _count: " + name + k);
      }
      if (sums.count(k) == 0) errors.push_back("no _sum: " + name + k);
    }
  }
  return errors;
}

// The value of one sample, or NaN when the page lacks it.
double Value(const Parsed& p, const std::string& name, const std::map<std::string, std::string>& labels = {}) {
  for (const Sample& s : p.samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return NAN;
}

bool HasFamily(const Parsed& p, const std::string& name) { return p.types.count(name) != 0; }

const std::map<std::string, std::string> kDefault = {{"listener", "default"}};

Parsed RenderAndCheck(const MetricsSources& src) {
  std::string text = RenderPrometheus(src);
  Parsed p = Parse(text);
  std::vector<std::string> errors = Validate(p);
  for (const std::string& e : errors) ADD_FAILURE() << e;
  if (!errors.empty()) ADD_FAILURE() << "page:\n" << text;
  return p;
}

TEST(MetricsParserTest, CatchesMalformedPages) {
  // The validator must be able to fail.
  EXPECT_FALSE(Validate(Parse("relais_x 1\n")).empty()) << "no TYPE";
  EXPECT_FALSE(Validate(Parse("# HELP relais_x x\n# TYPE relais_x counter\nrelais_x 1\n")).empty()) << "no _total";
  EXPECT_FALSE(
      Validate(Parse("# HELP relais_x_total x\n# TYPE relais_x_total counter\nrelais_x_total{a=\"b} 1\n")).empty());
  EXPECT_FALSE(Validate(Parse("# HELP relais_h x\n# TYPE relais_h histogram\n"
                              "relais_h_bucket{le=\"1\"} 2\nrelais_h_bucket{le=\"+Inf\"} 1\n"
                              "relais_h_sum 0\nrelais_h_count 1\n"))
                   .empty())
      << "not cumulative";
  EXPECT_FALSE(Validate(Parse("# HELP relais_h x\n# TYPE relais_h histogram\n"
                              "relais_h_bucket{le=\"1\"} 1\nrelais_h_bucket{le=\"+Inf\"} 2\n"
                              "relais_h_sum 0\nrelais_h_count 3\n"))
                   .empty())
      << "+Inf != count";
  EXPECT_TRUE(Validate(Parse("# HELP relais_h x\n# TYPE relais_h histogram\n"
                             "relais_h_bucket{le=\"1\"} 1\nrelais_h_bucket{le=\"+Inf\"} 2\n"
                             "relais_h_sum 0.5\nrelais_h_count 2\n"))
                  .empty());
}

TEST(MetricsTest, EmptySourcesRenderUpAndBuildInfoOnly) {
  MetricsSources src;
  src.version = "0.5.0";
  src.revision = "abc123";
  Parsed p = RenderAndCheck(src);
  EXPECT_EQ(Value(p, "relais_up"), 1);
  EXPECT_EQ(Value(p, "relais_build_info", {{"version", "0.5.0"}, {"revision", "abc123"}}), 1);
  EXPECT_FALSE(HasFamily(p, "relais_store_used_bytes"));
  EXPECT_FALSE(HasFamily(p, "relais_associations_accepted_total"));
}

TEST(MetricsTest, ListenerCountersAndLatencyHistogram) {
  Metrics m;
  const int64_t now = 1'700'000'000'000;
  for (int i = 0; i < 3; ++i) m.AssociationAccepted();
  m.AssociationRejected("called-ae");
  m.AssociationRejected("called-ae");
  m.AssociationRejected("limit");
  m.ObjectReceived(1000, 0.003, now);  // le 0.005 and up
  m.ObjectReceived(2000, 0.2, now);    // le 0.25 and up
  m.ObjectReceived(500, 20, now);      // above every bound: +Inf only
  m.ObjectRefused(0xA700);
  m.ObjectRefused(0xA700);
  m.ObjectRefused(0xC000);
  m.ObjectDuplicate();
  m.RoutesSuppressed(2);
  m.RoutesSuppressed(1);
  m.AdminRequest("ok");
  m.AdminRequest("ok");
  m.AdminRequest("unauthorized");
  m.AlertSent("destination-down", true);
  m.AlertSent("destination-down", false);
  m.AlertSent("intake-closed", true);

  MetricsSources src;
  src.metrics = &m;
  src.now_unix_ms = now;
  Parsed p = RenderAndCheck(src);
  EXPECT_EQ(Value(p, "relais_associations_accepted_total", kDefault), 3);
  EXPECT_EQ(Value(p, "relais_associations_rejected_total", {{"listener", "default"}, {"reason", "called-ae"}}), 2);
  EXPECT_EQ(Value(p, "relais_associations_rejected_total", {{"listener", "default"}, {"reason", "limit"}}), 1);
  EXPECT_EQ(Value(p, "relais_objects_received_total", kDefault), 3);
  EXPECT_EQ(Value(p, "relais_received_bytes_total", kDefault), 3500);
  EXPECT_EQ(Value(p, "relais_objects_refused_total", {{"listener", "default"}, {"status", "0xA700"}}), 2);
  EXPECT_EQ(Value(p, "relais_objects_refused_total", {{"listener", "default"}, {"status", "0xC000"}}), 1);
  EXPECT_EQ(Value(p, "relais_objects_duplicate_total", kDefault), 1);
  EXPECT_EQ(Value(p, "relais_routes_suppressed_total", kDefault), 3);
  auto bucket = [&](const std::string& le) {
    return Value(p, "relais_cstore_latency_seconds_bucket", {{"listener", "default"}, {"le", le}});
  };
  EXPECT_EQ(bucket("0.001"), 0);
  EXPECT_EQ(bucket("0.0025"), 0);
  EXPECT_EQ(bucket("0.005"), 1);
  EXPECT_EQ(bucket("0.1"), 1);
  EXPECT_EQ(bucket("0.25"), 2);
  EXPECT_EQ(bucket("10"), 2);
  EXPECT_EQ(bucket("+Inf"), 3);
  EXPECT_EQ(Value(p, "relais_cstore_latency_seconds_count", kDefault), 3);
  EXPECT_DOUBLE_EQ(Value(p, "relais_cstore_latency_seconds_sum", kDefault), 20.203);
  EXPECT_EQ(Value(p, "relais_admin_requests_total", {{"outcome", "ok"}}), 2);
  EXPECT_EQ(Value(p, "relais_admin_requests_total", {{"outcome", "unauthorized"}}), 1);
  EXPECT_EQ(Value(p, "relais_alerts_total", {{"kind", "destination-down"}, {"result", "sent"}}), 1);
  EXPECT_EQ(Value(p, "relais_alerts_total", {{"kind", "destination-down"}, {"result", "failed"}}), 1);
  EXPECT_EQ(Value(p, "relais_alerts_total", {{"kind", "intake-closed"}, {"result", "sent"}}), 1);
  EXPECT_EQ(p.types.at("relais_cstore_latency_seconds"), "histogram");
}

TEST(MetricsTest, DestinationFiguresAndLabelEscaping) {
  // A destination name as an admin might write it in a rule file.
  const std::string weird = "we\"ird\\name\nx";
  std::vector<DeliveryScheduler::DestinationStats> stats(2);
  stats[0].name = "ARCHIVE";
  stats[0].state = "down";
  stats[0].down = true;
  stats[0].sent = 5;
  stats[0].bytes_sent = 12345;
  stats[0].sent_bytes_per_s = 205.75;
  stats[0].retries = 7;
  stats[0].dead = 2;
  stats[0].associations = 1;
  stats[0].consecutive_failures = 4;
  stats[0].failures_by_class = {{"link", 3}, {"limit", 1}};
  stats[1].name = weird;
  stats[1].state = "paused";
  stats[1].sent = 9;
  std::vector<store::Store::QueueSummary> queues(2);
  const int64_t now = 1'700'000'100'000;
  queues[0] = {"ARCHIVE", 12, 3, now - 90'500};
  queues[1] = {weird, 0, 0, 0};

  MetricsSources src;
  src.destinations = &stats;
  src.queues = &queues;
  src.now_unix_ms = now;
  std::string text = RenderPrometheus(src);
  Parsed p = RenderAndCheck(src);
  const std::map<std::string, std::string> a = {{"destination", "ARCHIVE"}};
  const std::map<std::string, std::string> w = {{"destination", weird}};
  EXPECT_EQ(Value(p, "relais_destination_objects_sent_total", a), 5);
  EXPECT_EQ(Value(p, "relais_destination_objects_sent_total", w), 9);
  EXPECT_EQ(Value(p, "relais_destination_sent_bytes_total", a), 12345);
  EXPECT_EQ(Value(p, "relais_destination_sent_bytes_per_second", a), 205.75);
  EXPECT_EQ(Value(p, "relais_destination_retries_total", a), 7);
  EXPECT_EQ(Value(p, "relais_destination_dead_lettered_total", a), 2);
  EXPECT_EQ(Value(p, "relais_destination_associations", a), 1);
  EXPECT_EQ(Value(p, "relais_destination_consecutive_failures", a), 4);
  EXPECT_EQ(Value(p, "relais_destination_failures_total", {{"destination", "ARCHIVE"}, {"class", "link"}}), 3);
  EXPECT_EQ(Value(p, "relais_destination_failures_total", {{"destination", "ARCHIVE"}, {"class", "limit"}}), 1);
  // Every class is present (rate() needs a zero before the first failure).
  for (const char* c : {"transient-status", "refused", "unsupported", "unreadable"}) {
    EXPECT_EQ(Value(p, "relais_destination_failures_total", {{"destination", "ARCHIVE"}, {"class", c}}), 0) << c;
  }
  for (const char* st : {"idle", "sending", "backing-off", "down", "paused"}) {
    EXPECT_EQ(Value(p, "relais_destination_state", {{"destination", "ARCHIVE"}, {"state", st}}),
              std::string(st) == "down" ? 1 : 0)
        << st;
    EXPECT_EQ(Value(p, "relais_destination_state", {{"destination", weird}, {"state", st}}),
              std::string(st) == "paused" ? 1 : 0)
        << st;
  }
  EXPECT_EQ(Value(p, "relais_destination_queue_rows", a), 12);
  EXPECT_EQ(Value(p, "relais_destination_dead_letters", a), 3);
  EXPECT_DOUBLE_EQ(Value(p, "relais_destination_oldest_queued_age_seconds", a), 90.5);
  EXPECT_EQ(Value(p, "relais_destination_oldest_queued_age_seconds", w), 0);
  // The exact escaped bytes, as the exposition format spells them.
  EXPECT_NE(text.find("relais_destination_objects_sent_total{destination=\"we\\\"ird\\\\name\\nx\"} 9\n"),
            std::string::npos)
      << text;
  // No raw line feed inside a sample: every line is a comment or a sample.
  EXPECT_EQ(text.find("\nx\""), std::string::npos);
}

TEST(MetricsTest, StoreFiguresAndCommitBatchHistogram) {
  store::testing::TempDir dir;
  store::Options o;
  o.path = dir.Sub("store");
  o.compression_level = 0;
  auto opened = store::Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<store::Store> st = std::move(*opened);
  for (int i = 0; i < 3; ++i) {
    auto r = store::testing::PutObject(*st, store::testing::MakeMeta("1.2.3." + std::to_string(i)),
                                       store::testing::RandomBytes(10000, i));
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  }
  store::Store::Stats s = st->GetStats();
  MetricsSources src;
  src.store = st.get();
  Parsed p = RenderAndCheck(src);
  EXPECT_EQ(Value(p, "relais_store_objects"), 3);
  EXPECT_EQ(Value(p, "relais_store_raw_bytes"), 30000);
  EXPECT_EQ(Value(p, "relais_store_used_bytes"), static_cast<double>(s.used_bytes));
  EXPECT_GT(s.used_bytes, 0u);
  // No storage watch: capacity is the map size.
  EXPECT_EQ(Value(p, "relais_store_capacity_bytes"), static_cast<double>(s.map_size));
  EXPECT_EQ(Value(p, "relais_store_free_bytes"), static_cast<double>(s.map_size - s.used_bytes));
  EXPECT_EQ(Value(p, "relais_store_commits_total"), static_cast<double>(s.commits));
  EXPECT_GE(s.commits, 3u);
  EXPECT_EQ(Value(p, "relais_store_fsyncs_total"), static_cast<double>(s.fsyncs));
  uint64_t batches = 0;
  for (uint64_t n : s.batch_count) batches += n;
  EXPECT_GE(batches, 3u);
  EXPECT_EQ(Value(p, "relais_store_commit_batch_operations_count"), static_cast<double>(batches));
  EXPECT_EQ(Value(p, "relais_store_commit_batch_operations_sum"), static_cast<double>(s.batch_ops));
  EXPECT_EQ(Value(p, "relais_store_commit_batch_operations_bucket", {{"le", "1"}}),
            static_cast<double>(s.batch_count[0]));
  EXPECT_EQ(Value(p, "relais_store_commit_batch_operations_bucket", {{"le", "+Inf"}}), static_cast<double>(batches));
  EXPECT_FALSE(HasFamily(p, "relais_store_intake_closed")) << "neither server nor storage watch given";

  // With the storage watch: its capacity, ratio and water marks.
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    StorageWatch watch(&loop, st.get(), nullptr, nullptr, dir.Sub("store"), 0.9, 0.8);
    watch.SampleNow();
    const StorageWatch::Usage& u = watch.usage();
    src.storage = &watch;
    p = RenderAndCheck(src);
    EXPECT_EQ(Value(p, "relais_store_capacity_bytes"), static_cast<double>(u.capacity_bytes));
    EXPECT_EQ(Value(p, "relais_store_free_bytes"), static_cast<double>(u.capacity_bytes - s.used_bytes));
    EXPECT_EQ(Value(p, "relais_store_filesystem_available_bytes"), static_cast<double>(u.fs_available_bytes));
    EXPECT_GT(u.fs_available_bytes, 0u);
    EXPECT_DOUBLE_EQ(Value(p, "relais_store_used_ratio"), u.fraction);
    EXPECT_DOUBLE_EQ(Value(p, "relais_store_high_water_ratio"), 0.9);
    EXPECT_DOUBLE_EQ(Value(p, "relais_store_low_water_ratio"), 0.8);
    EXPECT_EQ(Value(p, "relais_store_intake_closed"), 0);
    EXPECT_EQ(Value(p, "relais_store_intake_closings_total"), 0);
    watch.Shutdown();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(MetricsTest, LastHourRollsOverAndZeroesOldMinutes) {
  Metrics m;
  const int64_t kMin = 60'000;
  const int64_t base = 28'000'000 * kMin;  // a minute boundary
  m.ObjectReceived(100, 0.01, base + 10 * kMin + 5);
  m.ObjectReceived(50, 0.01, base + 10 * kMin + 59'999);
  m.ObjectSent(70, base + 10 * kMin + 1);
  m.ObjectSent(30, base + 12 * kMin);

  std::vector<Metrics::Minute> h = m.LastHour(base + 12 * kMin + 30'000);
  ASSERT_EQ(h.size(), 60u);
  EXPECT_EQ(h.back().start_unix_ms, base + 12 * kMin);
  for (size_t i = 1; i < h.size(); ++i) EXPECT_EQ(h[i].start_unix_ms - h[i - 1].start_unix_ms, kMin);
  const Metrics::Minute& m10 = h[59 - 2];
  EXPECT_EQ(m10.start_unix_ms, base + 10 * kMin);
  EXPECT_EQ(m10.received, 2u);
  EXPECT_EQ(m10.received_bytes, 150u);
  EXPECT_EQ(m10.sent, 1u);
  EXPECT_EQ(m10.sent_bytes, 70u);
  EXPECT_EQ(h[59 - 1].received + h[59 - 1].sent, 0u) << "minute 11 had no traffic";
  EXPECT_EQ(h.back().sent_bytes, 30u);

  // 59 minutes later minute 10 is the oldest entry; one later it is gone.
  h = m.LastHour(base + 69 * kMin);
  EXPECT_EQ(h.front().start_unix_ms, base + 10 * kMin);
  EXPECT_EQ(h.front().received, 2u);
  h = m.LastHour(base + 70 * kMin);
  EXPECT_EQ(h.front().start_unix_ms, base + 11 * kMin);
  uint64_t sent = 0;
  for (const auto& x : h) {
    EXPECT_EQ(x.received + x.received_bytes, 0u) << x.start_unix_ms;  // minute 10's are gone
    sent += x.sent;
  }
  EXPECT_EQ(sent, 1u) << "minute 12's object is still in the hour";
  EXPECT_EQ(h[1].sent_bytes, 30u);

  // Minute 70 reuses minute 10's slot: it starts from zero.
  m.ObjectReceived(7, 0.01, base + 70 * kMin + 1);
  h = m.LastHour(base + 70 * kMin + 2);
  EXPECT_EQ(h.back().start_unix_ms, base + 70 * kMin);
  EXPECT_EQ(h.back().received, 1u);
  EXPECT_EQ(h.back().received_bytes, 7u);
  EXPECT_EQ(h.back().sent, 0u);
  // Far later (a day): every entry is empty, old slots are never shown.
  h = m.LastHour(base + 24 * 60 * kMin + 10 * kMin);
  for (const auto& x : h) EXPECT_EQ(x.received + x.sent, 0u);
  // Totals are not affected by the ring.
  EXPECT_EQ(m.objects_received(), 3u);
  EXPECT_EQ(m.bytes_received(), 157u);
}

using relais::testing::FreePort;

// The listener's figures as associations really come and go: a Server on
// a loop in this process, DCMTK's storescu as the sender.
TEST(ListenerMetricsTest, AssociationsObjectsRefusalsAndLatencyAreCounted) {
  store::testing::TempDir dir;
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  store::Options o;
  o.path = dir.Sub("store");
  o.compression_level = 0;
  auto opened = store::Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<store::Store> st = std::move(*opened);
  ScpSettings settings;
  settings.ae_title = "RELAIS";
  auto server = std::make_unique<Server>(&loop, st.get(), settings);
  st->SetProgressCallback([s = server.get()] { s->Post([s] { s->ResumePaused(); }); });
  Metrics metrics;
  server->SetMetrics(&metrics);
  const uint16_t port = FreePort();
  ASSERT_TRUE(server->Listen("127.0.0.1", port).ok());

  // Runs storescu on another thread while the loop serves it.
  auto storescu = [&](const std::string& called, const std::vector<std::string>& files) {
    std::string cmd = "storescu -aet SENDER -aec " + called + " 127.0.0.1 " + std::to_string(port);
    for (const std::string& f : files) cmd += " " + std::string(RELAIS_CORPUS_DIR) + "/" + f;
    cmd += " >" + dir.Sub("storescu.log") + " 2>&1";
    std::atomic<bool> done{false};
    std::thread t([&] {
      (void)std::system(cmd.c_str());
      done = true;
    });
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) noexcept {}, 10, 10);
    while (!done) uv_run(&loop, UV_RUN_ONCE);
    t.join();
    // Let the association's close run.
    for (int i = 0; i < 20; ++i) uv_run(&loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
  };

  storescu("NOTRELAIS", {"dcm4che__MR01.dcm"});
  EXPECT_EQ(metrics.associations_accepted(), 0u);
  EXPECT_EQ(metrics.associations_rejected().count("called-ae"), 1u);
  EXPECT_EQ(metrics.associations_rejected().at("called-ae"), 1u);

  storescu("RELAIS", {"dcm4che__MR01.dcm", "dcm4che__MR02.dcm"});
  EXPECT_EQ(metrics.associations_accepted(), 1u);
  EXPECT_EQ(metrics.objects_received(), 2u);
  uint64_t raw = 0;
  ASSERT_TRUE(st->List([&](const store::ObjectMeta& m) {
                  raw += m.raw_size;
                  return true;
                }).ok());
  EXPECT_GT(raw, 0u);
  EXPECT_EQ(metrics.bytes_received(), raw);
  EXPECT_EQ(metrics.latency_buckets().back(), 2u);
  EXPECT_GT(metrics.latency_sum(), 0.0);
  EXPECT_LT(metrics.latency_sum(), 60.0);
  EXPECT_TRUE(metrics.objects_refused().empty());

  server->SetIntakeClosed("store above its high-water mark");
  storescu("RELAIS", {"dcm4che__MR03.dcm"});
  EXPECT_EQ(metrics.associations_accepted(), 2u);
  EXPECT_EQ(metrics.objects_received(), 2u);
  ASSERT_EQ(metrics.objects_refused().count(0xA700), 1u);
  EXPECT_EQ(metrics.objects_refused().at(0xA700), 1u);

  MetricsSources src;
  src.metrics = &metrics;
  src.server = server.get();
  src.store = st.get();
  Parsed p = RenderAndCheck(src);
  EXPECT_EQ(Value(p, "relais_associations_open", kDefault), 0);
  EXPECT_EQ(Value(p, "relais_store_intake_closed"), 1);
  EXPECT_EQ(Value(p, "relais_objects_received_total", kDefault), 2);
  EXPECT_EQ(Value(p, "relais_cstore_latency_seconds_count", kDefault), 2);
  EXPECT_EQ(Value(p, "relais_rules_reloads_total"), 0);
  EXPECT_EQ(Value(p, "relais_store_objects"), 2);

  server->Shutdown();
  uv_run(&loop, UV_RUN_DEFAULT);
  server.reset();
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace relais::router
