// Measured roofline: runs the intensity-sweep kernels (FFMA fp32, HFMA2 bf16/fp16, wgmma bf16/fp8;
// kernels/include/ridgeline/kernels/intensity_plan.hpp says what they compute and how FLOPs and
// bytes are counted) over a list of FLOP-per-byte values with the harness's measurement loop
// (bench::measure: warm-up, repetitions to the stopping rule, median, NVML clocks and throttle
// reasons). plateau() reads the memory and compute ceilings off the results. No CUDA types here; a
// build without CUDA throws no_device_error from run_intensity_sweep.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "ridgeline/telemetry/measure.hpp"
#include "ridgeline/kernels/intensity_plan.hpp"

namespace ridgeline::bench {

// 1/4, 1/2, 1, ..., 4096 FLOP per byte.
std::vector<double> default_intensities();

struct intensity_sweep_options {
  std::vector<intensity_kernel> kernels{k_all_intensity_kernels.begin(),
                                        k_all_intensity_kernels.end()};
  std::vector<double> intensities = default_intensities();  // powers of two
  std::uint64_t buffer_bytes = 2ULL << 30;  // streamed source, a multiple of 16 KiB, >> L2
  // Compute-bound points read a prefix of the buffer so that a launch takes about this long at the
  // kernel's nominal peak (see intensity_sweep.cpp); memory-bound points read the whole buffer.
  double target_launch_seconds = 0.02;
  int warmup = 3;
  // Each point's measured launches come after at least this long of back-to-back launches of the
  // same configuration (the probe's instruction peaks are timed the same way), so that the
  // compute plateau is a sustained rate under the power cap, not a cold burst's.
  double sustain_seconds = 1.0;
  stopping_rule stop{10, 100, 0.01, 1.0};
  int device = 0;
  std::function<void(const std::string&)> progress;  // one line per point; may be empty
};

// Checks option values that need no GPU; throws std::invalid_argument.
void validate_intensity_sweep_options(const intensity_sweep_options& o);

struct intensity_point {
  intensity_kernel kernel = intensity_kernel::ffma_fp32;
  double intensity = 0;      // requested FLOP per byte
  double flop_per_byte = 0;  // what the launch executed: flops / bytes
  std::string variant;       // "fma_per_vector=8", "n256 mma_per_chunk=4", ...
  int grid = 0;
  int blocks_per_sm = 0;
  std::uint64_t bytes = 0;  // read from the source per launch
  std::uint64_t flops = 0;  // per launch
  measurement m;            // seconds per launch
  double seconds() const { return m.stats.median; }
  double flop_per_second() const { return static_cast<double>(flops) / m.stats.median; }
  double bytes_per_second() const { return static_cast<double>(bytes) / m.stats.median; }
  // Relative spread of the repetitions, (p90 - p10) / median.
  double spread() const { return (m.stats.p90 - m.stats.p10) / m.stats.median; }
};

struct intensity_sweep_result {
  std::string device_name;
  int sm_count = 0;
  std::uint64_t buffer_bytes = 0;
  std::vector<intensity_point> points;
  std::vector<std::string> skipped;  // "kernel: reason" for kernels the device cannot run
};

// Throws no_device_error without a usable GPU, std::invalid_argument for bad options or when the
// buffer does not fit in free device memory.
intensity_sweep_result run_intensity_sweep(const intensity_sweep_options& o);

struct intensity_plateau {
  intensity_kernel kernel = intensity_kernel::ffma_fp32;
  // Median bytes/s of the lowest-intensity points that are memory-bound: the leading run, by
  // intensity, of points within 5% of the kernel's best bytes/s.
  double memory_bytes_per_second = 0;
  int memory_points = 0;
  double compute_flop_per_second = 0;         // the best point
  double compute_flop_per_second_median = 0;  // median of the (up to) 3 best points
  double ridge_flop_per_byte = 0;             // compute / memory
};

// Plateaus of one kernel's points (others are ignored); zeros when it has none.
intensity_plateau plateau(std::span<const intensity_point> points, intensity_kernel k);

nlohmann::json to_json(const intensity_point& p);
nlohmann::json to_json(const intensity_plateau& p);
// Points, skipped kernels and one plateau per kernel that has points.
nlohmann::json to_json(const intensity_sweep_result& r);

}  // namespace ridgeline::bench
