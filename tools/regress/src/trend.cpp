// `ridgeline history show`'s trend table and chart data (see trend.hpp).
#include "ridgeline/regress/trend.hpp"

#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/schemas/history_trend.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/regress/change_points.hpp"
#include "ridgeline/regress/compare.hpp"

namespace ridgeline::bench {
trend history_trend(const history& h, const trend_options& o) {
  change_point_options cpo;
  cpo.threshold = o.threshold;
  // The chart data is built as the format's typed document and written by its writer
  // (core/schemas/history_trend.hpp).
  schema::history_trend_document chart;
  chart.history = h.path().string();
  chart.threshold = o.threshold;
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
    schema::trend_benchmark b;
    b.name = name;
    table << name << "\n";
    table << "  run   time                  git sha   branch          median        vs prev  "
             "vs first\n";
    for (std::size_t i = 0; i < points.size(); ++i) {
      const auto& p = points[i];
      b.x_time_utc.push_back(p.time_utc);
      b.y_median_seconds.push_back(p.median_seconds);
      b.points.push_back({p.run_id, p.time_utc, p.git_sha, p.branch, p.median_seconds,
                          p.iqr_seconds, static_cast<std::int64_t>(p.count)});
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
      schema::trend_change_point c;
      c.start_index = static_cast<std::int64_t>(cp.start);
      c.detected_index = static_cast<std::int64_t>(cp.detected);
      c.start_run_id = points[cp.start].run_id;
      c.start_git_sha = points[cp.start].git_sha;
      c.detected_run_id = points[cp.detected].run_id;
      c.before_seconds = cp.before;
      c.after_seconds = cp.after;
      c.relative_change = cp.relative_change;
      c.kind = cp.kind;
      b.change_points.push_back(std::move(c));
    }
    if (cps.empty()) table << "  no change point (threshold " << o.threshold * 100 << "%)\n";
    table << "\n";
    chart.benchmarks.push_back(std::move(b));
  }
  if (shown == 0) {
    throw std::invalid_argument("history " + h.path().string() + ": no benchmark matches '" +
                                o.benchmark + "'" +
                                (o.branch.empty() ? "" : " on branch " + o.branch));
  }
  return {schema::to_json(chart), table.str(), recent_change};
}

}  // namespace ridgeline::bench
