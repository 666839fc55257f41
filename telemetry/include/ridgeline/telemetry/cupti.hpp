// GPU counters and kernel traces through CUPTI (CUDA builds only: link ridgeline_cupti). No CUDA or
// CUPTI types here. Two independent tools:
//
// Kernel activity tracing (CUPTI Activity API), with phases through external correlation:
//   metrics::activity_tracer tracer;
//   tracer.start();
//   { metrics::scoped_phase p("attention"); launch...; }
//   { metrics::scoped_phase p("mlp"); launch...; }
//   std::vector<kernel_record> kernels = tracer.stop();    // waits for the device, flushes
//   auto per_phase = metrics::summarize_by_phase(kernels);
// Nothing is enabled before start() or after stop(); a scoped_phase outside a trace is one relaxed
// atomic load. Tracing costs API-call and kernel records while on: do not time under it.
//
// Counters for a region of work (CUDA 13 Range Profiler, user range, user replay):
//   counter_values v = metrics::profile_range([&] { run_step(); }, {});
//   v.dram_bytes(), v.tensor_bf16_flops, v.intensity() ...
// `work` is called once per pass the metrics need (7 for the default set on H100), so it must be
// replayable: same launches each call, and no input it overwrites changes what it does. Counters
// are collected only while profile_range runs, by construction a separate run from any timing.
//
// Counters per kernel (auto range, kernel replay):
//   for (const kernel_counters& k : metrics::profile_kernels([&] { run_step(); }, {}))
//     k.name, k.values.dram_bytes(), k.values.fp32_flops ...
// `work` runs once; CUPTI serializes its kernels and replays each one as many times as the metrics
// need (saving and restoring the device memory it touches), so `work` need not be replayable, but
// it is slow and every kernel runs alone. Kernel replay does not see into CUDA graphs: run the
// work eagerly (no cudaGraphLaunch), from the calling thread so that names match launches.
//
// All of these throw counters_unavailable (one line: what happened, what to do) when counters
// cannot be used here: not permitted, held by another profiler (ncu, nsys, DCGM), unsupported
// device or configuration, no device, libnvperf missing. Other failures throw std::runtime_error.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ridgeline/telemetry/counters.hpp"

namespace ridgeline::metrics {

// Records every kernel (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) launched between start() and stop()
// in this process, on every device and stream. One tracer may run at a time.
class activity_tracer {
 public:
  activity_tracer() = default;
  ~activity_tracer();  // stops a running trace, dropping its records
  activity_tracer(const activity_tracer&) = delete;
  activity_tracer& operator=(const activity_tracer&) = delete;

  // Throws std::logic_error when a trace is already running, counters_unavailable when CUPTI
  // cannot trace here (another CUPTI client holds it, no device).
  void start();
  // Waits for the device, flushes CUPTI's buffers and disables tracing. Records in start order.
  std::vector<kernel_record> stop();
  bool running() const { return m_running; }
  // Records CUPTI dropped during the last trace (buffers full); 0 when the trace is complete.
  std::uint64_t dropped_records() const { return m_dropped; }

 private:
  bool m_running = false;
  std::uint64_t m_dropped = 0;
};

namespace detail {
// Whether a trace is running: all a scoped_phase reads outside a trace.
extern std::atomic<bool> g_tracing;
void push_phase(const char* name);
void pop_phase();
}  // namespace detail

// Tags every kernel launched by this thread while it lives with `name` (kernel_record::phase).
// Phases nest; a kernel carries the innermost. A no-op when no trace runs at construction.
class scoped_phase {
 public:
  explicit scoped_phase(const char* name) {
    if (detail::g_tracing.load(std::memory_order_relaxed)) {
      detail::push_phase(name);
      m_pushed = true;
    }
  }
  explicit scoped_phase(const std::string& name) : scoped_phase(name.c_str()) {}
  ~scoped_phase() {
    if (m_pushed) detail::pop_phase();
  }
  scoped_phase(const scoped_phase&) = delete;
  scoped_phase& operator=(const scoped_phase&) = delete;

 private:
  bool m_pushed = false;
};

struct counter_options {
  int device = 0;                          // CUDA device index the work runs on
  std::vector<std::string> extra_metrics;  // more metric names (with rollup, e.g. ".sum"), in raw
  // profile_kernels only: kernel launches the counter data holds (its size grows with this); more
  // launches in `work` is an error that says so.
  std::size_t max_kernels = 2048;
  // profile_kernels only: true, CUPTI replays each kernel (saving and restoring the memory it may
  // write; `work` runs once). false, `work` runs once per pass like profile_range (it must then be
  // replayable: the same launches every call), which avoids copying large allocations (an
  // engine's weights and KV pool) around every kernel of every pass.
  bool kernel_replay = true;
};

// One kernel launch's counters. values.passes: how many times CUPTI ran the kernel.
struct kernel_counters {
  std::string name;  // the kernel's symbol, demangled; CUPTI's range index ("3") when unknown
  counter_values values;
};

// Runs `work` (enqueueing GPU work on any stream of `device`) once per pass inside one user range,
// waits for the device after each pass, and returns the evaluated counters. The calling thread
// must make `device` current for `work` (profile_range sets it). Throws counters_unavailable (see
// above); std::invalid_argument for an unknown extra metric name.
counter_values profile_range(const std::function<void()>& work, const counter_options& options);

// Runs `work` once with every kernel it launches on `device` profiled on its own (CUPTI auto range,
// kernel replay), and returns one entry per kernel launch, in launch order. Kernels inside CUDA
// graphs are not profiled (launch eagerly). Throws counters_unavailable (see above);
// std::invalid_argument for an unknown extra metric or max_kernels of 0; std::runtime_error when
// `work` launched more than options.max_kernels kernels.
std::vector<kernel_counters> profile_kernels(const std::function<void()>& work,
                                             const counter_options& options);

// The chip name CUPTI reports for `device` ("GH100"); throws counters_unavailable without one.
std::string cupti_chip_name(int device);

}  // namespace ridgeline::metrics
