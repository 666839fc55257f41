// Host side of GPU counters: raw metric values -> bytes and FLOPs, kernel summaries, and the
// meaning of CUPTI's result codes. No CUPTI calls (tests/unit/counters_test.cpp runs it anywhere).
#include "ridgeline/telemetry/counters.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <tuple>

#include "ridgeline/core/statistics.hpp"

namespace ridgeline::metrics {

const std::vector<std::string>& counter_metric_names() {
  namespace m = counter_metric;
  static const std::vector<std::string> names = {
      m::dram_read,   m::dram_write,  m::ffma,       m::fadd,        m::fmul,       m::dfma,
      m::dadd,        m::dmul,        m::hfma,       m::hadd,        m::hmul,       m::tensor_bf16,
      m::tensor_fp16, m::tensor_tf32, m::tensor_fp8, m::tensor_int8, m::tensor_fp64};
  return names;
}

counter_values derive_counter_values(const std::map<std::string, double>& raw) {
  auto get = [&raw](const char* name) {
    auto it = raw.find(name);
    return it == raw.end() ? 0.0 : it->second;
  };
  namespace m = counter_metric;
  counter_values v;
  v.dram_read_bytes = get(m::dram_read);
  v.dram_write_bytes = get(m::dram_write);
  v.fp32_flops = 2 * get(m::ffma) + get(m::fadd) + get(m::fmul);
  v.fp64_flops = 2 * get(m::dfma) + get(m::dadd) + get(m::dmul);
  v.half_flops = k_half_lanes * (2 * get(m::hfma) + get(m::hadd) + get(m::hmul));
  v.tensor_bf16_flops = get(m::tensor_bf16);
  v.tensor_fp16_flops = get(m::tensor_fp16);
  v.tensor_tf32_flops = get(m::tensor_tf32);
  v.tensor_fp8_flops = get(m::tensor_fp8);
  v.tensor_fp64_flops = get(m::tensor_fp64);
  v.tensor_int8_ops = get(m::tensor_int8);
  v.raw = raw;
  return v;
}

namespace {

template <class KeyOf>
std::vector<kernel_summary> summarize(const std::vector<kernel_record>& records, KeyOf key_of) {
  std::map<std::string, std::vector<double>> durations;
  for (const auto& r : records) {
    durations[key_of(r)].push_back(static_cast<double>(r.duration_ns()));
  }
  std::vector<kernel_summary> out;
  out.reserve(durations.size());
  for (auto& [key, d] : durations) {
    kernel_summary s;
    s.key = key;
    s.count = static_cast<std::int64_t>(d.size());
    for (double x : d) s.total_ns += x;
    s.min_ns = *std::min_element(d.begin(), d.end());
    s.max_ns = *std::max_element(d.begin(), d.end());
    s.median_ns = bench::median(d);
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const kernel_summary& a, const kernel_summary& b) {
    return std::tie(b.total_ns, a.key) < std::tie(a.total_ns, b.key);
  });
  return out;
}

struct code_meaning {
  int code;
  const char* name;
  const char* message;  // empty: not a "counters unavailable" case
};

// What happened and what to do, one line each. Messages for codes that also occur for other
// reasons (invalid operation) name the usual cause first.
constexpr code_meaning k_meanings[] = {
    {cupti_code::insufficient_privileges, "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES",
     "GPU performance counters are restricted to admin users on this machine "
     "(NVreg_RestrictProfilingToAdminUsers=1): run as root, or have an admin set "
     "'options nvidia NVreg_RestrictProfilingToAdminUsers=0' in /etc/modprobe.d and reload the "
     "nvidia module (https://developer.nvidia.com/ERR_NVGPUCTRPERM)"},
    {cupti_code::virtualized_device_insufficient_privileges,
     "CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES",
     "GPU performance counters are not enabled for this virtual GPU: ask the host administrator "
     "to enable profiling for this VM's vGPU"},
    {cupti_code::multiple_subscribers_not_supported,
     "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED",
     "another CUPTI client already holds CUPTI in this process (Nsight Systems, Nsight Compute, "
     "a profiling library, or another ridgeline tracer): run without it"},
    {cupti_code::hardware_busy, "CUPTI_ERROR_HARDWARE_BUSY",
     "the GPU's performance counters are in use by another process (ncu, nsys --gpu-metrics, "
     "DCGM profiling metrics): stop it (e.g. 'dcgmi profile --pause') and retry"},
    {cupti_code::old_profiler_api_initialized, "CUPTI_ERROR_OLD_PROFILER_API_INITIALIZED",
     "the legacy CUPTI event/metric API is already in use in this process: the range profiler "
     "cannot run beside it; run without the other profiler"},
    {cupti_code::legacy_profiler_not_supported, "CUPTI_ERROR_LEGACY_PROFILER_NOT_SUPPORTED",
     "this GPU is not supported by CUPTI's profiler (compute capability 7.0 or newer needed): "
     "collect counters on another GPU"},
    {cupti_code::not_supported, "CUPTI_ERROR_NOT_SUPPORTED",
     "counter collection is not supported on this GPU or configuration: collect counters on a "
     "bare-metal data-center GPU"},
    {cupti_code::invalid_device, "CUPTI_ERROR_INVALID_DEVICE",
     "CUPTI does not support this device for counter collection: collect counters on another GPU"},
    {cupti_code::invalid_chip_name, "CUPTI_ERROR_INVALID_CHIP_NAME",
     "this CUPTI does not know the GPU's chip: use the CUPTI of a CUDA toolkit that supports it"},
    {cupti_code::not_compatible, "CUPTI_ERROR_NOT_COMPATIBLE",
     "CUPTI and the CUDA driver are not compatible: install a driver at least as new as the CUDA "
     "toolkit ridgeline was built with, or put the matching libcupti first on LD_LIBRARY_PATH"},
    {cupti_code::api_not_implemented, "CUPTI_ERROR_API_NOT_IMPLEMENTED",
     "this CUPTI or driver does not implement the range profiler: use CUDA 13's libcupti and a "
     "matching driver"},
    {cupti_code::not_initialized, "CUPTI_ERROR_NOT_INITIALIZED",
     "CUPTI could not initialise: check that a CUDA driver and GPU are present and that "
     "libnvperf_host.so and libnvperf_target.so are beside libcupti.so or on LD_LIBRARY_PATH"},
    {cupti_code::virtualized_device_not_supported, "CUPTI_ERROR_VIRTUALIZED_DEVICE_NOT_SUPPORTED",
     "counter collection is not supported on this virtualized GPU: collect counters on bare metal"},
    {cupti_code::confidential_computing_not_supported,
     "CUPTI_ERROR_CONFIDENTIAL_COMPUTING_NOT_SUPPORTED",
     "counter collection is disabled while confidential computing is on: use a GPU without it"},
    {cupti_code::cmp_device_not_supported, "CUPTI_ERROR_CMP_DEVICE_NOT_SUPPORTED",
     "counter collection is not supported on NVIDIA CMP devices: use another GPU"},
    {cupti_code::mig_device_not_supported, "CUPTI_ERROR_MIG_DEVICE_NOT_SUPPORTED",
     "counter collection is not supported on this MIG instance: use a whole GPU (MIG disabled)"},
    {cupti_code::sli_device_not_supported, "CUPTI_ERROR_SLI_DEVICE_NOT_SUPPORTED",
     "counter collection is not supported with SLI enabled: disable SLI"},
    {cupti_code::wsl_device_not_supported, "CUPTI_ERROR_WSL_DEVICE_NOT_SUPPORTED",
     "counter collection is not supported on this GPU under WSL: collect counters on Linux"},
    {cupti_code::success, "CUPTI_SUCCESS", ""},
    {1, "CUPTI_ERROR_INVALID_PARAMETER", ""},
    {3, "CUPTI_ERROR_INVALID_CONTEXT", ""},
    {cupti_code::invalid_operation, "CUPTI_ERROR_INVALID_OPERATION", ""},
    {8, "CUPTI_ERROR_OUT_OF_MEMORY", ""},
    {9, "CUPTI_ERROR_HARDWARE", ""},
    {10, "CUPTI_ERROR_PARAMETER_SIZE_NOT_SUFFICIENT", ""},
    {12, "CUPTI_ERROR_MAX_LIMIT_REACHED", ""},
    {13, "CUPTI_ERROR_NOT_READY", ""},
    {17, "CUPTI_ERROR_INVALID_METRIC_NAME", ""},
    {18, "CUPTI_ERROR_QUEUE_EMPTY", ""},
    {19, "CUPTI_ERROR_INVALID_HANDLE", ""},
    {21, "CUPTI_ERROR_INVALID_KIND", ""},
    {23, "CUPTI_ERROR_DISABLED", ""},
    {cupti_code::unknown, "CUPTI_ERROR_UNKNOWN", ""},
};

const code_meaning* meaning_of(int code) {
  for (const auto& m : k_meanings) {
    if (m.code == code) return &m;
  }
  return nullptr;
}

}  // namespace

std::vector<kernel_summary> summarize_by_phase(const std::vector<kernel_record>& records) {
  return summarize(records, [](const kernel_record& r) { return r.phase; });
}

std::vector<kernel_summary> summarize_by_kernel(const std::vector<kernel_record>& records) {
  return summarize(records, [](const kernel_record& r) { return r.name; });
}

std::string demangle_kernel_name(const char* mangled) {
  if (!mangled) return {};
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

std::vector<std::string> name_kernel_ranges(const std::vector<std::string>& range_names,
                                            const std::vector<std::string>& launch_names) {
  const bool paired = range_names.size() == launch_names.size();
  std::vector<std::string> names;
  names.reserve(range_names.size());
  for (std::size_t i = 0; i < range_names.size(); ++i) {
    const std::string& r = range_names[i];
    const bool is_index =
        !r.empty() && std::all_of(r.begin(), r.end(), [](char c) { return c >= '0' && c <= '9'; });
    names.push_back(demangle_kernel_name(is_index && paired ? launch_names[i].c_str() : r.c_str()));
  }
  return names;
}

std::string cupti_result_name(int code) {
  const auto* m = meaning_of(code);
  return m ? m->name : "CUPTI result " + std::to_string(code);
}

namespace {

bool called(std::string_view call, std::string_view function) {
  return call.substr(0, function.size()) == function;
}

// Calls that set up collection: an invalid operation there means another profiler got there
// first; an unknown failure of the initialisers usually means libnvperf was not found.
bool is_setup_call(std::string_view call) {
  for (auto f :
       {"cuptiProfilerInitialize", "cuptiProfilerHostInitialize",
        "cuptiProfilerGetCounterAvailability", "cuptiRangeProfilerEnable", "cuptiActivityEnable"}) {
    if (called(call, f)) return true;
  }
  return false;
}

bool is_initialiser(std::string_view call) {
  return called(call, "cuptiProfilerInitialize") || called(call, "cuptiProfilerHostInitialize");
}

}  // namespace

bool cupti_means_unavailable(int code, std::string_view call) {
  const auto* m = meaning_of(code);
  if (m && m->message[0] != '\0') return true;
  if (code == cupti_code::invalid_operation && is_setup_call(call)) return true;
  if (code == cupti_code::unknown && is_initialiser(call)) return true;
  return false;
}

std::string cupti_error_message(int code, std::string_view call) {
  const auto* m = meaning_of(code);
  std::string what;
  if (m && m->message[0] != '\0') {
    what = m->message;
  } else if (code == cupti_code::invalid_operation && is_setup_call(call)) {
    what =
        "GPU counters are already being collected in this process or context (Nsight Compute, "
        "Nsight Systems, or a nested profile_range or activity_tracer): run without the other "
        "profiler";
  } else if (code == cupti_code::unknown && is_initialiser(call)) {
    what =
        "CUPTI's profiler could not load: put libnvperf_host.so and libnvperf_target.so (CUDA "
        "toolkit, beside libcupti.so) on LD_LIBRARY_PATH";
  } else {
    what = "CUPTI call failed";
  }
  return what + " [" + cupti_result_name(code) + " in " + std::string(call) + "]";
}

void throw_cupti_error(int code, const char* expr, const char* file, int line) {
  if (cupti_means_unavailable(code, expr)) {
    throw counters_unavailable(cupti_error_message(code, expr));
  }
  throw std::runtime_error(cupti_error_message(code, expr) + " at " + file + ":" +
                           std::to_string(line));
}

}  // namespace ridgeline::metrics
