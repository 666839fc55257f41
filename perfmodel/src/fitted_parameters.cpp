// Efficiency curves, default parameters and the fit document (see fitted_parameters.hpp).
#include "ridgeline/perfmodel/fitted_parameters.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

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

// Linear efficiency the probe measured on one block's four linear layers, by tokens (at most 1:
// a row faster than the probe's own ceilings would put the prior above physics).
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
    out.emplace_back(std::log2(tokens),
                     std::max(1.0, seconds / std::max(flops / peak, bytes / bw)));
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
    if (!c[axis][i].is_number() || !c["efficiency"][i].is_number())
      throw std::invalid_argument(std::string("fit: ") + field + " holds a non-number");
    const double x = c[axis][i].get<double>(), e = c["efficiency"][i].get<double>();
    if (!(e > 0 && e <= 1))
      throw std::invalid_argument(std::string("fit: ") + field + ".efficiency[" +
                                  std::to_string(i) + "] must be in (0, 1], found " +
                                  std::to_string(e));
    if (i > 0 && !(x > out.log2_x.back()))
      throw std::invalid_argument(std::string("fit: ") + field + " knots must increase");
    out.log2_x.push_back(x);
    out.inverse.push_back(1.0 / e);
  }
  return out;
}

}  // namespace

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
  if (!(efficiency > 0 && efficiency <= 1))
    throw std::invalid_argument("efficiency must be in (0, 1]");
  return knots(lo, hi, 1.0 / efficiency);
}

fitted_parameters default_parameters(const gpu_profile* probe) {
  fitted_parameters f;
  f.linear = knots(k_lin_lo, k_lin_hi, 1 / 0.7);
  f.attention_memory = knots(k_att_lo, k_att_hi, 1 / 0.7);
  f.attention_compute = knots(k_att_lo, k_att_hi, 1 / 0.5);
  f.fixed = {30e-6, 0, "default (30 us per step, not measured)"};
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
  nlohmann::json j = {{"schema", k_fit_schema},
                      {"gpu", f.gpu},
                      {"source", f.source},
                      {"linear", curve_json(f.linear, "log2_tokens")},
                      {"attention_memory", curve_json(f.attention_memory, "log2_context")},
                      {"attention_compute", curve_json(f.attention_compute, "log2_context")},
                      {"fixed_costs",
                       {{"per_step_seconds", f.fixed.per_step_seconds},
                        {"per_layer_seconds", f.fixed.per_layer_seconds},
                        {"source", f.fixed.source}}},
                      {"stats", f.stats}};
  // Only a fit that saw serving runs has a loop gap; a sweep fit's document stays as it was.
  if (f.loop.measured())
    j["loop_gaps"] = {{"decode_seconds", f.loop.decode_seconds},
                      {"prefill_seconds", f.loop.prefill_seconds},
                      {"decode_steps", f.loop.decode_steps},
                      {"prefill_steps", f.loop.prefill_steps},
                      {"source", f.loop.source}};
  return j;
}

fitted_parameters fitted_parameters_from_json(const nlohmann::json& j) {
  const std::string schema = j.is_object() && j.contains("schema") && j["schema"].is_string()
                                 ? j["schema"].get<std::string>()
                                 : "";
  if (schema == "ridgeline.fit/v1")
    throw std::invalid_argument(
        "fit: ridgeline.fit/v1 (efficiencies above 1 allowed, a fitted overhead) is no longer "
        "read: refit with `ridgeline plan fit` (ridgeline.fit/v2, docs/plan.md)");
  if (schema != k_fit_schema)
    throw std::invalid_argument(std::string("fit: schema must be \"") + k_fit_schema + "\"");
  auto text = [&](const nlohmann::json& o, const char* key, const std::string& where) {
    if (!o.contains(key) || !o[key].is_string())
      throw std::invalid_argument("fit: " + where + key + " must be a string");
    return o[key].get<std::string>();
  };
  auto seconds = [&](const nlohmann::json& o, const char* key) {
    if (!o.contains(key) || !o[key].is_number() || !(o[key].get<double>() >= 0))
      throw std::invalid_argument(std::string("fit: fixed_costs.") + key +
                                  " must be a non-negative number");
    return o[key].get<double>();
  };
  fitted_parameters f;
  f.source = text(j, "source", "");
  f.gpu = text(j, "gpu", "");
  f.linear = curve_from_json(j, "linear", "log2_tokens");
  f.attention_memory = curve_from_json(j, "attention_memory", "log2_context");
  f.attention_compute = curve_from_json(j, "attention_compute", "log2_context");
  if (!j.contains("fixed_costs") || !j["fixed_costs"].is_object())
    throw std::invalid_argument("fit: missing object \"fixed_costs\"");
  const auto& fc = j["fixed_costs"];
  f.fixed = {seconds(fc, "per_step_seconds"), seconds(fc, "per_layer_seconds"),
             text(fc, "source", "fixed_costs.")};
  if (j.contains("loop_gaps")) {
    const auto& lg = j["loop_gaps"];
    if (!lg.is_object()) throw std::invalid_argument("fit: loop_gaps must be an object");
    auto gap = [&](const char* key) {
      if (!lg.contains(key) || !lg[key].is_number() || !(lg[key].get<double>() >= 0))
        throw std::invalid_argument(std::string("fit: loop_gaps.") + key +
                                    " must be a non-negative number");
      return lg[key].get<double>();
    };
    auto steps = [&](const char* key) {
      if (!lg.contains(key) || !lg[key].is_number_integer() || lg[key].get<std::int64_t>() < 0)
        throw std::invalid_argument(std::string("fit: loop_gaps.") + key +
                                    " must be a non-negative integer");
      return lg[key].get<std::int64_t>();
    };
    f.loop.decode_seconds = gap("decode_seconds");
    f.loop.prefill_seconds = gap("prefill_seconds");
    f.loop.decode_steps = steps("decode_steps");
    f.loop.prefill_steps = steps("prefill_steps");
    f.loop.source = text(lg, "source", "loop_gaps.");
    if (!f.loop.measured())
      throw std::invalid_argument(
          "fit: loop_gaps is over no step (decode_steps and "
          "prefill_steps are 0): leave the object out instead");
  }
  if (!j.contains("stats") || !j["stats"].is_object())
    throw std::invalid_argument("fit: missing object \"stats\"");
  f.stats = j["stats"];
  return f;
}

}  // namespace ridgeline::planner
