// Change points in a benchmark's history (one median per run, oldest first): a two-sided CUSUM on
// the deviation from a reference level, so that a slow drift accumulates until it is caught, not
// only a step between two neighbouring runs.
//
// From `start`, the reference level is the median of the next `reference_points` values and sigma
// their robust spread (1.4826 MAD, at least `min_sigma` of the level). Each later value adds
// (x - level) - k to the upper sum and (level - x) - k to the lower one (both floored at 0), with
// slack k = max(slack_sigmas * sigma, threshold / 2 * level); a sum above
// h = max(decision_sigmas * sigma, 2 * threshold * level) raises an alarm. The change began after
// the sum last stood at 0; detection restarts with a new reference level after it.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace ridgeline::bench {

struct change_point_options {
  double threshold = 0.05;  // relative level change that matters (as compare's threshold)
  std::size_t reference_points = 5;
  double slack_sigmas = 0.5;
  double decision_sigmas = 5.0;
  double min_sigma = 0.005;  // relative to the level: a very quiet reference is not trusted below
};

struct change_point {
  std::size_t start = 0;     // first value of the new level (or of the drift)
  std::size_t detected = 0;  // value at which the CUSUM crossed h
  double before = 0;         // reference level
  double after = 0;          // median of the values from start to detected
  double relative_change = 0;
  std::string kind;  // "step" (the new values are flat) or "drift" (they keep moving)
};

std::vector<change_point> detect_change_points(std::span<const double> values,
                                               const change_point_options& o = {});

}  // namespace ridgeline::bench
