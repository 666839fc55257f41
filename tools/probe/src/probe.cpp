// GPU half of `ridgeline probe` (see probe.hpp). Every number is an event-timed median over
// repetitions after warm-up (bench::measure), with NVML clocks and throttle reasons sampled around
// it. Cold numbers: the DRAM peaks use a buffer far larger than L2 with evict-first accesses; the
// linear layers flush L2 before every repetition; the 8192^3 GEMM peaks are compute-bound and hot.
// cuBLASLt algorithms are chosen by cuda::gemm_chooser: the GEMM peaks under the peak policy (hot),
// the linear layers under the engine's policy through the chooser the engine shares, so a linear
// row times the algorithm the engine runs for that shape. The instruction peaks
// (instruction_peaks.cpp) follow the GEMM peaks.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "cuda/gemm_chooser.hpp"
#include "cuda/gemm_lt.hpp"
#include "cuda/memory.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/telemetry/measure.hpp"
#include "ridgeline/probe/probe.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/telemetry/nvtx.hpp"

namespace ridgeline::bench {
namespace {

using nlohmann::json;

struct linear_layer {
  const char* name;
  std::size_t out_features;  // m
  std::size_t in_features;   // k
};
// One Llama-2-7B block (hidden 4096, intermediate 11008): fused QKV, output projection, fused
// gate+up, down projection.
constexpr linear_layer k_llama2_7b_layers[] = {
    {"qkv", 3 * 4096, 4096}, {"o", 4096, 4096}, {"gate_up", 2 * 11008, 4096}, {"down", 4096, 11008}};

class prober {
 public:
  explicit prober(const probe_options& o, const metrics::device_info& d)
      : m_opt(o), m_dev(d), m_flush(static_cast<std::size_t>(d.l2_bytes)) {
    m_mopt.device = o.device;
    m_mopt.warmup = 3;
    m_mopt.stop = o.full ? stopping_rule{20, 500, 0.005, 3.0} : stopping_rule{10, 100, 0.01, 1.0};
  }

  void say(const std::string& s) const {
    if (m_opt.progress) m_opt.progress(s);
  }

  measurement time_gpu(const std::function<void(cudaStream_t)>& work, bool flush_l2) {
    return measure(
        [&] {
          if (flush_l2) m_flush.flush(m_stream.get());
          m_timer.start(m_stream.get());
          work(m_stream.get());
          m_timer.stop(m_stream.get());
          return m_timer.seconds();
        },
        m_mopt);
  }

  void bandwidth(gpu_profile& p) {
    const std::size_t bytes = m_opt.max_bytes;
    cuda::device_buffer src(bytes), dst(bytes), sink(sizeof(std::uint32_t));
    cuda::fill_uniform(src.data(), dtype::fp32, bytes / 4, 1, 1.0f, m_stream.get());
    cuda::fill_uniform(dst.data(), dtype::fp32, bytes / 4, 2, 1.0f, m_stream.get());
    m_stream.synchronize();
    using cuda::cache_hint;
    struct op_def {
      const char* op;
      double factor;  // bytes moved per buffer byte
      std::function<void(const cuda::bandwidth_launch&, cudaStream_t)> run;
    };
    std::uint32_t seed = 7;
    const op_def ops[] = {
        {"read", 1.0,
         [&](const cuda::bandwidth_launch& l, cudaStream_t s) {
           cuda::launch_read(src.data(), sink.data<std::uint32_t>(), l, s);
         }},
        {"write", 1.0,
         [&](const cuda::bandwidth_launch& l, cudaStream_t s) {
           cuda::launch_write(dst.data(), seed++, l, s);
         }},
        {"copy", 2.0,
         [&](const cuda::bandwidth_launch& l, cudaStream_t s) {
           cuda::launch_copy(dst.data(), src.data(), l, s);
         }},
    };
    // Cold DRAM plateaus over the whole buffer. Like the GEMM algorithms, the launch configuration
    // (cache hint, accesses in flight, blocks per SM) is a candidate set: each is timed briefly and
    // the fastest is measured in full; every candidate's median is kept in the rows.
    measure_options quick = m_mopt;
    quick.warmup = 1;
    quick.stop = stopping_rule{5, 5, 0.0, 10.0};
    for (const auto& op : ops) {
      const metrics::nvtx_range range(std::string("probe bandwidth ") + op.op);
      const double moved = op.factor * double(bytes);
      auto timed = [&](const cuda::bandwidth_launch& l) {
        return [&, l] {
          m_timer.start(m_stream.get());
          op.run(l, m_stream.get());
          m_timer.stop(m_stream.get());
          return m_timer.seconds();
        };
      };
      cuda::bandwidth_launch best{bytes, 1, cache_hint::streaming, 0, 4, false};
      double best_s = INFINITY;
      for (auto hint : {cache_hint::streaming, cache_hint::normal}) {
        for (int unroll : {4, 8}) {
          for (int per_sm : {4, 8, 16}) {
            for (bool chunked : {false, true}) {
            const cuda::bandwidth_launch l{bytes, 1, hint, per_sm * m_dev.sm_count, unroll, chunked};
            const auto m = measure(timed(l), quick);
            p.rows.push_back({{"kind", "bandwidth_candidate"},
                              {"op", op.op},
                              {"cache_hint", hint == cache_hint::streaming ? "streaming" : "normal"},
                              {"unroll", unroll},
                              {"blocks_per_sm", per_sm},
                              {"chunked", chunked},
                              {"bytes_per_second", moved / m.stats.median}});
            if (m.stats.median < best_s) best_s = m.stats.median, best = l;
            }
          }
        }
      }
      if (std::string(op.op) == "copy") {
        // The bulk copy engine path (Hopper and later): chunk size x blocks per SM.
        for (int chunk_kib : {16, 32, 48}) {
          for (int per_sm : {1, 2}) {
            for (bool contiguous : {false, true}) {
              if (m_dev.compute_major < 9) break;
              cuda::bandwidth_launch l{bytes, 1, cache_hint::normal, per_sm * m_dev.sm_count, 4, false};
              l.bulk = true;
              l.bulk_chunk_bytes = chunk_kib << 10;
              l.bulk_contiguous = contiguous;
              const auto m = measure(timed(l), quick);
              p.rows.push_back({{"kind", "bandwidth_candidate"},
                                {"op", op.op},
                                {"bulk_chunk_bytes", l.bulk_chunk_bytes},
                                {"bulk_contiguous", contiguous},
                                {"blocks_per_sm", per_sm},
                                {"bytes_per_second", moved / m.stats.median}});
              if (m.stats.median < best_s) best_s = m.stats.median, best = l;
            }
          }
        }
      }
      const measurement m = time_gpu([&](cudaStream_t s) { op.run(best, s); }, false);
      const double bps = moved / m.stats.median;
      say(std::string("bandwidth ") + op.op + " " + format_gib(double(bytes)) + ": " +
          format("%.3f TB/s", bps / 1e12));
      p.rows.push_back({{"kind", "bandwidth"},
                        {"op", op.op},
                        {"buffer_bytes", bytes},
                        {"bytes_moved", moved},
                        {"bytes_per_second", bps},
                        {"cache_hint", best.hint == cache_hint::streaming ? "streaming" : "normal"},
                        {"unroll", best.unroll},
                        {"blocks_per_sm", best.grid / m_dev.sm_count},
                        {"chunked", best.chunked},
                        {"bulk_chunk_bytes", best.bulk ? best.bulk_chunk_bytes : 0},
                        {"bulk_contiguous", best.bulk && best.bulk_contiguous},
                        {"measurement", to_json(m)}});
      if (std::string(op.op) == "read") p.read_bytes_per_second = bps;
      if (std::string(op.op) == "write") p.write_bytes_per_second = bps;
      if (std::string(op.op) == "copy") p.copy_bytes_per_second = bps;
    }
    {
      // cudaMemcpyAsync device-to-device: on Hopper the driver moves it with the copy engines, not
      // SM kernels, and it is what frameworks' tensor copies use. The copy ceiling is the faster of
      // it and our best SM kernel; config.copy_method says which.
      const measurement m = time_gpu(
          [&](cudaStream_t s) {
            RIDGELINE_CUDA_CHECK(
                cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, s));
          },
          false);
      p.rows.push_back({{"kind", "bandwidth_reference"},
                        {"op", "cudaMemcpyAsync"},
                        {"buffer_bytes", bytes},
                        {"bytes_moved", 2.0 * double(bytes)},
                        {"bytes_per_second", 2.0 * double(bytes) / m.stats.median},
                        {"measurement", to_json(m)}});
      const double memcpy_bps = 2.0 * double(bytes) / m.stats.median;
      p.config["copy_kernel_bytes_per_second"] = p.copy_bytes_per_second;
      p.config["copy_memcpy_bytes_per_second"] = memcpy_bps;
      p.config["copy_method"] = memcpy_bps > p.copy_bytes_per_second ? "cudaMemcpyAsync" : "sm_kernel";
      p.copy_bytes_per_second = std::max(p.copy_bytes_per_second, memcpy_bps);
    }
    // Working-set sweep, hot: each launch moves the buffer enough times for >= 1 GiB of traffic.
    const metrics::nvtx_range range("probe working set");
    for (std::uint64_t size = 256 << 10; size <= bytes; size *= 2) {
      const std::uint64_t passes = std::max<std::uint64_t>(1, (1ULL << 30) / size);
      for (const auto& op : ops) {
        cuda::bandwidth_launch l{size, passes, cache_hint::l2, 0, 4, false};
        const measurement m = time_gpu([&](cudaStream_t s) { op.run(l, s); }, false);
        const double moved = op.factor * double(size) * double(passes);
        p.rows.push_back({{"kind", "working_set"},
                          {"op", op.op},
                          {"buffer_bytes", size},
                          {"passes", passes},
                          {"bytes_moved", moved},
                          {"bytes_per_second", moved / m.stats.median},
                          {"cache_hint", "l2"},
                          {"measurement", to_json(m)}});
      }
      say("working set " + std::to_string(size >> 10) + " KiB done");
    }
  }

  struct gemm_result {
    measurement m;
    const cuda::gemm_choice* choice = nullptr;
  };

  // The chooser picks g's algorithm (cached per shape); the winner is then measured in full, cold
  // (L2 flushed before each repetition) when the chooser's policy is.
  gemm_result time_gemm(const cuda::lt_gemm& g, const void* a, const void* b, void* d,
                        cuda::gemm_chooser& chooser) {
    gemm_result r;
    r.choice = &chooser.choose(g, a, b, d, m_workspace.data(), m_stream.get());
    const int algorithm = r.choice->index;
    r.m = time_gpu([&](cudaStream_t s) { g.run(algorithm, a, b, d, m_workspace.data(), s); },
                   chooser.policy().cold);
    return r;
  }

  // The chosen algorithm and the policy that chose it. The strings sit in an object so that
  // regress's row names (top-level strings, integers and booleans) stay what they were.
  static json choice_fields(const gemm_result& r, const cuda::gemm_chooser& chooser) {
    return {{"algorithm_index", r.choice->index},
            {"algorithm_candidates", r.choice->candidates},
            {"gemm_choice",
             {{"algorithm", cuda::describe(r.choice->algo)},
              {"policy", ridgeline::describe(chooser.policy())}}}};
  }

  void gemm_peaks(gpu_profile& p) {
    const std::size_t n = m_opt.gemm_size;
    const auto chooser = cuda::shared_gemm_chooser(k_peak_gemm_policy);
    p.config["gemm_peak_choice"] = ridgeline::describe(chooser->policy());
    for (dtype t : m_opt.dtypes) {
      const metrics::nvtx_range range("probe gemm " + std::string(name(t)));
      cuda::lt_gemm g(m_handle.get(), t, n, n, n, m_workspace.bytes(), chooser->candidates());
      cuda::device_buffer a(g.a_bytes()), b(g.b_bytes()), d(g.d_bytes());
      cuda::fill_uniform(a.data(), t, n * n, 11, 1.0f, m_stream.get());
      cuda::fill_uniform(b.data(), t, n * n, 12, 1.0f, m_stream.get());
      const gemm_result r = time_gemm(g, a.data(), b.data(), d.data(), *chooser);
      const double rate = g.flops() / r.m.stats.median;
      p.peaks[t].flops_per_second = rate;
      say("gemm " + std::string(name(t)) + " " + std::to_string(n) + "^3: " +
          format("%.2f ", rate / 1e12) + std::string(rate_unit(t)));
      json row = {{"kind", "gemm"},
                  {"dtype", name(t)},
                  {"m", n},
                  {"n", n},
                  {"k", n},
                  {"flops", g.flops()},
                  {"flops_per_second", rate},
                  {"cold_l2", chooser->policy().cold},
                  {"measurement", to_json(r.m)}};
      row.update(choice_fields(r, *chooser));
      p.rows.push_back(std::move(row));
    }
  }

  void linear_layers(gpu_profile& p) {
    const metrics::nvtx_range range("probe linear layers");
    const dtype t = dtype::bf16;
    std::vector<std::size_t> tokens;
    for (std::size_t n = 1; n <= 4096; n *= 2) {
      if (m_opt.full || n <= 8 || n == 32 || n == 128 || n == 256 || n == 512 || n == 1024 ||
          n == 4096) {
        tokens.push_back(n);
      }
    }
    std::size_t max_w = 0, max_x = 0, max_y = 0;
    for (const auto& L : k_llama2_7b_layers) {
      max_w = std::max(max_w, L.out_features * L.in_features);
      max_x = std::max(max_x, std::size_t{4096} * L.in_features);
      max_y = std::max(max_y, std::size_t{4096} * L.out_features);
    }
    cuda::device_buffer w(max_w * 2), x(max_x * 2), y(max_y * 2);
    cuda::fill_uniform(w.data(), t, max_w, 21, 0.05f, m_stream.get());
    cuda::fill_uniform(x.data(), t, max_x, 22, 1.0f, m_stream.get());
    const double bw = p.read_bytes_per_second > 0 ? p.read_bytes_per_second : 1;
    const double peak = p.peaks.count(t) ? p.peaks[t].flops_per_second : 0;
    std::optional<double> crossover;
    // The engine's chooser (same policy, same cache): each row times what the engine would run.
    const auto chooser = cuda::shared_gemm_chooser(k_engine_gemm_policy);
    p.config["linear_choice"] = ridgeline::describe(chooser->policy());
    for (std::size_t n : tokens) {
      json layer_seconds = json::object();
      double total_s = 0, total_flops = 0, total_bytes = 0;
      for (const auto& L : k_llama2_7b_layers) {
        cuda::lt_gemm g(m_handle.get(), t, L.out_features, n, L.in_features, m_workspace.bytes(),
                        chooser->candidates());
        const gemm_result r = time_gemm(g, w.data(), x.data(), y.data(), *chooser);
        layer_seconds[L.name] = r.m.stats.median;
        total_s += r.m.stats.median;
        total_flops += g.flops();
        total_bytes += g.min_bytes();
        json row = {{"kind", "linear"},
                    {"model", "llama-2-7b"},
                    {"layer", L.name},
                    {"dtype", name(t)},
                    {"m", L.out_features},
                    {"n", n},
                    {"k", L.in_features},
                    {"flops", g.flops()},
                    {"bytes", g.min_bytes()},
                    {"flops_per_second", g.flops() / r.m.stats.median},
                    {"bytes_per_second", g.min_bytes() / r.m.stats.median},
                    {"cold_l2", chooser->policy().cold},
                    {"measurement", to_json(r.m)}};
        row.update(choice_fields(r, *chooser));
        p.rows.push_back(std::move(row));
      }
      const double intensity = total_flops / total_bytes;
      const bool memory_bound = peak <= 0 || intensity < peak / bw;
      if (!memory_bound && !crossover) crossover = double(n);
      p.rows.push_back({{"kind", "linear_block"},
                        {"model", "llama-2-7b"},
                        {"dtype", name(t)},
                        {"tokens", n},
                        {"layer_seconds", layer_seconds},
                        {"seconds", total_s},
                        {"flops", total_flops},
                        {"bytes", total_bytes},
                        {"intensity_flops_per_byte", intensity},
                        {"flops_per_second", total_flops / total_s},
                        {"bytes_per_second", total_bytes / total_s},
                        {"bound", memory_bound ? "memory" : "compute"}});
      say("llama-2-7b linear layers, " + std::to_string(n) + " tokens: " +
          format("%.2f us", total_s * 1e6));
    }
    if (crossover) p.config["linear_crossover_tokens"] = *crossover;
  }

 private:
  const probe_options& m_opt;
  metrics::device_info m_dev;
  cuda::stream m_stream;
  cuda::event_timer m_timer;
  cuda::cublaslt_handle m_handle;
  cuda::device_buffer m_workspace{32u << 20};
  cuda::l2_flusher m_flush;
  measure_options m_mopt;
};

}  // namespace

gpu_profile run_probe(const probe_options& o) {
  validate_probe_options(o);
  const metrics::device_info dev = metrics::require_device(o.device, "ridgeline probe");
  const std::uint64_t need = probe_memory_bytes(o);
  if (need > static_cast<std::uint64_t>(dev.memory_free_bytes)) {
    throw std::invalid_argument("the probe needs " + format_gib(double(need)) +
                                " of device memory with these options (--max-bytes " +
                                format_gib(double(o.max_bytes)) + " is allocated twice for the copy), but " +
                                dev.name + " has " + format_gib(double(dev.memory_free_bytes)) + " free");
  }
  RIDGELINE_CUDA_CHECK(cudaSetDevice(o.device));

  gpu_profile p;
  p.name = dev.name;
  p.source = "measured";
  p.sm_count = dev.sm_count;
  p.l2_bytes = dev.l2_bytes;
  p.memory_bytes = dev.memory_bytes;
  const datasheet_entry* ds = datasheet_for_device(dev.name);
  p.key = ds ? ds->key : "";
  p.datasheet_bytes_per_second = ds ? ds->dram_bytes_per_second : 0;
  for (dtype t : o.dtypes) {
    p.peaks[t].datasheet_flops_per_second =
        ds && ds->flops_per_second.count(t) ? ds->flops_per_second.at(t) : 0;
  }
  p.environment = metrics::environment_block(o.device);
  p.config = {{"mode", o.full ? "full" : "quick"},
              {"max_bytes", o.max_bytes},
              {"gemm_size", o.gemm_size},
              {"linear_layers", o.linear_layers},
              {"theoretical_dram_bytes_per_second", dev.theoretical_dram_bytes_per_second()},
              {"timing", "CUDA events, median over repetitions after 3 warm-ups"}};
  json dts = json::array();
  for (dtype t : o.dtypes) dts.push_back(name(t));
  p.config["dtypes"] = dts;

  prober pr(o, dev);
  pr.bandwidth(p);
  pr.gemm_peaks(p);
  instruction_peak_options io;
  io.device = o.device;
  io.full = o.full;
  io.progress = o.progress;
  p.instruction_peaks = measure_instruction_peaks(io);
  if (o.linear_layers) pr.linear_layers(p);
  p.environment["gpu_after"] = metrics::environment_block(o.device)["gpu"];
  return p;
}

}  // namespace ridgeline::bench
