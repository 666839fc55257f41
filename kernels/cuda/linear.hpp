// Linear layers of the engine (linear_params in ops.hpp) on the GPU: a weight-streaming GEMV for
// decode batches of up to k_gemv_max_tokens tokens, cuBLASLt above that, with one plan (and its
// fastest heuristic algorithm) cached per shape.
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <tuple>

#include "gemm_lt.hpp"
#include "raii.hpp"
#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cuda {

inline constexpr int k_gemv_max_tokens = 8;

// The GEMV path alone (1 <= num_tokens <= k_gemv_max_tokens); throws std::invalid_argument.
void gemv(const linear_params& p, cudaStream_t s);

class linear_runner {
 public:
  explicit linear_runner(std::size_t workspace_bytes = 32u << 20);
  // Picks the path by token count. The first call for a shape builds its cuBLASLt plan and times
  // the candidate algorithms, so make it outside CUDA-graph capture (prepare() does just that).
  void run(const linear_params& p, cudaStream_t s);
  void prepare(const linear_params& p, cudaStream_t s);
  // Forces cuBLASLt even for small batches (tests, comparisons).
  void set_force_cublas(bool on) { m_force_cublas = on; }

 private:
  struct plan {
    std::unique_ptr<lt_gemm> gemm;
    int algorithm = 0;
  };
  plan& plan_for(const linear_params& p, cudaStream_t s);
  cublaslt_handle m_handle;
  device_buffer m_workspace;
  std::map<std::tuple<int, int, int, bool>, plan> m_plans;
  bool m_force_cublas = false;
};

}  // namespace ridgeline::cuda
