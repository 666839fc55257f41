// `ridgeline history show`'s trend table and chart data (see trend.hpp).
#include "ridgeline/regress/trend.hpp"

#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/text.hpp"
#include "ridgeline/regress/change_points.hpp"
#include "ridgeline/regress/compare.hpp"

namespace ridgeline::bench {
trend history_trend(const history& h, const trend_options& o) {
  change_point_options cpo;
  cpo.threshold = o.threshold;
  nlohmann::json chart = {{"schema", "ridgeline.history_trend/v1"},
                          {"history", h.path().string()},
                          {"threshold", o.threshold},
                          {"benchmarks", nlohmann::json::array()}};
  std::ostringstream table;
  bool recent_change = false;
  std::size_t shown = 0;
  for (const auto& name : h.benchmarks()) {
    if (!glob_match(o.benchmark, name)) continue;
    const auto points = h.series(name, o.branch, o.last);
    if (points.empty()) continue;
    ++shown;
    std::vector<double> medians;
    for (const auto& p : points) medians.push_back(p.median_seconds);
    const auto cps = detect_change_points(medians, cpo);
    if (!cps.empty() && cps.back().detected + cpo.reference_points >= medians.size() - 1) {
      recent_change = true;
    }
    nlohmann::json x = nlohmann::json::array(), y = nlohmann::json::array(),
                   pts = nlohmann::json::array(), cpj = nlohmann::json::array();
    table << name << "\n";
    table << "  run   time                  git sha   branch          median        vs prev  "
             "vs first\n";
    for (std::size_t i = 0; i < points.size(); ++i) {
      const auto& p = points[i];
      x.push_back(p.time_utc);
      y.push_back(p.median_seconds);
      pts.push_back({{"run_id", p.run_id},
                     {"time_utc", p.time_utc},
                     {"git_sha", p.git_sha},
                     {"branch", p.branch},
                     {"median_seconds", p.median_seconds},
                     {"iqr_seconds", p.iqr_seconds},
                     {"count", p.count}});
      char line[256];
      const std::string prev =
          i > 0 ? format_percent(p.median_seconds / points[i - 1].median_seconds - 1, true) : "";
      const std::string first =
          i > 0 ? format_percent(p.median_seconds / points[0].median_seconds - 1, true) : "";
      std::snprintf(line, sizeof line, "  %-5lld %-21s %-9.9s %-15.15s %-13s %-8s %-8s",
                    static_cast<long long>(p.run_id), p.time_utc.c_str(), p.git_sha.c_str(),
                    p.branch.c_str(), format_seconds(p.median_seconds).c_str(), prev.c_str(),
                    first.c_str());
      std::string row(line);
      row.erase(row.find_last_not_of(' ') + 1);
      table << row;
      for (const auto& cp : cps) {
        if (cp.start == i) table << "  <- " << cp.kind << " starts";
        if (cp.detected == i) {
          table << "  <- " << cp.kind << " detected: " << format_seconds(cp.before) << " -> "
                << format_seconds(cp.after) << " (" << format_percent(cp.relative_change, true) << ")";
        }
      }
      table << "\n";
    }
    for (const auto& cp : cps) {
      cpj.push_back({{"start_index", cp.start},
                     {"detected_index", cp.detected},
                     {"start_run_id", points[cp.start].run_id},
                     {"start_git_sha", points[cp.start].git_sha},
                     {"detected_run_id", points[cp.detected].run_id},
                     {"before_seconds", cp.before},
                     {"after_seconds", cp.after},
                     {"relative_change", cp.relative_change},
                     {"kind", cp.kind}});
    }
    if (cps.empty()) table << "  no change point (threshold " << o.threshold * 100 << "%)\n";
    table << "\n";
    chart["benchmarks"].push_back({{"name", name},
                                   {"x_time_utc", x},
                                   {"y_median_seconds", y},
                                   {"points", pts},
                                   {"change_points", cpj}});
  }
  if (shown == 0) {
    throw std::invalid_argument("history " + h.path().string() + ": no benchmark matches '" +
                                o.benchmark + "'" +
                                (o.branch.empty() ? "" : " on branch " + o.branch));
  }
  return {chart, table.str(), recent_change};
}

}  // namespace ridgeline::bench
