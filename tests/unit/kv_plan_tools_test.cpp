// tools/kv and tools/plan as libraries (what cli/kv_command.cpp and cli/plan_command.cpp call):
// one GPU resolution for both, capacities against the unlimited cache, the replay hooks, the
// plan, fit-free accuracy and gpus documents.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "ridgeline/kv/kv.hpp"
#include "ridgeline/plan/plan.hpp"

namespace ridgeline {
namespace {

int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

kv::kv_options small_kv(const std::string& gpu) {
  kv::kv_options o;
  o.generator = "requests=20,prompt=fixed:256,output=fixed:8,rate=5";
  o.model = "tinyllama-1.1b";
  o.gpu = gpu;
  o.capacities = {{"unlimited", kv::capacity_spec::kind::unlimited, 0},
                  {"4", kv::capacity_spec::kind::blocks, 4}};
  return o;
}

// `kv --gpu h100-sxm` and `plan --gpu h100-sxm` take the same figures: the embedded measured
// profile (kv used to build a datasheet profile of its own).
TEST(KvTool, ResolvesTheGpuLikePlan) {
  const planner::resolved_gpu plan_gpu = planner::resolve_gpu("h100-sxm");
  ASSERT_TRUE(plan_gpu.measured);
  const kv::kv_setup s = kv::configure(small_kv("h100-sxm"));
  EXPECT_TRUE(s.gpu.measured);
  EXPECT_EQ(s.gpu.profile.source, "measured");
  EXPECT_EQ(s.gpu.profile.dram_bytes_per_second(), plan_gpu.profile.dram_bytes_per_second());
  EXPECT_NE(s.gpu.profile.dram_bytes_per_second(), s.gpu.profile.datasheet_bytes_per_second);
  const kv::kv_inputs in = kv::load_inputs(s);
  const auto doc = kv::kv_document(s, in, {});
  EXPECT_EQ(doc.at("config").at("gpu_source"), "measured");
  // A GPU without a measured profile falls back to its datasheet entry, as in plan.
  EXPECT_FALSE(kv::configure(small_kv("l40s")).gpu.measured);
  try {
    kv::configure(small_kv("b300"));
    FAIL() << "an unknown GPU was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("unknown GPU 'b300'"), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("h100-sxm (measured)"), std::string::npos) << e.what();
  }
}

TEST(KvTool, CapacitiesResolveAgainstTheUnlimitedCache) {
  using kind = kv::capacity_spec::kind;
  const model_preset& m = model_preset_by_name("llama-3-70b");
  const auto caps = kv::resolve_capacities({{"unlimited", kind::unlimited, 0},
                                            {"50%", kind::percent, 50},
                                            {"0.01%", kind::percent, 0.01},
                                            {"7", kind::blocks, 7},
                                            {"8GiB", kind::bytes, 8.0 * (1LL << 30)}},
                                           1000, m, dtype::bf16, 512);
  ASSERT_EQ(caps.size(), 5u);
  EXPECT_EQ(caps[0].blocks, 1000);
  EXPECT_EQ(caps[1].blocks, 500);
  EXPECT_EQ(caps[2].blocks, 1);  // never below one block
  EXPECT_EQ(caps[3].blocks, 7);
  EXPECT_EQ(caps[4].blocks, 51);  // 320 KiB per token x 512 tokens per block
  EXPECT_EQ(caps[4].label, "8GiB");
  EXPECT_THROW(kv::resolve_capacities({{"0%", kind::percent, 0}}, 1000, m, dtype::bf16, 16),
               std::invalid_argument);
  EXPECT_THROW(kv::resolve_capacities({{"x", kind::blocks, 0}}, 1000, m, dtype::bf16, 16),
               std::invalid_argument);
  try {
    kv::resolve_capacities({{"2000000000", kind::blocks, 2e9}}, 1000, m, dtype::bf16, 16);
    FAIL() << "2e9 blocks were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'2000000000' is absurd"), std::string::npos);
  }
  EXPECT_THROW(kv::resolve_capacities({}, 1000, m, dtype::bf16, 16), std::invalid_argument);
}

TEST(KvTool, ReplaysEveryCapacityAndReportsProgress) {
  const kv::kv_setup s = kv::configure(small_kv("h100-sxm"));
  const kv::kv_inputs in = kv::load_inputs(s);
  kv::kv_hooks hooks;
  std::size_t last_index = 99;
  double last_fraction = -1;
  hooks.progress = [&](std::size_t i, double f) {
    last_index = i;
    last_fraction = f;
  };
  const auto rows = kv::run_capacities(s, in, hooks);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(last_index, 1u);
  EXPECT_DOUBLE_EQ(last_fraction, 1.0);
  EXPECT_EQ(rows[0].finished, 20);
  EXPECT_EQ(rows[1].capacity_blocks, 4);
  // 4 blocks of 16 tokens cannot hold a 264-token request.
  EXPECT_EQ(rows[1].rejected, 20);
  const auto doc = kv::kv_document(s, in, rows);
  EXPECT_EQ(doc.at("schema"), "ridgeline.kv/v1");
  EXPECT_EQ(lines(kv::csv_of(doc.at("rows"))), 3);
  EXPECT_NE(kv::table_of(doc).find("| unlimited |"), std::string::npos);
  kv::kv_options neither = small_kv("h100-sxm");
  neither.generator.clear();
  EXPECT_THROW(kv::configure(neither), std::invalid_argument);
}

TEST(PlanTool, PlanDocumentForOneGpu) {
  EXPECT_THROW(planner::resolve_gpus({}), std::invalid_argument);
  try {
    planner::load_plan_workload("no-such-thing", 10);
    FAIL() << "a bad workload was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("neither a trace file"), std::string::npos);
  }
  const auto gpus = planner::resolve_gpus({"h100-sxm", "t4"});
  const workload w = planner::load_plan_workload("rate=2,prompt=fixed:512,output=fixed:64", 100);
  EXPECT_EQ(w.requests.size(), 100u);
  planner::plan_options o;
  o.s = planner::parse_slo("ttft_p99=2s,tpot_p99=60ms");
  o.qps = 10;
  o.prices = {{"h100-sxm", 2.5}};
  o.tensor_parallel = {1};  // one GPU per replica: the T4 cannot hold the weights
  std::vector<std::string> progress;
  const auto doc = planner::plan_document(model_preset_by_name("llama-3-8b"), gpus, w, o,
                                          [&](const std::string& l) { progress.push_back(l); });
  EXPECT_EQ(doc.at("schema"), "ridgeline.plan/v1");
  const auto& rows = doc.at("rows");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].at("gpu"), "h100-sxm");
  EXPECT_GT(rows[0].at("max_rate_per_gpu").get<double>(), 0);
  EXPECT_TRUE(rows[0].contains("cost_per_million_output_tokens"));
  EXPECT_NE(rows[1].at("error").get<std::string>().find("weights alone need"), std::string::npos);
  ASSERT_EQ(progress.size(), 1u);  // only the GPU that got to the rate search
  EXPECT_EQ(progress[0], "h100-sxm: searching the request rate");
  EXPECT_EQ(planner::plan_csv(rows).rfind("gpu,ceilings,", 0), 0u);
  EXPECT_EQ(lines(planner::plan_csv(rows)), 3);
  EXPECT_NE(planner::plan_markdown(doc).find("| h100-sxm | measured | 1 |"), std::string::npos);
  // One degree weighed: its line still says which bound each op group of the step hit.
  const std::string md = planner::plan_markdown(doc);
  EXPECT_NE(md.find("Tensor-parallel degrees weighed"), std::string::npos) << md;
  EXPECT_NE(md.find("| h100-sxm | 1 | 16.1 GB |"), std::string::npos) << md;
  EXPECT_NE(md.find("linear "), std::string::npos) << md;
  EXPECT_EQ(md.find("all-reduce on"), std::string::npos) << md;  // nothing to reduce at TP 1
  // No GPU can serve it: one error listing each GPU's reason, at every degree weighed.
  o.tensor_parallel = {1, 2, 4, 8};
  try {
    planner::plan_document(model_preset_by_name("llama-3-70b"), planner::resolve_gpus({"t4"}), w,
                           o);
    FAIL() << "llama-3-70b on T4s was planned";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("t4: llama-3-70b in bf16: weights alone need 141.1 GB"), std::string::npos)
        << what;
    EXPECT_NE(what.find("at TP 8: llama-3-70b in bf16 at TP 8: weights alone need 17.6 GB per GPU"),
              std::string::npos)
        << what;
  }
  // With more degrees the T4 serves llama-3-8b split over several GPUs, and says how.
  const auto split = planner::plan_document(model_preset_by_name("llama-3-8b"),
                                            planner::resolve_gpus({"t4"}), w, o);
  const auto& t4 = split.at("rows")[0];
  EXPECT_GT(t4.at("tensor_parallel").get<int>(), 1);
  EXPECT_GT(t4.at("max_rate_per_gpu").get<double>(), 0);
  EXPECT_NE(t4.at("all_reduce").get<std::string>().find("datasheet PCIe Gen3 x16"),
            std::string::npos);
}

TEST(PlanTool, AccuracyOfTheEmbeddedFitOnTheCommittedSweep) {
  const auto sweep = planner::read_json_file(std::string(RIDGELINE_SOURCE_DIR) +
                                             "/docs/results/h100-sxm_sweep.json");
  const auto r = planner::plan_accuracy(sweep, "committed", planner::resolve_gpu("h100-sxm"), {});
  ASSERT_FALSE(r.report.rows.empty());
  EXPECT_EQ(r.model, "llama-2-7b");
  EXPECT_LT(r.report.mape, 0.05);
  // Each point says which bound each op group of the predicted step hit.
  ASSERT_EQ(r.op_groups.size(), r.report.rows.size());
  EXPECT_EQ(r.op_groups[0].rfind("linear ", 0), 0u) << r.op_groups[0];
  EXPECT_NE(r.op_groups[0].find(" memory"), std::string::npos) << r.op_groups[0];
  const auto doc = planner::accuracy_document(r);
  EXPECT_EQ(doc.at("schema"), "ridgeline.accuracy/v1");
  EXPECT_EQ(doc.at("config").at("sweep"), "committed");
  EXPECT_EQ(lines(planner::accuracy_csv(r)), static_cast<int>(r.report.rows.size()) + 1);
  EXPECT_NE(planner::accuracy_table(r).find("MAPE"), std::string::npos);
  EXPECT_NO_THROW(planner::check_accuracy_limits(r.report, 0, 0));
  EXPECT_THROW(planner::check_accuracy_limits(r.report, 1e-9, 0), std::runtime_error);
  EXPECT_THROW(planner::read_json_file(std::string(RIDGELINE_SOURCE_DIR) + "/README.md"),
               std::invalid_argument);
  const std::string gpus = planner::gpus_table();
  EXPECT_NE(gpus.find("| h100-sxm | measured |"), std::string::npos) << gpus;
  EXPECT_NE(gpus.find("| l40s | datasheet |"), std::string::npos) << gpus;
}

}  // namespace
}  // namespace ridgeline
