// The embedded H100 fit (perfmodel/profiles/h100-sxm-fit.json) against the committed measurements
// of the engine it describes: it must be what `plan fit` gives today on the files it names, it
// must reproduce those sweeps within the accuracy it states, and it must predict the other
// committed runs of the same engine (repeats, the A/B runs of the current layout) within its own
// held-out error. A new sweep committed without a refit, or a change to the step-time model or
// the fit, fails here until `ridgeline plan fit` is run again (docs/plan.md, "The embedded fit").
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ridgeline/plan/plan.hpp"

namespace ridgeline::planner {
namespace {

const std::string k_root = RIDGELINE_SOURCE_DIR;

const fitted_parameters& embedded_h100() {
  for (const auto& f : embedded_fits())
    if (f.gpu == "h100-sxm") return f.parameters;
  throw std::runtime_error("no embedded h100-sxm fit");
}

TEST(EmbeddedFit, IsWhatPlanFitGivesOnTheFilesItNames) {
  const fitted_parameters& f = embedded_h100();
  ASSERT_TRUE(f.stats.contains("sweeps"));
  ASSERT_TRUE(f.stats.contains("kernels"));
  std::vector<std::string> sweeps;
  for (const auto& s : f.stats["sweeps"]) sweeps.push_back(k_root + "/" + s.get<std::string>());
  // The current engine's full llama-2-7b grid is among them.
  EXPECT_NE(f.stats["sweeps"].dump().find("docs/results/h100-sxm_sweep.json"), std::string::npos);
  const fitted_parameters again = fit_sweep_files(
      sweeps, measured_gpu("h100-sxm"), k_root + "/" + f.stats["kernels"].get<std::string>());
  ASSERT_EQ(again.linear.inverse.size(), f.linear.inverse.size());
  for (std::size_t k = 0; k < f.linear.inverse.size(); ++k)
    EXPECT_NEAR(again.linear.inverse[k], f.linear.inverse[k], 1e-9) << "linear knot " << k;
  for (std::size_t k = 0; k < f.attention_memory.inverse.size(); ++k) {
    EXPECT_NEAR(again.attention_memory.inverse[k], f.attention_memory.inverse[k], 1e-9) << k;
    EXPECT_NEAR(again.attention_compute.inverse[k], f.attention_compute.inverse[k], 1e-9) << k;
  }
  EXPECT_NEAR(again.fixed.per_step_seconds, f.fixed.per_step_seconds, 1e-15);
  EXPECT_NEAR(again.fixed.per_layer_seconds, f.fixed.per_layer_seconds, 1e-15);
  for (const char* key : {"mape", "worst_abs_error"}) {
    EXPECT_NEAR(again.stats[key].get<double>(), f.stats[key].get<double>(), 1e-9) << key;
    EXPECT_NEAR(again.stats["held_out_batch"][key].get<double>(),
                f.stats["held_out_batch"][key].get<double>(), 1e-9)
        << key;
    EXPECT_NEAR(again.stats["held_out_context"][key].get<double>(),
                f.stats["held_out_context"][key].get<double>(), 1e-9)
        << key;
  }
}

// The stated accuracy, through `plan accuracy` (what a user runs): MAPE and worst point of every
// sweep the fit names, within the fit's own figures (and the 5% / 12% a CI job would set).
TEST(EmbeddedFit, ReproducesItsSweepsWithinItsStatedAccuracy) {
  const fitted_parameters& f = embedded_h100();
  const double mape = f.stats["mape"].get<double>(),
               worst = f.stats["worst_abs_error"].get<double>();
  EXPECT_LT(mape, 0.05);
  EXPECT_LT(worst, 0.12);
  for (const auto& s : f.stats["sweeps"]) {
    SCOPED_TRACE(s.get<std::string>());
    const auto r = plan_accuracy(read_json_file(k_root + "/" + s.get<std::string>()),
                                 s.get<std::string>(), resolve_gpu("h100-sxm"), std::nullopt);
    EXPECT_LE(r.report.mape, mape * (1 + 1e-9));
    EXPECT_LE(r.report.worst, worst * (1 + 1e-9));
    EXPECT_NO_THROW(check_accuracy_limits(r.report, mape * (1 + 1e-9), worst * (1 + 1e-9)));
  }
}

// Committed runs of the current engine that the fit did not see (the same decode and prefill
// steps, measured again): each point within the fit's held-out (leave one batch out) worst error.
TEST(EmbeddedFit, PredictsOtherRunsOfTheSameEngine) {
  const fitted_parameters& f = embedded_h100();
  const double limit = f.stats["held_out_batch"]["worst_abs_error"].get<double>();
  std::vector<std::string> runs = {
      "docs/results/h100-sxm_sweep_decode512.json", "docs/results/h100-sxm_prefill_4x1024.json",
      "docs/results/decode_runs/h100-sxm_sweep_decode512_4b7e23f_run2.json"};
  for (int rep = 1; rep <= 5; ++rep) {  // the A/B's five repetitions of the current layout
    for (const char* step : {"decode", "prefill"})
      runs.push_back("docs/results/refactor_ab/runs/b_" + std::to_string(rep) + "_" + step +
                     ".json");
  }
  for (const auto& run : runs) {
    SCOPED_TRACE(run);
    const auto r = plan_accuracy(read_json_file(k_root + "/" + run), run, resolve_gpu("h100-sxm"),
                                 std::nullopt);
    EXPECT_LE(r.report.worst, limit);
  }
}

}  // namespace
}  // namespace ridgeline::planner
