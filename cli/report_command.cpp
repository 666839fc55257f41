// `ridgeline report RESULTS... -o report.html`: one self-contained HTML page with the charts of
// the given result files (GPU profiles, rooflines, sweeps, KV runs, replays and loads over HTTP,
// find-max searches, serving accuracy, plans, divergence audits).
// Needs Debian's libjs-chart.js at run time (inlined into the page). docs/report.md.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/report/report.hpp"

namespace ridgeline::cli {
namespace {

struct report_args {
  std::vector<std::string> inputs;
  std::string output = "report.html";
  std::string title = "ridgeline report";
  std::string chart_js;
  std::string data;
  double slo_tpot_ms = 50;
  bool json = false;
};

void run_report_command(const report_args& a, context& ctx) {
  if (a.inputs.empty()) throw std::invalid_argument("report: give at least one result file");
  if (!(a.slo_tpot_ms > 0)) throw std::invalid_argument("--slo-tpot-ms must be positive");
  if (a.output.empty()) throw std::invalid_argument("report: -o must name the HTML file to write");
  check_writable(a.output);
  if (!a.data.empty()) check_writable(a.data);
  // The chart library first: a missing package is the likeliest failure and the cheapest check.
  const std::string chart_js = report::load_chart_js(a.chart_js);
  std::vector<report::input_file> inputs;
  for (const auto& path : a.inputs) inputs.push_back(report::load_input(path));
  report::report_options o;
  o.title = a.title;
  o.slo_tpot_seconds = a.slo_tpot_ms * 1e-3;
  const nlohmann::json data = report::build_report_data(inputs, o);
  const std::string html = report::render_html(data, chart_js);
  write_atomically(a.output, html);
  if (!a.data.empty()) write_atomically(a.data, data.dump(2) + "\n");

  const std::string where = std::filesystem::absolute(a.output).lexically_normal().string();
  nlohmann::json sections = nlohmann::json::object();
  for (const char* k : {"roofline", "working_set", "sweeps", "kv", "serving", "serving_latency",
                        "find_max", "serving_accuracy", "plans", "divergence",
                        "divergence_plots"}) {
    sections[k] = data[k].size();
  }
  if (a.json) {
    ctx.out << nlohmann::json{{"output", where},
                              {"bytes", html.size()},
                              {"sources", data["sources"]},
                              {"sections", sections}}
                   .dump(2)
            << "\n";
    return;
  }
  ctx.out << "report: " << inputs.size() << " result file" << (inputs.size() == 1 ? "" : "s")
          << " -> " << sections["roofline"] << " roofline, " << sections["sweeps"] << " sweep, "
          << sections["kv"] << " kv, " << sections["serving_latency"] << " serving run, "
          << sections["find_max"] << " find-max, " << sections["serving_accuracy"]
          << " serving accuracy, " << sections["plans"] << " plan, " << sections["divergence"]
          << " divergence section(s)\n";
  ctx.out << "report written to " << where << " (" << html.size() / 1024 << " KiB, open it in a "
          << "browser; no network needed)\n";
}

}  // namespace

void register_report(CLI::App& app, context& ctx) {
  auto a = std::make_shared<report_args>();
  auto* cmd = app.add_subcommand(
      "report", "One self-contained HTML page with charts from result files (no network to view)");
  // The schemas listed are the ones load_input accepts, so the help cannot fall behind it.
  std::string schemas;
  for (const auto& id : report::known_schemas()) schemas += "\n  " + id;
  cmd->footer(
      "Examples:\n"
      "  ridgeline report perfmodel/profiles/h100-sxm.json -o report.html\n"
      "  ridgeline report out/gpu-profile.json out/sweep.json out/kv.json --slo-tpot-ms 40 \\\n"
      "      --title 'H100 decode' -o out/report.html\n"
      "  ridgeline report out/*.json --json            (summary as JSON on stdout)\n"
      "Reads result files of these schemas:" +
      schemas +
      "\nNeeds Debian's libjs-chart.js (inlined into the page). What each chart shows: "
      "docs/report.md");
  cmd->add_option("results", a->inputs, "Result JSON files")->required();
  cmd->add_option("-o,--output", a->output, "HTML file to write")->capture_default_str();
  cmd->add_option("--title", a->title, "Page title")->capture_default_str();
  cmd->add_option("--slo-tpot-ms", a->slo_tpot_ms,
                  "TPOT SLO marked on the TPOT chart, ms (a plan's own SLO wins)")
      ->capture_default_str();
  cmd->add_option("--chart-js", a->chart_js,
                  "Chart.js UMD file to inline (default: RIDGELINE_CHART_JS or "
                  "/usr/share/javascript/chart.js/chart.min.js)");
  cmd->add_option("--data", a->data, "Also write the page's data blob as JSON here");
  cmd->add_flag("--json", a->json, "Print a JSON summary instead of the text lines");
  cmd->callback([a, &ctx] { run_report_command(*a, ctx); });
}

}  // namespace ridgeline::cli
