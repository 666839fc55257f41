// GPU telemetry through NVML, loaded at run time (dlopen of libnvidia-ml.so.1): SM and memory
// clocks, power, temperature, throttle reasons. Absent NVML is tolerated: available() is false
// and sample() returns std::nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ridgeline::metrics {

struct gpu_sample {
  double time_seconds = 0;  // steady clock
  unsigned sm_clock_mhz = 0;
  unsigned memory_clock_mhz = 0;
  unsigned sm_clock_max_mhz = 0;
  double power_watts = 0;
  double power_limit_watts = 0;
  unsigned temperature_c = 0;
  std::uint64_t throttle_reasons = 0;  // NVML clocks-event reason bit mask
};

// Names of the throttle reasons that make a timing suspect (power or thermal capping, hardware
// slowdown); idle and application-clock settings are not counted.
std::vector<std::string> throttle_reason_names(std::uint64_t mask);
bool is_throttling(std::uint64_t mask);

class nvml {
 public:
  // Process-wide instance; loads and initialises NVML once.
  static nvml& instance();
  bool available() const { return m_available; }
  const std::string& error() const { return m_error; }
  std::optional<gpu_sample> sample(int device_index) const;
  std::string driver_version() const;

  nvml(const nvml&) = delete;
  nvml& operator=(const nvml&) = delete;

 private:
  nvml();
  ~nvml();
  struct api;
  api* m_api = nullptr;
  bool m_available = false;
  std::string m_error;
};

// Samples taken around a measured run; the run is flagged when any sample shows a throttle reason
// that makes timings suspect (see is_throttling).
struct clock_record {
  std::vector<gpu_sample> samples;
  bool throttled = false;
  std::vector<std::string> reasons;
  unsigned sm_clock_min_mhz = 0;
  unsigned sm_clock_max_mhz = 0;
  void add(const gpu_sample& s);
};

}  // namespace ridgeline::metrics
