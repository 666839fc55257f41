// Instruction-peak kernels of the probe: FFMA, HFMA2.BF16 and wgmma bf16/e4m3 (sm_90a) issued
// back to back with operands in registers and shared memory. What each computes and how FLOPs are
// counted: ridgeline/kernels/instruction_peak_plan.hpp (CPU references:
// instruction_peak_reference.hpp); the probe times them (bench/probe/instruction_peaks.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ridgeline/kernels/instruction_peak_plan.hpp"

namespace ridgeline::cuda {

// Validates (plan, null or misaligned pointers; the tensor kinds need compute capability 9.0) and
// throws std::invalid_argument; asynchronous.
// operands: [operand_words(p)], 16-byte aligned (cpu::make_instruction_peak_operands);
// out: [output_floats(p)].
void launch_instruction_peak(const instruction_peak_plan& p, const std::uint32_t* operands,
                             float* out, cudaStream_t s);

// Blocks of the kind's kernel resident per SM (occupancy; at most 8 for the scalar kinds, which
// fills an SM's 64 warps).
int instruction_peak_blocks_per_sm(instruction_peak_kind k);

namespace detail {
// In instruction_peak_mma.cu (built for sm_90a only).
void launch_instruction_peak_mma(const instruction_peak_plan& p, const std::uint32_t* operands,
                                 float* out, cudaStream_t s);
int instruction_peak_mma_blocks_per_sm(instruction_peak_kind k);
}  // namespace detail

}  // namespace ridgeline::cuda
