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
    cuda::qkv_rope_append(gp, s.get(), /*pdl=*/true);
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

// The prebuilt cos/sin table (rope_params::table) gives the kernels the bits they compute on the
// fly, within and past its end (positions beyond table_positions fall back), for plain and Llama 3
// settings; its entries are the cos/sin of the double-precision angles to fp32 rounding.
TEST(RopeTable, GivesTheOnTheFlyBits) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (const bool llama3 : {false, true}) {
    SCOPED_TRACE(llama3 ? "llama3" : "plain");
    const int tokens = 37, nq = 4, nkv = 2, d = 128, bs = 16, blocks = 4, positions = 3001;
    rope_params r;
    r.num_tokens = tokens;
    r.num_q_heads = nq;
    r.num_kv_heads = nkv;
    r.head_dim = d;
    r.llama3_scaling = llama3;
    r.theta = llama3 ? 500000.0f : 10000.0f;
    cuda::device_buffer d_table(std::size_t(positions) * d * 4);
    cuda::rope_table_build(r, d_table.data<float>(), positions, s.get());
    const auto table = test::download<float>(d_table, 0, std::size_t(positions) * d);
    double worst = 0;
    for (int pos : {0, 1, 17, 1000, 3000}) {
      for (int i = 0; i < d / 2; ++i) {
        double f = std::pow(double(r.theta), -2.0 * i / d);
        if (llama3) {
          const double wavelen = 2 * M_PI / f, hi = 8192.0 / 4.0, lo = 8192.0 / 1.0;
          if (wavelen > lo) {
            f /= 8.0;
          } else if (wavelen >= hi) {
            const double sm = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            f = (1 - sm) * f / 8.0 + sm * f;
          }
        }
        worst = std::max({worst, std::fabs(table[pos * d + i] - std::cos(pos * f)),
                          std::fabs(table[pos * d + d / 2 + i] - std::sin(pos * f))});
      }
    }
    EXPECT_LT(worst, 1e-6) << "table entries against double cos/sin";

    const int cols = (nq + 2 * nkv) * d;
    std::vector<bf16_bits> qkv(std::size_t(tokens) * cols);
    for (auto& x : qkv) x = cpu::float_to_bf16(u(rng));
    std::vector<std::int32_t> pos(tokens), slots(tokens);
    for (int t = 0; t < tokens; ++t) {
      pos[t] = t < 30 ? static_cast<std::int32_t>(rng() % positions) : positions + t;  // 7 past
      slots[t] = t;
    }
    std::vector<bf16_bits> cache0(std::size_t(blocks) * 2 * nkv * bs * d);
    for (auto& x : cache0) x = cpu::float_to_bf16(u(rng));
    auto d_qkv = test::upload(qkv);
    auto d_pos = test::upload(pos);
    auto d_slots = test::upload(slots);
    std::vector<std::vector<bf16_bits>> q(2), cache(2);
    for (int with_table = 0; with_table < 2; ++with_table) {
      auto d_cache = test::upload(cache0);
      cuda::device_buffer d_q(std::size_t(tokens) * nq * d * 2);
      qkv_rope_append_params p;
      p.qkv = d_qkv.data<bf16_bits>();
      p.q = d_q.data<bf16_bits>();
      p.rope = r;
      p.rope.positions = d_pos.data<std::int32_t>();
      if (with_table) {
        p.rope.table = d_table.data<float>();
        p.rope.table_positions = positions;
      }
      p.slot_mapping = d_slots.data<std::int32_t>();
      p.kv = {d_cache.data<bf16_bits>(), blocks, bs, nkv, d, nullptr, 0, nullptr, 0};
      cuda::qkv_rope_append(p, s.get());
      s.synchronize();
      q[with_table] = test::download<bf16_bits>(d_q, 0, std::size_t(tokens) * nq * d);
      cache[with_table] = test::download<bf16_bits>(d_cache, 0, cache0.size());
    }
    EXPECT_TRUE(q[0] == q[1]) << "q differs with the table";
    EXPECT_TRUE(cache[0] == cache[1]) << "k differs with the table";
  }
}
