// Linear layers of the engine (linear_params in ops.hpp) on the GPU: a weight-streaming GEMV for
// decode batches of up to k_gemv_max_tokens tokens, a weight-streaming tensor-core GEMM up to
// k_skinny_max_tokens (Hopper), cuBLASLt above that, with one plan (and its fastest heuristic
// algorithm) cached per shape.
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "gemm_lt.hpp"
#include "raii.hpp"
#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cuda {

inline constexpr int k_gemv_max_tokens = 8;
inline constexpr int k_skinny_max_tokens = 64;

struct gemv_options {
  int unroll = 4;    // 16-byte weight loads in flight per lane: 4 or 8
  int k_splits = 0;  // warps per output feature, each a slice of k: 1, 2, 4; 0 picks by shape
  bool pdl = false;  // programmatic dependent launch: start streaming weights before the
                     // previous kernel on the stream has finished (Hopper+)
};

// The GEMV path alone (1 <= num_tokens <= k_gemv_max_tokens); throws std::invalid_argument.
void gemv(const linear_params& p, cudaStream_t s, const gemv_options& o = {});
// gate_up GEMV with SwiGLU fused into its epilogue: p is the gate_up layer (out_features = 2 x
// act.intermediate, bf16 y unused); writes act.out = swiglu(p's output), bitwise what gemv() then
// swiglu() give, in one launch. 1 ... k_gemv_max_tokens tokens.
void gemv_swiglu(const linear_params& p, const swiglu_params& act, cudaStream_t s,
                 const gemv_options& o = {});
// Tensor-core weight-streaming GEMM for 1 ... k_skinny_max_tokens tokens (skinny_gemm.cu): one
// CTA per SM, each owning a slice of the output features over the whole k range; in_features a
// multiple of 8, x and w 16-byte aligned. pdl: launched with programmatic dependent launch
// (weights stream before the previous kernel has finished).
// Compute capability 9.0 only (sm_90a code); throws std::invalid_argument elsewhere.
struct skinny_gemm_config {
  int features_per_cta = 0;  // weight rows per CTA (gate + up rows for the SwiGLU form)
  int ctas = 0;
};
// The launch skinny_gemm (glu = false) or skinny_gemm_swiglu (glu = true) makes for p's shape;
// the first call per shape configures the kernel (call it outside CUDA-graph capture).
skinny_gemm_config skinny_gemm_plan(const linear_params& p, bool glu);
void skinny_gemm(const linear_params& p, bool pdl, cudaStream_t s);
// p is the gate_up layer (out_features = 2 x act.intermediate); writes act.out = swiglu of its
// output (gate and up sums rounded to bf16 first, as swiglu() reads them), p.y unused.
void skinny_gemm_swiglu(const linear_params& p, const swiglu_params& act, bool pdl,
                        cudaStream_t s);

// Row gather / column window copy (gather_rows_params in ops.hpp).
void gather_rows(const gather_rows_params& p, cudaStream_t s);

class linear_runner {
 public:
  explicit linear_runner(std::size_t workspace_bytes = 32u << 20);
  // Picks the path by token count. The first call for a shape builds its cuBLASLt plan and times
  // the candidate algorithms, so make it outside CUDA-graph capture (prepare() does just that).
  void run(const linear_params& p, cudaStream_t s);
  void prepare(const linear_params& p, cudaStream_t s);
  // The gate_up layer and SwiGLU: fused on the GEMV and skinny paths (gemv_swiglu,
  // skinny_gemm_swiglu), else run() then swiglu().
  void run_swiglu(const linear_params& p, const swiglu_params& act, cudaStream_t s);
  // Paths: GEMV for 1 token, the skinny tensor-core GEMM from 2 to k_skinny_max_tokens tokens on
  // compute capability 9.0 (cuBLASLt elsewhere), cuBLASLt above; set_path forces one for tests
  // and benchmarks.
  enum class path { automatic, gemv, skinny, cublas };
  void set_path(path p) { m_path = p; }
  void set_force_cublas(bool on) { m_path = on ? path::cublas : path::automatic; }
  // The automatic path's GEMM from 2 tokens: "auto", "cublas", or "skinny" (skinny_gemm where it
  // applies: up to k_skinny_max_tokens tokens on compute capability 9.0; cuBLASLt elsewhere).
  // Throws std::invalid_argument for any other name.
  void set_gemm_path(const std::string& name);
  void set_gemv_options(const gemv_options& o) { m_gemv = o; }
  // Batch-invariant mode: every token count, 1 included, goes through cuBLASLt with one algorithm
  // per weight matrix (in, out, output type): the heuristic's first candidate without split-K for
  // k_invariant_tokens tokens, chosen without timing so that every process picks the same one.
  // Each output element is then reduced over k by the same kernel in the same order whatever the
  // number of tokens in the GEMM, so a token's row is bitwise the same alone or in a batch.
  void set_batch_invariant(bool on) { m_invariant = on; }
  bool batch_invariant() const { return m_invariant; }
  static constexpr int k_invariant_tokens = 64;
  // cuBLASLt heuristic candidates timed per shape, cold (L2 flushed), once per process: the
  // fastest is kept and shared by every runner; applies to plans made after the call.
  void set_gemm_candidates(int n) { m_candidates = n; }

 private:
  struct plan {
    std::unique_ptr<lt_gemm> gemm;
    int algorithm = 0;
    bool fixed = false;  // batch-invariant: run m_invariant_algos' entry for the matrix
    cublasLtMatmulAlgo_t fixed_algo{};
  };
  plan& plan_for(const linear_params& p, cudaStream_t s);
  int timed_choice(const linear_params& p, const lt_gemm& gemm, cudaStream_t s);
  cublaslt_handle m_handle;
  device_buffer m_workspace;
  std::map<std::tuple<int, int, int, bool, bool>, plan> m_plans;  // tokens, in, out, fp32, inv.
  std::map<std::tuple<int, int, bool>, cublasLtMatmulAlgo_t> m_invariant_algos;
  const cublasLtMatmulAlgo_t& invariant_algo(const linear_params& p);
  bool m_invariant = false;
  int m_candidates = 32;
  path choose(const linear_params& p) const;
  path m_path = path::automatic;
  path m_gemm = path::automatic;  // set_gemm_path: automatic, cublas or skinny
  bool m_sm90 = false;            // skinny_gemm runs here
  gemv_options m_gemv;
};

}  // namespace ridgeline::cuda
