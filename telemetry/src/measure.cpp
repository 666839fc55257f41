// The measurement loop (see measure.hpp).
#include "ridgeline/telemetry/measure.hpp"

#include <chrono>
#include <nlohmann/json.hpp>

#include "ridgeline/telemetry/nvml.hpp"

namespace ridgeline::bench {

measurement measure(const std::function<double()>& run_once, const measure_options& options) {
  using clock = std::chrono::steady_clock;
  measurement m;
  metrics::clock_record record;
  auto& nvml = metrics::nvml::instance();
  auto sample = [&] {
    if (options.device && nvml.available()) {
      if (auto s = nvml.sample(*options.device)) record.add(*s);
    }
  };
  for (int i = 0; i < options.warmup; ++i) run_once();
  sample();
  const auto start = clock::now();
  auto last_sample = start;
  for (;;) {
    m.seconds.push_back(run_once());
    const auto now = clock::now();
    if (std::chrono::duration<double>(now - last_sample).count() >=
        options.telemetry_interval_seconds) {
      sample();
      last_sample = now;
    }
    m.reason = should_stop(options.stop, m.seconds,
                           std::chrono::duration<double>(now - start).count());
    if (m.reason != stop_reason::running) break;
  }
  sample();
  m.stats = summarize(m.seconds);
  m.throttled = record.throttled;
  m.throttle_reasons = record.reasons;
  m.sm_clock_min_mhz = record.sm_clock_min_mhz;
  m.sm_clock_max_mhz = record.sm_clock_max_mhz;
  return m;
}

nlohmann::json to_json(const measurement& m) {
  return {{"seconds", to_json(m.stats)},
          {"repetitions", m.seconds.size()},
          {"stop_reason", to_string(m.reason)},
          {"throttled", m.throttled},
          {"throttle_reasons", m.throttle_reasons},
          {"sm_clock_mhz", {{"min", m.sm_clock_min_mhz}, {"max", m.sm_clock_max_mhz}}}};
}

}  // namespace ridgeline::bench
