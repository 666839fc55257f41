// Intensity-sweep kernels for a measured roofline: FFMA (fp32), HFMA2 (bf16x2, fp16x2) and
// wgmma (bf16, e4m3; sm_90a) at a chosen FLOP per DRAM byte. What each computes and how FLOPs and
// bytes are counted: ridgeline/kernels/intensity_plan.hpp (CPU references:
// intensity_reference.hpp).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ridgeline/kernels/intensity_plan.hpp"

namespace ridgeline::cuda {

// Validates (plan, alignment, null operands; the MMA kernels need compute capability 9.0) and
// throws std::invalid_argument; asynchronous.
// src: [p.bytes] the stream, 16-byte aligned. a: [64][32] bytes, b: [mma_n][32] bytes (MMA only,
// see cpu::intensity_mma). out: [output_floats(p)]; fold: [output_folds(p)] (MMA only).
void launch_intensity(const intensity_plan& p, const void* src, const void* a, const void* b,
                      float* out, std::uint32_t* fold, cudaStream_t s);

// Blocks of the kernel resident per SM (occupancy; capped at 8 for the scalar kernels, as the
// read kernel uses). mma_n is ignored for the scalar kernels.
int intensity_blocks_per_sm(intensity_kernel k, int mma_n);

namespace detail {
// Throws std::invalid_argument("<what> needs compute capability 9.0 ...") unless the current
// device is 9.0: the wgmma kernels are built for sm_90a only.
void require_sm90(const char* what);
// In intensity_mma.cu (built for sm_90a only).
void launch_intensity_mma(const intensity_plan& p, const void* src, const void* a, const void* b,
                          float* out, std::uint32_t* fold, cudaStream_t s);
int intensity_mma_blocks_per_sm(intensity_kernel k, int mma_n);
}  // namespace detail

}  // namespace ridgeline::cuda
