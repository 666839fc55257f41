// Parameter views of the decoder's ops, shared by the CPU references (kernels/cpu) and the CUDA
// launchers (kernels/cuda): one struct per op describes the memory both sides read and write, so
// the two cannot disagree about shapes, strides or epsilon. Non-owning; no CUDA types. A few
// fields only steer the GPU launchers (rope_params::table, attention_params' split_tokens,
// workspace and split_counters; each says so): the references ignore them.
//
// Storage: activations, weights and the KV cache are bf16 (held here as their 16-bit patterns,
// `bf16_bits`); accumulation is fp32 on the GPU and at least fp32 in the references. A "ragged
// batch" packs the tokens of several sequences back to back: [num_tokens][...] with per-sequence
// offsets where an op needs them.
#pragma once

#include <cstdint>

namespace ridgeline {

using bf16_bits = std::uint16_t;

// out[t][:] = table[ids[t]][:]. ids must be in [0, vocab) (the engine validates before launch).
struct embedding_params {
  const std::int32_t* ids = nullptr;  // [num_tokens]
  const bf16_bits* table = nullptr;   // [vocab][hidden]
  bf16_bits* out = nullptr;           // [num_tokens][hidden]
  int num_tokens = 0, hidden = 0, vocab = 0;
};

// RMSNorm fused with the residual add (pre-norm decoder):
//   if residual: residual[t] += input[t]  (in place; bf16 rounding of the sum), r = residual[t]
//   else:        r = input[t]
//   out[t][i] = bf16(r[i] * rsqrt(mean(r^2) + eps) * weight[i])   (mean over hidden, in fp32)
struct rms_norm_params {
  const bf16_bits* input = nullptr;  // [num_tokens][hidden]
  bf16_bits* residual = nullptr;     // [num_tokens][hidden] or null
  const bf16_bits* weight = nullptr;  // [hidden]
  bf16_bits* out = nullptr;          // [num_tokens][hidden]; may alias input
  int num_tokens = 0, hidden = 0;
  float eps = 1e-5f;
};

// Rotary position embedding, rotate-half ("neox") convention as in Hugging Face Llama, in place on
// q and k. Frequencies inv_freq[i] = theta^(-2i/head_dim), i < head_dim/2; with llama3_scaling,
// Llama 3.1's piecewise rescaling of long wavelengths (factor, low/high frequency factors,
// original context length).
struct rope_params {
  bf16_bits* q = nullptr;                   // [num_tokens][num_q_heads][head_dim]
  bf16_bits* k = nullptr;                   // [num_tokens][num_kv_heads][head_dim]
  const std::int32_t* positions = nullptr;  // [num_tokens]
  int num_tokens = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  float theta = 10000.0f;
  bool llama3_scaling = false;
  float scaling_factor = 8.0f, low_freq_factor = 1.0f, high_freq_factor = 4.0f;
  int original_max_position = 8192;
  // GPU only, optional: the cos/sin table of these settings for positions [0, table_positions),
  // [position][cos: head_dim / 2, sin: head_dim / 2] floats, built by cuda::rope_table_build.
  // Kernels read it instead of computing double sincos per token (the same bits); positions past
  // its end are computed. CPU references ignore it.
  const float* table = nullptr;
  int table_positions = 0;
};

// SwiGLU of the fused gate/up projection: out[t][i] = silu(gu[t][i]) * gu[t][inter + i].
struct swiglu_params {
  const bf16_bits* gate_up = nullptr;  // [num_tokens][2 * intermediate]
  bf16_bits* out = nullptr;            // [num_tokens][intermediate]
  int num_tokens = 0, intermediate = 0;
};

// The paged KV cache of one layer. Block b holds block_size token slots:
//   data[b][0 = K, 1 = V][kv_head][slot][head_dim]
// A token's slot is block_tables[seq][pos / block_size] * block_size + pos % block_size.
struct paged_kv_view {
  bf16_bits* data = nullptr;  // [num_blocks][2][num_kv_heads][block_size][head_dim]
  int num_blocks = 0, block_size = 16, num_kv_heads = 0, head_dim = 0;
  const std::int32_t* block_tables = nullptr;  // [num_seqs][max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  const std::int32_t* seq_lens = nullptr;  // [num_seqs] tokens in the cache, new ones included
  int num_seqs = 0;
};

// Writes new K and V into their slots: slot_mapping[t] = block * block_size + offset (-1 skips).
struct kv_append_params {
  const bf16_bits* k = nullptr;                // [num_tokens][num_kv_heads][head_dim]
  const bf16_bits* v = nullptr;                // [num_tokens][num_kv_heads][head_dim]
  const std::int32_t* slot_mapping = nullptr;  // [num_tokens]
  int num_tokens = 0;
  paged_kv_view kv;
};

// Attention of a ragged batch of query tokens over the paged cache, causal. Sequence s owns query
// rows [q_offsets[s], q_offsets[s + 1]); its n_s = q_offsets[s+1] - q_offsets[s] queries are its
// last n_s positions, so query i of s sits at position seq_lens[s] - n_s + i and attends to
// positions 0 ... that position. Decode is the case n_s = 1 for every s; chunked prefill is any n_s.
// Head h of the query uses KV head h / (num_q_heads / num_kv_heads) (grouped-query attention).
//   out = softmax(q . K^T * scale) . V, fp32 softmax and accumulation.
// split_tokens > 0 splits each sequence's context into chunks of that many tokens (a fixed split
// size, so results do not depend on the batch), reduced with their log-sum-exp; 0 lets the
// launcher choose. workspace: float scratch for the partial results (see the launcher). GPU only:
// the CPU reference computes the unsplit softmax and ignores these three fields.
struct attention_params {
  const bf16_bits* q = nullptr;             // [num_q_tokens][num_q_heads][head_dim]
  bf16_bits* out = nullptr;                 // [num_q_tokens][num_q_heads][head_dim]
  const std::int32_t* q_offsets = nullptr;  // [num_seqs + 1]
  int num_q_tokens = 0, num_q_heads = 0;
  float scale = 0;  // usually 1 / sqrt(head_dim)
  paged_kv_view kv;
  int split_tokens = 0;
  float* workspace = nullptr;
  std::int64_t workspace_bytes = 0;
  // Split decode (GPU): [num_seqs][num_kv_heads] ints, zero before the first call; each call
  // counts the splits of a (sequence, kv head) that are done and leaves them zero again.
  std::int32_t* split_counters = nullptr;
  // GPU: every sequence through the prefill kernel, decode steps included. A position's output
  // then does not depend on whether it was computed as a decode token, inside a prefill chunk or
  // recomputed after preemption (the engine's deterministic mode); slower for decode.
  bool prefill_kernel_only = false;
};

// Sampling of one next token per row of logits. temperature == 0 is greedy (lowest id wins ties).
// Otherwise: repetition penalty over the row's previous tokens (divide positive logits, multiply
// negative ones, as in Hugging Face), / temperature, top-k, top-p (smallest set with cumulative
// probability >= top_p), then a draw from a counter-based generator keyed by (seed, step), so the
// same request samples the same token whatever else is in the batch.
struct sampling_row {
  float temperature = 0;
  int top_k = 0;      // 0 = off
  float top_p = 1.0f;  // 1 = off
  float repetition_penalty = 1.0f;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
};

// Most top-logprob slots per row (the CUDA launcher's limit; executors and serve check it).
inline constexpr int k_sampling_max_top_logprobs = 64;

struct sampling_params {
  const float* logits = nullptr;  // [num_rows][vocab], fp32
  int num_rows = 0, vocab = 0;
  const sampling_row* rows = nullptr;               // [num_rows]
  const std::int32_t* prev_tokens = nullptr;        // [prev_offsets[num_rows]] tokens seen so far
  const std::int32_t* prev_offsets = nullptr;       // [num_rows + 1]
  std::int32_t* out_tokens = nullptr;               // [num_rows]
  float* out_logprobs = nullptr;  // [num_rows][top_logprobs] log-softmax of the raw logits, or null
  std::int32_t* out_top_ids = nullptr;  // [num_rows][top_logprobs] ids by descending logit, or null
  int top_logprobs = 0;
  // [num_rows] log-softmax of the raw logits at the sampled token, or null; written only when
  // top_logprobs > 0 (the same log-sum-exp as out_logprobs, so a sampled token that is also in
  // the top list has the same value there).
  float* out_sampled_logprobs = nullptr;
};

}  // namespace ridgeline

namespace ridgeline {

// A linear layer on a ragged batch: y[t][o] = sum_i x[t][i] * w[o][i]  (PyTorch's F.linear, no
// bias), fp32 accumulation, y in bf16 or fp32 (logits). in_features must be a multiple of 8 and
// x, w 16-byte aligned (the GPU reads 8 bf16 at a time).
struct linear_params {
  const bf16_bits* x = nullptr;  // [num_tokens][in_features]
  const bf16_bits* w = nullptr;  // [out_features][in_features]
  void* y = nullptr;             // [num_tokens][out_features], bf16 or fp32
  bool y_fp32 = false;
  int num_tokens = 0, in_features = 0, out_features = 0;
};

}  // namespace ridgeline

namespace ridgeline {

// Token ids from an earlier step's samples (a step launched before those were back on the host):
// ids[rows[i]] = samples[from[i]] for i < count.
struct scatter_tokens_params {
  const std::int32_t* samples = nullptr;  // the earlier step's sampled ids
  const std::int32_t* from = nullptr;     // [count] index into samples
  const std::int32_t* rows = nullptr;     // [count] row of ids
  std::int32_t* ids = nullptr;
  int count = 0;
};

// Row gather with column window: dst[r][c] = src[rows ? rows[r] : r][src_col + c], c < cols.
// Splits the fused QKV projection into Q, K and V, and picks the rows the LM head needs.
struct gather_rows_params {
  const bf16_bits* src = nullptr;
  int src_stride = 0;  // elements between rows of src
  int src_col = 0;
  const std::int32_t* rows = nullptr;  // [num_rows] or null for the identity
  bf16_bits* dst = nullptr;            // [num_rows][cols], contiguous
  int num_rows = 0, cols = 0;
};

}  // namespace ridgeline

namespace ridgeline {

// The attention block's prologue in one op: split the fused QKV projection, rotate q and k
// (rope_params semantics; its q, k pointers are unused), write q contiguously and K, V into their
// cache slots (kv_append semantics; slot -1 skips). Equal, element for element, to gather_rows of
// the three windows, then rope, then kv_append.
struct qkv_rope_append_params {
  const bf16_bits* qkv = nullptr;  // [num_tokens][(num_q_heads + 2 num_kv_heads) head_dim]
  bf16_bits* q = nullptr;          // [num_tokens][num_q_heads][head_dim]
  rope_params rope;                // positions, counts, theta, scaling
  const std::int32_t* slot_mapping = nullptr;  // [num_tokens]
  paged_kv_view kv;
};

}  // namespace ridgeline
