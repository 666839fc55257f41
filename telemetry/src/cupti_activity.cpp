// Kernel tracing with the CUPTI Activity API. CUPTI asks for buffers and hands them back full
// (possibly on its own thread) through two callbacks; kernel records and external-correlation
// records are copied out under one mutex. Phases: scoped_phase pushes a CUSTOM0 external
// correlation id for its name, CUPTI then precedes every API record made inside it (runtime and
// driver API kinds must be on for those to exist) with an EXTERNAL_CORRELATION record {phase id,
// correlation id}; stop() joins them to the kernels through the launching call's correlation id.
#include <cuda_runtime_api.h>
#include <cupti_activity.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "cupti_check.hpp"
#include "ridgeline/telemetry/cupti.hpp"
#include "ridgeline/telemetry/nvtx.hpp"
#include "ridgeline/telemetry/device.hpp"

namespace ridgeline::metrics {
namespace detail {
std::atomic<bool> g_tracing{false};
}  // namespace detail

namespace {

constexpr std::size_t k_buffer_bytes = 8u << 20;
constexpr std::size_t k_buffer_align = 8;  // CUPTI needs 8-byte aligned buffers
constexpr auto k_phase_kind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;

// Runtime and driver API records are enabled only so that external-correlation records are
// emitted; they are skipped when buffers come back.
constexpr CUpti_ActivityKind k_kinds[] = {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
                                          CUPTI_ACTIVITY_KIND_RUNTIME, CUPTI_ACTIVITY_KIND_DRIVER,
                                          CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL};

struct trace_state {
  std::mutex mutex;
  std::vector<kernel_record> kernels;
  std::unordered_map<std::uint32_t, std::uint64_t> phase_of_correlation;
  std::vector<std::string> phase_names;  // phase id i + 1 -> name
  std::unordered_map<std::string, std::uint64_t> phase_ids;
  std::uint64_t dropped = 0;
  bool callbacks_registered = false;
};

trace_state& state() {
  static trace_state s;
  return s;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(k_buffer_align, k_buffer_bytes));
  *size = *buffer ? k_buffer_bytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream_id, uint8_t* buffer, size_t,
                               size_t valid_bytes) {
  auto& s = state();
  {
    std::lock_guard lock(s.mutex);
    CUpti_Activity* record = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid_bytes, &record) == CUPTI_SUCCESS) {
      if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL ||
          record->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
        const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
        kernel_record r;
        r.mangled_name = k->name ? k->name : "";
        r.name = demangle_kernel_name(k->name);
        r.grid[0] = k->gridX;
        r.grid[1] = k->gridY;
        r.grid[2] = k->gridZ;
        r.block[0] = k->blockX;
        r.block[1] = k->blockY;
        r.block[2] = k->blockZ;
        r.start_ns = k->start;
        r.end_ns = k->end;
        r.stream_id = k->streamId;
        r.correlation_id = k->correlationId;
        r.device_id = k->deviceId;
        s.kernels.push_back(std::move(r));
      } else if (record->kind == CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION) {
        const auto* e = reinterpret_cast<const CUpti_ActivityExternalCorrelation*>(record);
        if (e->externalKind == k_phase_kind)
          s.phase_of_correlation[e->correlationId] = e->externalId;
      }
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream_id, &dropped) == CUPTI_SUCCESS) {
      s.dropped += dropped;
    }
  }
  std::free(buffer);
}

void disable_all() noexcept {
  for (auto kind : k_kinds) RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiActivityDisable(kind));
}

}  // namespace

namespace detail {

void push_phase(const char* name) {
  auto& s = state();
  std::uint64_t id = 0;
  {
    std::lock_guard lock(s.mutex);
    auto [it, inserted] = s.phase_ids.try_emplace(name, s.phase_names.size() + 1);
    if (inserted) s.phase_names.emplace_back(name);
    id = it->second;
  }
  RIDGELINE_CUPTI_CHECK(cuptiActivityPushExternalCorrelationId(k_phase_kind, id));
}

void pop_phase() {
  std::uint64_t last = 0;
  RIDGELINE_CUPTI_WARN_NOEXCEPT(cuptiActivityPopExternalCorrelationId(k_phase_kind, &last));
}

}  // namespace detail

activity_tracer::~activity_tracer() {
  if (!m_running) return;
  try {
    stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ridgeline: stopping the kernel trace failed: %s\n", e.what());
  }
}

void activity_tracer::start() {
  if (device_count() == 0) {
    throw counters_unavailable("kernel tracing needs a CUDA device: " + no_device_reason());
  }
  if (detail::g_tracing.load()) {
    throw std::logic_error("activity_tracer::start: a kernel trace is already running");
  }
  auto& s = state();
  {
    std::lock_guard lock(s.mutex);
    s.kernels.clear();
    s.phase_of_correlation.clear();
    s.dropped = 0;
    if (!s.callbacks_registered) {
      RIDGELINE_CUPTI_CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
      s.callbacks_registered = true;
    }
  }
  try {
    for (auto kind : k_kinds) RIDGELINE_CUPTI_CHECK(cuptiActivityEnable(kind));
  } catch (...) {
    disable_all();
    throw;
  }
  detail::g_tracing.store(true);
  // NVTX ranges (metrics/nvtx.hpp: the engine's prefill/decode, attention_block, mlp, sampling)
  // become phases while the trace runs.
  static const detail::range_listener ranges{detail::push_phase, detail::pop_phase};
  detail::set_range_listener(&ranges);
  m_running = true;
  m_dropped = 0;
}

std::vector<kernel_record> activity_tracer::stop() {
  if (!m_running) throw std::logic_error("activity_tracer::stop: no trace is running");
  m_running = false;
  detail::set_range_listener(nullptr);
  detail::g_tracing.store(false);
  // Kernel records exist once the kernels have completed.
  const cudaError_t synced = cudaDeviceSynchronize();
  disable_all();
  RIDGELINE_CUPTI_CHECK(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
  if (synced != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("activity_tracer::stop: cudaDeviceSynchronize failed: ") +
                             cudaGetErrorString(synced));
  }
  auto& s = state();
  std::lock_guard lock(s.mutex);
  std::vector<kernel_record> out = std::move(s.kernels);
  s.kernels.clear();
  for (auto& r : out) {
    auto it = s.phase_of_correlation.find(r.correlation_id);
    if (it != s.phase_of_correlation.end() && it->second >= 1 &&
        it->second <= s.phase_names.size()) {
      r.phase = s.phase_names[it->second - 1];
    }
  }
  s.phase_of_correlation.clear();
  m_dropped = s.dropped;
  std::stable_sort(out.begin(), out.end(), [](const kernel_record& a, const kernel_record& b) {
    return a.start_ns < b.start_ns;
  });
  return out;
}

}  // namespace ridgeline::metrics
