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
  m_kv_bytes_per_token = static_cast<double>(m.kv_bytes_per_token(o.kv_dtype));
}

double roofline_step_time_model::flops(const step_shape& s) const {
  return step_work_of(m_model, s, m_options.weights, m_options.kv_dtype).flops;
}

double roofline_step_time_model::bytes(const step_shape& s) const {
  return step_work_of(m_model, s, m_options.weights, m_options.kv_dtype).bytes();
}

double roofline_step_time_model::step_seconds(const step_shape& s) const {
  double t = 0;
  if (s.sequences > 0) {
    const step_work w = step_work_of(m_model, s, m_options.weights, m_options.kv_dtype);
    t = std::max(w.flops / m_peak_flops, w.bytes() / m_bytes_per_second) +
        m_options.overhead_seconds;
  }
  return t + tier2_load_seconds(s, m_options.block_tokens, m_kv_bytes_per_token,
                                m_options.pcie_bytes_per_second);
}

double roofline_step_time_model::prefill_flops(std::int64_t tokens) const {
  return flops(prefix_shape(tokens));
}

double roofline_step_time_model::prefill_seconds(std::int64_t tokens) const {
  if (tokens <= 0) return 0;
  // Marginal cost inside a batched step: the weights are read by that step anyway, so only the
  // FLOPs and the KV written count.
  const step_work w =
      step_work_of(m_model, prefix_shape(tokens), m_options.weights, m_options.kv_dtype);
  return std::max(w.flops / m_peak_flops, w.kv_write_bytes / m_bytes_per_second);
}

std::string roofline_step_time_model::description() const {
  std::ostringstream o;
  o << "roofline(" << m_model.name << " on " << m_gpu << ": " << m_peak_flops / 1e12 << " TFLOP/s "
    << name(m_options.compute_dtype) << ", " << m_bytes_per_second / 1e12 << " TB/s)";
  return o.str();
}

}  // namespace ridgeline
