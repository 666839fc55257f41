// Comparing two result sets (see compare.hpp).
#include "ridgeline/regress/compare.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::bench {
using nlohmann::json;

std::string to_string(verdict v) {
  switch (v) {
    case verdict::faster:
      return "faster";
    case verdict::slower:
      return "slower";
    case verdict::unchanged:
      return "unchanged";
    case verdict::noisy:
      return "too noisy";
  }
  return "unknown";
}

int comparison::count(verdict v) const {
  return static_cast<int>(
      std::count_if(rows.begin(), rows.end(), [v](const auto& r) { return r.result == v; }));
}

bool glob_match(const std::string& pattern, const std::string& text) {
  return ::fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

double threshold_for(const compare_options& o, const std::string& name) {
  if (auto it = o.thresholds.find(name); it != o.thresholds.end()) return it->second;
  double t = o.threshold;
  std::size_t best = 0;
  for (const auto& [pattern, value] : o.thresholds) {
    if (pattern.size() > best && glob_match(pattern, name)) {
      best = pattern.size();
      t = value;
    }
  }
  return t;
}

namespace {

std::string text_of(const json* v) {
  if (v == nullptr || v->is_null()) return "(unknown)";
  return v->is_string() ? v->get<std::string>() : v->dump();
}

const json* find_path(const json& j, const std::string& dotted) {
  const json* cur = &j;
  std::size_t start = 0;
  while (start <= dotted.size()) {
    const auto dot = dotted.find('.', start);
    const std::string key = dotted.substr(start, dot == std::string::npos ? dot : dot - start);
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

// Normalised values are ratios to the reference benchmark's median, not times.
std::string format_ratio(double r) { return format("%.4g x ref", r); }

std::string format_value(const comparison& c, double v) {
  return c.reference_change ? format_ratio(v) : format_seconds(v);
}

std::string format_p(double p) { return p < 1e-4 ? "<1e-4" : format("%.4f", p); }

// Summary of values scaled by `scale` (normalisation divides by the reference median).
benchmark_series scaled(const benchmark_series& s, double scale) {
  if (scale == 1.0) return s;
  if (!s.summary_only) {
    std::vector<double> v = s.seconds;
    for (double& x : v) x *= scale;
    return make_series(std::move(v));
  }
  benchmark_series out = s;
  for (double* x :
       {&out.stats.median, &out.stats.mean, &out.stats.min, &out.stats.max, &out.stats.stddev,
        &out.stats.p10, &out.stats.p90, &out.stats.mad, &out.iqr_seconds}) {
    *x *= scale;
  }
  return out;
}

}  // namespace

std::vector<environment_difference> environment_differences(const json& base, const json& next) {
  std::vector<environment_difference> out;
  const json* gb = find_path(base, "gpu");
  const json* gn = find_path(next, "gpu");
  const bool has_b = gb != nullptr && gb->is_object();
  const bool has_n = gn != nullptr && gn->is_object();
  if (has_b != has_n) {
    out.push_back({"gpu", has_b ? text_of(find_path(*gb, "name")) : "none",
                   has_n ? text_of(find_path(*gn, "name")) : "none", true});
  }
  struct field {
    const char* path;
    bool blocking;
  };
  // The fields that change what a benchmark measures block; the others are reported.
  static const field k_fields[] = {
      {"gpu.name", true},
      {"gpu.compute_capability", true},
      {"gpu.driver_version", true},
      {"gpu.cuda_driver_version", true},
      {"gpu.cuda_runtime_version", true},
      {"gpu.sm_clock_max_mhz", true},
      {"gpu.memory_clock_max_mhz", true},
      {"ridgeline.build_type", true},
      {"ridgeline.cxx_compiler", false},
      {"ridgeline.built_with_cuda", false},
      {"host.hostname", false},
      {"host.cpu_threads", false},
      {"google_benchmark.num_cpus", false},
      {"google_benchmark.mhz_per_cpu", false},
  };
  for (const auto& f : k_fields) {
    const std::string path = f.path;
    if (path.rfind("gpu.", 0) == 0 && !(has_b && has_n)) continue;
    const json* vb = find_path(base, path);
    const json* vn = find_path(next, path);
    if (vb == nullptr && vn == nullptr) continue;
    if (vb != nullptr && vn != nullptr && *vb == *vn) continue;
    // A field one side does not record cannot prove a difference: report it, do not block.
    const bool both = vb != nullptr && vn != nullptr && !vb->is_null() && !vn->is_null();
    out.push_back({path, text_of(vb), text_of(vn), f.blocking && both});
  }
  // The SM clock when the run started: differs with load, so only a large gap is worth a line.
  if (has_b && has_n) {
    const json* cb = find_path(*gb, "sm_clock_mhz");
    const json* cn = find_path(*gn, "sm_clock_mhz");
    if (cb && cn && cb->is_number() && cn->is_number()) {
      const double b = cb->get<double>(), n = cn->get<double>();
      if (std::abs(n - b) > 0.05 * std::max(b, n)) {
        out.push_back({"gpu.sm_clock_mhz", cb->dump(), cn->dump(), false});
      }
    }
  }
  return out;
}

verdict decide(double change, double p_value, double spread_base, double spread_next,
               double threshold, double alpha) {
  const double spread = std::max(spread_base, spread_next);
  const bool significant = p_value < alpha;
  if (significant && std::abs(change) > threshold && std::abs(change) > spread) {
    return change > 0 ? verdict::slower : verdict::faster;
  }
  if (spread > threshold) return verdict::noisy;
  if (std::abs(change) > threshold) return verdict::noisy;  // large but not significant
  return verdict::unchanged;
}

comparison compare_results(const result_set& base, const result_set& next,
                           const compare_options& o) {
  if (!(o.threshold > 0) || !(o.alpha > 0 && o.alpha < 1)) {
    throw std::invalid_argument("threshold must be > 0 and alpha in (0, 1)");
  }
  for (const auto& [pattern, t] : o.thresholds) {
    if (!(t > 0)) throw std::invalid_argument("threshold for '" + pattern + "' must be > 0");
  }
  comparison c;
  c.base_source = base.source;
  c.next_source = next.source;
  c.options = o;
  c.environment = environment_differences(base.environment, next.environment);
  std::string blocking;
  for (const auto& d : c.environment) {
    if (!d.blocking) continue;
    blocking += (blocking.empty() ? "" : ", ") + d.field + " '" + d.base + "' vs '" + d.next + "'";
  }
  if (!blocking.empty() && !o.allow_environment_mismatch) {
    throw std::invalid_argument("refusing to compare results from different environments (" +
                                blocking + "); pass --allow-env-mismatch to compare anyway");
  }

  auto usable = [&](const result_set& r, const std::string& name) {
    const auto it = r.benchmarks.find(name);
    return it != r.benchmarks.end() && it->second.error.empty() && it->second.stats.count > 0;
  };
  auto selected = [&](const std::string& name) { return !o.filter || glob_match(*o.filter, name); };
  double scale_base = 1.0, scale_next = 1.0;
  if (o.normalize_by) {
    const std::string& ref = *o.normalize_by;
    for (const auto* r : {&base, &next}) {
      if (!usable(*r, ref)) {
        throw std::invalid_argument(r->source + ": has no usable '" + ref +
                                    "', the benchmark to normalize by");
      }
    }
    const double mb = base.benchmarks.at(ref).stats.median;
    const double mn = next.benchmarks.at(ref).stats.median;
    if (!(mb > 0 && mn > 0)) throw std::invalid_argument("'" + ref + "' has a zero median");
    scale_base = 1.0 / mb;
    scale_next = 1.0 / mn;
    c.reference_name = ref;
    c.reference_change = mn / mb - 1.0;
  }
  auto describe = [](const result_set& r, const std::string& name) {
    const auto it = r.benchmarks.find(name);
    if (it != r.benchmarks.end() && !it->second.error.empty()) {
      return name + " (error in " + r.source + ": " + it->second.error + ")";
    }
    return name;
  };
  std::vector<std::string> common;
  for (const auto& [name, s] : base.benchmarks) {
    if (!selected(name) || name == c.reference_name) continue;
    const bool in_base = usable(base, name), in_next = usable(next, name);
    // Failed on both sides (e.g. a GPU benchmark without a GPU): no difference to report.
    if (in_base && in_next) {
      common.push_back(name);
    } else if (in_base) {
      c.only_in_base.push_back(describe(next, name));  // missing or failed in NEW
    } else if (in_next) {
      c.only_in_next.push_back(describe(base, name));  // failed in BASE
    }
  }
  for (const auto& [name, s] : next.benchmarks) {
    if (!selected(name) || name == c.reference_name || base.benchmarks.count(name)) continue;
    if (usable(next, name)) c.only_in_next.push_back(name);
  }
  if (common.empty()) {
    throw std::invalid_argument("no benchmark appears in both " + base.source + " and " +
                                next.source + (o.filter ? " (after --filter)" : ""));
  }
  if ((!c.only_in_base.empty() || !c.only_in_next.empty()) && !o.allow_missing) {
    std::string msg = "benchmark sets differ:";
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? " " : ", ") + x;
      return s;
    };
    if (!c.only_in_base.empty()) msg += " missing or failed in NEW:" + list(c.only_in_base) + ";";
    if (!c.only_in_next.empty()) msg += " missing or failed in BASE:" + list(c.only_in_next) + ";";
    throw std::invalid_argument(msg + " pass --allow-missing to compare the common ones");
  }

  for (const auto& name : common) {
    const benchmark_series b = scaled(base.benchmarks.at(name), scale_base);
    const benchmark_series n = scaled(next.benchmarks.at(name), scale_next);
    benchmark_comparison row;
    row.name = name;
    row.base = b.stats;
    row.next = n.stats;
    row.threshold = threshold_for(o, name);
    row.change = b.stats.median > 0 ? n.stats.median / b.stats.median - 1.0 : 0.0;
    row.spread_base = b.stats.median > 0 ? b.iqr_seconds / b.stats.median : 0.0;
    row.spread_next = n.stats.median > 0 ? n.iqr_seconds / n.stats.median : 0.0;
    if (!b.summary_only && !n.summary_only) {
      const auto mw = mann_whitney(b.seconds, n.seconds);
      row.p_value = mw.p_value;
      row.test = mw.exact ? "mann-whitney exact" : "mann-whitney normal";
    } else {
      // Only summaries: z test on the medians with their standard errors (noise * median).
      const double se_b = b.stats.noise * b.stats.median;
      const double se_n = n.stats.noise * n.stats.median;
      const double se = std::sqrt(se_b * se_b + se_n * se_n);
      row.p_value =
          se > 0 ? 2.0 * normal_upper_tail(std::abs(n.stats.median - b.stats.median) / se) : 1.0;
      row.test = "z on medians";
    }
    row.result =
        decide(row.change, row.p_value, row.spread_base, row.spread_next, row.threshold, o.alpha);
    if (b.stats.count < o.min_repetitions || n.stats.count < o.min_repetitions) {
      row.result = verdict::noisy;
      row.note = "fewer than " + std::to_string(o.min_repetitions) + " repetitions on a side";
    } else if (row.result == verdict::noisy) {
      const double spread = std::max(row.spread_base, row.spread_next);
      row.note = spread > row.threshold
                     ? "spread " + format_percent(spread, false) + " > threshold"
                     : "change not significant (p " + format_p(row.p_value) + ")";
    }
    c.rows.push_back(std::move(row));
  }
  return c;
}

namespace {
std::string headline(const comparison& c) {
  std::ostringstream s;
  s << c.count(verdict::slower) << " slower, " << c.count(verdict::faster) << " faster, "
    << c.count(verdict::unchanged) << " unchanged, " << c.count(verdict::noisy) << " too noisy";
  return s.str();
}
}  // namespace

std::string to_text(const comparison& c) {
  std::vector<std::vector<std::string>> table;
  table.push_back({"benchmark", "base", "new", "change", "p", "spread", "threshold", "verdict"});
  for (const auto& r : c.rows) {
    table.push_back({r.name, format_value(c, r.base.median), format_value(c, r.next.median),
                     format_percent(r.change, true), format_p(r.p_value),
                     format_percent(std::max(r.spread_base, r.spread_next), false),
                     format_percent(r.threshold, false),
                     to_string(r.result) + (r.note.empty() ? "" : " (" + r.note + ")")});
  }
  std::vector<std::size_t> width(table[0].size(), 0);
  for (const auto& row : table) {
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::ostringstream s;
  for (const auto& row : table) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      s << row[i];
      if (i + 1 < row.size()) s << std::string(width[i] - row[i].size() + 2, ' ');
    }
    s << "\n";
  }
  if (c.reference_change) {
    s << "normalized by " << c.reference_name
      << " (its own change: " << format_percent(*c.reference_change, true) << ")\n";
  }
  for (const auto& d : c.environment) {
    s << "environment: " << d.field << " '" << d.base << "' vs '" << d.next << "'"
      << (d.blocking ? " (differs; compared anyway)" : "") << "\n";
  }
  for (const auto& n : c.only_in_base) s << "only in base: " << n << "\n";
  for (const auto& n : c.only_in_next) s << "only in new: " << n << "\n";
  s << headline(c) << (c.regressed() ? ": REGRESSION" : "") << "\n";
  return s.str();
}

std::string to_markdown(const comparison& c) {
  std::ostringstream s;
  s << "### ridgeline compare: " << headline(c) << "\n\n";
  s << (c.regressed() ? "**Regression**: " : "No regression: ") << "`" << c.next_source
    << "` against `" << c.base_source << "`; Mann-Whitney U over the repetitions, alpha "
    << c.options.alpha << ", default threshold " << format_percent(c.options.threshold, false)
    << ".\n\n";
  s << "| benchmark | base median | new median | change | p | spread | threshold | verdict |\n";
  s << "|---|---:|---:|---:|---:|---:|---:|---|\n";
  for (const auto& r : c.rows) {
    const std::string v = to_string(r.result);
    s << "| `" << r.name << "` | " << format_value(c, r.base.median) << " | "
      << format_value(c, r.next.median) << " | " << format_percent(r.change, true) << " | "
      << format_p(r.p_value) << " | "
      << format_percent(std::max(r.spread_base, r.spread_next), false) << " | "
      << format_percent(r.threshold, false) << " | "
      << (r.result == verdict::slower || r.result == verdict::faster ? "**" + v + "**" : v)
      << (r.note.empty() ? "" : " (" + r.note + ")") << " |\n";
  }
  if (c.reference_change) {
    s << "\nTimes are relative to `" << c.reference_name
      << "` of the same run (its own change: " << format_percent(*c.reference_change, true)
      << "), so a faster or slower machine cancels out.\n";
  }
  if (!c.environment.empty() || !c.only_in_base.empty() || !c.only_in_next.empty()) s << "\n";
  for (const auto& d : c.environment) {
    s << "- environment `" << d.field << "`: `" << d.base << "` vs `" << d.next << "`"
      << (d.blocking ? " (**differs; compared anyway**)" : "") << "\n";
  }
  for (const auto& n : c.only_in_base) s << "- only in base: `" << n << "`\n";
  for (const auto& n : c.only_in_next) s << "- only in new: `" << n << "`\n";
  s << "\nVerdicts: slower/faster need p < alpha and a median change above both the threshold and "
       "the spread (IQR / median); too noisy when the spread exceeds the threshold or a large "
       "change is not significant.\n";
  return s.str();
}

json to_json(const comparison& c) {
  json rows = json::array();
  for (const auto& r : c.rows) {
    rows.push_back({{"name", r.name},
                    {"base", to_json(r.base)},
                    {"new", to_json(r.next)},
                    {"change", r.change},
                    {"p_value", r.p_value},
                    {"test", r.test},
                    {"threshold", r.threshold},
                    {"spread_base", r.spread_base},
                    {"spread_new", r.spread_next},
                    {"verdict", to_string(r.result)},
                    {"note", r.note}});
  }
  json env = json::array();
  for (const auto& d : c.environment) {
    env.push_back(
        {{"field", d.field}, {"base", d.base}, {"new", d.next}, {"blocking", d.blocking}});
  }
  json j = {{"schema", "ridgeline.compare/v1"},
            {"base", c.base_source},
            {"new", c.next_source},
            {"regressed", c.regressed()},
            {"counts",
             {{"slower", c.count(verdict::slower)},
              {"faster", c.count(verdict::faster)},
              {"unchanged", c.count(verdict::unchanged)},
              {"too_noisy", c.count(verdict::noisy)}}},
            {"options",
             {{"threshold", c.options.threshold},
              {"thresholds", c.options.thresholds},
              {"alpha", c.options.alpha}}},
            {"rows", rows},
            {"environment_differences", env},
            {"only_in_base", c.only_in_base},
            {"only_in_new", c.only_in_next}};
  if (c.reference_change) {
    j["normalized_by"] = {{"name", c.reference_name}, {"change", *c.reference_change}};
  }
  return j;
}

}  // namespace ridgeline::bench
