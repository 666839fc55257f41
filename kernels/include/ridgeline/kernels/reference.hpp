// Naive CPU references of the decoder ops in ops.hpp (embedding, rms_norm, rope, swiglu,
// sampling), written from the math with double accumulation; the CUDA kernels (kernels/cuda/*.cu)
// are tested against them element by element. Host memory only; no CUDA types.
#pragma once

#include <cstdint>

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cpu {

void embedding(const embedding_params& p);
void scatter_tokens(const scatter_tokens_params& p);
void rms_norm(const rms_norm_params& p);
void rope(const rope_params& p);
// gather_rows of the three QKV windows, rope, kv_append (ops.hpp, qkv_rope_append_params).
void qkv_rope_append(const qkv_rope_append_params& p);
void swiglu(const swiglu_params& p);

// Sampling, defined exactly so that the CPU and the GPU pick the same token (kernels/cuda/
// sampling.cu implements the same steps):
//   greedy (temperature == 0): argmax of the raw logits, lowest id on ties; no penalty (ops.hpp).
//   otherwise, per row:
//     1. z = logit; for each distinct id in the row's prev_tokens (ids outside [0, vocab) are
//        ignored): z = z > 0 ? z / penalty : z * penalty                      (fp32 operations)
//     2. s = z / temperature (fp32 division); -0 becomes +0
//     3. order: s descending, then id ascending (a total order)
//     4. integer weights w = round_half_even(exp(double(s) - double(s_max)) * 2^42): exact sums in
//        any order, so both sides cut and draw identically; tokens below ~1e-13 of the top token
//        get weight 0 (never drawn); s == s_max weighs exactly 2^42
//     5. top-k (0 < k < vocab): keep the first k of the order
//     6. top-p (< 1): T = sum of kept weights; keep the shortest prefix whose inclusive weight sum
//        c_j >= clamp(ceil(double(top_p) * double(T)), 1, T)
//     7. u = sampling_uniform(seed, step) in [0, 1); C = weight of the kept set;
//        target = min(floor(u * double(C)), C - 1); the token is the first j with c_j > target.
//   top logprobs (independent of 1-7): the top_logprobs ids by raw logit (descending, lowest id
//   on ties) and log_softmax of the raw logits at those ids; with out_sampled_logprobs, also
//   log_softmax of the raw logits at the sampled token (whatever the penalty, temperature, top-k
//   or top-p that chose it).
void sampling(const sampling_params& p);

// The counter-based uniform of step 7 (splitmix64 finalizers of seed and step; 53 bits).
double sampling_uniform(std::uint64_t seed, std::uint64_t step);
// The integer weight of step 4.
std::uint64_t sampling_weight(float s, float s_max);

}  // namespace ridgeline::cpu
