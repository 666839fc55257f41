// Naive CPU references of the attention path (kv_append, paged causal attention), written from
// the math with double accumulation. They read and write the same paged layout through the same
// views (ops.hpp) as the CUDA launchers in kernels/cuda/attention.hpp; the GPU tests compare
// against them.
#pragma once

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cpu {

// kv.data[slot of token t] = k[t], v[t] for every t with slot_mapping[t] >= 0; bit-exact copy.
void kv_append(const kv_append_params& p);

// Causal attention over the paged cache (semantics in ops.hpp; split_tokens and the workspace are
// ignored: the reference never splits). Writes p.out rounded to bf16 (round to nearest even); when
// exact is non-null it also receives the unrounded result, [num_q_tokens][num_q_heads][head_dim].
void attention(const attention_params& p, double* exact = nullptr);

}  // namespace ridgeline::cpu
