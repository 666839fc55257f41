// What `ridgeline compare` reads besides its options: a side given as several result files of one
// run, and per-benchmark thresholds (a JSON file or NAME=VALUE items) (docs/compare.md).
//   result_set base = load_result_list("a.json,b.json", time_metric::automatic);
//   o.thresholds = load_thresholds("bench/baselines/cpu_thresholds.json");
//   o.percentile_thresholds = parse_percentile_thresholds("p50=5%,p90=5%,p99=10%");
#pragma once

#include <map>
#include <string>

#include "ridgeline/regress/results.hpp"

namespace ridgeline::bench {

// "0.05" or "5%" -> 0.05; throws std::invalid_argument("<what>: ...") unless in (0, 10).
double parse_threshold(const std::string& text, const std::string& what);

// "a.json,b.json": several files of one run (e.g. one per benchmark binary) read as one result;
// their environments must agree (std::invalid_argument naming the first blocking difference).
result_set load_result_list(const std::string& list, time_metric metric);

// "p50=5%,p90=5%,p99=10%" -> {0.5: 0.05, 0.9: 0.05, 0.99: 0.1}: percentiles in (0, 100), each
// threshold as parse_threshold takes it; throws std::invalid_argument("--percentile-thresholds:
// ...") naming the bad item, a repeated percentile included.
std::map<double, double> parse_percentile_thresholds(const std::string& text);

// {"BM_name": 0.1, "BM_prefix*": 0.2, ...}; keys starting with '_' are comments.
std::map<std::string, double> load_thresholds(const std::string& path);

}  // namespace ridgeline::bench
