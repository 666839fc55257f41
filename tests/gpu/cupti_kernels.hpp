// Kernels with a known instruction count for the CUPTI tests (cupti_test.cpp): every thread runs
// `iters` steps of 4 independent FMA chains, then adds the 4 chains (3 adds) and stores the sum.
// Per thread: 4*iters FFMA and 3 FADD (fp32); 4*iters HFMA2 and 3 HADD2 (packed fp16). The PTX was
// checked (nvcc -ptx, sm_90): exactly those fma.rn.f32/add.rn.f32 and fma.rn.f16x2/add.f16x2, no
// other float arithmetic; each maps to one SASS instruction (SASS itself not inspected here).
// Two trivial kernels with distinct names for the tracer test.
#pragma once

#include <cuda_runtime_api.h>

namespace ridgeline::test {

// out: [blocks * threads] floats (ffma) or half2 pairs (hfma2, 4 bytes each).
void launch_ffma_chain(float* out, int blocks, int threads, int iters, cudaStream_t s);
void launch_hfma2_chain(void* out, int blocks, int threads, int iters, cudaStream_t s);

// data[i] += 1 / data[i] *= factor over n floats.
void launch_add_one(float* data, int n, cudaStream_t s);
void launch_scale(float* data, float factor, int n, cudaStream_t s);

}  // namespace ridgeline::test
