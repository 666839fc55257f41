// `ridgeline history show`'s trend: per benchmark of the history, its points oldest first with
// the change against the previous and the first point, and the CUSUM change points
// (change_points.hpp); as chart data (schema ridgeline.history_trend/v1) and as the text table.
//   bench::trend t = bench::history_trend(h, {.benchmark = "BM_engine_*", .last = 50});
//   std::cout << t.table;  write t.chart.dump(2);  t.recent_change: a change in the newest runs
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "ridgeline/regress/history.hpp"

namespace ridgeline::bench {

struct trend_options {
  std::string benchmark = "*";  // glob on benchmark names
  std::string branch;           // only runs of this branch; empty: every branch
  std::size_t last = 0;         // only the newest N runs; 0: all
  double threshold = 0.05;      // relative change that matters (change points)
};

struct trend {
  nlohmann::json chart;        // ridgeline.history_trend/v1
  std::string table;           // the text the command prints
  bool recent_change = false;  // a change point detected in the newest runs
};
// Throws std::invalid_argument naming the history and the glob when no benchmark matches.
trend history_trend(const history& h, const trend_options& o);

}  // namespace ridgeline::bench
