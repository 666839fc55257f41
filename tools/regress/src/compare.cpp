// Comparing two result sets (see compare.hpp).
#include "ridgeline/regress/compare.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
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

row_pairing parse_row_pairing(const std::string& text) {
  if (text == "auto") return row_pairing::automatic;
  if (text == "label") return row_pairing::label;
  if (text == "order") return row_pairing::order;
  throw std::invalid_argument("--pair-rows: unknown rule '" + text +
                              "' (use auto, label or order)");
}

std::string to_string(row_pairing p) {
  switch (p) {
    case row_pairing::automatic:
      return "auto";
    case row_pairing::label:
      return "label";
    case row_pairing::order:
      return "order";
  }
  return "unknown";
}

std::string percentile_label(double quantile) { return "p" + format("%g", quantile * 100); }

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

// Serving rows of NEW paired with BASE rows of another label under `mode` (see row_pairing):
// (BASE key, NEW key) for each pair whose keys differ.
std::vector<std::pair<std::string, std::string>> paired_rows(const result_set& base,
                                                             const result_set& next,
                                                             row_pairing mode) {
  std::vector<std::pair<std::string, std::string>> pairs;
  const auto& b = base.serving_rows;
  const auto& n = next.serving_rows;
  if (mode == row_pairing::order) {
    if (b.empty() || b.size() != n.size()) {
      throw std::invalid_argument("--pair-rows order: " + base.source + " has " +
                                  std::to_string(b.size()) + " serving rows and " + next.source +
                                  " has " + std::to_string(n.size()) +
                                  " (pairing by order needs the same number, at least one)");
    }
  } else if (mode == row_pairing::label || b.size() != 1 || n.size() != 1) {
    return pairs;
  }
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i].key != n[i].key) pairs.emplace_back(b[i].key, n[i].key);
  }
  return pairs;
}

// NEW with each paired row's benchmarks renamed to the BASE row's names (all taken out first,
// so that rows trading labels do not collide).
result_set renamed_rows(const result_set& next,
                        const std::vector<std::pair<std::string, std::string>>& pairs) {
  result_set out = next;
  std::map<std::string, benchmark_series> moved;
  for (auto& row : out.serving_rows) {
    const auto it = std::find_if(pairs.begin(), pairs.end(),
                                 [&](const auto& p) { return p.second == row.key; });
    if (it == pairs.end()) continue;
    for (const auto& metric : row.metrics) {
      auto node = out.benchmarks.extract(serving_benchmark_name(row.key, metric));
      moved[serving_benchmark_name(it->first, metric)] = std::move(node.mapped());
    }
    row.key = it->first;
  }
  for (auto& [name, s] : moved) {
    if (out.benchmarks.count(name)) {
      throw std::invalid_argument(next.source + ": pairing rows by --pair-rows would give two '" +
                                  name + "'");
    }
    out.benchmarks[name] = std::move(s);
  }
  return out;
}

// p50, p90, p99 and every percentile a threshold names, ascending.
std::vector<double> compared_quantiles(const compare_options& o) {
  std::vector<double> qs(std::begin(k_reported_quantiles), std::end(k_reported_quantiles));
  for (const auto& [q, t] : o.percentile_thresholds) {
    if (std::find(qs.begin(), qs.end(), q) == qs.end()) qs.push_back(q);
  }
  std::sort(qs.begin(), qs.end());
  return qs;
}

std::vector<percentile_change> percentile_changes(const benchmark_series& b,
                                                  const benchmark_series& n,
                                                  const compare_options& o) {
  const std::vector<double> qs = compared_quantiles(o);
  const std::vector<double> vb = quantiles(b.seconds, qs);
  const std::vector<double> vn = quantiles(n.seconds, qs);
  std::vector<percentile_change> out;
  for (std::size_t i = 0; i < qs.size(); ++i) {
    percentile_change p;
    p.quantile = qs[i];
    p.base = vb[i];
    p.next = vn[i];
    p.change = vb[i] > 0        ? vn[i] / vb[i] - 1.0
               : vn[i] == vb[i] ? 0.0
                                : std::numeric_limits<double>::infinity();
    if (const auto it = o.percentile_thresholds.find(qs[i]); it != o.percentile_thresholds.end()) {
      p.threshold = it->second;
      p.exceeded = !(std::abs(p.change) <= it->second);
    }
    out.push_back(p);
  }
  return out;
}

std::string format_change(double change) {
  return std::isfinite(change) ? format_percent(change, true) : std::string("n/a (base 0)");
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

comparison compare_results(const result_set& base, const result_set& next_as_read,
                           const compare_options& o) {
  if (!(o.threshold > 0) || !(o.alpha > 0 && o.alpha < 1)) {
    throw std::invalid_argument("threshold must be > 0 and alpha in (0, 1)");
  }
  for (const auto& [pattern, t] : o.thresholds) {
    if (!(t > 0)) throw std::invalid_argument("threshold for '" + pattern + "' must be > 0");
  }
  for (const auto& [q, t] : o.percentile_thresholds) {
    if (!(q > 0 && q < 1) || !(t > 0)) {
      throw std::invalid_argument("percentile threshold " + percentile_label(q) +
                                  " must be for a percentile in (0, 100) and > 0");
    }
  }
  comparison c;
  c.base_source = base.source;
  c.next_source = next_as_read.source;
  c.options = o;
  c.row_pairs = paired_rows(base, next_as_read, o.pair_rows);
  result_set renamed;
  if (!c.row_pairs.empty()) renamed = renamed_rows(next_as_read, c.row_pairs);
  const result_set& next = c.row_pairs.empty() ? next_as_read : renamed;
  for (const auto& [b, n] : c.row_pairs) {
    c.notes.push_back("serving row '" + n + "' of NEW compared with row '" + b +
                      "' of BASE, under BASE's names (--pair-rows " + to_string(o.pair_rows) +
                      ")");
  }
  c.environment = environment_differences(base.environment, next.environment);
  // A load run's environment is its client's host: its GPU (or none), build and compiler say
  // nothing of the server that produced the tokens, so differences are reported, not enforced.
  if (base.client_environment || next.client_environment) {
    bool relaxed = false;
    for (auto& d : c.environment) {
      if (d.blocking) {
        d.blocking = false;
        relaxed = true;
      }
    }
    if (relaxed) {
      c.notes.push_back(
          "environment differences are not enforced: a load run's environment is its client's "
          "host, not the server's");
    }
  }
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
    if (b.per_request && n.per_request && !b.summary_only && !n.summary_only) {
      row.percentiles = percentile_changes(b, n, o);
      for (const auto& p : row.percentiles) {
        if (!p.exceeded) continue;
        c.percentile_failures.push_back(name + " " + percentile_label(p.quantile) + " " +
                                        format_change(p.change) + " > " +
                                        format_percent(*p.threshold, false));
      }
    }
    c.rows.push_back(std::move(row));
  }
  if (!o.percentile_thresholds.empty() &&
      std::none_of(c.rows.begin(), c.rows.end(),
                   [](const auto& r) { return !r.percentiles.empty(); })) {
    throw std::invalid_argument(
        "percentile thresholds need per-request samples (serving results of replay or load), and "
        "no compared benchmark has them" +
        std::string(o.filter ? " (after --filter)" : ""));
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

// Columns padded to their widest cell, two spaces apart.
std::string aligned(const std::vector<std::vector<std::string>>& table) {
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
  return s.str();
}

bool any_percentiles(const comparison& c) {
  return std::any_of(c.rows.begin(), c.rows.end(),
                     [](const auto& r) { return !r.percentiles.empty(); });
}

// A percentile's change, marked when it breaks its threshold.
std::string percentile_cell(const percentile_change& p) {
  return format_change(p.change) + (p.exceeded ? " (> " + format_percent(*p.threshold) + ")" : "");
}

std::string joined(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& x : items) s += (s.empty() ? "" : "; ") + x;
  return s;
}

std::string gate_thresholds(const comparison& c) {
  std::string s;
  for (const auto& [q, t] : c.options.percentile_thresholds) {
    s += (s.empty() ? "" : ", ") + percentile_label(q) + " " + format_percent(t, false);
  }
  return s;
}

}  // namespace

std::string to_text(const comparison& c) {
  const bool percentiles = any_percentiles(c);
  const std::vector<double> qs = compared_quantiles(c.options);
  std::vector<std::vector<std::string>> table;
  table.push_back({"benchmark", "base", "new", "change", "p", "spread", "threshold", "verdict"});
  if (percentiles) {
    for (double q : qs) table[0].push_back(percentile_label(q));
  }
  for (const auto& r : c.rows) {
    table.push_back({r.name, format_value(c, r.base.median), format_value(c, r.next.median),
                     format_percent(r.change, true), format_p(r.p_value),
                     format_percent(std::max(r.spread_base, r.spread_next), false),
                     format_percent(r.threshold, false),
                     to_string(r.result) + (r.note.empty() ? "" : " (" + r.note + ")")});
    if (!percentiles) continue;
    for (std::size_t i = 0; i < qs.size(); ++i) {
      table.back().push_back(r.percentiles.empty() ? "-" : percentile_cell(r.percentiles[i]));
    }
  }
  std::ostringstream s;
  s << aligned(table);
  if (percentiles) {
    s << "\npercentiles over requests (change = new / base - 1; quantiles by linear "
         "interpolation):\n";
    std::vector<std::vector<std::string>> values;
    values.push_back({"benchmark", "requests base/new"});
    for (double q : qs) {
      values[0].push_back(percentile_label(q) + " base");
      values[0].push_back(percentile_label(q) + " new");
    }
    for (const auto& r : c.rows) {
      if (r.percentiles.empty()) continue;
      values.push_back(
          {r.name, std::to_string(r.base.count) + " / " + std::to_string(r.next.count)});
      for (const auto& p : r.percentiles) {
        values.back().push_back(format_value(c, p.base));
        values.back().push_back(format_value(c, p.next));
      }
    }
    s << aligned(values);
  }
  if (c.reference_change) {
    s << "normalized by " << c.reference_name
      << " (its own change: " << format_percent(*c.reference_change, true) << ")\n";
  }
  for (const auto& d : c.environment) {
    s << "environment: " << d.field << " '" << d.base << "' vs '" << d.next << "'"
      << (d.blocking ? " (differs; compared anyway)" : "") << "\n";
  }
  for (const auto& n : c.notes) s << "note: " << n << "\n";
  for (const auto& n : c.only_in_base) s << "only in base: " << n << "\n";
  for (const auto& n : c.only_in_next) s << "only in new: " << n << "\n";
  if (!c.options.percentile_thresholds.empty()) {
    s << "percentile gate (" << gate_thresholds(c) << "): ";
    s << (c.percentile_gate_failed() ? "FAILED: " + joined(c.percentile_failures) : "passed")
      << "\n";
  }
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
  if (any_percentiles(c)) {
    const std::vector<double> qs = compared_quantiles(c.options);
    s << "\nPercentiles over requests (change = new / base - 1):\n\n"
      << "| benchmark | requests base / new |";
    std::string rule = "|---|---:|";
    for (double q : qs) {
      s << " " << percentile_label(q) << " base | " << percentile_label(q) << " new | "
        << percentile_label(q) << " change |";
      rule += "---:|---:|---:|";
    }
    s << "\n" << rule << "\n";
    for (const auto& r : c.rows) {
      if (r.percentiles.empty()) continue;
      s << "| `" << r.name << "` | " << r.base.count << " / " << r.next.count << " |";
      for (const auto& p : r.percentiles) {
        const std::string cell = percentile_cell(p);
        s << " " << format_value(c, p.base) << " | " << format_value(c, p.next) << " | "
          << (p.exceeded ? "**" + cell + "**" : cell) << " |";
      }
      s << "\n";
    }
  }
  if (!c.options.percentile_thresholds.empty()) {
    s << "\nPercentile gate (" << gate_thresholds(c) << "): "
      << (c.percentile_gate_failed() ? "**failed**: " + joined(c.percentile_failures) : "passed")
      << ".\n";
  }
  if (c.reference_change) {
    s << "\nTimes are relative to `" << c.reference_name
      << "` of the same run (its own change: " << format_percent(*c.reference_change, true)
      << "), so a faster or slower machine cancels out.\n";
  }
  if (!c.environment.empty() || !c.notes.empty() || !c.only_in_base.empty() ||
      !c.only_in_next.empty()) {
    s << "\n";
  }
  for (const auto& d : c.environment) {
    s << "- environment `" << d.field << "`: `" << d.base << "` vs `" << d.next << "`"
      << (d.blocking ? " (**differs; compared anyway**)" : "") << "\n";
  }
  for (const auto& n : c.notes) s << "- note: " << n << "\n";
  for (const auto& n : c.only_in_base) s << "- only in base: `" << n << "`\n";
  for (const auto& n : c.only_in_next) s << "- only in new: `" << n << "`\n";
  s << "\nVerdicts: slower/faster need p < alpha and a median change above both the threshold and "
       "the spread (IQR / median); too noisy when the spread exceeds the threshold or a large "
       "change is not significant.\n";
  return s.str();
}

json to_json(const comparison& c) {
  // JSON has no infinity: a change against a base of 0 is null.
  auto finite_or_null = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  json rows = json::array();
  for (const auto& r : c.rows) {
    json percentiles = json::array();
    for (const auto& p : r.percentiles) {
      percentiles.push_back({{"percentile", percentile_label(p.quantile)},
                             {"quantile", p.quantile},
                             {"base", p.base},
                             {"new", p.next},
                             {"change", finite_or_null(p.change)},
                             {"threshold", p.threshold ? json(*p.threshold) : json(nullptr)},
                             {"exceeded", p.exceeded}});
    }
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
    if (!r.percentiles.empty()) rows.back()["percentiles"] = percentiles;
  }
  json pairs = json::array();
  for (const auto& [b, n] : c.row_pairs) pairs.push_back({{"base", b}, {"new", n}});
  json gate_thresholds = json::object();
  for (const auto& [q, t] : c.options.percentile_thresholds) {
    gate_thresholds[percentile_label(q)] = t;
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
              {"alpha", c.options.alpha},
              {"pair_rows", to_string(c.options.pair_rows)},
              {"percentile_thresholds", gate_thresholds}}},
            {"rows", rows},
            {"row_pairs", pairs},
            {"notes", c.notes},
            {"environment_differences", env},
            {"only_in_base", c.only_in_base},
            {"only_in_new", c.only_in_next}};
  if (c.reference_change) {
    j["normalized_by"] = {{"name", c.reference_name}, {"change", *c.reference_change}};
  }
  if (!c.options.percentile_thresholds.empty()) {
    j["percentile_gate"] = {{"thresholds", gate_thresholds},
                            {"passed", !c.percentile_gate_failed()},
                            {"failures", c.percentile_failures}};
  }
  return j;
}

}  // namespace ridgeline::bench
