// Counters with the CUDA 13 Range Profiler (cupti_range_profiler.h), the host API
// (cupti_profiler_host.h) for the config image and evaluation, and the target API
// (cupti_profiler_target.h) for cuptiProfilerInitialize and counter availability.
//
// profile_range: user range, user replay. The whole callable is one range, and we call it once per
// pass the metric set needs. Why not auto range with kernel replay there: that gives one range per
// kernel (cuBLAS or the engine launch many) and replays each kernel with its memory saved and
// restored by CUPTI, which adds save/restore traffic around every kernel and needs summing ranges
// afterwards; user replay keeps launches as the caller makes them and the sum over the region is
// what we want. The cost: the callable must be replayable (documented in cupti.hpp).
//
// profile_kernels: auto range, kernel replay, for when the per-kernel split is the point. The
// callable runs once; CUPTI makes each kernel launch a range and replays it per pass. CUPTI names
// auto ranges by launch index, so the kernel names come from CUPTI callbacks on the launch calls
// (launch_recorder), paired with the ranges in order.
//
// Order (both): initialise the profiler, read the chip name and counter availability, build the
// config image on the host (how many passes), enable the range profiler on the context, size and
// initialise the counter data image, set the config, run until CUPTI says all passes are
// submitted, decode, evaluate each range on the host, then tear down in reverse (RAII owners).
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <cupti_callbacks.h>
#include <cupti_driver_cbid.h>
#include <cupti_profiler_host.h>
#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_runtime_cbid.h>
#include <cupti_target.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

#include "cupti_check.hpp"
#include "ridgeline/telemetry/cupti.hpp"
#include "ridgeline/telemetry/device.hpp"

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

// Every metric profile_range and profile_kernels collect: ridgeline's list and the extra ones.
std::vector<std::string> metric_list(const host_object& host, const std::string& chip,
                                     const std::vector<std::string>& extra, const char* what) {
  std::vector<std::string> metrics = counter_metric_names();
  for (const auto& m : extra) {
    if (!host.knows_metric(m.c_str())) {
      throw std::invalid_argument(std::string(what) + ": metric '" + m +
                                  "' is not known for chip " + chip);
    }
    metrics.push_back(m);
  }
  return metrics;
}

std::vector<const char*> c_names(const std::vector<std::string>& metrics) {
  std::vector<const char*> names;
  for (const auto& m : metrics) names.push_back(m.c_str());
  return names;
}

// The range profiler set up for one collection on `ctx`: config image set, counter data image of
// `max_ranges` ranges. Owns the counter data image, which outlives the profiler object (CUPTI
// writes it until Disable).
class collection {
 public:
  collection(CUcontext ctx, std::vector<std::uint8_t>& config, std::vector<const char*>& names,
             CUpti_ProfilerRange range, CUpti_ProfilerReplayMode replay, std::size_t max_ranges)
      : m_rp(ctx) {
    auto size = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataSize_Params);
    size.pRangeProfilerObject = m_rp.get();
    size.pMetricNames = names.data();
    size.numMetrics = names.size();
    size.maxNumOfRanges = max_ranges;
    size.maxNumRangeTreeNodes = static_cast<std::uint32_t>(max_ranges);  // one level: one each
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerGetCounterDataSize(&size));
    m_counter_data.resize(size.counterDataSize);
    auto init = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_CounterDataImage_Initialize_Params);
    init.pRangeProfilerObject = m_rp.get();
    init.counterDataSize = m_counter_data.size();
    init.pCounterData = m_counter_data.data();
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerCounterDataImageInitialize(&init));

    auto set = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_SetConfig_Params);
    set.pRangeProfilerObject = m_rp.get();
    set.configSize = config.size();
    set.pConfig = config.data();
    set.counterDataImageSize = m_counter_data.size();
    set.pCounterDataImage = m_counter_data.data();
    set.range = range;
    set.replayMode = replay;
    set.maxRangesPerPass = max_ranges;
    set.numNestingLevels = 1;  // auto range needs 1; user range: the one range we push
    set.minNestingLevel = 1;
    set.passIndex = 0;
    set.targetNestingLevel = 1;
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerSetConfig(&set));
  }

  // Runs `work` once between Start and Stop (inside a range named `user_range` when not null),
  // with the device idle at both ends so that the ranges hold exactly this run's work. Returns
  // whether CUPTI has every pass it needs.
  bool run(const std::function<void()>& work, const char* user_range) {
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize before the work");
    auto start = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_Start_Params);
    start.pRangeProfilerObject = m_rp.get();
    auto push = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_PushRange_Params);
    push.pRangeProfilerObject = m_rp.get();
    push.pRangeName = user_range;
    auto pop = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_PopRange_Params);
    pop.pRangeProfilerObject = m_rp.get();
    auto stop = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_Stop_Params);
    stop.pRangeProfilerObject = m_rp.get();
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerStart(&start));
    if (user_range) RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerPushRange(&push));
    try {
      work();
      check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize after the work");
    } catch (...) {
      if (user_range) RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiRangeProfilerPopRange(&pop));
      RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiRangeProfilerStop(&stop));
      throw;
    }
    if (user_range) RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerPopRange(&pop));
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerStop(&stop));
    return stop.isAllPassSubmitted != 0;
  }

  // Decodes what the runs collected into the counter data image; returns the number of ranges.
  // `what` names the caller in errors; `dropped_hint` says what to do when ranges were dropped.
  std::size_t decode(const char* what, const std::string& dropped_hint) {
    auto decode = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_DecodeData_Params);
    decode.pRangeProfilerObject = m_rp.get();
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerDecodeData(&decode));
    if (decode.numOfRangeDropped != 0) {
      throw std::runtime_error(std::string(what) + ": CUPTI dropped " +
                               std::to_string(decode.numOfRangeDropped) + " range(s)" +
                               dropped_hint);
    }
    auto info = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataInfo_Params);
    info.pCounterDataImage = m_counter_data.data();
    info.counterDataImageSize = m_counter_data.size();
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerGetCounterDataInfo(&info));
    return info.numTotalRanges;
  }

  // CUPTI's name for range `index` (decoded data). Copied at once: the string is CUPTI's.
  std::string range_name(std::size_t index) const {
    auto p = RIDGELINE_CUPTI_PARAMS(CUpti_RangeProfiler_CounterData_GetRangeInfo_Params);
    p.pCounterDataImage = m_counter_data.data();
    p.counterDataImageSize = m_counter_data.size();
    p.rangeIndex = index;
    p.rangeDelimiter = "/";
    RIDGELINE_CUPTI_CHECK(cuptiRangeProfilerCounterDataGetRangeInfo(&p));
    return p.rangeName ? p.rangeName : "";
  }

  // Range `index` evaluated on the host into counter values (passes left 0 for the caller).
  counter_values evaluate(const host_object& host, const std::vector<std::string>& metrics,
                          std::vector<const char*>& names, std::size_t index) const {
    std::vector<double> values(names.size(), 0.0);
    auto eval = RIDGELINE_CUPTI_PARAMS(CUpti_Profiler_Host_EvaluateToGpuValues_Params);
    eval.pHostObject = host.get();
    eval.pCounterDataImage = m_counter_data.data();
    eval.counterDataImageSize = m_counter_data.size();
    eval.rangeIndex = index;
    eval.ppMetricNames = names.data();
    eval.numMetrics = names.size();
    eval.pMetricValues = values.data();
    RIDGELINE_CUPTI_CHECK(cuptiProfilerHostEvaluateToGpuValues(&eval));
    std::map<std::string, double> raw;
    for (std::size_t i = 0; i < metrics.size(); ++i) raw[metrics[i]] = values[i];
    return derive_counter_values(raw);
  }

 private:
  std::vector<std::uint8_t> m_counter_data;  // declared before m_rp: destroyed after Disable
  range_profiler m_rp;
};

// Kernel names in launch order, from CUPTI callbacks on the launch calls while it lives. A launch
// call may make others inside it (the runtime calls the driver; CUDA 13's <<<>>> entry
// __cudaLaunchKernel may call cudaLaunchKernel), so only the outermost launch call on a thread
// counts, named by the first symbol name seen inside it; a launch that returns an error made no
// kernel and is left out. Host-function launches and graph launches are not kernels and are not
// enabled. One CUPTI subscriber may exist per process: another one makes this counters_unavailable.
class launch_recorder {
 public:
  launch_recorder() {
    RIDGELINE_CUPTI_CHECK(cuptiSubscribe(&m_subscriber, &on_callback, this));
    try {
      for (const auto id : k_runtime_launches) {
        RIDGELINE_CUPTI_CHECK(
            cuptiEnableCallback(1, m_subscriber, CUPTI_CB_DOMAIN_RUNTIME_API, id));
      }
      for (const auto id : k_driver_launches) {
        RIDGELINE_CUPTI_CHECK(cuptiEnableCallback(1, m_subscriber, CUPTI_CB_DOMAIN_DRIVER_API, id));
      }
    } catch (...) {
      RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiUnsubscribe(m_subscriber));
      throw;
    }
  }
  ~launch_recorder() { RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiUnsubscribe(m_subscriber)); }
  launch_recorder(const launch_recorder&) = delete;
  launch_recorder& operator=(const launch_recorder&) = delete;

  // Names of the launches that succeeded, mangled as the launch call gives them.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    std::vector<std::string> out;
    for (const auto& l : m_launches) {
      if (l.ok) out.push_back(l.name);
    }
    return out;
  }

 private:
  struct launch {
    std::string name;
    bool ok = true;
  };
  // The outermost launch call in progress on this thread.
  struct thread_state {
    int depth = 0;
    std::size_t index = 0;
  };

  static constexpr CUpti_CallbackId k_runtime_launches[] = {
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunch_v3020,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunch_ptsz_v7000,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000,
      CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000,
      CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000,
      CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_ptsz_v13000};
  static constexpr CUpti_CallbackId k_driver_launches[] = {
      CUPTI_DRIVER_TRACE_CBID_cuLaunch,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchGrid,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchGridAsync,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel,
      CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz};

  static void CUPTIAPI on_callback(void* self, CUpti_CallbackDomain, CUpti_CallbackId,
                                   const void* data) {
    static thread_local thread_state t;
    auto& r = *static_cast<launch_recorder*>(self);
    const auto& d = *static_cast<const CUpti_CallbackData*>(data);
    std::lock_guard<std::mutex> lock(r.m_mutex);
    if (d.callbackSite == CUPTI_API_ENTER) {
      if (t.depth++ == 0) {
        t.index = r.m_launches.size();
        r.m_launches.emplace_back();
      }
      auto& name = r.m_launches[t.index].name;
      if (name.empty() && d.symbolName) name = d.symbolName;
    } else if (t.depth > 0 && --t.depth == 0) {
      // cudaError_t or CUresult: both enums with 0 for success.
      int result = 0;
      if (d.functionReturnValue) std::memcpy(&result, d.functionReturnValue, sizeof(result));
      if (result != 0) r.m_launches[t.index].ok = false;
    }
  }

  CUpti_SubscriberHandle m_subscriber = nullptr;
  mutable std::mutex m_mutex;
  std::vector<launch> m_launches;
};

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

// What both collections share: the device's context made current, a profiler session, the host
// object, the metric names and the config image (and so the number of passes).
struct profiling_setup {
  // `what`: the caller, for errors.
  profiling_setup(const counter_options& options, const char* what)
      : ctx(primary_context(options.device)),
        chip(chip_name_of(options.device)),
        availability(counter_availability(ctx)),
        host(chip, availability),
        metrics(metric_list(host, chip, options.extra_metrics, what)),
        names(c_names(metrics)),
        config(host.config_image(names)),
        planned_passes(passes_of(config)) {}

  CUcontext ctx;
  profiler_session session;  // before everything below that calls the profiler
  std::string chip;
  std::vector<std::uint8_t> availability;  // outlives the host object that was given it
  host_object host;
  std::vector<std::string> metrics;
  std::vector<const char*> names;  // into metrics
  std::vector<std::uint8_t> config;
  std::size_t planned_passes;
};

}  // namespace

std::string cupti_chip_name(int device) {
  require_device(device);
  primary_context(device);
  profiler_session session;
  return chip_name_of(device);
}

counter_values profile_range(const std::function<void()>& work, const counter_options& options) {
  require_device(options.device);
  profiling_setup s(options, "profile_range");
  collection c(s.ctx, s.config, s.names, CUPTI_UserRange, CUPTI_UserReplay, 1);

  int passes = 0;
  for (bool all_submitted = false; !all_submitted;) {
    if (static_cast<std::size_t>(passes) > s.planned_passes) {
      throw std::runtime_error("profile_range: CUPTI wants more than the " +
                               std::to_string(s.planned_passes) +
                               " passes its config image planned");
    }
    all_submitted = c.run(work, k_range_name);
    ++passes;
  }

  const std::size_t ranges = c.decode("profile_range", "");
  if (ranges != 1) {
    throw std::runtime_error("profile_range: expected 1 range in the counter data, found " +
                             std::to_string(ranges));
  }
  counter_values v = c.evaluate(s.host, s.metrics, s.names, 0);
  v.passes = passes;
  return v;
}

std::vector<kernel_counters> profile_kernels(const std::function<void()>& work,
                                             const counter_options& options) {
  if (options.max_kernels == 0 || options.max_kernels > std::numeric_limits<std::uint32_t>::max()) {
    throw std::invalid_argument("profile_kernels: counter_options::max_kernels must be in 1.." +
                                std::to_string(std::numeric_limits<std::uint32_t>::max()) +
                                ", not " + std::to_string(options.max_kernels));
  }
  require_device(options.device);
  profiling_setup s(options, "profile_kernels");
  collection c(s.ctx, s.config, s.names, CUPTI_AutoRange,
               options.kernel_replay ? CUPTI_KernelReplay : CUPTI_UserReplay, options.max_kernels);

  const auto too_many = [&](std::size_t launched) {
    return "profile_kernels: the work launched " + std::to_string(launched) +
           " kernels, more than counter_options::max_kernels (" +
           std::to_string(options.max_kernels) + "): raise max_kernels or profile less at a time";
  };
  std::vector<std::string> launches;
  bool all_submitted = false;
  // Kernel replay: one run of the work. User replay: one run per pass, the same launches each.
  for (int run = 0; !all_submitted; ++run) {
    if (run > 0 && (options.kernel_replay || static_cast<std::size_t>(run) > s.planned_passes)) {
      throw std::runtime_error(
          "profile_kernels: CUPTI did not submit every pass (" + std::to_string(run) +
          " runs of the work, " + std::to_string(s.planned_passes) + " passes planned)");
    }
    launch_recorder recorder;
    try {
      all_submitted = c.run(work, nullptr);
    } catch (const std::exception& e) {
      // CUPTI may refuse a launch past the ranges it was given: say why first.
      const std::size_t launched = recorder.names().size();
      if (launched > options.max_kernels) {
        throw std::runtime_error(too_many(launched) + " (then: " + e.what() + ")");
      }
      throw;
    }
    if (run == 0) {
      launches = recorder.names();
    } else if (recorder.names() != launches) {
      throw std::runtime_error("profile_kernels: the work launched other kernels in pass " +
                               std::to_string(run + 1) + " than in pass 1; user replay needs the "
                               "same launches every run");
    }
    if (launches.size() > options.max_kernels) throw std::runtime_error(too_many(launches.size()));
  }

  const std::size_t ranges =
      c.decode("profile_kernels", ", more than counter_options::max_kernels (" +
                                      std::to_string(options.max_kernels) + "): raise max_kernels");
  std::vector<std::string> range_names;
  for (std::size_t i = 0; i < ranges; ++i) range_names.push_back(c.range_name(i));
  const auto names = name_kernel_ranges(range_names, launches);

  std::vector<kernel_counters> out;
  out.reserve(ranges);
  for (std::size_t i = 0; i < ranges; ++i) {
    kernel_counters k;
    k.name = names[i];
    k.values = c.evaluate(s.host, s.metrics, s.names, i);
    k.values.passes = static_cast<int>(s.planned_passes);
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace ridgeline::metrics
