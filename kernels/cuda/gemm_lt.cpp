// cuBLASLt GEMM (see gemm_lt.hpp).
#include "gemm_lt.hpp"

#include <cstdint>
#include <memory>
#include <type_traits>
#include <stdexcept>
#include <string>

#include "check.hpp"

namespace ridgeline::cuda {

namespace {

struct lt_types {
  cudaDataType_t ab, d, scale;
  cublasComputeType_t compute;
};

lt_types types_of(dtype t) {
  switch (t) {
    case dtype::fp32: return {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case dtype::tf32: return {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32};
    case dtype::fp16: return {CUDA_R_16F, CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case dtype::bf16: return {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case dtype::fp8_e4m3: return {CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case dtype::int8: return {CUDA_R_8I, CUDA_R_32I, CUDA_R_32I, CUBLAS_COMPUTE_32I};
  }
  throw std::invalid_argument("unsupported dtype");
}

}  // namespace

lt_gemm::lt_gemm(cublasLtHandle_t handle, dtype t, std::size_t m, std::size_t n, std::size_t k,
                 std::size_t workspace_bytes, int max_algorithms, bool fp32_output,
                 bool no_split_k)
    : m_handle(handle), m_type(t), m_m(m), m_n(n), m_k(k), m_workspace(workspace_bytes),
      m_fp32_output(fp32_output && (t == dtype::bf16 || t == dtype::fp16)) {
  if (m == 0 || n == 0 || k == 0) {
    throw std::invalid_argument("gemm: m, n and k must be positive, got " + std::to_string(m) +
                                "x" + std::to_string(n) + "x" + std::to_string(k));
  }
  if ((t == dtype::fp8_e4m3 || t == dtype::int8) && (m % 16 != 0 || k % 16 != 0)) {
    throw std::invalid_argument("gemm: " + std::string(name(t)) +
                                " needs m and k multiples of 16, got m=" + std::to_string(m) +
                                " k=" + std::to_string(k));
  }
  try {
    build(max_algorithms, no_split_k);
  } catch (...) {
    release();  // no destructor runs for a constructor that throws
    throw;
  }
}

void lt_gemm::build(int max_algorithms, bool no_split_k) {
  const dtype t = m_type;
  const std::size_t m = m_m, n = m_n, k = m_k;
  lt_types ty = types_of(t);
  if (m_fp32_output) ty.d = CUDA_R_32F;
  RIDGELINE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&m_desc, ty.compute, ty.scale));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  RIDGELINE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(m_desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
  RIDGELINE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(m_desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
  // Column-major views: A is k x m (ld k), B is k x n (ld k), D is m x n (ld m).
  const auto i64 = [](std::size_t v) { return static_cast<std::uint64_t>(v); };
  RIDGELINE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&m_a, ty.ab, i64(k), i64(m), static_cast<int64_t>(k)));
  RIDGELINE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&m_b, ty.ab, i64(k), i64(n), static_cast<int64_t>(k)));
  RIDGELINE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&m_d, ty.d, i64(m), i64(n), static_cast<int64_t>(m)));

  cublasLtMatmulPreference_t pref = nullptr;
  RIDGELINE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                        decltype(&cublasLtMatmulPreferenceDestroy)>
      pref_owner(pref, cublasLtMatmulPreferenceDestroy);
  RIDGELINE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &m_workspace, sizeof m_workspace));
  if (no_split_k) {
    const std::uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
    RIDGELINE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none, sizeof none));
  }
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<std::size_t>(max_algorithms));
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      m_handle, m_desc, m_a, m_b, m_d, m_d, pref, max_algorithms, results.data(), &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    throw std::invalid_argument("gemm: cuBLASLt has no " + std::string(name(t)) +
                                " algorithm for m=" + std::to_string(m) + " n=" +
                                std::to_string(n) + " k=" + std::to_string(k));
  }
  for (int i = 0; i < found; ++i) {
    const auto& r = results[static_cast<std::size_t>(i)];
    if (r.state != CUBLAS_STATUS_SUCCESS) continue;
    if (no_split_k) {
      std::int32_t splits = 1;
      RIDGELINE_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(
          &r.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof splits, nullptr));
      if (splits > 1) continue;
    }
    m_algorithms.push_back(r.algo);
  }
  if (m_algorithms.empty()) {
    throw std::invalid_argument("gemm: cuBLASLt has no usable " + std::string(name(t)) +
                                " algorithm for m=" + std::to_string(m) + " n=" +
                                std::to_string(n) + " k=" + std::to_string(k) +
                                (no_split_k ? " without split-K" : ""));
  }
}

lt_gemm::~lt_gemm() { release(); }

void lt_gemm::release() noexcept {
  if (m_a) cublasLtMatrixLayoutDestroy(m_a);
  if (m_b) cublasLtMatrixLayoutDestroy(m_b);
  if (m_d) cublasLtMatrixLayoutDestroy(m_d);
  if (m_desc) cublasLtMatmulDescDestroy(m_desc);
  m_a = m_b = m_d = nullptr;
  m_desc = nullptr;
}

double lt_gemm::min_bytes() const {
  return static_cast<double>(a_bytes() + b_bytes() + d_bytes());
}

const cublasLtMatmulAlgo_t& lt_gemm::algorithm(int i) const {
  if (i < 0 || i >= algorithm_count()) {
    throw std::invalid_argument("gemm: algorithm index out of range");
  }
  return m_algorithms[static_cast<std::size_t>(i)];
}

bool lt_gemm::supports(const cublasLtMatmulAlgo_t& algo) const {
  cublasLtMatmulHeuristicResult_t result{};
  const cublasStatus_t st =
      cublasLtMatmulAlgoCheck(m_handle, m_desc, m_a, m_b, m_d, m_d, &algo, &result);
  return st == CUBLAS_STATUS_SUCCESS && result.state == CUBLAS_STATUS_SUCCESS &&
         result.workspaceSize <= m_workspace;
}

void lt_gemm::run(int algorithm, const void* a, const void* b, void* d, void* workspace,
                  cudaStream_t s) const {
  run_with(this->algorithm(algorithm), a, b, d, workspace, s);
}

void lt_gemm::run_with(const cublasLtMatmulAlgo_t& algo, const void* a, const void* b, void* d,
                       void* workspace, cudaStream_t s) const {
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const std::int32_t alpha_i = 1, beta_i = 0;
  const bool integer = m_type == dtype::int8;
  const void* alpha = integer ? static_cast<const void*>(&alpha_i) : &alpha_f;
  const void* beta = integer ? static_cast<const void*>(&beta_i) : &beta_f;
  RIDGELINE_CUBLAS_CHECK(cublasLtMatmul(m_handle, m_desc, alpha, a, m_a, b, m_b, beta, d, m_d, d,
                                        m_d, &algo, workspace, m_workspace, s));
}

}  // namespace ridgeline::cuda
