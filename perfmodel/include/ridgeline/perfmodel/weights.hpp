// How a model's weights are stored (bf16/fp16/fp32, fp8, int8 and int4 weight-only) and the bytes
// that follow from it: resident in memory (every parameter) and streamed by one step (block
// linears + LM head). The memory model and the step work both count weights through here, so the
// planner's --weights, the sweep's % of floor and the roofline's counted intensity use one count.
// The quantized formats are counted at the CUDA engine's packed sizes (kernels/quant_packed.hpp:
// codes in 16-row tiles, fp32 scales, 4-bit zero points), not at a nominal bits-per-weight.
//   weight_stream_bytes(model_preset_by_name("llama-2-7b"), weight_format::bf16);  // 13.5e9
//   block_weight_bytes(m, {weight_format::int4, 32});   // a GGUF Q4_0 file's block linears
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline::planner {

// How the block linears are stored. int8 and int4 are weight-only (dequantized to 16-bit for the
// matmul); fp8 runs fp8 tensor cores. Embedding and LM head stay 16-bit for the quantized formats.
enum class weight_format { fp32, fp16, bf16, fp8, int8, int4 };
std::string_view name(weight_format f);
// "fp32", "fp16", "bf16", "fp8", "int8", "int4"; throws std::invalid_argument listing them.
weight_format parse_weight_format(std::string_view s);
// Bytes per parameter of the embedding, LM head and norms.
double bytes_per_other_parameter(weight_format f);

// The block linears' format and, for the grouped ones, the group: what decides their bytes.
// group_size: int4: input columns per scale and zero point (0: the engine's 128; -1: one group
// per row, GPTQ's group_size -1); int8: 0 is one scale per output channel (the engine's int8 and
// quantized-at-load weights), > 0 groups of that many columns (a GGUF Q8_0 file: 32); ignored
// for the other formats (fp8: one scale per output channel). Converts from a weight_format (the
// engine's layout of random weights and of a bf16 checkpoint quantized at load).
struct weight_layout {
  weight_format format = weight_format::bf16;
  int group_size = 0;
  weight_layout() = default;
  weight_layout(weight_format f, int group = 0) : format(f), group_size(group) {}  // NOLINT
  bool operator==(const weight_layout&) const = default;
};
// "bf16", "fp8 (e4m3, per channel)", "int8 (per channel)", "int8 (group 32)", "int4 (group 128)",
// "int4 (group = row)": how the sweep's config and table name it.
std::string describe(const weight_layout& l);

// Bytes of one linear layer's weights W[rows][cols] as the CUDA engine stores and streams them:
// 16-bit formats rows x cols x 2 (fp32: x 4); the packed formats (kernels/quant_packed.hpp)
// rows padded to 16-row tiles, each row of codes padded to whole 512-byte chunks (int4: 64
// columns a chunk per 16 rows, int8/fp8: 32), one fp32 scale per (padded) row and group (per
// channel: per row), and int4's 4-bit zero point per row and group. Exactly
// packed_quant_view::bytes() for a shape the engine packs; for one it cannot (cols not a multiple
// of 32 or of the group: planner-only shapes), cols count as rounded up to the next multiple.
double linear_weight_bytes(std::int64_t rows, std::int64_t cols, const weight_layout& l);

// Bytes the weights take in memory (every parameter: block linears, embedding, LM head, norms).
double weight_memory_bytes(const model_preset& m, weight_format f);
// Bytes of the block linears, which every step streams once: linear_weight_bytes of each layer's
// qkv [(heads + 2 kv_heads) head_dim][hidden], o [hidden][heads head_dim], gate_up
// [2 intermediate][hidden] and down [hidden][intermediate], the tensors the engine stores.
double block_weight_bytes(const model_preset& m, const weight_layout& l);
// Bytes of the LM head, which a step streams once when it samples at least one token.
double head_weight_bytes(const model_preset& m, weight_format f);
// block_weight_bytes + head_weight_bytes: a step that samples (the embedding is gathered by row).
double weight_stream_bytes(const model_preset& m, weight_format f);

}  // namespace ridgeline::planner
