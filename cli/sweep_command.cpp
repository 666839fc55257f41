// `ridgeline sweep`: the engine's step time per (batch, context, phase) on this GPU; with
// --rederive, a committed sweep's % columns derived again from its own bytes and medians against
// a profile's matching ceilings (no GPU, no new measurement).
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "engine_options.hpp"
#include "metrics_options.hpp"
#include "ridgeline/sweep/sweep.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/sweep.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

namespace ridgeline::cli {
namespace {

struct sweep_args {
  std::string model = "llama-2-7b";
  std::string checkpoint;
  std::string batches = "1,2,4,8,16,32,64,128,256";
  std::string contexts = "128,512,2048,8192";
  std::string phases = "decode,prefill";
  std::string gpu;
  std::string peer;
  std::string rederive;
  std::string output = "ridgeline-sweep.json";
  std::string csv;
  int max_prefill_tokens = 8192;
  int split_tokens = 0;
  int gemm_candidates = 32;
  std::string gemm = "auto";
  std::string weights;  // --weights: empty when not given
  int device = 0;
  bool full = false, json = false, no_graphs = false, no_pdl = false, deterministic = false;
  metrics_options live;
};

// --rederive: the document's counted bytes, FLOPs and medians against the ceilings of --gpu, else
// of the profile embedded for the GPU it ran on; written to -o, the table printed.
void rederive_sweep_command(const sweep_args& a, context& ctx) {
  nlohmann::json doc = schema::read_json(a.rederive, bench::k_sweep_schema);
  const schema::sweep_document typed = schema::parse_sweep(doc, a.rederive);
  const std::string gpu = typed.env.gpu ? typed.env.gpu->name : "";
  std::optional<gpu_profile> given;
  std::string profile_name = "the embedded measured profile of " + gpu;
  if (!a.gpu.empty()) {
    given = planner::resolve_gpu(a.gpu).profile;
    profile_name = a.gpu;
  } else {
    planner::measured_profile_for_device(gpu);  // throws naming the GPU when there is none
  }
  const bench::sweep_ceilings c = bench::resolve_sweep_ceilings(given, gpu);
  doc = bench::rederive_sweep_floor(
      std::move(doc), c,
      "ridgeline sweep --rederive: floor_seconds, pct_of_floor, floor_ceiling and "
      "pct_of_peak_flops recomputed from this file's bytes, FLOPs and median step times against " +
          profile_name + "; no step was measured again");
  if (!a.output.empty()) write_atomically(a.output, doc.dump(2) + "\n");
  if (!a.csv.empty()) write_atomically(a.csv, bench::sweep_csv(doc));
  ctx.out << (a.json ? doc.dump(2) + "\n" : bench::sweep_table(doc));
  if (!a.json && !a.output.empty()) ctx.out << "\nre-derived results written to " << a.output << "\n";
  ctx.out << std::flush;
}

void run_sweep_command(const sweep_args& a, context& ctx) {
  if (!a.rederive.empty()) {
    rederive_sweep_command(a, ctx);
    return;
  }
  bench::sweep_options o;
  o.model = a.model;
  o.checkpoint = a.checkpoint;
  o.weights = engine_weights_of(a.weights);
  o.batches = int_list(a.batches, "batch");
  o.contexts = int_list(a.contexts, "context");
  o.phases = split_list(a.phases);
  o.max_prefill_tokens = a.max_prefill_tokens;
  o.cuda_graphs = !a.no_graphs;
  o.split_tokens = a.split_tokens;
  o.pdl = !a.no_pdl;
  o.batch_invariant = a.deterministic;
  o.gemm_candidates = a.gemm_candidates;
  o.gemm = a.gemm;
  o.full = a.full;
  o.device = a.device;
  if (!a.gpu.empty()) o.profile = planner::resolve_gpu(a.gpu).profile;
  if (!a.peer.empty()) o.peer = schema::read_peer(a.peer);
  bench::validate_sweep_options(o);
  if (!a.output.empty()) check_writable(a.output);
  if (!a.csv.empty()) check_writable(a.csv);
  if (ctx.progress) o.progress = [&ctx](const std::string& s) { ctx.err << "sweep: " << s << "\n"; };
  metrics_session session(a.live, ctx);
  o.live = session.live();
  const nlohmann::json doc = bench::run_sweep(o);
  const std::string text = doc.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, bench::sweep_csv(doc));
  if (a.json) {
    ctx.out << text;
  } else {
    ctx.out << bench::sweep_table(doc);
    if (!a.output.empty()) ctx.out << "\nresults written to " << a.output << "\n";
  }
  ctx.out << std::flush;
  session.finish();
}

}  // namespace

void register_sweep(CLI::App& app, context& ctx) {
  auto a = std::make_shared<sweep_args>();
  auto* cmd = app.add_subcommand("sweep", "Step time of the engine per batch size, context and phase");
  cmd->footer(
      "Examples:\n"
      "  ridgeline sweep --model llama-2-7b --batch 1,64,128 --context 512 --phase decode\n"
      "  ridgeline sweep --gpu perfmodel/profiles/h100-sxm.json -o docs/results/sweep.json --csv s.csv\n"
      "  ridgeline sweep --batch 1,64 --context 512 --peer peer.json   (ratio to a PyTorch peer)\n"
      "  ridgeline sweep --weights int4 --batch 1,64 --context 512 --phase decode   (% of the "
      "int4 floor)\n"
      "  ridgeline sweep --rederive docs/results/h100-sxm_sweep.json -o docs/results/h100-sxm_sweep.json");
  cmd->add_option("--model", a->model, "Model preset")->capture_default_str();
  cmd->add_option("--checkpoint", a->checkpoint,
                  "Hugging Face Llama/Mistral folder (config.json + safetensors) instead of a preset");
  add_weights_option(cmd, a->weights);
  cmd->add_option("--batch", a->batches, "Batch sizes, comma-separated")->capture_default_str();
  cmd->add_option("--context", a->contexts, "Context lengths (tokens), comma-separated")->capture_default_str();
  cmd->add_option("--phase", a->phases, "decode, prefill or both")->capture_default_str();
  cmd->add_option("--max-prefill-tokens", a->max_prefill_tokens, "Largest prefill step (batch x context)")
      ->capture_default_str();
  cmd->add_option("--gpu", a->gpu,
                  "GPU key or profile JSON for the ceilings (default: the measured profile embedded "
                  "for this GPU, else its datasheet, labelled so)");
  cmd->add_option("--rederive", a->rederive,
                  "A ridgeline.sweep/v1 file: derive its % columns again from its own bytes and "
                  "medians against the matching measured ceilings (--gpu, else the embedded "
                  "profile of its GPU); no GPU needed, nothing re-measured");
  cmd->add_option("--peer", a->peer, "ridgeline.peer/v1 results (bench/peers/torch_decode.py)");
  cmd->add_option("-o,--output", a->output, "Result JSON ('' to skip)")->capture_default_str();
  cmd->add_option("--csv", a->csv, "Also write CSV here");
  cmd->add_option("--split-tokens", a->split_tokens,
                  "Attention split size in tokens (0: the launcher's choice)")
      ->capture_default_str();
  cmd->add_option("--device", a->device, "CUDA device index")->capture_default_str();
  cmd->add_flag("--full", a->full, "More repetitions per point");
  cmd->add_flag("--no-graphs", a->no_graphs, "Run decode eagerly instead of replaying CUDA graphs");
  cmd->add_flag("--no-pdl", a->no_pdl, "Launch kernels without programmatic dependent launch");
  cmd->add_option("--gemm-candidates", a->gemm_candidates,
                  "cuBLASLt heuristic candidates timed per linear-layer shape")
      ->capture_default_str();
  cmd->add_option("--gemm", a->gemm,
                  "Linear layers above one token: auto, cublas or skinny (the tensor-core "
                  "weight-streaming GEMM, up to 64 tokens, H100/H200)")
      ->capture_default_str();
  cmd->add_flag("--deterministic", a->deterministic,
                "Batch-invariant mode: fixed GEMM algorithm without split-K, fixed attention split "
                "(its cost against the default)");
  cmd->add_flag("--json", a->json, "Print the result JSON instead of the table");
  add_metrics_options(cmd, a->live, "ridgeline_sweep", false);
  cmd->callback([a, &ctx] { run_sweep_command(*a, ctx); });
}

}  // namespace ridgeline::cli
