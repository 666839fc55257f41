// The calibrated step-time model of the planner. Per step, over the model's op groups:
//   t = u_lin(T) x max(F_blocks / P, W_blocks / B)          block linears, T = tokens this step
//     + u_lin(S) x max(F_head / P, W_head / B)              LM head, S = sampled tokens
//     + u_att_mem(c) x KV bytes / B                          attention reads and writes
//     + u_att_cmp(c) x attention FLOPs / P                   attention math
//     + overhead                                             launches, sampling, host
// P and B are the GPU's ceilings (measured, or datasheet x derating), u = 1 / efficiency is
// piecewise linear in log2 of its argument (tokens per step for GEMM rows, context per sequence
// for attention). Because t is linear in the u's and the overhead, a fit to measured sweeps is a
// non-negative least-squares problem on relative error (docs/plan.md).
//   fitted_parameters f = fit_sweeps({{sweep_doc, profile}});
//   fitted_step_time_model m(model, ceilings_of(profile, dtype::bf16), f);
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/step_time_model.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline::planner {

inline constexpr const char* k_fit_schema = "ridgeline.fit/v1";

// Inverse efficiency (time multiplier over the roofline) at knots log2(x); linear between knots,
// constant beyond the ends.
struct efficiency_curve {
  std::vector<double> log2_x;
  std::vector<double> inverse;  // 1 / efficiency, > 0
  double at(double x) const;
  // Weights w (size of knots) with at(x) = sum w[k] inverse[k].
  void weights(double x, std::vector<double>& w) const;
  static efficiency_curve flat(double lo_log2, double hi_log2, double efficiency);
};

struct fitted_parameters {
  efficiency_curve linear;             // by tokens per step (GEMM rows), 2^0 .. 2^14
  efficiency_curve attention_memory;   // by context per sequence, 2^4 .. 2^17
  efficiency_curve attention_compute;  // by context per sequence, 2^4 .. 2^17
  double overhead_seconds = 0;
  std::string gpu;     // key of the GPU the sweeps ran on ("" for defaults)
  std::string source;  // "fit of <gpu> on <models>", or "default (uncalibrated)"
  nlohmann::json stats = nlohmann::json::object();  // the fit's own error figures
};
// Efficiencies of a GPU with no sweep fit: linear from the probe's linear-block rows when the
// profile has them (else 0.7), attention 0.7 (memory) and 0.5 (compute), overhead 30 us.
fitted_parameters default_parameters(const gpu_profile* probe = nullptr);

nlohmann::json to_json(const fitted_parameters& f);
fitted_parameters fitted_parameters_from_json(const nlohmann::json& j);  // invalid_argument

// The ceilings a model uses: bandwidth and peak FLOP/s of the compute dtype. Datasheet-only
// profiles are derated by the measured/datasheet ratios of `measured` profiles (their mean), and
// marked so.
struct ceilings {
  double bytes_per_second = 0;
  double flops_per_second = 0;
  dtype compute_dtype = dtype::bf16;
  bool derated = false;
  std::string basis;  // "measured (probe)" or "datasheet x 0.93 bandwidth, x 0.81 bf16"
};
ceilings ceilings_of(const gpu_profile& g, dtype compute,
                     const std::vector<gpu_profile>& measured = {});
// The dtype the block linears run in for a weight format on this GPU (int8/int4 weight-only run
// 16-bit; bf16 falls back to fp16 on GPUs without bf16).
dtype compute_dtype_for(weight_format f, const gpu_profile& g);

struct model_options {
  weight_format weights = weight_format::bf16;
  dtype kv_dtype = dtype::bf16;
};

class fitted_step_time_model final : public step_time_model {
 public:
  fitted_step_time_model(const model_preset& m, const ceilings& c, const fitted_parameters& f,
                         model_options o = {});
  double step_seconds(const step_shape& s) const override;
  std::string description() const override;
  double prefill_flops(std::int64_t tokens) const override;
  double prefill_seconds(std::int64_t tokens) const override;

  // The four base times (roofline seconds) of a step; step_seconds = sum u_i x base_i + overhead.
  struct parts {
    double linear = 0, head = 0, attention_memory = 0, attention_compute = 0;
    double tokens = 0, sampled = 0, context_per_sequence = 0;
  };
  parts base(const step_shape& s) const;
  double flops(const step_shape& s) const;
  const model_preset& model() const { return m_model; }
  const ceilings& ceiling() const { return m_ceilings; }
  const fitted_parameters& parameters() const { return m_fit; }

 private:
  model_preset m_model;
  ceilings m_ceilings;
  fitted_parameters m_fit;
  model_options m_options;
  double m_block_bytes = 0, m_head_bytes = 0, m_kv_bytes_per_token = 0;
};

// Step shapes of the sweep's points: decode (one token each at `context` cached tokens) and
// prefill (`context` tokens each from position 0), every sequence sampling once.
step_shape decode_shape(std::int64_t batch, std::int64_t context);
step_shape prefill_shape(std::int64_t batch, std::int64_t context);

// One measured point of a ridgeline.sweep/v1 document.
struct sweep_point {
  std::string phase;  // decode or prefill
  std::int64_t batch = 0, context = 0;
  double seconds = 0;  // median step time
};
// Rows with a median step time; skipped rows are left out. Throws std::invalid_argument on a
// document that is not a sweep or has malformed rows.
std::vector<sweep_point> sweep_points(const nlohmann::json& sweep_doc);
// The model preset a sweep ran (config.model).
std::string sweep_model(const nlohmann::json& sweep_doc);

struct fit_input {
  nlohmann::json sweep;  // ridgeline.sweep/v1
  gpu_profile gpu;       // the ceilings of the GPU it ran on
};
struct fit_options {
  double smoothness = 1e-3;    // weight of first differences between neighbouring knots
  double prior_weight = 1e-4;  // pull toward the prior (probe linear efficiency, else defaults)
  int max_sweeps = 200000;     // coordinate-descent passes at most
};
// Least squares on relative error over every point of every input, u >= 0, overhead >= 0.
fitted_parameters fit_sweeps(const std::vector<fit_input>& inputs, const fit_options& o = {});

// Prediction against measurement per point, and the summary.
struct accuracy_row {
  sweep_point point;
  double predicted_seconds = 0;
  double error = 0;  // (predicted - measured) / measured
};
struct accuracy_report {
  std::vector<accuracy_row> rows;
  double mape = 0;   // mean |error|
  double worst = 0;  // max |error|
  std::size_t worst_index = 0;
};
accuracy_report accuracy(const std::vector<sweep_point>& points, const step_time_model& model);
// MAPE and worst |error| of (predicted, measured) pairs; throws on a non-positive measurement.
accuracy_report summarize(std::vector<accuracy_row> rows);

}  // namespace ridgeline::planner
