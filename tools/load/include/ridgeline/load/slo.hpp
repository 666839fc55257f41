// Service-level objectives for `ridgeline load --slo` and --find-max:
//   "ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,goodput=0.9"
// A term METRIC_pQ=DURATION (METRIC: ttft, tpot, itl, e2e; Q: 50, 90, 99, 99.9, ...) holds when the
// Q-th percentile of the metric over the level's requests is at or below DURATION; a request that
// failed counts as an infinite latency there, so errors break an SLO as slow answers do. The
// first ttft and tpot terms are also the per-request limits of goodput (plain ttft=2s / tpot=50ms
// give a limit without a percentile term):
//   goodput = finished requests per second with TTFT <= limit AND TPOT <= limit
// and goodput=F holds when at least the fraction F of the level's requests were good.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/load/metrics.hpp"
#include "ridgeline/load/record.hpp"

namespace ridgeline::load {

struct slo_term {
  std::string metric;  // ttft, tpot, itl, e2e
  double quantile = 0.99;
  double limit_seconds = 0;
  std::string text;  // as written: "ttft_p99=2s"
};

struct slo_spec {
  std::vector<slo_term> terms;
  std::optional<double> ttft_limit, tpot_limit;  // per-request limits of goodput
  std::optional<double> goodput_fraction;
  std::string text;
  bool empty() const { return terms.empty() && !goodput_fraction && !ttft_limit && !tpot_limit; }
};
// Throws std::invalid_argument naming the bad term.
slo_spec parse_slo(const std::string& text);

struct slo_result {
  bool met = true;
  // goodput: only with a ttft or tpot limit
  std::optional<double> goodput_requests_per_second, goodput_fraction;
  std::int64_t good = 0;
  std::vector<std::string> lines;  // one per term: "ttft_p99 1.2 s <= 2 s: met"
  struct term_value {
    std::string text;
    double measured = 0;  // >= 1e299 when failed requests reach the percentile
    bool met = true;
  };
  std::vector<term_value> values;
};
slo_result evaluate(const slo_spec& slo, const std::vector<request_record>& records, itl_rule rule,
                    double duration_seconds);

}  // namespace ridgeline::load
