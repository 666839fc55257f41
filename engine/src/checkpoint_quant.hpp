// The format-specific halves of load_checkpoint_for_engine (quant_weights.hpp): a GGUF file
// (checkpoint_gguf.cpp) and a Hugging Face folder, bf16 or AWQ/GPTQ/fp8 (checkpoint.cpp), called by
// checkpoint_quant.cpp's dispatch.
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "ridgeline/engine/quant_checkpoint.hpp"
#include "ridgeline/engine/quant_weights.hpp"

namespace ridgeline::detail {

// int4 when the file's linear tensors (blk.N.attn_q/k/v/output, ffn_gate/up/down) include Q4_0,
// int8 when they include Q8_0, nullopt when they are all F32/F16/BF16; throws when both.
std::optional<planner::weight_format> gguf_weight_format(const std::filesystem::path& file);
// Every tensor of weight_tensors(m): a block linear whose parts are all Q4_0 (f = int4) or all
// Q8_0 (f = int8) packed as stored (q4_0 / q8_0, Q and K rows un-permuted whole); other tensors
// bf16 as load_checkpoint_weights gives them. A part of the other quantized type is refused.
std::vector<loaded_tensor> load_gguf_for_engine(const std::filesystem::path& file,
                                                const model_preset& m, planner::weight_format f,
                                                std::optional<bool> tie_word_embeddings);

// The quantization of a Hugging Face checkpoint: config.json's quantization_config, else a
// quantize_config.json beside it; nullopt when neither exists (a bf16/F16/F32 checkpoint).
std::optional<quantization_config> hf_quantization(const std::filesystem::path& dir_or_file);
// A quantized Hugging Face folder (AWQ, GPTQ, fp8): block linears packed from their codes (f in
// the checkpoint's format) or dequantized to bf16 (f = bf16); the other tensors read as bf16.
std::vector<loaded_tensor> load_hf_quantized_for_engine(const std::filesystem::path& dir_or_file,
                                                        const model_preset& m,
                                                        const quantization_config& q,
                                                        planner::weight_format f,
                                                        std::optional<bool> tie_word_embeddings);

// Rows of quantized matrices of one format and column count stacked into one (q/k/v, gate/up).
cpu::quantized_matrix stack_rows(const std::vector<cpu::quantized_matrix>& parts);

}  // namespace ridgeline::detail
