// `ridgeline diverge` without a GPU (bench/diverge.hpp, cli/diverge_command.cpp): compare on
// synthetic fingerprints (identical, perturbed log-probs, a token changed at step 5, teacher
// forcing), refusal of truncated or mismatched files, the top-k KL on a hand-computed case, prompt
// sets, host random weights, and `diverge run --executor cpu` on a tiny model: twice gives
// bitwise-identical fingerprints, and the CLI's exit codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/files.hpp"

using namespace ridgeline;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string name = "ridgeline_diverge_";
    name += std::to_string(::getpid());
    name += '_';
    name += ::testing::UnitTest::GetInstance()->current_test_info()->name();
    path = fs::temp_directory_path() / name;
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

struct cli_result {
  int code;
  std::string out, err;
};
cli_result run_cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  args.insert(args.begin(), "--no-progress");
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}
int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A synthetic fingerprint: token (3p + 5s) % 100 chosen with log-probs -0.5, -1.5, -2, -2.5, ...
// (margin 1), a hash per (prompt, step).
json synthetic(int prompts, int steps, const std::string& model = "tiny",
               const std::string& weights = "random weights seed 1",
               const std::string& ps_hash = "00000000000000aa") {
  json rows = json::array();
  for (int p = 0; p < prompts; ++p) {
    for (int s = 0; s < steps; ++s) {
      const int tok = (3 * p + 5 * s) % 100;
      std::vector<int> ids;
      std::vector<float> lps;
      for (int i = 0; i < bench::k_diverge_top_k; ++i) {
        ids.push_back(tok + 100 * i);
        lps.push_back(i == 0 ? -0.5f : -1.0f - 0.5f * float(i));
      }
      rows.push_back({{"prompt", p},
                      {"step", s},
                      {"token", tok},
                      {"top_ids", ids},
                      {"top_logprobs", lps},
                      {"margin", 1.0},
                      {"logits_hash", std::to_string(p * 1000 + s)}});
    }
  }
  json cfg = {{"model", model},
              {"model_shape", {{"layers", 2}}},
              {"weights", weights},
              {"prompt_set", {{"id", "random:2:8:1"}, {"hash", ps_hash}, {"prompts", prompts}}},
              {"steps", steps},
              {"batch", 1},
              {"executor", "cpu"},
              {"teacher_forced", nullptr},
              {"random_weights_caveat", bench::k_random_weights_caveat}};
  return {{"schema", bench::k_diverge_schema},
          {"environment", metrics::environment_block(std::nullopt)},
          {"config", cfg},
          {"rows", rows}};
}

json& row(json& doc, int p, int s) {
  for (auto& r : doc["rows"]) {
    if (r["prompt"] == p && r["step"] == s) return r;
  }
  throw std::logic_error("no such row");
}

template <class F>
std::string invalid_message(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument thrown)";
}

}  // namespace

TEST(Diverge, IdenticalFingerprintsAreBitwiseIdentical) {
  const json a = synthetic(2, 10);
  const json r = bench::compare_fingerprints(a, a, "a", "b");
  EXPECT_EQ(r["schema"], bench::k_diverge_compare_schema);
  EXPECT_EQ(r["summary"]["verdict"], "bitwise identical");
  EXPECT_EQ(r["summary"]["steps_compared"], 20);
  EXPECT_EQ(r["summary"]["kl_max"], 0.0);
  EXPECT_EQ(r["summary"]["same_top1_share"], 1.0);
  for (const auto& p : r["rows"]) EXPECT_EQ(p["verdict"], "bitwise identical");
  EXPECT_TRUE(r["divergences"].empty());
  EXPECT_TRUE(r["config"].contains("random_weights_caveat"));
  EXPECT_NE(bench::compare_table(r).find("caveat: random weights"), std::string::npos);
}

TEST(Diverge, PerturbedLogprobsAreNumericallyDifferent) {
  const json a = synthetic(2, 10);
  json b = a;
  row(b, 1, 3)["top_logprobs"][1] = -1.5 - 0.25;  // A has -1.5 for the second id
  row(b, 1, 3)["logits_hash"] = "other";
  const json r = bench::compare_fingerprints(a, b, "a", "b");
  EXPECT_EQ(r["summary"]["verdict"], "numerically different but same tokens");
  EXPECT_EQ(r["rows"][0]["verdict"], "bitwise identical");
  EXPECT_EQ(r["rows"][1]["verdict"], "numerically different but same tokens");
  EXPECT_NEAR(r["summary"]["max_abs_delta_logprob"].get<double>(), 0.25, 1e-6);
  EXPECT_GT(r["summary"]["kl_max"].get<double>(), 0.0);
  EXPECT_EQ(r["summary"]["steps_compared"], 20);  // same tokens: every step shares its history
  EXPECT_NEAR(r["summary"]["logits_equal_share"].get<double>(), 19.0 / 20.0, 1e-12);
  // kl_p99 is core's linear quantile: 19 zero KLs and one positive, so position 0.99 x 19 = 18.81
  // lies 0.81 of the way from 0 to the largest (the nearest rank would give the largest).
  EXPECT_NEAR(r["summary"]["kl_p99"].get<double>(), 0.81 * r["summary"]["kl_max"].get<double>(),
              1e-12);
}

TEST(Diverge, ChangedTokenAtStep5DivergesThereWithItsMargin) {
  json a = synthetic(2, 10);
  row(a, 1, 5)["margin"] = 0.0123;
  json b = a;
  row(b, 1, 5)["token"] = 99;
  row(b, 1, 5)["margin"] = 0.02;
  row(b, 1, 5)["logits_hash"] = "other";
  for (int s = 6; s < 10; ++s) {  // after the divergence, everything may differ
    row(b, 1, s)["token"] = 42;
    row(b, 1, s)["top_ids"][0] = 77777;
  }
  const json r = bench::compare_fingerprints(a, b, "a", "b");
  EXPECT_EQ(r["summary"]["verdict"], "diverged at step 5");
  EXPECT_EQ(r["summary"]["prompts_diverged"], 1);
  EXPECT_EQ(r["rows"][0]["verdict"], "bitwise identical");
  const json& p1 = r["rows"][1];
  EXPECT_EQ(p1["verdict"], "diverged at step 5");
  EXPECT_EQ(p1["divergence_step"], 5);
  EXPECT_DOUBLE_EQ(p1["margin_at_divergence"].get<double>(), 0.0123);
  EXPECT_DOUBLE_EQ(p1["margin_b_at_divergence"].get<double>(), 0.02);
  EXPECT_EQ(p1["steps_compared"], 6);  // steps 0..5 share a history; 6.. do not
  ASSERT_EQ(r["divergences"].size(), 1u);
  EXPECT_EQ(r["divergences"][0]["step"], 5);
  EXPECT_DOUBLE_EQ(r["divergences"][0]["margin_a"].get<double>(), 0.0123);
  // The histogram counts every step of A and puts the divergence in the 0.01 .. 0.03 bin.
  long long steps = 0, divs = 0;
  for (const auto& bin : r["margin_histogram"]) {
    steps += bin["steps"].get<long long>();
    divs += bin["divergences"].get<long long>();
    if (bin["lo"] == 0.01) {
      EXPECT_EQ(bin["divergences"], 1);
    }
  }
  EXPECT_EQ(steps, 20);
  EXPECT_EQ(divs, 1);
  EXPECT_NE(bench::compare_table(r).find("diverged at step 5"), std::string::npos);
}

TEST(Diverge, TeacherForcedRunsAreComparedAfterTheDivergence) {
  const json a = synthetic(1, 10);
  json b = a;
  b["config"]["teacher_forced"] = {{"source", "a.json"}};
  for (auto& r : b["rows"]) r["fed"] = r["token"];  // B was fed A's tokens
  row(b, 0, 5)["token"] = 99;                       // and would have chosen otherwise at 5
  row(b, 0, 5)["logits_hash"] = "other";
  const json r = bench::compare_fingerprints(a, b, "a", "b");
  EXPECT_EQ(r["rows"][0]["verdict"], "diverged at step 5");
  EXPECT_EQ(r["rows"][0]["steps_compared"], 10);
  EXPECT_EQ(r["rows"][0]["token_mismatches"], 1);
  EXPECT_TRUE(r["config"]["teacher_forced"].get<bool>());
}

TEST(Diverge, RefusesTruncatedOrMismatchedFingerprints) {
  const json a = synthetic(2, 10);
  json cut = a;
  cut["rows"].erase(cut["rows"].end() - 1);
  EXPECT_NE(invalid_message([&] {
              bench::compare_fingerprints(a, cut, "a", "cut.json");
            }).find("cut.json: not a usable ridgeline.diverge/v1 fingerprint (truncated"),
            std::string::npos);
  json dup = a;
  dup["rows"][1] = dup["rows"][0];
  EXPECT_NE(invalid_message([&] { bench::validate_fingerprint(dup, "d"); }).find("twice"),
            std::string::npos);
  // The shape is core's typed reader's: a missing field is named with its path.
  json no_margin = a;
  no_margin["rows"][3].erase("margin");
  EXPECT_NE(invalid_message([&] { bench::validate_fingerprint(no_margin, "m.json"); })
                .find("m.json: rows[3].margin: missing"),
            std::string::npos)
      << invalid_message([&] { bench::validate_fingerprint(no_margin, "m.json"); });
  json one_id = a;
  one_id["rows"][2]["top_ids"] = json::array({1});
  one_id["rows"][2]["top_logprobs"] = json::array({-0.5});
  EXPECT_NE(invalid_message([&] { bench::validate_fingerprint(one_id, "o"); })
                .find("row 2: fewer than 2 top_ids"),
            std::string::npos);
  const auto typed = bench::validate_fingerprint(a, "a");
  EXPECT_EQ(typed.rows.size(), 20u);
  EXPECT_EQ(typed.config.model, "tiny");
  json no_schema = a;
  no_schema["schema"] = "ridgeline.sweep/v1";
  EXPECT_NE(invalid_message([&] { bench::validate_fingerprint(no_schema, "s"); }).find("schema"),
            std::string::npos);
  EXPECT_NE(invalid_message([&] {
              bench::compare_fingerprints(a, synthetic(2, 10, "tiny-mha"), "a", "b");
            }).find("different models (tiny vs tiny-mha)"),
            std::string::npos);
  EXPECT_NE(invalid_message([&] {
              bench::compare_fingerprints(a, synthetic(2, 10, "tiny", "random weights seed 2"), "a",
                                          "b");
            }).find("different weights"),
            std::string::npos);
  EXPECT_NE(invalid_message([&] {
              bench::compare_fingerprints(
                  a, synthetic(2, 10, "tiny", "random weights seed 1", "00000000000000bb"), "a",
                  "b");
            }).find("different prompt sets"),
            std::string::npos);
  // Different step counts compare the common steps and say so.
  const json r = bench::compare_fingerprints(a, synthetic(2, 7), "a", "b");
  EXPECT_EQ(r["summary"]["steps"], 7);
  EXPECT_TRUE(r["config"].contains("note"));
}

TEST(Diverge, FingerprintSummary) {
  json a = synthetic(2, 10);
  row(a, 0, 4)["margin"] = 0.004;
  const std::string s = bench::fingerprint_summary(a);
  // A fingerprint written before --weights: bf16.
  EXPECT_NE(s.find("tiny (random weights seed 1, bf16 weights), prompts random:2:8:1: 2 prompts x "
                   "10 steps at batch 1 on the cpu executor\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("mean 0.9502, smallest 0.004, 1 steps below 0.01\n"), std::string::npos) << s;
  EXPECT_NE(s.find("caveat: "), std::string::npos) << s;
}

TEST(Diverge, TopkKlOnAHandComputedCase) {
  // P on ids {1, 2, 3} = {0.5, 0.3, 0.2}, Q on ids {1, 2, 4} = {0.4, 0.4, 0.2}. Shared ids {1, 2}:
  // P renormalized {0.625, 0.375}, Q {0.5, 0.5};
  // KL = 0.625 ln(0.625/0.5) + 0.375 ln(0.375/0.5) = 0.0315839424...
  const std::vector<std::int32_t> ip{1, 2, 3}, iq{1, 2, 4};
  const std::vector<float> lp{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  const std::vector<float> lq{std::log(0.4f), std::log(0.4f), std::log(0.2f)};
  const auto kl = bench::topk_kl(ip, lp, iq, lq);
  ASSERT_TRUE(kl.has_value());
  EXPECT_NEAR(*kl, 0.03158394240196326, 1e-6);  // float log-probs: ~1e-7 relative
  EXPECT_EQ(*bench::topk_kl(ip, lp, ip, lp), 0.0);
  const std::vector<std::int32_t> disjoint{7, 8, 9};
  EXPECT_FALSE(bench::topk_kl(ip, lp, disjoint, lq).has_value());
  // The order of ids in either list does not matter.
  const std::vector<std::int32_t> iq_rev{4, 2, 1};
  const std::vector<float> lq_rev{lq[2], lq[1], lq[0]};
  EXPECT_NEAR(*bench::topk_kl(ip, lp, iq_rev, lq_rev), *kl, 1e-12);
}

TEST(Diverge, LogitsHashIsOverTheBits) {
  EXPECT_EQ(bench::hash_logits({}), "cbf29ce484222325");  // FNV-1a offset basis
  const std::vector<float> a{1.0f, -2.5f, 0.0f}, b{1.0f, -2.5f, -0.0f};
  // FNV-1a 64 over the little-endian bytes of each float, worked out independently (Python's
  // struct.pack('<f') over the same values).
  EXPECT_EQ(bench::hash_logits(a), "00f3a969ef350f78");
  EXPECT_EQ(bench::hash_logits(b), "00f32969ef3435f8");  // -0.0 is another bit pattern
  EXPECT_EQ(bench::hash_logits(a).size(), 16u);
}

TEST(Diverge, PromptSets) {
  const auto a = bench::random_prompt_set("random:3:5:9", 100);
  ASSERT_EQ(a.prompts.size(), 3u);
  for (const auto& p : a.prompts) {
    ASSERT_EQ(p.size(), 5u);
    for (token_id t : p) EXPECT_TRUE(t >= 0 && t < 100);
  }
  EXPECT_EQ(a.hash, bench::random_prompt_set("random:3:5:9", 100).hash);
  EXPECT_NE(a.hash, bench::random_prompt_set("random:3:5:10", 100).hash);
  EXPECT_NE(invalid_message([] { bench::random_prompt_set("random:3:5", 100); }).find("expected"),
            std::string::npos);
  EXPECT_NE(invalid_message([] { bench::random_prompt_set("random:x:5:1", 100); }).find("'x'"),
            std::string::npos);

  temp_dir dir;
  write(dir.file("p.txt"), "1 2 3\n\n4, 5\n");
  write(dir.file("p.json"), "[[1, 2, 3], [4, 5]]");
  const auto t = bench::read_prompt_file(dir.file("p.txt"), 10);
  const auto j = bench::read_prompt_file(dir.file("p.json"), 10);
  ASSERT_EQ(t.prompts.size(), 2u);
  EXPECT_EQ(t.prompts[1], (std::vector<token_id>{4, 5}));
  EXPECT_EQ(t.hash, j.hash);  // same tokens, same identity
  EXPECT_EQ(t.id, "file:p.txt");
  write(dir.file("bad.txt"), "1 2\n3 10\n");
  EXPECT_NE(invalid_message([&] {
              bench::read_prompt_file(dir.file("bad.txt"), 10);
            }).find("bad.txt:2: token id 10 outside [0, 10)"),
            std::string::npos);
}

TEST(Diverge, HostRandomWeights) {
  const model_preset& m = model_preset_by_name("tiny");
  const auto w = random_weights(m, 1);
  const auto tensors = weight_tensors(m);
  std::int64_t total = 0;
  for (const auto& t : tensors) total += t.elements;
  ASSERT_EQ(static_cast<std::int64_t>(w.size()), total);
  EXPECT_EQ(w, random_weights(m, 1));
  EXPECT_NE(w, random_weights(m, 2));
  // Ranges per tensor: embedding in [-1, 1], norms in 1 +- 0.1, linears in +- sqrt(3 / cols).
  std::size_t at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const float lo = t.norm ? 0.9f : -random_weight_scale(t, i);
    const float hi = t.norm ? 1.1f : random_weight_scale(t, i);
    double sum = 0;
    for (std::int64_t e = 0; e < t.elements; ++e) {
      const float v = cpu::bf16_to_float(w[at + static_cast<std::size_t>(e)]);
      // bf16 rounds to 8 significant bits: 0.4% relative at most
      ASSERT_TRUE(v >= lo - 0.005f * std::fabs(lo) && v <= hi + 0.005f * std::fabs(hi))
          << t.name << "[" << e << "] = " << v;
      sum += v;
    }
    at += static_cast<std::size_t>(t.elements);
    const double mean = sum / double(t.elements), centre = t.norm ? 1.0 : 0.0;
    EXPECT_NEAR(mean, centre, 0.1 * (hi - lo)) << t.name;  // not constant, not shifted
  }
}

TEST(Diverge, CpuExecutorRunsAreBitwiseIdentical) {
  bench::diverge_options o;
  o.model = "tiny";
  o.executor = "cpu";
  o.prompt_set = "random:2:9:3";
  o.steps = 6;
  o.batch = 3;
  const json a = bench::run_diverge(o), b = bench::run_diverge(o);
  ASSERT_EQ(a["rows"].size(), 12u);
  EXPECT_EQ(a["rows"], b["rows"]);
  EXPECT_EQ(a["config"]["executor"], "cpu");
  EXPECT_EQ(a["config"]["weights"], "random weights seed 1");
  EXPECT_TRUE(a["config"].contains("random_weights_caveat"));
  for (const auto& r : a["rows"]) {
    EXPECT_EQ(r["top_ids"][0], r["token"]);  // greedy
    EXPECT_GE(r["margin"].get<double>(), 0.0);
  }
  const json r = bench::compare_fingerprints(a, b, "a", "b");
  EXPECT_EQ(r["summary"]["verdict"], "bitwise identical");

  // Teacher forced from itself: the same tokens, each row records what it was fed.
  o.force = a;
  o.force_source = "a";
  const json f = bench::run_diverge(o);
  for (std::size_t i = 0; i < f["rows"].size(); ++i) {
    EXPECT_EQ(f["rows"][i]["fed"], a["rows"][i]["token"]);
    EXPECT_EQ(f["rows"][i]["token"], a["rows"][i]["token"]);
  }
  // Another seed of weights gives other logits.
  o.force.reset();
  o.weight_seed = 2;
  EXPECT_NE(bench::run_diverge(o)["rows"][0]["logits_hash"], a["rows"][0]["logits_hash"]);
}

// --weights on the cpu executor: the bf16 reference of an engine in that format (each block
// linear quantized and dequantized). The same seeded weights in bf16 and int8 compare (the formats
// are named in the report); a format the model's shapes cannot hold is one clear error.
TEST(Diverge, WeightFormatsCompareOnTheCpuExecutor) {
  bench::diverge_options o;
  o.model = "tiny-mha";  // hidden 96, intermediate 256: multiples of 32 (int8, fp8)
  o.executor = "cpu";
  o.prompt_set = "random:2:9:3";
  o.steps = 6;
  const json a = bench::run_diverge(o);
  EXPECT_EQ(a["config"]["weight_format"], "bf16");
  o.weights = planner::weight_format::int8;
  const json b = bench::run_diverge(o);
  EXPECT_EQ(b["config"]["weight_format"], "int8");
  EXPECT_EQ(b["config"]["weights"], a["config"]["weights"]);
  EXPECT_NE(b["rows"][0]["logits_hash"], a["rows"][0]["logits_hash"]);  // quantized
  EXPECT_EQ(bench::run_diverge(o)["rows"], b["rows"]);                   // and deterministic
  const json r = bench::compare_fingerprints(a, b, "a", "b");
  EXPECT_EQ(r["config"]["weight_formats"], (json{{"a", "bf16"}, {"b", "int8"}}));
  EXPECT_NE(r["summary"]["verdict"], "bitwise identical");
  const std::string table = bench::compare_table(r);
  EXPECT_NE(table.find("bf16 weights"), std::string::npos) << table;
  EXPECT_NE(table.find("int8 weights"), std::string::npos) << table;
  EXPECT_NE(table.find("A ran bf16 weights, B int8"), std::string::npos) << table;
  EXPECT_NE(bench::fingerprint_summary(b).find("int8 weights"), std::string::npos);
  // Teacher-forced from the bf16 run: every step compared against bf16's history.
  o.force = a;
  o.force_source = "a";
  const json f = bench::run_diverge(o);
  EXPECT_EQ(bench::compare_fingerprints(a, f, "a", "f")["summary"]["steps_compared"], 12);
  // Fingerprints written before --weights read as bf16.
  json old = a;
  old["config"].erase("weight_format");
  EXPECT_EQ(bench::compare_fingerprints(old, b, "old", "b")["config"]["weight_formats"]["a"],
            "bf16");
  o.force.reset();
  o.weights = planner::weight_format::int4;  // 96 columns: not a multiple of the group of 128
  try {
    bench::run_diverge(o);
    ADD_FAILURE() << "int4 on tiny-mha should be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be stored as int4"), std::string::npos)
        << e.what();
  }
}

TEST(Diverge, CheckpointRunEqualsThePresetWithTheSameWeights) {
  // A checkpoint folder holding tiny's seed-1 random weights, its config.json written from tiny's
  // decoder config: the CPU executor must compute the same logits as from the preset.
  temp_dir dir;
  const model_preset& m = model_preset_by_name("tiny");
  fs::create_directories(dir.path / "ckpt");
  write_hf_config(dir.path / "ckpt" / "config.json", make_decoder_config(m));
  save_checkpoint(dir.path / "ckpt" / "model.safetensors", m, random_weights(m, 1));
  bench::diverge_options o;
  o.executor = "cpu";
  o.prompt_set = "random:2:9:3";
  o.steps = 4;
  o.batch = 2;
  o.model = "tiny";
  const json preset = bench::run_diverge(o);
  o.checkpoint = (dir.path / "ckpt").string();
  const json ckpt = bench::run_diverge(o);
  ASSERT_EQ(ckpt["rows"].size(), preset["rows"].size());
  for (std::size_t i = 0; i < ckpt["rows"].size(); ++i) {
    EXPECT_EQ(ckpt["rows"][i]["logits_hash"], preset["rows"][i]["logits_hash"]) << i;
  }
  EXPECT_EQ(ckpt["config"]["weights"].get<std::string>().rfind("checkpoint fnv1a64:", 0), 0u);
  EXPECT_FALSE(ckpt["config"].contains("random_weights_caveat"));
  // Same weights under another id scheme: compare refuses rather than guess.
  EXPECT_NE(invalid_message([&] {
              bench::compare_fingerprints(preset, ckpt, "a", "b");
            }).find("different weights"),
            std::string::npos);
  // A checkpoint is identified by shape and weights, not by its folder's name.
  json renamed = ckpt;
  renamed["config"]["model"] = "elsewhere";
  EXPECT_EQ(bench::compare_fingerprints(ckpt, renamed, "a", "b")["summary"]["verdict"],
            "bitwise identical");
}

TEST(Diverge, CliRunAndCompare) {
  temp_dir dir;
  const std::vector<std::string> base{"diverge", "run",  "--executor",   "cpu",
                                      "--model", "tiny", "--prompt-set", "random:2:8:1",
                                      "--steps", "5",    "--batch",      "2"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  auto r = run_cli(with({"-o", dir.file("a.json")}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("fingerprint written to"), std::string::npos);
  EXPECT_NE(r.out.find("caveat: random weights"), std::string::npos);
  ASSERT_EQ(run_cli(with({"-o", dir.file("b.json")})).code, 0);
  r = run_cli(
      {"diverge", "compare", dir.file("a.json"), dir.file("b.json"), "-o", dir.file("r.json")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("verdict: bitwise identical"), std::string::npos) << r.out;
  const json report = json::parse(read_text_file(dir.file("r.json")));
  EXPECT_EQ(report["schema"], "ridgeline.diverge_compare/v1");
  r = run_cli({"diverge", "compare", dir.file("a.json"), dir.file("b.json"), "--json"});
  EXPECT_EQ(json::parse(r.out)["summary"]["verdict"], "bitwise identical");

  // Teacher forcing through the CLI, and refusal of a forcing file from another prompt set.
  ASSERT_EQ(run_cli(with({"--force-tokens", dir.file("a.json"), "-o", dir.file("f.json")})).code,
            0);
  r = run_cli({"diverge", "run", "--executor", "cpu", "--model", "tiny", "--prompt-set",
               "random:2:8:2", "--steps", "5", "--force-tokens", dir.file("a.json"), "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("made from prompt set"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);

  // Truncated file, other model, other prompt set: exit 2 with one line; missing file: exit 4.
  const std::string text = read_text_file(dir.file("a.json"));
  write(dir.file("cut.json"), text.substr(0, text.size() / 2));
  r = run_cli({"diverge", "compare", dir.file("a.json"), dir.file("cut.json")});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("truncated or malformed"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  ASSERT_EQ(run_cli({"diverge", "run", "--executor", "cpu", "--model", "tiny-mha", "--prompt-set",
                     "random:2:8:1", "--steps", "5", "-o", dir.file("m.json")})
                .code,
            0);
  r = run_cli({"diverge", "compare", dir.file("a.json"), dir.file("m.json")});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("different models"), std::string::npos) << r.err;
  ASSERT_EQ(run_cli({"diverge", "run", "--executor", "cpu", "--model", "tiny", "--prompt-set",
                     "random:2:8:5", "--steps", "5", "-o", dir.file("p.json")})
                .code,
            0);
  r = run_cli({"diverge", "compare", dir.file("a.json"), dir.file("p.json")});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("different prompt sets"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  r = run_cli({"diverge", "compare", dir.file("a.json"), dir.file("missing.json")});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_EQ(lines(r.err), 1);

  // Usage errors.
  r = run_cli({"diverge", "run", "--executor", "cpu", "--model", "tiny", "--steps", "5"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("exactly one of --prompts"), std::string::npos) << r.err;
  r = run_cli(with({"--co-runners", "zipf:3", "-o", ""}));
  EXPECT_EQ(r.code, cli::bad_input);
  r = run_cli(with({"--executor", "tpu", "-o", ""}));
  EXPECT_EQ(r.code, cli::bad_input);
  r = run_cli({"diverge", "run", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Examples"), std::string::npos);
  EXPECT_NE(r.out.find("--force-tokens"), std::string::npos);
}

TEST(Diverge, CudaExecutorWithoutGpuIsAClearError) {
  if (metrics::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto r = run_cli({"diverge", "run", "--model", "tiny", "--prompt-set", "random:1:4:1", "--steps",
                    "2", "-o", ""});
  EXPECT_EQ(r.code, cli::no_device);
  EXPECT_NE(r.err.find("needs a CUDA GPU"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

// The run loop's batches come from the KV cache manager (reserved tables, ascending blocks).
// These tokens were recorded before it did (hand-built tables, blocks handed out with
// next_block++): the same prompts, co-runners and weights must still give them.
TEST(Diverge, CpuRunGivesTheTokensRecordedBeforeTheKvManagerBuiltItsTables) {
  bench::diverge_options o;
  o.model = "tiny";
  o.executor = "cpu";
  o.prompt_set = "random:3:40:5";
  o.steps = 12;
  o.batch = 4;
  const json a = bench::run_diverge(o);
  EXPECT_EQ(a["config"]["prompt_set"]["hash"], "25903eae1cc707fd");
  const std::vector<int> recorded = {133, 2,   25,  80,  239, 218, 235, 99,  14,  131, 197, 90,
                                     138, 80,  223, 126, 16,  224, 200, 93,  167, 167, 167, 167,
                                     153, 87,  102, 133, 178, 84,  98,  221, 233, 251, 245, 149};
  std::vector<int> tokens;
  for (const auto& r : a["rows"]) tokens.push_back(r["token"].get<int>());
  EXPECT_EQ(tokens, recorded);

  // Prefill chunked into steps of at most 50 tokens (the batch's prompts hold 40 + 3 co-runners
  // of 20 to 80): each chunk's tokens are appended to the reserved tables before it runs. The
  // CPU reference computes every row alone, so the fingerprint is bitwise the unchunked one.
  o.max_step_tokens = 50;
  const json c = bench::run_diverge(o);
  EXPECT_EQ(c["config"]["max_step_tokens"], 50);
  EXPECT_EQ(c["rows"], a["rows"]);
}
