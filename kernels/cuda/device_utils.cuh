// Device helpers shared by several kernel files, one definition each: bf16 unpacking, the shared
// memory address of a generic pointer, programmatic dependent launch (PDL) inside a kernel, and
// the launch helper that sets the PDL attribute from an explicit flag (there is no process-wide
// PDL switch: the engine passes its option to every launcher).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "check.hpp"

namespace ridgeline::cuda::detail {

// Eight bf16 (one 16-byte load) to float: a bf16 is the top half of a float's bits.
__device__ __forceinline__ void unpack8(const uint4 v, float (&f)[8]) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack8(const int4 v, float (&f)[8]) {
  unpack8(make_uint4(static_cast<unsigned>(v.x), static_cast<unsigned>(v.y),
                     static_cast<unsigned>(v.z), static_cast<unsigned>(v.w)),
          f);
}

// The 32-bit shared-state-space address of a pointer into shared memory (for PTX operands).
__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// Programmatic dependent launch: lets the next kernel on the stream, when it was launched with
// programmatic stream serialization, be scheduled now; it still waits (griddepcontrol.wait) for
// this grid's completion before reading what this grid writes. No effect on kernels launched
// normally. Hopper and later; a no-op below.
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Waits until the grids this one depends on have completed and their writes are visible; returns
// at once when the kernel was launched normally. Must precede any read of a predecessor's output.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

}  // namespace ridgeline::cuda::detail

namespace ridgeline::cuda {

// Launches kernel; pdl: with programmatic stream serialization, so the kernel may be scheduled
// while the previous kernel on the stream finishes (hiding launch latency between the short
// kernels of a decode step). Only for kernels that call detail::pdl_wait() before reading anything
// a predecessor wrote.
template <class... KernelArgs, class... Args>
void launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, std::size_t smem,
                   cudaStream_t s, bool pdl, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl ? 1 : 0;
  RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace ridgeline::cuda
