// Host side of GPU counters without a GPU: raw metric values -> bytes, FLOPs and intensity; kernel
// summaries by phase and by name; names for per-kernel ranges; CUPTI result codes ->
// counters_unavailable with one clear line.
#include <gtest/gtest.h>

#include <set>

#include "ridgeline/telemetry/counters.hpp"

using namespace ridgeline::metrics;

TEST(Counters, DerivesFlopsAndBytesFromRawMetrics) {
  namespace m = counter_metric;
  const std::map<std::string, double> raw = {
      {m::dram_read, 1000},  {m::dram_write, 24},   {m::ffma, 10},
      {m::fadd, 3},          {m::fmul, 5},          {m::dfma, 7},
      {m::dadd, 1},          {m::dmul, 2},          {m::hfma, 11},
      {m::hadd, 13},         {m::hmul, 17},         {m::tensor_bf16, 1e6},
      {m::tensor_fp16, 2e6}, {m::tensor_tf32, 3e6}, {m::tensor_fp8, 4e6},
      {m::tensor_fp64, 5e6}, {m::tensor_int8, 6e6}, {"extra__metric.sum", 42}};
  const auto v = derive_counter_values(raw);
  EXPECT_EQ(v.dram_read_bytes, 1000);
  EXPECT_EQ(v.dram_write_bytes, 24);
  EXPECT_EQ(v.dram_bytes(), 1024);
  EXPECT_EQ(v.fp32_flops, 2 * 10 + 3 + 5);
  EXPECT_EQ(v.fp64_flops, 2 * 7 + 1 + 2);
  EXPECT_EQ(v.half_flops, 2 * (2 * 11 + 13 + 17));  // packed: two lanes a thread instruction
  EXPECT_EQ(v.tensor_bf16_flops, 1e6);
  EXPECT_EQ(v.tensor_fp16_flops, 2e6);
  EXPECT_EQ(v.tensor_tf32_flops, 3e6);
  EXPECT_EQ(v.tensor_fp8_flops, 4e6);
  EXPECT_EQ(v.tensor_fp64_flops, 5e6);
  EXPECT_EQ(v.tensor_int8_ops, 6e6);
  EXPECT_EQ(v.tensor_flops(), 15e6);  // integer ops are not FLOPs
  const double flops = 28 + 17 + 104 + 15e6;
  EXPECT_EQ(v.flops(), flops);
  EXPECT_DOUBLE_EQ(v.intensity(), flops / 1024);
  EXPECT_EQ(v.raw.at("extra__metric.sum"), 42);
}

TEST(Counters, MissingMetricsReadAsZeroAndNoBytesMeansNoIntensity) {
  const auto v = derive_counter_values({{counter_metric::ffma, 4}});
  EXPECT_EQ(v.fp32_flops, 8);
  EXPECT_EQ(v.dram_bytes(), 0);
  EXPECT_EQ(v.intensity(), 0);
}

TEST(Counters, MetricListIsCompleteAndUnique) {
  const auto& names = counter_metric_names();
  EXPECT_EQ(names.size(), 17u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  // Every name feeds derive_counter_values: a value of 1 for each moves some field.
  for (const auto& n : names) {
    const auto v = derive_counter_values({{n, 1}});
    EXPECT_GT(v.dram_bytes() + v.flops() + v.tensor_int8_ops, 0) << n;
  }
}

namespace {
kernel_record rec(std::string name, std::string phase, std::uint64_t start, std::uint64_t dur) {
  kernel_record r;
  r.name = std::move(name);
  r.phase = std::move(phase);
  r.start_ns = start;
  r.end_ns = start + dur;
  return r;
}
}  // namespace

TEST(Counters, SummarizesByPhaseAndByKernel) {
  const std::vector<kernel_record> records = {rec("gemm", "mlp", 0, 100),
                                              rec("gemm", "mlp", 200, 300),
                                              rec("softmax", "attention", 0, 5),
                                              rec("gemm", "attention", 10, 40),
                                              rec("copy", "", 0, 7),
                                              rec("gemm", "mlp", 600, 200),
                                              rec("softmax", "attention", 9, 9)};
  const auto by_phase = summarize_by_phase(records);
  ASSERT_EQ(by_phase.size(), 3u);
  EXPECT_EQ(by_phase[0].key, "mlp");
  EXPECT_EQ(by_phase[0].count, 3);
  EXPECT_EQ(by_phase[0].total_ns, 600);
  EXPECT_EQ(by_phase[0].median_ns, 200);
  EXPECT_EQ(by_phase[0].min_ns, 100);
  EXPECT_EQ(by_phase[0].max_ns, 300);
  EXPECT_EQ(by_phase[1].key, "attention");
  EXPECT_EQ(by_phase[1].count, 3);
  EXPECT_EQ(by_phase[1].total_ns, 54);
  EXPECT_EQ(by_phase[1].median_ns, 9);
  EXPECT_EQ(by_phase[2].key, "");
  EXPECT_EQ(by_phase[2].count, 1);

  const auto by_kernel = summarize_by_kernel(records);
  ASSERT_EQ(by_kernel.size(), 3u);
  EXPECT_EQ(by_kernel[0].key, "gemm");
  EXPECT_EQ(by_kernel[0].count, 4);
  EXPECT_EQ(by_kernel[0].total_ns, 640);
  EXPECT_EQ(by_kernel[0].median_ns, (100 + 200) / 2.0);  // even count: mean of the middle two
  EXPECT_EQ(by_kernel[1].key, "softmax");
  EXPECT_EQ(by_kernel[1].median_ns, 7);
  EXPECT_EQ(by_kernel[2].key, "copy");
  EXPECT_TRUE(summarize_by_phase({}).empty());
}

TEST(Counters, InsufficientPrivilegesIsOneLineSayingHowToFixIt) {
  const auto msg =
      cupti_error_message(cupti_code::insufficient_privileges, "cuptiRangeProfilerEnable(&p)");
  EXPECT_NE(msg.find("restricted to admin users"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NVreg_RestrictProfilingToAdminUsers"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run as root"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[CUPTI_ERROR_INSUFFICIENT_PRIVILEGES in cuptiRangeProfilerEnable(&p)]"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(Counters, UnavailableCodesThrowCountersUnavailable) {
  struct expectation {
    int code;
    const char* call;
    const char* says;
  };
  const expectation cases[] = {
      {cupti_code::insufficient_privileges, "cuptiProfilerInitialize(&p)", "admin users"},
      {cupti_code::virtualized_device_insufficient_privileges, "cuptiRangeProfilerEnable(&p)",
       "virtual GPU"},
      {cupti_code::multiple_subscribers_not_supported, "cuptiActivityEnable(k)",
       "another CUPTI client"},
      {cupti_code::hardware_busy, "cuptiRangeProfilerStart(&p)", "in use by another process"},
      {cupti_code::old_profiler_api_initialized, "cuptiProfilerInitialize(&p)", "legacy"},
      {cupti_code::not_supported, "cuptiRangeProfilerEnable(&p)", "not supported"},
      {cupti_code::invalid_device, "cuptiDeviceGetChipName(&p)", "does not support this device"},
      {cupti_code::invalid_chip_name, "cuptiProfilerHostInitialize(&p)", "chip"},
      {cupti_code::mig_device_not_supported, "cuptiRangeProfilerEnable(&p)", "MIG"},
      {cupti_code::not_initialized, "cuptiProfilerInitialize(&p)", "libnvperf_host.so"},
      {cupti_code::not_compatible, "cuptiProfilerInitialize(&p)", "driver"},
      {cupti_code::wsl_device_not_supported, "cuptiRangeProfilerEnable(&p)", "WSL"},
      // Depend on the call: another profiler got there first; libnvperf missing.
      {cupti_code::invalid_operation, "cuptiRangeProfilerEnable(&p)", "already being collected"},
      {cupti_code::invalid_operation, "cuptiProfilerGetCounterAvailability(&p)",
       "already being collected"},
      {cupti_code::unknown, "cuptiProfilerHostInitialize(&p)", "libnvperf_host.so"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(cupti_result_name(c.code) + " in " + c.call);
    EXPECT_TRUE(cupti_means_unavailable(c.code, c.call));
    try {
      throw_cupti_error(c.code, c.call, "file.cpp", 12);
      ADD_FAILURE() << "did not throw";
    } catch (const counters_unavailable& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(c.says), std::string::npos) << what;
      EXPECT_NE(what.find(cupti_result_name(c.code)), std::string::npos) << what;
      EXPECT_EQ(what.find("file.cpp"), std::string::npos) << "no internals: " << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

TEST(Counters, OtherFailuresAreRuntimeErrorsWithFileAndLine) {
  for (int code : {1, 17, cupti_code::invalid_operation, cupti_code::unknown, 12345}) {
    const char* call = "cuptiRangeProfilerDecodeData(&p)";
    SCOPED_TRACE(code);
    EXPECT_FALSE(cupti_means_unavailable(code, call));
    try {
      throw_cupti_error(code, call, "file.cpp", 12);
      ADD_FAILURE() << "did not throw";
    } catch (const counters_unavailable& e) {
      ADD_FAILURE() << "counters_unavailable for a defect: " << e.what();
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("cuptiRangeProfilerDecodeData(&p)"), std::string::npos) << what;
      EXPECT_NE(what.find("file.cpp:12"), std::string::npos) << what;
    }
  }
  EXPECT_EQ(cupti_result_name(17), "CUPTI_ERROR_INVALID_METRIC_NAME");
  EXPECT_EQ(cupti_result_name(12345), "CUPTI result 12345");
}

TEST(Counters, DemanglesKernelNamesAndKeepsOthers) {
  EXPECT_EQ(demangle_kernel_name("_Z3addPfi"), "add(float*, int)");
  EXPECT_EQ(demangle_kernel_name("copy_kernel"), "copy_kernel");  // extern "C" or already plain
  EXPECT_EQ(demangle_kernel_name("_Znot a name"), "_Znot a name");
  EXPECT_EQ(demangle_kernel_name(nullptr), "");
}

// CUPTI numbers auto ranges; launch names replace the numbers only when they pair one to one.
TEST(Counters, KernelRangesTakeLaunchNamesInOrder) {
  const std::vector<std::string> ranges = {"0", "1", "2"};
  EXPECT_EQ(name_kernel_ranges(ranges, {"_Z1av", "b_kernel", "_Z1cPf"}),
            (std::vector<std::string>{"a()", "b_kernel", "c(float*)"}));
  // One launch CUPTI did not make a range of (or the other way round): which is which is unknown.
  EXPECT_EQ(name_kernel_ranges(ranges, {"_Z1av", "b_kernel"}), ranges);
  EXPECT_EQ(name_kernel_ranges(ranges, {"_Z1av", "b_kernel", "_Z1cPf", "_Z1dv"}), ranges);
  // A range CUPTI named itself keeps its name, demangled.
  EXPECT_EQ(name_kernel_ranges({"_Z4gemmv", "1"}, {"x", "_Z1yv"}),
            (std::vector<std::string>{"gemm()", "y()"}));
  EXPECT_EQ(name_kernel_ranges({""}, {"_Z1av"}), (std::vector<std::string>{""}));
  EXPECT_TRUE(name_kernel_ranges({}, {}).empty());
}
