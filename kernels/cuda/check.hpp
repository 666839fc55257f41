// Check macros for the CUDA runtime and cuBLAS(Lt): throw std::runtime_error naming the failing
// expression, file and line, after clearing the CUDA error slot. *_NOEXCEPT variants log and
// terminate; they are for destructors only.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

namespace ridgeline::cuda::detail {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  cudaGetLastError();  // reset the (non-sticky) error slot so later calls do not see it
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                           cudaGetErrorString(e) + ") in " + expr + " at " + file + ":" +
                           std::to_string(line));
}

[[noreturn]] inline void throw_cublas(cublasStatus_t s, const char* expr, const char* file,
                                      int line) {
  throw std::runtime_error(std::string("cuBLAS error ") + cublasLtGetStatusName(s) + " (" +
                           cublasLtGetStatusString(s) + ") in " + expr + " at " + file + ":" +
                           std::to_string(line));
}

}  // namespace ridgeline::cuda::detail

#define RIDGELINE_CUDA_CHECK(expr)                                                    \
  do {                                                                                \
    const cudaError_t ridgeline_err_ = (expr);                                        \
    if (ridgeline_err_ != cudaSuccess)                                                \
      ::ridgeline::cuda::detail::throw_cuda(ridgeline_err_, #expr, __FILE__, __LINE__); \
  } while (false)

// After every kernel launch: launch-configuration errors surface here.
#define RIDGELINE_CUDA_CHECK_LAUNCH() RIDGELINE_CUDA_CHECK(cudaGetLastError())

#define RIDGELINE_CUBLAS_CHECK(expr)                                                      \
  do {                                                                                    \
    const cublasStatus_t ridgeline_st_ = (expr);                                          \
    if (ridgeline_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::ridgeline::cuda::detail::throw_cublas(ridgeline_st_, #expr, __FILE__, __LINE__); \
  } while (false)

#define RIDGELINE_CUDA_CHECK_NOEXCEPT(expr)                                              \
  do {                                                                                   \
    const cudaError_t ridgeline_err_ = (expr);                                           \
    if (ridgeline_err_ != cudaSuccess) {                                                 \
      std::fprintf(stderr, "fatal CUDA error %s in %s at %s:%d\n",                      \
                   cudaGetErrorName(ridgeline_err_), #expr, __FILE__, __LINE__);         \
      std::abort();                                                                      \
    }                                                                                    \
  } while (false)

namespace ridgeline::cuda {
// Process-wide switch for launch_pdl (the engine sets it from engine_options::pdl); off, kernels
// launch normally and pdl_wait returns at once. Defined in gemm_lt.cpp.
bool& pdl_enabled();
}  // namespace ridgeline::cuda

// Programmatic dependent launch: lets the next kernel on the stream, when it was launched with
// programmatic stream serialization (the GEMV), be scheduled now; it still waits
// (griddepcontrol.wait) for this grid's completion before reading what this grid writes. No effect
// on kernels launched normally. Hopper and later; a no-op below.
#ifdef __CUDACC__
namespace ridgeline::cuda::detail {
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
// Launches with programmatic stream serialization: the kernel may be scheduled while the previous
// kernel on the stream finishes (hiding launch latency between the short kernels of a decode
// step). Only for kernels that call detail::pdl_wait() before reading anything a predecessor wrote.
template <class... KernelArgs, class... Args>
void launch_pdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, std::size_t smem,
                cudaStream_t s, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
}  // namespace ridgeline::cuda
#endif
