// Sub-objects shared by the measured formats (gpu_profile, sweep, roofline): a summary of
// repeated timings (core/statistics.hpp writes it) and a measurement (the telemetry loop's
// timings plus how the loop stopped and whether the GPU throttled).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/core/schema.hpp"

namespace ridgeline::schema {

struct timing_summary {
  std::int64_t count = 0;
  double median = 0, mean = 0, min = 0, max = 0, stddev = 0, p10 = 0, p90 = 0, mad = 0, noise = 0;
};

struct measurement_block {
  timing_summary seconds;
  std::int64_t repetitions = 0;
  std::string stop_reason;  // running, noise_reached, max_repetitions, time_cap
  bool throttled = false;
  std::vector<std::string> throttle_reasons;
  std::int64_t sm_clock_mhz_min = 0, sm_clock_mhz_max = 0;  // 0 without NVML
};

timing_summary parse_timing_summary(const node& n);
measurement_block parse_measurement(const node& n);
nlohmann::json to_json(const timing_summary& s);
nlohmann::json to_json(const measurement_block& m);

}  // namespace ridgeline::schema
