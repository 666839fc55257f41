// `ridgeline compare BASE NEW`: per-benchmark verdicts with statistics; exit 1 when something is
// slower (docs/compare.md).
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/regress/compare.hpp"
#include "ridgeline/regress/compare_inputs.hpp"

namespace ridgeline::cli {
namespace {

struct compare_args {
  std::string base;
  std::string next;
  double threshold = 0.05;
  std::vector<std::string> threshold_for;  // NAME=VALUE
  std::string thresholds_file;
  double alpha = 0.05;
  std::string metric = "auto";
  std::string normalize_by;
  std::string filter;
  std::string pair_rows = "auto";
  std::string percentile_thresholds;  // p50=5%,p90=5%,p99=10%
  bool allow_env_mismatch = false;
  bool allow_missing = false;
  std::string markdown;
  std::string json_output;
  bool json = false;
};

void run_compare_command(const compare_args& a, context& ctx) {
  bench::compare_options o;
  o.threshold = a.threshold;
  o.alpha = a.alpha;
  o.allow_environment_mismatch = a.allow_env_mismatch;
  o.allow_missing = a.allow_missing;
  if (!a.normalize_by.empty()) o.normalize_by = a.normalize_by;
  if (!a.filter.empty()) o.filter = a.filter;
  o.pair_rows = bench::parse_row_pairing(a.pair_rows);
  if (!a.percentile_thresholds.empty()) {
    o.percentile_thresholds = bench::parse_percentile_thresholds(a.percentile_thresholds);
  }
  if (!a.thresholds_file.empty()) o.thresholds = bench::load_thresholds(a.thresholds_file);
  for (const auto& item : a.threshold_for) {
    const auto eq = item.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      throw std::invalid_argument("--threshold-for expects NAME=VALUE, got '" + item + "'");
    }
    o.thresholds[item.substr(0, eq)] =
        bench::parse_threshold(item.substr(eq + 1), "--threshold-for");
  }
  const auto metric = bench::parse_time_metric(a.metric);
  if (!a.markdown.empty()) check_writable(a.markdown);
  if (!a.json_output.empty()) check_writable(a.json_output);
  const auto base = bench::load_result_list(a.base, metric);
  const auto next = bench::load_result_list(a.next, metric);
  const bench::comparison c = bench::compare_results(base, next, o);
  if (!a.markdown.empty()) write_atomically(a.markdown, bench::to_markdown(c));
  if (!a.json_output.empty()) write_atomically(a.json_output, bench::to_json(c).dump(2) + "\n");
  if (a.json)
    ctx.out << bench::to_json(c).dump(2) << "\n";
  else
    ctx.out << bench::to_text(c);
  std::string failed;
  if (c.regressed()) {
    failed =
        std::to_string(c.count(bench::verdict::slower)) + " benchmark(s) slower than " + a.base;
  }
  if (c.percentile_gate_failed()) {
    failed += (failed.empty() ? "" : "; ") + std::string("percentile gate failed: ");
    for (std::size_t i = 0; i < c.percentile_failures.size(); ++i) {
      failed += (i == 0 ? "" : ", ") + c.percentile_failures[i];
    }
  }
  if (!failed.empty()) throw regression_found(failed);
}

}  // namespace

void register_compare(CLI::App& app, context& ctx) {
  auto a = std::make_shared<compare_args>();
  auto* cmd = app.add_subcommand(
      "compare",
      "Compare two result files (Google Benchmark JSON, ridgeline results, serving results of "
      "replay and load); exit 1 when a benchmark got slower");
  cmd->footer(
      "Verdicts: slower/faster when the Mann-Whitney U test over the repetitions gives p < alpha\n"
      "and the median change exceeds the threshold and the spread (IQR/median); too noisy when a\n"
      "side's spread exceeds the threshold. Serving results (ridgeline.kv/v1 of replay and load)\n"
      "give serving/<row>/ttft, tpot, e2e (one sample per request) and seconds_per_output_token;\n"
      "their p50, p90 and p99 changes (new / base - 1) are printed too.\n"
      "Exit codes: 0 no regression, 1 regression or a failed percentile gate, 2 bad input\n"
      "(incl. different environments, benchmark sets that differ), 4 unreadable file.\n"
      "Examples:\n"
      "  ridgeline compare base.json new.json\n"
      "  ridgeline compare base.json new.json --threshold 3% --markdown comment.md\n"
      "  ridgeline compare base_ci.json new_ci.json \\\n"
      "      --normalize-by BM_ci_known_cost --thresholds thresholds.json\n"
      "  ridgeline compare replay.json.gz load.json.gz --percentile-thresholds "
      "p50=5%,p90=5%,p99=10%");
  cmd->add_option("BASE", a->base, "Baseline result file (a,b.json: files of one run, merged)")
      ->required();
  cmd->add_option("NEW", a->next, "New result file (a,b.json: files of one run, merged)")
      ->required();
  cmd->add_option("-t,--threshold", a->threshold, "Relative median change that counts (0.05 or 5%)")
      ->transform(
          [](std::string s) { return std::to_string(bench::parse_threshold(s, "--threshold")); })
      ->capture_default_str();
  cmd->add_option("--threshold-for", a->threshold_for,
                  "Per-benchmark threshold NAME=VALUE (NAME may be a glob; repeatable)");
  cmd->add_option("--thresholds", a->thresholds_file,
                  "JSON file of per-benchmark thresholds {\"name or glob\": 0.1}");
  cmd->add_option("--alpha", a->alpha, "Significance level of the test")->capture_default_str();
  cmd->add_option("--metric", a->metric,
                  "Google Benchmark time: auto (real_time for /manual_time and /real_time "
                  "benchmarks, else cpu_time), real_time or cpu_time")
      ->capture_default_str();
  cmd->add_option(
      "--normalize-by", a->normalize_by,
      "Divide times by this benchmark's median of the same file (cancels machine speed)");
  cmd->add_option("--filter", a->filter, "Only benchmarks whose name matches this glob");
  cmd->add_option("--pair-rows", a->pair_rows,
                  "Pair serving rows by: auto (label; one row on each side: those two), label, "
                  "order")
      ->capture_default_str();
  cmd->add_option("--percentile-thresholds", a->percentile_thresholds,
                  "Exit 1 when a serving benchmark's percentile changes by more, e.g. "
                  "p50=5%,p90=5%,p99=10%");
  cmd->add_flag("--allow-env-mismatch", a->allow_env_mismatch,
                "Compare even when GPU, driver, clocks or build type differ");
  cmd->add_flag("--allow-missing", a->allow_missing,
                "Compare the common benchmarks when the sets differ");
  cmd->add_option("--markdown", a->markdown, "Write a Markdown summary (for a CI comment) here");
  cmd->add_option("--json-output", a->json_output, "Write the comparison as JSON here");
  cmd->add_flag("--json", a->json, "Print the comparison as JSON instead of the table");
  cmd->callback([a, &ctx] { run_compare_command(*a, ctx); });
}

}  // namespace ridgeline::cli
