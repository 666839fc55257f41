// `ridgeline probe`: measure this GPU's ceilings and write a GPU profile.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli.hpp"
#include "ridgeline/probe/probe.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"

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
  std::string only;    // "instruction-peaks": measure those alone
  std::string update;  // with --only: the profile file to write them into
};

std::vector<dtype> parse_dtype_list(const std::string& list) {
  std::vector<dtype> out;
  for (const auto& item : split_list(list, ',')) out.push_back(parse_dtype(item));
  return out;
}

// --only instruction-peaks [--update PROFILE]: the instruction peaks alone, printed, and with
// --update spliced into an existing profile of this GPU (every other byte kept). The profile is
// read and checked before anything is measured, and written only after everything succeeded.
void run_instruction_peaks_only(const probe_args& a, context& ctx) {
  bench::instruction_peak_options o;
  o.full = a.full;
  o.device = a.device;
  bench::validate_instruction_peak_options(o);
  std::string text;
  std::optional<gpu_profile> profile;
  auto refuse = [&](const std::exception& e) {
    return std::invalid_argument(a.update + ": " + e.what() + "; left unchanged");
  };
  if (!a.update.empty()) {
    text = read_text_file(a.update);
    try {
      profile = bench::check_instruction_peak_update(text);
    } catch (const std::invalid_argument& e) {
      throw refuse(e);
    }
    check_writable(a.update);
  }
  const metrics::device_info dev = metrics::require_device(a.device, "ridgeline probe");
  if (profile) {
    try {
      bench::require_same_gpu(*profile, dev.name);
    } catch (const std::invalid_argument& e) {
      throw refuse(e);
    }
  }
  if (ctx.progress) o.progress = [&ctx](const std::string& s) { ctx.err << "probe: " << s << "\n"; };
  const instruction_peak_section s = bench::measure_instruction_peaks(o);
  if (profile) write_atomically(a.update, bench::with_instruction_peaks(text, s, dev.name));
  if (a.json) {
    ctx.out << to_json(s).dump(2) << "\n";
    return;
  }
  ctx.out << bench::instruction_peak_table(s, profile ? &*profile : nullptr);
  if (profile) ctx.out << "\ninstruction_peaks written into " << a.update << " (nothing else changed)\n";
}

void run_probe_command(const probe_args& a, context& ctx) {
  if (!a.only.empty()) return run_instruction_peaks_only(a, ctx);
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
      "  ridgeline probe --full -o perfmodel/profiles/h100-sxm.json\n"
      "  ridgeline probe --dtypes bf16,fp8 --no-linear --json\n"
      "  ridgeline probe --only instruction-peaks --update perfmodel/profiles/h100-sxm.json");
  cmd->add_flag("--full", args->full, "More repetitions and every token count of the linear sweep");
  cmd->add_flag("--quick{false}", args->full, "Fewer repetitions (default)");
  auto* output = cmd->add_option("-o,--output", args->output, "Profile JSON path ('' to skip)")
                     ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the profile JSON on stdout instead of the table");
  auto* dtypes =
      cmd->add_option("--dtypes", args->dtypes, "GEMM dtypes, comma-separated")->capture_default_str();
  auto* max_bytes = cmd->add_option("--max-bytes", args->max_bytes,
                                    "Cold bandwidth buffer and top of the working-set sweep (power of two)")
                        ->capture_default_str();
  auto* gemm_size = cmd->add_option("--gemm-size", args->gemm_size, "M = N = K of the peak GEMMs")
                        ->capture_default_str();
  cmd->add_option("--device", args->device, "CUDA device index")->capture_default_str();
  auto* no_linear = cmd->add_flag("--no-linear", args->no_linear, "Skip the Llama-2-7B linear-layer sweep");
  auto* only = cmd->add_option("--only", args->only,
                               "Measure one part alone: instruction-peaks (printed; --json: the "
                               "profile's instruction_peaks object)")
                   ->check(CLI::IsMember({"instruction-peaks"}));
  for (auto* other : {output, dtypes, max_bytes, gemm_size, no_linear}) only->excludes(other);
  cmd->add_option("--update", args->update,
                  "With --only instruction-peaks: write them into this existing profile of this "
                  "GPU, every other byte unchanged")
      ->needs(only);
  cmd->callback([args, &ctx] { run_probe_command(*args, ctx); });
}

}  // namespace ridgeline::cli
