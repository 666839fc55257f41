// The CUDA half of the cuBLASLt algorithm choice (policy and rule: ridgeline/kernels/
// gemm_choice.hpp): a gemm_chooser times an lt_gemm's candidates under its policy on the caller's
// operands and keeps the winner per (device, shape, workspace, candidate count). It is an owned
// object: the engine's linear layers and the probe's linear-layer rows share the process's
// engine-policy chooser (shared_gemm_chooser), so they run the same algorithm for the same shape;
// a test may build a private one.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "gemm_lt.hpp"
#include "ridgeline/kernels/gemm_choice.hpp"

namespace ridgeline::cuda {

struct gemm_choice {
  int index = 0;       // into the lt_gemm's candidate list (heuristic order)
  int candidates = 0;  // usable candidates the heuristic returned (at most policy.candidates)
  cublasLtMatmulAlgo_t algo{};
  std::vector<double> medians;  // seconds per candidate; empty when there was one (not timed)
};

// cuBLASLt's configuration of an algorithm, for result documents:
// "algo 66 tile 20 stages 8 split-k 1 reduction 0 swizzle 0 custom 0".
std::string describe(const cublasLtMatmulAlgo_t& algo);

class gemm_chooser {
 public:
  // Throws std::invalid_argument for a bad policy (validate in gemm_choice.hpp).
  explicit gemm_chooser(const gemm_choice_policy& policy);
  gemm_chooser(const gemm_chooser&) = delete;
  gemm_chooser& operator=(const gemm_chooser&) = delete;

  const gemm_choice_policy& policy() const { return m_policy; }
  // Build lt_gemm with this many heuristic candidates (the policy's).
  int candidates() const { return m_policy.candidates; }

  // The choice for g's shape on the current device: the cached one, or else each candidate is run
  // `warmup` times, then `repetitions` times timed with CUDA events (after an L2 flush each when
  // the policy is cold), and pick_fastest over the medians decides. A single candidate is taken
  // untimed. Runs on stream s with operands a, b, d and the workspace (g.workspace_bytes());
  // synchronizes, so call it outside CUDA-graph capture. Thread-safe.
  const gemm_choice& choose(const lt_gemm& g, const void* a, const void* b, void* d,
                            void* workspace, cudaStream_t s);
  // The cached choice for g's shape on the current device, or null; never times.
  const gemm_choice* find(const lt_gemm& g) const;

 private:
  // device, dtype, m, n, k, fp32 output, workspace bytes, usable candidates
  using key = std::tuple<int, int, std::size_t, std::size_t, std::size_t, bool, std::size_t, int>;
  static key key_of(const lt_gemm& g);
  gemm_choice_policy m_policy;
  mutable std::mutex m_mutex;
  std::map<key, gemm_choice> m_chosen;
};

// The process's chooser for a policy, made on first use: every engine (every linear_runner) and
// the probe's linear-layer rows with the same policy share its choices, so two engines in one
// process run bitwise the same kernels, and the probe reports the algorithm the engine runs.
std::shared_ptr<gemm_chooser> shared_gemm_chooser(const gemm_choice_policy& policy);

}  // namespace ridgeline::cuda
