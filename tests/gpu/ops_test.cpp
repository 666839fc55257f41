// Decoder-op kernels (kernels/cuda/ops.hpp) against their CPU references (reference.hpp): random
// inputs at odd shapes (1, primes, non-multiples of the warp and of the 8-wide vectors) so every
// launcher branch runs (vector and scalar paths, misaligned pointers, residual or not, aliasing),
// outputs poisoned before the launch and guarded by bands that must come back untouched, every
// element compared.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/ops.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"

using namespace ridgeline;
using cpu::bf16_to_float;
using cpu::float_to_bf16;

namespace {

constexpr std::size_t k_guard = 64;          // elements of guard band on each side
constexpr bf16_bits k_poison_bf16 = 0x7fc1;  // a NaN: an unwritten element fails the comparison
constexpr std::int32_t k_poison_i32 = -12345;

// |gpu - ref| <= atol + rtol * |ref| per element; NaN/Inf in gpu fail unless ref is the same.
struct tolerance {
  double atol, rtol;
};

// One table per op; a bf16 ulp is 2^-8..2^-7 of the value, so rtol 2^-7 = "one bf16 ulp".
constexpr double k_bf16_ulp = 1.0 / 128;
// embedding: a copy.
constexpr tolerance k_embedding_tol = {0, 0};
// rms_norm out: fp32 sum of squares and rsqrtf (2 ulp) vs double; ~1e-6 relative before the bf16
// rounding, which can then land one bf16 ulp apart. The residual sum is exact (see rms_norm.cpp).
constexpr tolerance k_rms_norm_tol = {0, k_bf16_ulp};
constexpr tolerance k_rms_norm_residual_tol = {0, 0};
// rope: cos/sin rounded to fp32 from double, fp32 products: ~1e-7 x (|x1| + |x2|) absolute before
// rounding (so atol for outputs near 0 from cancellation, inputs within [-2, 2]), one bf16 ulp.
constexpr tolerance k_rope_tol = {1e-5, k_bf16_ulp};
// swiglu: expf (2 ulp) and fp32 division/product vs double, then one bf16 rounding.
constexpr tolerance k_swiglu_tol = {1e-6, k_bf16_ulp};
// sampling: tokens and top ids are exact (integer algorithm, see reference.hpp). Logprobs: fp32
// expf terms summed in double vs double exp: ~1e-6 absolute in the log-sum-exp.
constexpr tolerance k_logprob_tol = {2e-5, 1e-6};

std::vector<bf16_bits> random_bf16(std::size_t n, unsigned seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<bf16_bits> v(n);
  for (auto& x : v) x = float_to_bf16(d(rng));
  return v;
}

// A device copy of host data with k_guard elements of `guard_value` on each side.
template <class T>
struct guarded {
  cuda::device_buffer buf;
  std::size_t n = 0;
  T guard_value{};
  guarded(const std::vector<T>& host, T guard) : n(host.size()), guard_value(guard) {
    std::vector<T> all(host.size() + 2 * k_guard, guard);
    std::copy(host.begin(), host.end(), all.begin() + k_guard);
    buf = test::upload(all);
  }
  T* data() const { return buf.data<T>() + k_guard; }
  // The interior; fails the test if a guard band changed.
  std::vector<T> download_checked(const std::string& what) const {
    const auto all = test::download<T>(buf, 0, n + 2 * k_guard);
    for (std::size_t i = 0; i < k_guard; ++i) {
      EXPECT_EQ(all[i], guard_value) << what << ": guard band before, element " << i;
      EXPECT_EQ(all[k_guard + n + i], guard_value) << what << ": guard band after, element " << i;
    }
    return {all.begin() + k_guard, all.begin() + k_guard + n};
  }
};

// Compares every element; reports the worst one and the first mismatches.
template <class T, class F>
void expect_close(const std::vector<T>& gpu, const std::vector<T>& ref, tolerance tol,
                  const std::string& what, F to_double) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  std::size_t bad = 0, worst = 0;
  double worst_excess = -1;
  std::ostringstream first;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const double g = to_double(gpu[i]), r = to_double(ref[i]);
    const double diff = std::fabs(g - r);
    const bool same_special = (std::isinf(g) && g == r);
    const bool ok =
        same_special || (std::isfinite(g) && diff <= tol.atol + tol.rtol * std::fabs(r));
    const double excess =
        same_special ? 0 : (std::isfinite(g) ? diff - tol.atol - tol.rtol * std::fabs(r) : 1e300);
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
    if (!ok && bad++ < 5) first << " [" << i << "] gpu " << g << " ref " << r << ";";
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << gpu.size() << " elements out of tolerance"
                     << " (atol " << tol.atol << ", rtol " << tol.rtol << "); worst [" << worst
                     << "] gpu " << to_double(gpu[worst]) << " ref " << to_double(ref[worst])
                     << "; first:" << first.str();
}

void expect_bf16_close(const std::vector<bf16_bits>& gpu, const std::vector<bf16_bits>& ref,
                       tolerance tol, const std::string& what) {
  expect_close(gpu, ref, tol, what,
               [](bf16_bits b) { return static_cast<double>(bf16_to_float(b)); });
}

std::string shape(std::initializer_list<std::pair<const char*, long long>> kv) {
  std::string s;
  for (const auto& [k, v] : kv) s += std::string(k) + "=" + std::to_string(v) + " ";
  return s;
}

}  // namespace

TEST(Embedding, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  struct c {
    int tokens, hidden, vocab;
    bool misalign;
  } cases[] = {{1, 8, 1, false},        {7, 4096, 1000, false}, {13, 24, 17, false},
               {5, 7, 11, false},       {3, 4099, 5, false},    {31, 64, 9, true},
               {64, 4096, 32000, false}};
  for (const auto& cs : cases) {
    SCOPED_TRACE(shape({{"tokens", cs.tokens},
                        {"hidden", cs.hidden},
                        {"vocab", cs.vocab},
                        {"misalign", cs.misalign}}));
    const std::size_t off = cs.misalign ? 1 : 0;  // shifts the table off 16-byte alignment
    const auto table = random_bf16(off + static_cast<std::size_t>(cs.vocab) * cs.hidden, 1, 3.0f);
    std::mt19937 rng(cs.tokens);
    std::vector<std::int32_t> ids(cs.tokens);
    for (auto& id : ids) id = static_cast<std::int32_t>(rng() % cs.vocab);
    std::vector<bf16_bits> ref(static_cast<std::size_t>(cs.tokens) * cs.hidden);
    cpu::embedding({ids.data(), table.data() + off, ref.data(), cs.tokens, cs.hidden, cs.vocab});

    auto d_ids = test::upload(ids);
    auto d_table = test::upload(table);
    guarded<bf16_bits> out(std::vector<bf16_bits>(ref.size(), k_poison_bf16), k_poison_bf16);
    cuda::embedding({d_ids.data<std::int32_t>(), d_table.data<bf16_bits>() + off, out.data(),
                     cs.tokens, cs.hidden, cs.vocab},
                    s.get(), /*pdl=*/true);  // as the engine launches it; scheduling only
    s.synchronize();
    expect_bf16_close(out.download_checked("out"), ref, k_embedding_tol, "embedding out");
  }
}

TEST(ScatterTokens, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  // Odd counts, rows scattered over a larger id array, repeated sources; count 0 does nothing.
  for (const int count : {0, 1, 37, 129, 1000, 4099}) {
    SCOPED_TRACE("count " + std::to_string(count));
    if (count == 0) {  // nothing to read or write: null pointers are fine
      EXPECT_NO_THROW(cuda::scatter_tokens({nullptr, nullptr, nullptr, nullptr, 0}, s.get()));
      continue;
    }
    std::mt19937 rng(static_cast<unsigned>(count) + 1);
    const int num_ids = 3 * count + 5, num_samples = count / 2 + 3;
    std::vector<std::int32_t> samples(num_samples), from(count), rows(count);
    std::vector<std::int32_t> ids(num_ids);
    for (auto& x : samples) x = static_cast<std::int32_t>(rng() % 128000);
    for (auto& x : ids) x = -7;
    std::vector<std::int32_t> perm(num_ids);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < count; ++i) {
      from[i] = static_cast<std::int32_t>(rng() % num_samples);
      rows[i] = perm[i];  // distinct rows
    }
    std::vector<std::int32_t> ref = ids;
    cpu::scatter_tokens({samples.data(), from.data(), rows.data(), ref.data(), count});
    auto d_samples = test::upload(samples), d_from = test::upload(from), d_rows = test::upload(rows);
    auto d_ids = test::upload(ids);
    cuda::scatter_tokens({d_samples.data<std::int32_t>(), d_from.data<std::int32_t>(),
                          d_rows.data<std::int32_t>(), d_ids.data<std::int32_t>(), count},
                         s.get());
    s.synchronize();
    EXPECT_EQ(test::download<std::int32_t>(d_ids, 0, ids.size()), ref);
  }
  EXPECT_THROW(cuda::scatter_tokens({nullptr, nullptr, nullptr, nullptr, 3}, s.get()),
               std::invalid_argument);
  EXPECT_THROW(cuda::scatter_tokens({nullptr, nullptr, nullptr, nullptr, -1}, s.get()),
               std::invalid_argument);
}

TEST(RmsNorm, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  // Vector path V = 1 (8, 24, 4096), 2 (8192, 5120), 4 (12288), 8 (16392); scalar path (7, 13,
  // 4099, 33000 > 32768, and misaligned input).
  const int hiddens[] = {8, 24, 4096, 5120, 8192, 12288, 16392, 7, 13, 4099, 33000};
  const int tokens_list[] = {1, 7, 67};
  unsigned seed = 1;
  for (int hidden : hiddens) {
    for (int tokens : tokens_list) {
      for (bool with_residual : {false, true}) {
        for (bool alias : {false, true}) {
          for (bool misalign : {false, true}) {
            if (misalign && (hidden != 4096 || tokens != 7)) continue;
            SCOPED_TRACE(shape({{"hidden", hidden},
                                {"tokens", tokens},
                                {"residual", with_residual},
                                {"alias", alias},
                                {"misalign", misalign}}));
            const std::size_t n = static_cast<std::size_t>(tokens) * hidden;
            const std::size_t off = misalign ? 1 : 0;
            const auto input = random_bf16(n, ++seed, 2.0f);
            const auto residual0 = random_bf16(n, ++seed, 2.0f);
            const auto weight = random_bf16(hidden, ++seed, 1.5f);
            const float eps = 1e-5f;

            auto ref_in = input;
            auto ref_res = residual0;
            std::vector<bf16_bits> ref_out(n);
            cpu::rms_norm({ref_in.data(), with_residual ? ref_res.data() : nullptr, weight.data(),
                           ref_out.data(), tokens, hidden, eps});

            // With alias, out is the input buffer; else input is separate and out is poisoned.
            std::vector<bf16_bits> in_host(off, 0);
            in_host.insert(in_host.end(), input.begin(), input.end());
            guarded<bf16_bits> in(in_host, k_poison_bf16);
            guarded<bf16_bits> res(residual0, k_poison_bf16);
            guarded<bf16_bits> out(std::vector<bf16_bits>(n, k_poison_bf16), k_poison_bf16);
            auto d_weight = test::upload(weight);
            rms_norm_params p{in.data() + off,
                              with_residual ? res.data() : nullptr,
                              d_weight.data<bf16_bits>(),
                              alias ? in.data() + off : out.data(),
                              tokens,
                              hidden,
                              eps};
            cuda::rms_norm(p, s.get(), /*pdl=*/alias);
            s.synchronize();
            const auto in_back = in.download_checked("input");
            const std::vector<bf16_bits> got =
                alias ? std::vector<bf16_bits>(in_back.begin() + off, in_back.end())
                      : out.download_checked("out");
            expect_bf16_close(got, ref_out, k_rms_norm_tol, "rms_norm out");
            if (!alias) {
              EXPECT_EQ(std::vector<bf16_bits>(in_back.begin() + off, in_back.end()), input)
                  << "input changed";
            }
            const auto res_back = res.download_checked("residual");
            expect_bf16_close(res_back, with_residual ? ref_res : residual0,
                              k_rms_norm_residual_tol, "rms_norm residual");
          }
        }
      }
    }
  }
}

TEST(Rope, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  struct heads {
    int q, kv;
  } head_cases[] = {{32, 8}, {3, 1}, {1, 0}, {0, 2}};
  const int head_dims[] = {128, 64, 80, 2, 6, 34};  // 2, 6, 34: scalar path
  const int tokens_list[] = {1, 7, 33};
  unsigned seed = 100;
  for (const auto& h : head_cases) {
    for (int hd : head_dims) {
      for (int tokens : tokens_list) {
        for (bool llama3 : {false, true}) {
          SCOPED_TRACE(shape({{"q_heads", h.q},
                              {"kv_heads", h.kv},
                              {"head_dim", hd},
                              {"tokens", tokens},
                              {"llama3", llama3}}));
          std::mt19937 rng(++seed);
          std::vector<std::int32_t> pos(tokens);
          for (int t = 0; t < tokens; ++t) {
            // Small, mid and the largest positions of a 128k context.
            pos[t] = t % 3 == 0 ? static_cast<std::int32_t>(rng() % 16)
                                : static_cast<std::int32_t>(131072 - 1 - rng() % 4096);
          }
          const auto q0 = random_bf16(static_cast<std::size_t>(tokens) * h.q * hd, ++seed, 2.0f);
          const auto k0 = random_bf16(static_cast<std::size_t>(tokens) * h.kv * hd, ++seed, 2.0f);
          rope_params p;
          p.num_tokens = tokens;
          p.num_q_heads = h.q;
          p.num_kv_heads = h.kv;
          p.head_dim = hd;
          p.theta = llama3 ? 500000.0f : 10000.0f;
          p.llama3_scaling = llama3;
          auto ref_q = q0, ref_k = k0;
          p.q = ref_q.data();
          p.k = ref_k.data();
          p.positions = pos.data();
          cpu::rope(p);

          guarded<bf16_bits> q(q0, k_poison_bf16), k(k0, k_poison_bf16);
          auto d_pos = test::upload(pos);
          p.q = q.data();
          p.k = k.data();
          p.positions = d_pos.data<std::int32_t>();
          cuda::rope(p, s.get());
          s.synchronize();
          expect_bf16_close(q.download_checked("q"), ref_q, k_rope_tol, "rope q");
          expect_bf16_close(k.download_checked("k"), ref_k, k_rope_tol, "rope k");
        }
      }
    }
  }
}

TEST(Swiglu, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  const int inters[] = {8, 24, 14336, 7, 13, 4099};
  const int tokens_list[] = {1, 7, 64};
  unsigned seed = 200;
  for (int inter : inters) {
    for (int tokens : tokens_list) {
      for (bool misalign : {false, true}) {
        if (misalign && inter != 14336) continue;
        SCOPED_TRACE(shape({{"intermediate", inter}, {"tokens", tokens}, {"misalign", misalign}}));
        const std::size_t off = misalign ? 1 : 0;
        const std::size_t n = static_cast<std::size_t>(tokens) * inter;
        // Gates over [-12, 12] reach both tails of silu; ups over [-3, 3].
        auto gu = random_bf16(off + 2 * n, ++seed, 3.0f);
        for (int t = 0; t < tokens; ++t) {
          for (int i = 0; i < inter; ++i) {
            auto& g = gu[off + static_cast<std::size_t>(t) * 2 * inter + i];
            g = float_to_bf16(4.0f * bf16_to_float(g));
          }
        }
        std::vector<bf16_bits> ref(n);
        cpu::swiglu({gu.data() + off, ref.data(), tokens, inter});
        auto d_gu = test::upload(gu);
        guarded<bf16_bits> out(std::vector<bf16_bits>(n, k_poison_bf16), k_poison_bf16);
        cuda::swiglu({d_gu.data<bf16_bits>() + off, out.data(), tokens, inter}, s.get(),
                     /*pdl=*/off != 0);
        s.synchronize();
        expect_bf16_close(out.download_checked("out"), ref, k_swiglu_tol, "swiglu out");
      }
    }
  }
}

namespace {

// Runs one batch of sampling rows on both sides and compares everything.
void check_sampling(const std::vector<float>& logits, int vocab,
                    const std::vector<sampling_row>& rows, const std::vector<std::int32_t>& prev,
                    const std::vector<std::int32_t>& offsets, int top_logprobs, cudaStream_t s,
                    std::vector<std::int32_t>* tokens_out = nullptr) {
  const int n = static_cast<int>(rows.size());
  const std::size_t slots = static_cast<std::size_t>(n) * top_logprobs;
  std::vector<std::int32_t> ref_tokens(n), ref_ids(slots);
  std::vector<float> ref_lp(slots), ref_sampled(static_cast<std::size_t>(n), NAN);
  sampling_params p;
  p.logits = logits.data();
  p.num_rows = n;
  p.vocab = vocab;
  p.rows = rows.data();
  p.prev_tokens = offsets.empty() ? nullptr : prev.data();
  p.prev_offsets = offsets.empty() ? nullptr : offsets.data();
  p.out_tokens = ref_tokens.data();
  p.out_logprobs = top_logprobs ? ref_lp.data() : nullptr;
  p.out_top_ids = top_logprobs ? ref_ids.data() : nullptr;
  p.top_logprobs = top_logprobs;
  p.out_sampled_logprobs = top_logprobs ? ref_sampled.data() : nullptr;
  cpu::sampling(p);

  auto d_logits = test::upload(logits);
  auto d_rows = test::upload(rows);
  auto d_prev = test::upload(prev.empty() ? std::vector<std::int32_t>{0} : prev);
  auto d_off = test::upload(offsets.empty() ? std::vector<std::int32_t>{0} : offsets);
  guarded<std::int32_t> tokens(std::vector<std::int32_t>(n, k_poison_i32), k_poison_i32);
  guarded<std::int32_t> ids(std::vector<std::int32_t>(slots, k_poison_i32), k_poison_i32);
  guarded<float> lp(std::vector<float>(slots, NAN), -777.0f);
  guarded<float> sampled(std::vector<float>(static_cast<std::size_t>(n), NAN), -777.0f);
  p.logits = d_logits.data<float>();
  p.rows = d_rows.data<sampling_row>();
  p.prev_tokens = offsets.empty() ? nullptr : d_prev.data<std::int32_t>();
  p.prev_offsets = offsets.empty() ? nullptr : d_off.data<std::int32_t>();
  p.out_tokens = tokens.data();
  p.out_logprobs = top_logprobs ? lp.data() : nullptr;
  p.out_top_ids = top_logprobs ? ids.data() : nullptr;
  p.out_sampled_logprobs = top_logprobs ? sampled.data() : nullptr;
  cuda::sampling(p, s, /*pdl=*/true);
  RIDGELINE_CUDA_CHECK(cudaStreamSynchronize(s));
  const auto got = tokens.download_checked("tokens");
  for (int r = 0; r < n; ++r) {
    const auto& row = rows[r];
    EXPECT_EQ(got[r], ref_tokens[r])
        << "row " << r << " of " << n << ": temperature " << row.temperature << " top_k "
        << row.top_k << " top_p " << row.top_p << " penalty " << row.repetition_penalty << " seed "
        << row.seed << " step " << row.step;
  }
  if (top_logprobs) {
    EXPECT_EQ(ids.download_checked("top ids"), ref_ids);
    expect_close(lp.download_checked("logprobs"), ref_lp, k_logprob_tol, "logprobs",
                 [](float x) { return static_cast<double>(x); });
    // The sampled token's own log-probability (greedy or not, in the top list or not).
    expect_close(sampled.download_checked("sampled logprobs"), ref_sampled, k_logprob_tol,
                 "sampled logprobs", [](float x) { return static_cast<double>(x); });
  }
  if (tokens_out) *tokens_out = got;
}

// Distinct logits by construction: a random permutation of evenly spaced values.
std::vector<float> distinct_logits(int rows, int vocab, unsigned seed, float spread) {
  std::mt19937 rng(seed);
  std::vector<float> out;
  std::vector<int> perm(vocab);
  for (int r = 0; r < rows; ++r) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int v : perm)
      out.push_back(spread * (static_cast<float>(v) / static_cast<float>(vocab) - 0.5f));
  }
  return out;
}

}  // namespace

TEST(Sampling, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  const int vocabs[] = {1, 7, 97, 1001, 32000, 128256};
  unsigned seed = 300;
  for (int vocab : vocabs) {
    for (float spread : {4.0f, 30.0f}) {
      SCOPED_TRACE(shape({{"vocab", vocab}, {"spread", static_cast<long long>(spread)}}));
      // Every combination of the knobs, each row its own seed; some rows greedy.
      std::vector<sampling_row> rows;
      std::uint64_t rseed = 1000;
      for (float t : {0.0f, 0.6f, 1.0f, 1.7f}) {
        for (int k : {0, 1, 5, 50}) {
          for (float tp : {1.0f, 0.9f, 0.3f, 1e-6f}) {
            for (float pen : {1.0f, 1.3f}) {
              if (t == 0.0f && (k != 0 || tp != 1.0f)) continue;
              rows.push_back({t, k, tp, pen, ++rseed, rseed % 5});
            }
          }
        }
      }
      const int n = static_cast<int>(rows.size());
      const auto logits = distinct_logits(n, vocab, ++seed, spread);
      std::mt19937 rng(seed);
      std::vector<std::int32_t> prev, offsets = {0};
      for (int r = 0; r < n; ++r) {
        const int count = static_cast<int>(rng() % 40);
        for (int j = 0; j < count; ++j)
          prev.push_back(static_cast<std::int32_t>(rng() % (vocab + 3)) - 1);
        offsets.push_back(static_cast<std::int32_t>(prev.size()));
      }
      std::vector<std::int32_t> got;
      check_sampling(logits, vocab, rows, prev, offsets, 5, s.get(), &got);
      // top-k 1 and tiny top-p without a penalty are greedy.
      for (int r = 0; r < n; ++r) {
        if (rows[r].repetition_penalty != 1.0f || (rows[r].top_k != 1 && rows[r].top_p > 1e-3f))
          continue;
        const float* row_logits = logits.data() + static_cast<std::size_t>(r) * vocab;
        const int argmax =
            static_cast<int>(std::max_element(row_logits, row_logits + vocab) - row_logits);
        EXPECT_EQ(got[r], argmax) << "row " << r;
      }
    }
  }
}

TEST(Sampling, ManySeedsAndTiesMatchCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  // 512 rows, one seed each, on one random row of logits repeated; then logits on a coarse grid
  // (ties everywhere: the order and the integer weights must still agree exactly).
  for (bool ties : {false, true}) {
    for (int vocab : {31, 32000}) {
      SCOPED_TRACE(shape({{"vocab", vocab}, {"ties", ties}}));
      std::vector<sampling_row> rows;
      for (std::uint64_t i = 0; i < 512; ++i) {
        rows.push_back({0.8f, static_cast<int>(i % 3 == 0 ? 0 : 40), i % 2 ? 0.95f : 1.0f, 1.0f,
                        977 * i + 5, i});
      }
      std::mt19937 rng(vocab);
      std::normal_distribution<float> d(0.0f, 2.0f);
      std::vector<float> one(vocab);
      for (auto& x : one) x = ties ? std::round(d(rng) * 2.0f) / 2.0f : d(rng);
      std::vector<float> logits;
      for (std::size_t r = 0; r < rows.size(); ++r)
        logits.insert(logits.end(), one.begin(), one.end());
      check_sampling(logits, vocab, rows, {}, {}, ties ? 3 : 0, s.get());
    }
  }
}

TEST(Sampling, RepetitionPenaltyFlipsTheChoice) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  const std::vector<float> logits = {2.0f, 1.9f, -3.0f, /* row 1 */ -1.2f, -4.0f, -1.0f};
  const std::vector<std::int32_t> prev = {0, 0, 9, -1, 2};
  const std::vector<std::int32_t> offsets = {0, 4, 5};
  std::vector<std::int32_t> got;
  check_sampling(logits, 3, {{1, 1, 1.0f, 1.5f, 0, 0}, {1, 1, 1.0f, 1.5f, 0, 0}}, prev, offsets, 0,
                 s.get(), &got);
  EXPECT_EQ(got, (std::vector<std::int32_t>{1, 0}));
  check_sampling(logits, 3, {{1, 1, 1.0f, 1.0f, 0, 0}, {1, 1, 1.0f, 1.0f, 0, 0}}, prev, offsets, 0,
                 s.get(), &got);
  EXPECT_EQ(got, (std::vector<std::int32_t>{0, 2}));
}

TEST(Sampling, TopLogprobsBeyondVocabulary) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  check_sampling({0.5f}, 1,
                 {
                     {0, 0, 1.0f, 1.0f, 0, 0},
                 },
                 {}, {}, 3, s.get());
  check_sampling({0.5f, -1.0f, 0.5f}, 3, {{1.0f, 0, 0.5f, 1.0f, 4, 2}}, {}, {}, 5, s.get());
}

TEST(Ops, LaunchersRejectBadArguments) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  cuda::device_buffer b(1 << 16);
  auto* h = b.data<bf16_bits>();
  EXPECT_THROW(cuda::embedding({b.data<std::int32_t>(), h, h, 1, 0, 1}, s.get()),
               std::invalid_argument);
  EXPECT_THROW(cuda::rms_norm({h, nullptr, h, h, 1, -3, 1e-5f}, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::rms_norm({h, h, h, h + 8, 1, 8, 1e-5f}, s.get()), std::invalid_argument);
  rope_params r;
  r.q = h;
  r.positions = b.data<std::int32_t>();
  r.num_tokens = 1;
  r.num_q_heads = 1;
  r.head_dim = 7;
  EXPECT_THROW(cuda::rope(r, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::swiglu({h, h, 1, 0}, s.get()), std::invalid_argument);
  sampling_params sp;
  sp.logits = b.data<float>();
  sp.num_rows = 1;
  sp.vocab = cuda::k_sampling_max_vocab + 1;
  EXPECT_THROW(cuda::sampling(sp, s.get()), std::invalid_argument);
  sp.vocab = 10;
  sp.top_logprobs = cuda::k_sampling_max_top_logprobs + 1;
  EXPECT_THROW(cuda::sampling(sp, s.get()), std::invalid_argument);
}

TEST(Sampling, LargeVocabularyPenaltyBitmapOver48KiB) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  // 500009 ids: a 61 KiB penalty bitmap, past the default dynamic shared-memory limit.
  const int vocab = 500009;
  const std::vector<sampling_row> rows = {{0, 0, 1.0f, 1.0f, 1, 1},
                                          {1.0f, 0, 0.9f, 1.2f, 2, 3},
                                          {0.7f, 20, 1.0f, 1.2f, 3, 4},
                                          {1.1f, 0, 1.0f, 1.0f, 4, 5}};
  const auto logits = distinct_logits(static_cast<int>(rows.size()), vocab, 77, 12.0f);
  std::vector<std::int32_t> prev, offsets = {0};
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (int j = 0; j < 1000; ++j)
      prev.push_back(static_cast<std::int32_t>((j * 7919 + r) % vocab));
    offsets.push_back(static_cast<std::int32_t>(prev.size()));
  }
  check_sampling(logits, vocab, rows, prev, offsets, 2, s.get());
}
