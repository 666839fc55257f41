// Prometheus side of metrics/: registry ownership, latency bucket layout, exposition text of the
// live metrics, address and URL parsing, and a real GET /metrics against the exposer on loopback.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "ridgeline/telemetry/exporter.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"
#include "ridgeline/telemetry/registry.hpp"

namespace rm = ridgeline::metrics;

namespace {

// Value of the sample line that starts with `series` followed by a space; NaN when absent.
double sample_value(const std::string& text, const std::string& series) {
  std::size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + series.size() + 1));
    pos += series.size();
  }
  return std::nan("");
}

std::string http_get(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    (void)!::write(fd, request.data(), request.size());
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) reply.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return reply;
}

}  // namespace

TEST(MetricsRegistry, SameNameAndLabelsGiveTheSameChildForTheRegistrysLifetime) {
  rm::metrics_registry r;
  auto& a = r.counter("ridgeline_test_events_total", "events", {{"kind", "a"}});
  auto& b = r.counter("ridgeline_test_events_total", "events", {{"kind", "b"}});
  auto& a2 = r.counter("ridgeline_test_events_total", "events", {{"kind", "a"}});
  EXPECT_EQ(&a, &a2);
  EXPECT_NE(&a, &b);
  // Many more children later must not move the first ones (they are held by address).
  for (int i = 0; i < 500; ++i) {
    r.counter("ridgeline_test_events_total", "events", {{"kind", "k" + std::to_string(i)}});
  }
  a.Increment(3);
  EXPECT_EQ(sample_value(r.exposition(), "ridgeline_test_events_total{kind=\"a\"}"), 3.0);
  EXPECT_EQ(r.families(), 1u);
  EXPECT_EQ(r.children(), 502u);
}

TEST(MetricsRegistry, RejectsBadNamesKindsHelpAndLabels) {
  rm::metrics_registry r;
  EXPECT_THROW(r.counter("test_total", "no prefix"), std::invalid_argument);
  EXPECT_THROW(r.counter("ridgeline_events", "counter without _total"), std::invalid_argument);
  EXPECT_THROW(r.gauge("ridgeline_events_total", "gauge with _total"), std::invalid_argument);
  EXPECT_THROW(r.gauge("ridgeline_stepTime", "camel"), std::invalid_argument);
  EXPECT_THROW(r.gauge("ridgeline_a:b", "colon"), std::invalid_argument);
  EXPECT_THROW(r.gauge("ridgeline_x", ""), std::invalid_argument);
  r.gauge("ridgeline_x", "x");
  EXPECT_THROW(r.counter("ridgeline_x", "x"), std::invalid_argument);  // other kind
  EXPECT_THROW(r.gauge("ridgeline_x", "other help"), std::invalid_argument);
  EXPECT_THROW(r.gauge("ridgeline_x", "x", {{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.gauge("ridgeline_x", "x", {{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  r.histogram("ridgeline_h_seconds", "h", {0.1, 1});
  EXPECT_THROW(r.histogram("ridgeline_h_seconds", "h", {0.2, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("ridgeline_g_seconds", "g", {1, 0.5}), std::invalid_argument);
  // Failed registrations leave nothing half-made behind.
  EXPECT_EQ(r.children(), 2u);
}

TEST(MetricsBuckets, ResolveSubMillisecondStepsWithSeveralBucketsPerDecade) {
  const auto& b = rm::latency_buckets();
  ASSERT_FALSE(b.empty());
  EXPECT_LE(b.front(), 100e-6);
  EXPECT_GE(b.back(), 60.0);  // multi-second TTFT and E2E under load
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_GT(b[i], b[i - 1]) << i;
  // At least 5 bounds in every decade from 100 us to 10 s.
  for (double lo = 100e-6; lo < 10.0; lo *= 10) {
    int n = 0;
    for (double x : b) n += (x > lo * (1 - 1e-9) && x < lo * 10 * (1 - 1e-9)) ? 1 : 0;
    EXPECT_GE(n, 5) << "decade from " << lo;
  }
  // A 300 us decode step and a 700 us one land in different buckets.
  auto bucket = [&](double v) { return std::lower_bound(b.begin(), b.end(), v) - b.begin(); };
  EXPECT_NE(bucket(300e-6), bucket(700e-6));
}

TEST(LiveMetrics, ExpositionCarriesEveryCoreFamilyWithFormulasAndBaseUnits) {
  rm::live_metrics live({.ttft_seconds = 0.5, .tpot_seconds = 0.05});
  live.set_ceilings("bf16", 989e12, 3.35e12);
  live.observe_step({rm::step_phase::decode, 0.004, 8, 0, 8, 8, 1.2e11, 1.4e10});
  live.observe_step({rm::step_phase::prefill, 0.020, 1, 2048, 0, 1, 3e13, 1.5e10});
  live.observe_itl(0.004);
  live.observe_request({true, 0.3, 1.0, 0.02});  // meets both SLOs
  live.observe_request({true, 0.9, 2.0, 0.02});  // TTFT over
  live.observe_request({true, 0.1, 0.1, -1});    // one token: no TPOT, TTFT within
  live.observe_request({false, 0, 0, -1});
  live.set_queue(8, 3);
  live.set_kv({30, 50, 20, 1000, 400, 7, 2});
  live.set_kv({31, 49, 20, 1100, 450, 7, 3});
  const std::string t = live.registry().exposition();
  for (const char* family : {"ridgeline_requests_total",
                             "ridgeline_requests_running",
                             "ridgeline_requests_waiting",
                             "ridgeline_batch_size",
                             "ridgeline_step_duration_seconds",
                             "ridgeline_time_to_first_token_seconds",
                             "ridgeline_time_per_output_token_seconds",
                             "ridgeline_inter_token_latency_seconds",
                             "ridgeline_e2e_request_latency_seconds",
                             "ridgeline_prompt_tokens_total",
                             "ridgeline_generation_tokens_total",
                             "ridgeline_kv_cache_blocks",
                             "ridgeline_kv_cache_usage_ratio",
                             "ridgeline_prefix_cache_queries_tokens_total",
                             "ridgeline_prefix_cache_hits_tokens_total",
                             "ridgeline_kv_cache_evictions_total",
                             "ridgeline_preemptions_total",
                             "ridgeline_achieved_flops_per_second",
                             "ridgeline_achieved_dram_bytes_per_second",
                             "ridgeline_arithmetic_intensity_flops_per_byte",
                             "ridgeline_ridge_point_flops_per_byte",
                             "ridgeline_requests_slo_met_total"}) {
    EXPECT_NE(t.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
  }
  EXPECT_NE(t.find("TTFT = first output token time - request arrival"), std::string::npos);
  EXPECT_NE(t.find("Ridge point = peak FLOP/s / peak DRAM bytes/s"), std::string::npos);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_ridge_point_flops_per_byte{dtype=\"bf16\"}"),
                   989e12 / 3.35e12);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_requests_total{outcome=\"finished\"}"), 3);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_requests_total{outcome=\"rejected\"}"), 1);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_requests_slo_met_total"), 2);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_prefix_cache_queries_tokens_total"), 1100);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_prefix_cache_hits_tokens_total"), 450);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_preemptions_total"), 3);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_kv_cache_usage_ratio"), 0.31);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_kv_cache_blocks{state=\"cached\"}"), 49);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_prompt_tokens_total"), 2048);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_generation_tokens_total"), 9);
  EXPECT_DOUBLE_EQ(
      sample_value(t, "ridgeline_arithmetic_intensity_flops_per_byte{phase=\"decode\"}"),
      1.2e11 / 1.4e10);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_achieved_flops_per_second{phase=\"prefill\"}"),
                   3e13 / 0.020);
  // The 4 ms decode step sits in the 5 ms bucket and not in the 3 ms one.
  EXPECT_DOUBLE_EQ(
      sample_value(t, "ridgeline_step_duration_seconds_bucket{phase=\"decode\",le=\"0.003\"}"), 0);
  EXPECT_DOUBLE_EQ(
      sample_value(t, "ridgeline_step_duration_seconds_bucket{phase=\"decode\",le=\"0.005\"}"), 1);
  // No GPU series until a real sample arrives (no made-up zeros).
  EXPECT_EQ(t.find("ridgeline_gpu_"), std::string::npos);
}

TEST(LiveMetrics, CountsRestartWhenANewRunBegins) {
  rm::live_metrics live;
  live.set_kv({1, 0, 9, 500, 100, 4, 1});
  live.set_kv({1, 0, 9, 200, 50, 1, 0});  // next capacity's run: counts from zero again
  const std::string t = live.registry().exposition();
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_prefix_cache_queries_tokens_total"), 700);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_kv_cache_evictions_total"), 5);
}

TEST(LiveMetrics, GpuTelemetryInBaseUnitsWithThrottleReasons) {
  rm::live_metrics live;
  rm::gpu_sample s;
  s.sm_clock_mhz = 1755;
  s.power_watts = 512.5;
  s.temperature_c = 61;
  s.throttle_reasons = 0x4;  // sw_power_cap
  live.set_gpu(0, s);
  live.set_gpu(0, s);
  const std::string t = live.registry().exposition();
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_gpu_sm_clock_hertz{gpu=\"0\"}"), 1755e6);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_gpu_power_watts{gpu=\"0\"}"), 512.5);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_gpu_throttled{gpu=\"0\"}"), 1);
  EXPECT_DOUBLE_EQ(
      sample_value(t, "ridgeline_gpu_throttle_reason{gpu=\"0\",reason=\"sw_power_cap\"}"), 1);
  EXPECT_DOUBLE_EQ(sample_value(t, "ridgeline_gpu_throttle_reason{gpu=\"0\",reason=\"gpu_idle\"}"),
                   0);
}

TEST(MetricsAddress, LoopbackUnlessAllInterfacesAreWrittenOut) {
  EXPECT_EQ(rm::parse_listen_address("127.0.0.1:9464").to_string(), "127.0.0.1:9464");
  EXPECT_EQ(rm::parse_listen_address("9464").to_string(), "127.0.0.1:9464");
  EXPECT_EQ(rm::parse_listen_address(":9100").to_string(), "127.0.0.1:9100");
  EXPECT_EQ(rm::parse_listen_address("localhost:9464").to_string(), "127.0.0.1:9464");
  EXPECT_EQ(rm::parse_listen_address("[::1]:9464").to_string(), "[::1]:9464");
  EXPECT_FALSE(rm::parse_listen_address("9464").all_interfaces());
  EXPECT_TRUE(rm::parse_listen_address("0.0.0.0:9464").all_interfaces());
  EXPECT_TRUE(rm::parse_listen_address("[::]:9464").all_interfaces());
  for (const char* bad : {"", "example.com:9464", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:94x",
                          "::1:9464", "[::1]9464", "[nope]:1", "1.2.3:4"}) {
    EXPECT_THROW(rm::parse_listen_address(bad), std::invalid_argument) << bad;
  }
}

TEST(MetricsPush, GatewayUrlNeedsSchemeAndNoPath) {
  EXPECT_EQ(rm::parse_gateway_url("http://127.0.0.1:9091").port, "9091");
  EXPECT_EQ(rm::parse_gateway_url("http://pgw.internal/").scheme_host, "http://pgw.internal");
  EXPECT_EQ(rm::parse_gateway_url("http://pgw.internal").port, "9091");
  EXPECT_EQ(rm::parse_gateway_url("http://[::1]:19091").scheme_host, "http://[::1]");
  for (const char* bad : {"127.0.0.1:9091", "ftp://x", "http://", "http://x:9091/metrics",
                          "http://u@x", "http://x:99999"}) {
    EXPECT_THROW(rm::parse_gateway_url(bad), std::invalid_argument) << bad;
  }
  rm::metrics_registry r;
  EXPECT_THROW(rm::push_to_gateway(r, "http://127.0.0.1:9", "bad job", "x"), std::invalid_argument);
}

TEST(MetricsExporter, ServesTheExpositionOnLoopbackAndRefusesGarbage) {
  rm::live_metrics live;
  live.observe_step({rm::step_phase::decode, 0.0002, 1, 0, 1, 1, 1e9, 1e9});
  rm::exporter e(live.registry(), rm::parse_listen_address("127.0.0.1:0"));
  ASSERT_GT(e.port(), 0);
  const std::string ok = http_get(e.port(), "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.", 0), 0u);
  EXPECT_NE(ok.find(" 200 "), std::string::npos);
  EXPECT_NE(ok.find("ridgeline_step_duration_seconds_count{phase=\"decode\"} 1"),
            std::string::npos);
  const std::string bad = http_get(e.port(), "NONSENSE\x01\x02 / HTTP/9.9\r\n\r\n");
  EXPECT_EQ(bad.find("ridgeline_"), std::string::npos);
  // Still serving after the garbage.
  EXPECT_NE(http_get(e.port(), "GET /metrics HTTP/1.0\r\n\r\n").find(" 200 "), std::string::npos);
}
