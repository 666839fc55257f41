// GPU half of the intensity sweep (see intensity_sweep.hpp). Per kernel the source buffer is
// filled once with seeded uniform values of the kernel's dtype in [-1, 1) (never all zeros); per
// intensity each launch variant is timed briefly and the fastest is measured in full, event-timed
// on a non-blocking stream. Launch sizes: memory-bound points read the whole buffer (2 GiB at
// ~3.1 TB/s: ~0.7 ms); a point whose FLOPs at the kernel's nominal peak would take longer than
// target_launch_seconds reads only a prefix (a multiple of grid chunks, so every block does the
// same work). The nominal peaks (H100 SXM datasheet, dense) only size launches; nothing is
// reported against them. Results are not checked against the CPU reference here (a 2 GiB reference
// would take hours); tests/gpu/intensity_test.cpp checks every kernel and launch branch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "cuda/intensity.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/roofline/intensity_sweep.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::bench {
namespace {

double nominal_peak_flop_per_second(intensity_kernel k) {
  switch (k) {
    case intensity_kernel::ffma_fp32:
      return 67e12;
    case intensity_kernel::hfma2_bf16:
    case intensity_kernel::hfma2_fp16:
      return 134e12;
    case intensity_kernel::mma_bf16:
      return 990e12;
    case intensity_kernel::mma_fp8:
      return 1980e12;
  }
  return 1e12;
}

dtype data_type(intensity_kernel k) {
  switch (k) {
    case intensity_kernel::ffma_fp32:
      return dtype::fp32;
    case intensity_kernel::hfma2_bf16:
    case intensity_kernel::mma_bf16:
      return dtype::bf16;
    case intensity_kernel::hfma2_fp16:
      return dtype::fp16;
    case intensity_kernel::mma_fp8:
      return dtype::fp8_e4m3;
  }
  return dtype::fp32;
}

// MMA widths tried at an intensity: the narrow ones keep many blocks (and loads) per SM for the
// memory-bound end, the wide one reaches the tensor-core peak.
std::vector<int> mma_variants(double intensity) {
  std::vector<int> v;
  if (intensity <= 16) v.push_back(8);
  if (intensity <= 512) v.push_back(64);
  v.push_back(256);
  return v;
}

std::string describe(const intensity_plan& p) {
  char buf[64];
  if (!is_mma(p.kernel)) {
    std::snprintf(buf, sizeof buf, "fma_per_vector=%u", p.fma_per_vector);
  } else if (p.chunks_per_mma > 1) {
    std::snprintf(buf, sizeof buf, "n%d chunks_per_mma=%u", p.mma_n, p.chunks_per_mma);
  } else {
    std::snprintf(buf, sizeof buf, "n%d mma_per_chunk=%u", p.mma_n, p.mma_per_chunk);
  }
  return buf;
}

// Chunks to stream: all of the buffer, or for compute-bound points about target seconds' worth
// at the nominal peak, a multiple of the grid; always a multiple of chunks_per_mma.
std::uint64_t launch_bytes(const intensity_sweep_options& o, const intensity_plan& p,
                           double intensity) {
  const std::uint64_t total = o.buffer_bytes / k_intensity_chunk_bytes;
  const double want = o.target_launch_seconds * nominal_peak_flop_per_second(p.kernel) / intensity /
                      static_cast<double>(k_intensity_chunk_bytes);
  const auto grid = static_cast<std::uint64_t>(p.grid);
  std::uint64_t c = total;
  if (want < static_cast<double>(total)) {
    c = std::max<std::uint64_t>(grid, static_cast<std::uint64_t>(want) / grid * grid);
    c = std::min(c, total);
  }
  c = c / p.chunks_per_mma * p.chunks_per_mma;
  return c * k_intensity_chunk_bytes;
}

class sweeper {
 public:
  sweeper(const intensity_sweep_options& o, const metrics::device_info& d)
      : m_opt(o),
        m_dev(d),
        m_src(o.buffer_bytes),
        m_a(k_mma_m * k_mma_k_bytes),
        m_b(256 * k_mma_k_bytes) {
    m_mopt.device = o.device;
    m_mopt.warmup = o.warmup;
    m_mopt.stop = o.stop;
    m_quick = m_mopt;
    m_quick.warmup = 1;
    m_quick.stop = stopping_rule{3, 3, 0.0, 10.0};
  }

  void run(intensity_sweep_result& r) {
    for (auto k : m_opt.kernels) {
      if (is_mma(k) && (m_dev.compute_major != 9 || m_dev.compute_minor != 0)) {
        r.skipped.push_back(std::string(name(k)) + ": wgmma kernels are built for sm_90a only, " +
                            m_dev.name + " is compute capability " +
                            std::to_string(m_dev.compute_major) + "." +
                            std::to_string(m_dev.compute_minor));
        say(r.skipped.back());
        continue;
      }
      fill(k);
      for (double intensity : m_opt.intensities) r.points.push_back(point(k, intensity));
    }
  }

 private:
  void say(const std::string& s) const {
    if (m_opt.progress) m_opt.progress(s);
  }

  void fill(intensity_kernel k) {
    const dtype t = data_type(k);
    const std::size_t elem = operand_bytes(t);
    const auto seed = static_cast<std::uint64_t>(k) + 1;
    cuda::fill_uniform(m_src.data(), t, m_opt.buffer_bytes / elem, seed, 1.0f, m_stream.get());
    if (is_mma(k)) {
      cuda::fill_uniform(m_a.data(), t, m_a.bytes() / elem, seed + 100, 1.0f, m_stream.get());
      cuda::fill_uniform(m_b.data(), t, m_b.bytes() / elem, seed + 200, 1.0f, m_stream.get());
    }
    m_stream.synchronize();
  }

  measurement time(const intensity_plan& p, const measure_options& mo) {
    const std::size_t outs = output_floats(p), folds = output_folds(p);
    if (m_out.bytes() < outs * sizeof(float)) m_out = cuda::device_buffer(outs * sizeof(float));
    if (m_fold.bytes() < std::max<std::size_t>(folds, 1) * 4) {
      m_fold = cuda::device_buffer(std::max<std::size_t>(folds, 1) * 4);
    }
    return measure(
        [&] {
          m_timer.start(m_stream.get());
          cuda::launch_intensity(p, m_src.data(), m_a.data(), m_b.data(), m_out.data<float>(),
                                 m_fold.data<std::uint32_t>(), m_stream.get());
          m_timer.stop(m_stream.get());
          return m_timer.seconds();
        },
        mo);
  }

  intensity_point point(intensity_kernel k, double intensity) {
    std::vector<intensity_plan> plans;
    std::vector<int> per_sm;
    for (int n : is_mma(k) ? mma_variants(intensity) : std::vector<int>{0}) {
      const int bps = cuda::intensity_blocks_per_sm(k, n);
      intensity_plan p = make_intensity_plan(k, intensity, k_intensity_chunk_bytes,
                                             bps * m_dev.sm_count, n == 0 ? 256 : n);
      p.bytes = launch_bytes(m_opt, p, intensity);
      if (p.bytes == 0) continue;  // the buffer holds fewer chunks than one MMA needs
      plans.push_back(p);
      per_sm.push_back(bps);
    }
    if (plans.empty()) {
      throw std::invalid_argument("intensity sweep: the buffer is too small for " +
                                  std::string(name(k)) + " at " + std::to_string(intensity) +
                                  " FLOP/byte");
    }
    std::size_t best = 0;
    if (plans.size() > 1) {
      double best_rate = -1;
      for (std::size_t i = 0; i < plans.size(); ++i) {
        const double rate =
            static_cast<double>(flops(plans[i])) / time(plans[i], m_quick).stats.median;
        if (rate > best_rate) best_rate = rate, best = i;
      }
    }
    intensity_point pt;
    pt.kernel = k;
    pt.intensity = intensity;
    pt.flop_per_byte = flop_per_byte(plans[best]);
    pt.variant = describe(plans[best]);
    pt.grid = plans[best].grid;
    pt.blocks_per_sm = per_sm[best];
    pt.bytes = plans[best].bytes;
    pt.flops = flops(plans[best]);
    measure_options mo = m_mopt;
    if (m_opt.sustain_seconds > 0) {
      const double launch = std::max(time(plans[best], m_quick).stats.median, 1e-7);
      mo.warmup = std::max(mo.warmup, static_cast<int>(std::min(
                                          1e6, std::ceil(m_opt.sustain_seconds / launch))));
    }
    pt.m = time(plans[best], mo);
    char line[200];
    std::snprintf(line, sizeof line, "%s %g FLOP/byte: %.3f TB/s, %.2f TFLOP/s (%s)",
                  std::string(name(k)).c_str(), intensity, pt.bytes_per_second() / 1e12,
                  pt.flop_per_second() / 1e12, pt.variant.c_str());
    say(line);
    return pt;
  }

  const intensity_sweep_options& m_opt;
  const metrics::device_info& m_dev;
  measure_options m_mopt, m_quick;
  cuda::stream m_stream;
  cuda::event_timer m_timer;
  cuda::device_buffer m_src, m_a, m_b, m_out, m_fold;
};

}  // namespace

intensity_sweep_result run_intensity_sweep(const intensity_sweep_options& o) {
  validate_intensity_sweep_options(o);
  const metrics::device_info dev = metrics::require_device(o.device, "the intensity sweep");
  const std::uint64_t need = o.buffer_bytes + (64ULL << 20);
  if (need > static_cast<std::uint64_t>(dev.memory_free_bytes)) {
    throw std::invalid_argument("the intensity sweep needs " + std::to_string(need >> 20) +
                                " MiB of device memory, " + dev.name + " has " +
                                std::to_string(dev.memory_free_bytes >> 20) + " MiB free");
  }
  RIDGELINE_CUDA_CHECK(cudaSetDevice(o.device));
  intensity_sweep_result r;
  r.device_name = dev.name;
  r.sm_count = dev.sm_count;
  r.buffer_bytes = o.buffer_bytes;
  sweeper(o, dev).run(r);
  return r;
}

}  // namespace ridgeline::bench
