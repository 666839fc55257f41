// The decoder's attention block as one decode kernel (cuda::rope_append_attention) against the two
// launchers it replaces (qkv_rope_append, then attention): the same output and the same cache, bit
// for bit, with and without splits (the split partials merged by the last CTA to finish), group
// sizes 1, 2, 4, 8, head_dim 64 and 128, Llama 3 rope scaling, and a sequence whose token is
// already in the cache (slot -1), and the prebuilt rope table.
// The output is also checked against the CPU attention reference over the rotated q and the
// appended cache, and the split counters must be left at zero.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "cuda/attention.hpp"
#include "cuda/ops.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;

namespace {

struct block_case {
  int nq, nkv, d, bs;
  std::vector<int> lens;
  int split_tokens;
  bool llama3;
  bool table = false;  // both runs read the prebuilt cos/sin table
  std::string describe() const {
    std::ostringstream os;
    os << "hq=" << nq << " hkv=" << nkv << " d=" << d << " bs=" << bs
       << " split=" << split_tokens << " llama3=" << llama3 << " table=" << table
       << " seqs=" << lens.size();
    return os.str();
  }
};

bf16_bits random_bf16(std::mt19937& rng, float amplitude) {
  return cpu::float_to_bf16(std::uniform_real_distribution<float>(-amplitude, amplitude)(rng));
}

void check_block(const block_case& c, unsigned seed) {
  SCOPED_TRACE(c.describe());
  std::mt19937 rng(seed);
  const int seqs = static_cast<int>(c.lens.size());
  const int cols = (c.nq + 2 * c.nkv) * c.d;
  int max_blocks = 0, used = 0;
  for (int len : c.lens) {
    max_blocks = std::max(max_blocks, (len + c.bs - 1) / c.bs + 1);
    used += (len + c.bs - 1) / c.bs;
  }
  const int num_blocks = used + 2;
  std::vector<std::int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<std::int32_t> tables(std::size_t(seqs) * max_blocks, perm.back());
  std::vector<std::int32_t> offsets(seqs + 1), positions(seqs), slots(seqs);
  int next = 0;
  for (int s = 0; s < seqs; ++s) {
    const int len = c.lens[s];
    for (int b = 0; b < (len + c.bs - 1) / c.bs; ++b) tables[s * max_blocks + b] = perm[next++];
    offsets[s + 1] = s + 1;
    positions[s] = len - 1;
    const int last = len - 1;
    // Sequence 1 (when there is one) finds its token already in the cache.
    slots[s] = s == 1 ? -1 : tables[s * max_blocks + last / c.bs] * c.bs + last % c.bs;
  }
  std::vector<bf16_bits> cache(std::size_t(num_blocks) * 2 * c.nkv * c.bs * c.d);
  for (auto& x : cache) x = random_bf16(rng, 1.0f);
  std::vector<bf16_bits> qkv(std::size_t(seqs) * cols);
  for (std::size_t i = 0; i < qkv.size(); ++i) {
    qkv[i] = random_bf16(rng, int(i % cols) < c.nq * c.d ? 3.0f : 1.0f);
  }

  cuda::stream st;
  auto d_qkv = test::upload(qkv);
  auto d_tables = test::upload(tables);
  auto d_offsets = test::upload(offsets);
  auto d_lens = test::upload(std::vector<std::int32_t>(c.lens.begin(), c.lens.end()));
  auto d_pos = test::upload(positions);
  auto d_slots = test::upload(slots);
  const std::vector<std::int32_t> zeros(std::size_t(seqs) * c.nkv, 0);
  auto d_counters = test::upload(zeros);
  const std::size_t out_elems = std::size_t(seqs) * c.nq * c.d;
  const int table_positions = *std::max_element(c.lens.begin(), c.lens.end());
  cuda::device_buffer d_table(std::size_t(table_positions) * c.d * 4);

  // One run over its own cache copy; returns the output and the cache afterwards.
  auto run = [&](bool fused, std::vector<bf16_bits>* q_out) {
    auto d_cache = test::upload(cache);
    cuda::device_buffer d_q(out_elems * 2);
    auto d_out = test::upload(std::vector<bf16_bits>(out_elems, 0x7fa5));
    const paged_kv_view kv{d_cache.data<bf16_bits>(), num_blocks,  c.bs,
                           c.nkv,                     c.d,         d_tables.data<std::int32_t>(),
                           max_blocks,                d_lens.data<std::int32_t>(), seqs};
    qkv_rope_append_params pre;
    pre.qkv = d_qkv.data<bf16_bits>();
    pre.q = d_q.data<bf16_bits>();
    pre.rope.positions = d_pos.data<std::int32_t>();
    pre.rope.num_tokens = seqs;
    pre.rope.num_q_heads = c.nq;
    pre.rope.num_kv_heads = c.nkv;
    pre.rope.head_dim = c.d;
    pre.rope.theta = c.llama3 ? 500000.0f : 10000.0f;
    pre.rope.llama3_scaling = c.llama3;
    if (c.table) {
      cuda::rope_table_build(pre.rope, d_table.data<float>(), table_positions, st.get());
      pre.rope.table = d_table.data<float>();
      pre.rope.table_positions = table_positions;
    }
    pre.slot_mapping = d_slots.data<std::int32_t>();
    pre.kv = kv;
    attention_params p;
    p.q = d_q.data<bf16_bits>();
    p.out = d_out.data<bf16_bits>();
    p.q_offsets = d_offsets.data<std::int32_t>();
    p.num_q_tokens = seqs;
    p.num_q_heads = c.nq;
    p.scale = 1.0f / std::sqrt(float(c.d));
    p.kv = kv;
    p.split_tokens = c.split_tokens;
    const std::int64_t ws = cuda::attention_workspace_bytes(p);
    cuda::device_buffer d_ws(static_cast<std::size_t>(std::max<std::int64_t>(ws, 16)));
    p.workspace = d_ws.data<float>();
    p.workspace_bytes = ws;
    p.split_counters = d_counters.data<std::int32_t>();
    if (fused) {
      EXPECT_TRUE(cuda::rope_append_attention_fuses(pre, p));
      cuda::rope_append_attention(pre, p, st.get(), /*pdl=*/true);  // as the engine launches it
    } else {
      cuda::qkv_rope_append(pre, st.get(), /*pdl=*/true);
      cuda::attention(p, st.get(), /*pdl=*/true);
    }
    st.synchronize();
    EXPECT_TRUE(test::download<std::int32_t>(d_counters, 0, zeros.size()) == zeros)
        << "split counters not left at zero";
    if (q_out) *q_out = test::download<bf16_bits>(d_q, 0, out_elems);
    return std::pair{test::download<bf16_bits>(d_out, 0, out_elems),
                     test::download<bf16_bits>(d_cache, 0, cache.size())};
  };
  std::vector<bf16_bits> q_rot;
  const auto [out_ref, cache_ref] = run(false, &q_rot);
  const auto [out_fused, cache_fused] = run(true, nullptr);
  EXPECT_TRUE(cache_fused == cache_ref) << "the fused kernel appended different K/V";
  std::size_t diff = 0;
  for (std::size_t i = 0; i < out_elems; ++i) diff += out_fused[i] != out_ref[i];
  EXPECT_EQ(diff, 0u) << diff << " of " << out_elems << " outputs differ from the two launchers";
  const auto [out_again, cache_again] = run(true, nullptr);
  EXPECT_TRUE(out_again == out_fused) << "a second fused call differs";

  // CPU attention over the rotated q and the appended cache (the merge's tolerance, as in
  // attention_test: 2^-12 + 2^-8 |ref|).
  std::vector<std::int32_t> lens(c.lens.begin(), c.lens.end());
  std::vector<bf16_bits> out_cpu(out_elems);
  std::vector<double> exact(out_elems);
  attention_params hp;
  hp.q = q_rot.data();
  hp.out = out_cpu.data();
  hp.q_offsets = offsets.data();
  hp.num_q_tokens = seqs;
  hp.num_q_heads = c.nq;
  hp.scale = 1.0f / std::sqrt(float(c.d));
  auto host_cache = cache_ref;
  hp.kv = {host_cache.data(), num_blocks, c.bs, c.nkv, c.d, tables.data(), max_blocks,
           lens.data(), seqs};
  cpu::attention(hp, exact.data());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < out_elems; ++i) {
    const double err = std::fabs(cpu::bf16_to_float(out_fused[i]) - exact[i]);
    if (!(err <= std::ldexp(1.0, -12) + std::ldexp(1.0, -8) * std::fabs(exact[i]))) {
      if (bad++ < 5) ADD_FAILURE() << "element " << i << ": gpu " << cpu::bf16_to_float(out_fused[i])
                                   << " ref " << exact[i];
    }
  }
  EXPECT_EQ(bad, 0u);
}

}  // namespace

TEST(RopeAppendAttention, FusedDecodeMatchesTheTwoLaunchersBitwise) {
  RIDGELINE_REQUIRE_GPU();
  std::mt19937 rng(99);
  std::vector<int> many(64);
  for (auto& len : many) len = 1 + static_cast<int>(rng() % 600);
  const std::vector<block_case> cases = {
      {32, 32, 128, 16, {1, 17, 512, 1009}, 0, false},  // the launcher splits (few CTAs)
      {32, 32, 128, 16, many, 0, false, true},          // batch 64: no split; rope table
      {32, 8, 128, 32, {3, 700, 64}, 64, true},         // group 4, fixed split, Llama 3 rope
      {8, 2, 64, 16, {1, 2, 31, 32, 33}, 0, false},     // group 4, head_dim 64
      {16, 2, 128, 16, {300, 45}, 100, false},          // group 8, split not a block multiple
      {8, 4, 64, 32, {257, 5, 4001}, 0, true, true},    // group 2, long context; rope table
  };
  unsigned seed = 1;
  for (const auto& c : cases) check_block(c, seed++);
}

TEST(RopeAppendAttention, FallsBackWhereTheDecodeKernelDoesNotApply) {
  RIDGELINE_REQUIRE_GPU();
  // Two query tokens for one sequence (a prefill chunk): not a decode; the launchers run in turn.
  const auto* fake = reinterpret_cast<bf16_bits*>(std::uintptr_t{256});
  const auto* ifake = reinterpret_cast<const std::int32_t*>(std::uintptr_t{256});
  attention_params p;
  p.q = fake;
  p.out = const_cast<bf16_bits*>(fake);
  p.q_offsets = ifake;
  p.num_q_tokens = 2;
  p.num_q_heads = 8;
  p.scale = 0.1f;
  p.kv = {const_cast<bf16_bits*>(fake), 4, 16, 8, 128, ifake, 4, ifake, 1};
  qkv_rope_append_params pre;
  pre.qkv = fake;
  pre.q = const_cast<bf16_bits*>(fake);
  pre.rope.num_tokens = 2;
  pre.rope.num_q_heads = 8;
  pre.rope.num_kv_heads = 8;
  pre.rope.head_dim = 128;
  pre.kv = p.kv;
  EXPECT_FALSE(cuda::rope_append_attention_fuses(pre, p));
  p.num_q_tokens = 1;
  pre.rope.num_tokens = 1;
  EXPECT_TRUE(cuda::rope_append_attention_fuses(pre, p));
  pre.q = const_cast<bf16_bits*>(fake) + 1024;  // attention would not read what the prologue wrote
  EXPECT_FALSE(cuda::rope_append_attention_fuses(pre, p));
}
