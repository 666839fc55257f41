// Weight formats and weight bytes (see weights.hpp): the packed sizes through kernels'
// packed_quant_view, the one definition of the engine's layout.
#include "ridgeline/perfmodel/weights.hpp"

#include <stdexcept>
#include <string>

#include "ridgeline/kernels/quant.hpp"
#include "ridgeline/kernels/quant_packed.hpp"

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

std::string describe(const weight_layout& l) {
  const std::string n(name(l.format));
  switch (l.format) {
    case weight_format::fp8:
      return n + " (e4m3, per channel)";
    case weight_format::int8:
      return l.group_size > 0 ? n + " (group " + std::to_string(l.group_size) + ")"
                              : n + " (per channel)";
    case weight_format::int4:
      return l.group_size < 0 ? n + " (group = row)"
                              : n + " (group " +
                                    std::to_string(l.group_size > 0 ? l.group_size
                                                                    : cpu::k_default_group_size) +
                                    ")";
    default:
      return n;
  }
}

double linear_weight_bytes(std::int64_t rows, std::int64_t cols, const weight_layout& l) {
  if (rows <= 0 || cols <= 0) return 0;
  const double elements = static_cast<double>(rows) * static_cast<double>(cols);
  switch (l.format) {
    case weight_format::fp32:
      return 4 * elements;
    case weight_format::fp16:
    case weight_format::bf16:
      return 2 * elements;
    default:
      break;
  }
  auto round_up = [](std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; };
  packed_quant_view v;
  v.rows = static_cast<int>(rows);
  if (l.format == weight_format::int4) {
    v.kind = packed_quant_kind::int4_group;
    const std::int64_t group = l.group_size < 0    ? round_up(cols, k_pack_block_cols)
                               : l.group_size > 0 ? l.group_size
                                                  : cpu::k_default_group_size;
    v.group_size = static_cast<int>(group);
    v.cols = static_cast<int>(round_up(cols, group));
  } else if (l.format == weight_format::int8 && l.group_size > 0) {
    v.kind = packed_quant_kind::int8_group;
    v.group_size = l.group_size;
    v.cols = static_cast<int>(round_up(cols, l.group_size));
  } else {
    v.kind = l.format == weight_format::fp8 ? packed_quant_kind::fp8_channel
                                            : packed_quant_kind::int8_channel;
    v.cols = static_cast<int>(round_up(cols, k_pack_block_cols));
  }
  return static_cast<double>(v.bytes());
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

double block_weight_bytes(const model_preset& m, const weight_layout& l) {
  const std::int64_t H = m.hidden, I = m.intermediate, q = std::int64_t{m.heads} * m.head_dim;
  const std::int64_t qkv = std::int64_t{m.heads + 2 * m.kv_heads} * m.head_dim;
  return m.layers * (linear_weight_bytes(qkv, H, l) + linear_weight_bytes(H, q, l) +
                     linear_weight_bytes(2 * I, H, l) + linear_weight_bytes(H, I, l));
}

double head_weight_bytes(const model_preset& m, weight_format f) {
  return static_cast<double>(m.lm_head_parameters()) * bytes_per_other_parameter(f);
}

double weight_stream_bytes(const model_preset& m, weight_format f) {
  return block_weight_bytes(m, f) + head_weight_bytes(m, f);
}

}  // namespace ridgeline::planner
