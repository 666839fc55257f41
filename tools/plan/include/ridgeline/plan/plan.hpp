// `ridgeline plan`'s pipeline: per GPU model, the memory plan, the largest batch that fits and the
// largest that meets the TPOT SLO, the highest request rate with goodput >= target (capacity.hpp),
// GPUs needed for a target load and cost per million tokens, as one ridgeline.plan/v1 document;
// and the `plan fit`, `plan accuracy` and `plan gpus` subcommands. The CLI parses, then:
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
  double headroom = 0.2;        // share of each GPU's max rate left unused
  double goodput_target = 0.9;  // share of arrivals that must meet the SLO
};

// planner::resolve_gpu for each key or path; throws std::invalid_argument when there is none.
std::vector<resolved_gpu> resolve_gpus(const std::vector<std::string>& keys);

// A trace file (.jsonl Mooncake, .csv Azure; first `requests` requests unless it has sessions) or
// a generator spec (key=value,...; `requests` unless the spec names it).
workload load_plan_workload(const std::string& spec, std::int64_t requests);

// The plan: one row per GPU (a row that fails says why in "error"); throws std::invalid_argument
// when no GPU can serve the model. `progress` gets a line per GPU's rate search when set.
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
// Fits the step-time model's efficiencies to ridgeline.sweep/v1 files measured on `g`.
fitted_parameters fit_sweep_files(const std::vector<std::string>& paths, const gpu_profile& g);
// The fit as the command prints it: error, overhead and the efficiency knots.
std::string fit_text(const fitted_parameters& f);

// ------------------------------------------------------------------------------- plan accuracy

struct accuracy_result {
  std::string sweep;  // where the measurements came from (a path, or "run on this GPU")
  std::string model;  // preset name
  std::string gpu;    // key
  ceilings limits;
  std::string step_time_model;  // description
  accuracy_report report;
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
