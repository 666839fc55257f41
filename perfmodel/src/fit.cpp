// Fitting efficiencies to measured sweeps, their cross-validation, and the fixed cost from a
// kernel trace (see fit.hpp).
#include "ridgeline/perfmodel/fit.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "ridgeline/core/schemas/roofline.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/ceilings.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"
#include "ridgeline/perfmodel/sweep_points.hpp"

namespace ridgeline::planner {

fitted_parameters fit_sweeps(const std::vector<fit_input>& inputs, const fit_options& o) {
  if (inputs.empty()) throw std::invalid_argument("fit: no sweep given");
  fitted_parameters f = default_parameters(&inputs.front().gpu);
  if (o.fixed) f.fixed = *o.fixed;
  const std::size_t nl = f.linear.inverse.size(), nm = f.attention_memory.inverse.size(),
                    nc = f.attention_compute.inverse.size();
  const std::size_t n = nl + nm + nc;
  const std::size_t il = 0, im = nl, ic = nl + nm;
  std::vector<double> prior(n);
  for (std::size_t k = 0; k < nl; ++k) prior[il + k] = f.linear.inverse[k];
  for (std::size_t k = 0; k < nm; ++k) prior[im + k] = f.attention_memory.inverse[k];
  for (std::size_t k = 0; k < nc; ++k) prior[ic + k] = f.attention_compute.inverse[k];

  // Normal equations G theta = c of sum (a_r . theta - target_r)^2, a_r = features / measured and
  // target_r = 1 - (what no efficiency multiplies: fixed cost, all-reduce) / measured.
  std::vector<double> G(n * n, 0.0), c(n, 0.0), a(n), w;
  auto add_row = [&](const std::vector<double>& row, double target, double weight) {
    for (std::size_t i = 0; i < n; ++i) {
      if (row[i] == 0) continue;
      c[i] += weight * row[i] * target;
      for (std::size_t j = 0; j < n; ++j) G[i * n + j] += weight * row[i] * row[j];
    }
  };
  std::size_t points = 0;
  std::string models, gpus;
  nlohmann::json labels = nlohmann::json::array();
  std::vector<std::pair<fitted_step_time_model, std::vector<sweep_point>>> sets;
  for (const auto& in : inputs) {
    const model_preset& m = model_preset_by_name(sweep_model(in.sweep));
    const ceilings ce = ceilings_of(in.gpu, dtype::bf16);
    if (ce.derated)
      throw std::invalid_argument("fit: GPU profile '" + in.gpu.key +
                                  "' is not measured (run ridgeline probe on that GPU)");
    sets.emplace_back(fitted_step_time_model(m, ce, f), sweep_points(in.sweep));
    if (models.find(m.name) == std::string::npos) models += (models.empty() ? "" : ", ") + m.name;
    const std::string gk = in.gpu.key.empty() ? in.gpu.name : in.gpu.key;
    if (gpus.find(gk) == std::string::npos) gpus += (gpus.empty() ? "" : ", ") + gk;
    if (!in.label.empty()) labels.push_back(in.label);
  }
  for (const auto& [model, pts] : sets) {
    for (const auto& p : pts) {
      const step_shape s = shape_of(p);
      const auto b = model.base(s);
      std::fill(a.begin(), a.end(), 0.0);
      f.linear.weights(b.tokens, w);
      for (std::size_t k = 0; k < nl; ++k) a[il + k] += w[k] * b.linear;
      f.linear.weights(b.sampled, w);
      for (std::size_t k = 0; k < nl; ++k) a[il + k] += w[k] * b.head;
      f.attention_memory.weights(b.context_per_sequence, w);
      for (std::size_t k = 0; k < nm; ++k) a[im + k] += w[k] * b.attention_memory;
      f.attention_compute.weights(b.context_per_sequence, w);
      for (std::size_t k = 0; k < nc; ++k) a[ic + k] += w[k] * b.attention_compute;
      for (double& x : a) x /= p.seconds;
      add_row(a, 1.0 - (b.fixed + b.all_reduce) / p.seconds, 1.0);
      ++points;
    }
  }
  // Smoothness: neighbouring knots of each curve alike; a weak pull toward the prior keeps knots
  // without data determined.
  auto smooth = [&](std::size_t first, std::size_t count) {
    for (std::size_t k = 0; k + 1 < count; ++k) {
      std::fill(a.begin(), a.end(), 0.0);
      a[first + k] = 1;
      a[first + k + 1] = -1;
      add_row(a, 0.0, o.smoothness);
    }
  };
  smooth(il, nl);
  smooth(im, nm);
  smooth(ic, nc);
  for (std::size_t i = 0; i < n; ++i) {
    std::fill(a.begin(), a.end(), 0.0);
    a[i] = 1;
    add_row(a, prior[i], o.prior_weight);
  }
  // Bounded least squares by cyclic coordinate descent (G is positive definite): every inverse
  // efficiency stays >= 1, so no op group is predicted faster than its roofline.
  std::vector<double> th = prior;
  for (int sweep = 0; sweep < o.max_sweeps; ++sweep) {
    double moved = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double g = -c[i];
      for (std::size_t j = 0; j < n; ++j) g += G[i * n + j] * th[j];
      const double next = std::max(1.0, th[i] - g / G[i * n + i]);
      moved = std::max(moved, std::abs(next - th[i]) / std::max(1e-3, std::abs(th[i])));
      th[i] = next;
    }
    if (moved < 1e-10) break;
  }
  for (std::size_t k = 0; k < nl; ++k) f.linear.inverse[k] = th[il + k];
  for (std::size_t k = 0; k < nm; ++k) f.attention_memory.inverse[k] = th[im + k];
  for (std::size_t k = 0; k < nc; ++k) f.attention_compute.inverse[k] = th[ic + k];
  f.gpu = inputs.front().gpu.key;
  f.source = "fit of " + gpus + " sweeps (" + models + ")";

  std::vector<accuracy_row> all;
  for (const auto& [model, pts] : sets) {
    const fitted_step_time_model fm(model.model(), model.ceiling(), f);
    auto r = accuracy(pts, fm);
    all.insert(all.end(), r.rows.begin(), r.rows.end());
  }
  const auto summary = summarize(all);
  f.stats = {{"points", points}, {"mape", summary.mape}, {"worst_abs_error", summary.worst},
             {"gpus", gpus},     {"models", models},     {"sweeps", labels}};
  return f;
}

namespace {

// The input without the rows of one batch size (or context); nullopt when nothing measured is
// left.
std::optional<fit_input> without(const fit_input& in, held_out by, std::int64_t value) {
  const char* key = by == held_out::batch ? "batch" : "context";
  fit_input out = in;
  auto& rows = out.sweep["rows"];
  nlohmann::json kept = nlohmann::json::array();
  bool measured = false;
  for (const auto& r : rows) {
    if (r.at(key).get<std::int64_t>() == value) continue;
    measured = measured || !r.contains("skipped");
    kept.push_back(r);
  }
  if (!measured) return std::nullopt;
  rows = kept;
  return out;
}

}  // namespace

accuracy_report held_out_accuracy(const std::vector<fit_input>& inputs, held_out by,
                                  const fit_options& o) {
  std::set<std::int64_t> values;
  for (const auto& in : inputs) {
    for (const auto& p : sweep_points(in.sweep))
      values.insert(by == held_out::batch ? p.batch : p.context);
  }
  std::vector<accuracy_row> rows;
  for (const std::int64_t v : values) {
    std::vector<fit_input> train;
    for (const auto& in : inputs) {
      if (auto t = without(in, by, v)) train.push_back(std::move(*t));
    }
    if (train.empty()) continue;  // every point has this value: nothing to fit on
    const fitted_parameters f = fit_sweeps(train, o);
    for (const auto& in : inputs) {
      const model_preset& m = model_preset_by_name(sweep_model(in.sweep));
      const fitted_step_time_model model(m, ceilings_of(in.gpu, dtype::bf16), f);
      for (const auto& p : sweep_points(in.sweep)) {
        if ((by == held_out::batch ? p.batch : p.context) != v) continue;
        rows.push_back({p, model.step_seconds(shape_of(p)), 0});
      }
    }
  }
  return summarize(std::move(rows));
}

fixed_costs fixed_costs_from_kernels(const nlohmann::json& roofline_doc, const std::string& label) {
  const schema::roofline_document d = schema::parse_roofline(roofline_doc, label);
  const model_preset& m = model_preset_by_name(d.model);
  // The kernels outside the op groups the step-time model counts (linears, LM head, attention):
  // their work is not in step_work, so their time is the step's fixed cost.
  auto outside = [](const std::string& kernel) {
    for (const char* prefix : {"rms_norm", "embedding", "sampling", "gather_rows"}) {
      if (kernel.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  double per_layer = 0, per_step = 0;
  int batches = 0;
  std::string traced;
  for (const auto& b : d.decode_kernels) {
    if (b.skipped || b.kernels.empty()) continue;
    for (const auto& k : b.kernels) {
      if (!outside(k.kernel)) continue;
      if (k.calls >= m.layers && k.calls % m.layers == 0)
        per_layer += k.seconds / m.layers;
      else
        per_step += k.seconds;
    }
    traced += (traced.empty() ? "" : ", ") + std::to_string(b.batch);
    ++batches;
  }
  if (batches == 0)
    throw std::invalid_argument(label +
                                ": no traced decode kernels (decode_kernels[]; run "
                                "`ridgeline roofline` with CUPTI)");
  fixed_costs f;
  f.per_layer_seconds = per_layer / batches;
  f.per_step_seconds = per_step / batches;
  f.source = "measured: norms, embedding, sampling and row gathers of traced decode steps of " +
             m.name + " at batch " + traced + " (" + label +
             "): " + format("%.2f", f.per_layer_seconds * 1e6) + " us per layer + " +
             format("%.2f", f.per_step_seconds * 1e6) + " us per step";
  return f;
}

}  // namespace ridgeline::planner
