// `ridgeline diverge` on the GPU (label gpu; skips without a device): the host-side random weights
// equal the CUDA engine's seeded init bit for bit (so `--executor cpu` runs the GPU's model), the
// CUDA executor gives the same fingerprint twice, a loaded weight vector round-trips, and graph
// replay matches eager execution bit for bit (the same kernels on the same inputs).
#include "ridgeline/diverge/diverge.hpp"
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

// The batch-invariant (deterministic) mode: the request under test gets bitwise-identical fp32
// logits at every step alone and in batches of 8, 32 and 64 with different random co-runners
// (prompts of other lengths, prefilled in the same step). Realistic shapes (TinyLlama: GQA 32/4,
// hidden 2048, 22 layers) so that cuBLASLt runs its production kernels. The default mode is
// checked to differ between batch 1 and 64 on the same prompts: the comparison can fail.
TEST(Diverge, DeterministicModeGivesBitwiseIdenticalLogitsAtEveryBatchSize) {
  RIDGELINE_REQUIRE_GPU();
  bench::diverge_options o;
  o.model = "tinyllama-1.1b";
  o.executor = "cuda";
  o.prompt_set = "random:3:24:11";
  o.steps = 12;
  o.deterministic = true;
  o.batch = 1;
  const auto alone = bench::run_diverge(o);
  for (int batch : {8, 32, 64}) {
    o.batch = batch;
    o.co_runner_seed = static_cast<std::uint64_t>(100 + batch);
    const auto in_batch = bench::run_diverge(o);
    const auto report = bench::compare_fingerprints(alone, in_batch, "batch 1", "batch N");
    EXPECT_EQ(report["summary"]["verdict"], "bitwise identical")
        << "batch " << batch << ": " << report["summary"].dump();
    EXPECT_DOUBLE_EQ(report["summary"]["logits_equal_share"].get<double>(), 1.0)
        << "batch " << batch;
  }
  o.deterministic = false;
  o.batch = 1;
  const auto default_alone = bench::run_diverge(o);
  o.batch = 64;
  o.co_runner_seed = 164;
  const auto default_64 = bench::run_diverge(o);
  EXPECT_NE(bench::compare_fingerprints(default_alone, default_64, "1", "64")["summary"]["verdict"],
            "bitwise identical")
      << "the default mode (GEMV at batch 1, cuBLASLt's fastest algorithm at 64) should differ";
}
