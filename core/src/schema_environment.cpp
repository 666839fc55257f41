// Reader of the environment block (schemas/environment.hpp).
#include "ridgeline/core/schemas/environment.hpp"

namespace ridgeline::schema {

environment parse_environment(const node& block) {
  environment e;
  if (!block.value().is_object()) block.fail("expected an object");
  e.raw = block.value();
  e.time_utc = block.string("time_utc");
  const node host = block.object("host");
  e.hostname = host.string("hostname");
  host.string("kernel");
  host.integer("cpu_threads");
  const node rl = block.object("ridgeline");
  e.git_sha = rl.string("git_sha");
  e.git_dirty = rl.boolean("git_dirty");
  e.ridgeline_version = rl.string("version");
  rl.string("build_type");
  rl.boolean("built_with_cuda");
  e.has_gpu_member = block.has("gpu");
  if (e.has_gpu_member) {
    if (const auto g = block.nullable_object("gpu")) {
      environment_gpu gpu;
      gpu.name = g->string("name");
      gpu.compute_capability = g->string("compute_capability");
      gpu.cuda_runtime_version = g->string("cuda_runtime_version");
      g->integer("sm_count");
      g->integer("memory_bytes");
      gpu.driver_version = g->optional_string("driver_version");
      gpu.sm_clock_mhz = g->optional_integer("sm_clock_mhz");
      if (g->has("throttle_reasons")) gpu.throttle_reasons = g->strings("throttle_reasons");
      e.gpu = gpu;
    } else {
      block.string("gpu_unavailable_reason");
    }
  }
  return e;
}

environment environment_from_block(const nlohmann::json& block) {
  const document_context ctx{"environment block", ""};
  return parse_environment(node(block, ctx, "environment"));
}

}  // namespace ridgeline::schema
