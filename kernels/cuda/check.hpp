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
