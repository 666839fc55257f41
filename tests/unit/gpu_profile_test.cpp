// GPU profile JSON: round trip, validation errors, ridge points, the committed profiles.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/profiles.hpp"
#include "ridgeline/core/errors.hpp"

using namespace ridgeline;

namespace {
const std::filesystem::path k_committed =
    std::filesystem::path(RIDGELINE_SOURCE_DIR) / "perfmodel/profiles/h100-sxm.json";

// A complete profile (the reader is strict): the committed H100 profile with its figures replaced.
gpu_profile sample_profile() {
  gpu_profile p = load_gpu_profile(k_committed);
  p.name = "NVIDIA H100 80GB HBM3";
  p.key = "h100-sxm";
  p.source = "measured";
  p.sm_count = 132;
  p.l2_bytes = 50 << 20;
  p.memory_bytes = 80LL << 30;
  p.read_bytes_per_second = 3.1e12;
  p.write_bytes_per_second = 3.2e12;
  p.copy_bytes_per_second = 2.9e12;
  p.datasheet_bytes_per_second = 3.35e12;
  p.peaks.clear();
  p.peaks[dtype::bf16] = {780e12, 989.4e12};
  p.peaks[dtype::int8] = {1300e12, 1978.9e12};
  p.rows = nlohmann::json::array({p.rows.at(0)});  // one complete row of the committed file
  p.instruction_peaks.reset();
  return p;
}

// One complete instruction_peaks.peaks entry.
nlohmann::json instruction_entry(double flops_per_second) {
  return {{"instruction", "HGMMA"},
          {"flops_per_second", flops_per_second},
          {"p10_flops_per_second", 1e12},
          {"p90_flops_per_second", 1e12},
          {"datasheet_flops_per_second", 0},
          {"launch", nlohmann::json::object()},
          {"measurement", nlohmann::json::object()}};
}
nlohmann::json instruction_section(const std::string& kind, nlohmann::json entry) {
  return {{"peaks", {{kind, std::move(entry)}}},
          {"skipped", nlohmann::json::array()},
          {"environment", nlohmann::json::object()},
          {"config", nlohmann::json::object()}};
}
}  // namespace

TEST(GpuProfile, JsonRoundTrip) {
  const gpu_profile p = sample_profile();
  const gpu_profile q = gpu_profile_from_json(nlohmann::json::parse(to_json(p).dump()));
  EXPECT_EQ(q.name, p.name);
  EXPECT_EQ(q.key, p.key);
  EXPECT_EQ(q.sm_count, 132);
  EXPECT_EQ(q.l2_bytes, p.l2_bytes);
  EXPECT_DOUBLE_EQ(q.read_bytes_per_second, 3.1e12);
  EXPECT_DOUBLE_EQ(q.copy_bytes_per_second, 2.9e12);
  ASSERT_EQ(q.peaks.size(), 2u);
  EXPECT_DOUBLE_EQ(q.peaks.at(dtype::bf16).flops_per_second, 780e12);
  EXPECT_EQ(q.rows.size(), 1u);
  EXPECT_EQ(to_json(q), to_json(p));
}

TEST(GpuProfile, InstructionPeaksRoundTripAndAccessors) {
  gpu_profile p = sample_profile();
  // Older profiles have no instruction_peaks: none written, none read back, accessors give 0.
  EXPECT_FALSE(to_json(p).contains("instruction_peaks"));
  EXPECT_FALSE(gpu_profile_from_json(to_json(p)).instruction_peaks.has_value());
  EXPECT_DOUBLE_EQ(p.instruction_peak_flops_per_second(dtype::bf16), 0);
  EXPECT_DOUBLE_EQ(p.instruction_peak_flops_per_second(instruction_peak_kind::fp32), 0);

  instruction_peak_section s;
  s.peaks[instruction_peak_kind::fp32] = {"FFMA", 62e12, 61e12, 63e12, 66.9e12, {{"grid", 1056}},
                                          {{"repetitions", 10}}};
  const auto none = nlohmann::json::object();
  s.peaks[instruction_peak_kind::bf16] = {"HGMMA", 900e12, 890e12, 905e12, 989.4e12, none, none};
  s.peaks[instruction_peak_kind::bf16_hfma2] = {"HFMA2.BF16", 125e12, 124e12, 126e12, 0, none,
                                                none};
  s.skipped.push_back("fp8_e4m3: not measured");
  s.environment = {{"ridgeline", {{"git_sha", "abc1234"}}}};
  s.config = {{"target_launch_seconds", 0.005}};
  p.instruction_peaks = s;
  const nlohmann::json j = to_json(p);
  ASSERT_TRUE(j.contains("instruction_peaks"));
  EXPECT_DOUBLE_EQ(j["instruction_peaks"]["peaks"]["bf16_hfma2"]["flops_per_second"].get<double>(),
                   125e12);
  const gpu_profile q = gpu_profile_from_json(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(q.instruction_peaks.has_value());
  EXPECT_EQ(to_json(q), j);
  EXPECT_EQ(q.instruction_peaks->peaks.at(instruction_peak_kind::fp32).launch["grid"], 1056);
  EXPECT_EQ(q.instruction_peaks->skipped, s.skipped);
  EXPECT_DOUBLE_EQ(q.instruction_peak_flops_per_second(dtype::fp32), 62e12);
  EXPECT_DOUBLE_EQ(q.instruction_peak_flops_per_second(dtype::bf16), 900e12);
  EXPECT_DOUBLE_EQ(q.instruction_peak_flops_per_second(instruction_peak_kind::bf16_hfma2), 125e12);
  // Not measured, or no instruction peak for the dtype: 0.
  EXPECT_DOUBLE_EQ(q.instruction_peak_flops_per_second(dtype::fp8_e4m3), 0);
  EXPECT_DOUBLE_EQ(q.instruction_peak_flops_per_second(dtype::fp16), 0);
  // The GEMM peaks the planner reads are untouched by it.
  EXPECT_DOUBLE_EQ(q.peak_flops_per_second(dtype::bf16), 780e12);
}

TEST(GpuProfile, RidgePointsFromMeasuredAndDatasheet) {
  const gpu_profile p = sample_profile();
  ASSERT_TRUE(p.ridge_point(dtype::bf16));
  EXPECT_NEAR(*p.ridge_point(dtype::bf16), 780e12 / 3.1e12, 1e-9);
  EXPECT_NEAR(*p.datasheet_ridge_point(dtype::bf16), 989.4 / 3.35, 1e-9);
  EXPECT_FALSE(p.ridge_point(dtype::fp32));
  EXPECT_DOUBLE_EQ(p.peak_flops_per_second(dtype::fp32), 0);
}

TEST(GpuProfile, RejectsMalformed) {
  auto j = to_json(sample_profile());
  auto expect_bad = [](nlohmann::json bad, const std::string& needle) {
    try {
      gpu_profile_from_json(bad);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto b1 = j; b1["schema"] = "ridgeline.gpu_profile/v0";
  expect_bad(b1, "schema");
  auto b2 = j; b2.erase("bandwidth");
  expect_bad(b2, "bandwidth");
  auto b3 = j; b3["bandwidth"]["read_bytes_per_second"] = -1;
  expect_bad(b3, "read_bytes_per_second");
  auto b4 = j; b4["peaks"]["fp4"] = {{"flops_per_second", 1}, {"datasheet_flops_per_second", 0}};
  expect_bad(b4, "peaks.fp4: unknown dtype");
  auto b5 = j; b5["gpu"]["name"] = "";
  expect_bad(b5, "gpu.name");
  auto b6 = j; b6["source"] = "guessed";
  expect_bad(b6, "source");
  expect_bad(nlohmann::json::array(), "object");
  auto b7 = j; b7["instruction_peaks"] = nlohmann::json::array();
  expect_bad(b7, "instruction_peaks");
  auto b8 = j; b8["instruction_peaks"] = instruction_section("fp64", instruction_entry(1));
  expect_bad(b8, "unknown instruction peak 'fp64'");
  auto b9 = j; b9["instruction_peaks"] = instruction_section("fp32", instruction_entry(-1));
  expect_bad(b9, "instruction_peaks.peaks.fp32.flops_per_second");
  auto b10 = j; b10["instruction_peaks"] = instruction_section("bf16", instruction_entry(0));
  expect_bad(b10, "instruction_peaks.peaks.bf16.flops_per_second: must be > 0");
  auto b11 = j; b11["instruction_peaks"] = {{"peaks", nlohmann::json::object()}, {"skipped", 3}};
  expect_bad(b11, "instruction_peaks.skipped");
}

// Nothing is defaulted: a missing or mistyped field is an error naming the file, the field and
// the schema with its version.
TEST(GpuProfile, MissingOrMistypedFieldNamesFileFieldAndSchema) {
  const auto path = std::filesystem::temp_directory_path() / "ridgeline_incomplete_profile.json";
  auto expect_error = [&path](const nlohmann::json& doc, const std::string& field) {
    { std::ofstream(path) << doc.dump(2); }
    try {
      load_gpu_profile(path);
      ADD_FAILURE() << "accepted without " << field;
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(path.string() + ": " + field + ": "), std::string::npos) << m;
      EXPECT_NE(m.find("(schema ridgeline.gpu_profile/v1)"), std::string::npos) << m;
    }
  };
  const nlohmann::json j = to_json(sample_profile());
  auto no_sm = j; no_sm["gpu"].erase("sm_count");
  expect_error(no_sm, "gpu.sm_count");
  auto no_key = j; no_key["gpu"].erase("key");  // once read as "" when absent
  expect_error(no_key, "gpu.key");
  auto no_source = j; no_source.erase("source");  // once read as "measured" when absent
  expect_error(no_source, "source");
  auto no_write = j; no_write["bandwidth"].erase("write_bytes_per_second");  // once 0
  expect_error(no_write, "bandwidth.write_bytes_per_second");
  auto no_env = j; no_env.erase("environment");
  expect_error(no_env, "environment");
  auto text_peak = j; text_peak["peaks"]["bf16"]["flops_per_second"] = "780e12";
  expect_error(text_peak, "peaks.bf16.flops_per_second");
  std::filesystem::remove(path);
}

TEST(GpuProfile, LoadErrorsNameTheFile) {
  EXPECT_THROW(load_gpu_profile("/nonexistent/profile.json"), io_error);
  const auto path = std::filesystem::temp_directory_path() / "ridgeline_bad_profile.json";
  { std::ofstream(path) << "{\"schema\": "; }
  try {
    load_gpu_profile(path);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos);
  }
  std::filesystem::remove(path);
}

TEST(GpuProfile, DatasheetLookupByDeviceName) {
  ASSERT_NE(datasheet_for_device("NVIDIA H100 80GB HBM3"), nullptr);
  EXPECT_STREQ(datasheet_for_device("NVIDIA H100 80GB HBM3")->key, "h100-sxm");
  EXPECT_STREQ(datasheet_for_device("NVIDIA H200")->key, "h200");
  EXPECT_STREQ(datasheet_for_device("NVIDIA H100 PCIe")->key, "h100-pcie");
  EXPECT_EQ(datasheet_for_device("Some Other GPU"), nullptr);
}

TEST(GpuProfile, MeasuredProfileForDeviceName) {
  for (const auto& p : planner::measured_profiles()) {
    EXPECT_EQ(&planner::measured_profile_for_device(p.name), &p) << p.name;
  }
  try {
    planner::measured_profile_for_device("Some Other GPU");
    ADD_FAILURE() << "no throw for an unknown device";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no measured profile of the Some Other GPU"),
              std::string::npos)
        << e.what();
  }
}

TEST(GpuProfile, CommittedProfilesLoad) {
  const std::filesystem::path dir = std::filesystem::path(RIDGELINE_SOURCE_DIR) / "perfmodel/profiles";
  // The profiles are committed: a missing folder or an empty one is a failure, not a skip.
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int loaded = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    // Planner fits (ridgeline.step_time_fit/v1) live beside the profiles; they are tested there.
    if (e.path().stem().string().ends_with("-fit")) continue;
    const gpu_profile p = load_gpu_profile(e.path());
    EXPECT_GT(p.dram_bytes_per_second(), 0) << e.path();
    if (p.source == "measured") {
      EXPECT_GT(p.read_bytes_per_second, 0) << e.path();
      EXPECT_TRUE(p.environment.contains("gpu")) << e.path();
    }
    ++loaded;
  }
  EXPECT_GE(loaded, 2) << "h100-sxm.json and h200.json are committed under " << dir;
}
