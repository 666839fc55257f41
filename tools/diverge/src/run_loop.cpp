// `ridgeline diverge run` (see diverge.hpp), host side: the model and weights, the prompts and the
// tokens to force, the KV sizing, and the loop that runs each prompt's batch on an executor
// (engine/executor.hpp: the CPU one here, the CUDA one from diverge_run.cpp) and records the
// fingerprint rows. Each prompt's batch gets its block tables from a KV cache manager.
#include <algorithm>
#include <filesystem>
#include <random>
#include <stdexcept>

#include "diverge_detail.hpp"
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/quant_weights.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::bench {
namespace {

using detail::row_at;
using nlohmann::json;

constexpr int k_block_tokens = 16;

std::string hash_weights(const std::vector<bf16_bits>& w) {
  std::uint64_t h = detail::k_fnv_offset;
  for (bf16_bits x : w) {
    const unsigned char b[2] = {static_cast<unsigned char>(x), static_cast<unsigned char>(x >> 8)};
    detail::fnv_bytes(h, b, 2);
  }
  return detail::hex64(h);
}

json shape_json(const model_preset& m) {
  return {{"layers", m.layers},     {"hidden", m.hidden},     {"heads", m.heads},
          {"kv_heads", m.kv_heads}, {"head_dim", m.head_dim}, {"intermediate", m.intermediate},
          {"vocab", m.vocab}};
}

// Co-runner prompts for prompt p: lengths uniform in [len/2, 2 len] (capped so that the
// generated tokens fit the context), tokens uniform in the vocabulary; keyed by (seed, p).
std::vector<std::vector<token_id>> co_runner_prompts(std::uint64_t seed, std::size_t p, int count,
                                                     std::int64_t len, const model_preset& m,
                                                     int steps) {
  std::seed_seq sq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                   static_cast<std::uint32_t>(p), 0xd1u};
  std::mt19937_64 rng(sq);
  const std::int64_t cap = std::max<std::int64_t>(1, m.max_context - steps);
  const std::int64_t lo = std::min(cap, std::max<std::int64_t>(1, len / 2));
  const std::int64_t hi = std::min(cap, std::max<std::int64_t>(lo, 2 * len));
  std::uniform_int_distribution<std::int64_t> ln(lo, hi);
  std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
  std::vector<std::vector<token_id>> out(static_cast<std::size_t>(count));
  for (auto& v : out) {
    v.resize(static_cast<std::size_t>(ln(rng)));
    for (auto& t : v) t = tok(rng);
  }
  return out;
}

// The model and its weights (a checkpoint's, else seeded random) and how the fingerprint names
// them.
struct model_setup {
  detail::executor_setup exec;
  std::string weights_id;
  // The checkpoint's own quantized format (AWQ, GPTQ, fp8, GGUF Q4_0/Q8_0); nullopt for random
  // weights and bf16 checkpoints.
  std::optional<planner::weight_format> stored;
};

model_setup load_model(const diverge_options& o) {
  model_setup s;
  if (!o.checkpoint.empty()) {
    const std::filesystem::path path(o.checkpoint);
    s.exec.decoder = read_checkpoint_config(path, k_block_tokens);
    if (o.progress) o.progress("reading checkpoint " + o.checkpoint);
    s.exec.weights = load_checkpoint_weights(path, s.exec.decoder.model);
    s.weights_id = "checkpoint fnv1a64:" + hash_weights(*s.exec.weights);
    s.stored = checkpoint_weight_format(path);
  } else {
    s.exec.decoder = make_decoder_config(model_preset_by_name(o.model), k_block_tokens);
    s.weights_id = "random weights seed " + std::to_string(o.weight_seed);
  }
  if (s.exec.decoder.model.planning_only) {
    throw std::invalid_argument(s.exec.decoder.model.name +
                                " is a planning-only preset (does not fit one GPU)");
  }
  // The engine's load rules: --weights, else the checkpoint's own format, else bf16; a quantized
  // checkpoint asked for another quantized format is refused in one line.
  s.exec.weight_format = resolve_weight_format(o.weights, o.checkpoint);
  s.exec.checkpoint = o.checkpoint;
  return s;
}

// The tokens a teacher-forcing fingerprint fed, checked against this run.
class forced_tokens {
 public:
  forced_tokens(const diverge_options& o, const prompt_set& ps, const model_preset& m) {
    if (!o.force) return;
    m_doc = &*o.force;
    const std::string src = o.force_source.empty() ? "--force-tokens" : o.force_source;
    validate_fingerprint(*o.force, src);
    const json& fc = (*o.force)["config"];
    if (fc["prompt_set"]["hash"] != ps.hash) {
      throw std::invalid_argument(src + ": made from prompt set " +
                                  fc["prompt_set"]["id"].get<std::string>() + " (hash " +
                                  fc["prompt_set"]["hash"].get<std::string>() +
                                  "), this run uses " + ps.id + " (hash " + ps.hash + ")");
    }
    if (fc.value("model_shape", json()) != shape_json(m)) {
      throw std::invalid_argument(src + ": from model " + fc["model"].get<std::string>() +
                                  " of another shape than " + m.name);
    }
    m_steps = fc["steps"].get<std::size_t>();
    if (m_steps < static_cast<std::size_t>(o.steps)) {
      throw std::invalid_argument(src + ": has " + std::to_string(m_steps) +
                                  " steps, fewer than --steps " + std::to_string(o.steps));
    }
    m_rows = detail::index_rows(*o.force);
  }
  bool active() const { return m_doc != nullptr; }
  // What the forcing run fed at (prompt, step): its "fed" when it was forced itself, else its
  // token.
  token_id at(std::size_t p, std::size_t s) const {
    const json& r = row_at(m_rows, m_steps, p, s);
    return (r.contains("fed") ? r["fed"] : r["token"]).get<token_id>();
  }

 private:
  const json* m_doc = nullptr;
  std::vector<const json*> m_rows;
  std::size_t m_steps = 0;
};

// One sequence of a prompt's batch: its tokens so far and its KV sequence.
struct sequence_state {
  std::vector<token_id> tokens;
  seq_id kv = -1;
  std::int64_t prompt_len = 0, computed = 0;
};

// Runs prompt p at slot 0 of its batch and appends its rows.
void run_prompt(std::size_t p, const std::vector<token_id>& prompt,
                const std::vector<std::vector<token_id>>& co_prompts, const diverge_options& o,
                const kv_cache_config& kv_config, int max_tokens, const model_preset& m,
                const forced_tokens& forced, executor& exec, json& rows) {
  // A fresh KV manager per prompt (ascending placement, so sequence 0 gets blocks 0, 1, ...);
  // each sequence reserves its whole table (prompt + steps tokens) up front, so the tables and
  // their width stay the same over the run.
  kv_cache_manager kv(kv_config);
  std::vector<sequence_state> seqs(static_cast<std::size_t>(o.batch));
  for (int i = 0; i < o.batch; ++i) {
    auto& s = seqs[static_cast<std::size_t>(i)];
    s.tokens = i == 0 ? prompt : co_prompts[static_cast<std::size_t>(i - 1)];
    s.prompt_len = static_cast<std::int64_t>(s.tokens.size());
    s.kv = kv.create_sequence();
    if (!kv.reserve(s.kv, s.prompt_len + o.steps)) {
      throw std::logic_error("diverge: the KV pool sized for the largest batch is too small");
    }
  }
  // The step's new tokens get their KV slots before it runs, as the scheduler does.
  auto step_of = [&](sequence_state& s, std::int64_t n, bool samples, bool prefill) {
    const auto from = std::span<const token_id>(s.tokens).subspan(
        static_cast<std::size_t>(s.computed), static_cast<std::size_t>(n));
    if (!kv.append(s.kv, from)) throw std::logic_error("diverge: a reserved block went missing");
    step_sequence q;
    q.tokens = s.tokens;
    q.context_before = s.computed;
    q.new_tokens = static_cast<std::int32_t>(n);
    q.blocks = kv.block_table(s.kv);
    q.samples = samples;
    q.prefill = prefill;
    return q;
  };
  const int k = k_diverge_top_k;
  std::vector<token_id> chosen(seqs.size(), -1);
  auto record = [&](int step, const step_output& out, std::size_t sample_row) {
    const std::size_t v = static_cast<std::size_t>(m.vocab);
    json row = {{"prompt", p}, {"step", step}, {"token", out.tokens[sample_row]}};
    std::vector<std::int32_t> ids(out.top_ids.begin() + sample_row * k,
                                  out.top_ids.begin() + (sample_row + 1) * k);
    std::vector<float> lps(out.top_logprobs.begin() + sample_row * k,
                           out.top_logprobs.begin() + (sample_row + 1) * k);
    row["top_ids"] = ids;
    row["top_logprobs"] = lps;
    row["margin"] = static_cast<double>(lps[0]) - static_cast<double>(lps[1]);
    row["logits_hash"] = hash_logits(std::span<const float>(out.logits.data() + sample_row * v, v));
    if (forced.active()) row["fed"] = forced.at(p, static_cast<std::size_t>(step));
    rows.push_back(std::move(row));
  };
  // The tokens of step `step` join the histories: the forced one for the prompt under test.
  auto feed = [&](int step) {
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].tokens.push_back(
          i == 0 && forced.active() ? forced.at(p, static_cast<std::size_t>(step)) : chosen[i]);
    }
  };
  // Step 0: the prefills, chunked into steps of at most max_tokens tokens; a sequence samples
  // its first token in the step that computes its last prompt token.
  while (true) {
    std::vector<step_sequence> plan;
    std::vector<std::size_t> who;
    std::int64_t budget = max_tokens;
    for (std::size_t i = 0; i < seqs.size() && budget > 0; ++i) {
      auto& s = seqs[i];
      const std::int64_t left = s.prompt_len - s.computed;
      if (left == 0) continue;
      const std::int64_t n = std::min(left, budget);
      plan.push_back(step_of(s, n, s.computed + n == s.prompt_len, true));
      who.push_back(i);
      budget -= n;
    }
    if (plan.empty()) break;
    const step_output out = exec.step(plan);
    std::size_t sample_row = 0;
    for (std::size_t j = 0; j < plan.size(); ++j) {
      auto& s = seqs[who[j]];
      s.computed += plan[j].new_tokens;
      if (!plan[j].samples) continue;
      chosen[who[j]] = out.tokens[sample_row];
      if (who[j] == 0) record(0, out, sample_row);
      ++sample_row;
    }
  }
  if (o.steps > 1) feed(0);
  // Steps 1 ... steps - 1: every sequence decodes one token.
  for (int step = 1; step < o.steps; ++step) {
    std::vector<step_sequence> plan;
    for (auto& s : seqs) plan.push_back(step_of(s, 1, true, false));
    const step_output out = exec.step(plan);
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].computed += 1;
      chosen[i] = out.tokens[i];
    }
    record(step, out, 0);
    if (step + 1 < o.steps) feed(step);
  }
}

}  // namespace

void validate_diverge_options(const diverge_options& o) {
  if (o.executor != "cuda" && o.executor != "cpu") {
    throw std::invalid_argument("--executor '" + o.executor + "': expected cuda or cpu");
  }
  if (o.checkpoint.empty()) model_preset_by_name(o.model);  // throws with the known names
  if (o.prompts_file.empty() == o.prompt_set.empty()) {
    throw std::invalid_argument("diverge run: give exactly one of --prompts FILE or --prompt-set");
  }
  if (o.steps <= 0 || o.steps > 100000) {
    throw std::invalid_argument("--steps " + std::to_string(o.steps) + " out of range [1, 100000]");
  }
  if (o.batch <= 0 || o.batch > 4096) {
    throw std::invalid_argument("--batch " + std::to_string(o.batch) + " out of range [1, 4096]");
  }
  if (o.split_tokens < 0) throw std::invalid_argument("--split-tokens must be >= 0");
  if (o.max_step_tokens <= 0) throw std::invalid_argument("max step tokens must be positive");
}

json run_diverge(const diverge_options& o) {
  validate_diverge_options(o);
  const bool on_gpu = o.executor == "cuda";
  model_setup ms = load_model(o);
  detail::executor_setup& setup = ms.exec;
  const model_preset& m = setup.decoder.model;

  // Prompts (and the tokens to force, when teacher-forced).
  const prompt_set ps = o.prompts_file.empty() ? random_prompt_set(o.prompt_set, m.vocab)
                                               : read_prompt_file(o.prompts_file, m.vocab);
  for (std::size_t p = 0; p < ps.prompts.size(); ++p) {
    const auto len = static_cast<std::int64_t>(ps.prompts[p].size());
    if (len + o.steps > m.max_context) {
      throw std::invalid_argument("prompt " + std::to_string(p) + ": " + std::to_string(len) +
                                  " tokens + " + std::to_string(o.steps) + " steps exceed " +
                                  m.name + "'s context of " + std::to_string(m.max_context));
    }
  }
  const forced_tokens forced(o, ps, m);

  // KV blocks: enough for the largest batch, every sequence's whole table reserved up front.
  const int co = o.batch - 1;
  std::vector<std::vector<std::vector<token_id>>> co_prompts(ps.prompts.size());
  std::int64_t kv_blocks = 0, max_prefill = 0;
  for (std::size_t p = 0; p < ps.prompts.size(); ++p) {
    const auto len = static_cast<std::int64_t>(ps.prompts[p].size());
    co_prompts[p] = co_runner_prompts(o.co_runner_seed, p, co, len, m, o.steps);
    std::int64_t blocks = blocks_for(len + o.steps, k_block_tokens), tokens = len;
    for (const auto& c : co_prompts[p]) {
      blocks += blocks_for(static_cast<std::int64_t>(c.size()) + o.steps, k_block_tokens);
      tokens += static_cast<std::int64_t>(c.size());
    }
    kv_blocks = std::max(kv_blocks, blocks);
    max_prefill = std::max(max_prefill, tokens);
  }
  if (kv_blocks > k_max_kv_blocks) throw std::invalid_argument("diverge: too many KV blocks needed");
  setup.num_kv_blocks = static_cast<int>(kv_blocks);
  setup.max_seqs = o.batch;
  setup.max_tokens = static_cast<int>(
      std::max<std::int64_t>(o.batch, std::min<std::int64_t>(max_prefill, o.max_step_tokens)));
  setup.top_k = k_diverge_top_k;
  setup.weight_seed = o.weight_seed;
  // Deterministic: the CUDA engine's batch-invariant mode, with its split size when none is given.
  setup.split_tokens =
      o.deterministic && o.split_tokens == 0 ? k_batch_invariant_split_tokens : o.split_tokens;
  setup.batch_invariant = o.deterministic;
  setup.cuda_graphs = on_gpu && o.cuda_graphs;
  setup.device = o.device;
  if (o.progress) {
    o.progress("loading " + m.name + " (" + ms.weights_id + ", " +
               std::string(planner::name(setup.weight_format)) + ") on the " + o.executor +
               " executor: " + std::to_string(kv_blocks) + " KV blocks");
  }
  std::unique_ptr<executor> exec;
  if (on_gpu) {
    exec = detail::make_cuda_diverge_executor(setup);
  } else {
    // The bf16 weights an engine in this format runs: a quantized checkpoint's values as stored
    // (in its own format or dequantized to bf16, the same values), else each block linear
    // quantized and dequantized (quant_weights.hpp's dequantized_weights; bf16: unchanged).
    std::vector<bf16_bits> w =
        setup.weights ? *setup.weights : random_weights(m, setup.weight_seed);
    if (!ms.stored) w = dequantized_weights(m, w, setup.weight_format);
    exec = std::make_unique<cpu_engine>(setup.decoder, std::move(w), setup.num_kv_blocks,
                                        setup.top_k);
  }

  kv_cache_config kv_config;
  kv_config.block_tokens = k_block_tokens;
  kv_config.num_blocks = setup.num_kv_blocks;
  kv_config.prefix_caching = false;  // each prompt's batch runs alone, from an empty cache
  kv_config.track_recompute = false;
  json rows = json::array();
  for (std::size_t p = 0; p < ps.prompts.size(); ++p) {
    run_prompt(p, ps.prompts[p], co_prompts[p], o, kv_config, setup.max_tokens, m, forced, *exec,
               rows);
    if (o.progress && (p + 1 == ps.prompts.size() || (p + 1) % 8 == 0)) {
      o.progress("prompt " + std::to_string(p + 1) + " of " + std::to_string(ps.prompts.size()));
    }
  }

  std::int64_t total_tokens = 0;
  for (const auto& p : ps.prompts) total_tokens += static_cast<std::int64_t>(p.size());
  json cfg = {
      {"model", m.name},
      {"model_shape", shape_json(m)},
      {"checkpoint", o.checkpoint.empty() ? json(nullptr) : json(o.checkpoint)},
      {"weights", ms.weights_id},
      {"weight_format", std::string(planner::name(setup.weight_format))},
      {"prompt_set",
       {{"id", ps.id},
        {"hash", ps.hash},
        {"prompts", ps.prompts.size()},
        {"tokens", total_tokens}}},
      {"steps", o.steps},
      {"batch", o.batch},
      {"co_runners", "random:" + std::to_string(o.co_runner_seed)},
      {"split_tokens", setup.split_tokens},
      {"graphs", setup.cuda_graphs},
      {"deterministic", o.deterministic},
      {"dtype", "bf16"},
      {"executor", o.executor},
      {"sampling", "greedy"},
      {"top_k", k_diverge_top_k},
      {"block_tokens", k_block_tokens},
      {"max_step_tokens", setup.max_tokens},
      {"logits_hash", "fnv1a64 over the fp32 bit patterns of the step's logits row"},
      {"margin", "top_logprobs[0] - top_logprobs[1] (log-softmax of the raw logits)"},
      {"teacher_forced",
       o.force ? json{{"source", o.force_source}, {"prompt_set_hash", ps.hash}} : json(nullptr)}};
  if (o.checkpoint.empty()) cfg["random_weights_caveat"] = k_random_weights_caveat;
  return {{"schema", k_diverge_schema},
          {"environment", metrics::environment_block(on_gpu ? std::optional<int>(o.device)
                                                            : std::optional<int>())},
          {"config", cfg},
          {"rows", rows}};
}

}  // namespace ridgeline::bench
