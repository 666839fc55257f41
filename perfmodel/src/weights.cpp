// Weight formats and weight bytes (see weights.hpp).
#include "ridgeline/perfmodel/weights.hpp"

#include <stdexcept>
#include <string>

namespace ridgeline::planner {

std::string_view name(weight_format f) {
  switch (f) {
    case weight_format::fp32:
      return "fp32";
    case weight_format::fp16:
      return "fp16";
    case weight_format::bf16:
      return "bf16";
    case weight_format::fp8:
      return "fp8";
    case weight_format::int8:
      return "int8";
    case weight_format::int4:
      return "int4";
  }
  return "?";
}

weight_format parse_weight_format(std::string_view s) {
  for (auto f : {weight_format::fp32, weight_format::fp16, weight_format::bf16, weight_format::fp8,
                 weight_format::int8, weight_format::int4}) {
    if (s == name(f)) return f;
  }
  if (s == "fp8_e4m3") return weight_format::fp8;
  throw std::invalid_argument("unknown weight format '" + std::string(s) +
                              "' (expected fp32, fp16, bf16, fp8, int8 or int4)");
}

double bytes_per_parameter(weight_format f) {
  switch (f) {
    case weight_format::fp32:
      return 4;
    case weight_format::fp16:
    case weight_format::bf16:
      return 2;
    case weight_format::fp8:
    case weight_format::int8:
      return 1;  // per-channel scales: negligible
    case weight_format::int4:
      return 0.5 + 4.0 / 128;
  }
  return 2;
}

double bytes_per_other_parameter(weight_format f) {
  return f == weight_format::fp32 ? 4 : 2;
}

double weight_memory_bytes(const model_preset& m, weight_format f) {
  const double other = static_cast<double>(m.lm_head_parameters()) +          // LM head
                       static_cast<double>(m.vocab) * m.hidden +              // embedding (untied)
                       static_cast<double>(m.hidden) * (2.0 * m.layers + 1);  // norms
  return block_weight_bytes(m, f) + other * bytes_per_other_parameter(f);
}

double block_weight_bytes(const model_preset& m, weight_format f) {
  return static_cast<double>(m.block_linear_parameters()) * bytes_per_parameter(f);
}

double head_weight_bytes(const model_preset& m, weight_format f) {
  return static_cast<double>(m.lm_head_parameters()) * bytes_per_other_parameter(f);
}

double weight_stream_bytes(const model_preset& m, weight_format f) {
  return block_weight_bytes(m, f) + head_weight_bytes(m, f);
}

}  // namespace ridgeline::planner
