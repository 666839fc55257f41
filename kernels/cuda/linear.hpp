// Linear layers of the engine (linear_params in ops.hpp) on the GPU: a weight-streaming GEMV for
// decode batches of up to k_gemv_max_tokens tokens, a weight-streaming tensor-core GEMM up to
// k_skinny_max_tokens (Hopper), cuBLASLt above that, with one plan per shape whose algorithm
// comes from the engine-policy gemm_chooser (gemm_chooser.hpp). Quantized weights (packed,
// quant_packed.hpp) run through run_quant: the quantized GEMV / skinny GEMM of quant_gemv.hpp for
// decode-sized steps, dequantize-then-bf16-GEMM for prefill-sized ones.
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "gemm_chooser.hpp"
#include "gemm_lt.hpp"
#include "quant_gemv.hpp"
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
// The skinny GEMM's launch per (device, outputs, glu): a tile width and CTA count, a function of
// the shape and the SM count alone. Owned by whoever runs the skinny GEMM (the linear runner), not
// by the process; one owner, one thread.
class skinny_gemm_plans {
 public:
  struct entry {
    int variant = 0;  // index into skinny_gemm.cu's tile widths (plain or SwiGLU list)
    int ctas = 0;
  };
  // The entry for `outputs` output features on the current device, chosen on first use (which
  // also checks the device and configures the kernel: outside CUDA-graph capture).
  const entry& get(int outputs, bool glu);

 private:
  std::map<std::tuple<int, int, bool>, entry> m_entries;  // (device, outputs, glu)
};
// The launch skinny_gemm (glu = false) or skinny_gemm_swiglu (glu = true) makes for p's shape;
// the first call per shape configures the kernel (call it outside CUDA-graph capture).
skinny_gemm_config skinny_gemm_plan(const linear_params& p, bool glu, skinny_gemm_plans& plans);
void skinny_gemm(const linear_params& p, skinny_gemm_plans& plans, bool pdl, cudaStream_t s);
// p is the gate_up layer (out_features = 2 x act.intermediate); writes act.out = swiglu of its
// output (gate and up sums rounded to bf16 first, as swiglu() reads them), p.y unused.
void skinny_gemm_swiglu(const linear_params& p, const swiglu_params& act,
                        skinny_gemm_plans& plans, bool pdl, cudaStream_t s);

// Row gather / column window copy (gather_rows_params in ops.hpp).
// pdl: see ops.hpp.
void gather_rows(const gather_rows_params& p, cudaStream_t s, bool pdl = false);

// Quantized weights (run_quant): up to k_quant_gemv_max_tokens (64) tokens one quant_gemv launch;
// up to k_quant_sliced_max_tokens tokens quant_gemv on consecutive 64-token slices of the step
// (each slice streams the packed weights again); above that, the layer is dequantized into bf16
// scratch (quant_dequantize_bf16) and the bf16 path runs on it (cuBLASLt at these sizes).
// Why 256 (docs/kernels.md, "Quantized weights in the engine"): on an H100 one Llama-2-7B block
// in int4 costs an estimated 40-90 us per 64-token slice (26 GFLOP on mma.sync), so 0.6-1.4 us
// per token, against ~170 us to dequantize the block (108 MB read, 405 MB written) plus the bf16
// GEMM (173 us while memory-bound, up to ~256 tokens, then ~0.58 us per token at 700 TFLOP/s):
// slices win clearly at 128 tokens, break even between 256 and 512. To be measured: time both
// paths (linear_options::quant_force) on the block at 64 ... 512 tokens, cold, and set this to
// the largest multiple of 64 below the first token count where dequantize + GEMM is faster.
inline constexpr int k_quant_sliced_max_tokens = 256;

// The path of a quantized linear layer (run_quant).
enum class quant_linear_path {
  automatic,
  gemv,     // quant_gemv, in 64-token slices above k_quant_gemv_max_tokens
  dequant,  // quant_dequantize_bf16 into scratch, then the bf16 path
};

// Paths of a linear layer: the GEMV (1 ... k_gemv_max_tokens tokens), the skinny tensor-core GEMM
// (1 ... k_skinny_max_tokens tokens, compute capability 9.0), cuBLASLt (any).
enum class linear_path { automatic, gemv, skinny, cublas };

struct linear_options {
  // The automatic path's GEMM from 2 tokens (the user's --gemm): "auto" or "skinny" (the skinny
  // GEMM where it applies: up to k_skinny_max_tokens tokens on compute capability 9.0; cuBLASLt
  // elsewhere), or "cublas". The runner's constructor throws std::invalid_argument for any other.
  std::string gemm = "auto";
  // Every token count, 1 included, through cuBLASLt with one algorithm per weight matrix (in, out,
  // output type): the heuristic's first candidate without split-K for k_invariant_tokens tokens,
  // chosen without timing so that every process picks the same one. Each output element is then
  // reduced over k by the same kernel in the same order whatever the number of tokens in the
  // GEMM, so a token's row is bitwise the same alone or in a batch.
  bool batch_invariant = false;
  // cuBLASLt heuristic candidates timed per shape under the engine's policy (gemm_choice.hpp).
  int gemm_candidates = k_engine_gemm_policy.candidates;
  std::size_t workspace_bytes = 32u << 20;
  // Tests and benchmarks only: one path for every token count instead of the choice by shape.
  linear_path force = linear_path::automatic;
  // Tests and benchmarks only: one path for quantized weights whatever the token count (the
  // crossover measurement of k_quant_sliced_max_tokens; every branch in the GPU tests).
  quant_linear_path quant_force = quant_linear_path::automatic;
};

class linear_runner {
 public:
  using path = linear_path;
  // cuBLASLt algorithms come from the process's engine-policy chooser (shared_gemm_chooser with
  // o.gemm_candidates), so every runner runs the same algorithm for the same shape.
  explicit linear_runner(const linear_options& o = {});
  // Picks the path by token count. The first call for a shape builds its cuBLASLt plan and times
  // the candidate algorithms, so make it outside CUDA-graph capture (prepare() does just that).
  // pdl: the GEMV and skinny GEMM (and the swiglu kernel of run_swiglu's unfused form) launch with
  // programmatic dependent launch (ops.hpp); cuBLASLt launches normally.
  void run(const linear_params& p, cudaStream_t s, bool pdl = false);
  void prepare(const linear_params& p, cudaStream_t s);
  // The gate_up layer and SwiGLU: fused on the GEMV and skinny paths (gemv_swiglu,
  // skinny_gemm_swiglu), else run() then swiglu().
  void run_swiglu(const linear_params& p, const swiglu_params& act, cudaStream_t s,
                  bool pdl = false);
  // A linear layer with packed quantized weights w (device pointers; w.rows = p.out_features,
  // w.cols = p.in_features); p.w is ignored. scratch: bf16 [w.rows][w.cols] (16-byte aligned) for
  // the dequantize path, which runs above k_quant_sliced_max_tokens tokens and for every token
  // count in batch-invariant mode (one cuBLASLt algorithm per matrix, as for bf16 weights, so a
  // token's row does not depend on the batch); null when the caller never takes that path (it
  // throws std::invalid_argument if it must). pdl: the quant_gemv launches (ops.hpp).
  void run_quant(const linear_params& p, const packed_quant_view& w, bf16_bits* scratch,
                 cudaStream_t s, bool pdl = false);
  // The gate_up layer with packed weights, then SwiGLU: run_quant into p.y, then swiglu().
  void run_quant_swiglu(const linear_params& p, const packed_quant_view& w, bf16_bits* scratch,
                        const swiglu_params& act, cudaStream_t s, bool pdl = false);
  // The path run_quant takes for `tokens` tokens with this runner's options.
  quant_linear_path quant_path_for(int tokens) const;

  // The timed cuBLASLt choice p's shape runs, once prepare() or run() has planned it on the
  // cuBLASLt path; null otherwise (other paths, not planned yet, batch-invariant mode).
  const gemm_choice* gemm_choice_for(const linear_params& p) const;
  static constexpr int k_invariant_tokens = 64;

 private:
  struct plan {
    std::unique_ptr<lt_gemm> gemm;
    const gemm_choice* choice = nullptr;  // owned by m_chooser
    bool fixed = false;  // batch-invariant: run m_invariant_algos' entry for the matrix
    cublasLtMatmulAlgo_t fixed_algo{};
  };
  using plan_key = std::tuple<int, int, int, bool, bool>;  // tokens, in, out, fp32, invariant
  static plan_key key_of(const linear_params& p, bool invariant);
  plan& plan_for(const linear_params& p, cudaStream_t s);
  const cublasLtMatmulAlgo_t& invariant_algo(const linear_params& p);
  path choose(const linear_params& p) const;
  cublaslt_handle m_handle;
  device_buffer m_workspace;
  std::shared_ptr<gemm_chooser> m_chooser;
  std::map<plan_key, plan> m_plans;
  std::map<std::tuple<int, int, bool>, cublasLtMatmulAlgo_t> m_invariant_algos;
  skinny_gemm_plans m_skinny;  // the skinny GEMM's launch per shape
  quant_gemv_plans m_quant;    // the quantized GEMV's launch per kind and token tile
  quant_linear_path m_quant_force = quant_linear_path::automatic;
  bool m_invariant = false;
  path m_force = path::automatic;
  bool m_gemm_cublas = false;  // linear_options::gemm == "cublas"
  bool m_sm90 = false;         // skinny_gemm runs here
};

}  // namespace ridgeline::cuda
