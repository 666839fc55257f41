// `ridgeline plan accuracy --serving`: the planner's simulation (the engine's scheduler and KV
// cache manager on the simulated executor, the fitted step-time model of the GPU) of the same
// window, rate and KV pool as measured serving runs (`ridgeline replay`, `ridgeline load`), its
// TTFT, TPOT, E2E and throughput against the measured ones, the median error per metric over the
// runs against stated bounds, and the max-rate check of a `load --find-max` result against plan's
// rate search. Writes ridgeline.serving_accuracy/v1. docs/plan.md, "Serving accuracy".
//   serving_accuracy_options o;  o.runs = {"docs/results/serving/run1/azure.json.gz"};
//   schema::serving_accuracy_document d = serving_accuracy(o);
//   serving_accuracy_table(d);  d.passed  // false: a bound is broken (the CLI exits 1)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/core/schemas/serving_accuracy.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/fitted_parameters.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

namespace ridgeline::planner {

// The metrics compared, in report order: ttft_p50, ttft_p90, ttft_p99, tpot_mean, tpot_p90,
// e2e_p50, e2e_p90, output_tokens_per_second.
const std::vector<std::string>& serving_metric_names();
// Issue 22's bounds on the median error over runs: 5% on tpot_mean, e2e_p50 and e2e_p90, 10% on
// ttft_p50 and ttft_p90; the other metrics are reported without a bound.
std::map<std::string, double> default_serving_bounds();
// `--bounds tpot_mean=5%,ttft_p99=0.2,e2e_p90=none`: each item replaces that metric's default
// bound ("none" removes it). Throws std::invalid_argument naming a bad item or unknown metric.
std::map<std::string, double> parse_serving_bounds(const std::string& text);
// |predicted - measured| / measured; throws std::invalid_argument unless measured > 0 and both
// are finite.
double relative_error(double predicted, double measured);
// Median of the errors (core's one quantile); throws on an empty list.
double median_error(std::vector<double> errors);

struct serving_accuracy_options {
  std::vector<std::string> runs;      // replay or load documents (ridgeline.kv/v1 with `measured`)
  std::vector<std::string> find_max;  // load --find-max documents (top-level load.find_max)
  std::string gpu;  // key or profile path; empty: each run's config.gpu
  std::optional<fitted_parameters> fit;  // else the embedded efficiencies of the GPU
  std::string fit_label;                 // where `fit` came from (a path)
  // Leave one run out: a run that `fit` was fitted on (its stats.serving) is predicted by the fit
  // of the same inputs without it (refit_without, plan.hpp); other runs by `fit` itself.
  bool leave_one_out = false;
  std::string trace_dir;  // where to look for a trace path the document names but is not found
  // What a load over HTTP cannot see of the server: the model preset and its KV pool in blocks.
  std::string model;
  std::int64_t kv_blocks = 0;
  std::map<std::string, double> bounds = default_serving_bounds();
  std::optional<double> max_rate_bound = 0.10;
  std::function<void(const std::string&)> progress;  // one line per run
};

// A measured run's row rebuilt for the simulator.
struct rebuilt_run {
  workload requests;            // the window, arrivals as the run scheduled them
  std::string window;           // how it was rebuilt
  const model_preset* model = nullptr;
  resolved_gpu gpu;
  simulation_config config;     // KV pool and scheduler of the run
  dtype kv_dtype = dtype::bf16;
};
// Rebuilds row `row` of `doc` (read from `source`): the workload from config.workload (generator
// spec or trace, resolved through options.trace_dir when not found as written), the window from
// config.window or, in replays written before it, from the measured request ids and scheduled
// arrivals (exact, checked: every first turn's arrival must be the trace's under one start and
// rate scale), and checks that the window holds exactly the requests the run measured. Throws
// std::invalid_argument (one line naming the file and the field) or io_error (trace not found).
rebuilt_run rebuild_run(const nlohmann::json& raw, const schema::serving_results& doc,
                        std::size_t row, const std::string& source,
                        const serving_accuracy_options& o);

// Every run and find-max document: the report and its verdict.
schema::serving_accuracy_document serving_accuracy(const serving_accuracy_options& o);
// Fills summary, passed and broken of `d` from its runs, bounds and max-rate rows.
void judge(schema::serving_accuracy_document& d);
// The Markdown tables the command prints: per run and metric, the medians against the bounds,
// the max-rate rows, then one line per broken bound (or that all hold).
std::string serving_accuracy_table(const schema::serving_accuracy_document& d);

}  // namespace ridgeline::planner
