// CUDA launchers of the decoder ops (embedding, rms_norm, rope, swiglu, sampling); the parameter
// views are in ridgeline/kernels/ops.hpp and the CPU references they are tested against in
// ridgeline/kernels/reference.hpp. Launchers validate shapes and alignment (std::invalid_argument
// naming the offending values) and are asynchronous on the given stream; all pointers are device
// pointers.
//
// pdl: launch with programmatic dependent launch (Hopper+): the kernel may be scheduled while the
// previous kernel on the stream finishes; it waits for that kernel before reading its output.
// Off by default; the engine passes its engine_options::pdl (there is no process-wide switch).
#pragma once

#include <cuda_runtime_api.h>

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cuda {

// Largest vocabulary sampling accepts (its penalty bitmap lives in shared memory).
inline constexpr int k_sampling_max_vocab = 1 << 20;
// Most top-logprob slots per row.
inline constexpr int k_sampling_max_top_logprobs = ridgeline::k_sampling_max_top_logprobs;

void embedding(const embedding_params& p, cudaStream_t s, bool pdl = false);
// ids from an earlier step's samples (scatter_tokens_params); nothing to do when count is 0.
void scatter_tokens(const scatter_tokens_params& p, cudaStream_t s);
void rms_norm(const rms_norm_params& p, cudaStream_t s, bool pdl = false);
void rope(const rope_params& p, cudaStream_t s);
// Split of the QKV projection + rope + kv_append in one launch (qkv_rope_append_params).
void qkv_rope_append(const qkv_rope_append_params& p, cudaStream_t s, bool pdl = false);
// Fills table ([positions][head_dim] floats: cos then sin of each pair) for rope_params::table,
// with the same bits the kernels compute on the fly.
void rope_table_build(const rope_params& p, float* table, int positions, cudaStream_t s);
void swiglu(const swiglu_params& p, cudaStream_t s, bool pdl = false);
void sampling(const sampling_params& p, cudaStream_t s, bool pdl = false);

}  // namespace ridgeline::cuda
