// The fused attention prologue on the GPU against (a) the CPU reference (split, rope, kv_append,
// within rope's 1-ulp tolerance) and (b) the unfused GPU ops, bit for bit. Shapes: head_dim 64 and
// 128, GQA, odd token counts, skipped slots (-1), two block sizes, and a QKV buffer 2 bytes off
// 16-byte alignment (the scalar path); the rest of the cache must stay as it was.
#include <cmath>
#include <numeric>
#include <random>

#include "cuda/attention.hpp"
#include "cuda/linear.hpp"
#include "cuda/ops.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"

using namespace ridgeline;

TEST(QkvRopeAppend, MatchesReferenceAndUnfusedOps) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  struct shape { int tokens, nq, nkv, d, bs; bool llama3; bool misaligned; };
  for (const shape sh : {shape{1, 4, 2, 64, 16, false, false}, shape{7, 8, 8, 128, 16, true, false},
                         shape{13, 6, 2, 64, 32, false, true}}) {
    SCOPED_TRACE("tokens=" + std::to_string(sh.tokens) + " d=" + std::to_string(sh.d) +
                 " misaligned=" + std::to_string(sh.misaligned));
    const int cols = (sh.nq + 2 * sh.nkv) * sh.d, blocks = 8;
    std::vector<bf16_bits> qkv(std::size_t(sh.tokens) * cols);
    for (auto& x : qkv) x = cpu::float_to_bf16(u(rng));
    std::vector<std::int32_t> pos(sh.tokens), slots(sh.tokens);
    std::vector<std::int32_t> free_slots(blocks * sh.bs);
    std::iota(free_slots.begin(), free_slots.end(), 0);
    std::shuffle(free_slots.begin(), free_slots.end(), rng);
    for (int t = 0; t < sh.tokens; ++t) {
      pos[t] = static_cast<std::int32_t>(rng() % 100000);
      slots[t] = t % 3 == 2 ? -1 : free_slots[t];
    }
    const std::size_t cache_elems = std::size_t(blocks) * 2 * sh.nkv * sh.bs * sh.d;
    std::vector<bf16_bits> cache0(cache_elems);
    for (auto& x : cache0) x = cpu::float_to_bf16(u(rng));

    rope_params r;
    r.num_tokens = sh.tokens;
    r.num_q_heads = sh.nq;
    r.num_kv_heads = sh.nkv;
    r.head_dim = sh.d;
    r.llama3_scaling = sh.llama3;
    r.theta = sh.llama3 ? 500000.0f : 10000.0f;
    // CPU reference.
    std::vector<bf16_bits> q_ref(std::size_t(sh.tokens) * sh.nq * sh.d), cache_ref = cache0;
    qkv_rope_append_params hp;
    hp.qkv = qkv.data();
    hp.q = q_ref.data();
    hp.rope = r;
    hp.rope.positions = pos.data();
    hp.slot_mapping = slots.data();
    hp.kv = {cache_ref.data(), blocks, sh.bs, sh.nkv, sh.d, nullptr, 0, nullptr, 0};
    cpu::qkv_rope_append(hp);
    // GPU fused and unfused.
    std::vector<bf16_bits> qkv_padded(qkv.size() + 1);
    std::copy(qkv.begin(), qkv.end(), qkv_padded.begin() + 1);
    auto d_qkv_buf = test::upload(qkv_padded);
    bf16_bits* qkv_dev = d_qkv_buf.data<bf16_bits>() + (sh.misaligned ? 1 : 0);
    if (!sh.misaligned) {
      RIDGELINE_CUDA_CHECK(cudaMemcpy(qkv_dev, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice));
    }
    auto d_pos = test::upload(pos);
    auto d_slots = test::upload(slots);
    auto d_cache = test::upload(cache0), d_cache2 = test::upload(cache0);
    cuda::device_buffer d_q(q_ref.size() * 2), d_q2(q_ref.size() * 2), d_k(std::size_t(sh.tokens) * sh.nkv * sh.d * 2),
        d_v(d_k.bytes());
    qkv_rope_append_params gp = hp;
    gp.qkv = qkv_dev;
    gp.q = d_q.data<bf16_bits>();
    gp.rope.positions = d_pos.data<std::int32_t>();
    gp.slot_mapping = d_slots.data<std::int32_t>();
    gp.kv.data = d_cache.data<bf16_bits>();
    cuda::qkv_rope_append(gp, s.get());
    const int qc = sh.nq * sh.d, kc = sh.nkv * sh.d;
    cuda::gather_rows({qkv_dev, cols, 0, nullptr, d_q2.data<bf16_bits>(), sh.tokens, qc}, s.get());
    cuda::gather_rows({qkv_dev, cols, qc, nullptr, d_k.data<bf16_bits>(), sh.tokens, kc}, s.get());
    cuda::gather_rows({qkv_dev, cols, qc + kc, nullptr, d_v.data<bf16_bits>(), sh.tokens, kc}, s.get());
    rope_params gr = gp.rope;
    gr.q = d_q2.data<bf16_bits>();
    gr.k = d_k.data<bf16_bits>();
    cuda::rope(gr, s.get());
    paged_kv_view kv2 = gp.kv;
    kv2.data = d_cache2.data<bf16_bits>();
    cuda::kv_append({d_k.data<bf16_bits>(), d_v.data<bf16_bits>(), gp.slot_mapping, sh.tokens, kv2}, s.get());
    s.synchronize();
    const auto q_gpu = test::download<bf16_bits>(d_q, 0, q_ref.size());
    const auto cache_gpu = test::download<bf16_bits>(d_cache, 0, cache_elems);
    EXPECT_EQ(q_gpu, test::download<bf16_bits>(d_q2, 0, q_ref.size())) << "fused q != unfused q";
    EXPECT_EQ(cache_gpu, test::download<bf16_bits>(d_cache2, 0, cache_elems)) << "fused cache != unfused";
    auto close = [](bf16_bits a, bf16_bits b) {
      const double x = cpu::bf16_to_float(a), y = cpu::bf16_to_float(b);
      return std::fabs(x - y) <= 1e-5 + std::ldexp(1.0, -7) * std::fabs(y);  // rope's 1-ulp bound
    };
    int bad = 0;
    for (std::size_t i = 0; i < q_ref.size(); ++i) bad += !close(q_gpu[i], q_ref[i]);
    for (std::size_t i = 0; i < cache_elems; ++i) bad += !close(cache_gpu[i], cache_ref[i]);
    EXPECT_EQ(bad, 0);
  }
}
