// The fitted step-time model (see fitted_step_time_model.hpp).
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::planner {

std::string_view name(op_bound b) {
  switch (b) {
    case op_bound::memory:
      return "memory";
    case op_bound::compute:
      return "compute";
    case op_bound::interconnect_latency:
      return "latency";
    case op_bound::interconnect_bandwidth:
      return "interconnect";
    case op_bound::fixed:
      return "fixed";
  }
  return "?";
}

namespace {

void check_curve(const efficiency_curve& c, const char* what) {
  if (c.inverse.empty())
    throw std::invalid_argument(std::string("step-time model: empty ") + what + " curve");
  for (double u : c.inverse) {
    // An efficiency above 1 would put a prediction under the roofline.
    if (!(u >= 1))
      throw std::invalid_argument(std::string("step-time model: a ") + what +
                                  " efficiency above 1 (faster than the roofline)");
  }
}

// Floor and bound of an op group with `bytes_seconds` = bytes / B and `flops_seconds` = FLOPs / P.
op_group_time roofline_group(double bytes_seconds, double flops_seconds) {
  op_group_time g;
  g.floor_seconds = std::max(bytes_seconds, flops_seconds);
  g.bound = flops_seconds > bytes_seconds ? op_bound::compute : op_bound::memory;
  return g;
}

}  // namespace

fitted_step_time_model::fitted_step_time_model(const model_preset& m, const ceilings& c,
                                               const fitted_parameters& f, model_options o)
    : m_model(m), m_ceilings(c), m_fit(f), m_options(o) {
  validate(m);
  m_shard = tensor_parallel_shard(m, o.tensor_parallel);
  if (!(c.bytes_per_second > 0) || !(c.flops_per_second > 0))
    throw std::invalid_argument("step-time model: ceilings must be positive");
  check_curve(f.linear, "linear");
  check_curve(f.attention_memory, "attention memory");
  check_curve(f.attention_compute, "attention compute");
  if (!(f.fixed.per_step_seconds >= 0) || !(f.fixed.per_layer_seconds >= 0))
    throw std::invalid_argument("step-time model: fixed costs must not be negative");
  if (o.block_tokens <= 0)
    throw std::invalid_argument("step-time model: block size must be positive");
  if (!(o.pcie_bytes_per_second > 0))
    throw std::invalid_argument("step-time model: PCIe bandwidth must be positive");
  if (o.tensor_parallel > 1 &&
      (o.all_reduce.gpus != o.tensor_parallel || !(o.all_reduce.bus_bytes_per_second > 0) ||
       !(o.all_reduce.latency_seconds >= 0)))
    throw std::invalid_argument("step-time model: TP " + std::to_string(o.tensor_parallel) +
                                " needs the all-reduce cost of that many GPUs");
  m_kv_bytes_per_token = static_cast<double>(m_shard.kv_bytes_per_token(o.kv_dtype));
}

step_work fitted_step_time_model::work(const step_shape& s) const {
  return step_work_of(m_shard, s, m_options.weights, m_options.kv_dtype);
}

double fitted_step_time_model::all_reduce_bytes(double tokens) const {
  const double activation_bytes = m_ceilings.compute_dtype == dtype::fp32 ? 4 : 2;
  return tokens * m_model.hidden * activation_bytes;
}

fitted_step_time_model::parts fitted_step_time_model::base(const step_shape& s) const {
  return base_of(s, work(s));
}

fitted_step_time_model::parts fitted_step_time_model::base_of(const step_shape& s,
                                                              const step_work& w) const {
  parts p;
  if (s.sequences <= 0) return p;
  const double P = m_ceilings.flops_per_second, B = m_ceilings.bytes_per_second;
  p.tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  p.sampled = s.sampled_tokens;
  p.context_per_sequence =
      (static_cast<double>(s.context_tokens) + p.tokens) / static_cast<double>(s.sequences);
  if (p.tokens > 0) p.linear = std::max(w.block_flops / P, w.block_weight_bytes / B);
  if (p.sampled > 0) p.head = std::max(w.head_flops / P, w.head_weight_bytes / B);
  p.attention_memory = w.kv_bytes() / B;
  p.attention_compute = w.attention_flops / P;
  if (m_options.tensor_parallel > 1 && p.tokens > 0)
    p.all_reduce = 2.0 * m_model.layers * m_options.all_reduce.seconds(all_reduce_bytes(p.tokens));
  p.fixed = m_fit.fixed.seconds(m_model);
  return p;
}

double fitted_step_time_model::flops(const step_shape& s) const {
  return work(s).flops;
}

step_breakdown fitted_step_time_model::breakdown(const step_shape& s) const {
  step_breakdown b;
  b.tier2_seconds = tier2_load_seconds(s, m_options.block_tokens, m_kv_bytes_per_token,
                                       m_options.pcie_bytes_per_second);
  if (s.sequences <= 0) return b;
  const double P = m_ceilings.flops_per_second, B = m_ceilings.bytes_per_second;
  const step_work w = work(s);
  const parts p = base_of(s, w);
  if (p.tokens > 0) {
    b.linear = roofline_group(w.block_weight_bytes / B, w.block_flops / P);
    b.linear.seconds = m_fit.linear.at(p.tokens) * p.linear;
  }
  if (p.sampled > 0) {
    b.lm_head = roofline_group(w.head_weight_bytes / B, w.head_flops / P);
    b.lm_head.seconds = m_fit.linear.at(p.sampled) * p.head;
  }
  b.attention = roofline_group(p.attention_memory, p.attention_compute);
  b.attention.seconds = m_fit.attention_memory.at(p.context_per_sequence) * p.attention_memory +
                        m_fit.attention_compute.at(p.context_per_sequence) * p.attention_compute;
  if (p.all_reduce > 0) {
    b.all_reduce.seconds = b.all_reduce.floor_seconds = p.all_reduce;
    b.all_reduce.bound = m_options.all_reduce.latency_bound(all_reduce_bytes(p.tokens))
                             ? op_bound::interconnect_latency
                             : op_bound::interconnect_bandwidth;
  }
  b.fixed.seconds = p.fixed;
  b.fixed.bound = op_bound::fixed;
  return b;
}

double fitted_step_time_model::step_seconds(const step_shape& s) const {
  return breakdown(s).seconds();
}

double fitted_step_time_model::prefill_flops(std::int64_t tokens) const {
  return flops(prefix_shape(tokens));
}

double fitted_step_time_model::prefill_seconds(std::int64_t tokens) const {
  if (tokens <= 0) return 0;
  // Marginal cost inside a batched step: the FLOPs, the KV written and the all-reduced bytes, at
  // the efficiencies of a step of that many tokens.
  const step_work w = work(prefix_shape(tokens));
  const double t = static_cast<double>(tokens);
  double seconds = m_fit.linear.at(t) * w.block_flops / m_ceilings.flops_per_second +
                   m_fit.attention_compute.at(t) * w.attention_flops / m_ceilings.flops_per_second +
                   m_fit.attention_memory.at(t) * w.kv_bytes() / m_ceilings.bytes_per_second;
  if (m_options.tensor_parallel > 1) {
    const auto& a = m_options.all_reduce;
    seconds += 2.0 * m_model.layers * (a.seconds(all_reduce_bytes(t)) - a.latency_seconds);
  }
  return seconds;
}

std::string fitted_step_time_model::description() const {
  std::ostringstream o;
  o << "fitted(" << m_model.name << ", " << name(m_options.weights) << " weights, ";
  if (m_options.tensor_parallel > 1)
    o << "TP " << m_options.tensor_parallel << " (all-reduce: " << m_options.all_reduce.basis
      << "), ";
  o << format("%.1f", m_ceilings.flops_per_second / 1e12) << " TFLOP/s "
    << name(m_ceilings.compute_dtype) << ", " << format("%.2f", m_ceilings.bytes_per_second / 1e12)
    << " TB/s, " << m_ceilings.basis << "; efficiencies: " << m_fit.source << "; fixed "
    << format("%.1f", m_fit.fixed.seconds(m_model) * 1e6) << " us per step: " << m_fit.fixed.source;
  if (m_fit.loop.measured())
    o << "; loop gap " << format("%.1f", m_fit.loop.decode_seconds * 1e6)
      << " us before a decode step, " << format("%.1f", m_fit.loop.prefill_seconds * 1e6)
      << " us before a prefill or mixed one";
  o << ")";
  return o.str();
}

}  // namespace ridgeline::planner
