// Readers of quantized linear layers as published checkpoints store them in safetensors, each
// dequantized to float W[out_features][in_features] (row-major, the orientation of a Hugging Face
// `weight` and of kernels/quant.hpp):
//   - AWQ (AutoAWQ "gemm" version): qweight int32 [in][out / 8] packed along the output dimension
//     in AWQ's interleaved nibble order, qzeros int32 [in / G][out / 8] packed alike, scales fp16
//     [in / G][out];  w = s * (q - z).
//   - GPTQ (AutoGPTQ / GPTQModel, checkpoint_format "gptq" or "gptq_v2"): qweight int32
//     [in / 8][out] packed along the input dimension, qzeros int32 [groups][out / 8], scales fp16
//     [groups][out], optional g_idx int32 [in] (act-order: the group of each input row, else
//     row / G);  w = s * (q - z), z the stored nibble + 1 for "gptq", as stored for "gptq_v2".
//   - Hugging Face fp8 (transformers' fp8 / compressed-tensors / DeepSeek style): weight
//     F8_E4M3 [out][in] with weight_scale or weight_scale_inv per tensor ([] or [1]), per output
//     channel ([out] or [out, 1]) or per block ([ceil(out / bo)][ceil(in / bi)], weight_block_size
//     [bo, bi]);  w = e4m3(q) * scale (the "_inv" scale multiplies as well: it is the inverse of
//     the quantizer's scale).
// docs/checkpoints.md ("AWQ, GPTQ and fp8 safetensors") has the layouts, bit by bit, and the
// checks. Each dequantizer takes the tensors as stored (dtype, shape, little-endian bytes) and
// checks dtypes and shapes first; a bad one throws std::invalid_argument, one line naming the
// source and the tensor.
//   safetensors_reader r(dir, safetensors_dtypes::any);
//   const quantization_config q = read_quantization_config(dir / "config.json");
//   dequantized_linear l = read_quantized_linear(r, "model.layers.0.self_attn.q_proj", q);
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/engine/safetensors.hpp"
#include "ridgeline/kernels/quant.hpp"

namespace ridgeline {

// One tensor as a checkpoint stores it.
struct stored_tensor {
  std::string name;   // for messages
  std::string dtype;  // safetensors dtype: "I32", "F16", "F8_E4M3", ...
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;  // little-endian, row-major
};

struct dequantized_linear {
  int out_features = 0, in_features = 0;
  std::vector<float> weight;  // [out_features][in_features]
};

enum class gptq_zero_format {
  v1,  // checkpoint_format "gptq" (AutoGPTQ and older): the zero point is the stored nibble + 1
  v2,  // checkpoint_format "gptq_v2": the zero point is stored as is
};

// The AWQ nibble order: nibble k (bits 4k..4k+3) of a packed word holds output column
// k_awq_pack_order[k] of its 8; column j therefore sits in nibble k_awq_nibble_of_column[j].
inline constexpr std::array<int, 8> k_awq_pack_order = {0, 2, 4, 6, 1, 3, 5, 7};
inline constexpr std::array<int, 8> k_awq_nibble_of_column = {0, 4, 1, 5, 2, 6, 3, 7};

// group_size: input rows per group (AWQ: > 0, in % group_size == 0). Scales may be F16, BF16 or
// F32.
dequantized_linear dequantize_awq(const stored_tensor& qweight, const stored_tensor& qzeros,
                                  const stored_tensor& scales, int group_size,
                                  const std::string& source);
// group_size <= 0 means one group over the whole input (GPTQ's group_size -1). Without g_idx the
// group of input row i is i / group_size and scales must have ceil(in / group_size) rows; with
// g_idx every entry must lie in [0, scales rows).
dequantized_linear dequantize_gptq(const stored_tensor& qweight, const stored_tensor& qzeros,
                                   const stored_tensor& scales, const stored_tensor* g_idx,
                                   int group_size, gptq_zero_format zeros,
                                   const std::string& source);
// block: weight_block_size [rows, cols] when the scale is per block; else the scale's shape says
// per tensor or per channel.
dequantized_linear dequantize_hf_fp8(const stored_tensor& weight, const stored_tensor& scale,
                                     std::optional<std::array<int, 2>> block,
                                     const std::string& source);

// What quantization_config (in config.json) or quantize_config.json says.
struct quantization_config {
  std::string method;     // "awq", "gptq" or "fp8"
  int bits = 4;           // awq/gptq: only 4 is read
  int group_size = 128;   // awq/gptq; gptq's -1 is one group per row
  bool desc_act = false;  // gptq: act-order (g_idx is then required)
  gptq_zero_format gptq_zeros = gptq_zero_format::v1;
  std::optional<std::array<int, 2>> fp8_block;  // fp8: weight_block_size
};
// Reads `quantization_config` from a Hugging Face config.json, or a quantize_config.json (whose
// top level is the config). Fields: quant_method ("awq", "gptq", "fp8"), bits, group_size
// (q_group_size accepted), version ("gemm" for awq; "gemv" and others refused), desc_act,
// checkpoint_format ("gptq" or "gptq_v2"), weight_block_size, activation_scheme (ignored).
// Throws std::invalid_argument naming the file and the field.
quantization_config read_quantization_config(const std::filesystem::path& json_file);

// Reads and dequantizes `<prefix>.qweight/.qzeros/.scales[/.g_idx]` (awq, gptq) or
// `<prefix>.weight` + `<prefix>.weight_scale` or `.weight_scale_inv` (fp8). The reader must
// accept any dtype (safetensors_dtypes::any). Missing tensors: "<checkpoint>: missing tensor ...".
dequantized_linear read_quantized_linear(safetensors_reader& r, const std::string& prefix,
                                         const quantization_config& q);

// The same layers as stored codes, for the engine's packed formats (no value changes;
// dequantize(codes) equals the dequantizer's weights bit for bit): AWQ and GPTQ as quant.hpp's
// int4_group [out][in] with the checkpoint's group size (GPTQ's -1: one group of all inputs), fp8
// per tensor or per channel as fp8_e4m3_channel (per tensor: every row takes the one scale).
// Refused, one line naming the tensor and the way out (--weights bf16 runs them dequantized):
// GPTQ act-order (a g_idx other than row / group_size), a zero point of 16 (checkpoint_format
// "gptq" stores z - 1; a stored 15 is a zero point the 4-bit packed layout cannot hold), fp8
// block scales. The dtype and shape checks are the dequantizers'.
cpu::quantized_matrix quantized_awq_codes(const stored_tensor& qweight, const stored_tensor& qzeros,
                                          const stored_tensor& scales, int group_size,
                                          const std::string& source);
cpu::quantized_matrix quantized_gptq_codes(const stored_tensor& qweight,
                                           const stored_tensor& qzeros,
                                           const stored_tensor& scales,
                                           const stored_tensor* g_idx, int group_size,
                                           gptq_zero_format zeros, const std::string& source);
cpu::quantized_matrix quantized_hf_fp8_codes(const stored_tensor& weight,
                                             const stored_tensor& scale,
                                             std::optional<std::array<int, 2>> block,
                                             const std::string& source);
// read_quantized_linear's tensors as codes (the three above).
cpu::quantized_matrix read_quantized_linear_codes(safetensors_reader& r, const std::string& prefix,
                                                  const quantization_config& q);

}  // namespace ridgeline
