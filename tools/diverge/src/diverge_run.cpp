// GPU half of `ridgeline diverge run` (see diverge.hpp): the CUDA engine as the fingerprint's
// executor, with top-k log-probabilities and the fp32 logits of every sampled row copied back.
// The run loop, prompts and JSON are host code in diverge_common.cpp.
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench::detail {
namespace {

class cuda_executor final : public diverge_executor {
 public:
  cuda_executor(const executor_setup& s, const engine_options& o) : m_engine(s.decoder, o) {
    if (s.weights) m_engine.load_weights(*s.weights);
  }
  diverge_step_output step(std::span<const step_sequence> seqs) override {
    step_result r = m_engine.step(seqs);
    return {std::move(r.tokens), std::move(r.top_logprobs), std::move(r.top_ids),
            std::move(r.logits)};
  }

 private:
  cuda_engine m_engine;
};

}  // namespace

std::unique_ptr<diverge_executor> make_cuda_diverge_executor(const executor_setup& s) {
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
  return std::make_unique<cuda_executor>(s, o);
}

}  // namespace ridgeline::bench::detail
