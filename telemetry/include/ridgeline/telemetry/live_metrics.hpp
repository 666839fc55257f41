// Live engine metrics for Prometheus: every family and child is created up front by the
// constructor, so the per-step calls are a few atomic updates and one histogram observation each
// (no lookup, no allocation, no string formatting). Any long-running command (sweep, kv, plan)
// feeds one of these and serves it through metrics::exporter or pushes it at the end:
//   metrics::live_metrics live({.ttft_seconds = 2.0, .tpot_seconds = 0.1});
//   live.set_ceilings("bf16", 989e12, 3.35e12);                 // ridge point = their ratio
//   per step:    live.observe_step({step_phase::decode, dt, batch, 0, batch, batch, flops, bytes});
//                live.set_queue(running, waiting);  live.set_kv(snapshot);
//   per request: live.observe_request(sample);      per token gap: live.observe_itl(gap);
//   now and then: live.set_gpu(0, *nvml::instance().sample(0));
// Metric names, units and formulas: docs/metrics.md (the formulas are in each HELP text too).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ridgeline/telemetry/nvml.hpp"
#include "ridgeline/telemetry/registry.hpp"

namespace ridgeline::metrics {

enum class step_phase : int { prefill = 0, decode = 1, mixed = 2 };
inline constexpr int k_step_phases = 3;
const char* name(step_phase p);
// prefill when only prompt tokens, decode when only decode tokens, mixed otherwise.
step_phase phase_of(std::int64_t prefill_tokens, std::int64_t decode_tokens);

struct step_sample {
  step_phase phase = step_phase::decode;
  double seconds = 0;               // step duration
  std::int32_t batch = 0;           // sequences in the step
  std::int64_t prefill_tokens = 0;  // prompt (or recomputed) tokens computed
  std::int64_t decode_tokens = 0;   // one per decoding sequence
  std::int64_t sampled_tokens = 0;  // output tokens produced by the step
  double flops = 0;                 // FLOPs of the step (counted, or measured by counters)
  double dram_bytes = 0;            // DRAM bytes of the step (counted, or measured)
};

// Cumulative counts since the start of a run (the KV manager's counters) and current states.
// A count that goes down means a new run started: it is counted again from zero.
struct kv_snapshot {
  std::int64_t blocks_used = 0;
  std::int64_t blocks_cached = 0;  // unreferenced, holding a prefix, evictable
  std::int64_t blocks_free = 0;
  std::int64_t lookup_tokens = 0;  // prompt tokens looked up in the prefix cache
  std::int64_t hit_tokens = 0;     // of which served from cache (every tier)
  std::int64_t evictions = 0;      // cached blocks reused for other content (GPU tier)
  std::int64_t preemptions = 0;
};

struct request_sample {
  bool finished = true;  // false: rejected
  double ttft_seconds = 0;
  double e2e_seconds = 0;
  double tpot_seconds = -1;  // < 0: undefined (one output token, or rejected)
};

struct slo_targets {
  double ttft_seconds = 2.0;
  double tpot_seconds = 0.1;
};

class live_metrics {
 public:
  explicit live_metrics(slo_targets slo = {});
  live_metrics(const live_metrics&) = delete;
  live_metrics& operator=(const live_metrics&) = delete;

  metrics_registry& registry() { return m_registry; }
  const metrics_registry& registry() const { return m_registry; }

  // Compute and bandwidth ceilings of the GPU (measured profile, else datasheet) for `dtype`.
  // Sets the peak gauges and the ridge point = peak FLOP/s / peak bytes/s. Allocates (once per
  // dtype): not for the hot path.
  void set_ceilings(const std::string& dtype, double peak_flops_per_second,
                    double peak_dram_bytes_per_second);

  void observe_step(const step_sample& s);
  void observe_itl(double seconds);
  void observe_request(const request_sample& r);
  void set_queue(std::int64_t running, std::int64_t waiting);
  void set_kv(const kv_snapshot& k);
  // GPU telemetry of CUDA device `device` (children created on the first call per device).
  void set_gpu(int device, const gpu_sample& s);

 private:
  struct phase_children {
    prometheus::Histogram* step_seconds = nullptr;
    prometheus::Counter* flops = nullptr;
    prometheus::Counter* bytes = nullptr;
    prometheus::Gauge* achieved_flops = nullptr;
    prometheus::Gauge* achieved_bytes = nullptr;
    prometheus::Gauge* intensity = nullptr;
  };
  struct gpu_children {
    int device = -1;
    prometheus::Gauge* sm_clock = nullptr;
    prometheus::Gauge* sm_clock_max = nullptr;
    prometheus::Gauge* memory_clock = nullptr;
    prometheus::Gauge* power = nullptr;
    prometheus::Gauge* power_limit = nullptr;
    prometheus::Gauge* temperature = nullptr;
    prometheus::Gauge* throttled = nullptr;
    std::vector<std::pair<std::uint64_t, prometheus::Gauge*>> reasons;
  };

  metrics_registry m_registry;
  slo_targets m_slo;
  std::array<phase_children, k_step_phases> m_phase;
  prometheus::Gauge* m_batch = nullptr;
  prometheus::Gauge* m_running = nullptr;
  prometheus::Gauge* m_waiting = nullptr;
  prometheus::Counter* m_prompt_tokens = nullptr;
  prometheus::Counter* m_generation_tokens = nullptr;
  prometheus::Histogram* m_ttft = nullptr;
  prometheus::Histogram* m_tpot = nullptr;
  prometheus::Histogram* m_itl = nullptr;
  prometheus::Histogram* m_e2e = nullptr;
  prometheus::Counter* m_finished = nullptr;
  prometheus::Counter* m_rejected = nullptr;
  prometheus::Counter* m_slo_met = nullptr;
  prometheus::Gauge* m_blocks_used = nullptr;
  prometheus::Gauge* m_blocks_cached = nullptr;
  prometheus::Gauge* m_blocks_free = nullptr;
  prometheus::Gauge* m_usage = nullptr;
  prometheus::Counter* m_lookup_tokens = nullptr;
  prometheus::Counter* m_hit_tokens = nullptr;
  prometheus::Counter* m_evictions = nullptr;
  prometheus::Counter* m_preemptions = nullptr;
  kv_snapshot m_last_kv;
  std::vector<gpu_children> m_gpus;
};

}  // namespace ridgeline::metrics
