// CPU reference of rotary position embedding, rotate-half convention (see ops.hpp): frequencies,
// Llama 3.1 rescaling, angles and the rotation all in double; each output rounded once to bf16.
#include <cmath>
#include <cstddef>
#include <numbers>
#include <vector>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/linear_reference.hpp"
#include "ridgeline/kernels/reference.hpp"

namespace ridgeline::cpu {
namespace {

double inv_freq(const rope_params& p, int i) {
  double f = std::pow(static_cast<double>(p.theta), -2.0 * i / p.head_dim);
  if (!p.llama3_scaling) return f;
  const double orig = p.original_max_position;
  const double wavelen = 2.0 * std::numbers::pi / f;
  const double high_freq_wavelen = orig / p.high_freq_factor;  // shorter: kept
  const double low_freq_wavelen = orig / p.low_freq_factor;    // longer: divided by factor
  if (wavelen < high_freq_wavelen) return f;
  if (wavelen > low_freq_wavelen) return f / p.scaling_factor;
  const double smooth =
      (orig / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
  return (1.0 - smooth) * f / p.scaling_factor + smooth * f;
}

void rotate(bf16_bits* x, int num_heads, int head_dim, const std::vector<double>& cos_a,
            const std::vector<double>& sin_a) {
  const int half = head_dim / 2;
  for (int h = 0; h < num_heads; ++h) {
    bf16_bits* v = x + static_cast<std::size_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const double x1 = bf16_to_float(v[i]);
      const double x2 = bf16_to_float(v[i + half]);
      v[i] = float_to_bf16(static_cast<float>(x1 * cos_a[i] - x2 * sin_a[i]));
      v[i + half] = float_to_bf16(static_cast<float>(x2 * cos_a[i] + x1 * sin_a[i]));
    }
  }
}

}  // namespace

void rope(const rope_params& p) {
  const int half = p.head_dim / 2;
  std::vector<double> cos_a(half), sin_a(half);
  for (int t = 0; t < p.num_tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = p.positions[t] * inv_freq(p, i);
      cos_a[i] = std::cos(angle);
      sin_a[i] = std::sin(angle);
    }
    const std::size_t tok = static_cast<std::size_t>(t);
    rotate(p.q + tok * p.num_q_heads * p.head_dim, p.num_q_heads, p.head_dim, cos_a, sin_a);
    rotate(p.k + tok * p.num_kv_heads * p.head_dim, p.num_kv_heads, p.head_dim, cos_a, sin_a);
  }
}

}  // namespace ridgeline::cpu

namespace ridgeline::cpu {

void qkv_rope_append(const qkv_rope_append_params& p) {
  const rope_params& r = p.rope;
  const int qc = r.num_q_heads * r.head_dim, kc = r.num_kv_heads * r.head_dim, stride = qc + 2 * kc;
  std::vector<bf16_bits> k(static_cast<std::size_t>(r.num_tokens) * kc), v(k.size());
  gather_rows({p.qkv, stride, 0, nullptr, p.q, r.num_tokens, qc});
  gather_rows({p.qkv, stride, qc, nullptr, k.data(), r.num_tokens, kc});
  gather_rows({p.qkv, stride, qc + kc, nullptr, v.data(), r.num_tokens, kc});
  rope_params rr = r;
  rr.q = p.q;
  rr.k = k.data();
  rope(rr);
  kv_append({k.data(), v.data(), p.slot_mapping, r.num_tokens, p.kv});
}

}  // namespace ridgeline::cpu
