// Internal to the attention launchers, shared by attention.cpp (planning, validation, dispatch),
// kv_append.cu, attention_decode.cu and attention_prefill.cu. Not for other callers: the public
// API is attention.hpp.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "attention.hpp"

namespace ridgeline::cuda::detail {

// Throws std::invalid_argument("attention: " + what).
[[noreturn]] void attention_invalid(const std::string& what);
int log2_int(int x);  // of a power of two
// The cache view (data, head_dim 64 or 128, heads, power-of-two block size, blocks); who names the
// caller in the message.
void validate_kv_cache(const paged_kv_view& kv, const char* who);
// Every field attention() reads that can be checked on the host (pointers, shapes, scale).
void validate_attention(const attention_params& p);
// The split workspace and counters plan needs, when it splits.
void check_split_buffers(const attention_params& p, const attention_plan& plan);

// The decode kernel for p (validated, split buffers checked, num_q_tokens > 0) as plan says
// (attention_decode.cu).
void launch_attention_decode(const attention_params& p, const attention_plan& plan,
                             cudaStream_t stream, bool pdl);
// The prefill kernel for p (validated, num_q_tokens > 0) (attention_prefill.cu).
void launch_attention_prefill(const attention_params& p, cudaStream_t stream);

}  // namespace ridgeline::cuda::detail
