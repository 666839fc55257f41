// `ridgeline plan`'s pipeline: per GPU model and tensor-parallel degree (GPUs per replica), the
// memory plan per GPU, the largest batch that fits and the largest that meets the TPOT SLO, the
// highest request rate that meets the SLO (capacity.hpp), GPUs needed for a target load and cost
// per million tokens; the cheapest degree that meets the SLO is each GPU's row, the others are
// listed beside it; one ridgeline.plan/v1 document. And the `plan fit`, `plan accuracy` and
// `plan gpus` subcommands. The CLI parses, then:
//   std::vector<resolved_gpu> gpus = resolve_gpus({"h100-sxm", "l40s"});
//   workload w = load_plan_workload("rate=4,requests=500", 1000);
//   nlohmann::json doc = plan_document(model_preset_by_name("llama-3-8b"), gpus, w, options);
//   plan_markdown(doc), plan_csv(doc["rows"])
// docs/plan.md has the model and its fit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/profiles.hpp"
#include "ridgeline/plan/capacity.hpp"

namespace ridgeline::planner {

// Everything a plan needs besides the model, the GPUs and the workload (the CLI flags of the same
// names; docs/cli.md).
struct plan_options {
  memory_options memory;  // weights, KV dtype, block tokens, token budget, running sequences
  slo s;
  double qps = 0;                        // target load; 0: no GPU count
  std::map<std::string, double> prices;  // $/GPU-hour by GPU key; "*" for every GPU
  std::optional<fitted_parameters> fit;  // else the embedded efficiencies (parameters_for)
  std::int32_t max_running = 256;        // largest batch considered
  std::int64_t max_batched_tokens = 8192;
  std::int32_t block_tokens = 16;
  double headroom = 0.2;  // share of each GPU's max rate left unused
  // Tensor-parallel degrees weighed for every GPU model; a degree that cannot split the model
  // (heads, K/V heads or MLP columns) is listed with the reason.
  std::vector<std::int32_t> tensor_parallel = {1, 2, 4, 8};
};

// planner::resolve_gpu for each key or path; throws std::invalid_argument when there is none.
std::vector<resolved_gpu> resolve_gpus(const std::vector<std::string>& keys);

// A trace file (.jsonl Mooncake, .csv Azure; first `requests` requests unless it has sessions) or
// a generator spec (key=value,...; `requests` unless the spec names it). `source_requests`, when
// given, receives how many requests the trace held before the cut (the generator: as many as made).
workload load_plan_workload(const std::string& spec, std::int64_t requests,
                            std::int64_t* source_requests = nullptr);

// The plan: one row per GPU (a row that fails says why in "error"), each for the degree chosen:
// among those that meet the SLO the fewest GPUs for --qps (when given), then the highest rate per
// GPU (the lowest cost per request), then the fewest GPUs per replica; when none meets it, the
// one that got furthest. Throws std::invalid_argument when no GPU can serve the model.
// `progress` gets a line per rate search ("h100-sxm TP 2: searching the request rate").

nlohmann::json plan_document(const model_preset& m, const std::vector<resolved_gpu>& gpus,
                             const workload& w, const plan_options& a,
                             const std::function<void(const std::string&)>& progress = {});
std::string plan_csv(const nlohmann::json& rows);
std::string plan_markdown(const nlohmann::json& doc);

// A JSON file, or std::invalid_argument naming the file when it does not parse.
nlohmann::json read_json_file(const std::string& path);

// ------------------------------------------------------------------------------------ plan fit

// The profile of a key or path, which must hold measurements (else std::invalid_argument).
gpu_profile measured_gpu(const std::string& spec);
// Fits the step-time model's efficiencies to ridgeline.sweep/v1 files measured on `g`, with the
// fixed per-step cost from a `ridgeline roofline` document's traced decode kernels
// (`kernels_path`; empty: the default, marked not measured), and cross-validates it: stats gain
// held_out_batch and held_out_context ({mape, worst_abs_error, points}) when the sweeps have more
// than one batch size or context.
fitted_parameters fit_sweep_files(const std::vector<std::string>& paths, const gpu_profile& g,
                                  const std::string& kernels_path = "");
// A `ridgeline replay` result (ridgeline.kv/v1 with measured.steps) as fit input: the model of its
// config, every recorded step (serving_step_points). Throws std::invalid_argument naming the file
// when it has no measured steps (a `kv` simulation, a `load` over HTTP) or its config.gpu is not
// `g`'s key (its steps ran on another GPU's ceilings).
serving_fit_input read_serving_fit_input(const std::string& path, const gpu_profile& g);
// fit_sweep_files with serving runs beside the sweeps (fit_calibration): the same least squares
// over sweep points and serving steps, the loop gaps from the runs; stats gain, besides
// fit_calibration's, held_out_runs (each run predicted by the fit without it: its per-run step
// figures, then mape and median_error over the runs' steps) when there are two runs or more, and
// `kernels`. Either list may be empty, not both.
fitted_parameters fit_files(const std::vector<std::string>& sweeps,
                            const std::vector<std::string>& serving, const gpu_profile& g,
                            const std::string& kernels_path = "");
// The fit of a ridgeline.fit document's own inputs (stats.sweeps, stats.serving, stats.kernels)
// without the serving run `leave_out` (a path as the fit names it), on `g`.
fitted_parameters refit_without(const fitted_parameters& f, const std::string& leave_out,
                                const gpu_profile& g);
// The fit as the command prints it: in-sample and held-out error, fixed cost, efficiency knots.
std::string fit_text(const fitted_parameters& f);

// ------------------------------------------------------------------------------- plan accuracy

struct accuracy_result {
  std::string sweep;  // where the measurements came from (a path, or "run on this GPU")
  std::string model;  // preset name
  std::string gpu;    // key
  ceilings limits;
  std::string step_time_model;  // description
  accuracy_report report;
  // Per row of the report: the predicted step's op groups, ms and bound ("linear 4.12 memory,
  // attention 0.10 memory, fixed 0.16").
  std::vector<std::string> op_groups;
};
// The model's predictions against every measured point of `sweep` (ridgeline.sweep/v1).
accuracy_result plan_accuracy(const nlohmann::json& sweep, const std::string& sweep_label,
                              const resolved_gpu& g, const std::optional<fitted_parameters>& fit);
nlohmann::json accuracy_document(const accuracy_result& r);  // ridgeline.accuracy/v1
std::string accuracy_csv(const accuracy_result& r);
std::string accuracy_table(const accuracy_result& r);
// Throws std::runtime_error when MAPE > max_mape or worst > max_worst (a limit of 0: no check).
void check_accuracy_limits(const accuracy_report& r, double max_mape, double max_worst);

// ----------------------------------------------------------------------------------- plan gpus

// Markdown table of the GPUs the planner knows (measured, then datasheet) and the efficiencies.
std::string gpus_table();

}  // namespace ridgeline::planner
