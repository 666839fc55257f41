// Fitting efficiencies to measured sweeps, their cross-validation, and the fixed cost from a
// kernel trace (see fit.hpp).
#include "ridgeline/perfmodel/fit.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "ridgeline/core/schemas/roofline.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/ceilings.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"
#include "ridgeline/perfmodel/sweep_points.hpp"

namespace ridgeline::planner {

namespace {

// A serving run's steps with the model they are predicted by.
struct serving_set {
  const serving_fit_input* in;
  fitted_step_time_model model;
};

// The steps of a run a fit and its checks use: all but the process's warm-up step (the first).
bool fitted_step(const serving_step_point& p) {
  return p.index > 0 && p.shape.sequences > 0 && p.gpu_seconds > 0;
}

fitted_step_time_model model_for(const std::string& model, const gpu_profile& gpu,
                                 const fitted_parameters& f) {
  const model_preset& m = model_preset_by_name(model);
  const ceilings ce = ceilings_of(gpu, dtype::bf16);
  if (ce.derated)
    throw std::invalid_argument("fit: GPU profile '" + gpu.key +
                                "' is not measured (run ridgeline probe on that GPU)");
  return fitted_step_time_model(m, ce, f);
}

void add_name(std::string& list, const std::string& name) {
  if (list.find(name) == std::string::npos) list += (list.empty() ? "" : ", ") + name;
}

}  // namespace

nlohmann::json to_json(const serving_step_accuracy& a) {
  return {{"label", a.label},
          {"steps", a.steps},
          {"mape", a.mape},
          {"median_error", a.median_error},
          {"worst_abs_error", a.worst_abs_error},
          {"total_ratio", a.total_ratio},
          {"period_steps", a.period_steps},
          {"period_mape", a.period_mape},
          {"period_total_ratio", a.period_total_ratio}};
}

serving_step_accuracy serving_step_accuracy_of(const serving_fit_input& run,
                                               const fitted_parameters& f) {
  const fitted_step_time_model model = model_for(run.model, run.gpu, f);
  serving_step_accuracy a;
  a.label = run.label;
  std::vector<double> errors;
  double predicted = 0, measured = 0, period_predicted = 0, period_measured = 0, period_abs = 0;
  for (const auto& p : run.steps) {
    if (!fitted_step(p)) continue;
    const double t = model.step_seconds(p.shape);
    const double e = (t - p.gpu_seconds) / p.gpu_seconds;
    errors.push_back(e);
    a.mape += std::abs(e);
    a.worst_abs_error = std::max(a.worst_abs_error, std::abs(e));
    predicted += t;
    measured += p.gpu_seconds;
    if (p.gap_seconds >= 0 && p.follows_work() && !p.host_copies) {
      const double tp = t + model.loop_gap_seconds(p.shape), mp = p.gpu_seconds + p.gap_seconds;
      period_abs += std::abs(tp - mp) / mp;
      period_predicted += tp;
      period_measured += mp;
      ++a.period_steps;
    }
  }
  a.steps = std::ssize(errors);
  if (a.steps == 0) throw std::invalid_argument(run.label + ": no step to compare");
  a.mape /= static_cast<double>(a.steps);
  a.median_error = bench::quantile(errors, 0.5);
  a.total_ratio = predicted / measured;
  if (a.period_steps > 0) {
    a.period_mape = period_abs / static_cast<double>(a.period_steps);
    a.period_total_ratio = period_predicted / period_measured;
  }
  return a;
}

fitted_parameters fit_calibration(const std::vector<fit_input>& inputs,
                                  const std::vector<serving_fit_input>& serving,
                                  const fit_options& o) {
  if (inputs.empty() && serving.empty()) throw std::invalid_argument("fit: no sweep given");
  fitted_parameters f =
      default_parameters(inputs.empty() ? &serving.front().gpu : &inputs.front().gpu);
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
  // One measured step of `model`'s shape `s` taking `seconds`.
  auto add_point = [&](const fitted_step_time_model& model, const step_shape& s, double seconds) {
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
    for (double& x : a) x /= seconds;
    add_row(a, 1.0 - (b.fixed + b.all_reduce) / seconds, 1.0);
  };
  std::size_t points = 0;
  std::string models, gpus, serving_models;
  nlohmann::json labels = nlohmann::json::array(), serving_labels = nlohmann::json::array();
  std::vector<std::pair<fitted_step_time_model, std::vector<sweep_point>>> sets;
  for (const auto& in : inputs) {
    sets.emplace_back(model_for(sweep_model(in.sweep), in.gpu, f), sweep_points(in.sweep));
    add_name(models, sets.back().first.model().name);
    add_name(gpus, in.gpu.key.empty() ? in.gpu.name : in.gpu.key);
    if (!in.label.empty()) labels.push_back(in.label);
  }
  std::vector<serving_set> runs;
  for (const auto& in : serving) {
    runs.push_back({&in, model_for(in.model, in.gpu, f)});
    add_name(serving_models, in.model);
    add_name(gpus, in.gpu.key.empty() ? in.gpu.name : in.gpu.key);
    serving_labels.push_back(in.label);
  }
  for (const auto& [model, pts] : sets) {
    for (const auto& p : pts) {
      add_point(model, shape_of(p), p.seconds);
      ++points;
    }
  }
  std::size_t serving_steps = 0;
  for (const auto& r : runs) {
    for (const auto& p : r.in->steps) {
      if (!fitted_step(p)) continue;
      add_point(r.model, p.shape, p.gpu_seconds);
      ++serving_steps;
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
  f.gpu = inputs.empty() ? serving.front().gpu.key : inputs.front().gpu.key;
  if (serving.empty()) {
    f.source = "fit of " + gpus + " sweeps (" + models + ")";
  } else {
    f.source = "fit of " + gpus + (inputs.empty() ? "" : " sweeps (" + models + ") and") +
               " serving runs (" + serving_models + ")";
    std::vector<std::vector<serving_step_point>> steps;
    std::vector<std::string> names;
    for (const auto& in : serving) {
      steps.push_back(in.steps);
      names.push_back(in.label);
    }
    f.loop = loop_gaps_of(steps, names);
  }

  std::vector<accuracy_row> all;
  for (const auto& [model, pts] : sets) {
    const fitted_step_time_model fm(model.model(), model.ceiling(), f);
    auto r = accuracy(pts, fm);
    all.insert(all.end(), r.rows.begin(), r.rows.end());
  }
  if (!all.empty()) {
    const auto summary = summarize(all);
    f.stats = {{"points", points}, {"mape", summary.mape}, {"worst_abs_error", summary.worst},
               {"gpus", gpus},     {"models", models},     {"sweeps", labels}};
  } else {
    f.stats = {{"points", 0}, {"gpus", gpus}, {"models", serving_models}, {"sweeps", labels}};
  }
  if (!serving.empty()) {
    nlohmann::json per_run = nlohmann::json::array();
    for (const auto& in : serving) per_run.push_back(to_json(serving_step_accuracy_of(in, f)));
    f.stats["serving"] = serving_labels;
    f.stats["serving_models"] = serving_models;
    f.stats["serving_steps"] = serving_steps;
    f.stats["serving_runs"] = per_run;
  }
  return f;
}

fitted_parameters fit_sweeps(const std::vector<fit_input>& inputs, const fit_options& o) {
  if (inputs.empty()) throw std::invalid_argument("fit: no sweep given");
  return fit_calibration(inputs, {}, o);
}

std::vector<serving_step_accuracy> held_out_runs(const std::vector<fit_input>& sweeps,
                                                 const std::vector<serving_fit_input>& serving,
                                                 const fit_options& o) {
  if (serving.size() < 2)
    throw std::invalid_argument("fit: leaving one run out needs two serving runs or more");
  std::vector<serving_step_accuracy> out;
  for (std::size_t k = 0; k < serving.size(); ++k) {
    std::vector<serving_fit_input> train;
    for (std::size_t j = 0; j < serving.size(); ++j)
      if (j != k) train.push_back(serving[j]);
    out.push_back(serving_step_accuracy_of(serving[k], fit_calibration(sweeps, train, o)));
  }
  return out;
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
