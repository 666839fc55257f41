// CUSUM change-point detection over a history (see change_points.hpp).
#include "ridgeline/regress/change_points.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ridgeline/core/statistics.hpp"

namespace ridgeline::bench {

namespace {

// Least-squares slope of v against its index.
double slope(std::span<const double> v) {
  const double n = static_cast<double>(v.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double x = static_cast<double>(i);
    sx += x;
    sy += v[i];
    sxx += x * x;
    sxy += x * v[i];
  }
  const double d = n * sxx - sx * sx;
  return d > 0 ? (n * sxy - sx * sy) / d : 0.0;
}

}  // namespace

std::vector<change_point> detect_change_points(std::span<const double> values,
                                               const change_point_options& o) {
  if (o.reference_points < 2) throw std::invalid_argument("change points: reference_points < 2");
  if (!(o.threshold > 0)) throw std::invalid_argument("change points: threshold must be > 0");
  std::vector<change_point> out;
  std::size_t pos = 0;
  while (pos + o.reference_points < values.size()) {
    const auto ref = values.subspan(pos, o.reference_points);
    const summary s = summarize(ref);
    const double level = s.median;
    if (!(level > 0)) {
      ++pos;
      continue;
    }
    const double sigma = std::max(1.4826 * s.mad, o.min_sigma * level);
    const double k = std::max(o.slack_sigmas * sigma, o.threshold / 2 * level);
    const double h = std::max(o.decision_sigmas * sigma, 2 * o.threshold * level);
    double up = 0, down = 0;
    std::size_t up_start = 0, down_start = 0;
    std::size_t i = pos + o.reference_points;
    bool alarm = false;
    for (; i < values.size(); ++i) {
      const double x = values[i];
      if (up == 0) up_start = i;
      if (down == 0) down_start = i;
      up = std::max(0.0, up + (x - level) - k);
      down = std::max(0.0, down + (level - x) - k);
      if (up > h || down > h) {
        alarm = true;
        break;
      }
    }
    if (!alarm) break;
    change_point cp;
    cp.start = up > h ? up_start : down_start;
    cp.detected = i;
    cp.before = level;
    const auto segment = values.subspan(cp.start, cp.detected - cp.start + 1);
    cp.after = median(segment);
    cp.relative_change = cp.after / level - 1.0;
    // A step leaves the new values flat; a drift keeps them moving: compare the movement along
    // the segment with the distance from the old level.
    const double moved = std::abs(slope(segment)) * static_cast<double>(segment.size() - 1);
    cp.kind = segment.size() >= 3 && moved > 0.5 * std::abs(cp.after - level) ? "drift" : "step";
    out.push_back(cp);
    pos = cp.detected + 1;
  }
  return out;
}

}  // namespace ridgeline::bench
