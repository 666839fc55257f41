// Readers and writers of the shared timing summary and measurement objects
// (schemas/measurement.hpp).
#include "ridgeline/core/schemas/measurement.hpp"

namespace ridgeline::schema {

using nlohmann::json;

timing_summary parse_timing_summary(const node& n) {
  timing_summary s;
  s.count = n.integer("count");
  s.median = n.number("median");
  s.mean = n.number("mean");
  s.min = n.number("min");
  s.max = n.number("max");
  s.stddev = n.number("stddev");
  s.p10 = n.number("p10");
  s.p90 = n.number("p90");
  s.mad = n.number("mad");
  s.noise = n.number("noise");
  return s;
}

measurement_block parse_measurement(const node& n) {
  measurement_block m;
  m.seconds = parse_timing_summary(n.object("seconds"));
  m.repetitions = n.integer("repetitions");
  m.stop_reason = n.string("stop_reason");
  m.throttled = n.boolean("throttled");
  m.throttle_reasons = n.strings("throttle_reasons");
  const node clock = n.object("sm_clock_mhz");
  m.sm_clock_mhz_min = clock.integer("min");
  m.sm_clock_mhz_max = clock.integer("max");
  return m;
}

json to_json(const timing_summary& s) {
  return {{"count", s.count}, {"median", s.median}, {"mean", s.mean},   {"min", s.min},
          {"max", s.max},     {"stddev", s.stddev}, {"p10", s.p10},     {"p90", s.p90},
          {"mad", s.mad},     {"noise", s.noise}};
}

json to_json(const measurement_block& m) {
  return {{"seconds", to_json(m.seconds)},
          {"repetitions", m.repetitions},
          {"stop_reason", m.stop_reason},
          {"throttled", m.throttled},
          {"throttle_reasons", m.throttle_reasons},
          {"sm_clock_mhz", {{"min", m.sm_clock_mhz_min}, {"max", m.sm_clock_mhz_max}}}};
}

}  // namespace ridgeline::schema
