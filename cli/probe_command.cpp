// `ridgeline probe`: measure this GPU's ceilings and write a GPU profile.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "ridgeline/bench/probe.hpp"
#include "ridgeline/metrics/files.hpp"

namespace ridgeline::cli {
namespace {

struct probe_args {
  bool full = false;
  bool json = false;
  std::string output = "ridgeline-probe.json";
  std::string dtypes = "fp32,tf32,fp16,bf16,fp8_e4m3,int8";
  std::string max_bytes = "4GiB";
  std::uint64_t gemm_size = 8192;
  int device = 0;
  bool no_linear = false;
};

std::vector<dtype> parse_dtype_list(const std::string& list) {
  std::vector<dtype> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto end = list.find(',', start);
    const std::string item = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(parse_dtype(item));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

void run_probe_command(const probe_args& a, context& ctx) {
  bench::probe_options o;
  o.full = a.full;
  o.dtypes = parse_dtype_list(a.dtypes);
  o.max_bytes = parse_bytes(a.max_bytes);
  o.gemm_size = a.gemm_size;
  o.device = a.device;
  o.linear_layers = !a.no_linear;
  bench::validate_probe_options(o);
  // Refuse an unwritable output before minutes of measurement, not after.
  if (!a.output.empty()) check_writable(a.output);
  if (ctx.progress) o.progress = [&ctx](const std::string& s) { ctx.err << "probe: " << s << "\n"; };
  const gpu_profile p = bench::run_probe(o);
  const std::string doc = to_json(p).dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, doc);
  if (a.json) {
    ctx.out << doc;
  } else {
    ctx.out << bench::probe_table(p);
    if (!a.output.empty()) ctx.out << "\nprofile written to " << a.output << "\n";
  }
}

}  // namespace

void register_probe(CLI::App& app, context& ctx) {
  auto args = std::make_shared<probe_args>();
  auto* cmd = app.add_subcommand("probe", "Measure this GPU's ceilings and write a GPU profile");
  cmd->footer(
      "Examples:\n"
      "  ridgeline probe                         quick probe, table on stdout\n"
      "  ridgeline probe --full -o planner/profiles/h100-sxm.json\n"
      "  ridgeline probe --dtypes bf16,fp8 --no-linear --json");
  cmd->add_flag("--full", args->full, "More repetitions and every token count of the linear sweep");
  cmd->add_flag("--quick{false}", args->full, "Fewer repetitions (default)");
  cmd->add_option("-o,--output", args->output, "Profile JSON path ('' to skip)")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the profile JSON on stdout instead of the table");
  cmd->add_option("--dtypes", args->dtypes, "GEMM dtypes, comma-separated")->capture_default_str();
  cmd->add_option("--max-bytes", args->max_bytes,
                  "Cold bandwidth buffer and top of the working-set sweep (power of two)")
      ->capture_default_str();
  cmd->add_option("--gemm-size", args->gemm_size, "M = N = K of the peak GEMMs")->capture_default_str();
  cmd->add_option("--device", args->device, "CUDA device index")->capture_default_str();
  cmd->add_flag("--no-linear", args->no_linear, "Skip the Llama-2-7B linear-layer sweep");
  cmd->callback([args, &ctx] { run_probe_command(*args, ctx); });
}

}  // namespace ridgeline::cli
