// Bandwidth kernels against their references: copy is exact, write stores the reference pattern,
// read folds to the reference XOR; guard bands around each output stay untouched. Every launch
// variant (cache hint x accesses in flight x traversal) runs; odd sizes hit the 16-byte tails and
// the partial last group; passes > 1 hit the wrapped path.
#include <random>

#include "cuda/memory.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/memory_reference.hpp"

using namespace ridgeline;

namespace {
constexpr std::size_t k_guard = 256;  // bytes of guard band on each side
constexpr unsigned char k_poison = 0xa5;

std::vector<unsigned char> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

// Every launcher branch, with a small grid (5 blocks) so that blocks loop several times.
std::vector<cuda::bandwidth_launch> variants(std::size_t bytes, std::size_t passes) {
  std::vector<cuda::bandwidth_launch> v;
  for (auto hint : {cuda::cache_hint::streaming, cuda::cache_hint::l2, cuda::cache_hint::normal}) {
    for (int unroll : {4, 8}) {
      for (bool chunked : {false, true}) {
        for (int grid : {0, 5}) v.push_back({bytes, passes, hint, grid, unroll, chunked});
      }
    }
  }
  return v;
}

std::string describe(const cuda::bandwidth_launch& l) {
  return "bytes=" + std::to_string(l.bytes) + " passes=" + std::to_string(l.passes) +
         " hint=" + std::to_string(static_cast<int>(l.hint)) + " unroll=" +
         std::to_string(l.unroll) + " chunked=" + std::to_string(l.chunked) +
         " grid=" + std::to_string(l.grid);
}
}  // namespace

TEST(Memory, CopyIsExactAtOddSizes) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17},
                            std::size_t{4099}, std::size_t{1000003}, std::size_t{(16 << 20) + 12}}) {
    const auto src_host = random_bytes(bytes, static_cast<unsigned>(bytes));
    auto src = test::upload(src_host);
    std::vector<unsigned char> dst_host(bytes + 2 * k_guard, k_poison);
    auto dst = test::upload(dst_host);
    auto all = variants(bytes, 1);
    // The bulk-copy path: chunk sizes that divide the buffer or not, default and small grids.
    for (int chunk : {16, 4112, 16384, 56 << 10}) {
      for (int grid : {0, 3}) {
        for (bool contiguous : {false, true}) {
          cuda::bandwidth_launch b{bytes, 1, cuda::cache_hint::normal, grid, 4, false};
          b.bulk = true;
          b.bulk_chunk_bytes = chunk;
          b.bulk_contiguous = contiguous;
          all.push_back(b);
        }
      }
    }
    for (const auto& l : all) {
      SCOPED_TRACE(describe(l) + " bulk=" + std::to_string(l.bulk) + " chunk=" +
                   std::to_string(l.bulk_chunk_bytes) + " contiguous=" +
                   std::to_string(l.bulk_contiguous));
      RIDGELINE_CUDA_CHECK(cudaMemset(dst.data(), k_poison, dst.bytes()));
      cuda::launch_copy(dst.data<unsigned char>() + k_guard, src.data(), l, s.get());
      s.synchronize();
      const auto back = test::download<unsigned char>(dst, 0, dst_host.size());
      for (std::size_t i = 0; i < k_guard; ++i) {
        ASSERT_EQ(back[i], k_poison) << "guard before";
        ASSERT_EQ(back[k_guard + bytes + i], k_poison) << "guard after";
      }
      for (std::size_t i = 0; i < bytes; ++i) {
        ASSERT_EQ(back[k_guard + i], src_host[i]) << "first mismatch at byte " << i;
      }
    }
  }
}

TEST(Memory, CopyWithPassesWrapsOverBuffer) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  const std::size_t bytes = 1 << 16;
  const auto src_host = random_bytes(bytes, 3);
  auto src = test::upload(src_host);
  cuda::device_buffer dst(bytes);
  for (const auto& l : variants(bytes, 37)) {
    SCOPED_TRACE(describe(l));
    RIDGELINE_CUDA_CHECK(cudaMemset(dst.data(), k_poison, bytes));
    cuda::launch_copy(dst.data(), src.data(), l, s.get());
    s.synchronize();
    EXPECT_EQ(test::download<unsigned char>(dst, 0, bytes), src_host);
  }
  EXPECT_THROW(cuda::launch_copy(dst.data(), src.data(), {bytes - 16, 2, cuda::cache_hint::l2, 0, 4, false}, s.get()),
               std::invalid_argument);
}

TEST(Memory, WriteStoresReferencePattern) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  for (std::size_t words : {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{257},
                            std::size_t{1 << 20}, std::size_t{(1 << 20) + 5}}) {
    const std::size_t bytes = 4 * words;
    std::vector<unsigned char> init(bytes + 2 * k_guard, k_poison);
    auto dst = test::upload(init);
    std::uint32_t seed = 12345u + static_cast<std::uint32_t>(words);
    for (const auto& l : variants(bytes, 1)) {
      SCOPED_TRACE(describe(l));
      ++seed;
      RIDGELINE_CUDA_CHECK(cudaMemset(dst.data(), k_poison, dst.bytes()));
      cuda::launch_write(dst.data<unsigned char>() + k_guard, seed, l, s.get());
      s.synchronize();
      const auto back = test::download<unsigned char>(dst, 0, init.size());
      for (std::size_t i = 0; i < k_guard; ++i) {
        ASSERT_EQ(back[i], k_poison);
        ASSERT_EQ(back[k_guard + bytes + i], k_poison);
      }
      const auto w = test::download<std::uint32_t>(dst, k_guard, words);
      for (std::size_t i = 0; i < words; ++i) {
        ASSERT_EQ(w[i], cpu::write_pattern_word(i, seed)) << "word " << i << " of " << words;
      }
    }
  }
}

TEST(Memory, ReadFoldsToReferenceXor) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  cuda::device_buffer sink(4);
  for (std::size_t words : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, std::size_t{1000003}}) {
    std::mt19937 rng(static_cast<unsigned>(words));
    std::vector<std::uint32_t> host(words);
    for (auto& x : host) x = static_cast<std::uint32_t>(rng());
    auto src = test::upload(host);
    for (const auto& l : variants(4 * words, 1)) {
      SCOPED_TRACE(describe(l));
      cuda::launch_read(src.data(), sink.data<std::uint32_t>(), l, s.get());
      s.synchronize();
      EXPECT_EQ(test::download<std::uint32_t>(sink, 0, 1)[0], cpu::xor_fold(host));
    }
  }
  // An odd number of passes over a power-of-two buffer folds to the single-pass XOR.
  std::vector<std::uint32_t> host(1 << 14);
  std::mt19937 rng(9);
  for (auto& x : host) x = static_cast<std::uint32_t>(rng());
  auto src = test::upload(host);
  for (const auto& l : variants(4 * host.size(), 5)) {
    SCOPED_TRACE(describe(l));
    cuda::launch_read(src.data(), sink.data<std::uint32_t>(), l, s.get());
    s.synchronize();
    EXPECT_EQ(test::download<std::uint32_t>(sink, 0, 1)[0], cpu::xor_fold(host));
  }
}

TEST(Memory, LaunchersRejectBadArguments) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  cuda::device_buffer b(64), sink(4);
  auto* out = sink.data<std::uint32_t>();
  EXPECT_THROW(cuda::launch_read(b.data(), out, {0, 1, cuda::cache_hint::l2, 0, 4, false}, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::launch_read(b.data<unsigned char>() + 4, out, {16, 1, cuda::cache_hint::l2, 0, 4, false}, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::launch_write(b.data(), 1, {6, 1, cuda::cache_hint::l2, 0, 4, false}, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::launch_copy(b.data(), b.data(), {16, 1, cuda::cache_hint::l2, 0, 3, false}, s.get()), std::invalid_argument);
  cuda::bandwidth_launch bulk{64, 1, cuda::cache_hint::normal, 0, 4, false};
  bulk.bulk = true;
  bulk.bulk_chunk_bytes = 24;  // not a multiple of 16
  EXPECT_THROW(cuda::launch_copy(b.data(), b.data(), bulk, s.get()), std::invalid_argument);
}
