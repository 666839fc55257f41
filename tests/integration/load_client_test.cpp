// Integration tests of `ridgeline load`'s client against the fixed-schedule test server on
// 127.0.0.1: measured TTFT and ITL against the schedule, usage, chunked and read-until-close
// framing, the ITL rules on multi-token chunks, errors by kind (connection refused, 500, 429 with
// retries, malformed SSE, an error event, a cut stream, a timeout), no request lost, closed-loop
// concurrency, kept-alive connections, multi-turn sessions carrying real answers, /metrics
// scraping, https, and --find-max against a server of known capacity. Bounds are loose: CI is a
// 2-core machine shared with other jobs.
//   build-load/tests/ridgeline_load_integration_tests
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ridgeline/core/statistics.hpp"
#include "ridgeline/load/load.hpp"
#include "ridgeline/load/test_server.hpp"

namespace ridgeline::load {
namespace {

using fault = test_server_options::fault;

test_server_options schedule(double first, double interval, std::int32_t per_chunk = 1) {
  test_server_options o;
  o.first_token_seconds = first;
  o.token_interval_seconds = interval;
  o.tokens_per_chunk = per_chunk;
  return o;
}

load_options options_for(const test_server& s, const std::string& generator) {
  load_options o;
  o.url = s.url();
  o.model = "test";
  o.generator = generator;
  o.scrape = false;
  return o;
}

level_data run_once(const load_options& o, level_spec spec = {"trace", 0, 0, false}) {
  const load_setup s = configure(o);
  return run_level(s, spec);
}

std::int64_t count(const level_data& l, error_kind k) {
  return std::count_if(l.records.begin(), l.records.end(),
                       [k](const request_record& r) { return r.error == k; });
}

TEST(LoadClient, TtftAndItlFollowTheSchedule) {
  test_server server(schedule(0.05, 0.01));
  const level_data l =
      run_once(options_for(server, "requests=20,rate=50,prompt=fixed:16,output=fixed:20,seed=3"));
  ASSERT_EQ(l.records.size(), 20u);
  for (const auto& r : l.records) {
    ASSERT_TRUE(r.finished()) << r.error_detail;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.usage_prompt_tokens, 16);
    EXPECT_EQ(r.usage_output_tokens, 20);
    EXPECT_EQ(r.counted_output_tokens(), 20);
    EXPECT_EQ(r.chunk_seconds.size(), 20u);
    // TTFT: the server's 50 ms plus loopback and scheduling; never less.
    EXPECT_GE(ttft_of(r), 0.05);
    EXPECT_LT(ttft_of(r), 0.05 + 0.1);
    EXPECT_LT(r.sent - r.scheduled, 0.05);  // lateness
    EXPECT_GE(r.sent - r.scheduled, 0.0);
  }
  std::vector<double> itl;
  for (const auto& r : l.records) append_itl(r, itl_rule::first, itl);
  ASSERT_EQ(itl.size(), 20u * 19u);
  EXPECT_NEAR(bench::median(itl), 0.01, 0.004);
  EXPECT_LT(bench::quantile(itl, 0.9), 0.04);
  // The mean gap over a request is its TPOT.
  const auto& r0 = l.records.front();
  std::vector<double> g;
  append_itl(r0, itl_rule::first, g);
  double sum = 0;
  for (double x : g) sum += x;
  EXPECT_NEAR(sum / static_cast<double>(g.size()), tpot_of(r0), 1e-9);
}

TEST(LoadClient, MultiTokenChunksUnderEachItlRule) {
  test_server server(schedule(0.02, 0.005, 4));  // a chunk of 4 tokens every 20 ms
  load_options o = options_for(server, "requests=6,rate=100,prompt=fixed:8,output=fixed:20");
  o.continuous_usage = true;
  const level_data l = run_once(o);
  EXPECT_EQ(l.chunk_token_source, "continuous_usage");
  std::vector<double> first, split, chunk;
  for (const auto& r : l.records) {
    ASSERT_TRUE(r.finished()) << r.error_detail;
    EXPECT_EQ(r.chunk_tokens, (std::vector<std::int32_t>{4, 4, 4, 4, 4}));
    append_itl(r, itl_rule::first, first);
    append_itl(r, itl_rule::split, split);
    append_itl(r, itl_rule::chunk, chunk);
  }
  EXPECT_EQ(first.size(), 6u * 19u);
  EXPECT_EQ(split.size(), 6u * 19u);
  EXPECT_EQ(chunk.size(), 6u * 4u);
  EXPECT_NEAR(bench::median(chunk), 0.02, 0.006);
  // split: every token's share of its chunk's gap, 5 ms (the first chunk's 3 extras are zeros).
  EXPECT_NEAR(bench::quantile(split, 0.9), 0.005, 0.003);
  // first: one gap per chunk, three zeros after it.
  const auto zeros = std::count(first.begin(), first.end(), 0.0);
  EXPECT_EQ(zeros, 6 * 15);
  // Without continuous usage (or a tokenizer) a chunk counts 1; usage says 20.
  o.continuous_usage = false;
  const level_data m = run_once(o);
  EXPECT_EQ(m.chunk_token_source, "chunks");
  for (const auto& r : m.records) {
    EXPECT_EQ(r.counted_output_tokens(), 5);
    EXPECT_EQ(r.output_tokens(), 20);
  }
  EXPECT_EQ(measure(m.records, itl_rule::first, 1).checks.output_count_mismatches, 6);
}

TEST(LoadClient, ReadUntilCloseFramingAndChatEndpoint) {
  test_server_options so = schedule(0.01, 0.002);
  so.chunked = false;
  test_server server(so);
  load_options o = options_for(server, "requests=5,rate=200,prompt=fixed:10,output=fixed:7");
  o.endpoint = "chat";
  const level_data l = run_once(o);
  for (const auto& r : l.records) {
    ASSERT_TRUE(r.finished()) << r.error_detail;
    EXPECT_EQ(r.chunk_seconds.size(), 7u);  // the role-only first delta is no token
    EXPECT_EQ(r.usage_prompt_tokens, 10);   // words: about one token each, exactly one here
  }
  EXPECT_EQ(server.stats().accepted, 5 + 1);  // no keep-alive without framing; + configure's check
}

TEST(LoadClient, KeptAliveConnectionsAreReused) {
  test_server server(schedule(0.005, 0.001));
  const level_data l =
      run_once(options_for(server, "requests=12,rate=100,prompt=fixed:4,output=fixed:3"),
               {"concurrency", 0, 2, false});
  EXPECT_EQ(count(l, error_kind::none), 12);
  EXPECT_LE(server.stats().accepted, 2 + 1);  // two slots, + configure's reachability check
  EXPECT_EQ(server.stats().max_running, 2);
}

TEST(LoadClient, NonStreamedResponses) {
  test_server server(schedule(0.02, 0.002));
  load_options o = options_for(server, "requests=4,rate=100,prompt=fixed:4,output=fixed:10");
  o.stream = false;
  const level_data l = run_once(o);
  for (const auto& r : l.records) {
    ASSERT_TRUE(r.finished()) << r.error_detail;
    ASSERT_EQ(r.chunk_seconds.size(), 1u);
    EXPECT_EQ(r.chunk_tokens[0], 10);
    EXPECT_GE(ttft_of(r), 0.02 + 9 * 0.002);
  }
}

TEST(LoadClient, ConnectionRefusedIsAConnectError) {
  std::string url;
  {
    test_server gone(schedule(0, 0));
    url = gone.url();
  }
  load_options o;
  o.url = url;
  o.model = "m";
  o.generator = "requests=2";
  EXPECT_THROW(configure(o), std::invalid_argument);
  // Mid-run: a worker whose server went away records connect errors, and loses nothing.
  test_server server(schedule(0, 0));
  o = options_for(server, "requests=3,rate=1000,prompt=fixed:2,output=fixed:2");
  const load_setup s = configure(o);
  server.stop();
  const level_data l = run_level(s, {"trace", 0, 0, false});
  ASSERT_EQ(l.records.size(), 3u);
  EXPECT_EQ(count(l, error_kind::connect), 3);
  EXPECT_NE(l.records[0].error_detail.find("refused"), std::string::npos)
      << l.records[0].error_detail;
}

TEST(LoadClient, ErrorsByKind) {
  struct kase {
    fault f;
    error_kind want;
    double timeout;
    std::int32_t every;
    std::int64_t failures;
  };
  // Faults on requests 1, 3, 5 of the six (every = 2), or on all of them where a failed request
  // closes the connection before any byte: the client opens a fresh one and sends again once,
  // as for a kept-alive connection the server had closed (the retried request would be the
  // next one the server counts).
  for (const kase k : {kase{fault::status_500, error_kind::http_status, 0, 2, 3},
                       kase{fault::malformed, error_kind::malformed_stream, 0, 2, 3},
                       kase{fault::error_event, error_kind::stream_error, 0, 2, 3},
                       kase{fault::close_mid_stream, error_kind::malformed_stream, 0, 2, 3},
                       kase{fault::refuse, error_kind::connect, 0, 1, 6},
                       kase{fault::hang, error_kind::timeout, 0.3, 2, 3}}) {
    test_server_options so = schedule(0.005, 0.002);
    so.inject = k.f;
    so.fault_every = k.every;
    test_server server(so);
    load_options o = options_for(server, "requests=6,rate=100,prompt=fixed:4,output=fixed:6");
    o.timeout_seconds = k.timeout;
    const level_data l = run_once(o, {"concurrency", 0, 1, false});
    ASSERT_EQ(l.records.size(), 6u);
    EXPECT_EQ(count(l, k.want), k.failures) << name(k.want) << " " << l.records[0].error_detail;
    EXPECT_EQ(count(l, error_kind::none), 6 - k.failures)
        << name(k.want) << " " << l.records[1].error_detail;
    const level_metrics m = measure(l.records, itl_rule::first, 1);
    EXPECT_EQ(m.errors.at(name(k.want)), k.failures);
    if (k.f == fault::status_500) {
      EXPECT_EQ(m.statuses.at("500"), 3);
    }
  }
}

TEST(LoadClient, RetriesRecoverFromRateLimits) {
  test_server_options so = schedule(0.002, 0.001);
  so.inject = fault::status_429;
  so.fault_every = 2;  // every other request the server sees: each first attempt, retried
  test_server server(so);
  load_options o = options_for(server, "requests=4,rate=100,prompt=fixed:4,output=fixed:3");
  o.retries = 1;
  const level_data l = run_once(o, {"concurrency", 0, 1, false});
  for (const auto& r : l.records) {
    EXPECT_TRUE(r.finished()) << name(r.error) << " " << r.error_detail << " " << r.attempts
                              << " end " << r.end << " sent " << r.sent << " chunks "
                              << r.chunk_seconds.size() << " status " << r.status;
    EXPECT_EQ(r.attempts, 2);
  }
}

TEST(LoadClient, NoRequestIsLost) {
  // Sessions, faults every third request, a capacity queue and a timeout: every request of the
  // window comes back exactly once, finished, failed or never sent (its session broke).
  test_server_options so = schedule(0.005, 0.001);
  so.inject = fault::close_mid_stream;
  so.fault_every = 3;
  so.capacity = 3;
  test_server server(so);
  load_options o = options_for(
      server,
      "sessions=8,rate=200,turns=fixed:3,think=fixed:0.01,message=fixed:5,output=fixed:6,seed=2");
  o.endpoint = "chat";
  o.timeout_seconds = 5;
  const load_setup s = configure(o);
  const level_data l = run_level(s, {"trace", 0, 0, false});
  ASSERT_EQ(l.records.size(), s.requests.requests.size());
  std::set<std::uint64_t> ids;
  for (const auto& r : l.records) ids.insert(r.id);
  EXPECT_EQ(ids.size(), l.records.size());
  const level_metrics m = measure(l.records, itl_rule::first, 1);
  EXPECT_EQ(m.finished + m.failed + m.cancelled, static_cast<std::int64_t>(l.records.size()));
  EXPECT_GT(m.failed, 0);
  EXPECT_GT(m.cancelled, 0);  // later turns of broken sessions
  EXPECT_EQ(server.stats().requests, m.sent);
}

TEST(LoadClient, SessionsCarryTheRealAnswers) {
  test_server server(schedule(0.002, 0.001));
  load_options o = options_for(
      server,
      "sessions=2,rate=100,turns=fixed:3,think=fixed:0.02,message=fixed:5,output=fixed:4,"
      "system=6");
  o.endpoint = "chat";
  const load_setup s = configure(o);
  const level_data l = run_level(s, {"trace", 0, 0, false});
  ASSERT_EQ(l.records.size(), 6u);
  for (const auto& r : l.records) ASSERT_TRUE(r.finished()) << r.error_detail;
  for (std::size_t i = 0; i < l.records.size(); ++i) {
    const auto& r = l.records[i];
    if (r.turn == 0) continue;
    // The previous turn of the same session.
    const auto prev = std::find_if(
        l.records.begin(), l.records.end(),
        [&r](const request_record& q) { return q.session == r.session && q.turn == r.turn - 1; });
    ASSERT_NE(prev, l.records.end());
    // Its prompt as the server counted it, plus its answer (4 words), plus a new message (5).
    EXPECT_EQ(r.usage_prompt_tokens, prev->usage_prompt_tokens + 4 + 5);
    // It left its think time after the previous answer ended.
    EXPECT_GE(r.scheduled, prev->end + 0.02 - 1e-9);
    EXPECT_GE(r.sent, prev->end + 0.02 - 1e-6);
  }
}

TEST(LoadClient, ScrapesTheServersMetrics) {
  test_server server(schedule(0.05, 0.01));
  load_options o = options_for(server, "requests=10,rate=20,prompt=fixed:4,output=fixed:30");
  o.scrape = true;
  o.scrape_interval = 0.1;
  const level_data l = run_once(o);
  EXPECT_EQ(l.server.failures, 0) << l.server.last_error;
  ASSERT_GE(l.server.t.size(), 4u);
  const auto& running = l.server.values.at("ridgeline_requests_running");
  double peak = 0;
  for (const auto& v : running) peak = std::max(peak, v.value_or(0));
  EXPECT_GE(peak, 1);
  EXPECT_TRUE(l.server.values.count("ridgeline_prefix_cache_queries_tokens_total"));
}

TEST(LoadClient, ClosedLoopQueuesAtTheServersCapacity) {
  test_server_options so = schedule(0.01, 0.002);
  so.capacity = 2;
  test_server server(so);
  const level_data l =
      run_once(options_for(server, "requests=12,rate=100,prompt=fixed:4,output=fixed:5"),
               {"concurrency", 0, 4, false});
  EXPECT_EQ(count(l, error_kind::none), 12);
  EXPECT_EQ(server.stats().max_running, 2);
  EXPECT_EQ(server.stats().max_waiting, 2);
}

// A self-signed certificate for 127.0.0.1 (P-256), PEM text: {certificate, key}.
std::pair<std::string, std::string> self_signed() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  auto pem = [](auto write) {
    BIO* b = BIO_new(BIO_s_mem());
    write(b);
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  };
  std::string cert = pem([x](BIO* b) { PEM_write_bio_X509(b, x); });
  std::string k = pem(
      [key](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(x);
  EVP_PKEY_free(key);
  return {cert, k};
}

TEST(LoadClient, HttpsWithAndWithoutCertificateChecks) {
  test_server_options so = schedule(0.01, 0.002);
  std::tie(so.tls_certificate_pem, so.tls_key_pem) = self_signed();
  test_server server(so);
  ASSERT_EQ(server.url().rfind("https://", 0), 0u);
  load_options o = options_for(server, "requests=4,rate=100,prompt=fixed:4,output=fixed:5");
  o.verify_tls = false;
  o.scrape = true;
  o.scrape_interval = 0.05;
  const level_data l = run_once(o);
  for (const auto& r : l.records) {
    ASSERT_TRUE(r.finished()) << r.error_detail;
    EXPECT_EQ(r.chunk_seconds.size(), 5u);
    EXPECT_EQ(r.usage_output_tokens, 5);
  }
  EXPECT_EQ(l.server.failures, 0) << l.server.last_error;
  EXPECT_FALSE(l.server.t.empty());
  // Checked, a self-signed certificate is refused: connect errors naming TLS.
  o.verify_tls = true;
  o.scrape = false;
  const level_data m = run_once(o);
  EXPECT_EQ(count(m, error_kind::connect), 4);
  EXPECT_NE(m.records[0].error_detail.find("TLS"), std::string::npos) << m.records[0].error_detail;
}

TEST(LoadClient, WorkersShareTheLoadAndLoseNothing) {
  test_server server(schedule(0.01, 0.002));
  load_options o = options_for(server, "requests=30,rate=300,prompt=fixed:4,output=fixed:5");
  o.workers = 3;
  const level_data open = run_once(o);
  ASSERT_EQ(open.records.size(), 30u);
  std::set<std::uint64_t> ids;
  for (const auto& r : open.records) {
    EXPECT_TRUE(r.finished()) << r.error_detail;
    ids.insert(r.id);
  }
  EXPECT_EQ(ids.size(), 30u);
  // A closed loop's concurrency is split among the workers: 4 in flight at most in all.
  test_server fresh(schedule(0.01, 0.002));
  o.url = fresh.url();
  const level_data closed = run_once(o, {"concurrency", 0, 4, false});
  EXPECT_EQ(count(closed, error_kind::none), 30);
  EXPECT_EQ(fresh.stats().max_running, 4);
}

TEST(LoadClient, FindMaxFindsTheServersCapacity) {
  // Capacity 2 streams of 20 ms + 4 x 10 ms = 60 ms: at most 33 requests/s. Above that the queue
  // grows and TTFT with it.
  test_server_options so = schedule(0.02, 0.01);
  so.capacity = 2;
  test_server server(so);
  load_options o = options_for(server, "requests=60,prompt=fixed:4,output=fixed:5");
  o.find_max = true;
  o.slo = "ttft_p90=150ms";
  o.find_max_start = 8;
  o.find_max_precision = 0.15;
  o.find_max_levels = 8;
  const load_setup s = configure(o);
  const load_run r = run(s);
  ASSERT_TRUE(r.find_max);
  ASSERT_TRUE(r.find_max->max_rate_per_second) << r.find_max->note;
  EXPECT_GE(*r.find_max->max_rate_per_second, 12);
  EXPECT_LE(*r.find_max->max_rate_per_second, 40);
  EXPECT_GE(r.levels.size(), 3u);
}

TEST(LoadClient, FindMaxStopsWithNoAnswerWhenTheServerFails) {
  // Every request gets a 500: the server is broken, not slow, and no rate is its maximum.
  test_server_options so = schedule(0.01, 0.002);
  so.inject = test_server_options::fault::status_500;
  test_server server(so);
  load_options o = options_for(server, "requests=20,prompt=fixed:4,output=fixed:5");
  o.find_max = true;
  o.slo = "ttft_p90=150ms";
  o.find_max_start = 8;
  o.find_max_levels = 6;
  const load_run r = run(configure(o));
  ASSERT_TRUE(r.find_max);
  EXPECT_FALSE(r.find_max->max_rate_per_second);
  EXPECT_FALSE(r.find_max->lowest_failing_rate);
  EXPECT_EQ(r.levels.size(), 1u);
  EXPECT_EQ(r.find_max->note.rfind("the server failed 20 of 20 requests at 8 req/s", 0), 0u)
      << r.find_max->note;
}

}  // namespace
}  // namespace ridgeline::load
