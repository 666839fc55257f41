// Host side of `ridgeline roofline`: the decode ridge crossing against a brute-force scan, the
// intensity limit, the ceilings and crossing blocks, the table and CSV of a document, and the CLI's
// errors (bad options exit 2, no GPU exits 3, one line each).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <tuple>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/roofline/roofline.hpp"
#include "ridgeline/sweep/sweep.hpp"
#include "ridgeline/telemetry/device.hpp"

using namespace ridgeline;
using nlohmann::json;

namespace {

double decode_intensity(const model_preset& m, int batch, int context) {
  const step_work w = step_work_of(m, decode_shape(batch, context));
  return w.flops / w.bytes();
}

gpu_profile h100_like() {
  gpu_profile p;
  p.name = "Test GPU";
  p.source = "measured";
  p.read_bytes_per_second = 3.13e12;
  p.copy_bytes_per_second = 3.03e12;
  p.datasheet_bytes_per_second = 3.35e12;
  p.peaks[dtype::bf16] = {803e12, 989.4e12};
  p.peaks[dtype::fp32] = {49e12, 66.9e12};
  return p;
}

}  // namespace

TEST(Roofline, CrossingMatchesABruteForceScan) {
  const model_preset& m = model_preset_by_name("llama-3-8b");
  for (int context : {1, 128}) {
    for (double ridge : {50.0, 150.0, 256.6}) {
      int scan = 0;
      for (int b = 1; b <= 1 << 16; ++b) {
        if (decode_intensity(m, b, context) >= ridge) {
          scan = b;
          break;
        }
      }
      const auto got = bench::decode_ridge_crossing(m, context, ridge, 1 << 16);
      if (scan == 0) {
        EXPECT_FALSE(got.has_value()) << "context " << context << " ridge " << ridge;
      } else {
        ASSERT_TRUE(got.has_value()) << "context " << context << " ridge " << ridge;
        EXPECT_EQ(*got, scan) << "context " << context << " ridge " << ridge;
        if (*got > 1) {
          EXPECT_LT(decode_intensity(m, *got - 1, context), ridge);
        }
      }
    }
  }
}

TEST(Roofline, IntensityLimitBoundsEveryBatchAndIsApproached) {
  const model_preset& m = model_preset_by_name("llama-2-7b");
  for (int context : {128, 512, 2048}) {
    const double limit = bench::decode_intensity_limit(m, context);
    EXPECT_GT(limit, 0);
    for (int b : {1, 64, 4096}) EXPECT_LT(decode_intensity(m, b, context), limit);
    EXPECT_GT(decode_intensity(m, 1 << 20, context), 0.99 * limit);
    // Above the limit the crossing never comes.
    EXPECT_FALSE(bench::decode_ridge_crossing(m, context, limit * 1.01).has_value());
  }
}

TEST(Roofline, CeilingsAndCrossingBlocks) {
  const gpu_profile p = h100_like();
  const json c = bench::roofline_ceilings(p, "test");
  EXPECT_DOUBLE_EQ(c["dram_read_bytes_per_second"].get<double>(), 3.13e12);
  bool bf16 = false;
  for (const auto& d : c["dtypes"]) {
    if (d["dtype"] == "bf16") {
      bf16 = true;
      EXPECT_NEAR(d["ridge_flops_per_byte"].get<double>(), 803e12 / 3.13e12, 1e-9);
      EXPECT_NEAR(d["datasheet_ridge_flops_per_byte"].get<double>(), 989.4e12 / 3.35e12, 1e-9);
    }
  }
  EXPECT_TRUE(bf16);
  const model_preset& m = model_preset_by_name("llama-2-7b");
  const json x = bench::roofline_crossings(m, p, {1, 512});
  ASSERT_EQ(x["contexts"].size(), 2u);
  // Context 1: the weights dominate and decode crosses at a finite batch; context 512 of an MHA
  // model: KV grows with the batch and it never does.
  EXPECT_TRUE(x["contexts"][0]["crossing_batch"].is_number());
  EXPECT_TRUE(x["contexts"][1]["crossing_batch"].is_null());
  EXPECT_NE(x["contexts"][1]["crossing"].get<std::string>().find("never"), std::string::npos);
}

TEST(Roofline, ComputeCeilingIsTheInstructionPeakOfThisRun) {
  gpu_profile p = h100_like();
  p.peaks[dtype::fp8_e4m3] = {1413e12, 1978.9e12};
  p.peaks[dtype::fp16] = {760e12, 989.4e12};
  instruction_peak_section same_run;
  same_run.peaks[instruction_peak_kind::bf16] = {"HGMMA", 905e12, 900e12, 910e12, 989.4e12, {}, {}};
  same_run.peaks[instruction_peak_kind::bf16_hfma2] = {"HFMA2.BF16", 120e12, 0, 0, 0, {}, {}};
  // Profile without instruction peaks: this run's, else the GEMM peak.
  auto c = bench::select_compute_ceiling(intensity_kernel::mma_bf16, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 905e12);
  EXPECT_EQ(c.source, "instruction peak, this run");
  EXPECT_DOUBLE_EQ(c.profile_flops_per_second, 0);
  EXPECT_DOUBLE_EQ(c.gemm_flops_per_second, 803e12);
  c = bench::select_compute_ceiling(intensity_kernel::mma_fp8, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 1413e12);
  EXPECT_EQ(c.source, "GEMM peak (no instruction peak)");
  // HFMA2: an instruction peak and no GEMM; fp16 HFMA2: nothing to compare with.
  c = bench::select_compute_ceiling(intensity_kernel::hfma2_bf16, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 120e12);
  EXPECT_DOUBLE_EQ(c.gemm_flops_per_second, 0);
  c = bench::select_compute_ceiling(intensity_kernel::hfma2_fp16, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 0);
  EXPECT_EQ(c.source, "none");
  // A profile with instruction peaks: this run's still wins, the profile's is reported beside it
  // and is the ceiling where this run measured none.
  instruction_peak_section prof;
  prof.peaks[instruction_peak_kind::bf16] = {"HGMMA", 880e12, 0, 0, 989.4e12, {}, {}};
  prof.peaks[instruction_peak_kind::fp32] = {"FFMA", 62e12, 0, 0, 66.9e12, {}, {}};
  p.instruction_peaks = prof;
  c = bench::select_compute_ceiling(dtype::bf16, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 905e12);
  EXPECT_EQ(c.source, "instruction peak, this run");
  EXPECT_DOUBLE_EQ(c.profile_flops_per_second, 880e12);
  c = bench::select_compute_ceiling(dtype::fp32, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 62e12);
  EXPECT_EQ(c.source, "instruction peak, probe profile");
  c = bench::select_compute_ceiling(dtype::bf16, p, nullptr);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 880e12);
  // fp16 has no instruction peak: its GEMM; a datasheet-only dtype: the datasheet, said so.
  EXPECT_EQ(bench::select_compute_ceiling(dtype::fp16, p, &same_run).source,
            "GEMM peak (no instruction peak)");
  p.peaks[dtype::int8] = {0, 1978.9e12};
  c = bench::select_compute_ceiling(dtype::int8, p, &same_run);
  EXPECT_DOUBLE_EQ(c.flops_per_second, 1978.9e12);
  EXPECT_EQ(c.source, "datasheet (nothing measured)");
  EXPECT_EQ(bench::instruction_peak_of(intensity_kernel::ffma_fp32), instruction_peak_kind::fp32);
  EXPECT_FALSE(bench::instruction_peak_of(intensity_kernel::hfma2_fp16).has_value());
}

TEST(Roofline, CeilingsAndCrossingWithInstructionPeaks) {
  const gpu_profile p = h100_like();
  instruction_peak_section same_run;
  same_run.peaks[instruction_peak_kind::bf16] = {"HGMMA", 939e12, 0, 0, 989.4e12, {}, {}};
  const json c = bench::roofline_ceilings(p, "test", &same_run);
  EXPECT_TRUE(c.contains("note")) << c.dump(2);  // the profile has none: this run's, said so
  for (const auto& d : c["dtypes"]) {
    if (d["dtype"] == "bf16") {
      EXPECT_DOUBLE_EQ(d["peak_flops_per_second"].get<double>(), 939e12);
      EXPECT_EQ(d["peak_source"], "instruction peak, this run");
      EXPECT_DOUBLE_EQ(d["instruction_peak_flops_per_second"].get<double>(), 939e12);
      EXPECT_TRUE(d["instruction_peak_profile_flops_per_second"].is_null());
      EXPECT_DOUBLE_EQ(d["gemm_peak_flops_per_second"].get<double>(), 803e12);
      EXPECT_NEAR(d["ridge_flops_per_byte"].get<double>(), 939e12 / 3.13e12, 1e-9);
      EXPECT_NEAR(d["gemm_ridge_flops_per_byte"].get<double>(), 803e12 / 3.13e12, 1e-9);
    } else {
      EXPECT_EQ(d["peak_source"], "GEMM peak (no instruction peak)");
    }
  }
  gpu_profile with = p;
  with.instruction_peaks = same_run;
  EXPECT_FALSE(bench::roofline_ceilings(with, "test", &same_run).contains("note"));
  // The crossing at the roof's ridge (300 FLOP/byte) and at the GEMM's (256.5).
  const model_preset& m = model_preset_by_name("llama-2-7b");
  const json x = bench::roofline_crossings(m, p, {1}, &same_run);
  EXPECT_NEAR(x["ridge_flops_per_byte"].get<double>(), 300, 1e-9);
  const auto& r = x["contexts"][0];
  ASSERT_TRUE(r["crossing_batch"].is_number() && r["gemm_crossing_batch"].is_number()) << r.dump();
  EXPECT_EQ(*bench::decode_ridge_crossing(m, 1, 300), r["crossing_batch"].get<int>());
  EXPECT_EQ(*bench::decode_ridge_crossing(m, 1, 803e12 / 3.13e12),
            r["gemm_crossing_batch"].get<int>());
  EXPECT_GT(r["crossing_batch"].get<int>(), r["gemm_crossing_batch"].get<int>());
}

TEST(Roofline, TableAndCsvOfADocument) {
  const gpu_profile p = h100_like();
  // A complete document (the reader is strict): the committed H100 run with its parts replaced.
  json doc = json::parse(read_text_file(std::filesystem::path(RIDGELINE_SOURCE_DIR) /
                                        "docs/results/h100-sxm_roofline.json"));
  doc["config"]["model"] = "llama-2-7b";
  doc["ceilings"] = bench::roofline_ceilings(p, "test");
  doc["engine"] =
      json::array({{{"phase", "decode"},
                    {"batch", 64},
                    {"context", 512},
                    {"seconds", 0.0115},
                    {"counted", {{"intensity_flops_per_byte", 28.1}}},
                    {"measured", {{"intensity_flops_per_byte", 27.0}, {"dram_bytes", 3.0e10}}},
                    {"intensity_ratio", 0.96},
                    {"intensity_flops_per_byte", 27.0},
                    {"flops_per_second", 7.0e13},
                    {"bytes_per_second", 2.6e12},
                    {"roof_flops_per_second", 8.4e13},
                    {"pct_of_roof", 83.0},
                    {"bound", "memory"}},
                   {{"phase", "decode"},
                    {"batch", 512},
                    {"context", 512},
                    {"skipped", "needs 9000 KV blocks"}}});
  doc["decode_kernels"] = json::array({{{"batch", 1},
                                        {"context", 512},
                                        {"traced_steps", 5},
                                        {"kernels", json::array({{{"phase", "mlp"},
                                                                  {"kernel", "gemv_kernel, x"},
                                                                  {"kernel_full", "gemv_kernel, x"},
                                                                  {"calls", 64},
                                                                  {"seconds", 0.003},
                                                                  {"intensity_flops_per_byte", 1.0},
                                                                  {"flops_per_second", 2.8e12},
                                                                  {"bytes_per_second", 2.8e12},
                                                                  {"pct_of_roof", 89.0}}})}}});
  doc["crossing"] = bench::roofline_crossings(model_preset_by_name("llama-2-7b"), p, {512});
  doc["intensity_sweep"]["points"] = json::array();
  doc["intensity_sweep"]["against_probe"] =
       json::array({{{"kernel", "mma_bf16"},
                     {"memory_bytes_per_second", 3.11e12},
                     {"memory_ratio", 0.994},
                     {"compute_flops_per_second", 911.2e12},
                     {"compute_ceiling_flops_per_second", 939e12},
                     {"compute_ratio", 911.2 / 939},
                     {"instruction_peak_profile_flops_per_second", nullptr},
                     {"profile_instruction_ratio", nullptr},
                     {"probe_peak_flops_per_second", 803.1e12},
                     {"gemm_ratio", 911.2 / 803.1}},
                    {{"kernel", "hfma2_fp16"},
                     {"memory_bytes_per_second", 3.1e12},
                     {"memory_ratio", 0.99},
                     {"compute_flops_per_second", 115.2e12},
                     {"compute_ceiling_flops_per_second", nullptr},
                     {"probe_peak_flops_per_second", nullptr}}});
  const std::string t = bench::roofline_table(doc);
  EXPECT_NE(t.find("bf16"), std::string::npos);
  EXPECT_NE(t.find("  0.970"), std::string::npos) << t;  // plateau / ceiling
  EXPECT_NE(t.find("  1.135"), std::string::npos) << t;  // plateau / GEMM peak
  EXPECT_NE(t.find("GEMM peak (no instruction peak)"), std::string::npos) << t;
  EXPECT_NE(t.find("skipped: needs 9000 KV blocks"), std::string::npos) << t;
  EXPECT_NE(t.find("never"), std::string::npos) << t;
  const std::string csv = bench::roofline_csv(doc);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);  // header, one step, one kernel
  EXPECT_NE(csv.find("decode_kernel,gemv_kernel; x,mlp,1,512"), std::string::npos) << csv;
}

TEST(Roofline, ShortKernelNames) {
  EXPECT_EQ(bench::short_kernel_name("void ridgeline::cuda::(anonymous namespace)::gemv_kernel<1, "
                                     "false, 4, 4, true>(uint4 const*, uint4 const*, void*, int)"),
            "gemv_kernel<1, false, 4, 4, true>");
  EXPECT_EQ(bench::short_kernel_name("ridgeline::cuda::(anonymous namespace)::merge_kernel(float "
                                     "const*, int)"),
            "merge_kernel");
  EXPECT_EQ(bench::short_kernel_name("void a::f<b::c<int>, (d::e)1>(int)"),
            "f<b::c<int>, (d::e)1>");
  EXPECT_EQ(bench::short_kernel_name("nvjet_sm90_tst_96x64_64x10_4x1_v_bz_TNN"),
            "nvjet_sm90_tst_96x64_64x10_4x1_v_bz_TNN");
}

TEST(Roofline, CliErrorsAreOneLine) {
  auto run = [](std::vector<std::string> args) {
    std::ostringstream out, err;
    const int code = cli::run(args, out, err);
    return std::pair{code, err.str()};
  };
  auto lines = [](const std::string& s) { return std::count(s.begin(), s.end(), '\n'); };
  auto [code, err] = run({"roofline", "--batch", "1,x", "-o", ""});
  EXPECT_EQ(code, cli::bad_input);
  EXPECT_NE(err.find("'x' is not an integer"), std::string::npos) << err;
  EXPECT_EQ(lines(err), 1);
  std::tie(code, err) = run({"roofline", "--kernels", "ffma_fp64", "-o", ""});
  EXPECT_EQ(code, cli::bad_input) << err;
  EXPECT_EQ(lines(err), 1);
  std::tie(code, err) = run({"roofline", "--context", "0", "-o", ""});
  EXPECT_EQ(code, cli::bad_input) << err;
  EXPECT_EQ(lines(err), 1);
  if (metrics::device_count() == 0) {
    std::tie(code, err) = run({"roofline", "-o", "", "--no-progress"});
    EXPECT_EQ(code, cli::no_device);
    EXPECT_NE(err.find("needs a CUDA GPU"), std::string::npos) << err;
    EXPECT_EQ(lines(err), 1);
  }
}

// The table and CSV read the document through the typed roofline reader: a field they print that
// is missing is an error naming it and the schema, not a zero or a "?" in the output.
TEST(Roofline, TableAndCsvRefuseAnIncompleteDocument) {
  const json committed = json::parse(read_text_file(std::filesystem::path(RIDGELINE_SOURCE_DIR) /
                                                    "docs/results/h100-sxm_roofline.json"));
  EXPECT_NE(bench::roofline_table(committed).find("Engine steps"), std::string::npos);
  auto expect_error = [](const json& doc, const std::string& field) {
    for (auto* f : {&bench::roofline_table, &bench::roofline_csv}) {
      try {
        (*f)(doc);
        ADD_FAILURE() << "accepted without " << field;
      } catch (const std::invalid_argument& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find(field + ": "), std::string::npos) << m;
        EXPECT_NE(m.find("(schema ridgeline.roofline/v1)"), std::string::npos) << m;
      }
    }
  };
  json no_seconds = committed;
  no_seconds["engine"][0].erase("seconds");
  expect_error(no_seconds, "engine[0].seconds");
  json no_traced = committed;
  no_traced["decode_kernels"][0].erase("traced_steps");
  expect_error(no_traced, "decode_kernels[0].traced_steps");
  json text_ratio = committed;
  text_ratio["intensity_sweep"]["against_probe"][0]["memory_ratio"] = "0.99";
  expect_error(text_ratio, "intensity_sweep.against_probe[0].memory_ratio");
}
