// `ridgeline diverge` on the GPU (label gpu; skips without a device): the host-side random weights
// equal the CUDA engine's seeded init bit for bit (so `--executor cpu` runs the GPU's model), the
// CUDA executor gives the same fingerprint twice, a loaded weight vector round-trips, and graph
// replay matches eager execution bit for bit (the same kernels on the same inputs).
#include "ridgeline/bench/diverge.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/engine/random_weights.hpp"

using namespace ridgeline;

TEST(Diverge, HostRandomWeightsEqualGpuInit) {
  RIDGELINE_REQUIRE_GPU();
  for (const char* name : {"tiny-gpu"}) {
    const model_preset& m = model_preset_by_name(name);
    engine_options o;
    o.num_kv_blocks = 8;
    o.max_tokens = 64;
    o.max_seqs = 4;
    o.seed = 5;
    cuda_engine gpu(m, o);
    const auto device = gpu.download_weights();
    const auto host = random_weights(m, 5);
    ASSERT_EQ(device.size(), host.size());
    std::size_t mismatches = 0, first = host.size();
    for (std::size_t i = 0; i < host.size(); ++i) {
      if (device[i] != host[i]) {
        ++mismatches;
        first = std::min(first, i);
      }
    }
    EXPECT_EQ(mismatches, 0u) << name << ": first at element " << first;
    // load_weights round-trips.
    auto other = random_weights(m, 6);
    gpu.load_weights(other);
    EXPECT_EQ(gpu.download_weights(), other);
  }
}

TEST(Diverge, CudaExecutorIsRepeatableAndGraphsMatchEager) {
  RIDGELINE_REQUIRE_GPU();
  bench::diverge_options o;
  o.model = "tiny-gpu";
  o.executor = "cuda";
  o.prompt_set = "random:3:20:4";
  o.steps = 12;
  o.batch = 5;
  const auto a = bench::run_diverge(o), b = bench::run_diverge(o);
  EXPECT_EQ(bench::compare_fingerprints(a, b, "a", "b")["summary"]["verdict"], "bitwise identical");
  o.cuda_graphs = false;
  const auto eager = bench::run_diverge(o);
  EXPECT_EQ(bench::compare_fingerprints(a, eager, "graphs", "eager")["summary"]["verdict"],
            "bitwise identical");
}
