// `ridgeline replay`: parses the arguments, runs tools/replay (a trace or a generated workload
// served in real time through the engine's serving loop on this GPU, or on the cpu executor with
// the tiny model without one), draws the progress bar and writes the JSON (schema
// ridgeline.kv/v1 with a measured section), the CSV and the table. docs/serving.md.
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.hpp"
#include "engine_options.hpp"
#include "metrics_options.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/replay/replay.hpp"

namespace ridgeline::cli {
namespace {

struct replay_args {
  replay::replay_options o;
  std::string output = "ridgeline-replay.json";
  std::string csv;
  std::string host_memory;
  std::string weights;  // --weights: empty when not given
  bool json = false;
  metrics_options live;
};

void run_replay_command(replay_args& a, context& ctx) {
  a.o.serving.capacities = {kv::capacity_spec{"engine pool", kv::capacity_spec::kind::unlimited, 0}};
  apply_host_memory(a.o, a.host_memory);
  a.o.weights = engine_weights_of(a.weights);
  const replay::replay_setup setup = replay::configure(a.o);
  if (!a.output.empty()) check_writable(a.output);
  if (!a.csv.empty()) check_writable(a.csv);
  metrics_session session(a.live, ctx);
  replay::replay_hooks hooks;
  hooks.note = [&ctx](const std::string& line) { ctx.err << line << "\n" << std::flush; };
  if (progress_bar_wanted(ctx)) {
    hooks.progress = [&ctx](double f) {
      const int width = 30;
      const int filled = static_cast<int>(f * width);
      ctx.err << "\rreplay: [" << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(width - filled), '.') << "] "
              << static_cast<int>(f * 100) << "%   " << std::flush;
    };
  }
  hooks.live = session.live();
  if (hooks.live) session.begin_run();
  const nlohmann::json doc = replay::run(setup, hooks);
  if (hooks.progress) ctx.err << "\n";
  // One line: a replay's per-step series runs to tens of thousands of rows (-o FILE.json.gz
  // compresses it; every reader takes either).
  const std::string text = doc.dump() + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, kv::csv_of(doc.at("rows")));
  if (a.json) {
    ctx.out << text;
    // stdout stays one JSON document; what the run left out still reaches the user.
    for (const auto& line : replay::drop_lines(setup, doc)) ctx.err << line << "\n";
  } else {
    if (auto w = replay::window_line(setup)) ctx.out << *w << "\n\n";
    ctx.out << replay::table_of(doc);
    if (!a.output.empty()) ctx.out << "results written to " << a.output << "\n";
  }
  ctx.out << std::flush;
  session.finish();
}

}  // namespace

void register_replay(CLI::App& app, context& ctx) {
  auto args = std::make_shared<replay_args>();
  auto& o = args->o;
  auto& k = o.serving;
  auto* cmd = app.add_subcommand(
      "replay", "Serve a trace in real time on this GPU: batch, KV use, hit rates, latencies");
  cmd->footer(
      "Examples:\n"
      "  ridgeline replay --trace data/traces/azure_llm_2023_conv.csv --duration 240\n"
      "  ridgeline replay --trace data/traces/mooncake_synthetic_trace.jsonl --duration 180 \\\n"
      "      --block-size 16 --mooncake-block 512\n"
      "  ridgeline replay --generator requests=64,rate=1000,prompt=fixed:448,output=fixed:128\n"
      "  ridgeline replay --generator requests=64,rate=1000,prompt=fixed:448,output=fixed:128 \\\n"
      "      --weights int4\n"
      "Without a GPU it runs the cpu executor on the tiny model and says so. docs/serving.md");
  auto* trace = cmd->add_option("--trace", k.trace, "Trace file: .jsonl Mooncake, .csv Azure");
  auto* gen = cmd->add_option("--generator", k.generator, "Generator spec key=value,... (docs/kv.md)");
  trace->excludes(gen);
  add_engine_options(cmd, o, args->host_memory);
  add_weights_option(cmd, args->weights);
  cmd->add_option("--gpu", k.gpu,
                  "GPU profile for kv's simulation of the same window (key or JSON path)")
      ->capture_default_str();
  cmd->add_option("--rate-scale", o.rate_scale, "Arrivals at this multiple of the trace's rate")
      ->capture_default_str();
  cmd->add_option("--start", o.start_seconds, "Window start, seconds into the trace")
      ->capture_default_str();
  cmd->add_option("--duration", o.duration_seconds, "Window length in trace seconds (0: to the end)")
      ->capture_default_str();
  cmd->add_option("--requests", o.requests, "At most this many requests (0: all in the window)")
      ->capture_default_str();
  cmd->add_option("--mooncake-block", k.mooncake_block, "Tokens per Mooncake hash id")
      ->capture_default_str();
  cmd->add_flag("!--no-simulate", o.simulate, "Skip kv's simulation of the same window");
  cmd->add_option("-o,--output", args->output, "Result JSON path ('' to skip)")->capture_default_str();
  cmd->add_option("--csv", args->csv, "Also write the row as CSV");
  cmd->add_flag("--json", args->json, "Print the result JSON on stdout instead of the table");
  add_metrics_options(cmd, args->live, "ridgeline_replay", false);
  cmd->callback([args, &ctx] { run_replay_command(*args, ctx); });
}

}  // namespace ridgeline::cli
