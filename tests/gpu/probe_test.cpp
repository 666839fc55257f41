// The probe end to end at reduced size: every reported figure inside physical bounds (positive,
// finite, under the device's theoretical DRAM bandwidth and the datasheet peak; GEMM peaks under
// the instruction peaks), and the profile survives a JSON round trip. The linear-layer rows time
// the cuBLASLt algorithm the engine's linear layers run.
#include <cmath>
#include <string>

#include "cuda/gemm_chooser.hpp"
#include "cuda/linear.hpp"
#include "cuda/random.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/probe/probe.hpp"

using namespace ridgeline;

TEST(Probe, FiguresInsidePhysicalBounds) {
  RIDGELINE_REQUIRE_GPU();
  bench::probe_options o;
  o.max_bytes = 1ULL << 30;
  o.gemm_size = 4096;
  o.linear_layers = false;
  const gpu_profile p = bench::run_probe(o);
  const auto dev = metrics::query_device(0);
  ASSERT_TRUE(dev);
  const double theory = dev->theoretical_dram_bytes_per_second();
  ASSERT_GT(theory, 0);
  for (double bw : {p.read_bytes_per_second, p.write_bytes_per_second, p.copy_bytes_per_second}) {
    EXPECT_TRUE(std::isfinite(bw));
    EXPECT_GT(bw, 0.2 * theory) << "implausibly slow";
    EXPECT_LT(bw, 1.02 * theory) << "faster than the memory can go: L2 in the measurement?";
  }
  int working_set_rows = 0;
  for (const auto& r : p.rows) {
    if (r["kind"] != "working_set") continue;
    ++working_set_rows;
    const double bps = r["bytes_per_second"].get<double>();
    EXPECT_TRUE(std::isfinite(bps) && bps > 0);
    // Beyond twice the L2 the sweep reads DRAM and must respect its bound too.
    if (r["buffer_bytes"].get<double>() >= 8.0 * double(dev->l2_bytes)) {
      EXPECT_LT(bps, 1.02 * theory) << r.dump();
    }
  }
  EXPECT_EQ(working_set_rows, 3 * 13);  // 256 KiB ... 1 GiB, three ops
  ASSERT_EQ(p.peaks.size(), k_all_dtypes.size());
  for (const auto& [t, pk] : p.peaks) {
    EXPECT_TRUE(std::isfinite(pk.flops_per_second) && pk.flops_per_second > 0) << name(t);
    if (pk.datasheet_flops_per_second > 0) {
      EXPECT_LT(pk.flops_per_second, 1.05 * pk.datasheet_flops_per_second) << name(t);
    }
  }
  // Instruction peaks: every kind this device runs, positive, under the datasheet (5% for clock
  // boosts above the datasheet's), and no GEMM faster than the instruction it is made of.
  ASSERT_TRUE(p.instruction_peaks.has_value());
  const bool sm90 = dev->compute_major == 9 && dev->compute_minor == 0;
  EXPECT_EQ(p.instruction_peaks->peaks.size(), sm90 ? 4u : 2u);
  for (const auto& [k, pk] : p.instruction_peaks->peaks) {
    EXPECT_TRUE(std::isfinite(pk.flops_per_second) && pk.flops_per_second > 0) << name(k);
    EXPECT_LE(pk.p10_flops_per_second, pk.flops_per_second) << name(k);
    EXPECT_GE(pk.p90_flops_per_second, pk.flops_per_second) << name(k);
    if (pk.datasheet_flops_per_second > 0) {
      EXPECT_LT(pk.flops_per_second, 1.05 * pk.datasheet_flops_per_second) << name(k);
    }
    if (const auto d = gemm_dtype(k)) {
      EXPECT_LT(p.peaks.at(*d).flops_per_second, 1.05 * pk.flops_per_second) << name(k);
    }
  }
  const gpu_profile q = gpu_profile_from_json(to_json(p));
  EXPECT_EQ(to_json(q), to_json(p));
  EXPECT_FALSE(bench::probe_table(p).empty());
}

TEST(Probe, RefusesMoreMemoryThanTheGpuHas) {
  RIDGELINE_REQUIRE_GPU();
  bench::probe_options o;
  o.max_bytes = 1ULL << 40;  // 1 TiB, allocated twice
  try {
    bench::run_probe(o);
    FAIL() << "accepted a 1 TiB buffer";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("free"), std::string::npos) << e.what();
  }
}

// One definition of "the fastest cuBLASLt algorithm": the probe's linear-layer rows and the
// engine's linear layers (linear_runner with the engine's default options) choose through the
// process's engine-policy chooser, so for every Llama-2-7B layer at 128 tokens (cuBLASLt on every
// device) the probe row names the algorithm the engine runs. Fails if either side chooses with a
// private chooser or another policy.
TEST(Probe, LinearRowsTimeTheEnginesAlgorithm) {
  RIDGELINE_REQUIRE_GPU();
  bench::probe_options o;
  o.max_bytes = 1ULL << 20;
  o.gemm_size = 256;
  o.dtypes = {dtype::bf16};
  o.linear_layers = true;
  const gpu_profile prof = bench::run_probe(o);
  EXPECT_EQ(prof.config.value("linear_choice", ""), describe(k_engine_gemm_policy));
  EXPECT_EQ(prof.config.value("gemm_peak_choice", ""), describe(k_peak_gemm_policy));

  const int tokens = 128;
  const auto shared = cuda::shared_gemm_chooser(k_engine_gemm_policy);
  cuda::linear_runner engine;  // engine_options' defaults: "auto", 32 candidates
  cuda::cublaslt_handle h;
  cuda::stream s;
  struct layer {
    const char* name;
    int out, in;
  };
  for (const layer L : {layer{"qkv", 3 * 4096, 4096}, layer{"o", 4096, 4096},
                        layer{"gate_up", 2 * 11008, 4096}, layer{"down", 4096, 11008}}) {
    SCOPED_TRACE(L.name);
    cuda::device_buffer w(std::size_t(L.out) * L.in * 2), x(std::size_t(tokens) * L.in * 2),
        y(std::size_t(tokens) * L.out * 2);
    cuda::fill_uniform(w.data(), dtype::bf16, std::size_t(L.out) * L.in, 21, 0.05f, s.get());
    cuda::fill_uniform(x.data(), dtype::bf16, std::size_t(tokens) * L.in, 22, 1.0f, s.get());
    const linear_params p{x.data<bf16_bits>(), w.data<bf16_bits>(), y.data(), false, tokens, L.in,
                          L.out};
    engine.prepare(p, s.get());
    const cuda::gemm_choice* chosen = engine.gemm_choice_for(p);
    ASSERT_NE(chosen, nullptr);
    // The engine's entry is the shared chooser's, not a private one's.
    const cuda::lt_gemm g(h.get(), dtype::bf16, std::size_t(L.out), tokens, std::size_t(L.in),
                          32u << 20, k_engine_gemm_policy.candidates);
    EXPECT_EQ(shared->find(g), chosen);
    const nlohmann::json* row = nullptr;
    for (const auto& r : prof.rows) {
      if (r["kind"] == "linear" && r["layer"] == L.name && r["n"] == tokens) row = &r;
    }
    ASSERT_NE(row, nullptr) << "no probe row for 128 tokens";
    EXPECT_EQ((*row)["algorithm_index"].get<int>(), chosen->index);
    EXPECT_EQ((*row)["algorithm_candidates"].get<int>(), chosen->candidates);
    EXPECT_EQ((*row)["gemm_choice"]["algorithm"].get<std::string>(), cuda::describe(chosen->algo));
    EXPECT_EQ((*row)["gemm_choice"]["policy"].get<std::string>(), describe(k_engine_gemm_policy));
  }
}
