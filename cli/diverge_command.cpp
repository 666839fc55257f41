// `ridgeline diverge run|compare`: per-step fingerprints of greedy decoding under one
// configuration (GPU, batch size, graphs, split size, weight format), and the comparison of two
// of them: first divergence per prompt, the margin there, KL on the top-k, a verdict.
// docs/diverge.md.
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "engine_options.hpp"
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/core/files.hpp"

namespace ridgeline::cli {
namespace {

using nlohmann::json;

struct diverge_run_args {
  bench::diverge_options o;
  std::string co_runners = "random:1";
  std::string force_tokens;
  std::string weights;  // --weights: empty when not given
  std::string output = "ridgeline-diverge.json";
  bool no_graphs = false, json_out = false;
};

struct diverge_compare_args {
  std::string a, b, output;
  bool json_out = false;
};

std::uint64_t parse_co_runners(const std::string& spec) {
  const std::string prefix = "random:";
  if (spec.rfind(prefix, 0) != 0 || spec.size() == prefix.size()) {
    throw std::invalid_argument("--co-runners '" + spec + "': expected random:SEED");
  }
  const std::string seed = spec.substr(prefix.size());
  std::size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(seed, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != seed.size() || seed[0] == '-') {
    throw std::invalid_argument("--co-runners '" + spec + "': SEED is not a non-negative integer");
  }
  return v;
}

void run_diverge_run(diverge_run_args& a, context& ctx) {
  bench::diverge_options o = a.o;
  o.cuda_graphs = !a.no_graphs;
  o.co_runner_seed = parse_co_runners(a.co_runners);
  o.weights = engine_weights_of(a.weights);
  if (!a.force_tokens.empty()) {
    o.force = bench::load_fingerprint(a.force_tokens);
    o.force_source = a.force_tokens;
  }
  bench::validate_diverge_options(o);
  if (!a.output.empty()) check_writable(a.output);
  if (ctx.progress)
    o.progress = [&ctx](const std::string& s) { ctx.err << "diverge: " << s << "\n"; };
  const json doc = bench::run_diverge(o);
  const std::string text = doc.dump(1) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (a.json_out) {
    ctx.out << text;
  } else {
    ctx.out << bench::fingerprint_summary(doc);
    if (!a.output.empty()) ctx.out << "fingerprint written to " << a.output << "\n";
  }
  ctx.out << std::flush;
}

void run_diverge_compare(const diverge_compare_args& a, context& ctx) {
  if (!a.output.empty()) check_writable(a.output);
  const json da = bench::load_fingerprint(a.a), db = bench::load_fingerprint(a.b);
  const json report = bench::compare_fingerprints(da, db, a.a, a.b);
  const std::string text = report.dump(1) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (a.json_out) {
    ctx.out << text;
  } else {
    ctx.out << bench::compare_table(report);
    if (!a.output.empty()) ctx.out << "report written to " << a.output << "\n";
  }
  ctx.out << std::flush;
}

}  // namespace

void register_diverge(CLI::App& app, context& ctx) {
  auto* cmd = app.add_subcommand(
      "diverge",
      "Do two configurations (GPUs, batch sizes, graphs, weight formats) produce the same tokens?");
  cmd->require_subcommand(1);
  cmd->footer(
      "Examples:\n"
      "  ridgeline diverge run --model llama-2-7b --prompt-set random:32:128:1 --steps 64 \\\n"
      "      --batch 1 -o b1.json\n"
      "  ridgeline diverge run --model llama-2-7b --prompt-set random:32:128:1 --steps 64 \\\n"
      "      --batch 64 --force-tokens b1.json -o b64.json\n"
      "  ridgeline diverge compare b1.json b64.json -o b1_vs_b64.json\n"
      "  ridgeline diverge run --model llama-2-7b --prompt-set random:32:128:1 --steps 64 \\\n"
      "      --weights int4 --force-tokens b1.json -o b1_int4.json   (bf16 against int4)\n"
      "  ridgeline diverge run --executor cpu --model tiny --prompt-set random:2:8:1 --steps 8");

  auto r = std::make_shared<diverge_run_args>();
  auto* run = cmd->add_subcommand("run", "Greedy decode of a prompt set, fingerprinted per step");
  run->footer(
      "Records per prompt and step: the chosen token, the top-8 ids and log-probabilities, the\n"
      "top-1/top-2 margin and a 64-bit hash of the fp32 logits row. Each prompt runs at slot 0\n"
      "of a batch of --batch sequences (the others are seeded random co-runners).\n"
      "Examples:\n"
      "  ridgeline diverge run --model llama-2-7b --prompt-set random:32:128:1 --steps 64 -o "
      "a.json\n"
      "  ridgeline diverge run --checkpoint ~/Llama-2-7b-hf --prompts prompts.txt --steps 64 \\\n"
      "      --batch 64 --co-runners random:7 --deterministic -o b.json\n"
      "  ridgeline diverge run --executor cpu --model tiny --prompt-set random:2:8:1 --steps 8 \\\n"
      "      -o tiny.json   (no GPU needed)");
  run->add_option("--model", r->o.model, "Model preset (random weights)")->capture_default_str();
  run->add_option("--checkpoint", r->o.checkpoint,
                  "Hugging Face folder (config.json + safetensors) or a Llama GGUF file, "
                  "instead of --model");
  run->add_option("--prompts", r->o.prompts_file,
                  "Prompt file: token ids, one prompt per line, or a JSON array of arrays");
  run->add_option("--prompt-set", r->o.prompt_set, "Random prompts: random:N:LEN:SEED");
  run->add_option("--steps", r->o.steps, "Tokens generated per prompt")->capture_default_str();
  run->add_option("--batch", r->o.batch, "Sequences per step: the prompt + batch-1 co-runners")
      ->capture_default_str();
  run->add_option("--co-runners", r->co_runners, "Co-running requests: random:SEED")
      ->capture_default_str();
  run->add_option("--split-tokens", r->o.split_tokens,
                  "Attention split size in tokens (0: the launcher's choice)")
      ->capture_default_str();
  run->add_flag("--no-graphs", r->no_graphs, "Run decode eagerly instead of replaying CUDA graphs");
  run->add_flag("--deterministic", r->o.deterministic,
                "Fixed attention split size (64 unless --split-tokens), independent of the batch");
  run->add_option("--force-tokens", r->force_tokens,
                  "Teacher forcing: feed the tokens of this fingerprint (same prompt set)");
  run->add_option("--executor", r->o.executor, "cuda, or cpu (tiny models; no GPU needed)")
      ->capture_default_str();
  run->add_option("--seed", r->o.weight_seed, "Seed of the random weights")->capture_default_str();
  add_weights_option(run, r->weights);
  run->add_option("--device", r->o.device, "CUDA device index")->capture_default_str();
  run->add_option("-o,--output", r->output, "Fingerprint JSON ('' to skip)")->capture_default_str();
  run->add_flag("--json", r->json_out, "Print the fingerprint JSON instead of the summary");
  run->callback([r, &ctx] { run_diverge_run(*r, ctx); });

  auto c = std::make_shared<diverge_compare_args>();
  auto* cmp = cmd->add_subcommand("compare", "Compare two fingerprints: divergence, margins, KL");
  cmp->footer(
      "A is the reference. Refuses files that are cut off or malformed, or from other models,\n"
      "weights or prompt sets (exit 2); the same weights in two formats (--weights) compare.\n"
      "Verdicts: bitwise identical (every logits hash equal),\n"
      "numerically different but same tokens, diverged at step N.\n"
      "Examples:\n"
      "  ridgeline diverge compare h100.json h200.json\n"
      "  ridgeline diverge compare b1.json b64.json --json -o report.json");
  cmp->add_option("A", c->a, "Reference fingerprint")->required();
  cmp->add_option("B", c->b, "Fingerprint to compare")->required();
  cmp->add_option("-o,--output", c->output, "Also write the ridgeline.diverge_compare/v1 JSON");
  cmp->add_flag("--json", c->json_out, "Print the JSON instead of the table");
  cmp->callback([c, &ctx] { run_diverge_compare(*c, ctx); });
}

}  // namespace ridgeline::cli
