// Live engine metrics (see live_metrics.hpp). The HELP texts carry each formula, as DESIGN.md asks
// of every export; docs/metrics.md lists the same.
#include "ridgeline/telemetry/live_metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <cmath>
#include <stdexcept>

namespace ridgeline::metrics {

const char* name(step_phase p) {
  switch (p) {
    case step_phase::prefill:
      return "prefill";
    case step_phase::decode:
      return "decode";
    case step_phase::mixed:
      return "mixed";
  }
  return "unknown";
}

step_phase phase_of(std::int64_t prefill_tokens, std::int64_t decode_tokens) {
  if (decode_tokens == 0) return step_phase::prefill;
  if (prefill_tokens == 0) return step_phase::decode;
  return step_phase::mixed;
}

namespace {
// Counter deltas from cumulative counts; a count that went down started again from zero.
void advance(prometheus::Counter* c, std::int64_t now, std::int64_t before) {
  const std::int64_t d = now >= before ? now - before : now;
  if (d > 0) c->Increment(static_cast<double>(d));
}
}  // namespace

live_metrics::live_metrics(slo_targets slo) : m_slo(slo) {
  if (!(slo.ttft_seconds > 0) || !(slo.tpot_seconds > 0)) {
    throw std::invalid_argument("SLO targets must be positive seconds");
  }
  auto& r = m_registry;
  const auto& b = latency_buckets();
  for (int i = 0; i < k_step_phases; ++i) {
    const label_set l = {{"phase", name(static_cast<step_phase>(i))}};
    auto& p = m_phase[static_cast<std::size_t>(i)];
    p.step_seconds = &r.histogram(
        "ridgeline_step_duration_seconds",
        "Engine step duration by phase (prefill: prompt tokens only; decode: one token per "
        "sequence; mixed: both, chunked prefill)",
        b, l);
    p.flops = &r.counter("ridgeline_flops_total",
                         "FLOPs of engine steps by phase (counted from the step shapes: 2 * "
                         "parameters * tokens + attention)",
                         l);
    p.bytes = &r.counter("ridgeline_dram_bytes_total",
                         "DRAM bytes of engine steps by phase (weights + KV read + KV written)", l);
    p.achieved_flops = &r.gauge("ridgeline_achieved_flops_per_second",
                                "Achieved FLOP/s of the last step of a phase = step FLOPs / step "
                                "duration",
                                l);
    p.achieved_bytes = &r.gauge("ridgeline_achieved_dram_bytes_per_second",
                                "Achieved DRAM bytes/s of the last step of a phase = step bytes / "
                                "step duration",
                                l);
    p.intensity =
        &r.gauge("ridgeline_arithmetic_intensity_flops_per_byte",
                 "Arithmetic intensity of the last step of a phase = FLOPs / DRAM bytes", l);
  }
  m_batch = &r.gauge("ridgeline_batch_size", "Sequences in the last engine step");
  m_running = &r.gauge("ridgeline_requests_running", "Requests in the running batch");
  m_waiting = &r.gauge("ridgeline_requests_waiting", "Requests queued for admission");
  m_prompt_tokens = &r.counter("ridgeline_prompt_tokens_total",
                               "Prompt tokens computed by prefill (preemption recompute included, "
                               "prefix-cache hits excluded)");
  m_generation_tokens =
      &r.counter("ridgeline_generation_tokens_total", "Output tokens sampled by engine steps");
  m_ttft = &r.histogram("ridgeline_time_to_first_token_seconds",
                        "TTFT = first output token time - request arrival", b);
  m_tpot =
      &r.histogram("ridgeline_time_per_output_token_seconds",
                   "TPOT = (E2E - TTFT) / (output_tokens - 1), requests with > 1 output token", b);
  m_itl = &r.histogram("ridgeline_inter_token_latency_seconds",
                       "ITL = gap between consecutive output tokens of one request (every gap)", b);
  m_e2e = &r.histogram("ridgeline_e2e_request_latency_seconds",
                       "E2E = last output token time - request arrival", b);
  const char* outcome_help =
      "Requests that left the engine by outcome: finished, or rejected at admission with a reason";
  m_finished = &r.counter("ridgeline_requests_total", outcome_help, {{"outcome", "finished"}});
  m_rejected = &r.counter("ridgeline_requests_total", outcome_help, {{"outcome", "rejected"}});
  m_slo_met = &r.counter("ridgeline_requests_slo_met_total",
                         "Finished requests with TTFT <= SLO_ttft and TPOT <= SLO_tpot; goodput = "
                         "rate of this counter");
  r.gauge("ridgeline_slo_ttft_seconds", "TTFT service-level objective (SLO_ttft)")
      .Set(slo.ttft_seconds);
  r.gauge("ridgeline_slo_tpot_seconds", "TPOT service-level objective (SLO_tpot)")
      .Set(slo.tpot_seconds);
  const char* blocks_help =
      "KV cache blocks by state: used (referenced), cached (unreferenced prefix, evictable), free; "
      "used + cached + free = capacity";
  m_blocks_used = &r.gauge("ridgeline_kv_cache_blocks", blocks_help, {{"state", "used"}});
  m_blocks_cached = &r.gauge("ridgeline_kv_cache_blocks", blocks_help, {{"state", "cached"}});
  m_blocks_free = &r.gauge("ridgeline_kv_cache_blocks", blocks_help, {{"state", "free"}});
  m_usage = &r.gauge("ridgeline_kv_cache_usage_ratio",
                     "KV cache usage = used blocks / (used + cached + free blocks)");
  m_lookup_tokens = &r.counter("ridgeline_prefix_cache_queries_tokens_total",
                               "Prompt tokens looked up in the prefix cache (first admission)");
  m_hit_tokens = &r.counter("ridgeline_prefix_cache_hits_tokens_total",
                            "Prompt tokens served from the prefix cache (every tier); hit rate = "
                            "hits / queries");
  m_evictions = &r.counter("ridgeline_kv_cache_evictions_total",
                           "Cached KV blocks evicted (reused for other content), GPU tier");
  m_preemptions = &r.counter("ridgeline_preemptions_total",
                             "Running sequences preempted (KV freed, recomputed on resume)");
}

void live_metrics::set_ceilings(const std::string& dtype, double peak_flops_per_second,
                                double peak_dram_bytes_per_second) {
  if (!(peak_flops_per_second > 0) || !(peak_dram_bytes_per_second > 0)) {
    throw std::invalid_argument("ceilings must be positive");
  }
  auto& r = m_registry;
  r.gauge("ridgeline_peak_flops_per_second",
          "Compute ceiling per dtype (measured profile, else datasheet)", {{"dtype", dtype}})
      .Set(peak_flops_per_second);
  r.gauge("ridgeline_peak_dram_bytes_per_second",
          "DRAM bandwidth ceiling (measured profile, else datasheet)")
      .Set(peak_dram_bytes_per_second);
  r.gauge("ridgeline_ridge_point_flops_per_byte",
          "Ridge point = peak FLOP/s / peak DRAM bytes/s, per dtype", {{"dtype", dtype}})
      .Set(peak_flops_per_second / peak_dram_bytes_per_second);
}

void live_metrics::observe_step(const step_sample& s) {
  if (!(s.seconds > 0) || !std::isfinite(s.seconds)) return;  // a broken clock is not a sample
  auto& p = m_phase[static_cast<std::size_t>(s.phase)];
  p.step_seconds->Observe(s.seconds);
  if (s.flops > 0) {
    p.flops->Increment(s.flops);
    p.achieved_flops->Set(s.flops / s.seconds);
  }
  if (s.dram_bytes > 0) {
    p.bytes->Increment(s.dram_bytes);
    p.achieved_bytes->Set(s.dram_bytes / s.seconds);
    p.intensity->Set(s.flops / s.dram_bytes);
  }
  m_batch->Set(s.batch);
  if (s.prefill_tokens > 0) m_prompt_tokens->Increment(static_cast<double>(s.prefill_tokens));
  if (s.sampled_tokens > 0) m_generation_tokens->Increment(static_cast<double>(s.sampled_tokens));
}

void live_metrics::observe_itl(double seconds) {
  if (seconds >= 0 && std::isfinite(seconds)) m_itl->Observe(seconds);
}

void live_metrics::observe_request(const request_sample& r) {
  if (!r.finished) {
    m_rejected->Increment();
    return;
  }
  m_finished->Increment();
  m_ttft->Observe(r.ttft_seconds);
  m_e2e->Observe(r.e2e_seconds);
  const bool has_tpot = r.tpot_seconds >= 0;
  if (has_tpot) m_tpot->Observe(r.tpot_seconds);
  if (r.ttft_seconds <= m_slo.ttft_seconds && (!has_tpot || r.tpot_seconds <= m_slo.tpot_seconds)) {
    m_slo_met->Increment();
  }
}

void live_metrics::set_queue(std::int64_t running, std::int64_t waiting) {
  m_running->Set(static_cast<double>(running));
  m_waiting->Set(static_cast<double>(waiting));
}

void live_metrics::set_kv(const kv_snapshot& k) {
  m_blocks_used->Set(static_cast<double>(k.blocks_used));
  m_blocks_cached->Set(static_cast<double>(k.blocks_cached));
  m_blocks_free->Set(static_cast<double>(k.blocks_free));
  const std::int64_t total = k.blocks_used + k.blocks_cached + k.blocks_free;
  m_usage->Set(total > 0 ? static_cast<double>(k.blocks_used) / static_cast<double>(total) : 0.0);
  advance(m_lookup_tokens, k.lookup_tokens, m_last_kv.lookup_tokens);
  advance(m_hit_tokens, k.hit_tokens, m_last_kv.hit_tokens);
  advance(m_evictions, k.evictions, m_last_kv.evictions);
  advance(m_preemptions, k.preemptions, m_last_kv.preemptions);
  m_last_kv = k;
}

void live_metrics::set_gpu(int device, const gpu_sample& s) {
  gpu_children* g = nullptr;
  for (auto& c : m_gpus) {
    if (c.device == device) g = &c;
  }
  if (!g) {
    auto& r = m_registry;
    const label_set l = {{"gpu", std::to_string(device)}};
    gpu_children c;
    c.device = device;
    c.sm_clock = &r.gauge("ridgeline_gpu_sm_clock_hertz", "SM clock (NVML)", l);
    c.sm_clock_max = &r.gauge("ridgeline_gpu_sm_clock_max_hertz", "Peak SM clock (NVML)", l);
    c.memory_clock = &r.gauge("ridgeline_gpu_memory_clock_hertz", "Memory clock (NVML)", l);
    c.power = &r.gauge("ridgeline_gpu_power_watts", "Board power draw (NVML)", l);
    c.power_limit = &r.gauge("ridgeline_gpu_power_limit_watts", "Enforced power limit (NVML)", l);
    c.temperature = &r.gauge("ridgeline_gpu_temperature_celsius", "GPU die temperature (NVML)", l);
    c.throttled = &r.gauge("ridgeline_gpu_throttled",
                           "1 when a clocks-event reason that makes timings suspect is active "
                           "(power or thermal capping, hardware slowdown), else 0",
                           l);
    for (int bit = 0; bit < 9; ++bit) {
      const std::uint64_t mask = 1ULL << bit;
      const auto names = throttle_reason_names(mask);
      if (names.empty()) continue;
      c.reasons.emplace_back(
          mask, &r.gauge("ridgeline_gpu_throttle_reason",
                         "1 while this NVML clocks-event (throttle) reason is active, else 0",
                         {{"gpu", std::to_string(device)}, {"reason", names.front()}}));
    }
    m_gpus.push_back(std::move(c));
    g = &m_gpus.back();
  }
  g->sm_clock->Set(s.sm_clock_mhz * 1e6);
  g->sm_clock_max->Set(s.sm_clock_max_mhz * 1e6);
  g->memory_clock->Set(s.memory_clock_mhz * 1e6);
  g->power->Set(s.power_watts);
  g->power_limit->Set(s.power_limit_watts);
  g->temperature->Set(s.temperature_c);
  g->throttled->Set(is_throttling(s.throttle_reasons) ? 1.0 : 0.0);
  for (const auto& [mask, gauge] : g->reasons) gauge->Set((s.throttle_reasons & mask) ? 1.0 : 0.0);
}

}  // namespace ridgeline::metrics
