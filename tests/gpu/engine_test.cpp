// The CUDA engine end to end against the CPU engine (same decoder_forward over the naive
// references) on a tiny model: a ragged prefill then 32 greedy decode steps. Tokens are teacher-
// forced from the CPU side so both always see the same history; every step's fp32 logits must
// agree within |gpu - cpu| <= 0.03 + 0.03 |cpu| (bf16 activations rounded at the same op
// boundaries on both sides, different fp32 summation orders), and the greedy tokens must be equal
// wherever the CPU's top-1/top-2 margin exceeds twice that tolerance. The quantized formats
// (fp8, int8, int4) run against the CPU decoder on their dequantized weights, the same way, from
// random weights, a bf16 checkpoint quantized at load, and quantized checkpoints written by the
// test writers (tests/support: AWQ and GPTQ int4, Hugging Face fp8, GGUF Q4_0 and Q8_0), which
// the engine holds packed as stored.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/attention.hpp"
#include "gpu_test_util.hpp"
#include <filesystem>

#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/quant_weights.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/kernels/numeric.hpp"

#include "gguf_writer.hpp"
#include "quant_checkpoint_writer.hpp"
#include "temp_dir.hpp"

using namespace ridgeline;

namespace {

model_preset tiny_model() {
  // name, layers, hidden, heads, kv_heads (GQA 2:1), head_dim, intermediate, vocab, max_context
  return {"tiny-e2e", 2, 256, 4, 2, 64, 520, 777, 512, false};
}

struct sequence_state {
  std::vector<token_id> tokens;
  std::vector<block_id> blocks;
  std::int64_t computed = 0;
};

// 33 greedy steps of three sequences (prompts of 7, 29 and 1 tokens, then decodes) on both
// executors: logits within tolerance, the same tokens where the CPU's margin is clear.
void expect_cuda_matches_cpu(const model_preset& m, engine_options o) {
  o.num_kv_blocks = 96;
  o.return_logits = true;
  o.seed = 3;
  cuda_engine gpu(m, o);
  cpu_engine cpu(m, gpu.download_weights(), o.num_kv_blocks);

  std::mt19937 rng(5);
  std::vector<block_id> pool(96);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<sequence_state> seqs(3);
  const int prompt_lens[] = {7, 29, 1};
  for (int i = 0; i < 3; ++i) {
    std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
    for (int j = 0; j < prompt_lens[i]; ++j) seqs[i].tokens.push_back(tok(rng));
    seqs[i].blocks.assign(pool.begin() + i * 32, pool.begin() + (i + 1) * 32);
  }
  int mismatched_tokens = 0, steps_with_logit_errors = 0;
  double worst = 0;
  for (int step = 0; step <= 32; ++step) {
    std::vector<step_sequence> plan;
    for (auto& s : seqs) {
      step_sequence q;
      q.tokens = s.tokens;
      q.context_before = s.computed;
      q.new_tokens = static_cast<std::int32_t>(s.tokens.size() - s.computed);
      q.blocks = s.blocks;
      q.samples = true;
      plan.push_back(q);
    }
    const step_output g = gpu.step(plan);
    const step_output c = cpu.step(plan);
    ASSERT_EQ(g.tokens.size(), 3u);
    ASSERT_EQ(g.logits.size(), c.logits.size());
    int bad = 0;
    for (std::size_t i = 0; i < c.logits.size(); ++i) {
      const double err = std::fabs(double(g.logits[i]) - c.logits[i]);
      const double tol = 0.03 + 0.03 * std::fabs(c.logits[i]);
      worst = std::max(worst, err / tol);
      if (!(err <= tol)) ++bad;  // NaN fails
    }
    steps_with_logit_errors += bad > 0;
    for (int i = 0; i < 3; ++i) {
      const float* row = &c.logits[std::size_t(i) * m.vocab];
      std::vector<float> sorted(row, row + m.vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
      const double margin = sorted[0] - sorted[1];
      if (g.tokens[i] != c.tokens[i] && margin > 2 * (0.03 + 0.03 * std::fabs(sorted[0]))) {
        ++mismatched_tokens;
        ADD_FAILURE() << "step " << step << " sequence " << i << ": GPU chose " << g.tokens[i]
                      << ", CPU " << c.tokens[i] << " with margin " << margin;
      }
      seqs[i].computed = static_cast<std::int64_t>(seqs[i].tokens.size());
      seqs[i].tokens.push_back(c.tokens[i]);
    }
  }
  EXPECT_EQ(steps_with_logit_errors, 0) << "worst logit error at " << worst << " of its tolerance";
  EXPECT_EQ(mismatched_tokens, 0);
  std::printf("%s: worst logit error %.3f of tolerance over 33 steps\n", m.name.c_str(), worst);
}

}  // namespace

TEST(Engine, CudaMatchesCpuForGreedyDecode) {
  RIDGELINE_REQUIRE_GPU();
  engine_options o;
  o.max_tokens = 128;
  o.max_seqs = 8;
  expect_cuda_matches_cpu(tiny_model(), o);
}

// heads x head_dim (256) < hidden (320), as in Mistral-Nemo: at 40 tokens and 40 sequences the
// LM head's gathered rows (40 x 320) do not fit in q's space (40 x 256) and get their own buffer.
TEST(Engine, CudaMatchesCpuWhenHeadsAreNarrowerThanHidden) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m{"narrow-e2e", 2, 320, 4, 2, 64, 520, 777, 512, false};
  engine_options o;
  o.max_tokens = 40;
  o.max_seqs = 40;
  ASSERT_FALSE(step_buffer_elements(m, o.max_tokens, o.max_seqs).xs_in_q);
  expect_cuda_matches_cpu(m, o);
}

// Log-probabilities end to end (serve --max-logprobs): a cuda engine built with top_logprobs = 5
// against its own fp32 logits (log_softmax in double on the host: tight) and against the cpu
// engine's values (the logit tolerance above, twice: the log-sum-exp moves with the logits), on
// greedy and sampled rows, teacher-forced from the CPU; and the tokens equal those of a cuda
// engine built without log-probabilities (they never change what is sampled).
TEST(Engine, SampledLogprobsMatchTheCpuEngine) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  constexpr int k_top = 5;
  engine_options o;
  o.max_tokens = 128;
  o.max_seqs = 8;
  o.num_kv_blocks = 96;
  o.seed = 3;
  engine_options with = o;
  with.top_logprobs = k_top;
  with.return_logits = true;
  cuda_engine gpu(m, with);
  cuda_engine plain(m, o);
  cpu_engine cpu(m, gpu.download_weights(), o.num_kv_blocks, 16, k_top);

  std::vector<sequence_state> seqs(3);
  const int prompt_lens[] = {9, 31, 1};
  const sampling_row rows[] = {{0, 0, 1.0f, 1.0f, 0, 0},        // greedy
                               {0.8f, 0, 1.0f, 1.0f, 17, 0},    // sampled: often outside the top
                               {1.3f, 40, 0.95f, 1.0f, 29, 0}};  // top-k and top-p
  std::mt19937 rng(11);
  for (int i = 0; i < 3; ++i) {
    std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
    for (int j = 0; j < prompt_lens[i]; ++j) seqs[i].tokens.push_back(tok(rng));
    for (int b = 0; b < 32; ++b) seqs[i].blocks.push_back(i * 32 + b);
  }
  double worst_self = 0, worst_cpu = 0;
  int outside_top = 0, compared = 0;
  for (int step = 0; step <= 24; ++step) {
    std::vector<step_sequence> plan;
    for (int i = 0; i < 3; ++i) {
      auto& s = seqs[i];
      step_sequence q;
      q.tokens = s.tokens;
      q.context_before = s.computed;
      q.new_tokens = static_cast<std::int32_t>(s.tokens.size() - s.computed);
      q.blocks = s.blocks;
      q.samples = true;
      q.sampling = rows[i];
      q.sampling.step = static_cast<std::uint64_t>(step);
      plan.push_back(q);
    }
    const step_output g = gpu.step(plan);
    const step_output p = plain.step(plan);
    const step_output c = cpu.step(plan);
    ASSERT_EQ(g.sampled_logprobs.size(), 3u);
    ASSERT_EQ(g.top_ids.size(), 3u * k_top);
    ASSERT_EQ(g.top_logprobs.size(), 3u * k_top);
    ASSERT_EQ(c.sampled_logprobs.size(), 3u);
    EXPECT_TRUE(p.sampled_logprobs.empty() && p.top_ids.empty());
    EXPECT_EQ(g.tokens, p.tokens) << "step " << step << ": log-probabilities changed the tokens";
    for (int i = 0; i < 3; ++i) {
      const float* row = &g.logits[std::size_t(i) * m.vocab];
      double mx = row[0], amax = 0;
      for (int v = 0; v < m.vocab; ++v) mx = std::max(mx, double(row[v]));
      double sum = 0;
      for (int v = 0; v < m.vocab; ++v) sum += std::exp(double(row[v]) - mx);
      const double lse = mx + std::log(sum);
      const double want = double(row[g.tokens[i]]) - lse;
      const double got = g.sampled_logprobs[i];
      const double err = std::fabs(got - want);
      worst_self = std::max(worst_self, err);
      EXPECT_LE(err, 1e-4 + 1e-5 * std::fabs(want)) << "step " << step << " row " << i;
      EXPECT_LE(got, 0.0);
      const int* ids = &g.top_ids[std::size_t(i) * k_top];
      const float* lps = &g.top_logprobs[std::size_t(i) * k_top];
      bool in_top = false;
      for (int j = 0; j < k_top; ++j) {
        if (j > 0) {
          EXPECT_GE(lps[j - 1], lps[j]) << "step " << step << " row " << i;
        }
        if (ids[j] == g.tokens[i]) {
          in_top = true;
          EXPECT_EQ(lps[j], g.sampled_logprobs[i]) << "step " << step << " row " << i;
        }
      }
      outside_top += !in_top;
      if (rows[i].temperature == 0.0f) {
        EXPECT_EQ(ids[0], g.tokens[i]);
      }
      for (int v = 0; v < m.vocab; ++v) amax = std::max(amax, std::fabs(double(row[v])));
      if (g.tokens[i] == c.tokens[i]) {
        const double tol = 2 * (0.03 + 0.03 * amax);
        const double d = std::fabs(got - c.sampled_logprobs[i]);
        worst_cpu = std::max(worst_cpu, d / tol);
        EXPECT_LE(d, tol) << "step " << step << " row " << i << ": gpu " << got << " cpu "
                          << c.sampled_logprobs[i];
        ++compared;
      }
    }
    for (int i = 0; i < 3; ++i) {
      seqs[i].computed = static_cast<std::int64_t>(seqs[i].tokens.size());
      seqs[i].tokens.push_back(c.tokens[i]);
    }
  }
  EXPECT_GT(compared, 30);
  std::printf("sampled logprobs: worst %.2e against the GPU's own logits, %.3f of the CPU "
              "tolerance over %d rows; %d sampled tokens outside the top %d\n",
              worst_self, worst_cpu, compared, outside_top, k_top);
}

TEST(Engine, BadRequestsAreClearErrorsAndServingContinues) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  engine_options o;
  o.num_kv_blocks = 64;
  o.max_tokens = 128;
  o.max_seqs = 1;  // odd-sized input staging once misaligned the sampling rows
  cuda_engine gpu(m, o);
  std::vector<block_id> blocks(40);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<token_id> good = {1, 2, 3}, out_of_vocab = {1, 9999, 3}, empty;
  auto one = [&](const std::vector<token_id>& t, std::int64_t before, std::int32_t n) {
    return std::vector<step_sequence>{{t, before, n, blocks, true, {}}};
  };
  EXPECT_THROW(gpu.step(one(out_of_vocab, 0, 3)), std::invalid_argument);
  EXPECT_THROW(gpu.step(one(empty, 0, 0)), std::invalid_argument);
  std::vector<token_id> long_prompt(600, 5);
  std::vector<block_id> many(40);
  std::iota(many.begin(), many.end(), 0);
  EXPECT_THROW(gpu.step(std::vector<step_sequence>{{long_prompt, 0, 600, many, true, {}}}),
               std::invalid_argument);
  const step_output r = gpu.step(one(good, 0, 3));  // still serving
  ASSERT_EQ(r.tokens.size(), 1u);
  EXPECT_GE(r.tokens[0], 0);
  EXPECT_LT(r.tokens[0], m.vocab);
}

// The split workspace is not monotone in the batch size (on an H100 with 8 KV heads, 65
// sequences need more than 64 or 128: a decode step of 65 sequences near full context once failed
// a serving run). Every batch size and block-table width the engine can step must fit the plan.
TEST(Engine, AttentionWorkspaceCoversEveryDecodeBatchAndTableWidth) {
  RIDGELINE_REQUIRE_GPU();
  for (const char* name : {"llama-3-8b", "llama-2-7b", "tinyllama-1.1b"}) {
    SCOPED_TRACE(name);
    const model_preset& m = model_preset_by_name(name);
    engine_options o;
    const auto p = plan_engine_memory(m, o, 200LL << 30);
    const int full = static_cast<int>((m.max_context + o.block_tokens - 1) / o.block_tokens);
    std::int64_t most = 0;
    for (int seqs = 1; seqs <= o.max_seqs; ++seqs) {
      for (int width = 1; width <= full; width += (width < 64 ? 1 : 31)) {
        cuda::attention_shape s;
        s.num_seqs = seqs;
        s.num_q_tokens = seqs;
        s.num_q_heads = m.heads;
        s.num_kv_heads = m.kv_heads;
        s.head_dim = m.head_dim;
        s.block_size = o.block_tokens;
        s.max_blocks_per_seq = width;
        most = std::max(most, cuda::plan_attention(s).workspace_bytes);
      }
    }
    EXPECT_LE(most, p.attention_workspace_bytes);
    EXPECT_LE(p.attention_workspace_bytes, p.scratch_bytes);
  }
}

TEST(Engine, MemoryPlanRefusesWhatDoesNotFit) {
  RIDGELINE_REQUIRE_GPU();  // the attention workspace size reads the device's SM count
  engine_options o;
  try {
    plan_engine_memory(model_preset_by_name("llama-2-7b"), o, 8LL << 30);
    FAIL() << "accepted 13.5 GB of weights in 8 GiB";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("weights alone need"), std::string::npos) << e.what();
  }
  EXPECT_THROW(plan_engine_memory(model_preset_by_name("llama-3-70b"), o, 80LL << 30),
               std::invalid_argument);
  const auto p = plan_engine_memory(model_preset_by_name("llama-2-7b"), o, 79LL << 30);
  EXPECT_GT(p.kv_blocks, 1000);
  EXPECT_EQ(p.kv_bytes_per_block, 16 * 512 * 1024);  // 16 tokens x 512 KiB
}

TEST(Engine, LoadsASafetensorsCheckpoint) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  engine_options o;
  o.num_kv_blocks = 16;
  o.max_tokens = 64;
  o.max_seqs = 2;
  o.return_logits = true;
  o.seed = 9;
  cuda_engine random(m, o);
  const auto dir = std::filesystem::temp_directory_path() / "ridgeline_engine_ckpt";
  std::filesystem::create_directories(dir);
  save_checkpoint(dir / "model.safetensors", m, random.download_weights());
  engine_options lo = o;
  lo.checkpoint = dir.string();
  cuda_engine loaded(m, lo);
  std::vector<token_id> prompt = {3, 1, 4, 1, 5, 9, 2, 6};
  std::vector<block_id> blocks = {2, 7};
  const std::vector<step_sequence> plan = {{prompt, 0, 8, blocks, true, {}}};
  const step_output a = random.step(plan), b = loaded.step(plan);
  EXPECT_EQ(a.logits, b.logits);  // same weights, same kernels: bitwise
  // A truncated file is a clear error before anything runs.
  std::filesystem::resize_file(dir / "model.safetensors",
                               std::filesystem::file_size(dir / "model.safetensors") / 2);
  try {
    cuda_engine broken(m, lo);
    FAIL() << "loaded a truncated checkpoint";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

// The cuda executor through the executor interface, over block tables from the KV cache manager:
// the same batch (ragged prefill, then decode steps replayed as graphs) with ascending and with
// shuffled block placement gives bitwise the same logits and tokens. Where the blocks lie is not
// part of the result, which is what lets sweep and diverge take their tables from the manager.
TEST(Engine, ResultsDoNotDependOnBlockPlacement) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  engine_options o;
  o.num_kv_blocks = 96;
  o.max_tokens = 128;
  o.max_seqs = 4;
  o.return_logits = true;
  o.seed = 4;
  cuda_engine gpu(m, o);
  executor& exec = gpu;
  auto run = [&](block_placement placement) {
    kv_cache_config c;
    c.block_tokens = o.block_tokens;
    c.num_blocks = o.num_kv_blocks;
    c.prefix_caching = false;
    c.placement = placement;
    c.placement_seed = 17;
    kv_cache_manager kv(c);
    std::mt19937 rng(8);
    std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
    std::vector<std::vector<token_id>> tokens(3);
    std::vector<seq_id> ids;
    std::vector<std::int64_t> computed(3, 0);
    const int prompt_lens[] = {37, 5, 70};
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < prompt_lens[i]; ++j) tokens[i].push_back(tok(rng));
      ids.push_back(kv.create_sequence());
    }
    std::vector<float> logits;
    std::vector<token_id> chosen;
    std::vector<block_id> tables;
    for (int step = 0; step < 6; ++step) {
      std::vector<step_sequence> seqs;
      for (int i = 0; i < 3; ++i) {
        const auto n = static_cast<std::int64_t>(tokens[i].size()) - computed[i];
        EXPECT_TRUE(kv.append(ids[i], std::span<const token_id>(tokens[i]).subspan(
                                          static_cast<std::size_t>(computed[i]))));
        step_sequence q;
        q.tokens = tokens[i];
        q.context_before = computed[i];
        q.new_tokens = static_cast<std::int32_t>(n);
        q.blocks = kv.block_table(ids[i]);
        q.samples = true;
        q.prefill = step == 0;
        seqs.push_back(q);
      }
      for (const auto& q : seqs) tables.insert(tables.end(), q.blocks.begin(), q.blocks.end());
      const step_output out = exec.step(seqs);
      EXPECT_EQ(out.graph, step > 0);  // decode steps replay a graph
      EXPECT_GT(out.forward_seconds, 0);
      logits.insert(logits.end(), out.logits.begin(), out.logits.end());
      for (int i = 0; i < 3; ++i) {
        computed[i] = static_cast<std::int64_t>(tokens[i].size());
        tokens[i].push_back(out.tokens[static_cast<std::size_t>(i)]);
        chosen.push_back(out.tokens[static_cast<std::size_t>(i)]);
      }
    }
    return std::make_tuple(logits, chosen, tables);
  };
  const auto [la, ta, ba] = run(block_placement::ascending);
  const auto [ls, ts, bs] = run(block_placement::shuffled);
  EXPECT_EQ(ba[0], 0);
  ASSERT_EQ(ba.size(), bs.size());  // the same table widths
  EXPECT_NE(ba, bs);                // the batches really lie elsewhere
  EXPECT_EQ(ta, ts);
  ASSERT_EQ(la.size(), ls.size());
  EXPECT_TRUE(la == ls) << "logits differ between block placements";
}

// --- Quantized weights (engine_options::weights) ----------------------------------------------

namespace {

// Block linears packable in every format (in_features multiples of 128), GQA, odd vocabulary.
model_preset quant_model() {
  return {"quant-e2e", 2, 256, 4, 2, 64, 384, 777, 512, false};
}

// The engine in a quantized format against the CPU decoder on the weights it effectively runs
// (dequantized_weights: each block linear quantized and dequantized, rounded to bf16; for a
// quantized checkpoint in its own format, its values as stored, load_checkpoint_weights), teacher-
// forced from the CPU, logits within the bf16 tolerance above. Five sequences join over 12 steps
// so that every path of the quantized linear runs: a 308-token prefill (dequantize + GEMM, above
// 256 tokens), a mixed step of a 90-token prompt and 3 decodes (93 tokens: two 64-token slices
// of the quantized GEMV), a mixed step of a 40-token prompt and 4 decodes (one launch), and
// decode steps of 3 to 5 tokens (replayed as CUDA graphs).
void expect_quantized_engine_matches_cpu(planner::weight_format f, engine_options o,
                                         const std::string& checkpoint = "") {
  const model_preset m = quant_model();
  o.weights = f;
  o.num_kv_blocks = 128;
  o.max_tokens = 512;
  o.max_seqs = 8;
  o.return_logits = true;
  o.seed = 3;
  o.checkpoint = checkpoint;
  const std::vector<bf16_bits> source =
      checkpoint.empty() ? random_weights(m, 3) : load_checkpoint_weights(checkpoint, m);
  const bool stored_quantized = !checkpoint.empty() && checkpoint_weight_format(checkpoint);
  const std::vector<bf16_bits> reference =
      stored_quantized ? source : dequantized_weights(m, source, f);
  cuda_engine gpu(m, o);
  EXPECT_EQ(gpu.weight_format(), f);
  EXPECT_EQ(gpu.packed_tensors(), 4 * m.layers);
  EXPECT_GT(gpu.memory().dequant_scratch_bytes, 0);
  // What the engine holds, through its GPU dequantizer, is the CPU decoder's weights bit for bit.
  const std::vector<bf16_bits> held = gpu.download_weights();
  ASSERT_EQ(held.size(), reference.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < held.size(); ++i) differ += held[i] != reference[i];
  EXPECT_EQ(differ, 0u) << "weights differing from dequantized_weights()";
  cpu_engine cpu(m, reference, o.num_kv_blocks);

  struct joining {
    int step, prompt;
  };
  const joining joins[] = {{0, 300}, {0, 7}, {0, 1}, {3, 90}, {5, 40}};
  std::mt19937 rng(5);
  std::vector<block_id> pool(128);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<sequence_state> seqs(5);
  for (int i = 0; i < 5; ++i) {
    std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
    for (int j = 0; j < joins[i].prompt; ++j) seqs[i].tokens.push_back(tok(rng));
    seqs[i].blocks.assign(pool.begin() + i * 24, pool.begin() + (i + 1) * 24);
  }
  double worst = 0;
  int bad_steps = 0, mismatched = 0;
  std::vector<int> step_tokens;
  for (int step = 0; step < 12; ++step) {
    std::vector<step_sequence> plan;
    std::vector<int> in_plan;
    int tokens = 0;
    for (int i = 0; i < 5; ++i) {
      if (joins[i].step > step) continue;
      step_sequence q;
      q.tokens = seqs[i].tokens;
      q.context_before = seqs[i].computed;
      q.new_tokens = static_cast<std::int32_t>(seqs[i].tokens.size() - seqs[i].computed);
      q.blocks = seqs[i].blocks;
      q.samples = true;
      tokens += q.new_tokens;
      plan.push_back(q);
      in_plan.push_back(i);
    }
    step_tokens.push_back(tokens);
    const step_output g = gpu.step(plan);
    const step_output c = cpu.step(plan);
    ASSERT_EQ(g.logits.size(), c.logits.size());
    int bad = 0;
    for (std::size_t k = 0; k < c.logits.size(); ++k) {
      const double err = std::fabs(double(g.logits[k]) - c.logits[k]);
      const double tol = 0.03 + 0.03 * std::fabs(c.logits[k]);
      worst = std::max(worst, err / tol);
      if (!(err <= tol)) ++bad;  // NaN fails
    }
    bad_steps += bad > 0;
    for (std::size_t k = 0; k < in_plan.size(); ++k) {
      const float* row = &c.logits[k * std::size_t(m.vocab)];
      std::vector<float> sorted(row, row + m.vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
      if (g.tokens[k] != c.tokens[k] &&
          sorted[0] - sorted[1] > 2 * (0.03 + 0.03 * std::fabs(sorted[0]))) {
        ++mismatched;
      }
      sequence_state& s = seqs[static_cast<std::size_t>(in_plan[k])];
      s.computed = static_cast<std::int64_t>(s.tokens.size());
      s.tokens.push_back(c.tokens[k]);
    }
  }
  EXPECT_EQ(step_tokens[0], 308);
  EXPECT_EQ(step_tokens[3], 93);
  EXPECT_EQ(step_tokens[5], 44);
  EXPECT_EQ(bad_steps, 0) << "worst logit error at " << worst << " of its tolerance";
  EXPECT_EQ(mismatched, 0);
  std::printf("%s%s: worst logit error %.3f of tolerance over 12 steps\n",
              std::string(planner::name(f)).c_str(), o.batch_invariant ? " (batch-invariant)" : "",
              worst);
}

}  // namespace

TEST(Engine, QuantizedWeightsMatchTheCpuDecoder) {
  RIDGELINE_REQUIRE_GPU();
  for (auto f : {planner::weight_format::fp8, planner::weight_format::int8,
                 planner::weight_format::int4}) {
    SCOPED_TRACE(planner::name(f));
    expect_quantized_engine_matches_cpu(f, engine_options{});
  }
}

// Batch-invariant mode dequantizes every quantized linear and runs the fixed cuBLASLt algorithms.
TEST(Engine, QuantizedWeightsInBatchInvariantMode) {
  RIDGELINE_REQUIRE_GPU();
  engine_options o;
  o.batch_invariant = true;
  expect_quantized_engine_matches_cpu(planner::weight_format::int4, o);
}

// A bf16 checkpoint with --weights int8 is quantized at load like random weights; a checkpoint
// quantized in another format is refused before anything is allocated (quant_weights_test has
// the AWQ, GPTQ, fp8 and GGUF loaders).
TEST(Engine, Bf16CheckpointRunsQuantized) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = quant_model();
  const auto dir = std::filesystem::temp_directory_path() / "ridgeline_engine_quant_ckpt";
  std::filesystem::create_directories(dir);
  save_checkpoint(dir / "model.safetensors", m, random_weights(m, 11));
  write_hf_config(dir / "config.json", make_decoder_config(m));
  expect_quantized_engine_matches_cpu(planner::weight_format::int8, engine_options{}, dir.string());
  std::filesystem::remove_all(dir);
}

// Weight bytes per format feed the KV plan: int4 leaves Llama-2-7B over 1000 more blocks of KV
// than bf16 on the same free memory; the dequantize scratch (one gate_up as bf16) is counted
// only when a step may take that path (max_tokens above 256).
TEST(Engine, QuantizedWeightsLeaveMoreKv) {
  RIDGELINE_REQUIRE_GPU();  // the attention workspace size reads the device's SM count
  const model_preset m = model_preset_by_name("llama-2-7b");
  engine_options o;
  const auto bf16 = plan_engine_memory(m, o, 79LL << 30);
  o.weights = planner::weight_format::int4;
  const auto q4 = plan_engine_memory(m, o, 79LL << 30);
  EXPECT_EQ(bf16.dequant_scratch_bytes, 0);
  EXPECT_EQ(q4.dequant_scratch_bytes, 2LL * 2 * 11008 * 4096);
  EXPECT_LT(q4.weight_bytes, bf16.weight_bytes / 3);
  EXPECT_GT(q4.kv_blocks, bf16.kv_blocks + 1000) << q4.kv_blocks << " vs " << bf16.kv_blocks;
  o.max_tokens = 256;
  EXPECT_EQ(plan_engine_memory(m, o, 79LL << 30).dequant_scratch_bytes, 0);
  o.weights = planner::weight_format::fp16;
  EXPECT_THROW(plan_engine_memory(m, o, 79LL << 30), std::invalid_argument);
}

// --- Quantized checkpoints (the test writers of tests/support) ---------------------------------

namespace {

std::vector<std::uint8_t> bf16_bytes(const std::vector<bf16_bits>& v) {
  std::vector<std::uint8_t> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A Hugging Face folder of quant_model() whose block linears are quantized as `method` stores
// them ("awq", "gptq" with or without g_idx (row / group, no act-order), "fp8" per channel),
// from the writers' random codes; the other tensors bf16 from random_weights(m, 5). The engine
// reads it packed as stored.
void write_quantized_folder(const std::filesystem::path& dir, const model_preset& m,
                            const std::string& method, bool gptq_g_idx = false) {
  const std::vector<bf16_bits> w = random_weights(m, 5);
  const auto tensors = weight_tensors(m);
  std::vector<test::st_tensor> st;
  std::uint32_t seed = 20;
  std::size_t at = 0;
  for (const weight_tensor& t : tensors) {
    const auto n = static_cast<std::size_t>(t.elements);
    const std::vector<bf16_bits> mine(w.begin() + static_cast<std::ptrdiff_t>(at),
                                      w.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
    const auto parts = test::hf_tensor_parts(t.name, m);
    ASSERT_FALSE(parts.empty()) << t.name;
    if (!is_block_linear(t)) {  // one tensor each: the bf16 values as they are
      st.push_back({parts[0].first, "BF16", parts[0].second, bf16_bytes(mine)});
      continue;
    }
    for (const auto& [prefix, shape] : parts) {
      const int out = static_cast<int>(shape[0]), in = static_cast<int>(shape[1]);
      std::vector<test::st_tensor> packed;
      if (method == "fp8") {
        packed = test::pack_fp8(test::make_fp8_case(out, in, "channel", seed++), prefix);
      } else {
        const auto c = test::make_int4_case(out, in, 128, false, seed++, method == "awq" ? 0 : 1);
        packed = method == "awq" ? test::pack_awq(c, prefix)
                                 : test::pack_gptq(c, prefix, gptq_g_idx, /*v2=*/false);
      }
      st.insert(st.end(), packed.begin(), packed.end());
    }
  }
  test::write_safetensors(dir / "model.safetensors", st);
  write_hf_config(dir / "config.json", make_decoder_config(m));
  nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  if (method == "awq") {
    j["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128},
                                {"version", "gemm"}, {"zero_point", true}};
  } else if (method == "gptq") {
    j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128},
                                {"desc_act", false}, {"checkpoint_format", "gptq"}};
  } else {
    j["quantization_config"] = {{"quant_method", "fp8"}, {"activation_scheme", "dynamic"}};
  }
  std::ofstream(dir / "config.json") << j.dump(2);
}

}  // namespace

// AWQ int4, GPTQ int4 (with and without g_idx), Hugging Face fp8 per channel: each folder, run in
// its own format (no --weights), holds its block linears packed as stored; the engine's weights
// through the GPU dequantizer equal the loader's bf16 values bit for bit, and its logits match
// the CPU decoder on those values over the prefill, sliced, single-launch and decode paths.
TEST(Engine, QuantizedSafetensorsCheckpointsMatchTheCpuDecoder) {
  RIDGELINE_REQUIRE_GPU();
  struct folder_case {
    const char* method;
    bool g_idx;
    planner::weight_format format;
  };
  for (const folder_case& c : {folder_case{"awq", false, planner::weight_format::int4},
                               folder_case{"gptq", false, planner::weight_format::int4},
                               folder_case{"gptq", true, planner::weight_format::int4},
                               folder_case{"fp8", false, planner::weight_format::fp8}}) {
    SCOPED_TRACE(std::string(c.method) + (c.g_idx ? " with g_idx" : ""));
    test::temp_dir dir(std::string("engine_") + c.method + (c.g_idx ? "_gidx" : ""));
    write_quantized_folder(dir.path, quant_model(), c.method, c.g_idx);
    ASSERT_EQ(checkpoint_weight_format(dir.path), c.format);
    expect_quantized_engine_matches_cpu(c.format, engine_options{}, dir.path.string());
  }
}

// GGUF Q4_0 and Q8_0 files from the independent GGUF writer (every linear, the embedding and the
// LM head quantized; norms F32): the linears packed as int4 / int8 in groups of 32, the rest
// dequantized to bf16; against the CPU decoder on load_checkpoint_weights' values.
TEST(Engine, GgufCheckpointsMatchTheCpuDecoder) {
  RIDGELINE_REQUIRE_GPU();
  for (auto [type, f] : {std::pair{test::ggml::q4_0, planner::weight_format::int4},
                         std::pair{test::ggml::q8_0, planner::weight_format::int8}}) {
    SCOPED_TRACE(planner::name(f));
    test::temp_dir dir("engine_gguf");
    const std::filesystem::path file = dir.path / "quant-e2e.gguf";
    test::make_tiny_llama_gguf(quant_model(), type).writer.write(file);
    ASSERT_EQ(checkpoint_weight_format(file), f);
    expect_quantized_engine_matches_cpu(f, engine_options{}, file.string());
  }
}
