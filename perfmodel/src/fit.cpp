// Fitting efficiencies and overhead to measured sweeps (see fit.hpp).
#include "ridgeline/perfmodel/fit.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ridgeline/perfmodel/accuracy.hpp"
#include "ridgeline/perfmodel/ceilings.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"
#include "ridgeline/perfmodel/sweep_points.hpp"

namespace ridgeline::planner {

fitted_parameters fit_sweeps(const std::vector<fit_input>& inputs, const fit_options& o) {
  if (inputs.empty()) throw std::invalid_argument("fit: no sweep given");
  fitted_parameters f = default_parameters(&inputs.front().gpu);
  const std::size_t nl = f.linear.inverse.size(), nm = f.attention_memory.inverse.size(),
                    nc = f.attention_compute.inverse.size();
  const std::size_t n = nl + nm + nc + 1;  // + overhead (scaled to milliseconds)
  const std::size_t il = 0, im = nl, ic = nl + nm, io = nl + nm + nc;
  std::vector<double> prior(n);
  for (std::size_t k = 0; k < nl; ++k) prior[il + k] = f.linear.inverse[k];
  for (std::size_t k = 0; k < nm; ++k) prior[im + k] = f.attention_memory.inverse[k];
  for (std::size_t k = 0; k < nc; ++k) prior[ic + k] = f.attention_compute.inverse[k];
  prior[io] = f.overhead_seconds * 1e3;

  // Normal equations G theta = c of sum (a_r . theta - 1)^2 with a_r = features / measured.
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
      a[io] = 1e-3;
      for (double& x : a) x /= p.seconds;
      add_row(a, 1.0, 1.0);
      ++points;
    }
  }
  // Smoothness: neighbouring knots of each curve alike; a weak pull toward the prior keeps knots
  // without data (and the overhead/linear trade-off) determined.
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
  // Non-negative least squares by cyclic coordinate descent (G is positive definite).
  std::vector<double> th = prior;
  for (int sweep = 0; sweep < o.max_sweeps; ++sweep) {
    double moved = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double g = -c[i];
      for (std::size_t j = 0; j < n; ++j) g += G[i * n + j] * th[j];
      const double next = std::max(0.0, th[i] - g / G[i * n + i]);
      moved = std::max(moved, std::abs(next - th[i]) / std::max(1e-3, std::abs(th[i])));
      th[i] = next;
    }
    if (moved < 1e-10) break;
  }
  constexpr double k_min_inverse = 1e-3;  // efficiencies at most 1000x the ceiling
  for (std::size_t k = 0; k < nl; ++k) f.linear.inverse[k] = std::max(k_min_inverse, th[il + k]);
  for (std::size_t k = 0; k < nm; ++k)
    f.attention_memory.inverse[k] = std::max(k_min_inverse, th[im + k]);
  for (std::size_t k = 0; k < nc; ++k)
    f.attention_compute.inverse[k] = std::max(k_min_inverse, th[ic + k]);
  f.overhead_seconds = th[io] * 1e-3;
  f.gpu = inputs.front().gpu.key;
  f.source = "fit of " + gpus + " sweeps (" + models + ")";

  std::vector<accuracy_row> all;
  for (const auto& [model, pts] : sets) {
    const fitted_step_time_model fm(model.model(), model.ceiling(), f);
    auto r = accuracy(pts, fm);
    all.insert(all.end(), r.rows.begin(), r.rows.end());
  }
  const auto summary = summarize(all);
  f.stats = {{"points", points},
             {"mape", summary.mape},
             {"worst_abs_error", summary.worst},
             {"gpus", gpus},
             {"models", models}};
  return f;
}

}  // namespace ridgeline::planner
