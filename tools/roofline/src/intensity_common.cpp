// Host half of the intensity sweep (see intensity_sweep.hpp): default intensities, option checks,
// plateaus and JSON. Built with and without CUDA.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "ridgeline/core/statistics.hpp"
#include "ridgeline/roofline/intensity_sweep.hpp"

namespace ridgeline::bench {

std::vector<double> default_intensities() {
  std::vector<double> v;
  for (int e = -2; e <= 12; ++e) v.push_back(std::ldexp(1.0, e));
  return v;
}

void validate_intensity_sweep_options(const intensity_sweep_options& o) {
  if (o.kernels.empty()) throw std::invalid_argument("intensity sweep: no kernels");
  if (o.intensities.empty()) throw std::invalid_argument("intensity sweep: no intensities");
  for (double i : o.intensities) {
    int e = 0;
    if (!(i > 0) || !std::isfinite(i) || std::frexp(i, &e) != 0.5 || i < 0.25) {
      throw std::invalid_argument(
          "intensity sweep: intensities must be powers of two >= 1/4, got " + std::to_string(i));
    }
  }
  if (o.buffer_bytes == 0 || o.buffer_bytes % k_intensity_chunk_bytes != 0) {
    throw std::invalid_argument(
        "intensity sweep: buffer bytes must be a positive multiple of 16 KiB, got " +
        std::to_string(o.buffer_bytes));
  }
  if (!(o.target_launch_seconds > 0)) {
    throw std::invalid_argument("intensity sweep: target launch seconds must be positive");
  }
  if (o.warmup < 0) throw std::invalid_argument("intensity sweep: warmup must be >= 0");
  if (!(o.sustain_seconds >= 0 && o.sustain_seconds <= 600)) {
    throw std::invalid_argument("intensity sweep: sustain seconds must be in [0, 600], got " +
                                std::to_string(o.sustain_seconds));
  }
}

intensity_plateau plateau(std::span<const intensity_point> points, intensity_kernel k) {
  intensity_plateau r;
  r.kernel = k;
  std::vector<const intensity_point*> mine;
  for (const auto& p : points) {
    if (p.kernel == k && p.m.stats.median > 0) mine.push_back(&p);
  }
  if (mine.empty()) return r;
  std::sort(mine.begin(), mine.end(),
            [](const auto* a, const auto* b) { return a->intensity < b->intensity; });
  double best_bps = 0;
  for (const auto* p : mine) best_bps = std::max(best_bps, p->bytes_per_second());
  std::vector<double> mem;
  for (const auto* p : mine) {
    if (p->bytes_per_second() < 0.95 * best_bps) break;
    mem.push_back(p->bytes_per_second());
  }
  r.memory_points = static_cast<int>(mem.size());
  r.memory_bytes_per_second = mem.empty() ? 0 : bench::median(mem);
  std::vector<double> fps;
  for (const auto* p : mine) fps.push_back(p->flop_per_second());
  std::sort(fps.begin(), fps.end(), std::greater<>());
  r.compute_flop_per_second = fps.front();
  fps.resize(std::min<std::size_t>(fps.size(), 3));
  r.compute_flop_per_second_median = bench::median(fps);
  r.ridge_flop_per_byte =
      r.memory_bytes_per_second > 0 ? r.compute_flop_per_second / r.memory_bytes_per_second : 0;
  return r;
}

nlohmann::json to_json(const intensity_point& p) {
  return {{"kernel", std::string(name(p.kernel))},
          {"intensity", p.intensity},
          {"flop_per_byte", p.flop_per_byte},
          {"variant", p.variant},
          {"grid", p.grid},
          {"blocks_per_sm", p.blocks_per_sm},
          {"bytes", p.bytes},
          {"flops", p.flops},
          {"seconds", p.seconds()},
          {"spread", p.spread()},
          {"flop_per_second", p.flop_per_second()},
          {"bytes_per_second", p.bytes_per_second()},
          {"throttled", p.m.throttled},
          {"throttle_reasons", p.m.throttle_reasons},
          {"measurement", to_json(p.m)}};
}

nlohmann::json to_json(const intensity_plateau& p) {
  return {{"kernel", std::string(name(p.kernel))},
          {"memory_bytes_per_second", p.memory_bytes_per_second},
          {"memory_points", p.memory_points},
          {"compute_flop_per_second", p.compute_flop_per_second},
          {"compute_flop_per_second_median", p.compute_flop_per_second_median},
          {"ridge_flop_per_byte", p.ridge_flop_per_byte}};
}

nlohmann::json to_json(const intensity_sweep_result& r) {
  nlohmann::json points = nlohmann::json::array(), plateaus = nlohmann::json::array();
  for (const auto& p : r.points) points.push_back(to_json(p));
  for (auto k : k_all_intensity_kernels) {
    const auto pl = plateau(r.points, k);
    if (pl.compute_flop_per_second > 0) plateaus.push_back(to_json(pl));
  }
  return {{"device", r.device_name}, {"sm_count", r.sm_count}, {"buffer_bytes", r.buffer_bytes},
          {"points", points},        {"plateaus", plateaus},   {"skipped", r.skipped}};
}

}  // namespace ridgeline::bench
