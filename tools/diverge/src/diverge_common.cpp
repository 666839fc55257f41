// Host half of `ridgeline diverge` (see diverge.hpp): prompt sets, the run loop over either
// executor (the CPU one lives here; the CUDA one in diverge_run.cpp), fingerprint validation, the
// comparison with its KL estimate, verdicts and histograms, and the table.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>

#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/files.hpp"

namespace ridgeline::bench {
namespace {

using nlohmann::json;

constexpr std::uint64_t k_fnv_offset = 0xcbf29ce484222325ULL;
constexpr std::uint64_t k_fnv_prime = 0x100000001b3ULL;

void fnv_bytes(std::uint64_t& h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= k_fnv_prime;
  }
}
void fnv_u32(std::uint64_t& h, std::uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                              static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 24)};
  fnv_bytes(h, b, 4);
}
std::string hex64(std::uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h));
  return s;
}

std::string hash_prompts(const std::vector<std::vector<token_id>>& prompts) {
  std::uint64_t h = k_fnv_offset;
  fnv_u32(h, static_cast<std::uint32_t>(prompts.size()));
  for (const auto& p : prompts) {
    fnv_u32(h, static_cast<std::uint32_t>(p.size()));
    for (token_id t : p) fnv_u32(h, static_cast<std::uint32_t>(t));
  }
  return hex64(h);
}

std::string hash_weights(const std::vector<bf16_bits>& w) {
  std::uint64_t h = k_fnv_offset;
  for (bf16_bits x : w) {
    const unsigned char b[2] = {static_cast<unsigned char>(x), static_cast<unsigned char>(x >> 8)};
    fnv_bytes(h, b, 2);
  }
  return hex64(h);
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

long long parse_int(const std::string& text, const std::string& what) {
  std::size_t pos = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (text.empty() || pos != text.size()) {
    throw std::invalid_argument(what + ": '" + text + "' is not an integer");
  }
  return v;
}

void check_token(long long t, int vocab, const std::string& where) {
  if (t < 0 || t >= vocab) {
    throw std::invalid_argument(where + ": token id " + std::to_string(t) + " outside [0, " +
                                std::to_string(vocab) + ")");
  }
}

// ---- the CPU executor -------------------------------------------------------------------------

class cpu_executor final : public detail::diverge_executor {
 public:
  explicit cpu_executor(const detail::executor_setup& s)
      : m_engine(s.decoder, s.weights ? *s.weights : random_weights(s.decoder.model, s.weight_seed),
                 s.num_kv_blocks, s.top_k) {}
  detail::diverge_step_output step(std::span<const step_sequence> seqs) override {
    cpu_step_result r = m_engine.step(seqs);
    return {std::move(r.tokens), std::move(r.top_logprobs), std::move(r.top_ids),
            std::move(r.logits)};
  }

 private:
  cpu_engine m_engine;
};

// ---- the run loop -----------------------------------------------------------------------------

struct sequence_state {
  std::vector<token_id> tokens;
  std::vector<block_id> blocks;
  std::int64_t prompt_len = 0, computed = 0;
};

json shape_json(const model_preset& m) {
  return {{"layers", m.layers},     {"hidden", m.hidden},     {"heads", m.heads},
          {"kv_heads", m.kv_heads}, {"head_dim", m.head_dim}, {"intermediate", m.intermediate},
          {"vocab", m.vocab}};
}

std::int64_t blocks_for(std::int64_t tokens, int block_tokens) {
  return (tokens + block_tokens - 1) / block_tokens;
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

const json& row_at(const std::vector<const json*>& index, std::size_t steps, std::size_t p,
                   std::size_t s) {
  return *index[p * steps + s];
}

// Rows of a validated fingerprint, indexed [prompt * steps + step].
std::vector<const json*> index_rows(const json& doc) {
  const auto prompts = doc["config"]["prompt_set"]["prompts"].get<std::size_t>();
  const auto steps = doc["config"]["steps"].get<std::size_t>();
  std::vector<const json*> index(prompts * steps, nullptr);
  for (const auto& r : doc["rows"]) {
    index[r["prompt"].get<std::size_t>() * steps + r["step"].get<std::size_t>()] = &r;
  }
  return index;
}

}  // namespace

// ---- prompt sets ------------------------------------------------------------------------------

prompt_set random_prompt_set(const std::string& spec, int vocab) {
  const auto parts = split_on(spec, ':');
  if (parts.size() != 4 || parts[0] != "random") {
    throw std::invalid_argument("--prompt-set '" + spec + "': expected random:N:LEN:SEED");
  }
  const long long n = parse_int(parts[1], "--prompt-set N");
  const long long len = parse_int(parts[2], "--prompt-set LEN");
  const long long seed = parse_int(parts[3], "--prompt-set SEED");
  if (n <= 0 || n > 100000) throw std::invalid_argument("--prompt-set: N out of range [1, 100000]");
  if (len <= 0 || len > (1 << 20)) {
    throw std::invalid_argument("--prompt-set: LEN out of range [1, 1048576]");
  }
  prompt_set ps;
  ps.id = spec;
  std::seed_seq sq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), 0x9au};
  std::mt19937_64 rng(sq);
  std::uniform_int_distribution<token_id> tok(0, vocab - 1);
  ps.prompts.resize(static_cast<std::size_t>(n));
  for (auto& p : ps.prompts) {
    p.resize(static_cast<std::size_t>(len));
    for (auto& t : p) t = tok(rng);
  }
  ps.hash = hash_prompts(ps.prompts);
  return ps;
}

prompt_set read_prompt_file(const std::string& path, int vocab) {
  const std::string text = read_text_file(path);
  prompt_set ps;
  ps.id = "file:" + std::filesystem::path(path).filename().string();
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    json j;
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      throw std::invalid_argument(path + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_array()) throw std::invalid_argument(path + ": expected an array of prompts");
    for (std::size_t i = 0; i < j.size(); ++i) {
      const std::string where = path + ": prompt " + std::to_string(i);
      if (!j[i].is_array()) throw std::invalid_argument(where + " is not an array of token ids");
      std::vector<token_id> p;
      for (const auto& t : j[i]) {
        if (!t.is_number_integer()) throw std::invalid_argument(where + " holds a non-integer");
        check_token(t.get<long long>(), vocab, where);
        p.push_back(static_cast<token_id>(t.get<long long>()));
      }
      if (p.empty()) throw std::invalid_argument(where + " is empty");
      ps.prompts.push_back(std::move(p));
    }
  } else {
    std::istringstream in(text);
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      std::replace(line.begin(), line.end(), ',', ' ');
      std::istringstream ls(line);
      std::string item;
      std::vector<token_id> p;
      const std::string where = path + ":" + std::to_string(line_no);
      while (ls >> item) {
        const long long t = parse_int(item, where);
        check_token(t, vocab, where);
        p.push_back(static_cast<token_id>(t));
      }
      if (!p.empty()) ps.prompts.push_back(std::move(p));
    }
  }
  if (ps.prompts.empty()) throw std::invalid_argument(path + ": no prompts");
  ps.hash = hash_prompts(ps.prompts);
  return ps;
}

std::string hash_logits(std::span<const float> row) {
  std::uint64_t h = k_fnv_offset;
  for (float x : row) fnv_u32(h, std::bit_cast<std::uint32_t>(x));
  return hex64(h);
}

// ---- run --------------------------------------------------------------------------------------

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
  constexpr int block_tokens = 16;

  // Model and weights.
  detail::executor_setup setup;
  std::string weights_id;
  if (!o.checkpoint.empty()) {
    const std::filesystem::path dir(o.checkpoint);
    setup.decoder = read_hf_config(dir / "config.json", block_tokens).decoder;
    if (o.progress) o.progress("reading checkpoint " + o.checkpoint);
    setup.weights = load_checkpoint_weights(dir, setup.decoder.model);
    weights_id = "checkpoint fnv1a64:" + hash_weights(*setup.weights);
  } else {
    setup.decoder = make_decoder_config(model_preset_by_name(o.model), block_tokens);
    weights_id = "random weights seed " + std::to_string(o.weight_seed);
  }
  const model_preset& m = setup.decoder.model;
  if (m.planning_only) {
    throw std::invalid_argument(m.name + " is a planning-only preset (does not fit one GPU)");
  }

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
  std::vector<const json*> forced;
  std::size_t forced_steps = 0;
  if (o.force) {
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
    forced_steps = fc["steps"].get<std::size_t>();
    if (forced_steps < static_cast<std::size_t>(o.steps)) {
      throw std::invalid_argument(src + ": has " + std::to_string(forced_steps) +
                                  " steps, fewer than --steps " + std::to_string(o.steps));
    }
    forced = index_rows(*o.force);
  }
  // What the forcing run fed at (prompt, step): its "fed" when it was forced itself, else its
  // token.
  auto forced_token = [&](std::size_t p, std::size_t s) {
    const json& r = row_at(forced, forced_steps, p, s);
    return (r.contains("fed") ? r["fed"] : r["token"]).get<token_id>();
  };

  // KV blocks: every sequence of the largest batch gets its whole table up front.
  const int co = o.batch - 1;
  std::vector<std::vector<std::vector<token_id>>> co_prompts(ps.prompts.size());
  std::int64_t kv_blocks = 0, max_prefill = 0;
  for (std::size_t p = 0; p < ps.prompts.size(); ++p) {
    const auto len = static_cast<std::int64_t>(ps.prompts[p].size());
    co_prompts[p] = co_runner_prompts(o.co_runner_seed, p, co, len, m, o.steps);
    std::int64_t blocks = blocks_for(len + o.steps, block_tokens), tokens = len;
    for (const auto& c : co_prompts[p]) {
      blocks += blocks_for(static_cast<std::int64_t>(c.size()) + o.steps, block_tokens);
      tokens += static_cast<std::int64_t>(c.size());
    }
    kv_blocks = std::max(kv_blocks, blocks);
    max_prefill = std::max(max_prefill, tokens);
  }
  if (kv_blocks > (1 << 30)) throw std::invalid_argument("diverge: too many KV blocks needed");
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
    o.progress("loading " + m.name + " (" + weights_id + ") on the " + o.executor +
               " executor: " + std::to_string(kv_blocks) + " KV blocks");
  }
  std::unique_ptr<detail::diverge_executor> exec =
      on_gpu ? detail::make_cuda_diverge_executor(setup)
             : std::unique_ptr<detail::diverge_executor>(new cpu_executor(setup));

  json rows = json::array();
  const int k = k_diverge_top_k;
  for (std::size_t p = 0; p < ps.prompts.size(); ++p) {
    // Sequence 0 is the prompt under test; blocks are handed out in order.
    std::vector<sequence_state> seqs(static_cast<std::size_t>(o.batch));
    block_id next_block = 0;
    for (int i = 0; i < o.batch; ++i) {
      auto& s = seqs[static_cast<std::size_t>(i)];
      s.tokens = i == 0 ? ps.prompts[p] : co_prompts[p][static_cast<std::size_t>(i - 1)];
      s.prompt_len = static_cast<std::int64_t>(s.tokens.size());
      const auto nb = blocks_for(s.prompt_len + o.steps, block_tokens);
      for (std::int64_t b = 0; b < nb; ++b) s.blocks.push_back(next_block++);
    }
    std::vector<token_id> chosen(seqs.size(), -1);
    auto record = [&](int step, const detail::diverge_step_output& out, std::size_t sample_row) {
      const std::size_t v = static_cast<std::size_t>(m.vocab);
      json row = {{"prompt", p}, {"step", step}, {"token", out.tokens[sample_row]}};
      std::vector<std::int32_t> ids(out.top_ids.begin() + sample_row * k,
                                    out.top_ids.begin() + (sample_row + 1) * k);
      std::vector<float> lps(out.top_logprobs.begin() + sample_row * k,
                             out.top_logprobs.begin() + (sample_row + 1) * k);
      row["top_ids"] = ids;
      row["top_logprobs"] = lps;
      row["margin"] = static_cast<double>(lps[0]) - static_cast<double>(lps[1]);
      row["logits_hash"] =
          hash_logits(std::span<const float>(out.logits.data() + sample_row * v, v));
      if (o.force) row["fed"] = forced_token(p, static_cast<std::size_t>(step));
      rows.push_back(std::move(row));
    };
    // The tokens of step `step` join the histories: the forced one for the prompt under test.
    auto feed = [&](int step) {
      for (std::size_t i = 0; i < seqs.size(); ++i) {
        seqs[i].tokens.push_back(i == 0 && o.force ? forced_token(p, static_cast<std::size_t>(step))
                                                   : chosen[i]);
      }
    };
    // Step 0: the prefills, chunked into steps of at most max_tokens tokens; a sequence samples
    // its first token in the step that computes its last prompt token.
    while (true) {
      std::vector<step_sequence> plan;
      std::vector<std::size_t> who;
      std::int64_t budget = setup.max_tokens;
      for (std::size_t i = 0; i < seqs.size() && budget > 0; ++i) {
        auto& s = seqs[i];
        const std::int64_t left = s.prompt_len - s.computed;
        if (left == 0) continue;
        const std::int64_t n = std::min(left, budget);
        step_sequence q;
        q.tokens = s.tokens;
        q.context_before = s.computed;
        q.new_tokens = static_cast<std::int32_t>(n);
        q.blocks = s.blocks;
        q.samples = s.computed + n == s.prompt_len;
        plan.push_back(q);
        who.push_back(i);
        budget -= n;
      }
      if (plan.empty()) break;
      const detail::diverge_step_output out = exec->step(plan);
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
      std::vector<step_sequence> plan(seqs.size());
      for (std::size_t i = 0; i < seqs.size(); ++i) {
        auto& q = plan[i];
        q.tokens = seqs[i].tokens;
        q.context_before = seqs[i].computed;
        q.new_tokens = 1;
        q.blocks = seqs[i].blocks;
        q.samples = true;
      }
      const detail::diverge_step_output out = exec->step(plan);
      for (std::size_t i = 0; i < seqs.size(); ++i) {
        seqs[i].computed += 1;
        chosen[i] = out.tokens[i];
      }
      record(step, out, 0);
      if (step + 1 < o.steps) feed(step);
    }
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
      {"weights", weights_id},
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
      {"top_k", k},
      {"block_tokens", block_tokens},
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

// ---- validation -------------------------------------------------------------------------------

void validate_fingerprint(const json& doc, const std::string& source) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument(source + ": not a usable ridgeline.diverge/v1 fingerprint (" +
                                what + ")");
  };
  if (!doc.is_object()) bad("not a JSON object");
  if (!doc.contains("schema") || doc["schema"] != k_diverge_schema)
    bad("schema is not " + std::string(k_diverge_schema));
  if (!doc.contains("config") || !doc["config"].is_object()) bad("no config");
  if (!doc.contains("rows") || !doc["rows"].is_array()) bad("no rows");
  const json& c = doc["config"];
  for (const char* f : {"model", "weights"}) {
    if (!c.contains(f) || !c[f].is_string()) bad(std::string("config.") + f + " missing");
  }
  if (!c.contains("steps") || !c["steps"].is_number_integer() || c["steps"].get<long long>() <= 0) {
    bad("config.steps missing");
  }
  if (!c.contains("prompt_set") || !c["prompt_set"].is_object() ||
      !c["prompt_set"].contains("hash") || !c["prompt_set"]["hash"].is_string() ||
      !c["prompt_set"].contains("id") || !c["prompt_set"]["id"].is_string() ||
      !c["prompt_set"].contains("prompts") || !c["prompt_set"]["prompts"].is_number_integer() ||
      c["prompt_set"]["prompts"].get<long long>() <= 0) {
    bad("config.prompt_set missing");
  }
  const auto steps = c["steps"].get<std::size_t>();
  const auto prompts = c["prompt_set"]["prompts"].get<std::size_t>();
  if (steps * prompts > (std::size_t{1} << 32)) bad("absurd size");
  std::vector<char> seen(steps * prompts, 0);
  std::size_t i = 0;
  for (const auto& r : doc["rows"]) {
    const std::string at = "row " + std::to_string(i++);
    if (!r.is_object()) bad(at + " is not an object");
    for (const char* f : {"prompt", "step", "token"}) {
      if (!r.contains(f) || !r[f].is_number_integer()) bad(at + ": " + f + " missing");
    }
    const long long p = r["prompt"].get<long long>(), s = r["step"].get<long long>();
    if (p < 0 || static_cast<std::size_t>(p) >= prompts || s < 0 ||
        static_cast<std::size_t>(s) >= steps) {
      bad(at + ": prompt " + std::to_string(p) + " step " + std::to_string(s) + " out of range");
    }
    char& flag = seen[static_cast<std::size_t>(p) * steps + static_cast<std::size_t>(s)];
    if (flag) bad(at + ": prompt " + std::to_string(p) + " step " + std::to_string(s) + " twice");
    flag = 1;
    if (!r.contains("top_ids") || !r["top_ids"].is_array() || !r.contains("top_logprobs") ||
        !r["top_logprobs"].is_array() || r["top_ids"].size() != r["top_logprobs"].size() ||
        r["top_ids"].size() < 2) {
      bad(at + ": top_ids/top_logprobs missing or of different lengths");
    }
    for (const auto& x : r["top_ids"]) {
      if (!x.is_number_integer()) bad(at + ": top_ids holds a non-integer");
    }
    for (const auto& x : r["top_logprobs"]) {
      if (!x.is_number()) bad(at + ": top_logprobs holds a non-number (NaN?)");
    }
    if (!r.contains("margin") || !r["margin"].is_number()) bad(at + ": margin missing");
    if (!r.contains("logits_hash") || !r["logits_hash"].is_string())
      bad(at + ": logits_hash missing");
    if (r.contains("fed") && !r["fed"].is_number_integer()) bad(at + ": fed is not a token id");
  }
  if (doc["rows"].size() != steps * prompts) {
    bad("truncated: " + std::to_string(doc["rows"].size()) + " rows, expected " +
        std::to_string(prompts) + " prompts x " + std::to_string(steps) + " steps");
  }
}

// ---- comparison -------------------------------------------------------------------------------

std::optional<double> topk_kl(std::span<const std::int32_t> ids_p, std::span<const float> lp_p,
                              std::span<const std::int32_t> ids_q, std::span<const float> lp_q) {
  std::vector<double> p, q;
  for (std::size_t i = 0; i < ids_p.size(); ++i) {
    for (std::size_t j = 0; j < ids_q.size(); ++j) {
      if (ids_p[i] == ids_q[j]) {
        p.push_back(std::exp(static_cast<double>(lp_p[i])));
        q.push_back(std::exp(static_cast<double>(lp_q[j])));
        break;
      }
    }
  }
  if (p.empty()) return std::nullopt;
  double sp = 0, sq = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    sp += p[i];
    sq += q[i];
  }
  if (!(sp > 0) || !(sq > 0)) return std::nullopt;
  double kl = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double pi = p[i] / sp, qi = q[i] / sq;
    if (pi > 0) kl += pi * std::log(pi / qi);
  }
  return std::max(kl, 0.0);  // rounding can leave -1e-17
}

namespace {

struct margin_bins {
  // Log-prob margins: divergences happen where the top two are close, so the bins are finer there.
  std::vector<double> edges{0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3, 10};
  std::vector<long long> all = std::vector<long long>(10, 0), diverged = all;
  std::size_t bin(double m) const {
    std::size_t b = 0;
    while (b + 1 < edges.size() && m >= edges[b + 1]) ++b;
    return b;
  }
  json to_json() const {
    json out = json::array();
    for (std::size_t b = 0; b < edges.size(); ++b) {
      out.push_back({{"lo", edges[b]},
                     {"hi", b + 1 < edges.size() ? json(edges[b + 1]) : json(nullptr)},
                     {"steps", all[b]},
                     {"divergences", diverged[b]}});
    }
    return out;
  }
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

json side_summary(const json& doc, const std::string& name) {
  json env = doc.value("environment", json::object());
  json gpu = env.contains("gpu") && env["gpu"].is_object() ? env["gpu"] : json(nullptr);
  return {{"file", name},
          {"gpu", gpu.is_object() ? gpu.value("name", "") : std::string("none")},
          {"config", doc["config"]}};
}

}  // namespace

json compare_fingerprints(const json& a, const json& b, const std::string& name_a,
                          const std::string& name_b) {
  validate_fingerprint(a, name_a);
  validate_fingerprint(b, name_b);
  const json &ca = a["config"], &cb = b["config"];
  // A checkpoint's model is named after its folder, which may differ between machines: the shape
  // and the weights' hash identify it.
  const bool both_presets =
      ca.value("checkpoint", json()).is_null() && cb.value("checkpoint", json()).is_null();
  if ((both_presets && ca["model"] != cb["model"]) ||
      ca.value("model_shape", json()) != cb.value("model_shape", json())) {
    throw std::invalid_argument("cannot compare " + name_a + " and " + name_b +
                                ": different models (" + ca["model"].get<std::string>() + " vs " +
                                cb["model"].get<std::string>() + ")");
  }
  if (ca["weights"] != cb["weights"]) {
    throw std::invalid_argument("cannot compare " + name_a + " and " + name_b +
                                ": different weights (" + ca["weights"].get<std::string>() +
                                " vs " + cb["weights"].get<std::string>() + ")");
  }
  const json &pa = ca["prompt_set"], &pb = cb["prompt_set"];
  if (pa["hash"] != pb["hash"] || pa["prompts"] != pb["prompts"]) {
    throw std::invalid_argument(
        "cannot compare " + name_a + " and " + name_b + ": different prompt sets (" +
        pa["id"].get<std::string>() + " hash " + pa["hash"].get<std::string>() + " vs " +
        pb["id"].get<std::string>() + " hash " + pb["hash"].get<std::string>() + ")");
  }
  const auto steps_a = ca["steps"].get<std::size_t>(), steps_b = cb["steps"].get<std::size_t>();
  const std::size_t steps = std::min(steps_a, steps_b);
  const auto prompts = pa["prompts"].get<std::size_t>();
  const auto ia = index_rows(a), ib = index_rows(b);

  margin_bins bins;
  std::vector<double> kls;
  double max_delta_all = 0;
  long long compared_all = 0, same_top1_all = 0, hash_equal_all = 0, kl_undefined = 0;
  long long token_mismatches_all = 0, prompts_diverged = 0;
  std::optional<std::size_t> earliest;
  bool all_bitwise = true;
  json prompt_rows = json::array(), step_rows = json::array(), divergences = json::array();

  for (std::size_t p = 0; p < prompts; ++p) {
    std::optional<std::size_t> div;
    double margin_at = 0, margin_b_at = 0;
    bool shared = true;
    std::size_t compared = 0, history_split = steps;
    long long same_top1 = 0, hash_equal = 0, mismatches = 0;
    double kl_sum = 0, kl_max = 0, delta_max = 0;
    long long kl_n = 0;
    for (std::size_t s = 0; s < steps; ++s) {
      const json& ra = row_at(ia, steps_a, p, s);
      bins.all[bins.bin(ra["margin"].get<double>())]++;
      if (!shared) continue;
      const json& rb = row_at(ib, steps_b, p, s);
      ++compared;
      const auto ids_a = ra["top_ids"].get<std::vector<std::int32_t>>();
      const auto ids_b = rb["top_ids"].get<std::vector<std::int32_t>>();
      const auto lp_a = ra["top_logprobs"].get<std::vector<float>>();
      const auto lp_b = rb["top_logprobs"].get<std::vector<float>>();
      const bool token_same = ra["token"] == rb["token"];
      const bool top1_same = ids_a[0] == ids_b[0];
      const bool hash_same = ra["logits_hash"] == rb["logits_hash"];
      double delta = 0;
      for (std::size_t i = 0; i < ids_a.size(); ++i) {
        for (std::size_t j = 0; j < ids_b.size(); ++j) {
          if (ids_a[i] == ids_b[j]) {
            delta = std::max(delta, std::fabs(double(lp_a[i]) - double(lp_b[j])));
          }
        }
      }
      const auto kl = topk_kl(ids_a, lp_a, ids_b, lp_b);
      if (kl) {
        kls.push_back(*kl);
        kl_sum += *kl;
        kl_max = std::max(kl_max, *kl);
        ++kl_n;
      } else {
        ++kl_undefined;
      }
      delta_max = std::max(delta_max, delta);
      same_top1 += top1_same;
      hash_equal += hash_same;
      if (!token_same) {
        ++mismatches;
        if (!div) {
          div = s;
          margin_at = ra["margin"].get<double>();
          margin_b_at = rb["margin"].get<double>();
        }
      }
      step_rows.push_back({{"prompt", p},
                           {"step", s},
                           {"same_token", token_same},
                           {"same_top1", top1_same},
                           {"logits_equal", hash_same},
                           {"margin_a", ra["margin"]},
                           {"margin_b", rb["margin"]},
                           {"max_abs_delta_logprob", delta},
                           {"kl_topk", kl ? json(*kl) : json(nullptr)}});
      // The history of step s + 1 includes the token fed at step s.
      const json& fa = ra.contains("fed") ? ra["fed"] : ra["token"];
      const json& fb = rb.contains("fed") ? rb["fed"] : rb["token"];
      if (fa != fb) {
        shared = false;
        history_split = s + 1;
      }
    }
    std::string verdict;
    if (div) {
      verdict = "diverged at step " + std::to_string(*div);
      ++prompts_diverged;
      bins.diverged[bins.bin(margin_at)]++;
      divergences.push_back(
          {{"prompt", p}, {"step", *div}, {"margin_a", margin_at}, {"margin_b", margin_b_at}});
      if (!earliest || *div < *earliest) earliest = div;
      all_bitwise = false;
    } else if (compared < steps) {
      // Only with teacher forcing from different sources: same tokens, different histories.
      verdict = "histories differ from step " + std::to_string(history_split) +
                " (teacher-forced from different runs)";
      all_bitwise = false;
    } else if (hash_equal == static_cast<long long>(compared)) {
      verdict = "bitwise identical";
    } else {
      verdict = "numerically different but same tokens";
      all_bitwise = false;
    }
    compared_all += static_cast<long long>(compared);
    same_top1_all += same_top1;
    hash_equal_all += hash_equal;
    token_mismatches_all += mismatches;
    max_delta_all = std::max(max_delta_all, delta_max);
    prompt_rows.push_back(
        {{"prompt", p},
         {"verdict", verdict},
         {"divergence_step", div ? json(*div) : json(nullptr)},
         {"margin_at_divergence", div ? json(margin_at) : json(nullptr)},
         {"margin_b_at_divergence", div ? json(margin_b_at) : json(nullptr)},
         {"steps_compared", compared},
         {"token_mismatches", mismatches},
         {"kl_mean", kl_n ? json(kl_sum / double(kl_n)) : json(nullptr)},
         {"kl_max", kl_n ? json(kl_max) : json(nullptr)},
         {"max_abs_delta_logprob", delta_max},
         {"same_top1_share", compared ? double(same_top1) / double(compared) : 0.0},
         {"logits_equal_share", compared ? double(hash_equal) / double(compared) : 0.0}});
  }

  std::string overall;
  if (earliest) {
    overall = "diverged at step " + std::to_string(*earliest);
  } else if (all_bitwise) {
    overall = "bitwise identical";
  } else {
    overall = "numerically different but same tokens";
  }
  double kl_mean = 0;
  for (double x : kls) kl_mean += x;
  if (!kls.empty()) kl_mean /= double(kls.size());
  const bool teacher_forced = (ca.contains("teacher_forced") && !ca["teacher_forced"].is_null()) ||
                              (cb.contains("teacher_forced") && !cb["teacher_forced"].is_null());
  json summary = {
      {"verdict", overall},
      {"prompts", prompts},
      {"prompts_diverged", prompts_diverged},
      {"earliest_divergence_step", earliest ? json(*earliest) : json(nullptr)},
      {"steps", steps},
      {"steps_compared", compared_all},
      {"token_mismatches", token_mismatches_all},
      {"same_top1_share", compared_all ? double(same_top1_all) / double(compared_all) : 0.0},
      {"logits_equal_share", compared_all ? double(hash_equal_all) / double(compared_all) : 0.0},
      {"kl_mean", kl_mean},
      {"kl_p99", percentile(kls, 0.99)},
      {"kl_max", kls.empty() ? 0.0 : *std::max_element(kls.begin(), kls.end())},
      {"kl_undefined_steps", kl_undefined},
      {"max_abs_delta_logprob", max_delta_all}};
  json cfg = {
      {"a", side_summary(a, name_a)},
      {"b", side_summary(b, name_b)},
      {"steps", steps},
      {"teacher_forced", teacher_forced},
      {"compared_steps",
       "steps where A and B have the same history: up to and including the first differing token, "
       "or every step when both were fed the same tokens (teacher forcing)"},
      {"kl_estimate",
       "KL(A || B) on the top-k: over the ids in both top-k lists, exp(logprob) renormalized to "
       "sum to 1 on that shared set on each side; the tail beyond the top-k is ignored, so this "
       "underestimates differences spread over the tail"},
      {"margin", "A's top-1 minus top-2 log-probability"}};
  if (steps_a != steps_b) {
    cfg["note"] = "A has " + std::to_string(steps_a) + " steps, B " + std::to_string(steps_b) +
                  "; the first " + std::to_string(steps) + " are compared";
  }
  if (ca.contains("random_weights_caveat")) cfg["random_weights_caveat"] = k_random_weights_caveat;
  return {{"schema", k_diverge_compare_schema},
          {"environment", metrics::environment_block(std::nullopt)},
          {"config", cfg},
          {"summary", summary},
          {"rows", prompt_rows},
          {"steps", step_rows},
          {"divergences", divergences},
          {"margin_histogram", bins.to_json()}};
}

std::string compare_table(const json& r) {
  std::ostringstream out;
  char line[512];
  const json& c = r["config"];
  auto describe = [&](const char* label, const json& side) {
    const json& sc = side["config"];
    std::snprintf(
        line, sizeof line,
        "%s: %s  gpu %s, executor %s, batch %d, split %d, graphs %s, deterministic %s%s\n", label,
        side["file"].get<std::string>().c_str(), side["gpu"].get<std::string>().c_str(),
        sc.value("executor", "?").c_str(), sc.value("batch", 0), sc.value("split_tokens", 0),
        sc.value("graphs", false) ? "on" : "off", sc.value("deterministic", false) ? "on" : "off",
        sc.contains("teacher_forced") && !sc["teacher_forced"].is_null() ? ", teacher-forced" : "");
    out << line;
  };
  const json& ca = c["a"]["config"];
  out << "model " << ca["model"].get<std::string>() << ", " << ca["weights"].get<std::string>()
      << ", prompts " << ca["prompt_set"]["id"].get<std::string>() << ", "
      << c["steps"].get<long long>() << " steps\n";
  describe("A", c["a"]);
  describe("B", c["b"]);
  if (c.contains("note")) out << "note: " << c["note"].get<std::string>() << "\n";
  out << "\n";
  std::snprintf(line, sizeof line, "%6s  %-40s %10s %9s %10s %10s %10s %8s\n", "prompt", "verdict",
                "margin(A)", "compared", "KL mean", "KL max", "max|dlp|", "same top1");
  out << line;
  auto num = [](const json& v, const char* fmt) {
    if (v.is_null()) return std::string("-");
    char b[64];
    std::snprintf(b, sizeof b, fmt, v.get<double>());
    return std::string(b);
  };
  for (const auto& row : r["rows"]) {
    std::snprintf(line, sizeof line, "%6lld  %-40s %10s %9lld %10s %10s %10s %7.1f%%\n",
                  row["prompt"].get<long long>(), row["verdict"].get<std::string>().c_str(),
                  num(row["margin_at_divergence"], "%.4g").c_str(),
                  row["steps_compared"].get<long long>(), num(row["kl_mean"], "%.3g").c_str(),
                  num(row["kl_max"], "%.3g").c_str(),
                  num(row["max_abs_delta_logprob"], "%.3g").c_str(),
                  100.0 * row["same_top1_share"].get<double>());
    out << line;
  }
  const json& s = r["summary"];
  out << "\nverdict: " << s["verdict"].get<std::string>() << " (" << s["prompts_diverged"] << " of "
      << s["prompts"] << " prompts diverged)\n";
  std::snprintf(
      line, sizeof line,
      "KL on the top-k over %lld compared steps: mean %.3g, p99 %.3g, max %.3g; max "
      "|delta log-prob| %.3g; same top-1 %.1f%%; logits bitwise equal %.1f%%\n",
      s["steps_compared"].get<long long>(), s["kl_mean"].get<double>(), s["kl_p99"].get<double>(),
      s["kl_max"].get<double>(), s["max_abs_delta_logprob"].get<double>(),
      100.0 * s["same_top1_share"].get<double>(), 100.0 * s["logits_equal_share"].get<double>());
  out << line;
  out << "margins of A (log-prob, all steps) and where divergences happened:\n";
  for (const auto& b : r["margin_histogram"]) {
    std::string range = num(b["lo"], "%g") + " .. " + (b["hi"].is_null() ? "" : num(b["hi"], "%g"));
    std::snprintf(line, sizeof line, "  %-14s %8lld steps %6lld divergences\n", range.c_str(),
                  b["steps"].get<long long>(), b["divergences"].get<long long>());
    out << line;
  }
  out << "KL is estimated on the top-k (renormalized over the shared ids; the tail is ignored).\n";
  if (c.contains("random_weights_caveat")) {
    out << "caveat: " << c["random_weights_caveat"].get<std::string>() << "\n";
  }
  return out.str();
}

}  // namespace ridgeline::bench
