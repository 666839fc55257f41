// Intensity-sweep kernels against their CPU references (kernels/cpu/intensity_reference.cpp):
// the FFMA/HFMA2 kernels bit for bit, the wgmma kernels within a per-dtype tolerance of the exact
// matrix products, which is what checks the A-fragment, B-descriptor and accumulator layouts.
// Small grids (1, 3, 5, 7 blocks) over chunk counts that do not divide evenly, every
// fma_per_vector branch (folded 1, shared operands at multiples of 16, unrolled 16 and the
// remainder), every MMA width, MMA ratios
// both ways, leftover chunks after the last MMA, tile and per-thread outputs. Outputs are poisoned
// and followed by a guard band.
#include <cmath>
#include <cstring>
#include <random>

#include "cuda/intensity.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/intensity_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;

namespace {
using test::poisoned_output;

// Words of valid values of the kernel's dtype in [-1, 1) (never NaN/Inf): fp32, or pairs of
// bf16 / fp16. The MMA kernels only XOR-fold the stream, so they get raw random bits.
std::vector<std::uint32_t> random_words(std::size_t n, unsigned seed, intensity_kernel k) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::uint32_t> w(n);
  for (auto& x : w) {
    switch (k) {
      case intensity_kernel::ffma_fp32: {
        const float f = u(rng);
        std::memcpy(&x, &f, 4);
        break;
      }
      case intensity_kernel::hfma2_bf16:
        x = cpu::float_to_bf16(u(rng)) | std::uint32_t{cpu::float_to_bf16(u(rng))} << 16;
        break;
      case intensity_kernel::hfma2_fp16:
        x = cpu::float_to_fp16(u(rng)) | std::uint32_t{cpu::float_to_fp16(u(rng))} << 16;
        break;
      default:
        x = static_cast<std::uint32_t>(rng());
        break;
    }
  }
  return w;
}

std::vector<std::uint8_t> random_operand(std::size_t elements, unsigned seed, bool bf16) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::uint8_t> v;
  for (std::size_t i = 0; i < elements; ++i) {
    if (bf16) {
      const std::uint16_t h = cpu::float_to_bf16(u(rng));
      v.push_back(static_cast<std::uint8_t>(h & 0xff));
      v.push_back(static_cast<std::uint8_t>(h >> 8));
    } else {
      v.push_back(cpu::float_to_fp8_e4m3(u(rng)));
    }
  }
  return v;
}

std::string describe(const intensity_plan& p) {
  return std::string(name(p.kernel)) + " grid=" + std::to_string(p.grid) +
         " chunks=" + std::to_string(chunks(p)) +
         " fma_per_vector=" + std::to_string(p.fma_per_vector) + " n=" + std::to_string(p.mma_n) +
         " chunks_per_mma=" + std::to_string(p.chunks_per_mma) +
         " mma_per_chunk=" + std::to_string(p.mma_per_chunk) +
         " store_tile=" + std::to_string(p.store_tile);
}

struct shape {
  int grid;
  std::uint64_t chunks;
};
}  // namespace

TEST(Intensity, ScalarKernelsMatchCpuReferenceBitForBit) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  const shape shapes[] = {{1, 1}, {3, 37}, {7, 5}, {5, 16}};
  for (auto k :
       {intensity_kernel::ffma_fp32, intensity_kernel::hfma2_bf16, intensity_kernel::hfma2_fp16}) {
    const std::uint64_t max_chunks = 37;
    const auto host =
        random_words(max_chunks * k_intensity_chunk_bytes / 4, 17 + static_cast<unsigned>(k), k);
    auto src = test::upload(host);
    for (std::uint32_t f : {1u, 2u, 6u, 16u, 40u, 48u}) {
      for (const auto& sh : shapes) {
        intensity_plan p;
        p.kernel = k;
        p.grid = sh.grid;
        p.bytes = sh.chunks * k_intensity_chunk_bytes;
        p.fma_per_vector = f;
        SCOPED_TRACE(describe(p));
        poisoned_output out(output_floats(p));
        cuda::launch_intensity(p, src.data(), nullptr, nullptr, out.buffer.data<float>(), nullptr,
                               s.get());
        s.synchronize();
        ASSERT_TRUE(test::bitwise_equal(out.values(), cpu::intensity_scalar(p, host)));
      }
    }
  }
}

TEST(Intensity, MmaKernelsMatchExactMatrixProducts) {
  RIDGELINE_REQUIRE_GPU();
  const auto dev = metrics::query_device(0);
  if (!dev || dev->compute_major != 9 || dev->compute_minor != 0) {
    GTEST_SKIP() << "wgmma kernels need compute capability 9.0 (sm_90a)";
  }
  cuda::stream s;
  // Tolerance relative to sum |a * b| of each output. bf16: fp32 accumulation, ~2^-23 per MMA;
  // fp8 relaxed to 1e-2: Hopper accumulates e4m3 products with fewer than fp32's mantissa bits.
  // A layout error moves whole products: errors ~0.3 of the magnitude, far above both.
  struct tol {
    intensity_kernel k;
    double rtol;
  };
  const tol tols[] = {{intensity_kernel::mma_bf16, 1e-4}, {intensity_kernel::mma_fp8, 1e-2}};
  const shape shapes[] = {{1, 4}, {3, 37}, {5, 8}};
  struct ratio {
    std::uint32_t chunks_per_mma, mma_per_chunk;
  };
  const ratio ratios[] = {{1, 1}, {4, 1}, {1, 3}, {2, 2}};
  for (const auto& t : tols) {
    const bool bf16 = t.k == intensity_kernel::mma_bf16;
    const auto host = random_words(37 * k_intensity_chunk_bytes / 4, 5, t.k);
    const auto a_host = random_operand(k_mma_m * (bf16 ? 16 : 32), 6, bf16);
    auto src = test::upload(host);
    auto a = test::upload(a_host);
    for (int n : k_mma_n_values) {
      const auto b_host = random_operand(static_cast<std::size_t>(n) * (bf16 ? 16 : 32), 7, bf16);
      auto b = test::upload(b_host);
      for (const auto& sh : shapes) {
        for (const auto& r : ratios) {
          for (bool store_tile : {false, true}) {
            intensity_plan p;
            p.kernel = t.k;
            p.grid = sh.grid;
            p.bytes = sh.chunks * k_intensity_chunk_bytes;
            p.mma_n = n;
            p.chunks_per_mma = r.chunks_per_mma;
            p.mma_per_chunk = r.mma_per_chunk;
            p.store_tile = store_tile;
            SCOPED_TRACE(describe(p));
            poisoned_output out(output_floats(p));
            poisoned_output fold(output_folds(p));
            cuda::launch_intensity(p, src.data(), a.data(), b.data(), out.buffer.data<float>(),
                                   fold.buffer.data<std::uint32_t>(), s.get());
            s.synchronize();
            const auto gpu = out.values();
            const auto gpu_fold = fold.values();
            const auto ref = cpu::intensity_mma(p, host, a_host, b_host);
            ASSERT_EQ(gpu.size(), ref.value.size());
            for (std::size_t i = 0; i < ref.fold.size(); ++i) {
              std::uint32_t g = 0;
              std::memcpy(&g, &gpu_fold[i], 4);
              ASSERT_EQ(g, ref.fold[i]) << "fold of thread " << i;
            }
            ASSERT_TRUE(test::within_magnitude(gpu, ref.value, ref.magnitude, t.rtol));
          }
        }
      }
    }
  }
}

TEST(Intensity, LauncherRejectsBadArguments) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  cuda::device_buffer src(2 * k_intensity_chunk_bytes), out(1 << 20), fold(1 << 16);
  intensity_plan p;
  p.bytes = k_intensity_chunk_bytes + 16;  // not a whole chunk
  EXPECT_THROW(
      cuda::launch_intensity(p, src.data(), nullptr, nullptr, out.data<float>(), nullptr, s.get()),
      std::invalid_argument);
  p.bytes = k_intensity_chunk_bytes;
  p.fma_per_vector = 3;
  EXPECT_THROW(
      cuda::launch_intensity(p, src.data(), nullptr, nullptr, out.data<float>(), nullptr, s.get()),
      std::invalid_argument);
  p.fma_per_vector = 2;
  EXPECT_THROW(cuda::launch_intensity(p, src.data<unsigned char>() + 4, nullptr, nullptr,
                                      out.data<float>(), nullptr, s.get()),
               std::invalid_argument);
  p.kernel = intensity_kernel::mma_bf16;
  EXPECT_THROW(cuda::launch_intensity(p, src.data(), nullptr, src.data(), out.data<float>(),
                                      fold.data<std::uint32_t>(), s.get()),
               std::invalid_argument);
  p.chunks_per_mma = 3;
  EXPECT_THROW(cuda::launch_intensity(p, src.data(), src.data(), src.data(), out.data<float>(),
                                      fold.data<std::uint32_t>(), s.get()),
               std::invalid_argument);
}
