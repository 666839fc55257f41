// cuBLASLt algorithm choice on the GPU (see gemm_chooser.hpp).
#include "gemm_chooser.hpp"

#include <optional>
#include <utility>

#include "check.hpp"
#include "raii.hpp"

namespace ridgeline::cuda {

std::string describe(const cublasLtMatmulAlgo_t& algo) {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr) {
    // Every attribute read here is 32 bits wide or narrower; zero-extended.
    std::uint32_t v = 0;
    std::size_t written = 0;
    RIDGELINE_CUBLAS_CHECK(
        cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written));
    return std::to_string(v);
  };
  return "algo " + get(CUBLASLT_ALGO_CONFIG_ID) + " tile " + get(CUBLASLT_ALGO_CONFIG_TILE_ID) +
         " stages " + get(CUBLASLT_ALGO_CONFIG_STAGES_ID) + " split-k " +
         get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM) + " reduction " +
         get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME) + " swizzle " +
         get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING) + " custom " +
         get(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION);
}

gemm_chooser::gemm_chooser(const gemm_choice_policy& policy) : m_policy(policy) {
  validate(m_policy);
}

gemm_chooser::key gemm_chooser::key_of(const lt_gemm& g) {
  int device = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  return {device,       static_cast<int>(g.type()), g.m(), g.n(), g.k(), g.fp32_output(),
          g.workspace_bytes(), g.algorithm_count()};
}

const gemm_choice* gemm_chooser::find(const lt_gemm& g) const {
  const key k = key_of(g);
  const std::lock_guard<std::mutex> lock(m_mutex);
  const auto it = m_chosen.find(k);
  return it == m_chosen.end() ? nullptr : &it->second;
}

const gemm_choice& gemm_chooser::choose(const lt_gemm& g, const void* a, const void* b, void* d,
                                        void* workspace, cudaStream_t s) {
  const key k = key_of(g);
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (const auto it = m_chosen.find(k); it != m_chosen.end()) return it->second;
  gemm_choice c;
  c.candidates = g.algorithm_count();
  if (c.candidates > 1) {
    // The flush buffer (twice the L2) lives only while this shape is timed.
    std::optional<l2_flusher> flusher;
    if (m_policy.cold) {
      int l2 = 0;
      RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, std::get<0>(k)));
      flusher.emplace(static_cast<std::size_t>(l2));
    }
    event_timer timer;
    std::vector<double> t(static_cast<std::size_t>(m_policy.repetitions));
    c.medians.reserve(static_cast<std::size_t>(c.candidates));
    for (int i = 0; i < c.candidates; ++i) {
      for (int w = 0; w < m_policy.warmup; ++w) g.run(i, a, b, d, workspace, s);
      for (double& ti : t) {
        if (flusher) flusher->flush(s);
        timer.start(s);
        g.run(i, a, b, d, workspace, s);
        timer.stop(s);
        ti = timer.seconds();
      }
      c.medians.push_back(median_of_odd(t));
    }
    c.index = pick_fastest(c.medians, m_policy.margin);
  }
  c.algo = g.algorithm(c.index);
  return m_chosen.emplace(k, std::move(c)).first->second;
}

std::shared_ptr<gemm_chooser> shared_gemm_chooser(const gemm_choice_policy& policy) {
  // One chooser per distinct policy, for the life of the process (choices are never revisited:
  // a shape keeps its kernel, so results stay bitwise reproducible within a process).
  static std::mutex mutex;
  static std::vector<std::shared_ptr<gemm_chooser>> choosers;
  const std::lock_guard<std::mutex> lock(mutex);
  for (const auto& c : choosers) {
    if (c->policy() == policy) return c;
  }
  choosers.push_back(std::make_shared<gemm_chooser>(policy));
  return choosers.back();
}

}  // namespace ridgeline::cuda
