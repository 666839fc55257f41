// `ridgeline kv`: parses the arguments, runs tools/kv (the replay through the scheduler, the paged
// KV cache and the simulated executor per cache capacity), draws the progress bar and writes the
// JSON (schema ridgeline.kv/v1), the CSV and the table. docs/kv.md.
// With --metrics-address the replay feeds live Prometheus metrics (docs/metrics.md).
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.hpp"
#include "metrics_options.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/kv/kv.hpp"

namespace ridgeline::cli {
namespace {

struct kv_args {
  std::string trace;
  std::string generator;
  std::string model = "llama-3-8b";
  std::string gpu = "h100-sxm";
  std::string capacity = "unlimited,50%,20%,10%,5%,2%";
  std::int32_t block_tokens = 16;
  std::string kv_dtype = "bf16";
  std::string host_memory = "0";
  double pcie_gb_per_second = 25;
  std::int32_t max_running = 256;
  std::int64_t max_batched_tokens = 8192;
  bool no_chunked_prefill = false;
  std::int64_t max_model_len = -1;  // -1: the model's context
  std::int32_t mooncake_block = 512;
  double overhead_us = 0;
  std::string output = "ridgeline-kv.json";
  std::string csv;
  bool json = false;
  metrics_options live;
};

// "unlimited", "25%" (of unlimited), "4096" (blocks) or "8GiB" (bytes of KV).
std::vector<kv::capacity_spec> parse_capacities(const std::string& list) {
  using kind = kv::capacity_spec::kind;
  std::vector<kv::capacity_spec> out;
  for (const auto& item : split_list(list, ',')) {
    kv::capacity_spec p{item, kind::unlimited, 0};
    if (item == "unlimited" || item == "inf") {
      p.type = kind::unlimited;
    } else if (item.back() == '%') {
      try {
        std::size_t pos = 0;
        p.value = std::stod(item.substr(0, item.size() - 1), &pos);
        if (pos != item.size() - 1) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw std::invalid_argument("bad capacity '" + item + "' (e.g. 25%)");
      }
      p.type = kind::percent;
    } else if (item.find_first_not_of("0123456789") == std::string::npos) {
      if (item.size() > 11)
        throw std::invalid_argument("capacity '" + item + "' blocks out of range");
      p.type = kind::blocks;
      p.value = static_cast<double>(std::stoll(item));
    } else {
      p.type = kind::bytes;
      p.value = static_cast<double>(parse_bytes(item));
    }
    out.push_back(p);
  }
  if (out.empty()) throw std::invalid_argument("--capacity lists no capacity");
  return out;
}

kv::kv_options options_of(const kv_args& a) {
  kv::kv_options o;
  o.trace = a.trace;
  o.generator = a.generator;
  o.model = a.model;
  o.gpu = a.gpu;
  o.capacities = parse_capacities(a.capacity);
  o.block_tokens = a.block_tokens;
  o.kv_dtype = a.kv_dtype;
  o.host_memory_bytes =
      a.host_memory == "0" ? 0 : static_cast<std::int64_t>(parse_bytes(a.host_memory));
  o.pcie_gb_per_second = a.pcie_gb_per_second;
  o.max_running = a.max_running;
  o.max_batched_tokens = a.max_batched_tokens;
  o.chunked_prefill = !a.no_chunked_prefill;
  o.max_model_len = a.max_model_len;
  o.mooncake_block = a.mooncake_block;
  o.overhead_us = a.overhead_us;
  return o;
}

void run_kv_command(const kv_args& a, context& ctx) {
  const kv::kv_setup setup = kv::configure(options_of(a));
  // Refuse unwritable outputs before the replays, not after.
  if (!a.output.empty()) check_writable(a.output);
  if (!a.csv.empty()) check_writable(a.csv);
  const kv::kv_inputs inputs = kv::load_inputs(setup);
  const auto& caps = inputs.capacities;

  metrics_session session(a.live, ctx);
  kv::kv_hooks hooks;
  if (progress_bar_wanted(ctx)) {
    hooks.progress = [&](std::size_t i, double f) {
      const int width = 30;
      const int filled = static_cast<int>(f * width);
      ctx.err << "\rkv: capacity " << caps[i].label << " (" << i + 1 << "/" << caps.size() << ") ["
              << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(width - filled), '.') << "] "
              << static_cast<int>(f * 100) << "%   " << std::flush;
    };
  }
  if (auto* live = session.live()) {
    hooks.live = live;
    hooks.begin_run = [&session] { session.begin_run(); };
    hooks.pace = [&session](double now_seconds) { session.pace(now_seconds); };
  }
  auto rows = kv::run_capacities(setup, inputs, hooks);
  if (hooks.progress) ctx.err << "\n";

  const nlohmann::json doc = kv::kv_document(setup, inputs, std::move(rows));
  const std::string text = doc.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, kv::csv_of(doc.at("rows")));
  if (a.json) {
    ctx.out << text;
    // stdout stays one JSON document; what the figures leave out still reaches the user.
    for (const auto& line : kv::rejection_lines(doc, "kv")) ctx.err << line << "\n";
  } else {
    ctx.out << kv::table_of(doc);
    if (!a.output.empty()) ctx.out << "results written to " << a.output << "\n";
  }
  ctx.out << std::flush;
  session.finish();
}

}  // namespace

void register_kv(CLI::App& app, context& ctx) {
  auto args = std::make_shared<kv_args>();
  auto* cmd = app.add_subcommand(
      "kv", "Prefix-cache hit rate against KV capacity, recompute cost and latencies (simulated)");
  cmd->footer(
      "Examples:\n"
      "  ridgeline kv --trace data/traces/mooncake_synthetic_trace.jsonl --block-size 512 \\\n"
      "      --model llama-3-70b --max-model-len 0 --capacity unlimited,50%,20%,10%\n"
      "  ridgeline kv --generator sessions=500,turns=uniform:2:8,think=exp:60,system=1024 \\\n"
      "      --capacity 2GiB,8GiB,32GiB --csv kv.csv\n"
      "  ridgeline kv --generator sessions=200 --metrics-address 127.0.0.1:9464 --pace 20 \\\n"
      "      --hold 60                       live metrics for Prometheus (docs/metrics.md)\n"
      "Capacities: unlimited, N% (of unlimited), N (blocks) or a size (8GiB) of KV memory.\n"
      "Generator keys and every metric: docs/kv.md");
  auto* trace = cmd->add_option("--trace", args->trace, "Trace file: .jsonl Mooncake, .csv Azure");
  auto* gen =
      cmd->add_option("--generator", args->generator, "Generator spec key=value,... (docs/kv.md)");
  trace->excludes(gen);
  cmd->add_option("--model", args->model, "Model preset")->capture_default_str();
  cmd->add_option("--gpu", args->gpu,
                  "GPU key (ridgeline plan gpus lists them) or profile JSON path")
      ->capture_default_str();
  cmd->add_option("--capacity", args->capacity, "Comma-separated KV capacities")
      ->capture_default_str();
  cmd->add_option("--block-size", args->block_tokens, "Tokens per KV block")->capture_default_str();
  cmd->add_option("--kv-dtype", args->kv_dtype, "KV cache dtype (bf16, fp16, fp8)")
      ->capture_default_str();
  cmd->add_option("--host-memory", args->host_memory, "Second tier in host memory (e.g. 64GiB)")
      ->capture_default_str();
  cmd->add_option("--pcie-gbps", args->pcie_gb_per_second, "Host-to-GPU bandwidth, GB/s")
      ->capture_default_str();
  cmd->add_option("--max-running", args->max_running, "Max running sequences")
      ->capture_default_str();
  cmd->add_option("--max-batched-tokens", args->max_batched_tokens, "Max tokens per step")
      ->capture_default_str();
  cmd->add_flag("--no-chunked-prefill", args->no_chunked_prefill, "Whole prompts in one step");
  cmd->add_option("--max-model-len", args->max_model_len,
                  "Reject prompt + output above this (default: the model's context; 0: no limit)");
  cmd->add_option("--mooncake-block", args->mooncake_block, "Tokens per Mooncake hash id")
      ->capture_default_str();
  cmd->add_option("--overhead-us", args->overhead_us, "Fixed cost per step, microseconds")
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Result JSON path ('' to skip)")
      ->capture_default_str();
  cmd->add_option("--csv", args->csv, "Also write the rows as CSV");
  cmd->add_flag("--json", args->json, "Print the result JSON on stdout instead of the table");
  add_metrics_options(cmd, args->live, "ridgeline_kv", true);
  cmd->callback([args, &ctx] { run_kv_command(*args, ctx); });
}

}  // namespace ridgeline::cli
