// Rotary-embedding pieces shared by rope.cu (rope, qkv_rope_append) and attention_decode.cu (the
// decode kernel's fused prologue), so that every kernel rotating q or k produces the same bits:
// the per-token table (inv_freq and sincos in double, rounded to fp32 once) and the rotation
// (fp32, one explicit fma per output, one bf16 rounding).
#pragma once

#include <cuda_bf16.h>

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cuda::detail {

inline constexpr int k_rope_max_head_dim = 1024;

struct rope_args {
  __nv_bfloat16* q;
  __nv_bfloat16* k;
  const std::int32_t* positions;
  int num_q_heads, num_kv_heads, head_dim;
  double theta;
  bool llama3;
  double factor, low_freq_factor, high_freq_factor, original_max_position;
  const float* table;  // rope_params::table: [position][cos, sin][head_dim / 2], or null
  int table_positions;
};

// Validates the rope fields of p (counts, head_dim, theta, Llama 3 scaling) and builds the kernel
// arguments; throws std::invalid_argument naming `who` and the offending values. In rope.cu.
rope_args make_rope_args(const rope_params& p, const char* who);

#ifdef __CUDACC__
// theta^(-2i/d), with the Llama 3.1 frequency rescaling when enabled; in double.
__device__ inline double rope_inv_freq(const rope_args& a, int i) {
  const double f = pow(a.theta, -2.0 * i / a.head_dim);
  if (!a.llama3) return f;
  const double wavelen = 2.0 * 3.141592653589793238 / f;
  const double high_freq_wavelen = a.original_max_position / a.high_freq_factor;
  const double low_freq_wavelen = a.original_max_position / a.low_freq_factor;
  if (wavelen < high_freq_wavelen) return f;
  if (wavelen > low_freq_wavelen) return f / a.factor;
  const double smooth = (a.original_max_position / wavelen - a.low_freq_factor) /
                        (a.high_freq_factor - a.low_freq_factor);
  return (1.0 - smooth) * f / a.factor + smooth * f;
}

// cos and sin of pos * inv_freq(i), i in [0, head_dim / 2), rounded to fp32 once.
__device__ inline void rope_angle(const rope_args& a, int pos, int i, float& c, float& s) {
  double sn, cs;
  sincos(static_cast<double>(pos) * rope_inv_freq(a, i), &sn, &cs);
  c = static_cast<float>(cs);
  s = static_cast<float>(sn);
}

// A position's cos and sin, i in [0, head_dim / 2), into the two shared tables, by the threads of a
// block (stride blockDim.x): copied from the prebuilt table when it covers pos, else computed. The
// caller synchronizes before reading them.
__device__ inline void rope_table(const rope_args& a, int pos, float* cos_t, float* sin_t) {
  const int half = a.head_dim / 2;
  if (a.table && pos >= 0 && pos < a.table_positions) {
    const float* row = a.table + static_cast<std::int64_t>(pos) * a.head_dim;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      cos_t[i] = __ldg(row + i);
      sin_t[i] = __ldg(row + half + i);
    }
    return;
  }
  for (int i = threadIdx.x; i < half; i += blockDim.x) rope_angle(a, pos, i, cos_t[i], sin_t[i]);
}

// The rotated pair before rounding: (a c - b s, b c + a s). The fma is written out so that the
// result does not depend on how a kernel's compiler contracts the expression.
__device__ __forceinline__ float rope_first(float a, float b, float c, float s) {
  return __fmaf_rn(a, c, -__fmul_rn(b, s));
}
__device__ __forceinline__ float rope_second(float a, float b, float c, float s) {
  return __fmaf_rn(b, c, __fmul_rn(a, s));
}

// (x1, x2) <- (x1 c - x2 s, x2 c + x1 s), rounded to bf16 once each.
__device__ __forceinline__ void rope_rotate(__nv_bfloat16& x1, __nv_bfloat16& x2, float c,
                                            float s) {
  const float a = __bfloat162float(x1), b = __bfloat162float(x2);
  x1 = __float2bfloat16_rn(rope_first(a, b, c, s));
  x2 = __float2bfloat16_rn(rope_second(a, b, c, s));
}
#endif

}  // namespace ridgeline::cuda::detail
