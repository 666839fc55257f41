// The fitted step-time model (see fitted_step_time_model.hpp).
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::planner {

fitted_step_time_model::fitted_step_time_model(const model_preset& m, const ceilings& c,
                                               const fitted_parameters& f, model_options o)
    : m_model(m), m_ceilings(c), m_fit(f), m_options(o) {
  validate(m);
  if (!(c.bytes_per_second > 0) || !(c.flops_per_second > 0))
    throw std::invalid_argument("step-time model: ceilings must be positive");
  if (f.linear.inverse.empty() || f.attention_memory.inverse.empty() ||
      f.attention_compute.inverse.empty())
    throw std::invalid_argument("step-time model: empty efficiency curve");
  if (o.block_tokens <= 0)
    throw std::invalid_argument("step-time model: block size must be positive");
  if (!(o.pcie_bytes_per_second > 0))
    throw std::invalid_argument("step-time model: PCIe bandwidth must be positive");
  m_kv_bytes_per_token = static_cast<double>(m.kv_bytes_per_token(o.kv_dtype));
}

step_work fitted_step_time_model::work(const step_shape& s) const {
  return step_work_of(m_model, s, m_options.weights, m_options.kv_dtype);
}

fitted_step_time_model::parts fitted_step_time_model::base(const step_shape& s) const {
  parts p;
  if (s.sequences <= 0) return p;
  const double P = m_ceilings.flops_per_second, B = m_ceilings.bytes_per_second;
  const step_work w = work(s);
  p.tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  p.sampled = s.sampled_tokens;
  p.context_per_sequence =
      (static_cast<double>(s.context_tokens) + p.tokens) / static_cast<double>(s.sequences);
  if (p.tokens > 0) p.linear = std::max(w.block_flops / P, w.block_weight_bytes / B);
  if (p.sampled > 0) p.head = std::max(w.head_flops / P, w.head_weight_bytes / B);
  p.attention_memory = w.kv_bytes() / B;
  p.attention_compute = w.attention_flops / P;
  return p;
}

double fitted_step_time_model::flops(const step_shape& s) const {
  return work(s).flops;
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
  return t + tier2_load_seconds(s, m_options.block_tokens, m_kv_bytes_per_token,
                                m_options.pcie_bytes_per_second);
}

double fitted_step_time_model::prefill_flops(std::int64_t tokens) const {
  return flops(prefix_shape(tokens));
}

double fitted_step_time_model::prefill_seconds(std::int64_t tokens) const {
  if (tokens <= 0) return 0;
  // Marginal cost inside a batched step: the FLOPs and the KV written, at the efficiencies of a
  // step of that many tokens.
  const step_work w = work(prefix_shape(tokens));
  const double t = static_cast<double>(tokens);
  return m_fit.linear.at(t) * w.block_flops / m_ceilings.flops_per_second +
         m_fit.attention_compute.at(t) * w.attention_flops / m_ceilings.flops_per_second +
         m_fit.attention_memory.at(t) * w.kv_bytes() / m_ceilings.bytes_per_second;
}

std::string fitted_step_time_model::description() const {
  std::ostringstream o;
  o << "fitted(" << m_model.name << ", " << name(m_options.weights) << " weights, "
    << format("%.1f", m_ceilings.flops_per_second / 1e12) << " TFLOP/s "
    << name(m_ceilings.compute_dtype) << ", " << format("%.2f", m_ceilings.bytes_per_second / 1e12)
    << " TB/s, " << m_ceilings.basis << "; efficiencies: " << m_fit.source << ")";
  return o.str();
}

}  // namespace ridgeline::planner
