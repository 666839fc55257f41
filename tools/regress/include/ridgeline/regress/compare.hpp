// `ridgeline compare BASE NEW`: per benchmark the median change, a Mann-Whitney U test over the
// repetitions and a verdict; an environment check that refuses to compare results taken on
// different GPUs, drivers, clocks or build types; text, Markdown (for a CI comment) and JSON.
//
// Verdict rules (docs/compare.md), with change = median(new) / median(base) - 1 (times: > 0 is
// slower), spread = IQR / median of a side, t = the benchmark's threshold:
//   slower / faster  p < alpha AND |change| > t AND |change| > the larger spread
//   too noisy        otherwise, when either side's spread > t, when |change| > t without
//                    significance, or when a side has fewer than 3 repetitions
//   unchanged        otherwise
// Summary-only data (a ridgeline measurement without samples) uses a z test on the medians with
// the standard errors the summary carries instead of the U test.
//
// Benchmarks whose samples are one value per request (serving results: serving/<row>/ttft, ...)
// also get their percentiles compared: for q in p50, p90, p99 (and any percentile a threshold
// names), change = quantile(new, q) / quantile(base, q) - 1, with core's one quantile (linear
// interpolation). An optional gate fails when any |change| exceeds its percentile's threshold.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/regress/results.hpp"

namespace ridgeline::bench {

enum class verdict { faster, slower, unchanged, noisy };
std::string to_string(verdict v);  // "faster", "slower", "unchanged", "too noisy"

// How the serving rows of two results are paired (their benchmarks are serving/<row>/<metric>):
//   automatic  by label, except that when each side holds exactly one serving row those two are
//              paired whatever their labels (a replay's "engine pool" with a load run's "trace")
//   label      by label only
//   order      the i-th serving row of BASE with the i-th of NEW (each side the same number)
// A NEW row paired with a BASE row of another label is compared under the BASE row's names.
enum class row_pairing { automatic, label, order };
row_pairing parse_row_pairing(const std::string& text);  // "auto" | "label" | "order"
std::string to_string(row_pairing p);

// Percentiles reported for every per-request benchmark, besides any a threshold names.
inline constexpr double k_reported_quantiles[] = {0.5, 0.9, 0.99};
std::string percentile_label(double quantile);  // 0.5 -> "p50", 0.999 -> "p99.9"

struct compare_options {
  double threshold = 0.05;  // relative median change that counts (0.05 = 5 %)
  // Per-benchmark thresholds: exact names, or glob patterns (* and ?); an exact name wins, then the
  // longest matching pattern.
  std::map<std::string, double> thresholds;
  double alpha = 0.05;              // significance level of the test
  std::size_t min_repetitions = 3;  // fewer on a side: too noisy to tell
  bool allow_environment_mismatch = false;
  bool allow_missing = false;  // benchmarks present on one side only are listed, not an error
  // Divide every benchmark's times by this benchmark's median of the same file, so that a faster
  // or slower machine cancels out; the reference itself gets no verdict.
  std::optional<std::string> normalize_by;
  std::optional<std::string> filter;  // glob on benchmark names; others are ignored
  row_pairing pair_rows = row_pairing::automatic;
  // Percentile gate over per-request benchmarks: quantile (0.99) -> the largest |change| allowed.
  std::map<double, double> percentile_thresholds;
};

// One percentile of a per-request benchmark on both sides.
struct percentile_change {
  double quantile = 0;  // 0.5, 0.9, 0.99, ...
  double base = 0;
  double next = 0;
  double change = 0;                // next / base - 1 (infinite when only base is 0)
  std::optional<double> threshold;  // from compare_options::percentile_thresholds
  bool exceeded = false;            // |change| > threshold
};

struct benchmark_comparison {
  std::string name;
  summary base;
  summary next;
  double change = 0;  // median(new) / median(base) - 1
  double p_value = 1;
  std::string test;  // "mann-whitney exact", "mann-whitney normal", "z on medians"
  double threshold = 0;
  double spread_base = 0;  // IQR / median
  double spread_next = 0;
  verdict result = verdict::unchanged;
  std::string note;  // why it is too noisy, an error the benchmark reported, ...
  // Per-request benchmarks (serving results) only: the reported and gated percentiles, ascending.
  std::vector<percentile_change> percentiles;
};

struct environment_difference {
  std::string field;  // dotted path, e.g. gpu.name
  std::string base;
  std::string next;
  bool blocking = true;  // false: reported only (e.g. host name, current clocks)
};

struct comparison {
  std::string base_source;
  std::string next_source;
  std::vector<benchmark_comparison> rows;  // in name order
  std::vector<environment_difference> environment;
  std::vector<std::string> only_in_base;
  std::vector<std::string> only_in_next;
  std::optional<double> reference_change;  // the normalize_by benchmark's raw median change
  std::string reference_name;
  // Serving rows paired across labels: (BASE row, NEW row), compared under the BASE row's names.
  std::vector<std::pair<std::string, std::string>> row_pairs;
  std::vector<std::string> notes;  // e.g. why GPU differences were not enforced
  // The percentile gate's failures, "serving/trace/ttft p99 +12.1% > 10%"; empty: passed.
  std::vector<std::string> percentile_failures;
  compare_options options;

  int count(verdict v) const;
  bool regressed() const { return count(verdict::slower) > 0; }
  bool percentile_gate_failed() const { return !percentile_failures.empty(); }
};

// Environment fields that must match (gpu.name, gpu.driver_version, max clocks, build type, ...)
// and informative ones that may differ; the result lists every field that differs.
std::vector<environment_difference> environment_differences(const nlohmann::json& base,
                                                            const nlohmann::json& next);

// Threshold of `name` under `o` (exact name, longest glob, else the global threshold).
double threshold_for(const compare_options& o, const std::string& name);
bool glob_match(const std::string& pattern, const std::string& text);

// Compares two result sets. Throws std::invalid_argument when the environments differ in a
// blocking field (unless allowed; GPU fields never block when a side is a load run, whose
// environment is the client's), when the benchmark sets differ (unless allowed) or share
// nothing, when normalize_by names a benchmark a side lacks, when rows cannot be paired as asked,
// or when percentile thresholds are given and no compared benchmark has per-request samples.
comparison compare_results(const result_set& base, const result_set& next,
                           const compare_options& o);

// Verdict from the numbers (exposed for tests): see the rules at the top of this file.
verdict decide(double change, double p_value, double spread_base, double spread_next,
               double threshold, double alpha);

std::string to_text(const comparison& c);      // aligned table for a terminal
std::string to_markdown(const comparison& c);  // summary line, table, environment, notes
nlohmann::json to_json(const comparison& c);

}  // namespace ridgeline::bench
