// `ridgeline history`: add results to the SQLite history, show trends (table or chart data) with
// change points, export the newest points to a Prometheus pushgateway (docs/compare.md). The
// trend and the export are tools/regress (trend.hpp, history.hpp); this file parses and prints.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/regress/compare.hpp"
#include "ridgeline/regress/history.hpp"
#include "ridgeline/regress/trend.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::cli {
namespace {

std::string default_db() {
  const char* env = std::getenv("RIDGELINE_HISTORY");
  return env != nullptr && *env != '\0' ? env : "ridgeline-history.db";
}

std::string env_or(const char* a, const char* b, const std::string& fallback) {
  for (const char* name : {a, b}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return v;
  }
  return fallback;
}

struct history_args {
  std::string db = default_db();
  int busy_timeout_ms = 5000;
  // add
  std::vector<std::string> files;
  std::string sha, branch, time, metric = "auto";
  // show / export
  std::string benchmark = "*";
  std::string branch_filter;
  std::size_t last = 0;
  bool json = false;
  std::string output;
  double threshold = 0.05;
  bool fail_on_change_point = false;
  std::string pushgateway;
  std::string job = "ridgeline_history";
  bool print = false;
};

void run_add(const history_args& a, context& ctx) {
  const auto metric = bench::parse_time_metric(a.metric);
  // Every file is read and checked before the history is touched.
  std::vector<bench::result_set> sets;
  for (const auto& f : a.files) sets.push_back(bench::load_results(f, metric));
  bench::history h(a.db, {false, a.busy_timeout_ms});
  for (const auto& r : sets) {
    bench::run_info info;
    info.git_sha = !a.sha.empty() ? a.sha : !r.git_sha.empty() ? r.git_sha : "unknown";
    info.branch =
        !a.branch.empty() ? a.branch : env_or("GITHUB_REF_NAME", "CI_COMMIT_REF_NAME", "unknown");
    info.time_utc = !a.time.empty()                    ? a.time
                    : bench::parse_iso8601(r.time_utc) ? r.time_utc
                                                       : metrics::utc_now_iso8601();
    const auto id = h.add(r, info);
    ctx.out << "added " << r.source << " as run " << id << " (" << r.benchmarks.size()
            << " benchmarks, sha " << info.git_sha << ", branch " << info.branch << ", "
            << info.time_utc << ") to " << a.db << "\n";
  }
}

void run_show(const history_args& a, context& ctx) {
  if (!a.output.empty()) check_writable(a.output);
  bench::history h(a.db, {true, a.busy_timeout_ms});
  const bench::trend t =
      bench::history_trend(h, {a.benchmark, a.branch_filter, a.last, a.threshold});
  const std::string chart_text = t.chart.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, chart_text);
  ctx.out << (a.json ? chart_text : t.table);
  if (a.fail_on_change_point && t.recent_change) {
    throw regression_found("a change point was detected in the newest runs");
  }
}

void run_export(const history_args& a, context& ctx) {
  bench::history h(a.db, {true, a.busy_timeout_ms});
  bench::change_point_options cpo;
  cpo.threshold = a.threshold;
  const auto points = bench::latest_points(h, a.branch_filter, cpo);
  if (points.empty()) throw std::invalid_argument("history " + a.db + ": nothing to export");
  if (a.print || a.pushgateway.empty()) {
    ctx.out << bench::latest_points_text(points);
    if (a.pushgateway.empty()) return;
  }
  bench::push_latest_points(points, a.pushgateway, a.job);
  ctx.out << "pushed " << points.size() << " benchmarks to " << a.pushgateway << " (job " << a.job
          << ")\n";
}

}  // namespace

void register_history(CLI::App& app, context& ctx) {
  auto a = std::make_shared<history_args>();
  auto* cmd = app.add_subcommand("history", "Results history in SQLite: add, show trends, export");
  cmd->require_subcommand(1);
  cmd->fallthrough();
  cmd->add_option("--db", a->db,
                  "History file (default $RIDGELINE_HISTORY or ridgeline-history.db)")
      ->capture_default_str();
  cmd->add_option("--busy-timeout", a->busy_timeout_ms,
                  "Milliseconds to wait for another writer before giving up")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  cmd->footer(
      "Examples:\n"
      "  ridgeline history add out/ci.json --branch main\n"
      "  ridgeline history show --benchmark 'BM_engine_*' --last 50\n"
      "  ridgeline history show --json -o trend.json     chart data (x, y, change points)\n"
      "  ridgeline history export --pushgateway http://localhost:9091");

  auto* add = cmd->add_subcommand("add", "Add result files, each as one run (one transaction)");
  add->fallthrough();
  add->add_option("FILES", a->files,
                  "Google Benchmark JSON or ridgeline result files (serving results of replay and "
                  "load included: serving/<row>/ttft, tpot, e2e, seconds_per_output_token)")
      ->required();
  add->add_option("--sha", a->sha, "Git sha (default: the result's environment)");
  add->add_option("--branch", a->branch, "Branch (default $GITHUB_REF_NAME, $CI_COMMIT_REF_NAME)");
  add->add_option("--time", a->time, "Run time, ISO 8601 (default: the result's time)");
  add->add_option("--metric", a->metric,
                  "Google Benchmark time: auto (real_time for /manual_time and /real_time "
                  "benchmarks, else cpu_time), real_time or cpu_time")
      ->capture_default_str();
  add->callback([a, &ctx] { run_add(*a, ctx); });

  auto* show = cmd->add_subcommand("show", "Trend per benchmark with change points");
  show->fallthrough();
  show->add_option("--benchmark", a->benchmark, "Glob on benchmark names")->capture_default_str();
  show->add_option("--branch", a->branch_filter, "Only runs of this branch");
  show->add_option("--last", a->last, "Only the newest N runs");
  show->add_option("--threshold", a->threshold, "Relative change that matters (change points)")
      ->check(CLI::Range(1e-6, 10.0))
      ->capture_default_str();
  show->add_flag("--json", a->json, "Print chart data (JSON) instead of the table");
  show->add_option("-o,--output", a->output, "Write the chart data (JSON) here");
  show->add_flag("--fail-on-change-point", a->fail_on_change_point,
                 "Exit 1 when a change point is detected in the newest runs");
  show->callback([a, &ctx] { run_show(*a, ctx); });

  auto* exp =
      cmd->add_subcommand("export", "Push the newest point of each benchmark to a pushgateway");
  exp->fallthrough();
  exp->add_option("--pushgateway", a->pushgateway, "Pushgateway URL, e.g. http://localhost:9091");
  exp->add_option("--job", a->job, "Pushgateway job name")->capture_default_str();
  exp->add_option("--branch", a->branch_filter, "Only runs of this branch");
  exp->add_option("--threshold", a->threshold, "Relative change that matters (change points)")
      ->check(CLI::Range(1e-6, 10.0))
      ->capture_default_str();
  exp->add_flag("--print", a->print,
                "Print the exposition text (without --pushgateway: only print)");
  exp->callback([a, &ctx] { run_export(*a, ctx); });
}

}  // namespace ridgeline::cli
