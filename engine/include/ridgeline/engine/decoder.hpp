// The Llama-family decoder forward pass, written once over a backend: the CPU executor runs it with
// the naive references (kernels/cpu), the CUDA executor with the GPU launchers, so both compute the
// same ops in the same order on the same layout. No CUDA types: a backend is any type with
//   embedding, rms_norm, linear, gather_rows, rope, kv_append, attention, swiglu, sampling
// taking the parameter views of kernels/include/ridgeline/kernels/ops.hpp,
//   qkv_rope_append     (the attention prologue: split, rope, cache append),
//   rope_append_attention(qkv_rope_append, attention)   (the two in turn: a backend may fuse them),
//   linear_swiglu(linear, swiglu)   (gate_up then SwiGLU: a backend may fuse them), plus
//   range_push(const char*), range_pop()   (profiler ranges; may do nothing).
// A backend that runs quantized weights (the CUDA executor) also has
//   quant_linear(linear, packed_quant_view), quant_linear_swiglu(linear, packed_quant_view, swiglu)
// which the forward pass calls for a linear layer whose packed weights are set in layer_weights
// (linear_params::w is then null); a backend without them refuses such weights.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/step_buffers.hpp"
#include "ridgeline/kernels/ops.hpp"
#include "ridgeline/kernels/quant_packed.hpp"

namespace ridgeline {

struct decoder_config {
  model_preset model;
  float rms_eps = 1e-5f;
  rope_params rope;  // theta and scaling; pointers and counts are filled per step
  int block_tokens = 16;
};

// RoPE and norm settings of a preset (Llama 3: theta 500000 with Llama 3.1 scaling).
decoder_config make_decoder_config(const model_preset& m, int block_tokens = 16);

struct layer_weights {
  const bf16_bits* attn_norm = nullptr;  // [hidden]
  const bf16_bits* qkv = nullptr;        // [(heads + 2 kv_heads) head_dim][hidden]
  const bf16_bits* o = nullptr;          // [hidden][heads head_dim]
  const bf16_bits* mlp_norm = nullptr;   // [hidden]
  const bf16_bits* gate_up = nullptr;    // [2 intermediate][hidden]
  const bf16_bits* down = nullptr;       // [hidden][intermediate]
  // Quantized weights (engine_options::weights; the CUDA executor): each linear's packed matrix
  // (device pointers), used instead of the bf16 pointer above, which is then null; null: bf16.
  const packed_quant_view* qkv_packed = nullptr;
  const packed_quant_view* o_packed = nullptr;
  const packed_quant_view* gate_up_packed = nullptr;
  const packed_quant_view* down_packed = nullptr;
};

struct decoder_weights {
  const bf16_bits* embedding = nullptr;   // [vocab][hidden]
  std::vector<layer_weights> layers;
  const bf16_bits* final_norm = nullptr;  // [hidden]
  const bf16_bits* lm_head = nullptr;     // [vocab][hidden]
};

// Element counts of every weight tensor, in the order init and load visit them.
struct weight_tensor {
  std::string name;
  std::int64_t elements = 0;
  int rows = 0, cols = 0;  // [rows][cols]; norms are [1][hidden]
  bool norm = false;
};
std::vector<weight_tensor> weight_tensors(const model_preset& m);
// The decoder's view of its weights, from one pointer per tensor of weight_tensors(m), in order.
decoder_weights bind_weights(const model_preset& m, std::span<const bf16_bits* const> tensors);
// Elements of every weight tensor together (the size of a concatenated weight vector).
std::int64_t total_weight_elements(const model_preset& m);
// Where each tensor of weight_tensors(m) starts in one allocation when every tensor starts at a
// multiple of align_elements: [tensors + 1] element offsets, the last one the allocation's size.
std::vector<std::int64_t> weight_offsets(const model_preset& m, std::int64_t align_elements);
// One pointer per tensor into an allocation laid out by weight_offsets(m, align_elements).
std::vector<const bf16_bits*> tensor_pointers(const model_preset& m, const bf16_bits* base,
                                              std::int64_t align_elements);

// The KV cache: one pool per layer, [num_blocks][2][kv_heads][block_tokens][head_dim] each.
struct kv_pool_view {
  bf16_bits* data = nullptr;
  int num_blocks = 0;
  std::int64_t layer_stride = 0;  // elements between layers' pools
};
std::int64_t kv_layer_elements(const model_preset& m, int num_blocks, int block_tokens);

// Scratch for one step of up to max_tokens tokens and max_seqs sequences, sized by
// step_buffer_elements (perfmodel/step_buffers.hpp); xs may share q's space.
struct step_buffers {
  bf16_bits *residual, *xn, *qkv, *q, *attn, *out, *mlp, *act, *xs;
  float* logits;          // [max_seqs][vocab]
  float* workspace;       // attention scratch
  std::int64_t workspace_bytes;
  std::int32_t* split_counters;  // [max_seqs][kv_heads], zeroed once (attention_params)
};

// Where every step buffer starts in one scratch allocation: byte offsets, each a multiple of 256,
// in the order residual, xn, out, qkv, q, attn, mlp, act, xs (at q's offset when
// sizes.xs_in_q), logits, attention workspace, split counters. `bytes` is the allocation: the
// buffers plus 4096 bytes for the rounding. Both executors carve their scratch from it.
struct step_scratch_layout {
  step_buffer_sizes sizes;
  std::int64_t workspace_bytes = 0, split_counter_bytes = 0;
  std::int64_t residual = 0, xn = 0, out = 0, qkv = 0, q = 0, attn = 0, mlp = 0, act = 0, xs = 0,
               logits = 0, workspace = 0, split_counters = 0;
  std::int64_t bytes = 0;
};
step_scratch_layout step_scratch_of(const step_buffer_sizes& sizes, std::int64_t workspace_bytes,
                                    std::int64_t split_counter_bytes);
// The buffers of an allocation of l.bytes at `base` (the workspace and split counters are null
// when they have no bytes).
step_buffers carve_step_buffers(unsigned char* base, const step_scratch_layout& l);

// One step's inputs in the backend's memory.
struct step_inputs {
  int num_tokens = 0, num_seqs = 0;
  const std::int32_t* ids = nullptr;           // [num_tokens]
  const std::int32_t* positions = nullptr;     // [num_tokens]
  const std::int32_t* slot_mapping = nullptr;  // [num_tokens]
  const std::int32_t* q_offsets = nullptr;     // [num_seqs + 1]
  const std::int32_t* seq_lens = nullptr;      // [num_seqs]
  const std::int32_t* block_tables = nullptr;  // [num_seqs][max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  int split_tokens = 0;  // attention split size (0: launcher's choice)
  bool prefill_kernel_only = false;  // attention_params::prefill_kernel_only (deterministic mode)
  int num_samples = 0;                          // rows that get logits and a token
  const std::int32_t* sample_rows = nullptr;    // [num_samples] token rows
  const sampling_row* sampling = nullptr;       // [num_samples]
  const std::int32_t* prev_tokens = nullptr;    // repetition-penalty history
  const std::int32_t* prev_offsets = nullptr;   // [num_samples + 1]
  std::int32_t* out_tokens = nullptr;           // [num_samples]
  float* out_logprobs = nullptr;                // [num_samples][top_logprobs] or null
  std::int32_t* out_top_ids = nullptr;
  int top_logprobs = 0;
  float* out_sampled_logprobs = nullptr;        // [num_samples] or null
};

namespace detail {

// A linear layer with bf16 or packed weights (layer_weights' *_packed).
template <class Backend>
void run_linear(Backend& b, const linear_params& p, const packed_quant_view* packed) {
  if (!packed) return b.linear(p);
  if constexpr (requires { b.quant_linear(p, *packed); }) {
    b.quant_linear(p, *packed);
  } else {
    throw std::invalid_argument("this executor runs bf16 weights only (quantized weights: cuda)");
  }
}
template <class Backend>
void run_linear_swiglu(Backend& b, const linear_params& p, const packed_quant_view* packed,
                       const swiglu_params& act) {
  if (!packed) return b.linear_swiglu(p, act);
  if constexpr (requires { b.quant_linear_swiglu(p, *packed, act); }) {
    b.quant_linear_swiglu(p, *packed, act);
  } else {
    throw std::invalid_argument("this executor runs bf16 weights only (quantized weights: cuda)");
  }
}

}  // namespace detail

template <class Backend>
void decoder_forward(Backend& b, const decoder_config& c, const decoder_weights& w,
                     const kv_pool_view& kv, const step_buffers& buf, const step_inputs& in) {
  const model_preset& m = c.model;
  const int T = in.num_tokens, H = m.hidden, nq = m.heads, nkv = m.kv_heads, d = m.head_dim;
  const int I = m.intermediate, qkv_cols = (nq + 2 * nkv) * d;
  b.range_push("embedding");
  b.embedding({in.ids, w.embedding, buf.residual, T, H, m.vocab});
  b.range_pop();
  const bf16_bits* norm_in = buf.residual;
  bf16_bits* residual = nullptr;  // layer 0's norm reads the embedding, which is the residual
  for (int l = 0; l < m.layers; ++l) {
    const layer_weights& lw = w.layers[static_cast<std::size_t>(l)];
    paged_kv_view view{kv.data + l * kv.layer_stride, kv.num_blocks, c.block_tokens, nkv, d,
                       in.block_tables, in.max_blocks_per_seq, in.seq_lens, in.num_seqs};
    b.range_push("attention_block");
    b.rms_norm({norm_in, residual, lw.attn_norm, buf.xn, T, H, c.rms_eps});
    detail::run_linear(b, {buf.xn, lw.qkv, buf.qkv, false, T, H, qkv_cols}, lw.qkv_packed);
    qkv_rope_append_params pre;
    pre.qkv = buf.qkv;
    pre.q = buf.q;
    pre.rope = c.rope;
    pre.rope.positions = in.positions;
    pre.rope.num_tokens = T;
    pre.rope.num_q_heads = nq;
    pre.rope.num_kv_heads = nkv;
    pre.rope.head_dim = d;
    pre.slot_mapping = in.slot_mapping;
    pre.kv = view;
    attention_params att{buf.q,           buf.attn,
                         in.q_offsets,    T,
                         nq,              1.0f / std::sqrt(static_cast<float>(d)),
                         view,            in.split_tokens,
                         buf.workspace,   buf.workspace_bytes,
                         buf.split_counters, in.prefill_kernel_only};
    b.rope_append_attention(pre, att);
    detail::run_linear(b, {buf.attn, lw.o, buf.out, false, T, nq * d, H}, lw.o_packed);
    b.range_pop();
    b.range_push("mlp");
    b.rms_norm({buf.out, buf.residual, lw.mlp_norm, buf.xn, T, H, c.rms_eps});
    detail::run_linear_swiglu(b, {buf.xn, lw.gate_up, buf.mlp, false, T, H, 2 * I},
                              lw.gate_up_packed, {buf.mlp, buf.act, T, I});
    detail::run_linear(b, {buf.act, lw.down, buf.out, false, T, I, H}, lw.down_packed);
    b.range_pop();
    norm_in = buf.out;
    residual = buf.residual;
  }
  b.range_push("sampling");
  b.rms_norm({norm_in, residual, w.final_norm, buf.xn, T, H, c.rms_eps});
  if (in.num_samples > 0) {
    b.gather_rows({buf.xn, H, 0, in.sample_rows, buf.xs, in.num_samples, H});
    b.linear({buf.xs, w.lm_head, buf.logits, true, in.num_samples, H, m.vocab});
    sampling_params sp;
    sp.logits = buf.logits;
    sp.num_rows = in.num_samples;
    sp.vocab = m.vocab;
    sp.rows = in.sampling;
    sp.prev_tokens = in.prev_tokens;
    sp.prev_offsets = in.prev_offsets;
    sp.out_tokens = in.out_tokens;
    sp.out_logprobs = in.out_logprobs;
    sp.out_top_ids = in.out_top_ids;
    sp.top_logprobs = in.top_logprobs;
    sp.out_sampled_logprobs = in.out_sampled_logprobs;
    b.sampling(sp);
  }
  b.range_pop();
}

}  // namespace ridgeline
