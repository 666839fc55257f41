// The dequantizer of packed quantized weights (quant_dequantize_bf16, declared in quant_gemv.hpp):
// W as bf16 [rows][cols] from the layout of ridgeline/kernels/quant_packed.hpp, each weight
// scale * code in fp32 rounded to bf16 once, which is what cpu::dequantize_packed_bf16 (the
// reference, quant_pack.hpp) computes. The engine runs it on the prefill path of a quantized linear
// layer (linear_runner::run_quant above k_quant_dequant_min_tokens tokens): dequantize the layer
// into bf16 scratch, then the bf16 GEMM.
//
// Who does what. A warp takes one (row tile, chunk) item at a time, grid-stride: lane L reads its
// 16 bytes of the chunk (one coalesced 512-byte load per warp), decodes each of its 32 nibbles
// (int4) or 16 bytes (int8 / fp8) to fp32, scales it and writes the bf16 into the warp's tile in
// shared memory at (packed_lane_element's row, column); after __syncwarp the warp writes the
// tile's 16 rows out with 16-byte stores (8 lanes per 128-byte row of int4, 4 per 64-byte row of
// int8 / fp8), so DRAM sees whole lines. No block-wide barrier.
//
// Napkin math (H100, one Llama-2-7B block's four linears in int4 group 128): 108 MB read,
// 405 MB of bf16 written, about 170 us at ~3 TB/s; per layer once per prefill step, so about
// 5.4 ms per step of the 32-layer model, against ~94 ms for a 4 x 1024-token bf16 prefill step.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "quant_gemv.hpp"

namespace ridgeline::cuda {
namespace {

using K = packed_quant_kind;

constexpr int k_dq_warps = 8;

struct dq_args {
  const std::uint8_t* data;   // [row_tiles][chunks][32][16]
  const float* scales;        // [row_tiles][groups or 1][8][2]
  const std::uint8_t* zeros;  // int4: [row_tiles][groups][8]
  int rows, cols, row_tiles, chunks, blocks, groups, blocks_per_group;
};

// e4m3 code -> float, the value the GEMV's bit trick gives (0x7f / 0xff read as +-480).
__device__ __forceinline__ float e4m3_value(std::uint32_t b) {
  const std::uint32_t e = (b >> 3) & 0xFu, m = b & 0x7u;
  const float v = e != 0 ? __uint_as_float(((e + 120u) << 23) | (m << 20))
                         : static_cast<float>(m) * 0x1p-9f;
  return (b & 0x80u) ? -v : v;
}

template <K Kind>
__global__ void __launch_bounds__(k_dq_warps * 32)
    dequantize_packed_kernel(const dq_args a, bf16_bits* __restrict__ out) {
  constexpr int cc = packed_chunk_cols(Kind);  // columns per chunk: 64 (int4) or 32
  constexpr int nb = cc / k_pack_block_cols;   // 32-column blocks per chunk
  constexpr int nibbles = Kind == K::int4_group ? 2 : 1;
  constexpr bool grouped = packed_is_grouped(Kind);
  constexpr int vecs_per_row = cc / 8;  // 16-byte vectors of bf16 per tile row
  __shared__ __align__(16) std::uint16_t tiles[k_dq_warps][k_pack_tile_rows * cc];

  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int g = lane >> 2;
  std::uint16_t* tile = tiles[warp];
  const std::size_t items = static_cast<std::size_t>(a.row_tiles) * a.chunks;
  for (std::size_t item = static_cast<std::size_t>(blockIdx.x) * k_dq_warps + warp; item < items;
       item += static_cast<std::size_t>(gridDim.x) * k_dq_warps) {
    const int c = static_cast<int>(item % a.chunks);
    const int tr = static_cast<int>(item / a.chunks);
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(a.data) + item * k_pack_lanes + lane);
    // The scale pair (rows g, g + 8) and zero byte of each block of the chunk.
    float2 sc[nb];
    std::uint32_t zb[nb];
#pragma unroll
    for (int h = 0; h < nb; ++h) {
      const int blk = c * nb + h;
      sc[h] = make_float2(0.0f, 0.0f);
      zb[h] = 0;
      if (blk < a.blocks) {
        const int grp = grouped ? blk / a.blocks_per_group : 0;
        const std::size_t at = (static_cast<std::size_t>(tr) * a.groups + grp) * 8 + g;
        sc[h] = __ldg(reinterpret_cast<const float2*>(a.scales) + at);
        if constexpr (Kind == K::int4_group) zb[h] = a.zeros[at];
      }
    }
    const std::uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int byte = 0; byte < 16; ++byte) {
      const std::uint32_t bits = (words[byte / 4] >> (8 * (byte % 4))) & 0xFFu;
#pragma unroll
      for (int n = 0; n < nibbles; ++n) {
        const packed_chunk_element el = packed_lane_element(Kind, lane, byte, n);
        const int h = el.col / k_pack_block_cols, hi = el.row / 8;
        float code;
        if constexpr (Kind == K::int4_group) {
          const int q = static_cast<int>((bits >> (4 * n)) & 0xFu);
          const int z = static_cast<int>((zb[h] >> (4 * hi)) & 0xFu);
          code = static_cast<float>(q - z);
        } else if constexpr (Kind == K::fp8_channel) {
          code = e4m3_value(bits);
        } else {
          code = static_cast<float>(static_cast<std::int8_t>(static_cast<std::uint8_t>(bits)));
        }
        const float s = hi ? sc[h].y : sc[h].x;
        tile[el.row * cc + el.col] = __bfloat16_as_ushort(__float2bfloat16_rn(s * code));
      }
    }
    __syncwarp();
    // An int4 row's last chunk may hold one block only (cols % 64 == 32).
    const int valid_cols = min(cc, a.cols - c * cc);
#pragma unroll
    for (int k = lane; k < k_pack_tile_rows * vecs_per_row; k += 32) {
      const int r = k / vecs_per_row, col = (k % vecs_per_row) * 8;
      const int row = tr * k_pack_tile_rows + r;
      if (row < a.rows && col < valid_cols) {
        *reinterpret_cast<uint4*>(out + static_cast<std::size_t>(row) * a.cols +
                                  static_cast<std::size_t>(c) * cc + col) =
            *reinterpret_cast<const uint4*>(tile + r * cc + col);
      }
    }
    __syncwarp();  // the tile is rewritten by the next item
  }
}

const char* kind_name(K k) {
  switch (k) {
    case K::int4_group:
      return "int4_group";
    case K::int8_group:
      return "int8_group";
    case K::int8_channel:
      return "int8_channel";
    case K::fp8_channel:
      return "fp8_channel";
  }
  return "unknown";
}

}  // namespace

void quant_dequantize_bf16(const packed_quant_view& w, bf16_bits* out, cudaStream_t s) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("quant_dequantize_bf16: " + why + " (" + kind_name(w.kind) + " [" +
                                std::to_string(w.rows) + "][" + std::to_string(w.cols) +
                                "] group " + std::to_string(w.group_size) + ")");
  };
  if (w.kind != K::int4_group && w.kind != K::int8_group && w.kind != K::int8_channel &&
      w.kind != K::fp8_channel) {
    fail("unknown packed kind");
  }
  if (!out || !w.data || !w.scales) fail("null pointer");
  if (w.kind == K::int4_group && !w.zeros) fail("int4_group needs zero points");
  if (w.rows < 1 || w.cols < k_pack_block_cols || w.cols % k_pack_block_cols != 0 ||
      w.cols >= k_pack_max_cols) {
    fail("rows must be >= 1 and cols a multiple of 32 below 2^21");
  }
  if (packed_is_grouped(w.kind) &&
      (w.group_size < k_pack_block_cols || w.group_size % k_pack_block_cols != 0 ||
       w.cols % w.group_size != 0)) {
    fail("group_size must be a multiple of 32 dividing cols");
  }
  auto misaligned = [](const void* p, std::uintptr_t n) {
    return reinterpret_cast<std::uintptr_t>(p) % n != 0;
  };
  if (misaligned(w.data, 16) || misaligned(w.scales, 8) || misaligned(out, 16)) {
    fail("data and out must be 16-byte aligned, scales 8-byte aligned");
  }
  dq_args a{};
  a.data = w.data;
  a.scales = w.scales;
  a.zeros = w.zeros;
  a.rows = w.rows;
  a.cols = w.cols;
  a.row_tiles = w.row_tiles();
  a.chunks = w.chunks();
  a.blocks = w.cols / k_pack_block_cols;
  a.groups = w.groups();
  a.blocks_per_group = packed_is_grouped(w.kind) ? w.group_size / k_pack_block_cols : 1;
  int device = 0, sms = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const std::size_t items = static_cast<std::size_t>(a.row_tiles) * a.chunks;
  const int grid = static_cast<int>(std::max<std::size_t>(
      1, std::min<std::size_t>((items + k_dq_warps - 1) / k_dq_warps, std::size_t(sms) * 8)));
  switch (w.kind) {
    case K::int4_group:
      dequantize_packed_kernel<K::int4_group><<<grid, k_dq_warps * 32, 0, s>>>(a, out);
      break;
    case K::int8_group:
      dequantize_packed_kernel<K::int8_group><<<grid, k_dq_warps * 32, 0, s>>>(a, out);
      break;
    case K::int8_channel:
      dequantize_packed_kernel<K::int8_channel><<<grid, k_dq_warps * 32, 0, s>>>(a, out);
      break;
    case K::fp8_channel:
      dequantize_packed_kernel<K::fp8_channel><<<grid, k_dq_warps * 32, 0, s>>>(a, out);
      break;
  }
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
