// Naive CPU references of the intensity-sweep kernels (what they compute and how FLOPs and bytes
// are counted: intensity_plan.hpp). They redo each kernel's arithmetic from the same plan: the
// scalar kernels bit for bit, the MMA kernels as exact matrix products in double.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ridgeline/kernels/intensity_plan.hpp"

namespace ridgeline::cpu {

// Single-rounding fused multiply-add of values exactly representable in bf16 / fp16, rounded to
// nearest even in that format (HFMA2's arithmetic); subnormals kept.
float fma_bf16(float a, float b, float c);
float fma_fp16(float a, float b, float c);

// src: [bytes / 4] words. Returns the [grid * 256] per-thread outputs, bit-exact.
std::vector<float> intensity_scalar(const intensity_plan& p, std::span<const std::uint32_t> src);

struct intensity_mma_result {
  // store_tile: [grid][64][N] tile values; else [grid * 128] per-thread sums.
  std::vector<double> value;
  std::vector<double> magnitude;    // the same sums over |a * b| (scale for the tolerance)
  std::vector<std::uint32_t> fold;  // [grid * 128] final x
};
// a: [64][32] bytes, the initial A tile row-major (K contiguous); b: [N][32] bytes, row n holds
// column n of B (K contiguous). Elements bf16 or e4m3 by p.kernel.
intensity_mma_result intensity_mma(const intensity_plan& p, std::span<const std::uint32_t> src,
                                   std::span<const std::uint8_t> a,
                                   std::span<const std::uint8_t> b);

}  // namespace ridgeline::cpu
