// Roofline step-time model (see step_time_model.hpp).
#include "ridgeline/perfmodel/step_time_model.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace ridgeline {

roofline_step_time_model::roofline_step_time_model(const model_preset& m, const gpu_profile& gpu,
                                                   roofline_options o)
    : m_model(m), m_options(o), m_gpu(gpu.key.empty() ? gpu.name : gpu.key) {
  validate(m);
  m_peak_flops = gpu.peak_flops_per_second(o.compute_dtype);
  m_bytes_per_second = gpu.dram_bytes_per_second();
  if (!(m_peak_flops > 0)) {
    throw std::invalid_argument("GPU profile '" + m_gpu + "' has no " +
                                std::string(name(o.compute_dtype)) + " peak FLOP/s");
  }
  if (!(m_bytes_per_second > 0)) {
    throw std::invalid_argument("GPU profile '" + m_gpu + "' has no DRAM bandwidth");
  }
  if (o.overhead_seconds < 0) throw std::invalid_argument("step overhead must not be negative");
  if (!(o.pcie_bytes_per_second > 0))
    throw std::invalid_argument("PCIe bandwidth must be positive");
  m_weight_bytes = static_cast<double>(m.weight_bytes(o.weight_dtype));
  m_kv_bytes_per_token = static_cast<double>(m.kv_bytes_per_token(o.kv_dtype));
}

double roofline_step_time_model::flops(const step_shape& s) const {
  const double tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  return m_model.linear_flops_per_token() * tokens +
         2.0 * static_cast<double>(m_model.lm_head_parameters()) * s.sampled_tokens +
         m_model.attention_flops(s.attention_pairs);
}

double roofline_step_time_model::bytes(const step_shape& s) const {
  if (s.sequences == 0) return 0;
  const double tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  return m_weight_bytes + m_kv_bytes_per_token * (static_cast<double>(s.context_tokens) + tokens);
}

double roofline_step_time_model::step_seconds(const step_shape& s) const {
  double t = 0;
  if (s.sequences > 0) {
    t = std::max(flops(s) / m_peak_flops, bytes(s) / m_bytes_per_second) +
        m_options.overhead_seconds;
  }
  if (s.tier2_blocks_loaded > 0) {
    t += static_cast<double>(s.tier2_blocks_loaded) * m_options.block_tokens *
         m_kv_bytes_per_token / m_options.pcie_bytes_per_second;
  }
  return t;
}

double roofline_step_time_model::prefill_flops(std::int64_t tokens) const {
  step_shape s;
  s.sequences = 1;
  s.prefill_tokens = tokens;
  s.attention_pairs = static_cast<double>(tokens) * (static_cast<double>(tokens) + 1) / 2;
  return flops(s);
}

double roofline_step_time_model::prefill_seconds(std::int64_t tokens) const {
  if (tokens <= 0) return 0;
  step_shape s;
  s.sequences = 1;
  s.prefill_tokens = tokens;
  s.attention_pairs = static_cast<double>(tokens) * (static_cast<double>(tokens) + 1) / 2;
  // Marginal cost inside a batched step: the weights are read by that step anyway, so only the
  // FLOPs and the KV written count.
  return std::max(flops(s) / m_peak_flops,
                  m_kv_bytes_per_token * static_cast<double>(tokens) / m_bytes_per_second);
}

std::string roofline_step_time_model::description() const {
  std::ostringstream o;
  o << "roofline(" << m_model.name << " on " << m_gpu << ": " << m_peak_flops / 1e12 << " TFLOP/s "
    << name(m_options.compute_dtype) << ", " << m_bytes_per_second / 1e12 << " TB/s)";
  return o.str();
}

}  // namespace ridgeline
