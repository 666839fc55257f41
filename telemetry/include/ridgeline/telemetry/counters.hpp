// Host side of GPU counters (docs/roofline.md, "Counters (CUPTI)"): what ridgeline collects, how
// raw metric values become bytes and FLOPs, kernel records and their per-phase summaries, and what
// a CUPTI failure means. No CUDA or CUPTI types and no CUPTI calls: everything here builds and is
// tested without CUDA. Collecting the values needs ridgeline/telemetry/cupti.hpp (CUDA builds).
//   auto v = metrics::derive_counter_values(raw);     // raw: metric name -> value
//   double i = v.intensity();                         // FLOPs per DRAM byte
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::metrics {

// The GPU's performance counters cannot be read here: not permitted, held by another profiler,
// unsupported device or configuration, no device, or CUPTI's libraries missing. what() is one
// line saying what happened and what to do.
struct counters_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Metric names collected by profile_range (GH100 names, CUDA 13 CUPTI). What each counts:
//   dram__bytes_{read,write}.sum                     bytes read from / written to DRAM (HBM)
//   smsp__sass_thread_inst_executed_op_X_pred_on.sum thread instructions X with predicate true;
//       X = ffma, fadd, fmul (fp32), dfma, dadd, dmul (fp64), hfma, hadd, hmul (fp16 and bf16,
//       packed HFMA2/HADD2/HMUL2 counted once per thread instruction)
//   sm__ops_path_tensor_src_T[_dst_fp32].sum         tensor-core math ops (2 per multiply-add,
//       tiles padded by the kernel included) with source type T = bf16, fp16, tf32, fp8, int8,
//       fp64; HMMA (mma.sync) and HGMMA/QGMMA/IGMMA (wgmma) alike
namespace counter_metric {
inline constexpr const char* dram_read = "dram__bytes_read.sum";
inline constexpr const char* dram_write = "dram__bytes_write.sum";
inline constexpr const char* ffma = "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum";
inline constexpr const char* fadd = "smsp__sass_thread_inst_executed_op_fadd_pred_on.sum";
inline constexpr const char* fmul = "smsp__sass_thread_inst_executed_op_fmul_pred_on.sum";
inline constexpr const char* dfma = "smsp__sass_thread_inst_executed_op_dfma_pred_on.sum";
inline constexpr const char* dadd = "smsp__sass_thread_inst_executed_op_dadd_pred_on.sum";
inline constexpr const char* dmul = "smsp__sass_thread_inst_executed_op_dmul_pred_on.sum";
inline constexpr const char* hfma = "smsp__sass_thread_inst_executed_op_hfma_pred_on.sum";
inline constexpr const char* hadd = "smsp__sass_thread_inst_executed_op_hadd_pred_on.sum";
inline constexpr const char* hmul = "smsp__sass_thread_inst_executed_op_hmul_pred_on.sum";
inline constexpr const char* tensor_bf16 = "sm__ops_path_tensor_src_bf16_dst_fp32.sum";
inline constexpr const char* tensor_fp16 = "sm__ops_path_tensor_src_fp16.sum";
inline constexpr const char* tensor_tf32 = "sm__ops_path_tensor_src_tf32_dst_fp32.sum";
inline constexpr const char* tensor_fp8 = "sm__ops_path_tensor_src_fp8.sum";
inline constexpr const char* tensor_int8 = "sm__ops_path_tensor_src_int8.sum";
inline constexpr const char* tensor_fp64 = "sm__ops_path_tensor_src_fp64.sum";
}  // namespace counter_metric

// Every metric above, in one list (the order profile_range asks CUPTI for them).
const std::vector<std::string>& counter_metric_names();

// Lanes of a packed half-precision thread instruction (HFMA2, HADD2, HMUL2: two fp16 or bf16
// values each). The hfma/hadd/hmul counters count a packed instruction once, so FLOPs are counted
// as if every half-precision instruction were packed; a scalar one is over-counted by 2.
inline constexpr double k_half_lanes = 2.0;

struct counter_values {
  double dram_read_bytes = 0;
  double dram_write_bytes = 0;
  // Non-tensor FLOPs: 2 per FMA, 1 per add or multiply.
  double fp32_flops = 0;  // 2*ffma + fadd + fmul
  double fp64_flops = 0;  // 2*dfma + dadd + dmul
  double half_flops = 0;  // fp16 and bf16 (one counter for both): k_half_lanes*(2*hfma+hadd+hmul)
  // Tensor-core ops by source type, as counted (2 per multiply-add).
  double tensor_bf16_flops = 0;
  double tensor_fp16_flops = 0;
  double tensor_tf32_flops = 0;
  double tensor_fp8_flops = 0;
  double tensor_fp64_flops = 0;
  double tensor_int8_ops = 0;         // integer: not in flops()
  int passes = 0;                     // times the work ran to collect everything (0: not measured)
  std::map<std::string, double> raw;  // every metric as CUPTI evaluated it

  double dram_bytes() const { return dram_read_bytes + dram_write_bytes; }
  double tensor_flops() const {
    return tensor_bf16_flops + tensor_fp16_flops + tensor_tf32_flops + tensor_fp8_flops +
           tensor_fp64_flops;
  }
  double flops() const { return fp32_flops + fp64_flops + half_flops + tensor_flops(); }
  // FLOPs per DRAM byte; 0 when no DRAM byte moved.
  double intensity() const { return dram_bytes() > 0 ? flops() / dram_bytes() : 0.0; }
};

// Values from raw metric values (missing metrics read as 0); keeps `raw`.
counter_values derive_counter_values(const std::map<std::string, double>& raw);

// A kernel symbol as people read it: demangled when `mangled` is an Itanium C++ name, else as
// given ("" for null).
std::string demangle_kernel_name(const char* mangled);

// Names for profile_kernels' ranges, by range index. CUPTI names auto ranges by launch index ("0",
// "1", ...), not by kernel, so the names come from the kernel launches CUPTI's callbacks saw, in
// order: a range named by an index takes launch_names[i] when there are as many launches as
// ranges (else it keeps the index: which launch is which is then unknown); a range CUPTI gave
// another name keeps it. Demangled either way.
std::vector<std::string> name_kernel_ranges(const std::vector<std::string>& range_names,
                                            const std::vector<std::string>& launch_names);

// One kernel execution as the activity tracer saw it.
struct kernel_record {
  std::string name;          // demangled when possible
  std::string mangled_name;  // as the driver reports it
  std::string phase;         // innermost scoped_phase around the launch; empty when none
  int grid[3] = {0, 0, 0};
  int block[3] = {0, 0, 0};
  std::uint64_t start_ns = 0;  // GPU timestamps (CUPTI clock)
  std::uint64_t end_ns = 0;
  std::uint32_t stream_id = 0;
  std::uint32_t correlation_id = 0;  // the launching API call's
  std::uint32_t device_id = 0;
  std::uint64_t duration_ns() const { return end_ns > start_ns ? end_ns - start_ns : 0; }
};

struct kernel_summary {
  std::string key;  // phase name ("" for kernels outside every phase) or kernel name
  std::int64_t count = 0;
  double total_ns = 0;
  double median_ns = 0;
  double min_ns = 0;
  double max_ns = 0;
};

// Grouped by phase or by kernel name, largest total time first (ties by key).
std::vector<kernel_summary> summarize_by_phase(const std::vector<kernel_record>& records);
std::vector<kernel_summary> summarize_by_kernel(const std::vector<kernel_record>& records);

// CUptiResult values ridgeline gives a meaning to (cupti_result.h; checked against it in CUDA
// builds). Kept here so that the mapping is tested without CUPTI.
namespace cupti_code {
inline constexpr int success = 0;
inline constexpr int invalid_device = 2;
inline constexpr int invalid_operation = 7;
inline constexpr int hardware_busy = 26;
inline constexpr int not_supported = 27;
inline constexpr int not_initialized = 15;
inline constexpr int not_compatible = 14;
inline constexpr int api_not_implemented = 11;
inline constexpr int virtualized_device_not_supported = 33;
inline constexpr int insufficient_privileges = 35;
inline constexpr int old_profiler_api_initialized = 36;
inline constexpr int legacy_profiler_not_supported = 38;
inline constexpr int multiple_subscribers_not_supported = 39;
inline constexpr int virtualized_device_insufficient_privileges = 40;
inline constexpr int confidential_computing_not_supported = 41;
inline constexpr int cmp_device_not_supported = 42;
inline constexpr int mig_device_not_supported = 43;
inline constexpr int sli_device_not_supported = 44;
inline constexpr int wsl_device_not_supported = 45;
inline constexpr int invalid_chip_name = 46;
inline constexpr int unknown = 999;
}  // namespace cupti_code

// CUPTI's name for a result code ("CUPTI_ERROR_INSUFFICIENT_PRIVILEGES"), or "CUPTI result N".
std::string cupti_result_name(int code);
// Whether a failure of `call` (the failing expression) means the counters cannot be used here
// (counters_unavailable) rather than a defect in the caller or in ridgeline (std::runtime_error).
// Besides the codes that say so, an invalid operation while setting up (another profiler holds
// the counters) and an unknown failure of the profiler initialisers (libnvperf not found) do.
bool cupti_means_unavailable(int code, std::string_view call);
// One line: what happened and what to do, then the code and the failing call, e.g.
// "GPU performance counters are restricted to admin users on this machine
// (NVreg_RestrictProfilingToAdminUsers=1): run as root, or ... [CUPTI_ERROR_INSUFFICIENT_PRIVILEGES
// in cuptiRangeProfilerEnable]".
std::string cupti_error_message(int code, std::string_view call);
// Throws counters_unavailable or std::runtime_error (with file and line) for a failed CUPTI call.
[[noreturn]] void throw_cupti_error(int code, const char* expr, const char* file, int line);

}  // namespace ridgeline::metrics
