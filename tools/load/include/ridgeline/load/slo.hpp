// Service-level objectives for `ridgeline load --slo` and --find-max:
//   "ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,goodput=0.9"
// The spec, its grammar and the verdict are core's (schema::parse_load_slo and
// schema::judge_load_level in core/schemas/load_results.hpp: the report reads the same specs back
// from load's files and judges a run by the same rule); this file judges a level's records by one
// and words the verdict. A term METRIC_pQ=DURATION (METRIC: ttft, tpot, itl, e2e; Q: 50, 90, 99,
// 99.9, ...) holds when the Q-th percentile of the metric over the level's requests is at or below
// DURATION; a request that failed counts as an infinite latency there, so errors break an SLO as
// slow answers do. The first ttft and tpot terms are also the per-request limits of goodput (plain
// ttft=2s / tpot=50ms give a limit without a percentile term):
//   goodput = finished requests per second with TTFT <= limit AND TPOT <= limit
// and goodput=F holds when at least the fraction F of the level's requests were good.
#pragma once

#include <string>
#include <vector>

#include "ridgeline/core/schemas/load_results.hpp"
#include "ridgeline/load/metrics.hpp"
#include "ridgeline/load/record.hpp"

namespace ridgeline::load {

using slo_term = schema::load_slo_term;
using slo_spec = schema::load_slo_spec;  // terms in order, goodput's (if any) last
// The --slo flag's spec: core's grammar; the message names --slo and ends with an example.
slo_spec parse_slo(const std::string& text);

// core's verdict (met, terms with their measured values, good requests, goodput), and one line
// per term: "ttft_p99: 1.2 s <= 2 s, met".
struct slo_result : schema::load_level_slo {
  std::vector<std::string> lines;
};
slo_result evaluate(const slo_spec& slo, const std::vector<request_record>& records, itl_rule rule,
                    double duration_seconds);

}  // namespace ridgeline::load
