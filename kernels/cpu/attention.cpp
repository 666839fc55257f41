// Reference kv_append and paged causal attention (see attention_reference.hpp). Deliberately naive:
// one query row and one head at a time, scores and softmax in double, max subtracted for range.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline::cpu {
namespace {

// Element offset of (token slot, K or V, kv head, dim 0) in the paged cache.
std::int64_t cache_offset(const paged_kv_view& kv, std::int64_t slot, int k_or_v, int head) {
  const std::int64_t block = slot / kv.block_size, in_block = slot % kv.block_size;
  return (((block * 2 + k_or_v) * kv.num_kv_heads + head) * kv.block_size + in_block) * kv.head_dim;
}

}  // namespace

void kv_append(const kv_append_params& p) {
  const auto& kv = p.kv;
  const std::int64_t row = std::int64_t{kv.num_kv_heads} * kv.head_dim;
  for (int t = 0; t < p.num_tokens; ++t) {
    const std::int32_t slot = p.slot_mapping[t];
    if (slot < 0) continue;
    for (int h = 0; h < kv.num_kv_heads; ++h) {
      for (int d = 0; d < kv.head_dim; ++d) {
        const std::int64_t src = t * row + std::int64_t{h} * kv.head_dim + d;
        kv.data[cache_offset(kv, slot, 0, h) + d] = p.k[src];
        kv.data[cache_offset(kv, slot, 1, h) + d] = p.v[src];
      }
    }
  }
}

void attention(const attention_params& p, double* exact) {
  const auto& kv = p.kv;
  const int dim = kv.head_dim;
  const int group = p.num_q_heads / kv.num_kv_heads;
  std::vector<double> scores, acc(static_cast<std::size_t>(dim));
  for (int s = 0; s < kv.num_seqs; ++s) {
    const int n = p.q_offsets[s + 1] - p.q_offsets[s];
    const int len = kv.seq_lens[s];
    const std::int32_t* table = kv.block_tables + std::int64_t{s} * kv.max_blocks_per_seq;
    auto slot_of = [&](int pos) {
      return std::int64_t{table[pos / kv.block_size]} * kv.block_size + pos % kv.block_size;
    };
    for (int i = 0; i < n; ++i) {
      const int pos = len - n + i;  // this query's position; it sees keys 0 ... pos
      const std::int64_t row = p.q_offsets[s] + i;
      for (int h = 0; h < p.num_q_heads; ++h) {
        const int hk = h / group;
        const std::int64_t q_at = (row * p.num_q_heads + h) * dim;
        scores.assign(static_cast<std::size_t>(pos + 1), 0.0);
        double max_score = -INFINITY;
        for (int j = 0; j <= pos; ++j) {
          const bf16_bits* k = kv.data + cache_offset(kv, slot_of(j), 0, hk);
          double dot = 0;
          for (int d = 0; d < dim; ++d) {
            dot += double{bf16_to_float(p.q[q_at + d])} * double{bf16_to_float(k[d])};
          }
          scores[j] = dot * double{p.scale};
          max_score = std::max(max_score, scores[j]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j <= pos; ++j) {
          const double w = std::exp(scores[j] - max_score);
          sum += w;
          const bf16_bits* v = kv.data + cache_offset(kv, slot_of(j), 1, hk);
          for (int d = 0; d < dim; ++d) acc[d] += w * double{bf16_to_float(v[d])};
        }
        for (int d = 0; d < dim; ++d) {
          const double o = acc[d] / sum;
          p.out[q_at + d] = float_to_bf16(static_cast<float>(o));
          if (exact) exact[q_at + d] = o;
        }
      }
    }
  }
}

}  // namespace ridgeline::cpu
