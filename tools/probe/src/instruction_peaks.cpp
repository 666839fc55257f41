// Instruction peaks of the probe (see probe.hpp: measure_instruction_peaks), also what
// `ridgeline roofline` calls before each kernel of its intensity sweep. Per kind: operands from
// cpu::make_instruction_peak_operands, one launch of a few iterations on the full grid compared
// with the CPU reference (bit for bit for FFMA/HFMA2, within the GPU test's tolerance for wgmma),
// a calibration launch that sizes `iterations` to launch_seconds, then bench::measure with
// sustain_seconds of warm-up launches, CUDA-event timing on a non-blocking stream.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cuda/instruction_peak.hpp"
#include "cuda/raii.hpp"
#include "ridgeline/telemetry/measure.hpp"
#include "ridgeline/probe/probe.hpp"
#include "ridgeline/kernels/instruction_peak_reference.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/telemetry/nvtx.hpp"

namespace ridgeline::bench {
namespace {

class peak_runner {
 public:
  explicit peak_runner(const instruction_peak_plan& p)
      : m_plan(p),
        m_host(cpu::make_instruction_peak_operands(p, 97)),
        m_operands(m_host.size() * 4),
        m_out(output_floats(p) * sizeof(float)) {
    RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(m_operands.data(), m_host.data(), m_operands.bytes(),
                                         cudaMemcpyHostToDevice, m_stream.get()));
    m_stream.synchronize();
  }

  // Seconds of one launch with `iterations`.
  double time(std::uint32_t iterations) {
    m_plan.iterations = iterations;
    m_timer.start(m_stream.get());
    cuda::launch_instruction_peak(m_plan, m_operands.data<std::uint32_t>(), m_out.data<float>(),
                                  m_stream.get());
    m_timer.stop(m_stream.get());
    return m_timer.seconds();
  }

  // One launch of a few iterations on the whole grid against the CPU reference; throws
  // std::runtime_error naming the first output that differs.
  void check_against_reference() {
    const std::uint32_t iterations = is_mma(m_plan.kind) ? 1 : 3;
    time(iterations);
    std::vector<float> gpu(output_floats(m_plan));
    RIDGELINE_CUDA_CHECK(
        cudaMemcpy(gpu.data(), m_out.data(), gpu.size() * 4, cudaMemcpyDeviceToHost));
    const instruction_peak_plan p = m_plan;
    std::vector<double> ref, tol;  // every block's tile is the same: one block's reference
    if (is_mma(p.kind)) {
      auto r = cpu::instruction_peak_mma({p.kind, 1, p.iterations}, m_host);
      ref = std::move(r.value);
      // As tests/gpu/instruction_peak_test.cpp: fp8 products are accumulated with a narrower adder.
      const double rtol = p.kind == instruction_peak_kind::bf16 ? 1e-4 : 1e-2;
      for (double m : r.magnitude) tol.push_back(1e-6 + rtol * m);
    } else {
      for (float v : cpu::instruction_peak_scalar(p, m_host)) ref.push_back(v);
      tol.assign(ref.size(), 0.0);  // bit for bit
    }
    for (std::size_t i = 0; i < gpu.size(); ++i) {
      const std::size_t j = i % ref.size();
      if (!(std::fabs(gpu[i] - ref[j]) <= tol[j])) {
        throw std::runtime_error("instruction peak " + std::string(name(p.kind)) +
                                 ": the kernel disagrees with its CPU reference at output " +
                                 std::to_string(i) + " (gpu " + std::to_string(gpu[i]) +
                                 ", reference " + std::to_string(ref[j]) + ")");
      }
    }
  }

  instruction_peak_plan& plan() { return m_plan; }

 private:
  instruction_peak_plan m_plan;
  std::vector<std::uint32_t> m_host;
  cuda::stream m_stream;
  cuda::event_timer m_timer;
  cuda::device_buffer m_operands, m_out;
};

}  // namespace

instruction_peak_section measure_instruction_peaks(const instruction_peak_options& o) {
  validate_instruction_peak_options(o);
  const metrics::device_info dev = metrics::require_device(o.device, "measuring instruction peaks");
  RIDGELINE_CUDA_CHECK(cudaSetDevice(o.device));
  const datasheet_entry* ds = datasheet_for_device(dev.name);
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };

  instruction_peak_section s;
  s.environment = metrics::environment_block(o.device);
  measure_options mo;
  mo.device = o.device;
  mo.warmup = static_cast<int>(std::ceil(o.sustain_seconds / o.launch_seconds));
  mo.stop = o.full ? stopping_rule{20, 500, 0.005, 3.0} : stopping_rule{10, 100, 0.01, 1.0};
  s.config = {{"mode", o.full ? "full" : "quick"},
              {"launch_seconds", o.launch_seconds},
              {"sustain_seconds", o.sustain_seconds},
              {"timing",
               "CUDA events per launch; median, p10 and p90 over repetitions after "
               "sustain_seconds of back-to-back launches; checked against the CPU reference "
               "first"}};
  for (instruction_peak_kind k : o.kinds) {
    const std::string kname(name(k));
    if (is_mma(k) && (dev.compute_major != 9 || dev.compute_minor != 0)) {
      s.skipped.push_back(kname + ": wgmma kernels are built for sm_90a only, " + dev.name +
                          " is compute capability " + std::to_string(dev.compute_major) + "." +
                          std::to_string(dev.compute_minor));
      say(s.skipped.back());
      continue;
    }
    const metrics::nvtx_range range("probe instruction peak " + kname);
    const int per_sm = cuda::instruction_peak_blocks_per_sm(k);
    peak_runner run({k, per_sm * dev.sm_count, 1});
    run.check_against_reference();
    // Calibration: a launch long enough to time (~0.1 ms on an H100) after one that loads the
    // module, scaled to launch_seconds.
    const std::uint32_t probe_iterations = is_mma(k) ? 64 : 1024;
    run.time(probe_iterations);
    const double probe_s = std::max(run.time(probe_iterations), 1e-6);
    const double want = o.launch_seconds / probe_s * probe_iterations;
    const auto iterations = static_cast<std::uint32_t>(std::clamp(want, 1.0, double(1u << 31)));
    const measurement m = measure([&] { return run.time(iterations); }, mo);
    const auto f = static_cast<double>(flops(run.plan()));
    instruction_peak pk;
    pk.instruction = instruction_name(k);
    pk.flops_per_second = f / m.stats.median;
    pk.p10_flops_per_second = f / m.stats.p90;  // the slower launches
    pk.p90_flops_per_second = f / m.stats.p10;
    const auto gd = gemm_dtype(k);
    pk.datasheet_flops_per_second =
        ds && gd && ds->flops_per_second.count(*gd) ? ds->flops_per_second.at(*gd) : 0;
    pk.launch = {{"grid", run.plan().grid},
                 {"blocks_per_sm", per_sm},
                 {"threads_per_block", threads_per_block(k)},
                 {"iterations", iterations},
                 {"flops", f}};
    pk.measurement = to_json(m);
    s.peaks[k] = pk;
    say("instruction peak " + kname + " (" + pk.instruction +
        "): " + format("%.2f TFLOP/s", pk.flops_per_second / 1e12));
  }
  s.environment["gpu_after"] = metrics::environment_block(o.device)["gpu"];
  return s;
}

}  // namespace ridgeline::bench
