// wgmma (sm_90a) building blocks shared by the tensor-core kernels: the intensity sweep's
// (intensity_mma.cu), the probe's instruction-peak kernel (instruction_peak_mma.cu) and the
// skinny GEMM (skinny_gemm.cu, both operands from shared memory). Include
// only from files built for sm_90a (kernels/CMakeLists.txt: ridgeline_kernels_sm90a).
//
// Layouts, one warpgroup of 128 threads, fp32 accumulators:
//   A (64 x K, 32 bytes of K per row) from registers, the wgmma A fragment: register r of lane l
//     in warp w holds row 16 w + l / 4 + 8 (r % 2), bytes 16 (r / 2) + 4 (l % 4) .. + 3.
//   B (N x K, K contiguous) in shared memory without swizzle, as 8-row x 16-byte core matrices:
//     core matrix (n / 8, k-half) at byte 128 * (2 * (n / 8) + k-half), so the descriptor's
//     leading byte offset (next core matrix along K) is 128 and its stride byte offset (next 8
//     rows along N) is 256.
//   D (64 x N): register i of lane l in warp w holds row 16 w + l / 4 + 8 ((i % 4) / 2), column
//     8 (i / 4) + 2 (l % 4) + i % 2 (N / 2 registers per thread).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "device_utils.cuh"  // smem_addr
#include "ridgeline/kernels/intensity_plan.hpp"  // k_mma_threads, k_mma_m, k_mma_k_bytes

namespace ridgeline::cuda::detail {

// Operand types: bf16 (K = 16) and e4m3 (K = 32), 32 bytes of K per row either way. `mantissa`
// masks the low mantissa bits of every element in a 32-bit register (the intensity kernels fold
// streamed data into them).
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
#define RIDGELINE_WGMMA_D8 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define RIDGELINE_WGMMA_R8 \
  "%0, %1, %2, %3, %4, %5, %6, %7"
#define RIDGELINE_WGMMA_D16 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), \
    "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
    "+f"(d[14]), "+f"(d[15])
#define RIDGELINE_WGMMA_R16 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
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

// Both operands from shared memory through descriptors (bf16, K-major): D[64 x N] += A[64 x 16]
// B[16 x N], rows of B being columns of the product (skinny_gemm.cu: A = the tokens' activations,
// B = weight rows, so N = output features). N / 2 accumulators per thread.
template <int N>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], std::uint64_t a_desc,
                                         std::uint64_t b_desc);

// Blocks of eight accumulator operands: their "%i" text (RB) and their constraints (DB).
#define RIDGELINE_WGMMA_RB0 "%0, %1, %2, %3, %4, %5, %6, %7"
#define RIDGELINE_WGMMA_RB1 "%8, %9, %10, %11, %12, %13, %14, %15"
#define RIDGELINE_WGMMA_RB2 "%16, %17, %18, %19, %20, %21, %22, %23"
#define RIDGELINE_WGMMA_RB3 "%24, %25, %26, %27, %28, %29, %30, %31"
#define RIDGELINE_WGMMA_RB4 "%32, %33, %34, %35, %36, %37, %38, %39"
#define RIDGELINE_WGMMA_RB5 "%40, %41, %42, %43, %44, %45, %46, %47"
#define RIDGELINE_WGMMA_RB6 "%48, %49, %50, %51, %52, %53, %54, %55"
#define RIDGELINE_WGMMA_RB7 "%56, %57, %58, %59, %60, %61, %62, %63"
#define RIDGELINE_WGMMA_RB8 "%64, %65, %66, %67, %68, %69, %70, %71"
#define RIDGELINE_WGMMA_RB9 "%72, %73, %74, %75, %76, %77, %78, %79"
#define RIDGELINE_WGMMA_RB10 "%80, %81, %82, %83, %84, %85, %86, %87"
#define RIDGELINE_WGMMA_RB11 "%88, %89, %90, %91, %92, %93, %94, %95"
#define RIDGELINE_WGMMA_RB12 "%96, %97, %98, %99, %100, %101, %102, %103"
#define RIDGELINE_WGMMA_RB13 "%104, %105, %106, %107, %108, %109, %110, %111"
#define RIDGELINE_WGMMA_DB0 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), \
    "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define RIDGELINE_WGMMA_DB1 \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), \
    "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define RIDGELINE_WGMMA_DB2 \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), \
    "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
#define RIDGELINE_WGMMA_DB3 \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
    "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define RIDGELINE_WGMMA_DB4 \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
    "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
#define RIDGELINE_WGMMA_DB5 \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), \
    "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
#define RIDGELINE_WGMMA_DB6 \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), \
    "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55])
#define RIDGELINE_WGMMA_DB7 \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
    "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define RIDGELINE_WGMMA_DB8 \
    "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), \
    "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71])
#define RIDGELINE_WGMMA_DB9 \
    "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), \
    "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
#define RIDGELINE_WGMMA_DB10 \
    "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), \
    "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
#define RIDGELINE_WGMMA_DB11 \
    "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), \
    "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
#define RIDGELINE_WGMMA_DB12 \
    "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), \
    "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103])
#define RIDGELINE_WGMMA_DB13 \
    "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), \
    "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111])

// RLIST: the accumulators' text; A_DESC, B_DESC, PRED: the operand numbers after them; the
// variadic tail: the accumulators' constraints.
#define RIDGELINE_WGMMA_SS(N, RLIST, A_DESC, B_DESC, PRED, ...)                                \
  template <>                                                                                  \
  __device__ __forceinline__ void wgmma_ss<N>(float(&d)[N / 2], std::uint64_t a_desc,          \
                                              std::uint64_t b_desc) {                          \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n"                            \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 {" RLIST "}, "     \
                 A_DESC ", " B_DESC ", p, 1, 1, 0, 0;\n}\n"                                    \
                 : __VA_ARGS__                                                              \
                 : "l"(a_desc), "l"(b_desc), "r"(1));                                          \
  }

RIDGELINE_WGMMA_SS(32,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1,
                   "%16", "%17", "%18",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1)
RIDGELINE_WGMMA_SS(48,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1 ", " RIDGELINE_WGMMA_RB2,
                   "%24", "%25", "%26",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1, RIDGELINE_WGMMA_DB2)
RIDGELINE_WGMMA_SS(64,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1 ", " RIDGELINE_WGMMA_RB2 ", "
                   RIDGELINE_WGMMA_RB3,
                   "%32", "%33", "%34",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1, RIDGELINE_WGMMA_DB2,
                   RIDGELINE_WGMMA_DB3)
RIDGELINE_WGMMA_SS(96,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1 ", " RIDGELINE_WGMMA_RB2 ", "
                   RIDGELINE_WGMMA_RB3 ", " RIDGELINE_WGMMA_RB4 ", " RIDGELINE_WGMMA_RB5,
                   "%48", "%49", "%50",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1, RIDGELINE_WGMMA_DB2,
                   RIDGELINE_WGMMA_DB3, RIDGELINE_WGMMA_DB4, RIDGELINE_WGMMA_DB5)
RIDGELINE_WGMMA_SS(128,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1 ", " RIDGELINE_WGMMA_RB2 ", "
                   RIDGELINE_WGMMA_RB3 ", " RIDGELINE_WGMMA_RB4 ", " RIDGELINE_WGMMA_RB5 ", "
                   RIDGELINE_WGMMA_RB6 ", " RIDGELINE_WGMMA_RB7,
                   "%64", "%65", "%66",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1, RIDGELINE_WGMMA_DB2,
                   RIDGELINE_WGMMA_DB3, RIDGELINE_WGMMA_DB4, RIDGELINE_WGMMA_DB5,
                   RIDGELINE_WGMMA_DB6, RIDGELINE_WGMMA_DB7)
RIDGELINE_WGMMA_SS(176,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1 ", " RIDGELINE_WGMMA_RB2 ", "
                   RIDGELINE_WGMMA_RB3 ", " RIDGELINE_WGMMA_RB4 ", " RIDGELINE_WGMMA_RB5 ", "
                   RIDGELINE_WGMMA_RB6 ", " RIDGELINE_WGMMA_RB7 ", " RIDGELINE_WGMMA_RB8 ", "
                   RIDGELINE_WGMMA_RB9 ", " RIDGELINE_WGMMA_RB10,
                   "%88", "%89", "%90",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1, RIDGELINE_WGMMA_DB2,
                   RIDGELINE_WGMMA_DB3, RIDGELINE_WGMMA_DB4, RIDGELINE_WGMMA_DB5,
                   RIDGELINE_WGMMA_DB6, RIDGELINE_WGMMA_DB7, RIDGELINE_WGMMA_DB8,
                   RIDGELINE_WGMMA_DB9, RIDGELINE_WGMMA_DB10)
RIDGELINE_WGMMA_SS(224,
                   RIDGELINE_WGMMA_RB0 ", " RIDGELINE_WGMMA_RB1 ", " RIDGELINE_WGMMA_RB2 ", "
                   RIDGELINE_WGMMA_RB3 ", " RIDGELINE_WGMMA_RB4 ", " RIDGELINE_WGMMA_RB5 ", "
                   RIDGELINE_WGMMA_RB6 ", " RIDGELINE_WGMMA_RB7 ", " RIDGELINE_WGMMA_RB8 ", "
                   RIDGELINE_WGMMA_RB9 ", " RIDGELINE_WGMMA_RB10 ", " RIDGELINE_WGMMA_RB11 ", "
                   RIDGELINE_WGMMA_RB12 ", " RIDGELINE_WGMMA_RB13,
                   "%112", "%113", "%114",
                   RIDGELINE_WGMMA_DB0, RIDGELINE_WGMMA_DB1, RIDGELINE_WGMMA_DB2,
                   RIDGELINE_WGMMA_DB3, RIDGELINE_WGMMA_DB4, RIDGELINE_WGMMA_DB5,
                   RIDGELINE_WGMMA_DB6, RIDGELINE_WGMMA_DB7, RIDGELINE_WGMMA_DB8,
                   RIDGELINE_WGMMA_DB9, RIDGELINE_WGMMA_DB10, RIDGELINE_WGMMA_DB11,
                   RIDGELINE_WGMMA_DB12, RIDGELINE_WGMMA_DB13)

#undef RIDGELINE_WGMMA_SS
#undef RIDGELINE_WGMMA_RB0
#undef RIDGELINE_WGMMA_DB0
#undef RIDGELINE_WGMMA_RB1
#undef RIDGELINE_WGMMA_DB1
#undef RIDGELINE_WGMMA_RB2
#undef RIDGELINE_WGMMA_DB2
#undef RIDGELINE_WGMMA_RB3
#undef RIDGELINE_WGMMA_DB3
#undef RIDGELINE_WGMMA_RB4
#undef RIDGELINE_WGMMA_DB4
#undef RIDGELINE_WGMMA_RB5
#undef RIDGELINE_WGMMA_DB5
#undef RIDGELINE_WGMMA_RB6
#undef RIDGELINE_WGMMA_DB6
#undef RIDGELINE_WGMMA_RB7
#undef RIDGELINE_WGMMA_DB7
#undef RIDGELINE_WGMMA_RB8
#undef RIDGELINE_WGMMA_DB8
#undef RIDGELINE_WGMMA_RB9
#undef RIDGELINE_WGMMA_DB9
#undef RIDGELINE_WGMMA_RB10
#undef RIDGELINE_WGMMA_DB10
#undef RIDGELINE_WGMMA_RB11
#undef RIDGELINE_WGMMA_DB11
#undef RIDGELINE_WGMMA_RB12
#undef RIDGELINE_WGMMA_DB12
#undef RIDGELINE_WGMMA_RB13
#undef RIDGELINE_WGMMA_DB13

template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all() { wgmma_wait<0>(); }
// Keeps the compiler from moving accumulator accesses across the wgmma fences.
template <int R>
__device__ __forceinline__ void pin(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Shared-memory matrix descriptor, no swizzle: start address, leading byte offset 128 (the next
// core matrix along K), stride byte offset 256 (the next 8 rows along N), each >> 4.
__device__ __forceinline__ std::uint64_t b_descriptor(const void* smem) {
  const std::uint32_t addr = smem_addr(smem);
  return std::uint64_t{(addr & 0x3ffffu) >> 4} | std::uint64_t{128 >> 4} << 16 |
         std::uint64_t{256 >> 4} << 32;
}

// Thread t's A fragment of the row-major [64][32-byte] tile a0.
__device__ __forceinline__ void load_a_fragment(const std::uint32_t* __restrict__ a0, int t,
                                                std::uint32_t (&a)[4]) {
  const int warp = t / 32, lane = t % 32;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    a[r] = a0[(16 * warp + lane / 4 + 8 * (r % 2)) * (k_mma_k_bytes / 4) + 4 * (r / 2) + lane % 4];
  }
}

// Copies B ([N][32 bytes], row n holding column n of B) into b_smem as core matrices and makes it
// visible to the async proxy the wgmma reads shared memory with. Every thread of the block calls
// it (it ends in __syncthreads).
template <int N>
__device__ __forceinline__ void stage_b(int4 (&b_smem)[2 * N], const int4* __restrict__ b, int t) {
  for (int i = t; i < 2 * N; i += k_mma_threads) {
    const int n = i / 2, half = i % 2;
    b_smem[(2 * (n / 8) + half) * 8 + n % 8] = b[i];
  }
  // Generic-proxy writes must be visible to the async proxy the wgmma reads shared memory with.
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
}

// Writes thread t's accumulators into the row-major 64 x N tile.
template <int N>
__device__ __forceinline__ void store_tile(const float (&d)[N / 2], float* __restrict__ tile,
                                           int t) {
  const int warp = t / 32, lane = t % 32;
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const int row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
    const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    tile[row * N + col] = d[i];
  }
}

}  // namespace ridgeline::cuda::detail

#undef RIDGELINE_WGMMA_D4
#undef RIDGELINE_WGMMA_R4
#undef RIDGELINE_WGMMA_D8
#undef RIDGELINE_WGMMA_R8
#undef RIDGELINE_WGMMA_D16
#undef RIDGELINE_WGMMA_R16
#undef RIDGELINE_WGMMA_D32
#undef RIDGELINE_WGMMA_R32
#undef RIDGELINE_WGMMA_D128
#undef RIDGELINE_WGMMA_R128
#undef RIDGELINE_WGMMA_R_8
#undef RIDGELINE_WGMMA_D_8
#undef RIDGELINE_WGMMA_R_64
#undef RIDGELINE_WGMMA_D_64
#undef RIDGELINE_WGMMA_R_256
#undef RIDGELINE_WGMMA_D_256
