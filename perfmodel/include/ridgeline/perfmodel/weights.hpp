// How a model's weights are stored (bf16/fp16/fp32, fp8, int8 and int4 weight-only) and the bytes
// that follow from it: resident in memory (every parameter) and streamed by one step (block
// linears + LM head). The memory model and the step work both count weights through here.
//   weight_stream_bytes(model_preset_by_name("llama-2-7b"), weight_format::bf16);  // 13.5e9
#pragma once

#include <string_view>

#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline::planner {

// How the block linears are stored. int8 and int4 are weight-only (dequantized to 16-bit for the
// matmul); fp8 runs fp8 tensor cores. Embedding and LM head stay 16-bit for the quantized formats.
enum class weight_format { fp32, fp16, bf16, fp8, int8, int4 };
std::string_view name(weight_format f);
// "fp32", "fp16", "bf16", "fp8", "int8", "int4"; throws std::invalid_argument listing them.
weight_format parse_weight_format(std::string_view s);
// Bytes per block-linear parameter, scales included (int4: groups of 128 with a 16-bit scale and
// zero point, 0.5 + 4/128 bytes).
double bytes_per_parameter(weight_format f);
// Bytes per parameter of the embedding, LM head and norms.
double bytes_per_other_parameter(weight_format f);

// Bytes the weights take in memory (every parameter: block linears, embedding, LM head, norms).
double weight_memory_bytes(const model_preset& m, weight_format f);
// Bytes of the block linears, which every step streams once.
double block_weight_bytes(const model_preset& m, weight_format f);
// Bytes of the LM head, which a step streams once when it samples at least one token.
double head_weight_bytes(const model_preset& m, weight_format f);
// block_weight_bytes + head_weight_bytes: a step that samples (the embedding is gathered by row).
double weight_stream_bytes(const model_preset& m, weight_format f);

}  // namespace ridgeline::planner
