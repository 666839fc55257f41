// Quantized linear layers for decode batches (1 ... k_quant_gemv_max_tokens tokens): y = x W^T
// with W packed at load time (ridgeline/kernels/quant_pack.hpp) in one of the kinds of
// quant_packed.hpp (int4 groups with zero points, int8 groups, int8 or fp8 e4m3 per output
// channel), bf16 activations, fp32 accumulation, bf16 (or fp32) output. Weight-streaming kernel on
// mma.sync tensor cores (quant_gemv.cu); compute capability 8.0+ (built for 9.0 here).
// More tokens: the engine's linear_runner::run_quant runs this kernel on 64-token slices, or
// dequantizes to bf16 (quant_dequantize_bf16) and runs the bf16 GEMM (docs/kernels.md).
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <tuple>

#include "ridgeline/kernels/quant_packed.hpp"

namespace ridgeline::cuda {

inline constexpr int k_quant_gemv_max_tokens = 64;

struct quant_gemv_options {
  // Ring stages per warp (S - 1 chunks of 2 x 512 bytes in flight): 0 picks 8; 4 and 16 are
  // compiled for up to 8 tokens (tuning: half or twice the bytes in flight and shared memory).
  int stages = 0;
  // Persistent CTAs per SM: 0 picks 1 (leaves room on each SM for the next kernel's CTA to
  // start streaming under programmatic dependent launch); 2 doubles the bytes in flight.
  int ctas_per_sm = 0;
  // Programmatic dependent launch: the weights of the first stages stream before the previous
  // kernel on the stream has finished (Hopper+); the activations are read after it.
  bool pdl = false;
};

// The launch quant_gemv makes for p's shape on the current device.
struct quant_gemv_config {
  int tokens_per_mma = 0;  // 8, 16, 32 or 64: the token columns each mma covers (>= num_tokens)
  int rows_per_unit = 0;   // rows the 8 warps of a CTA share (each a slice of the columns)
  int stages = 0;
  int ctas = 0;
  int units_per_cta = 0;  // row units a persistent CTA walks, one after the other
  int smem_bytes = 0;
};

// Per (device, kind, token tile, stages): the kernel configured (shared memory, carveout) and the
// SM count and CTAs per SM it gets, found on first use; later launches make no runtime queries.
// Owned by whoever runs the kernels (one owner, one thread), like skinny_gemm_plans.
class quant_gemv_plans {
 public:
  struct entry {
    int sms = 0;
    int resident = 0;  // CTAs of the variant that fit an SM
  };
  // Configures the variant on the current device the first time (call outside graph capture).
  const entry& get(packed_quant_kind kind, int tokens_per_mma, int stages);

 private:
  std::map<std::tuple<int, int, int, int>, entry> m_entries;  // (device, kind, nt, stages)
};

// Validates p and o (std::invalid_argument naming the values).
quant_gemv_config quant_gemv_plan(const quant_linear_params& p, quant_gemv_plans& plans,
                                  const quant_gemv_options& o = {});
// Validates p and o and launches on s. All pointers are device pointers: x and w.data 16-byte
// aligned, w.scales and w.zeros 8-byte aligned.
void quant_gemv(const quant_linear_params& p, quant_gemv_plans& plans, cudaStream_t s,
                const quant_gemv_options& o = {});

// W as bf16 [rows][cols] into out (device, 16-byte aligned): each weight's fp32 value scale * code
// (the reference's dequantized float) rounded to bf16 once, bit for bit
// cpu::dequantize_packed_bf16 (quant_pack.hpp). The prefill path of a quantized linear layer
// (linear_runner::run_quant, linear.hpp) dequantizes into scratch and runs the bf16 GEMM on it.
// Validates w and out (std::invalid_argument). Kernel: kernels/cuda/dequant.cu.
void quant_dequantize_bf16(const packed_quant_view& w, bf16_bits* out, cudaStream_t s);

}  // namespace ridgeline::cuda
