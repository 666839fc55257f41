// GEMM through cuBLASLt for every dtype ridgeline measures, in one layout (PyTorch's linear):
//   D[n][m] = A[m][k] . B[n][k]^T     A: weights, B: activations, all row-major
// i.e. cuBLAS column-major "TN" (op(A) = A^T), which fp8 and int8 tensor-core kernels require.
// fp8 e4m3 writes bf16, int8 writes int32, the rest write their own type; accumulation is fp32
// (int32 for int8). The heuristic's candidate algorithms are kept so callers can time each.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "ridgeline/core/dtype.hpp"

namespace ridgeline::cuda {

class lt_gemm {
 public:
  // Throws std::invalid_argument for empty shapes, for fp8/int8 with m or k not a multiple of 16,
  // or when cuBLASLt offers no algorithm.
  // fp32_output: bf16/fp16 operands with an fp32 D (logits); other dtypes ignore it.
  // no_split_k: only candidates that reduce each output over k in one CTA, in order (no split-K
  // partials, no reduction kernel): what a batch-invariant GEMM needs.
  lt_gemm(cublasLtHandle_t handle, dtype t, std::size_t m, std::size_t n, std::size_t k,
          std::size_t workspace_bytes, int max_algorithms = 8, bool fp32_output = false,
          bool no_split_k = false);
  ~lt_gemm();
  lt_gemm(const lt_gemm&) = delete;
  lt_gemm& operator=(const lt_gemm&) = delete;

  int algorithm_count() const { return static_cast<int>(m_algorithms.size()); }
  void run(int algorithm, const void* a, const void* b, void* d, void* workspace,
           cudaStream_t s) const;
  const cublasLtMatmulAlgo_t& algorithm(int i) const;
  // An algorithm found for another shape (the batch-invariant path fixes one per weight matrix):
  // supports() asks cuBLASLt whether it can run this shape; run_with() throws when it cannot.
  bool supports(const cublasLtMatmulAlgo_t& algo) const;
  void run_with(const cublasLtMatmulAlgo_t& algo, const void* a, const void* b, void* d,
                void* workspace, cudaStream_t s) const;
  double flops() const {
    return 2.0 * static_cast<double>(m_m) * static_cast<double>(m_n) * static_cast<double>(m_k);
  }
  // Bytes of A, B read once and D written once: the DRAM floor of the product.
  double min_bytes() const;
  std::size_t a_bytes() const { return m_m * m_k * operand_bytes(m_type); }
  std::size_t b_bytes() const { return m_n * m_k * operand_bytes(m_type); }
  std::size_t d_bytes() const { return m_m * m_n * (m_fp32_output ? 4 : output_bytes(m_type)); }
  // What the heuristic was asked (the key of a cached algorithm choice, gemm_chooser.hpp).
  dtype type() const { return m_type; }
  std::size_t m() const { return m_m; }
  std::size_t n() const { return m_n; }
  std::size_t k() const { return m_k; }
  bool fp32_output() const { return m_fp32_output; }
  std::size_t workspace_bytes() const { return m_workspace; }

 private:
  void build(int max_algorithms, bool no_split_k);  // descriptors, layouts, candidates
  void release() noexcept;
  cublasLtHandle_t m_handle;
  dtype m_type;
  std::size_t m_m, m_n, m_k, m_workspace;
  bool m_fp32_output = false;
  cublasLtMatmulDesc_t m_desc = nullptr;
  cublasLtMatrixLayout_t m_a = nullptr, m_b = nullptr, m_d = nullptr;
  std::vector<cublasLtMatmulAlgo_t> m_algorithms;
};

}  // namespace ridgeline::cuda
