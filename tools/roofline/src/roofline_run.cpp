// GPU half of `ridgeline roofline` (see roofline.hpp). Order of work, so that nothing measured
// shares a pass with counter collection: the instruction peaks (the probe's routine,
// measure_instruction_peaks) of the dtypes whose kernels the sweep does not run; the intensity
// sweep one kernel at a time, each followed by the instruction peak it is compared with (its own
// buffers, freed after); then one engine; per step its CUDA-event time (bench::measure), then the
// CUPTI range profiler over the same step (user replay: the step runs once per pass), then for
// the per-kernel breakdown a kernel trace of eager steps and, separately, per-kernel counters
// (auto range, user replay).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include "ridgeline/perfmodel/bandwidth_floor.hpp"
#include "ridgeline/probe/probe.hpp"
#include "ridgeline/roofline/roofline.hpp"
#include "ridgeline/sweep/sweep.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/telemetry/counters.hpp"
#ifdef RIDGELINE_HAVE_CUPTI
#include "ridgeline/telemetry/cupti.hpp"
#endif
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/telemetry/nvtx.hpp"

namespace ridgeline::bench {

using nlohmann::json;

namespace {

// FLOP/s the roof allows at this intensity: min(peak, intensity x bandwidth).
double roof_at(double intensity, double peak, double bw) {
  return std::min(peak, intensity * bw);
}

#ifdef RIDGELINE_HAVE_CUPTI
json counters_json(const metrics::counter_values& v) {
  return {{"dram_read_bytes", v.dram_read_bytes},
          {"dram_write_bytes", v.dram_write_bytes},
          {"dram_bytes", v.dram_bytes()},
          {"flops", v.flops()},
          {"tensor_flops", v.tensor_flops()},
          {"fp32_flops", v.fp32_flops},
          {"half_flops", v.half_flops},
          {"tensor_bf16_flops", v.tensor_bf16_flops},
          {"intensity_flops_per_byte", v.intensity()},
          {"passes", v.passes}};
}
#endif

// The instruction peaks this run measured, each kind once (the probe's routine).
class same_run_peaks {
 public:
  explicit same_run_peaks(const roofline_options& o) : m_opt(o) {}
  // sustain_seconds >= 0: that long of warm-up launches instead of the probe's default.
  void measure(std::vector<instruction_peak_kind> kinds, double sustain_seconds = -1) {
    std::erase_if(kinds, [&](instruction_peak_kind k) { return !m_tried.insert(k).second; });
    if (kinds.empty()) return;
    instruction_peak_options io;
    io.kinds = kinds;
    if (sustain_seconds >= 0) io.sustain_seconds = sustain_seconds;
    io.device = m_opt.device;
    io.full = m_opt.full;
    io.progress = m_opt.progress;
    instruction_peak_section s = measure_instruction_peaks(io);
    if (m_section.environment.empty()) {
      m_section.environment = s.environment;
      m_section.config = s.config;
      m_section.config["when"] =
          "right after the intensity sweep's points of each kernel, after the sweep's "
          "sustain_seconds of launches as its points (the other kinds before the sweep)";
    }
    m_section.peaks.insert(s.peaks.begin(), s.peaks.end());
    m_section.skipped.insert(m_section.skipped.end(), s.skipped.begin(), s.skipped.end());
  }
  const instruction_peak_section& section() const { return m_section; }

 private:
  const roofline_options& m_opt;
  std::set<instruction_peak_kind> m_tried;
  instruction_peak_section m_section;
};

json sweep_block(const roofline_options& o, const gpu_profile& p, same_run_peaks& peaks) {
  const double bw = p.dram_bytes_per_second();
  intensity_sweep_result r;
  for (intensity_kernel k : o.sweep.kernels) {
    intensity_sweep_options one = o.sweep;
    one.kernels = {k};
    intensity_sweep_result part = run_intensity_sweep(one);
    // Right after the kernel's points, timed as they are: after o.sweep.sustain_seconds of
    // launches.
    if (const auto kind = instruction_peak_of(k)) peaks.measure({*kind}, o.sweep.sustain_seconds);
    r.device_name = part.device_name;
    r.sm_count = part.sm_count;
    r.buffer_bytes = part.buffer_bytes;
    r.points.insert(r.points.end(), part.points.begin(), part.points.end());
    r.skipped.insert(r.skipped.end(), part.skipped.begin(), part.skipped.end());
  }
  const instruction_peak_section& same_run = peaks.section();
  json doc = to_json(r);
  for (std::size_t i = 0; i < r.points.size(); ++i) {
    const auto& pt = r.points[i];
    const double ceiling = select_compute_ceiling(pt.kernel, p, &same_run).flops_per_second;
    if (ceiling > 0) {
      doc["points"][i]["pct_of_roof"] =
          100.0 * pt.flop_per_second() / roof_at(pt.flop_per_byte, ceiling, bw);
    }
  }
  auto or_null = [](double v) { return v > 0 ? json(v) : json(nullptr); };
  json against = json::array();
  for (intensity_kernel k : o.sweep.kernels) {
    const intensity_plateau pl = plateau(r.points, k);
    if (pl.compute_flop_per_second <= 0) continue;
    const compute_ceiling c = select_compute_ceiling(k, p, &same_run);
    const auto kind = instruction_peak_of(k);
    const auto gemm = kind ? gemm_dtype(*kind) : std::nullopt;
    auto ratio = [&](double v) {
      return v > 0 ? json(pl.compute_flop_per_second / v) : json(nullptr);
    };
    const double checked = c.flops_per_second > 0 ? pl.compute_flop_per_second / c.flops_per_second
                                                  : 0.0;
    against.push_back(
        {{"kernel", std::string(name(k))},
         {"memory_bytes_per_second", pl.memory_bytes_per_second},
         {"probe_read_bytes_per_second", bw},
         {"memory_ratio", bw > 0 ? pl.memory_bytes_per_second / bw : 0.0},
         {"compute_flops_per_second", pl.compute_flop_per_second},
         {"compute_flops_per_second_median_top3", pl.compute_flop_per_second_median},
         {"instruction_peak", kind ? json(std::string(name(*kind))) : json(nullptr)},
         {"compute_ceiling_flops_per_second", or_null(c.flops_per_second)},
         {"compute_ceiling_source", c.source},
         {"compute_ratio", ratio(c.flops_per_second)},
         {"compute_within_5_percent",
          c.flops_per_second > 0 ? json(std::fabs(checked - 1) <= 0.05) : json(nullptr)},
         {"instruction_peak_flops_per_second", or_null(c.same_run_flops_per_second)},
         {"instruction_peak_profile_flops_per_second", or_null(c.profile_flops_per_second)},
         {"profile_instruction_ratio", ratio(c.profile_flops_per_second)},
         {"same_run_instruction_ratio", ratio(c.same_run_flops_per_second)},
         {"probe_dtype", gemm ? json(std::string(name(*gemm))) : json(nullptr)},
         {"probe_peak_flops_per_second", or_null(c.gemm_flops_per_second)},
         {"gemm_ratio", ratio(c.gemm_flops_per_second)},
         {"measured_ridge_flops_per_byte", pl.ridge_flop_per_byte}});
  }
  doc["against_probe"] = against;
  doc["plateau_definition"] =
      "memory: median bytes/s of the lowest-intensity points within 5% of the kernel's best "
      "bytes/s; compute: the best FLOP/s (median of the three best beside it)";
  doc["ceiling_definition"] =
      "compute_ceiling: the instruction peak of the kernel's instruction measured in this run "
      "by the probe's routine right after the kernel's points, after the same sustain_seconds "
      "of launches as each point (compute_ratio = plateau / it; target within 5%), else the "
      "profile's; beside it the profile's instruction peak (profile_instruction_ratio), the "
      "profile's instruction peak and the probe's cuBLASLt GEMM peak (probe_peak, gemm_ratio)";
  return doc;
}

#ifdef RIDGELINE_HAVE_CUPTI
// Kernels of one traced step grouped by (phase, kernel): calls and time per step, and the
// per-kernel counters summed over the group. A kernel below the ridge is placed against its
// bandwidth floor: its measured DRAM reads and writes each at the profile's matching ceiling
// (perfmodel/bandwidth_floor.hpp), the one that carries most of them named in memory_ceiling.
json kernel_breakdown(const std::vector<metrics::kernel_record>& trace, int steps,
                      const std::vector<metrics::kernel_counters>* counters, double peak,
                      double bw, const gpu_profile& p) {
  struct group {
    std::string phase, kernel;
    int calls = 0;
    std::vector<double> step_ns;  // summed per step
    double dram = 0, dram_read = 0, dram_write = 0, flops = 0;
    bool measured = true;
  };
  std::map<std::pair<std::string, std::string>, group> groups;
  std::vector<std::pair<std::string, std::string>> order;
  const std::size_t per_step = steps > 0 ? trace.size() / static_cast<std::size_t>(steps) : 0;
  const bool counters_match = counters && counters->size() == per_step;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    const auto& k = trace[i];
    const std::size_t step = per_step ? i / per_step : 0, at = per_step ? i % per_step : i;
    const auto key = std::make_pair(k.phase, k.name);
    auto [it, fresh] = groups.try_emplace(key);
    group& g = it->second;
    if (fresh) {
      g.phase = k.phase;
      g.kernel = k.name;
      g.step_ns.assign(static_cast<std::size_t>(std::max(steps, 1)), 0.0);
      order.push_back(key);
    }
    if (step == 0) ++g.calls;
    if (step < g.step_ns.size()) g.step_ns[step] += static_cast<double>(k.duration_ns());
    if (step == 0) {
      if (counters_match) {
        const auto& v = (*counters)[at].values;
        g.dram += v.dram_bytes();
        g.dram_read += v.dram_read_bytes;
        g.dram_write += v.dram_write_bytes;
        g.flops += v.flops();
      } else {
        g.measured = false;
      }
    }
  }
  json rows = json::array();
  for (const auto& key : order) {
    group& g = groups[key];
    const double s = bench::median(g.step_ns) * 1e-9;
    json r = {{"phase", g.phase},
              {"kernel", short_kernel_name(g.kernel)},
              {"kernel_full", g.kernel},
              {"calls", g.calls},
              {"seconds", s}};
    if (g.measured && g.dram > 0 && s > 0) {
      const double i = g.flops / g.dram;
      r["dram_bytes"] = g.dram;
      r["flops"] = g.flops;
      r["intensity_flops_per_byte"] = i;
      r["flops_per_second"] = g.flops / s;
      r["bytes_per_second"] = g.dram / s;
      const double roof = roof_at(i, peak, bw);
      // Kernels doing (nearly) no arithmetic sit on the bandwidth roof: % of their bandwidth
      // floor, each byte at the ceiling that matches it (a write-heavy kernel is not held to the
      // read ceiling).
      if (i * bw < peak) {
        const bandwidth_floor f = bandwidth_floor_of(p, g.dram_read, g.dram_write);
        r["pct_of_roof"] = f.seconds > 0 ? 100.0 * f.seconds / s : 100.0 * (g.dram / s) / bw;
        r["memory_ceiling"] = f.seconds > 0 ? std::string(name(f.dominant)) : std::string("read");
      } else {
        r["pct_of_roof"] = 100.0 * (g.flops / s) / roof;
      }
    }
    rows.push_back(r);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const json& a, const json& b) {
    return a["seconds"].get<double>() > b["seconds"].get<double>();
  });
  return rows;
}
#endif

}  // namespace

json run_roofline(const roofline_options& o) {
  validate_roofline_options(o);
  if (metrics::device_count() == 0) {
    throw no_device_error("ridgeline roofline needs a CUDA GPU: " + metrics::no_device_reason());
  }
  if (!o.profile) {
    throw std::invalid_argument(
        "ridgeline roofline needs the probe's ceilings: --gpu PROFILE.json (from `ridgeline probe "
        "-o`) or an embedded profile key");
  }
#ifndef RIDGELINE_HAVE_CUPTI
  if (o.counters) {
    throw std::invalid_argument(
        "this build has no CUPTI (-DRIDGELINE_CUPTI=OFF): run with "
        "--no-counters for counted intensities only");
  }
#endif
  const gpu_profile& p = *o.profile;
  const double bw = p.dram_bytes_per_second();
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };

  json doc = {{"schema", k_roofline_schema}, {"environment", metrics::environment_block(o.device)}};

#ifdef RIDGELINE_HAVE_CUPTI
  if (o.counters) {
    // Before minutes of sweeping: can this process read the counters at all (permission, another
    // profiler)? counters_unavailable says why in one line.
    void* bytes = nullptr;
    if (cudaSetDevice(o.device) != cudaSuccess || cudaMalloc(&bytes, 1 << 20) != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error("roofline: cannot allocate 1 MiB on device " +
                               std::to_string(o.device));
    }
    try {
      metrics::profile_range([&] { cudaMemsetAsync(bytes, 1, 1 << 20); }, {o.device, {}});
    } catch (...) {
      cudaFree(bytes);
      throw;
    }
    cudaFree(bytes);
  }
#endif
  // The compute ceilings: instruction peaks measured in this run, with the probe's routine. Those
  // of the swept kernels right after each kernel's points, the others (the roofs of fp32, bf16
  // and fp8) first.
  same_run_peaks peaks(o);
  {
    std::vector<instruction_peak_kind> first;
    for (auto kind : k_all_instruction_peak_kinds) {
      bool swept = false;
      for (auto k : o.sweep.kernels) swept = swept || instruction_peak_of(k) == kind;
      if (gemm_dtype(kind) && !(o.intensity_sweep && swept)) first.push_back(kind);
    }
    if (!first.empty()) {
      say("instruction peaks");
      const metrics::nvtx_range range("roofline instruction peaks");
      peaks.measure(first);
    }
  }
  if (o.intensity_sweep) {
    say("intensity sweep");
    const metrics::nvtx_range range("roofline intensity sweep");
    doc["intensity_sweep"] = sweep_block(o, p, peaks);
  }
  const instruction_peak_section& same_run = peaks.section();
  doc["instruction_peaks"] = to_json(same_run);
  doc["ceilings"] = roofline_ceilings(
      p, p.source == "measured" ? "probe profile of " + p.name : "datasheet of " + p.name,
      &same_run);
  const double peak = select_compute_ceiling(dtype::bf16, p, &same_run).flops_per_second;

  const model_preset& m = model_preset_by_name(o.model);
  const decoder_config dc = make_decoder_config(m);
  engine_options eo;
  eo.device = o.device;
  // Any of the lists may be empty (that part is skipped).
  auto most = [](const std::vector<int>& v) { return v.empty() ? 1 : *std::max_element(v.begin(), v.end()); };
  eo.max_seqs = std::max({most(o.decode_batches), most(o.prefill_batches), most(o.kernel_batches)});
  eo.max_tokens = std::max(eo.max_seqs, o.prefill_batches.empty()
                                            ? 1
                                            : most(o.prefill_batches) * o.prefill_context);
  // A KV pool of what the points need (capped by what fits): smaller than the engine's default of
  // 90% of free memory, and less for the counters' passes to walk over.
  std::int64_t need = 0;
  for (int b : o.decode_batches)
    need = std::max(need, b * synthetic_step_blocks(o.context, false, eo.block_tokens));
  for (int b : o.kernel_batches)
    need = std::max(need, b * synthetic_step_blocks(o.context, false, eo.block_tokens));
  for (int b : o.prefill_batches) {
    need = std::max(need, b * synthetic_step_blocks(o.prefill_context, true, eo.block_tokens));
  }
  if (const auto dev = metrics::query_device(o.device)) {
    const engine_memory_plan fit = plan_engine_memory(m, eo, dev->memory_free_bytes);
    eo.num_kv_blocks = static_cast<int>(std::min<std::int64_t>(need, fit.kv_blocks));
  }
  say("loading " + m.name + " (random weights)");
  cuda_engine engine(dc, eo);
  engine.fill_kv_random(7);
  const int block_tokens = eo.block_tokens;

  measure_options mo;
  mo.device = o.device;
  mo.warmup = 3;
  mo.stop = o.full ? stopping_rule{20, 200, 0.005, 3.0} : stopping_rule{10, 50, 0.01, 1.0};
  std::mt19937 rng(11);

  auto fits = [&](int batch, int context, bool prefill) {
    return synthetic_step_skip_reason(m, block_tokens, engine.num_kv_blocks(), batch, context,
                                      prefill);
  };

  json engine_rows = json::array();
  auto engine_point = [&](bool prefill, int batch, int context) {
    json r = {{"phase", prefill ? "prefill" : "decode"}, {"batch", batch}, {"context", context}};
    if (const std::string why = fits(batch, context, prefill); !why.empty()) {
      r["skipped"] = why;
      engine_rows.push_back(r);
      return;
    }
    say(std::string(prefill ? "prefill" : "decode") + " batch " + std::to_string(batch));
    synthetic_step step;
    make_synthetic_step(step, m, block_tokens, batch, context, prefill, rng);
    const step_work w = count_step_work(m, batch, context, prefill);
    const metrics::nvtx_range range(std::string("roofline ") + (prefill ? "prefill" : "decode") +
                                    " batch " + std::to_string(batch));
    const measurement meas = measure([&] { return engine.timed_step(step.seqs); }, mo);
    const double t = meas.stats.median;
    r["seconds"] = t;
    r["step_seconds"] = to_json(meas.stats);
    r["throttled"] = meas.throttled;
    r["counted"] = {{"bytes", w.bytes()},
                    {"weight_bytes", w.weight_bytes},
                    {"kv_read_bytes", w.kv_read_bytes},
                    {"kv_write_bytes", w.kv_write_bytes},
                    {"flops", w.flops},
                    {"intensity_flops_per_byte", w.flops / w.bytes()}};
    double intensity = w.flops / w.bytes(), flops = w.flops, bytes = w.bytes();
#ifdef RIDGELINE_HAVE_CUPTI
    if (o.counters) {
      // A separate pass: the same step, once per counter pass; nothing here is timed. Launched
      // eagerly: the same kernels on the same data, but the SASS instruction counters (FFMA and
      // friends) read zero for kernels replayed from a CUDA graph (measured on an H100).
      engine.set_cuda_graphs(false);
      const metrics::counter_values v =
          metrics::profile_range([&] { engine.timed_step(step.seqs); }, {o.device, {}});
      engine.set_cuda_graphs(true);
      r["measured"] = counters_json(v);
      r["intensity_ratio"] = v.intensity() / (w.flops / w.bytes());
      intensity = v.intensity();
      flops = v.flops();
      bytes = v.dram_bytes();
    } else {
      r["measured"] = nullptr;
    }
#else
    r["measured"] = nullptr;
#endif
    r["flops_per_second"] = flops / t;
    r["bytes_per_second"] = bytes / t;
    r["intensity_flops_per_byte"] = intensity;
    r["roof_flops_per_second"] = roof_at(intensity, peak, bw);
    // Below the ridge the roof is the bandwidth: % of it by bytes (also when no FLOP was counted).
    r["pct_of_roof"] = intensity * bw < peak ? 100.0 * (bytes / t) / bw
                                             : 100.0 * (flops / t) / roof_at(intensity, peak, bw);
    r["bound"] = intensity * bw < peak ? "memory" : "compute";
    engine_rows.push_back(r);
  };
  for (int b : o.decode_batches) engine_point(false, b, o.context);
  for (int b : o.prefill_batches) engine_point(true, b, o.prefill_context);
  doc["engine"] = engine_rows;

  json kernels = json::array();
#ifdef RIDGELINE_HAVE_CUPTI
  // Eager (kernel-replay-free per-kernel counters need it) and without PDL (a PDL kernel's traced
  // span includes its wait for the kernel before): each kernel timed alone.
  engine.set_cuda_graphs(false);
  engine.set_pdl(false);
  for (int batch : o.kernel_batches) {
    json k = {{"batch", batch}, {"context", o.context}};
    if (const std::string why = fits(batch, o.context, false); !why.empty()) {
      k["skipped"] = why;
      kernels.push_back(k);
      continue;
    }
    say("decode batch " + std::to_string(batch) + ": kernel trace and per-kernel counters");
    synthetic_step step;
    make_synthetic_step(step, m, block_tokens, batch, o.context, false, rng);
    for (int i = 0; i < 3; ++i) engine.timed_step(step.seqs);  // warm-up, plans
    constexpr int traced = 5;
    metrics::activity_tracer tracer;
    tracer.start();
    for (int i = 0; i < traced; ++i) engine.timed_step(step.seqs);
    const std::vector<metrics::kernel_record> trace = tracer.stop();
    std::optional<std::vector<metrics::kernel_counters>> per_kernel;
    if (o.counters) {
      // User replay: the eager step runs once per pass (it is replayable), so CUPTI need not save
      // and restore the weights and the KV pool around every kernel.
      metrics::counter_options co;
      co.device = o.device;
      co.kernel_replay = false;
      per_kernel = metrics::profile_kernels([&] { engine.timed_step(step.seqs); }, co);
    }
    k["traced_steps"] = traced;
    k["launch"] = "eager, without programmatic dependent launch: each kernel timed alone";
    k["kernels_per_step"] = trace.size() / traced;
    k["dropped_records"] = tracer.dropped_records();
    if (per_kernel && per_kernel->size() != trace.size() / traced) {
      k["counters_note"] = "per-kernel counters saw " + std::to_string(per_kernel->size()) +
                           " kernels, the trace " + std::to_string(trace.size() / traced) +
                           " per step: not matched";
    }
    k["kernels"] =
        kernel_breakdown(trace, traced, per_kernel ? &*per_kernel : nullptr, peak, bw, p);
    kernels.push_back(k);
  }
  engine.set_cuda_graphs(true);
  engine.set_pdl(eo.pdl);
#endif
  doc["decode_kernels"] = kernels;

  std::set<int> contexts;
  for (int c : {1, 128, 512, 2048, 8192, o.context}) {
    if (c <= m.max_context) contexts.insert(c);
  }
  doc["crossing"] =
      roofline_crossings(m, p, std::vector<int>(contexts.begin(), contexts.end()), &same_run);
  doc["config"] = {
      {"model", m.name},
      {"dtype", "bf16"},
      {"weights", "seeded random"},
      {"context", o.context},
      {"decode_batches", o.decode_batches},
      {"prefill_batches", o.prefill_batches},
      {"prefill_context", o.prefill_context},
      {"kernel_batches", o.kernel_batches},
      {"intensity_sweep", o.intensity_sweep},
      {"counters", o.counters},
      {"timing",
       "CUDA events around the forward pass (CUDA graphs for decode), median "
       "after 3 warm-ups; counters in separate passes"},
      {"roof",
       "min(bf16 compute ceiling (its instruction peak), intensity x DRAM read bytes/s) of the "
       "ceilings"}};
  return doc;
}

}  // namespace ridgeline::bench
