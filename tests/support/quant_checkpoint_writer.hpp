// Test writers of quantized safetensors checkpoints in the published layouts, from known integer
// codes, independently of engine/quant_checkpoint.cpp (their own packing loops, fp16 and e4m3
// decoders):
//   AWQ (AutoAWQ gemm): qweight int32 [in][out/8], nibble k of a word = output column
//     8p + AWQ_ORDER[k] with AWQ_ORDER = {0, 2, 4, 6, 1, 3, 5, 7}; qzeros int32 [in/G][out/8]
//     packed the same way; scales fp16 [in/G][out].
//   GPTQ: qweight int32 [in/8][out], nibble k of word [r][o] = input row 8r + k; qzeros int32
//     [groups][out/8], nibble k = output column 8p + k, holding z - 1 ("gptq", masked to 4 bits)
//     or z ("gptq_v2"); scales fp16 [groups][out]; g_idx int32 [in].
//   fp8: weight F8_E4M3 [out][in], scale F32 of any shape the caller gives.
// Each returns the tensors and the reference W[out][in] = scale * (q - z) (fp8: e4m3(q) * scale),
// computed with one float multiply per element.
//   write_safetensors(dir / "model.safetensors", tensors);
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline::test {

struct st_tensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

// A safetensors file: 8-byte little-endian header length, JSON header, data (8-byte aligned).
void write_safetensors(const std::filesystem::path& file, const std::vector<st_tensor>& tensors);

struct int4_case {
  int out = 0, in = 0, group_size = 128;
  std::vector<int> q;                 // [out][in], 0..15
  std::vector<int> z;                 // [out][groups], 0..15 (gptq v1: 1..15, see below)
  std::vector<std::uint16_t> scales;  // fp16 bits [groups][out]
  std::vector<int> g_idx;             // [in]: the group of each input row
  int groups = 0;
};
// Random codes, zero points and scales; act_order shuffles which group each input row is in
// (each group keeps group_size rows). GPTQ "gptq" cannot store a zero point of 0 (z - 1 = -1
// reads back as 16), so min_zero = 1 for that format.
int4_case make_int4_case(int out, int in, int group_size, bool act_order, std::uint32_t seed,
                         int min_zero = 0);
std::vector<float> int4_reference(const int4_case& c);  // [out][in]

// prefix + ".qweight", ".qzeros", ".scales".
std::vector<st_tensor> pack_awq(const int4_case& c, const std::string& prefix);
// prefix + ".qweight", ".qzeros", ".scales" and, with_g_idx, ".g_idx". v2: zeros stored as is.
std::vector<st_tensor> pack_gptq(const int4_case& c, const std::string& prefix, bool with_g_idx,
                                 bool v2);

// The writer's own OCP E4M3 decoder (bias 7, subnormals m * 2^-9, 0x7f/0xff NaN).
float e4m3_value(std::uint8_t code);

struct fp8_case {
  int out = 0, in = 0;
  std::vector<std::uint8_t> codes;  // [out][in], never NaN
  std::vector<float> scales;        // as stored
  std::vector<std::int64_t> scale_shape;
  int block_rows = 0, block_cols = 0;  // the scale of element [r][c]: see fp8_reference
};
// kind: "tensor" (scale shape [] ), "tensor1" ([1]), "channel" ([out]), "channel2" ([out, 1]),
// "block" ([ceil(out/br)][ceil(in/bc)]).
fp8_case make_fp8_case(int out, int in, const std::string& kind, std::uint32_t seed, int br = 128,
                       int bc = 128);
std::vector<float> fp8_reference(const fp8_case& c);
// prefix + ".weight" (F8_E4M3) and prefix + scale_name (F32).
std::vector<st_tensor> pack_fp8(const fp8_case& c, const std::string& prefix,
                                const std::string& scale_name = ".weight_scale");

std::vector<std::uint8_t> as_bytes_u16(const std::vector<std::uint16_t>& v);
std::vector<std::uint8_t> as_bytes_i32(const std::vector<std::int32_t>& v);
std::vector<std::uint8_t> as_bytes_f32(const std::vector<float>& v);

// The Hugging Face tensors (name without ".weight" for the block linears, shape [out][in]) that the
// engine's weight tensor `engine_name` of `m` is stored as ("embedding", "final_norm", "lm_head",
// "layers.N.attn_norm", ".mlp_norm", ".qkv" -> q/k/v_proj, ".o", ".gate_up" -> gate/up_proj,
// ".down"); empty for a name it does not know.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> hf_tensor_parts(
    const std::string& engine_name, const model_preset& m);

}  // namespace ridgeline::test
