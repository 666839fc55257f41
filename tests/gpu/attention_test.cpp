// kv_append and paged causal attention on the GPU against the CPU references, on random inputs
// with shuffled (non-contiguous) block tables. Every unused cache slot, spare block and unused
// block-table entry holds or points at NaN, so a kernel reading past a sequence's end or through a
// wrong table entry fails. Outputs are poisoned (a NaN pattern) and sit between guard bands.
//
// Tolerance per element, against the unrounded double reference: |gpu - ref| <= atol + rtol*|ref|.
//   rtol = 2^-8: the bf16 output rounding (unit roundoff of an 8-bit significand).
//   decode  atol = 2^-12: fp32 accumulation over <= ~4000 keys (~4000 * 2^-24 relative to the
//           largest |v| = 1, i.e. ~2^-12 at worst, ~2^-17 typically) and exp2f's 2-ulp error.
//   prefill atol = 2^-8 + 2^-12: P is rounded to bf16 before the P.V tensor-core product, an error
//           of at most 2^-8 * sum p|v| / sum p <= 2^-8 * max|v| = 2^-8 (|v| <= 1), plus the above.
// Indexing or masking mistakes move outputs by ~0.1 (q spans [-3, 3], so softmax is peaked).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>

#include "cuda/attention.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;

namespace {

constexpr bf16_bits k_nan = 0x7fc0;     // what unused cache slots hold
constexpr bf16_bits k_poison = 0x7fa5;  // a NaN: outputs before the run, and the guard bands
constexpr std::size_t k_guard = 256;    // elements of guard band on each side of an output

struct tolerance {
  double atol, rtol;
};
const tolerance k_decode_tol{std::ldexp(1.0, -12), std::ldexp(1.0, -8)};
const tolerance k_prefill_tol{std::ldexp(1.0, -8) + std::ldexp(1.0, -12), std::ldexp(1.0, -8)};

struct seq_spec {
  int len;  // tokens in the cache, the new ones included
  int n;    // query tokens (its last n positions)
};

struct case_spec {
  int num_q_heads, num_kv_heads, head_dim, block_size;
  std::vector<seq_spec> seqs;
  int split_tokens = 0;
  std::string describe() const {
    std::ostringstream os;
    os << "hq=" << num_q_heads << " hkv=" << num_kv_heads << " d=" << head_dim
       << " bs=" << block_size << " split=" << split_tokens << " seqs(len/n)=";
    for (const auto& s : seqs) os << s.len << "/" << s.n << " ";
    return os.str();
  }
};

bf16_bits random_bf16(std::mt19937& rng, float amplitude) {
  return cpu::float_to_bf16(std::uniform_real_distribution<float>(-amplitude, amplitude)(rng));
}

// Host side of a case: q, the paged cache, tables; the same params feed the reference (host
// pointers) and the launcher (device pointers).
struct host_case {
  case_spec spec;
  int num_q_tokens = 0, num_blocks = 0, max_blocks = 0;
  std::vector<bf16_bits> q, cache;
  std::vector<std::int32_t> q_offsets, tables, lens;

  // seq_data_seed: when >= 0, sequence 0's q, K and V come from this seed alone (the others from
  // rng), so that the same sequence can be placed in different batches.
  host_case(case_spec s, std::mt19937& rng, int seq_data_seed = -1) : spec(std::move(s)) {
    const int hq = spec.num_q_heads, hkv = spec.num_kv_heads, d = spec.head_dim,
              bs = spec.block_size;
    const int num_seqs = static_cast<int>(spec.seqs.size());
    int used = 0;
    q_offsets.push_back(0);
    for (const auto& sq : spec.seqs) {
      const int blocks = (sq.len + bs - 1) / bs;
      used += blocks;
      max_blocks = std::max(max_blocks, blocks + 1);  // one unused entry at least
      q_offsets.push_back(q_offsets.back() + sq.n);
      lens.push_back(sq.len);
    }
    num_q_tokens = q_offsets.back();
    num_blocks = used + 3;  // spare blocks, all NaN
    std::vector<std::int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const std::int32_t nan_block = perm.back();
    tables.assign(static_cast<std::size_t>(num_seqs) * max_blocks, nan_block);
    cache.assign(static_cast<std::size_t>(num_blocks) * 2 * hkv * bs * d, k_nan);
    q.resize(static_cast<std::size_t>(num_q_tokens) * hq * d);
    int next = 0;
    for (int si = 0; si < num_seqs; ++si) {
      std::mt19937 own(static_cast<unsigned>(seq_data_seed));
      std::mt19937& r = (si == 0 && seq_data_seed >= 0) ? own : rng;
      const auto& sq = spec.seqs[si];
      for (int b = 0; b < (sq.len + bs - 1) / bs; ++b) tables[si * max_blocks + b] = perm[next++];
      for (int pos = 0; pos < sq.len; ++pos) {
        const std::int64_t block = tables[si * max_blocks + pos / bs];
        for (int kv = 0; kv < 2; ++kv) {
          for (int h = 0; h < hkv; ++h) {
            for (int i = 0; i < d; ++i) {
              cache[(((block * 2 + kv) * hkv + h) * bs + pos % bs) * d + i] = random_bf16(r, 1.0f);
            }
          }
        }
      }
      for (std::int64_t e = std::int64_t{q_offsets[si]} * hq * d;
           e < std::int64_t{q_offsets[si + 1]} * hq * d; ++e) {
        q[e] = random_bf16(r, 3.0f);
      }
    }
  }

  attention_params params(const bf16_bits* q_p, bf16_bits* out_p, bf16_bits* cache_p,
                          const std::int32_t* offsets_p, const std::int32_t* tables_p,
                          const std::int32_t* lens_p) const {
    attention_params p;
    p.q = q_p;
    p.out = out_p;
    p.q_offsets = offsets_p;
    p.num_q_tokens = num_q_tokens;
    p.num_q_heads = spec.num_q_heads;
    p.scale = 1.0f / std::sqrt(static_cast<float>(spec.head_dim));
    p.kv.data = cache_p;
    p.kv.num_blocks = num_blocks;
    p.kv.block_size = spec.block_size;
    p.kv.num_kv_heads = spec.num_kv_heads;
    p.kv.head_dim = spec.head_dim;
    p.kv.block_tables = tables_p;
    p.kv.max_blocks_per_seq = max_blocks;
    p.kv.seq_lens = lens_p;
    p.kv.num_seqs = static_cast<int>(spec.seqs.size());
    p.split_tokens = spec.split_tokens;
    return p;
  }

  std::size_t out_elems() const {
    return static_cast<std::size_t>(num_q_tokens) * spec.num_q_heads * spec.head_dim;
  }

  // Runs the launcher; returns the output (guard bands checked and stripped) and the workspace
  // bytes it asked for.
  std::vector<bf16_bits> run_gpu(cudaStream_t stream, std::int64_t* workspace_bytes = nullptr) {
    auto d_q = test::upload(q);
    auto d_cache = test::upload(cache);
    auto d_offsets = test::upload(q_offsets);
    auto d_tables = test::upload(tables);
    auto d_lens = test::upload(lens);
    const std::size_t n = out_elems();
    auto d_out = test::upload(std::vector<bf16_bits>(n + 2 * k_guard, k_poison));
    auto p = params(d_q.data<bf16_bits>(), d_out.data<bf16_bits>() + k_guard,
                    d_cache.data<bf16_bits>(), d_offsets.data<std::int32_t>(),
                    d_tables.data<std::int32_t>(), d_lens.data<std::int32_t>());
    const std::int64_t ws = cuda::attention_workspace_bytes(p);
    if (workspace_bytes) *workspace_bytes = ws;
    cuda::device_buffer d_ws(static_cast<std::size_t>(ws));
    if (ws > 0) RIDGELINE_CUDA_CHECK(cudaMemset(d_ws.data(), 0xff, d_ws.bytes()));  // NaN floats
    p.workspace = d_ws.data<float>();
    p.workspace_bytes = ws;
    const std::vector<std::int32_t> zeros(lens.size() * spec.num_kv_heads, 0);
    auto d_counters = test::upload(zeros);
    p.split_counters = d_counters.data<std::int32_t>();
    cuda::attention(p, stream, /*pdl=*/true);  // PDL changes scheduling only, never bits
    RIDGELINE_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(test::download<std::int32_t>(d_counters, 0, zeros.size()) == zeros)
        << "split counters not left at zero";
    auto all = test::download<bf16_bits>(d_out, 0, n + 2 * k_guard);
    for (std::size_t i = 0; i < k_guard; ++i) {
      EXPECT_EQ(all[i], k_poison) << "guard band before the output, element " << i;
      EXPECT_EQ(all[k_guard + n + i], k_poison) << "guard band after the output, element " << i;
    }
    // The cache is read-only for attention.
    EXPECT_TRUE(test::download<bf16_bits>(d_cache, 0, cache.size()) == cache) << "cache modified";
    return {all.begin() + k_guard, all.begin() + k_guard + static_cast<std::ptrdiff_t>(n)};
  }

  std::vector<double> reference() const {
    std::vector<bf16_bits> out(out_elems());
    std::vector<double> exact(out_elems());
    auto p = params(q.data(), out.data(), const_cast<bf16_bits*>(cache.data()), q_offsets.data(),
                    tables.data(), lens.data());
    cpu::attention(p, exact.data());
    return exact;
  }
};

// Every element within tolerance; reports the worst and the first few mismatches.
void expect_close(const host_case& c, const std::vector<bf16_bits>& gpu,
                  const std::vector<double>& ref, tolerance tol) {
  ASSERT_EQ(gpu.size(), ref.size());
  const int hq = c.spec.num_q_heads, d = c.spec.head_dim;
  auto where = [&](std::size_t i) {
    std::ostringstream os;
    os << "(row " << i / (hq * d) << ", head " << (i / d) % hq << ", dim " << i % d << ")";
    return os.str();
  };
  std::size_t bad = 0, worst_at = 0;
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const double g = cpu::bf16_to_float(gpu[i]);
    const double err = std::fabs(g - ref[i]);
    const double ratio = err / (tol.atol + tol.rtol * std::fabs(ref[i]));
    if (!(ratio <= 1.0)) {  // NaN fails too
      if (bad < 5) {
        ADD_FAILURE() << "mismatch at " << where(i) << ": gpu " << g << " ref " << ref[i] << " err "
                      << err;
      }
      ++bad;
    }
    if (!(ratio <= worst)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_at = i;
    }
  }
  EXPECT_EQ(bad, 0u) << bad << " of " << gpu.size() << " elements out of tolerance; worst "
                     << where(worst_at) << " at " << worst << " x its tolerance";
}

void check_case(const case_spec& spec, tolerance tol, unsigned seed,
                std::int64_t* workspace_bytes = nullptr) {
  SCOPED_TRACE(spec.describe());
  std::mt19937 rng(seed);
  host_case c(spec, rng);
  cuda::stream s;
  const auto gpu = c.run_gpu(s.get(), workspace_bytes);
  expect_close(c, gpu, c.reference(), tol);
}

std::vector<seq_spec> decode_seqs(std::initializer_list<int> lens) {
  std::vector<seq_spec> v;
  for (int l : lens) v.push_back({l, 1});
  return v;
}

}  // namespace

TEST(KvAppend, CudaMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  struct shape {
    int heads, dim, block_size, tokens;
  };
  for (const shape sh : {shape{8, 128, 16, 1}, shape{32, 128, 16, 7}, shape{3, 64, 32, 100},
                         shape{1, 64, 16, 257}}) {
    SCOPED_TRACE("heads=" + std::to_string(sh.heads) + " dim=" + std::to_string(sh.dim) +
                 " bs=" + std::to_string(sh.block_size) + " tokens=" + std::to_string(sh.tokens));
    std::mt19937 rng(static_cast<unsigned>(sh.tokens * 31 + sh.heads));
    const int num_blocks = (sh.tokens + sh.block_size - 1) / sh.block_size + 2;
    const std::size_t row = static_cast<std::size_t>(sh.heads) * sh.dim;
    std::vector<bf16_bits> k(sh.tokens * row), v(sh.tokens * row);
    for (auto& x : k) x = random_bf16(rng, 1.0f);
    for (auto& x : v) x = random_bf16(rng, 1.0f);
    std::vector<std::int32_t> slots(static_cast<std::size_t>(num_blocks) * sh.block_size);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(sh.tokens);
    for (int t = 0; t < sh.tokens; t += 3) slots[t] = -1;  // every third token skips
    std::vector<bf16_bits> cache(static_cast<std::size_t>(num_blocks) * 2 * sh.block_size * row);
    for (auto& x : cache) x = random_bf16(rng, 1.0f);
    std::vector<bf16_bits> guarded(cache.size() + 2 * k_guard, k_poison);
    std::copy(cache.begin(), cache.end(), guarded.begin() + k_guard);

    auto d_k = test::upload(k);
    auto d_v = test::upload(v);
    auto d_slots = test::upload(slots);
    auto d_cache = test::upload(guarded);
    kv_append_params p;
    p.k = d_k.data<bf16_bits>();
    p.v = d_v.data<bf16_bits>();
    p.slot_mapping = d_slots.data<std::int32_t>();
    p.num_tokens = sh.tokens;
    p.kv.data = d_cache.data<bf16_bits>() + k_guard;
    p.kv.num_blocks = num_blocks;
    p.kv.block_size = sh.block_size;
    p.kv.num_kv_heads = sh.heads;
    p.kv.head_dim = sh.dim;
    cuda::kv_append(p, s.get());
    s.synchronize();

    p.k = k.data();
    p.v = v.data();
    p.slot_mapping = slots.data();
    p.kv.data = guarded.data() + k_guard;
    cpu::kv_append(p);
    const auto back = test::download<bf16_bits>(d_cache, 0, guarded.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < back.size(); ++i) {
      if (back[i] != guarded[i] && bad++ < 5) ADD_FAILURE() << "element " << i << " differs";
    }
    EXPECT_EQ(bad, 0u);
  }
}

TEST(Attention, DecodeMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  const std::vector<case_spec> cases = {
      // Llama-2 heads (group 1), odd lengths around the block size and a prime near 1000.
      {32, 32, 128, 16, decode_seqs({1, 15, 16, 17, 1009})},
      // Llama-3 heads (group 4), block size 32, batch 3.
      {32, 8, 128, 32, decode_seqs({17, 1021, 3})},
      {8, 2, 64, 32, decode_seqs({1, 2, 31, 32, 33, 97, 500})},   // group 4, head_dim 64
      {16, 2, 128, 32, decode_seqs({600, 33, 64})},               // group 8
      {8, 4, 64, 16, decode_seqs({257})},                         // group 2, batch 1
      {4, 4, 128, 16, decode_seqs({1, 7, 16, 100, 999, 13, 2})},  // batch 7
  };
  unsigned seed = 1;
  for (const auto& c : cases) check_case(c, k_decode_tol, seed++);
}

TEST(Attention, DecodeSplitPathsMatchCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  // Fixed split sizes: smaller than, equal to and not a multiple of the block size; lengths on
  // either side of split boundaries; one split per sequence (split larger than every length).
  for (int split : {16, 64, 100, 2048}) {
    check_case({32, 8, 128, 16, decode_seqs({1, 63, 64, 65, 1000}), split}, k_decode_tol, 40u);
    check_case({8, 8, 64, 32, decode_seqs({129, 5, 2000}), split}, k_decode_tol, 41u);
    check_case({16, 2, 128, 16, decode_seqs({301, 1}), split}, k_decode_tol, 42u);  // group 8
  }
  // split_tokens = 0 with few CTAs and a long context: the launcher chooses to split.
  std::int64_t ws = 0;
  check_case({8, 8, 128, 16, decode_seqs({4001})}, k_decode_tol, 43u, &ws);
  EXPECT_GT(ws, 0) << "batch 1 x 8 heads over 4001 tokens should take the split path";
  check_case({32, 8, 64, 32, decode_seqs({1500, 7})}, k_decode_tol, 44u, &ws);
  EXPECT_GT(ws, 0);
  // ... and does not split a full batch.
  std::vector<seq_spec> many(64, seq_spec{37, 1});
  check_case({32, 32, 128, 16, many}, k_decode_tol, 45u, &ws);
  EXPECT_EQ(ws, 0) << "batch 64 x 32 heads fills the GPU without splitting";
}

TEST(Attention, DecodeShapesWithOtherGroupSizesUsePrefillKernel) {
  RIDGELINE_REQUIRE_GPU();
  // Group sizes 3 and 16 have no decode instantiation; the prefill kernel serves them.
  check_case({12, 4, 64, 16, decode_seqs({1, 77, 300})}, k_prefill_tol, 50u);
  check_case({16, 1, 128, 32, decode_seqs({45, 1000})}, k_prefill_tol, 51u);
}

TEST(Attention, PrefillMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  const std::vector<case_spec> cases = {
      // Mixed chunked prefill: whole prompts (n = len), chunks, and decode rows in one batch.
      {8, 8, 128, 16, {{17, 17}, {1, 1}, {300, 45}, {129, 1}, {64, 64}, {200, 65}, {16, 16}}},
      {8, 2, 64, 32, {{1000, 1000}, {15, 15}, {97, 33}}},
      {4, 1, 128, 16, {{977, 977}, {16, 15}, {33, 2}}},            // group 4
      {6, 2, 64, 16, {{70, 70}, {5, 3}, {128, 128}, {129, 127}}},  // group 3
      {16, 2, 128, 32, {{250, 250}, {1, 1}, {64, 63}}},            // group 8
      // The split size is ignored by the prefill kernel (it never splits).
      {8, 8, 64, 16, {{300, 300}, {40, 17}}, 64},
  };
  unsigned seed = 60;
  for (const auto& c : cases) check_case(c, k_prefill_tol, seed++);
}

TEST(Attention, DecodeIsBatchInvariantWithFixedSplit) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  for (const auto& [hq, hkv] : {std::pair{32, 32}, std::pair{32, 8}}) {
    SCOPED_TRACE("hq=" + std::to_string(hq) + " hkv=" + std::to_string(hkv));
    const std::size_t row = static_cast<std::size_t>(hq) * 128;
    std::vector<bf16_bits> alone;
    for (int others : {0, 8, 64}) {
      std::mt19937 rng(static_cast<unsigned>(1000 + others));
      std::uniform_int_distribution<int> len(1, 2500);
      std::vector<seq_spec> seqs = {{777, 1}};
      for (int i = 0; i < others; ++i) seqs.push_back({len(rng), 1});
      host_case c({hq, hkv, 128, 16, seqs, 256}, rng, /*seq_data_seed=*/7);
      const auto out = c.run_gpu(s.get());
      const std::vector<bf16_bits> seq0(out.begin(),
                                        out.begin() + static_cast<std::ptrdiff_t>(row));
      if (others == 0) {
        alone = seq0;
        expect_close(c, out, c.reference(), k_decode_tol);
      } else {
        EXPECT_TRUE(seq0 == alone) << "sequence 0 changed when run beside " << others << " others";
      }
    }
  }
}

TEST(Attention, LaunchersRejectBadArguments) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  std::mt19937 rng(5);
  host_case c({8, 2, 128, 16, decode_seqs({40, 3})}, rng);
  cuda::device_buffer q(1 << 20), out(1 << 20), cache(1 << 22), ints(4096), ws(64);
  auto good = [&] {
    auto p =
        c.params(q.data<bf16_bits>(), out.data<bf16_bits>(), cache.data<bf16_bits>(),
                 ints.data<std::int32_t>(), ints.data<std::int32_t>(), ints.data<std::int32_t>());
    return p;
  };
  auto expect_invalid = [&](attention_params p, const char* what) {
    EXPECT_THROW(cuda::attention(p, s.get()), std::invalid_argument) << what;
  };
  auto p = good();
  p.kv.head_dim = 96;
  expect_invalid(p, "head_dim 96");
  p = good();
  p.num_q_heads = 7;
  expect_invalid(p, "7 q heads over 2 kv heads");
  p = good();
  p.q = nullptr;
  expect_invalid(p, "null q");
  p = good();
  p.kv.block_size = 24;
  expect_invalid(p, "block size not a power of two");
  p = good();
  p.out = out.data<bf16_bits>() + 1;
  expect_invalid(p, "misaligned out");
  p = good();
  p.split_tokens = 16;  // needs a workspace
  p.workspace = ws.data<float>();
  p.workspace_bytes = 64;
  expect_invalid(p, "workspace too small");
  EXPECT_GT(cuda::attention_workspace_bytes(p), 64);
  cuda::device_buffer big_ws(static_cast<std::size_t>(cuda::attention_workspace_bytes(p)));
  p.workspace = big_ws.data<float>();
  p.workspace_bytes = cuda::attention_workspace_bytes(p);
  expect_invalid(p, "split without split_counters");

  kv_append_params a;
  a.num_tokens = 1;
  a.kv = good().kv;
  EXPECT_THROW(cuda::kv_append(a, s.get()), std::invalid_argument) << "null k, v, slots";
}

// The plan from shapes alone (no pointers): decode or prefill, the split, and the buffers, the
// same workspace the launcher asks a pointer-carrying call for; bad shapes throw.
TEST(Attention, PlanFromShapesAlone) {
  RIDGELINE_REQUIRE_GPU();  // the automatic split depends on the device's SM count
  cuda::attention_shape s;
  s.num_seqs = 1;
  s.num_q_tokens = 1;
  s.num_q_heads = 32;
  s.num_kv_heads = 32;
  s.head_dim = 128;
  s.block_size = 16;
  s.max_blocks_per_seq = 4096 / 16;
  // 32 CTAs leave any GPU under-filled (4 per SM): the automatic split.
  const cuda::attention_plan a = cuda::plan_attention(s);
  EXPECT_TRUE(a.decode);
  ASSERT_GT(a.split_tokens, 0);
  EXPECT_EQ(a.split_tokens % 64, 0);
  EXPECT_EQ(a.max_splits, (4096 + a.split_tokens - 1) / a.split_tokens);
  EXPECT_EQ(a.workspace_bytes, std::int64_t{a.max_splits} * 32 * (128 + 1) * 4);
  EXPECT_EQ(a.split_counters, 32);

  // The launcher's query with (placeholder) pointers agrees.
  auto* fake = reinterpret_cast<bf16_bits*>(std::uintptr_t{256});
  const auto* ifake = reinterpret_cast<const std::int32_t*>(std::uintptr_t{256});
  attention_params p;
  p.q = fake;
  p.out = fake;
  p.q_offsets = ifake;
  p.num_q_tokens = s.num_q_tokens;
  p.num_q_heads = s.num_q_heads;
  p.scale = 1.0f;
  p.kv = {fake, 1, s.block_size, s.num_kv_heads, s.head_dim, ifake, s.max_blocks_per_seq, ifake,
          s.num_seqs};
  EXPECT_EQ(cuda::attention_workspace_bytes(p), a.workspace_bytes);
  const cuda::attention_shape back = cuda::shape_of(p);
  EXPECT_EQ(cuda::plan_attention(back).workspace_bytes, a.workspace_bytes);

  // A fixed split splits every sequence, into ceil(context / split) pieces.
  s.split_tokens = 64;
  const cuda::attention_plan fixed = cuda::plan_attention(s);
  EXPECT_TRUE(fixed.decode);
  EXPECT_EQ(fixed.split_tokens, 64);
  EXPECT_EQ(fixed.max_splits, 64);
  EXPECT_EQ(fixed.workspace_bytes, 64LL * 32 * 129 * 4);

  // Several queries per sequence, or a group size the decode kernel lacks: prefill, no buffers.
  s.split_tokens = 0;
  s.num_q_tokens = 7;
  cuda::attention_plan pre = cuda::plan_attention(s);
  EXPECT_FALSE(pre.decode);
  EXPECT_EQ(pre.workspace_bytes, 0);
  EXPECT_EQ(pre.split_counters, 0);
  s.num_q_tokens = 1;
  s.num_q_heads = 96;  // group 3
  pre = cuda::plan_attention(s);
  EXPECT_FALSE(pre.decode);
  // Many sequences fill the GPU: decode without a split.
  s.num_q_heads = 32;
  s.num_seqs = s.num_q_tokens = 4096;
  const cuda::attention_plan full = cuda::plan_attention(s);
  EXPECT_TRUE(full.decode);
  EXPECT_EQ(full.split_tokens, 0);
  EXPECT_EQ(full.workspace_bytes, 0);

  s = back;
  s.head_dim = 96;
  EXPECT_THROW(cuda::plan_attention(s), std::invalid_argument);
  s = back;
  s.num_q_heads = 33;
  EXPECT_THROW(cuda::plan_attention(s), std::invalid_argument);
  s = back;
  s.block_size = 12;
  EXPECT_THROW(cuda::plan_attention(s), std::invalid_argument);
  s = back;
  s.num_seqs = 0;
  EXPECT_THROW(cuda::plan_attention(s), std::invalid_argument);
}
