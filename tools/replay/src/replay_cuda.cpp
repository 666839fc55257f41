// make_cuda_executor: the cuda executor on GPU 0 with the replay's options.
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/replay/replay.hpp"
#include "ridgeline/telemetry/device.hpp"

namespace ridgeline::replay {

replay_executor make_cuda_executor(const replay_setup& s) {
  const replay_options& a = s.options;
  const kv::kv_options& k = a.serving;
  engine_options o;
  o.block_tokens = k.block_tokens;
  o.max_tokens = static_cast<int>(k.max_batched_tokens);
  o.max_seqs = k.max_running;
  o.num_kv_blocks = a.kv_blocks;
  if (a.memory_fraction > 0) o.memory_fraction = a.memory_fraction;
  o.cuda_graphs = a.cuda_graphs;
  o.graph_table_blocks = a.graph_table_blocks;
  o.gemm_candidates = a.gemm_candidates;
  o.batch_invariant = a.deterministic;
  o.seed = a.seed;
  o.checkpoint = a.checkpoint;
  o.weights = a.weights;
  o.host_kv_blocks = host_blocks_for(*s.kv.model, s);
  o.top_logprobs = a.top_logprobs;
  replay_executor r;
  auto engine = std::make_unique<cuda_engine>(*s.kv.model, o);
  r.kv_blocks = engine->num_kv_blocks();
  r.weight_format = std::string(planner::name(engine->weight_format()));
  r.exec = std::move(engine);
  r.executor_name = "cuda";
  const auto dev = metrics::query_device(0);
  r.device = dev ? dev->name : "GPU 0";
  r.model = s.kv.model;
  return r;
}

}  // namespace ridgeline::replay
