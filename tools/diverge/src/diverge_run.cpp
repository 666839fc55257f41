// GPU half of `ridgeline diverge run` (see diverge.hpp): the CUDA engine as the run's executor,
// with top-k log-probabilities and the fp32 logits of every sampled row copied back. The run
// loop, prompts and JSON are host code (run_loop.cpp and its neighbours).
#include "ridgeline/core/errors.hpp"
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/telemetry/device.hpp"

namespace ridgeline::bench::detail {

std::unique_ptr<executor> make_cuda_diverge_executor(const executor_setup& s) {
  if (metrics::device_count() == 0) {
    throw no_device_error("ridgeline diverge run needs a CUDA GPU (or --executor cpu): " +
                          metrics::no_device_reason());
  }
  if (!metrics::query_device(s.device)) {
    throw std::invalid_argument("--device " + std::to_string(s.device) + " does not exist");
  }
  engine_options o;
  o.block_tokens = s.decoder.block_tokens;
  o.max_tokens = s.max_tokens;
  o.max_seqs = s.max_seqs;
  o.num_kv_blocks = s.num_kv_blocks;
  o.cuda_graphs = s.cuda_graphs;
  o.split_tokens = s.split_tokens;
  o.batch_invariant = s.batch_invariant;
  o.seed = s.weight_seed;
  o.top_logprobs = s.top_k;
  o.return_logits = true;
  o.device = s.device;
  o.weights = s.weight_format;
  if (s.weight_format != planner::weight_format::bf16) {
    o.checkpoint = s.checkpoint;  // packed as stored, or quantized at load
    return std::make_unique<cuda_engine>(s.decoder, o);
  }
  auto engine = std::make_unique<cuda_engine>(s.decoder, o);
  if (s.weights) engine->load_weights(*s.weights);
  return engine;
}

}  // namespace ridgeline::bench::detail
