// The measurement loop: warm-up, repetitions until the stopping rule says so, GPU clocks and
// throttle reasons sampled (NVML) around and during the run. The callable runs the work once and
// returns its duration in seconds (for GPU work, the CUDA-event time). No CUDA types here.
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/core/statistics.hpp"

namespace ridgeline::bench {

struct measure_options {
  int warmup = 3;
  stopping_rule stop;
  std::optional<int> device;  // sample NVML telemetry of this device around the run
  double telemetry_interval_seconds = 0.2;
};

struct measurement {
  std::vector<double> seconds;  // one per repetition, in order
  summary stats;
  stop_reason reason = stop_reason::running;
  bool throttled = false;
  std::vector<std::string> throttle_reasons;
  unsigned sm_clock_min_mhz = 0;  // 0 when NVML is absent
  unsigned sm_clock_max_mhz = 0;
};

measurement measure(const std::function<double()>& run_once, const measure_options& options);
nlohmann::json to_json(const measurement& m);

}  // namespace ridgeline::bench
