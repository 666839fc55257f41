// The attention references on tiny hand-checkable cases: kv_append's slot arithmetic (slot -1
// skips), causal attention through a non-contiguous block table (decode and whole-prompt prefill),
// softmax weights against a closed form, and the grouped-query head mapping.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;

namespace {

std::vector<bf16_bits> bf16s(std::initializer_list<float> xs) {
  std::vector<bf16_bits> v;
  for (float x : xs) v.push_back(cpu::float_to_bf16(x));
  return v;
}

float f(bf16_bits b) {
  return cpu::bf16_to_float(b);
}

// One kv head, head_dim 2, block_size 2; sequence of 3 tokens in blocks {1, 0} (pos 0, 1 in block
// 1; pos 2 in block 0). Layout per block: [K: slot0 d0 d1, slot1 d0 d1][V: ...] = 8 elements.
struct tiny_cache {
  std::vector<bf16_bits> data = std::vector<bf16_bits>(2 * 8, 0);
  std::vector<std::int32_t> table = {1, 0};
  std::vector<std::int32_t> lens = {3};
  paged_kv_view view() {
    paged_kv_view kv;
    kv.data = data.data();
    kv.num_blocks = 2;
    kv.block_size = 2;
    kv.num_kv_heads = 1;
    kv.head_dim = 2;
    kv.block_tables = table.data();
    kv.max_blocks_per_seq = 2;
    kv.seq_lens = lens.data();
    kv.num_seqs = 1;
    return kv;
  }
  void put(int pos, std::initializer_list<float> k, std::initializer_list<float> v) {
    const int slot = table[pos / 2] * 2 + pos % 2;
    const auto kb = bf16s(k), vb = bf16s(v);
    const int block = slot / 2, in_block = slot % 2;
    for (int d = 0; d < 2; ++d) {
      data[block * 8 + in_block * 2 + d] = kb[d];
      data[block * 8 + 4 + in_block * 2 + d] = vb[d];
    }
  }
};

}  // namespace

TEST(AttentionReference, KvAppendWritesSlotsAndSkipsMinusOne) {
  // 2 kv heads, head_dim 2, block_size 2, 3 blocks: block b = [K h0 s0, K h0 s1, K h1 s0, K h1 s1,
  // V h0 s0, ...] x 2 dims = 16 elements.
  std::vector<bf16_bits> data(3 * 16, 0xdead);
  const auto k = bf16s({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});  // [3 tokens][2 heads][2]
  const auto v = bf16s({-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12});
  const std::vector<std::int32_t> slots = {5, -1, 0};  // token 0 -> block 2 slot 1; token 2 -> 0/0
  kv_append_params p;
  p.k = k.data();
  p.v = v.data();
  p.slot_mapping = slots.data();
  p.num_tokens = 3;
  p.kv.data = data.data();
  p.kv.num_blocks = 3;
  p.kv.block_size = 2;
  p.kv.num_kv_heads = 2;
  p.kv.head_dim = 2;
  cpu::kv_append(p);
  std::vector<bf16_bits> expect(3 * 16, 0xdead);
  auto at = [](int block, int kv, int head, int slot, int d) {
    return ((block * 2 + kv) * 2 + head) * 4 + slot * 2 + d;
  };
  for (int h = 0; h < 2; ++h) {
    for (int d = 0; d < 2; ++d) {
      expect[at(2, 0, h, 1, d)] = k[(0 * 2 + h) * 2 + d];
      expect[at(2, 1, h, 1, d)] = v[(0 * 2 + h) * 2 + d];
      expect[at(0, 0, h, 0, d)] = k[(2 * 2 + h) * 2 + d];
      expect[at(0, 1, h, 0, d)] = v[(2 * 2 + h) * 2 + d];
    }
  }
  EXPECT_EQ(data, expect);
  EXPECT_EQ(f(data[at(2, 0, 1, 1, 0)]), 3.0f);    // token 0, head 1, dim 0
  EXPECT_EQ(f(data[at(0, 1, 0, 0, 1)]), -10.0f);  // token 2, head 0, dim 1 of V
}

TEST(AttentionReference, EqualScoresAverageTheVisibleValues) {
  // q . k = 0 for every key, so each query averages V over positions 0 ... its own.
  tiny_cache c;
  c.put(0, {0, 5}, {1, 2});
  c.put(1, {0, -3}, {4, 8});
  c.put(2, {0, 1}, {-2, 5});
  const auto q = bf16s({1, 0, 1, 0, 1, 0});
  std::vector<std::int32_t> offsets = {0, 3};  // whole-prompt prefill: 3 queries at 0, 1, 2
  std::vector<bf16_bits> out(6, 0xffff);
  std::vector<double> exact(6);
  attention_params p;
  p.q = q.data();
  p.out = out.data();
  p.q_offsets = offsets.data();
  p.num_q_tokens = 3;
  p.num_q_heads = 1;
  p.scale = 1.0f;
  p.kv = c.view();
  cpu::attention(p, exact.data());
  const std::vector<double> expect = {1, 2, 2.5, 5, 1, 5};
  for (int i = 0; i < 6; ++i) {
    EXPECT_DOUBLE_EQ(exact[i], expect[i]) << i;
    EXPECT_EQ(f(out[i]), static_cast<float>(expect[i])) << i;
  }
  // Decode: one query, at the last position (2), sees all three.
  offsets = {0, 1};
  p.num_q_tokens = 1;
  cpu::attention(p, exact.data());
  EXPECT_DOUBLE_EQ(exact[0], 1.0);
  EXPECT_DOUBLE_EQ(exact[1], 5.0);
}

TEST(AttentionReference, SoftmaxWeightsMatchClosedForm) {
  // Chunked prefill of the last 2 positions (1 and 2); scale 0.5, scores q.k * 0.5 = 1, 0, -1.
  tiny_cache c;
  c.put(0, {2, 0}, {1, 0});
  c.put(1, {0, 0}, {0, 1});
  c.put(2, {-2, 0}, {3, 3});
  const auto q = bf16s({1, 0, 1, 0});
  const std::vector<std::int32_t> offsets = {0, 2};
  std::vector<bf16_bits> out(4);
  std::vector<double> exact(4);
  attention_params p;
  p.q = q.data();
  p.out = out.data();
  p.q_offsets = offsets.data();
  p.num_q_tokens = 2;
  p.num_q_heads = 1;
  p.scale = 0.5f;
  p.kv = c.view();
  cpu::attention(p, exact.data());
  const double e = std::exp(1.0), ie = std::exp(-1.0);
  EXPECT_NEAR(exact[0], e / (e + 1), 1e-12);  // position 1: weights e, 1 over V (1,0), (0,1)
  EXPECT_NEAR(exact[1], 1 / (e + 1), 1e-12);
  EXPECT_NEAR(exact[2], (e + 3 * ie) / (e + 1 + ie), 1e-12);  // position 2: + weight 1/e on (3,3)
  EXPECT_NEAR(exact[3], (1 + 3 * ie) / (e + 1 + ie), 1e-12);
  EXPECT_EQ(out[0], cpu::float_to_bf16(static_cast<float>(exact[0])));
}

TEST(AttentionReference, GroupedQueryHeadsShareTheirKvHead) {
  // 4 query heads over 2 kv heads, one cached token: heads 0, 1 return V of kv head 0; 2, 3 of 1.
  std::vector<bf16_bits> data(2 * 2 * 1 * 2, 0);  // 1 block of 1 slot: [K, V][2 heads][1][2 dims]
  const auto v0 = bf16s({3, -1}), v1 = bf16s({-7, 0.5f});
  data[4] = v0[0];
  data[5] = v0[1];
  data[6] = v1[0];
  data[7] = v1[1];
  const std::vector<std::int32_t> table = {0}, lens = {1}, offsets = {0, 1};
  const auto q = bf16s({1, 1, 2, 2, 3, 3, 4, 4});
  std::vector<bf16_bits> out(8);
  attention_params p;
  p.q = q.data();
  p.out = out.data();
  p.q_offsets = offsets.data();
  p.num_q_tokens = 1;
  p.num_q_heads = 4;
  p.scale = 1.0f;
  p.kv.data = data.data();
  p.kv.num_blocks = 1;
  p.kv.block_size = 1;
  p.kv.num_kv_heads = 2;
  p.kv.head_dim = 2;
  p.kv.block_tables = table.data();
  p.kv.max_blocks_per_seq = 1;
  p.kv.seq_lens = lens.data();
  p.kv.num_seqs = 1;
  cpu::attention(p);
  const std::vector<float> expect = {3, -1, 3, -1, -7, 0.5f, -7, 0.5f};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(f(out[i]), expect[i]) << i;
}
