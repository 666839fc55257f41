// `ridgeline roofline`: the measured roofline of this GPU and the engine placed on it
// (bench/include/ridgeline/roofline/roofline.hpp; docs/roofline.md).
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli.hpp"
#include "ridgeline/roofline/roofline.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

namespace ridgeline::cli {
namespace {

struct roofline_args {
  std::string model = "llama-2-7b";
  std::string gpu;
  std::string batches = "1,8,64,128";
  std::string prefill_batches = "1,4";
  std::string kernel_batches = "1,64";
  std::string kernels = "ffma_fp32,hfma2_bf16,hfma2_fp16,mma_bf16,mma_fp8";
  std::string intensities;
  std::string buffer = "2GiB";
  double sustain = 1.0;
  std::string output = "ridgeline-roofline.json";
  std::string csv;
  int context = 512;
  int prefill_context = 1024;
  int device = 0;
  bool no_sweep = false, no_counters = false, full = false, json = false;
};

// --gpu: a profile file or key (planner::resolve_gpu); without it the embedded measured profile
// of the GPU this runs on, when there is one.
gpu_profile ceilings_for(const roofline_args& a) {
  if (!a.gpu.empty()) return planner::resolve_gpu(a.gpu).profile;
  if (const auto dev = metrics::query_device(a.device)) {
    return planner::measured_profile_for_device(dev->name);
  }
  throw std::invalid_argument("--gpu PROFILE is needed (no GPU to look one up for)");
}

void run_roofline_command(const roofline_args& a, context& ctx) {
  bench::roofline_options o;
  o.model = a.model;
  o.context = a.context;
  o.prefill_context = a.prefill_context;
  o.decode_batches = int_list(a.batches, "batch");
  o.prefill_batches = int_list(a.prefill_batches, "prefill-batch");
  o.kernel_batches = int_list(a.kernel_batches, "kernel-batch");
  o.intensity_sweep = !a.no_sweep;
  o.counters = !a.no_counters;
  o.full = a.full;
  o.device = a.device;
  o.sweep.device = a.device;
  o.sweep.buffer_bytes = parse_bytes(a.buffer);
  o.sweep.sustain_seconds = a.sustain;
  o.sweep.kernels.clear();
  for (const auto& k : split_list(a.kernels)) o.sweep.kernels.push_back(parse_intensity_kernel(k));
  if (!a.intensities.empty()) {
    o.sweep.intensities.clear();
    for (const auto& s : split_list(a.intensities)) {
      std::size_t pos = 0;
      double v = 0;
      try {
        v = std::stod(s, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != s.size()) throw std::invalid_argument("--intensity: '" + s + "' is not a number");
      o.sweep.intensities.push_back(v);
    }
  }
  bench::validate_roofline_options(o);
  if (!a.output.empty()) check_writable(a.output);
  if (!a.csv.empty()) check_writable(a.csv);
  if (metrics::device_count() == 0) {
    throw no_device_error("ridgeline roofline needs a CUDA GPU: " + metrics::no_device_reason());
  }
  o.profile = ceilings_for(a);
  if (ctx.progress) {
    o.progress = [&ctx](const std::string& s) { ctx.err << "roofline: " << s << "\n"; };
    o.sweep.progress = o.progress;
  }
  const nlohmann::json doc = bench::run_roofline(o);
  const std::string text = doc.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, bench::roofline_csv(doc));
  if (a.json) {
    ctx.out << text;
  } else {
    ctx.out << bench::roofline_table(doc);
    if (!a.output.empty()) ctx.out << "\nresults written to " << a.output << "\n";
  }
}

}  // namespace

void register_roofline(CLI::App& app, context& ctx) {
  auto a = std::make_shared<roofline_args>();
  auto* cmd = app.add_subcommand(
      "roofline",
      "Measured roofline of this GPU, with the engine's steps and kernels placed on it");
  cmd->footer(
      "Examples:\n"
      "  ridgeline roofline --gpu perfmodel/profiles/h100-sxm.json -o roofline.json --csv r.csv\n"
      "  ridgeline roofline --no-sweep --batch 1,64 --kernel-batch 1   (engine points only)\n"
      "  ridgeline roofline --kernels mma_bf16 --intensity 1,64,1024 --no-counters");
  cmd->add_option("--model", a->model, "Model preset")->capture_default_str();
  cmd->add_option(
      "--gpu", a->gpu,
      "Ceilings: a probe profile JSON or key (default: the embedded profile of this GPU)");
  cmd->add_option("--batch", a->batches, "Decode batch sizes")->capture_default_str();
  cmd->add_option("--context", a->context, "Decode context (tokens of cache)")
      ->capture_default_str();
  cmd->add_option("--prefill-batch", a->prefill_batches, "Prefill batch sizes")
      ->capture_default_str();
  cmd->add_option("--prefill-context", a->prefill_context, "Prefill tokens per sequence")
      ->capture_default_str();
  cmd->add_option("--kernel-batch", a->kernel_batches, "Decode batches broken down per kernel")
      ->capture_default_str();
  cmd->add_option("--kernels", a->kernels, "Intensity-sweep kernels")->capture_default_str();
  cmd->add_option("--intensity", a->intensities,
                  "Intensity-sweep FLOP/byte values (default 1/4 ... 4096, powers of two)");
  cmd->add_option("--buffer", a->buffer, "Intensity-sweep source buffer")->capture_default_str();
  cmd->add_option("--sustain", a->sustain,
                  "Seconds of back-to-back launches before each intensity-sweep point (and this "
                  "run's instruction peaks) is timed")
      ->capture_default_str();
  cmd->add_flag("--no-sweep", a->no_sweep, "Skip the intensity sweep");
  cmd->add_flag("--no-counters", a->no_counters,
                "Skip CUPTI counters (counted intensities only, no per-kernel breakdown counters)");
  cmd->add_flag("--full", a->full, "More repetitions per engine point");
  cmd->add_option("-o,--output", a->output, "Result JSON ('' to skip)")->capture_default_str();
  cmd->add_option("--csv", a->csv, "Also write every point as CSV here");
  cmd->add_option("--device", a->device, "CUDA device index")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the result JSON instead of the table");
  cmd->callback([a, &ctx] { run_roofline_command(*a, ctx); });
}

}  // namespace ridgeline::cli
