// `ridgeline load`'s logic: a trace or a generated workload sent to any OpenAI-compatible server
// in one or more load levels, measured from the client side, with the server's /metrics scraped
// alongside. Level shapes: the workload's own arrivals (x --rate-scale), Poisson rates (--rate
// 1,2,4: open loop, requests leave on schedule whether or not the server keeps up), fixed
// concurrencies (--concurrency 8,16: closed loop), or --find-max (the highest Poisson rate that
// meets an SLO, bisected). docs/load.md.
//   load::load_setup s = load::configure(options);  // validates, loads the window, checks the URL
//   load::load_run r = load::run(s, hooks);         // the levels
//   nlohmann::json doc = load::document_of(r);  std::string t = load::table_of(r);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ridgeline/engine/workload.hpp"
#include "ridgeline/load/client.hpp"
#include "ridgeline/load/metrics.hpp"
#include "ridgeline/load/prompts.hpp"
#include "ridgeline/load/results.hpp"
#include "ridgeline/load/slo.hpp"
#include "ridgeline/load/token_codec.hpp"
#include "ridgeline/load/url.hpp"

namespace ridgeline::load {

struct load_options {
  std::string url;    // http(s)://host:port[/prefix]
  std::string model;  // the server's model name (its /v1/models id)
  std::string endpoint = "completions";
  // The workload: exactly one of trace and generator.
  std::string trace, generator;
  std::int32_t mooncake_block = 512;
  double rate_scale = 1.0;
  double start_seconds = 0, duration_seconds = 0;  // window of the trace; 0: to the end
  std::int64_t requests = 0;                       // at most this many (first turns); 0: all
  // Shapes (at most one of rates, concurrencies and find_max).
  std::vector<double> rates;
  std::vector<std::int64_t> concurrencies;
  bool find_max = false;
  std::string slo;                    // required by find_max
  double find_max_start = 1.0;        // first rate tried (req/s)
  double find_max_precision = 0.1;    // stop when (failing - met) / met <= this
  std::int32_t find_max_levels = 12;  // at most this many levels
  std::uint64_t seed = 1;             // the Poisson arrivals of --rate
  std::int32_t workers = 1;
  // The client.
  std::string api_key;
  std::vector<std::string> headers;  // "Key: value"
  double timeout_seconds = 0;
  std::int32_t retries = 0;
  bool stream = true;
  bool verify_tls = true;
  bool ignore_eos = true;
  // Sent as the request's temperature (0: greedy, as vLLM's `bench serve` sends); negative: not
  // sent, the server's default applies (1.0 in the OpenAI API).
  double temperature = 0;
  bool continuous_usage = false;
  std::string tokenizer;  // tokenizer.json; empty: token-id prompts and 1 token per chunk
  std::int32_t vocab = 0;
  std::string itl_rule = "first";
  // Server metrics.
  bool scrape = true;
  std::string metrics_url;  // default: the URL's origin + /metrics
  double scrape_interval = 1.0;
};

struct load_setup {
  load_options options;
  url target;
  resolved_address address;
  std::optional<url> metrics;
  workload requests;                // the window
  std::vector<std::size_t> firsts;  // first turns (or independent requests), in arrival order
  std::shared_ptr<const token_codec> codec;
  api_endpoint endpoint = api_endpoint::completions;
  itl_rule rule = itl_rule::first;
  std::optional<slo_spec> slo;
  std::vector<std::pair<std::string, std::string>> headers;
};
// Throws std::invalid_argument naming the bad option (an unreachable URL included: one TCP
// connect is tried), io_error when the trace or tokenizer cannot be read.
load_setup configure(const load_options& o);

struct level_spec {
  std::string shape;  // "trace", "rate", "concurrency"
  double rate_per_second = 0;
  std::int64_t concurrency = 0;
  bool stop_when_saturated = false;
  std::string label() const;
};

struct load_hooks {
  std::function<void(const std::string&)> note;  // one line per level started / ended
  // Fraction of the level's requests ended, with the level's label, about every 0.1 s.
  std::function<void(const std::string&, double)> progress;
  // Polled about every 0.1 s: true stops the run (what is in flight ends as cancelled, no later
  // level starts) and what was measured is returned.
  std::function<bool()> interrupted;
};

// One level: every request of the window, on the shape's schedule, through the workers.
level_data run_level(const load_setup& s, const level_spec& spec, const load_hooks& hooks = {});
// Every level the options ask for (--find-max: the search), with environment and config.
load_run run(const load_setup& s, const load_hooks& hooks = {});

// Whether the in-flight count says the server fell behind an open-loop schedule for good: over
// the second half of the level so far (and only once the level has run 3 s and twice the mean E2E
// of the requests ended, so the ramp from 0 to rate x E2E is not taken for growth), the count
// rose by at least half and its least-squares slope exceeds a tenth of the offered rate (the
// server completes under 90% of it). Samples: (seconds, requests in flight) at a steady pace.
bool saturated(const std::vector<std::pair<double, std::int64_t>>& in_flight, double offered_rate,
               double mean_e2e_seconds);

}  // namespace ridgeline::load
