// CUDA launchers of the attention path: kv_append and paged causal attention (semantics in
// ridgeline/kernels/ops.hpp, references in attention_reference.hpp). All are asynchronous on the
// given stream; they validate the parameters and throw std::invalid_argument naming the offending
// values. CUDA-only header.
//
// attention() picks one of two kernels from host-visible shapes (it never reads device memory):
//  - decode, when num_q_tokens == num_seqs (every sequence has one query; see the precondition
//    below) and the group size num_q_heads / num_kv_heads is 1, 2, 4 or 8: one CTA per
//    (sequence, kv head, split) serves all query heads of the group, so K and V are read once;
//    splits are merged through their log-sum-exp by the last CTA of a (sequence, kv head) to
//    finish (counted in split_counters), in split order, so the bits do not depend on which.
//  - prefill otherwise (any n_s, any group size): tensor cores (mma.sync m16n8k16 bf16), one
//    CTA per (64-query tile, query head); never splits (each CTA owns its rows' whole context, so the
//    result cannot depend on the batch either).
// Splits (decode only): split_tokens > 0 is a fixed split size; every sequence then goes through
// the split + merge path, even with one split, so a sequence's output is bitwise identical whatever
// else is in the batch. split_tokens == 0: the launcher splits only when num_seqs * num_kv_heads
// CTAs would leave the GPU under-filled (fewer than 4 per SM), with a split size derived from the
// cache capacity max_blocks_per_seq * block_size, so the choice depends on the batch size.
//
// Preconditions the launchers cannot check (device memory): every sequence has n_s >= 1 query
// tokens and n_s <= seq_lens[s]; block-table entries of positions < seq_lens[s] are valid blocks;
// slot_mapping entries are -1 or valid slots. block_size must be a power of two.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cuda {

void kv_append(const kv_append_params& p, cudaStream_t stream);

// What attention() decides from (attention_params without pointers, the scale or the buffers).
struct attention_shape {
  int num_seqs = 0, num_q_tokens = 0, num_q_heads = 0;
  int num_kv_heads = 0, head_dim = 0, block_size = 16, max_blocks_per_seq = 0;
  int split_tokens = 0;  // attention_params::split_tokens: 0 automatic, > 0 fixed
  bool prefill_kernel_only = false;  // attention_params::prefill_kernel_only
};
attention_shape shape_of(const attention_params& p);

// How attention() runs a shape on the current device (the automatic split depends on its SM
// count): the kernel, the split, and the buffers the caller provides.
struct attention_plan {
  bool decode = false;               // the decode kernel (else prefill)
  int split_tokens = 0;              // tokens per split; 0: no split
  int max_splits = 0;                // splits per sequence when split
  std::int64_t workspace_bytes = 0;  // attention_params::workspace (floats); 0 when not split
  std::int64_t split_counters = 0;   // ints of attention_params::split_counters; 0 when not split
};
// From shapes alone (no pointers): size buffers with it before they exist. Throws
// std::invalid_argument for a shape attention() would reject.
attention_plan plan_attention(const attention_shape& s);

// plan_attention(shape_of(p)).workspace_bytes, after validating all of p (pointers included).
std::int64_t attention_workspace_bytes(const attention_params& p);

// pdl: the decode kernel is launched with programmatic dependent launch (see ops.hpp); prefill
// always launches normally.
void attention(const attention_params& p, cudaStream_t stream, bool pdl = false);

// qkv_rope_append(pre) then attention(p) (the decoder's attention block), as one decode kernel
// when p takes the decode path over the cache pre appends to (same data, heads, head_dim, block
// size; pre.q == p.q; pre.qkv 16-byte aligned): each CTA rotates its query heads straight from
// the QKV rows, and the CTA holding a sequence's last position appends that token's rotated K and
// V to the cache and uses them from shared memory. Same bits as the two calls, except that pre.q
// is not written. Extra precondition of the fused path: each sequence's query token is its last,
// at position seq_lens[s] - 1, with slot_mapping its slot (-1: already in the cache). Otherwise
// the two launchers run in turn.
bool rope_append_attention_fuses(const qkv_rope_append_params& pre, const attention_params& p);
void rope_append_attention(const qkv_rope_append_params& pre, const attention_params& p,
                           cudaStream_t stream, bool pdl = false);

}  // namespace ridgeline::cuda
