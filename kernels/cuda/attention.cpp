// Host side of the attention launchers (see attention.hpp): the plan from shapes alone
// (plan_attention), validation, and the dispatch of attention() to the decode kernel
// (attention_decode.cu) or the prefill kernel (attention_prefill.cu).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attention.hpp"
#include "attention_internal.hpp"
#include "check.hpp"

namespace ridgeline::cuda {
namespace {

using detail::attention_invalid;

bool is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

int sm_count() {
  int dev = 0, n = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&dev));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

// Smallest automatic split. Measured on an H100, Llama-2-7B decode at batch 1, context 512: fixed
// splits of 32, 64, 128 and 256 tokens gave 5.22, 5.21, 5.23 and 5.33 ms per step.
constexpr int k_min_split_tokens = 64;

bool decode_group_supported(int group) {
  return group == 1 || group == 2 || group == 4 || group == 8;
}

void validate_cache_shape(int head_dim, int num_kv_heads, int block_size, const std::string& w) {
  if (head_dim != 64 && head_dim != 128) {
    attention_invalid(w + ": head_dim " + std::to_string(head_dim) + " is not 64 or 128");
  }
  if (num_kv_heads <= 0) attention_invalid(w + ": num_kv_heads " + std::to_string(num_kv_heads));
  if (!is_pow2(block_size)) {
    attention_invalid(w + ": block_size " + std::to_string(block_size) + " is not a power of two");
  }
}

void validate_shape(const attention_shape& s) {
  validate_cache_shape(s.head_dim, s.num_kv_heads, s.block_size, "attention");
  if (s.num_q_heads <= 0 || s.num_q_heads % s.num_kv_heads != 0) {
    attention_invalid("num_q_heads " + std::to_string(s.num_q_heads) +
                      " is not a positive multiple of num_kv_heads " +
                      std::to_string(s.num_kv_heads));
  }
  if (s.num_seqs <= 0) attention_invalid("num_seqs " + std::to_string(s.num_seqs));
  if (s.num_q_tokens < 0) attention_invalid("num_q_tokens " + std::to_string(s.num_q_tokens));
  if (s.max_blocks_per_seq <= 0) {
    attention_invalid("max_blocks_per_seq " + std::to_string(s.max_blocks_per_seq));
  }
  if (s.split_tokens < 0) attention_invalid("split_tokens " + std::to_string(s.split_tokens));
  if (s.num_kv_heads > 65535) attention_invalid("num_kv_heads " + std::to_string(s.num_kv_heads));
  if (s.num_q_heads > 65535) attention_invalid("num_q_heads " + std::to_string(s.num_q_heads));
}

}  // namespace

namespace detail {

void attention_invalid(const std::string& what) {
  throw std::invalid_argument("attention: " + what);
}

int log2_int(int x) {
  int r = 0;
  while ((1 << r) < x) ++r;
  return r;
}

void validate_kv_cache(const paged_kv_view& kv, const char* who) {
  const std::string w = who;
  if (!kv.data) attention_invalid(w + ": kv.data is null");
  if (!aligned16(kv.data)) attention_invalid(w + ": kv.data is not 16-byte aligned");
  validate_cache_shape(kv.head_dim, kv.num_kv_heads, kv.block_size, w);
  if (kv.num_blocks <= 0) attention_invalid(w + ": num_blocks " + std::to_string(kv.num_blocks));
}

void validate_attention(const attention_params& p) {
  const auto& kv = p.kv;
  validate_kv_cache(kv, "attention");
  if (!p.q || !p.out || !p.q_offsets || !kv.block_tables || !kv.seq_lens) {
    attention_invalid("null pointer among q, out, q_offsets, block_tables, seq_lens");
  }
  if (!aligned16(p.q) || !aligned16(p.out)) attention_invalid("q and out must be 16-byte aligned");
  validate_shape(shape_of(p));
  if (!(std::isfinite(p.scale) && p.scale > 0)) {
    attention_invalid("scale " + std::to_string(p.scale));
  }
}

void check_split_buffers(const attention_params& p, const attention_plan& plan) {
  if (plan.workspace_bytes == 0) return;
  if (!p.workspace || p.workspace_bytes < plan.workspace_bytes) {
    attention_invalid("workspace of " + std::to_string(p.workspace_bytes) + " bytes at " +
                      (p.workspace ? "non-null" : "null") + " pointer; this call needs " +
                      std::to_string(plan.workspace_bytes) + " (split_tokens " +
                      std::to_string(plan.split_tokens) + ", " +
                      std::to_string(plan.max_splits) + " splits per sequence)");
  }
  if (plan.max_splits > 65535) {
    attention_invalid("splits per sequence " + std::to_string(plan.max_splits));
  }
  if (!p.split_counters) {
    attention_invalid("null split_counters: this call splits (split_tokens " +
                      std::to_string(plan.split_tokens) +
                      ") and needs num_seqs x num_kv_heads zeroed ints");
  }
}

}  // namespace detail

attention_shape shape_of(const attention_params& p) {
  attention_shape s;
  s.num_seqs = p.kv.num_seqs;
  s.num_q_tokens = p.num_q_tokens;
  s.num_q_heads = p.num_q_heads;
  s.num_kv_heads = p.kv.num_kv_heads;
  s.head_dim = p.kv.head_dim;
  s.block_size = p.kv.block_size;
  s.max_blocks_per_seq = p.kv.max_blocks_per_seq;
  s.split_tokens = p.split_tokens;
  s.prefill_kernel_only = p.prefill_kernel_only;
  return s;
}

attention_plan plan_attention(const attention_shape& s) {
  validate_shape(s);
  attention_plan plan;
  const int group = s.num_q_heads / s.num_kv_heads;
  plan.decode = !s.prefill_kernel_only && s.num_q_tokens == s.num_seqs &&
                decode_group_supported(group);
  if (!plan.decode) return plan;
  const std::int64_t max_ctx = std::int64_t{s.max_blocks_per_seq} * s.block_size;
  std::int64_t split = s.split_tokens;
  if (split == 0) {
    // Split only when (seq, kv head) CTAs would not fill the GPU with 4 per SM; the split size
    // spreads the largest possible context (the block-table capacity) over enough CTAs, rounded
    // up to 64 tokens and at least k_min_split_tokens. Depends on num_seqs (documented).
    const std::int64_t ctas = std::int64_t{s.num_seqs} * s.num_kv_heads;
    const std::int64_t target = 4LL * sm_count();
    if (ctas < target && max_ctx > 2 * k_min_split_tokens) {
      const std::int64_t want = (target + ctas - 1) / ctas;
      split = ((max_ctx + want - 1) / want + 63) / 64 * 64;
      if (split < k_min_split_tokens) split = k_min_split_tokens;
      if (split >= max_ctx) split = 0;
    }
  }
  if (split == 0) return plan;
  plan.split_tokens = static_cast<int>(split);
  plan.max_splits = static_cast<int>((max_ctx + split - 1) / split);
  plan.workspace_bytes = std::int64_t{s.num_seqs} * plan.max_splits * s.num_q_heads *
                         (s.head_dim + 1) * std::int64_t{sizeof(float)};
  plan.split_counters = std::int64_t{s.num_seqs} * s.num_kv_heads;
  return plan;
}

std::int64_t attention_workspace_bytes(const attention_params& p) {
  detail::validate_attention(p);
  return plan_attention(shape_of(p)).workspace_bytes;
}

void attention(const attention_params& p, cudaStream_t stream, bool pdl) {
  detail::validate_attention(p);
  const attention_plan plan = plan_attention(shape_of(p));
  detail::check_split_buffers(p, plan);
  if (p.num_q_tokens == 0) return;
  if (plan.decode) return detail::launch_attention_decode(p, plan, stream, pdl);
  detail::launch_attention_prefill(p, stream);
}

}  // namespace ridgeline::cuda
