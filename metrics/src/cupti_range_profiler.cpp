// Counters for a region of work with the CUDA 13 Range Profiler (cupti_range_profiler.h), the
// host API (cupti_profiler_host.h) for the config image and evaluation, and the target API
// (cupti_profiler_target.h) for cuptiProfilerInitialize and counter availability.
//
// User range, user replay: the whole callable is one range, and we call it once per pass the
// metric set needs. Why not auto range with kernel replay: that gives one range per kernel (cuBLAS
// or the engine launch many) and replays each kernel with its memory saved and restored by CUPTI,
// which adds save/restore traffic around every kernel and needs summing ranges afterwards; user
// replay keeps launches as the caller makes them and the sum over the region is what we want.
// The cost: the callable must be replayable (documented in cupti.hpp).
//
// Order: initialise the profiler, read the chip name and counter availability, build the config
// image on the host (how many passes), enable the range profiler on the context, size and
// initialise the counter data image, set the config, run passes until CUPTI says all are
// submitted, decode, evaluate range 0 on the host, then tear down in reverse (RAII owners below).
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <cupti_profiler_host.h>
#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_target.h>

#include <cstdint>
#include <utility>

#include "cupti_check.hpp"
#include "ridgeline/metrics/cupti.hpp"
#include "ridgeline/metrics/device.hpp"

namespace ridgeline::metrics {
namespace {

constexpr const char* k_range_name = "ridgeline";

// A CUPTI params struct: zeroed (pPriv and every pointer null), structSize set to the header's
// TYPE_STRUCT_SIZE (the end of its last field, which may be less than sizeof).
template <class P>
P zeroed_params(std::size_t struct_size) {
  P p{};
  p.structSize = struct_size;
  return p;
}
#define RIDGELINE_CUPTI_PARAMS(type) zeroed_params<type>(type##_STRUCT_SIZE)

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();
  throw std::runtime_error(std::string("profile_range: ") + what +
                           " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// cuptiProfilerInitialize .. cuptiProfilerDeInitialize.
class profiler_session {
 public:
  profiler_session() {
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Initialize_Params);
    RIDGELINE_CUPTI_CHECK(cuptiProfilerInitialize(&p));
  }
  ~profiler_session() {
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_DeInitialize_Params);
    RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiProfilerDeInitialize(&p));
  }
  profiler_session(const profiler_session&) = delete;
  profiler_session& operator=(const profiler_session&) = delete;
};

// The host object: metric names -> config image, and counter data -> values.
class host_object {
 public:
  host_object(const std::string& chip, const std::vector<std::uint8_t>& availability) {
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_Initialize_Params);
    p.profilerType = CUPTI_PROFILER_TYPE_RANGE_PROFILER;
    p.pChipName = chip.c_str();
    p.pCounterAvailabilityImage = availability.empty() ? nullptr : availability.data();
    RIDGELINE_CUPTI_CHECK(cuptiProfilerHostInitialize(&p));
    m_object = p.pHostObject;
  }
  ~host_object() {
    if (!m_object) return;
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_Deinitialize_Params);
    p.pHostObject = m_object;
    RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiProfilerHostDeinitialize(&p));
  }
  host_object(host_object&& o) noexcept : m_object(std::exchange(o.m_object, nullptr)) {}
  host_object& operator=(host_object&& o) noexcept {
    std::swap(m_object, o.m_object);
    return *this;
  }
  host_object(const host_object&) = delete;
  host_object& operator=(const host_object&) = delete;
  CUpti_Profiler_Host_Object* get() const { return m_object; }

  bool knows_metric(const char* name) const {
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_GetMetricProperties_Params);
    p.pHostObject = m_object;
    p.pMetricName = name;
    return cuptiProfilerHostGetMetricProperties(&p) == CUPTI_SUCCESS;
  }

  std::vector<std::uint8_t> config_image(std::vector<const char*>& names) const {
    auto add = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_ConfigAddMetrics_Params);
    add.pHostObject = m_object;
    add.ppMetricNames = names.data();
    add.numMetrics = names.size();
    RIDGELINE_CUPTI_CHECK(cuptiProfilerHostConfigAddMetrics(&add));
    auto size = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_GetConfigImageSize_Params);
    size.pHostObject = m_object;
    RIDGELINE_CUPTI_CHECK(cuptiProfilerHostGetConfigImageSize(&size));
    std::vector<std::uint8_t> image(size.configImageSize);
    auto get = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_GetConfigImage_Params);
    get.pHostObject = m_object;
    get.configImageSize = image.size();
    get.pConfigImage = image.data();
    RIDGELINE_CUPTI_CHECK(cuptiProfilerHostGetConfigImage(&get));
    return image;
  }

 private:
  CUpti_Profiler_Host_Object* m_object = nullptr;
};

// cuptiRangeProfilerEnable .. cuptiRangeProfilerDisable on one context.
class range_profiler {
 public:
  explicit range_profiler(CUcontext ctx) {
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_Enable_Params);
    p.ctx = ctx;
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerEnable(&p));
    m_object = p.pRangeProfilerObject;
  }
  ~range_profiler() {
    if (!m_object) return;
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_Disable_Params);
    p.pRangeProfilerObject = m_object;
    RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiRangeProfilerDisable(&p));
  }
  range_profiler(range_profiler&& o) noexcept : m_object(std::exchange(o.m_object, nullptr)) {}
  range_profiler& operator=(range_profiler&& o) noexcept {
    std::swap(m_object, o.m_object);
    return *this;
  }
  range_profiler(const range_profiler&) = delete;
  range_profiler& operator=(const range_profiler&) = delete;
  CUpti_RangeProfiler_Object* get() const { return m_object; }

 private:
  CUpti_RangeProfiler_Object* m_object = nullptr;
};

std::string chip_name_of(int device) {
  auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Device_GetChipName_Params);
  p.deviceIndex = static_cast<std::size_t>(device);
  RIDGELINE_CUPTI_CHECK(cuptiDeviceGetChipName(&p));
  return p.pChipName ? p.pChipName : "";
}

std::vector<std::uint8_t> counter_availability(CUcontext ctx) {
  auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_GetCounterAvailability_Params);
  p.ctx = ctx;
  RIDGELINE_CUPTI_CHECK(cuptiProfilerGetCounterAvailability(&p));
  std::vector<std::uint8_t> image(p.counterAvailabilityImageSize);
  p.pCounterAvailabilityImage = image.data();
  RIDGELINE_CUPTI_CHECK(cuptiProfilerGetCounterAvailability(&p));
  return image;
}

std::size_t passes_of(std::vector<std::uint8_t>& config) {
  auto p = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_GetNumOfPasses_Params);
  p.configImageSize = config.size();
  p.pConfigImage = config.data();
  RIDGELINE_CUPTI_CHECK(cuptiProfilerHostGetNumOfPasses(&p));
  return p.numOfPasses;
}

std::vector<std::uint8_t> counter_data_image(const range_profiler& rp,
                                             std::vector<const char*>& names) {
  auto size = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataSize_Params);
  size.pRangeProfilerObject = rp.get();
  size.pMetricNames = names.data();
  size.numMetrics = names.size();
  size.maxNumOfRanges = 1;
  size.maxNumRangeTreeNodes = 1;
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerGetCounterDataSize(&size));
  std::vector<std::uint8_t> image(size.counterDataSize);
  auto init = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_CounterDataImage_Initialize_Params);
  init.pRangeProfilerObject = rp.get();
  init.counterDataSize = image.size();
  init.pCounterData = image.data();
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerCounterDataImageInitialize(&init));
  return image;
}

// One pass: the work inside the range, the device idle at both ends so that the range holds
// exactly this pass's work. Returns whether CUPTI has every pass it needs.
bool run_pass(const range_profiler& rp, const std::function<void()>& work) {
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize before a pass");
  auto start = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_Start_Params);
  start.pRangeProfilerObject = rp.get();
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerStart(&start));
  auto push = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_PushRange_Params);
  push.pRangeProfilerObject = rp.get();
  push.pRangeName = k_range_name;
  auto pop = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_PopRange_Params);
  pop.pRangeProfilerObject = rp.get();
  auto stop = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_Stop_Params);
  stop.pRangeProfilerObject = rp.get();
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerPushRange(&push));
  try {
    work();
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize after the work");
  } catch (...) {
    RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiRangeProfilerPopRange(&pop));
    RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiRangeProfilerStop(&stop));
    throw;
  }
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerPopRange(&pop));
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerStop(&stop));
  return stop.isAllPassSubmitted != 0;
}

// The device's primary context, made current. cuCtxGetCurrent is reached through the runtime's
// driver entry point so that nothing links libcuda: binaries with ridgeline_cupti still start (and
// skip GPU work) on machines without a driver.
CUcontext primary_context(int device) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  check_cuda(cudaFree(nullptr), "creating the CUDA context (cudaFree(0))");
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  check_cuda(
      cudaGetDriverEntryPointByVersion("cuCtxGetCurrent", &fn, 12000, cudaEnableDefault, &found),
      "cudaGetDriverEntryPointByVersion(cuCtxGetCurrent)");
  CUcontext ctx = nullptr;
  using get_current_fn = CUresult (*)(CUcontext*);
  if (found != cudaDriverEntryPointSuccess || !fn ||
      reinterpret_cast<get_current_fn>(fn)(&ctx) != CUDA_SUCCESS || !ctx) {
    throw std::runtime_error("profile_range: no current CUDA context after cudaSetDevice");
  }
  return ctx;
}

void require_device(int device) {
  const int count = device_count();
  if (count == 0) {
    throw counters_unavailable("GPU counters need a CUDA device: " + no_device_reason());
  }
  if (device < 0 || device >= count) {
    throw std::invalid_argument("profile_range: device " + std::to_string(device) +
                                " does not exist (" + std::to_string(count) + " visible)");
  }
}

}  // namespace

std::string cupti_chip_name(int device) {
  require_device(device);
  primary_context(device);
  profiler_session session;
  return chip_name_of(device);
}

counter_values profile_range(const std::function<void()>& work, const counter_options& options) {
  require_device(options.device);
  CUcontext ctx = primary_context(options.device);
  profiler_session session;
  const std::string chip = chip_name_of(options.device);
  const auto availability = counter_availability(ctx);
  host_object host(chip, availability);

  std::vector<std::string> metrics = counter_metric_names();
  for (const auto& m : options.extra_metrics) {
    if (!host.knows_metric(m.c_str())) {
      throw std::invalid_argument("profile_range: metric '" + m + "' is not known for chip " +
                                  chip);
    }
    metrics.push_back(m);
  }
  std::vector<const char*> names;
  for (const auto& m : metrics) names.push_back(m.c_str());

  auto config = host.config_image(names);
  const std::size_t planned = passes_of(config);

  std::vector<std::uint8_t> counter_data;  // outlives rp: CUPTI writes it until Disable
  range_profiler rp(ctx);
  counter_data = counter_data_image(rp, names);
  auto set = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_SetConfig_Params);
  set.pRangeProfilerObject = rp.get();
  set.configSize = config.size();
  set.pConfig = config.data();
  set.counterDataImageSize = counter_data.size();
  set.pCounterDataImage = counter_data.data();
  set.range = CUPTI_UserRange;
  set.replayMode = CUPTI_UserReplay;
  set.maxRangesPerPass = 1;
  set.numNestingLevels = 1;
  set.minNestingLevel = 1;
  set.passIndex = 0;
  set.targetNestingLevel = 1;
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerSetConfig(&set));

  int passes = 0;
  for (bool all_submitted = false; !all_submitted;) {
    if (static_cast<std::size_t>(passes) > planned) {
      throw std::runtime_error("profile_range: CUPTI wants more than the " +
                               std::to_string(planned) + " passes its config image planned");
    }
    all_submitted = run_pass(rp, work);
    ++passes;
  }

  auto decode = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_DecodeData_Params);
  decode.pRangeProfilerObject = rp.get();
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerDecodeData(&decode));
  if (decode.numOfRangeDropped != 0) {
    throw std::runtime_error("profile_range: CUPTI dropped " +
                             std::to_string(decode.numOfRangeDropped) + " range(s)");
  }
  auto info = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataInfo_Params);
  info.pCounterDataImage = counter_data.data();
  info.counterDataImageSize = counter_data.size();
  RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerGetCounterDataInfo(&info));
  if (info.numTotalRanges != 1) {
    throw std::runtime_error("profile_range: expected 1 range in the counter data, found " +
                             std::to_string(info.numTotalRanges));
  }

  std::vector<double> values(names.size(), 0.0);
  auto eval = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_EvaluateToGpuValues_Params);
  eval.pHostObject = host.get();
  eval.pCounterDataImage = counter_data.data();
  eval.counterDataImageSize = counter_data.size();
  eval.rangeIndex = 0;
  eval.ppMetricNames = names.data();
  eval.numMetrics = names.size();
  eval.pMetricValues = values.data();
  RIDGELINE_CUPTI_CHECK(cuptiProfilerHostEvaluateToGpuValues(&eval));

  std::map<std::string, double> raw;
  for (std::size_t i = 0; i < metrics.size(); ++i) raw[metrics[i]] = values[i];
  counter_values v = derive_counter_values(raw);
  v.passes = passes;
  return v;
}

}  // namespace ridgeline::metrics
