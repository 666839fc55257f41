// Fitted step-time model, its fit and the accuracy figures (see fitted_step_time_model.hpp).
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/schemas/sweep.hpp"

namespace ridgeline::planner {
namespace {

constexpr double k_lin_lo = 0, k_lin_hi = 14;  // tokens per step 1 .. 16384
constexpr double k_att_lo = 4, k_att_hi = 17;  // context per sequence 16 .. 131072

efficiency_curve knots(double lo, double hi, double inverse) {
  efficiency_curve c;
  for (double k = lo; k <= hi + 1e-9; k += 1) {
    c.log2_x.push_back(k);
    c.inverse.push_back(inverse);
  }
  return c;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Linear efficiency the probe measured on one block's four linear layers, by tokens.
std::vector<std::pair<double, double>> probe_linear_inverse(const gpu_profile& g) {
  std::vector<std::pair<double, double>> out;
  const double bw = g.dram_bytes_per_second();
  const double peak = g.peak_flops_per_second(dtype::bf16);
  if (!(bw > 0) || !(peak > 0)) return out;
  for (const auto& r : g.rows) {
    if (!r.is_object() || r.value("kind", "") != "linear_block") continue;
    const double tokens = r.value("tokens", 0.0), seconds = r.value("seconds", 0.0);
    const double flops = r.value("flops", 0.0), bytes = r.value("bytes", 0.0);
    if (!(tokens > 0 && seconds > 0 && flops > 0 && bytes > 0)) continue;
    out.emplace_back(std::log2(tokens), seconds / std::max(flops / peak, bytes / bw));
  }
  return out;
}

double interpolate(const std::vector<std::pair<double, double>>& pts, double x) {
  if (x <= pts.front().first) return pts.front().second;
  if (x >= pts.back().first) return pts.back().second;
  for (std::size_t i = 1; i < pts.size(); ++i) {
    if (x <= pts[i].first) {
      const double f = (x - pts[i - 1].first) / (pts[i].first - pts[i - 1].first);
      return pts[i - 1].second + f * (pts[i].second - pts[i - 1].second);
    }
  }
  return pts.back().second;
}

nlohmann::json curve_json(const efficiency_curve& c, const char* axis) {
  nlohmann::json eff = nlohmann::json::array();
  for (double u : c.inverse) eff.push_back(1.0 / u);
  return {{axis, c.log2_x}, {"efficiency", eff}};
}

efficiency_curve curve_from_json(const nlohmann::json& j, const char* field, const char* axis) {
  if (!j.contains(field) || !j[field].is_object())
    throw std::invalid_argument(std::string("fit: missing object \"") + field + "\"");
  const auto& c = j[field];
  if (!c.contains(axis) || !c[axis].is_array() || !c.contains("efficiency") ||
      !c["efficiency"].is_array() || c[axis].size() != c["efficiency"].size() || c[axis].empty()) {
    throw std::invalid_argument(std::string("fit: ") + field + " needs arrays \"" + axis +
                                "\" and \"efficiency\" of one length");
  }
  efficiency_curve out;
  for (std::size_t i = 0; i < c[axis].size(); ++i) {
    const double x = c[axis][i].get<double>(), e = c["efficiency"][i].get<double>();
    if (!(e > 0) || !std::isfinite(e))
      throw std::invalid_argument(std::string("fit: ") + field + " efficiency must be positive");
    if (i > 0 && !(x > out.log2_x.back()))
      throw std::invalid_argument(std::string("fit: ") + field + " knots must increase");
    out.log2_x.push_back(x);
    out.inverse.push_back(1.0 / e);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------- curves

void efficiency_curve::weights(double x, std::vector<double>& w) const {
  w.assign(inverse.size(), 0.0);
  if (inverse.empty()) return;
  const double l = std::log2(std::max(x, 1e-9));
  if (l <= log2_x.front()) {
    w.front() = 1;
    return;
  }
  if (l >= log2_x.back()) {
    w.back() = 1;
    return;
  }
  for (std::size_t i = 1; i < log2_x.size(); ++i) {
    if (l <= log2_x[i]) {
      const double f = (l - log2_x[i - 1]) / (log2_x[i] - log2_x[i - 1]);
      w[i - 1] = 1 - f;
      w[i] = f;
      return;
    }
  }
}

double efficiency_curve::at(double x) const {
  std::vector<double> w;
  weights(x, w);
  double u = 0;
  for (std::size_t i = 0; i < w.size(); ++i) u += w[i] * inverse[i];
  return u;
}

efficiency_curve efficiency_curve::flat(double lo, double hi, double efficiency) {
  return knots(lo, hi, 1.0 / efficiency);
}

fitted_parameters default_parameters(const gpu_profile* probe) {
  fitted_parameters f;
  f.linear = knots(k_lin_lo, k_lin_hi, 1 / 0.7);
  f.attention_memory = knots(k_att_lo, k_att_hi, 1 / 0.7);
  f.attention_compute = knots(k_att_lo, k_att_hi, 1 / 0.5);
  f.overhead_seconds = 30e-6;
  f.source = "default (uncalibrated: no sweep fit)";
  if (probe) {
    auto pts = probe_linear_inverse(*probe);
    if (!pts.empty()) {
      std::sort(pts.begin(), pts.end());
      for (std::size_t k = 0; k < f.linear.log2_x.size(); ++k)
        f.linear.inverse[k] = interpolate(pts, f.linear.log2_x[k]);
      f.source += "; linear efficiency from the probe of " + probe->key;
    }
  }
  return f;
}

nlohmann::json to_json(const fitted_parameters& f) {
  return {{"schema", k_fit_schema},
          {"gpu", f.gpu},
          {"source", f.source},
          {"linear", curve_json(f.linear, "log2_tokens")},
          {"attention_memory", curve_json(f.attention_memory, "log2_context")},
          {"attention_compute", curve_json(f.attention_compute, "log2_context")},
          {"overhead_seconds", f.overhead_seconds},
          {"stats", f.stats}};
}

fitted_parameters fitted_parameters_from_json(const nlohmann::json& j) {
  if (!j.is_object() || j.value("schema", "") != k_fit_schema)
    throw std::invalid_argument(std::string("fit: schema must be \"") + k_fit_schema + "\"");
  fitted_parameters f;
  f.source = j.value("source", "fit");
  f.gpu = j.value("gpu", "");
  f.linear = curve_from_json(j, "linear", "log2_tokens");
  f.attention_memory = curve_from_json(j, "attention_memory", "log2_context");
  f.attention_compute = curve_from_json(j, "attention_compute", "log2_context");
  if (!j.contains("overhead_seconds") || !j["overhead_seconds"].is_number() ||
      j["overhead_seconds"].get<double>() < 0)
    throw std::invalid_argument("fit: overhead_seconds must be a non-negative number");
  f.overhead_seconds = j["overhead_seconds"];
  if (j.contains("stats")) f.stats = j["stats"];
  return f;
}

// ---------------------------------------------------------------------------- ceilings

dtype compute_dtype_for(weight_format f, const gpu_profile& g) {
  auto has = [&](dtype t) { return g.peak_flops_per_second(t) > 0; };
  switch (f) {
    case weight_format::fp32:
      return dtype::fp32;
    case weight_format::fp8:
      if (has(dtype::fp8_e4m3)) return dtype::fp8_e4m3;
      throw std::invalid_argument(g.key +
                                  " has no fp8 tensor cores (datasheet); use bf16, int8 "
                                  "or int4 weights");
    case weight_format::fp16:
      return has(dtype::fp16) ? dtype::fp16 : dtype::bf16;
    default:
      return has(dtype::bf16) ? dtype::bf16 : dtype::fp16;
  }
}

ceilings ceilings_of(const gpu_profile& g, dtype compute,
                     const std::vector<gpu_profile>& measured) {
  ceilings c;
  c.compute_dtype = compute;
  const std::string key = g.key.empty() ? g.name : g.key;
  auto it = g.peaks.find(compute);
  const bool measured_bw = g.read_bytes_per_second > 0;
  const bool measured_peak = it != g.peaks.end() && it->second.flops_per_second > 0;
  if (measured_bw && measured_peak) {
    c.bytes_per_second = g.read_bytes_per_second;
    c.flops_per_second = it->second.flops_per_second;
    c.basis = "measured (probe of " + key + ")";
    return c;
  }
  // Derating: mean measured / datasheet ratio over measured GPUs (bandwidth; peak of this dtype,
  // else of any dtype).
  double bw_sum = 0, bw_n = 0, pk_sum = 0, pk_n = 0, any_sum = 0, any_n = 0;
  for (const auto& m : measured) {
    if (m.read_bytes_per_second > 0 && m.datasheet_bytes_per_second > 0) {
      bw_sum += m.read_bytes_per_second / m.datasheet_bytes_per_second;
      ++bw_n;
    }
    for (const auto& [t, p] : m.peaks) {
      if (p.flops_per_second > 0 && p.datasheet_flops_per_second > 0) {
        const double r = p.flops_per_second / p.datasheet_flops_per_second;
        any_sum += r;
        ++any_n;
        if (t == compute) {
          pk_sum += r;
          ++pk_n;
        }
      }
    }
  }
  const double bw_ratio = bw_n > 0 ? bw_sum / bw_n : 0.9;
  const double pk_ratio = pk_n > 0 ? pk_sum / pk_n : any_n > 0 ? any_sum / any_n : 0.75;
  const double ds_peak = it != g.peaks.end() ? it->second.datasheet_flops_per_second : 0;
  c.bytes_per_second =
      measured_bw ? g.read_bytes_per_second : g.datasheet_bytes_per_second * bw_ratio;
  c.flops_per_second = measured_peak ? it->second.flops_per_second : ds_peak * pk_ratio;
  if (!(c.bytes_per_second > 0))
    throw std::invalid_argument("GPU profile '" + key + "' has no DRAM bandwidth");
  if (!(c.flops_per_second > 0))
    throw std::invalid_argument("GPU '" + key + "' has no " + std::string(name(compute)) +
                                " peak (measured or datasheet)");
  c.derated = true;
  c.basis = "datasheet-derated:";
  if (!measured_bw) c.basis += " bandwidth x " + fmt("%.3f", bw_ratio);
  if (!measured_peak)
    c.basis += std::string(measured_bw ? "" : ",") + " " + std::string(name(compute)) + " peak x " +
               fmt("%.3f", pk_ratio);
  c.basis += " (measured/datasheet of " + std::to_string(static_cast<int>(measured.size())) +
             " measured GPU" + (measured.size() == 1 ? "" : "s") + ")";
  return c;
}

// ---------------------------------------------------------------------------- model

fitted_step_time_model::fitted_step_time_model(const model_preset& m, const ceilings& c,
                                               const fitted_parameters& f, model_options o)
    : m_model(m), m_ceilings(c), m_fit(f), m_options(o) {
  validate(m);
  if (!(c.bytes_per_second > 0) || !(c.flops_per_second > 0))
    throw std::invalid_argument("step-time model: ceilings must be positive");
  if (f.linear.inverse.empty() || f.attention_memory.inverse.empty() ||
      f.attention_compute.inverse.empty())
    throw std::invalid_argument("step-time model: empty efficiency curve");
  m_head_bytes = static_cast<double>(m.lm_head_parameters()) * bytes_per_other_parameter(o.weights);
  m_block_bytes = weight_stream_bytes(m, o.weights) - m_head_bytes;
  m_kv_bytes_per_token = static_cast<double>(m.kv_bytes_per_token(o.kv_dtype));
}

fitted_step_time_model::parts fitted_step_time_model::base(const step_shape& s) const {
  parts p;
  if (s.sequences <= 0) return p;
  const double P = m_ceilings.flops_per_second, B = m_ceilings.bytes_per_second;
  p.tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  p.sampled = s.sampled_tokens;
  p.context_per_sequence =
      (static_cast<double>(s.context_tokens) + p.tokens) / static_cast<double>(s.sequences);
  if (p.tokens > 0)
    p.linear = std::max(m_model.linear_flops_per_token() * p.tokens / P, m_block_bytes / B);
  if (p.sampled > 0)
    p.head = std::max(2.0 * static_cast<double>(m_model.lm_head_parameters()) * p.sampled / P,
                      m_head_bytes / B);
  p.attention_memory =
      m_kv_bytes_per_token * (static_cast<double>(s.context_tokens) + p.tokens) / B;
  p.attention_compute = m_model.attention_flops(s.attention_pairs) / P;
  return p;
}

double fitted_step_time_model::flops(const step_shape& s) const {
  const double tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  return m_model.linear_flops_per_token() * tokens +
         2.0 * static_cast<double>(m_model.lm_head_parameters()) * s.sampled_tokens +
         m_model.attention_flops(s.attention_pairs);
}

double fitted_step_time_model::step_seconds(const step_shape& s) const {
  double t = 0;
  if (s.sequences > 0) {
    const parts p = base(s);
    t = m_fit.linear.at(p.tokens) * p.linear + m_fit.linear.at(p.sampled) * p.head +
        m_fit.attention_memory.at(p.context_per_sequence) * p.attention_memory +
        m_fit.attention_compute.at(p.context_per_sequence) * p.attention_compute +
        m_fit.overhead_seconds;
  }
  if (s.tier2_blocks_loaded > 0) {
    t += static_cast<double>(s.tier2_blocks_loaded) * 16 * m_kv_bytes_per_token / 25e9;
  }
  return t;
}

double fitted_step_time_model::prefill_flops(std::int64_t tokens) const {
  return flops(prefill_shape(1, tokens));
}

double fitted_step_time_model::prefill_seconds(std::int64_t tokens) const {
  if (tokens <= 0) return 0;
  // Marginal cost inside a batched step: the FLOPs and the KV written, at the efficiencies of a
  // step of that many tokens.
  const step_shape s = prefill_shape(1, tokens);
  const double t = static_cast<double>(tokens);
  return m_fit.linear.at(t) * m_model.linear_flops_per_token() * t / m_ceilings.flops_per_second +
         m_fit.attention_compute.at(t) * m_model.attention_flops(s.attention_pairs) /
             m_ceilings.flops_per_second +
         m_fit.attention_memory.at(t) * m_kv_bytes_per_token * t / m_ceilings.bytes_per_second;
}

std::string fitted_step_time_model::description() const {
  std::ostringstream o;
  o << "fitted(" << m_model.name << ", " << name(m_options.weights) << " weights, "
    << fmt("%.1f", m_ceilings.flops_per_second / 1e12) << " TFLOP/s "
    << name(m_ceilings.compute_dtype) << ", " << fmt("%.2f", m_ceilings.bytes_per_second / 1e12)
    << " TB/s, " << m_ceilings.basis << "; efficiencies: " << m_fit.source << ")";
  return o.str();
}

step_shape decode_shape(std::int64_t batch, std::int64_t context) {
  step_shape s;
  s.sequences = static_cast<std::int32_t>(batch);
  s.decode_tokens = batch;
  s.sampled_tokens = static_cast<std::int32_t>(batch);
  s.context_tokens = batch * context;
  s.attention_pairs = static_cast<double>(batch) * static_cast<double>(context + 1);
  return s;
}

step_shape prefill_shape(std::int64_t batch, std::int64_t context) {
  step_shape s;
  s.sequences = static_cast<std::int32_t>(batch);
  s.prefill_tokens = batch * context;
  s.sampled_tokens = static_cast<std::int32_t>(batch);
  s.attention_pairs = static_cast<double>(batch) * static_cast<double>(context) *
                      static_cast<double>(context + 1) / 2.0;
  return s;
}

// ---------------------------------------------------------------------------- sweeps

// Sweeps are read by the format's strict reader (core/schemas/sweep.hpp): a missing or mistyped
// field is an error naming the field and the schema.
std::string sweep_model(const nlohmann::json& doc) {
  return schema::parse_sweep(doc, "sweep").config.model;
}

std::vector<sweep_point> sweep_points(const nlohmann::json& doc) {
  const schema::sweep_document sweep = schema::parse_sweep(doc, "sweep");
  std::vector<sweep_point> out;
  for (std::size_t i = 0; i < sweep.rows.size(); ++i) {
    const auto& r = sweep.rows[i];
    if (!r.measured) continue;
    if (r.context < 1) {
      throw std::invalid_argument("sweep: rows[" + std::to_string(i) +
                                  "].context: must be at least 1 for the fit");
    }
    out.push_back({r.phase, r.batch, r.context, r.measured->step_seconds.median});
  }
  if (out.empty()) throw std::invalid_argument("sweep: no measured rows (all skipped?)");
  return out;
}

// ---------------------------------------------------------------------------- fit

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
      const step_shape s = p.phase == "decode" ? decode_shape(p.batch, p.context)
                                               : prefill_shape(p.batch, p.context);
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

// ---------------------------------------------------------------------------- accuracy

accuracy_report summarize(std::vector<accuracy_row> rows) {
  accuracy_report r;
  r.rows = std::move(rows);
  if (r.rows.empty()) throw std::invalid_argument("accuracy: no points");
  double sum = 0;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    auto& row = r.rows[i];
    if (!(row.point.seconds > 0))
      throw std::invalid_argument("accuracy: measured time must be positive");
    row.error = (row.predicted_seconds - row.point.seconds) / row.point.seconds;
    sum += std::abs(row.error);
    if (std::abs(row.error) > r.worst) {
      r.worst = std::abs(row.error);
      r.worst_index = i;
    }
  }
  r.mape = sum / static_cast<double>(r.rows.size());
  return r;
}

accuracy_report accuracy(const std::vector<sweep_point>& points, const step_time_model& model) {
  std::vector<accuracy_row> rows;
  for (const auto& p : points) {
    const step_shape s =
        p.phase == "decode" ? decode_shape(p.batch, p.context) : prefill_shape(p.batch, p.context);
    rows.push_back({p, model.step_seconds(s), 0});
  }
  return summarize(std::move(rows));
}

}  // namespace ridgeline::planner
