// Tensor-core intensity kernels: wgmma.mma_async (sm_90a only; this file is built with
// -arch=sm_90a, see kernels/CMakeLists.txt) at a chosen FLOP per DRAM byte. The arithmetic and the
// FLOP/byte accounting are specified in intensity_plan.hpp; launch_intensity (intensity.cu)
// validates and calls launch_intensity_mma here.
//
// One block = one warpgroup (128 threads). B (N x K, K contiguous) sits in shared memory without
// swizzle, as 8-row x 16-byte core matrices: core matrix (n / 8, k-half) at byte
// 128 * (2 * (n / 8) + k-half), so the descriptor's leading byte offset (next core matrix along K)
// is 128 and its stride byte offset (next 8 rows along N) is 256. A comes from registers (the
// wgmma A fragment: register r of lane l in warp w holds row 16 w + l / 4 + 8 (r % 2), bytes
// 16 (r / 2) + 4 (l % 4) .. + 3), so the streamed data can be folded into it: the wgmma reads
// what was loaded. Accumulators are fp32 registers (N / 2 per thread).
//
// Per chunk every thread issues its 8 streaming loads, folds them into x, and, on an MMA chunk,
// waits for its previous wgmma group (A is about to change under it), folds x into A and issues
// mma_per_chunk wgmmas as one committed group, which runs while the next chunk loads. Variants:
// N = 8 (4 accumulators; 8 blocks per SM, as many loads in flight as the read kernel: the
// memory-bound end), N = 256 (128 accumulators, 167 registers: 3 blocks per SM whose groups
// overlap: the compute-bound end), N = 64 between. Napkin: m64n256k16 bf16 is 2^19 FLOP, 128 cycles of one
// SM's tensor cores at ~990 TFLOP/s dense; one per 16 KiB chunk is 32 FLOP/byte.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>

#include "check.hpp"
#include "intensity.hpp"

namespace ridgeline::cuda::detail {
namespace {

struct mma_bf16 {
  static constexpr std::uint32_t mantissa = 0x007f007fu;  // low 7 bits of both bf16 halves
};
struct mma_e4m3 {
  static constexpr std::uint32_t mantissa = 0x07070707u;  // low 3 bits of each byte
};

template <class Op, int N>
__device__ __forceinline__ void wgmma(float (&d)[N / 2], const std::uint32_t (&a)[4],
                                      std::uint64_t desc);

// The accumulator operands of an m64nN wgmma: N / 2 fp32 registers per thread, as the asm operand
// list and as the matching "%0, ..." text. One instruction per (operand type, N) below, from the
// same macro: only the shape, the types and the scale/transpose immediates differ.
#define RIDGELINE_WGMMA_D4 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
#define RIDGELINE_WGMMA_R4 \
  "%0, %1, %2, %3"
#define RIDGELINE_WGMMA_D32 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), \
    "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
    "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
    "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
    "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define RIDGELINE_WGMMA_R32 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define RIDGELINE_WGMMA_D128 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), \
    "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
    "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
    "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
    "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
    "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
    "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
    "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
    "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), \
    "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), \
    "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), \
    "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), \
    "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), \
    "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
    "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), \
    "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), \
    "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), \
    "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
#define RIDGELINE_WGMMA_R128 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, " \
  "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, " \
  "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, " \
  "%66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, " \
  "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, " \
  "%98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, " \
  "%111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, " \
  "%124, %125, %126, %127"

// A from registers (4 x b32), B from shared memory through `desc`, D += A * B (scale-d = 1).
// A_REGS, DESC, PRED: the operand numbers after the N / 2 accumulators. TAIL: the immediates after
// scale-d (bf16: scale-a, scale-b, transpose-b; e4m3 has no transpose).
#define RIDGELINE_WGMMA(OP, N, SHAPE_TYPES, A_REGS, DESC, PRED, TAIL)                           \
  template <>                                                                                  \
  __device__ __forceinline__ void wgmma<OP, N>(float(&d)[N / 2], const std::uint32_t(&a)[4],   \
                                               std::uint64_t desc) {                           \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n"                            \
                 "wgmma.mma_async.sync.aligned." SHAPE_TYPES " {" RIDGELINE_WGMMA_R_##N "}, {"    \
                 A_REGS "}, " DESC ", p, " TAIL ";\n}\n"                                       \
                 : RIDGELINE_WGMMA_D_##N                                                        \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));             \
  }

#define RIDGELINE_WGMMA_R_8 RIDGELINE_WGMMA_R4
#define RIDGELINE_WGMMA_D_8 RIDGELINE_WGMMA_D4
#define RIDGELINE_WGMMA_R_64 RIDGELINE_WGMMA_R32
#define RIDGELINE_WGMMA_D_64 RIDGELINE_WGMMA_D32
#define RIDGELINE_WGMMA_R_256 RIDGELINE_WGMMA_R128
#define RIDGELINE_WGMMA_D_256 RIDGELINE_WGMMA_D128

RIDGELINE_WGMMA(mma_bf16, 8, "m64n8k16.f32.bf16.bf16", "%4, %5, %6, %7", "%8", "%9", "1, 1, 0")
RIDGELINE_WGMMA(mma_bf16, 64, "m64n64k16.f32.bf16.bf16", "%32, %33, %34, %35", "%36", "%37", "1, 1, 0")
RIDGELINE_WGMMA(mma_bf16, 256, "m64n256k16.f32.bf16.bf16", "%128, %129, %130, %131", "%132", "%133", "1, 1, 0")
RIDGELINE_WGMMA(mma_e4m3, 8, "m64n8k32.f32.e4m3.e4m3", "%4, %5, %6, %7", "%8", "%9", "1, 1")
RIDGELINE_WGMMA(mma_e4m3, 64, "m64n64k32.f32.e4m3.e4m3", "%32, %33, %34, %35", "%36", "%37", "1, 1")
RIDGELINE_WGMMA(mma_e4m3, 256, "m64n256k32.f32.e4m3.e4m3", "%128, %129, %130, %131", "%132", "%133", "1, 1")

#undef RIDGELINE_WGMMA

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Keeps the compiler from moving accumulator accesses across the wgmma fences.
template <int R>
__device__ __forceinline__ void pin(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Shared-memory matrix descriptor, no swizzle: start address, leading byte offset 128 (the next
// core matrix along K), stride byte offset 256 (the next 8 rows along N), each >> 4.
__device__ __forceinline__ std::uint64_t b_descriptor(const void* smem) {
  const auto addr = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem));
  return std::uint64_t{(addr & 0x3ffffu) >> 4} | std::uint64_t{128 >> 4} << 16 |
         std::uint64_t{256 >> 4} << 32;
}

template <class Op, int N>
__global__ void __launch_bounds__(k_mma_threads, N == 256 ? 3 : (N == 64 ? 6 : 8))
    mma_kernel(const int4* __restrict__ src, std::uint64_t n_chunks, std::uint32_t chunks_per_mma,
               std::uint32_t mma_per_chunk, const std::uint32_t* __restrict__ a0,
               const int4* __restrict__ b, bool store_tile, float* __restrict__ out,
               std::uint32_t* __restrict__ fold) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ __align__(128) int4 b_smem[2 * N];  // [N / 8][2][8] core matrices of 16 bytes
  const int t = static_cast<int>(threadIdx.x);
  for (int i = t; i < 2 * N; i += k_mma_threads) {
    const int n = i / 2, half = i % 2;
    b_smem[(2 * (n / 8) + half) * 8 + n % 8] = b[i];
  }
  // Generic-proxy writes must be visible to the async proxy the wgmma reads shared memory with.
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  const std::uint64_t desc = b_descriptor(b_smem);
  const int warp = t / 32, lane = t % 32;
  std::uint32_t a[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    a[r] = a0[(16 * warp + lane / 4 + 8 * (r % 2)) * (k_mma_k_bytes / 4) + 4 * (r / 2) + lane % 4];
  }
  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
  std::uint32_t x = 0;
  const std::uint32_t mma_mask = chunks_per_mma - 1;
  constexpr std::uint64_t vectors_per_chunk = k_intensity_chunk_bytes / 16;
  for (std::uint64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    const int4* base = src + c * vectors_per_chunk + t;
    int4 v[k_mma_loads];
#pragma unroll
    for (int u = 0; u < k_mma_loads; ++u) v[u] = __ldcs(base + u * k_mma_threads);
#pragma unroll
    for (int u = 0; u < k_mma_loads; ++u) {
      x ^= static_cast<std::uint32_t>(v[u].x ^ v[u].y ^ v[u].z ^ v[u].w);
    }
    if ((static_cast<std::uint32_t>(c + 1) & mma_mask) != 0) continue;
    wgmma_wait_all();  // the previous group still reads a[]
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      asm volatile("" : "+r"(a[r])::"memory");  // not before the wait
      a[r] ^= x & Op::mantissa;
    }
    x = 0;
    wgmma_fence();
    pin(d);
    for (std::uint32_t m = 0; m < mma_per_chunk; ++m) wgmma<Op, N>(d, a, desc);
    wgmma_commit();
    pin(d);
  }
  wgmma_wait_all();
  pin(d);
  fold[blockIdx.x * k_mma_threads + t] = x;
  if (store_tile) {
    float* tile = out + static_cast<std::size_t>(blockIdx.x) * k_mma_m * N;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const int row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
      const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
      tile[row * N + col] = d[i];
    }
  } else {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) s += d[i];
    out[blockIdx.x * k_mma_threads + t] = s;
  }
#else
  __trap();  // wgmma needs sm_90a; launch_intensity refuses other devices
#endif
}

template <class Op, int N>
void launch(const intensity_plan& p, const void* src, const void* a, const void* b, float* out,
            std::uint32_t* fold, cudaStream_t s) {
  mma_kernel<Op, N><<<p.grid, k_mma_threads, 0, s>>>(
      static_cast<const int4*>(src), chunks(p), p.chunks_per_mma, p.mma_per_chunk,
      static_cast<const std::uint32_t*>(a), static_cast<const int4*>(b), p.store_tile, out, fold);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

template <class Op, int N>
int blocks_per_sm() {
  int blocks = 0;
  RIDGELINE_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, mma_kernel<Op, N>, k_mma_threads, 0));
  return blocks;
}

}  // namespace

void launch_intensity_mma(const intensity_plan& p, const void* src, const void* a, const void* b,
                          float* out, std::uint32_t* fold, cudaStream_t s) {
  const bool bf16 = p.kernel == intensity_kernel::mma_bf16;
  switch (p.mma_n) {
    case 8:
      return bf16 ? launch<mma_bf16, 8>(p, src, a, b, out, fold, s)
                  : launch<mma_e4m3, 8>(p, src, a, b, out, fold, s);
    case 64:
      return bf16 ? launch<mma_bf16, 64>(p, src, a, b, out, fold, s)
                  : launch<mma_e4m3, 64>(p, src, a, b, out, fold, s);
    case 256:
      return bf16 ? launch<mma_bf16, 256>(p, src, a, b, out, fold, s)
                  : launch<mma_e4m3, 256>(p, src, a, b, out, fold, s);
    default:
      throw std::invalid_argument("launch_intensity_mma: mma_n must be 8, 64 or 256");
  }
}

int intensity_mma_blocks_per_sm(intensity_kernel k, int mma_n) {
  const bool bf16 = k == intensity_kernel::mma_bf16;
  switch (mma_n) {
    case 8:
      return bf16 ? blocks_per_sm<mma_bf16, 8>() : blocks_per_sm<mma_e4m3, 8>();
    case 64:
      return bf16 ? blocks_per_sm<mma_bf16, 64>() : blocks_per_sm<mma_e4m3, 64>();
    case 256:
      return bf16 ? blocks_per_sm<mma_bf16, 256>() : blocks_per_sm<mma_e4m3, 256>();
    default:
      throw std::invalid_argument("intensity_mma_blocks_per_sm: mma_n must be 8, 64 or 256");
  }
}

}  // namespace ridgeline::cuda::detail
