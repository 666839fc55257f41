// `ridgeline report`: schema dispatch and errors, the data blob built from real outputs (the
// `ridgeline kv` and `ridgeline plan` commands run here on small inputs, and the committed GPU
// results in docs/results and perfmodel/profiles), every charted field checked by removing it,
// script-safe embedding, and the page as written. The browser half (does the page draw?) is
// tests/integration/report_browser_test.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/report/report.hpp"

using namespace ridgeline;
using nlohmann::json;

namespace {
const std::string k_source = std::string(RIDGELINE_SOURCE_DIR) + "/";
// Committed GPU results the report is tested on.
const std::string k_profile = k_source + "perfmodel/profiles/h100-sxm.json";
const std::string k_sweep = k_source + "docs/results/h100-sxm_sweep.json";
const std::string k_roofline = k_source + "docs/results/h100-sxm_roofline.json";
const std::string k_old_roofline = k_source + "docs/results/h200_roofline.json";
const std::string k_fingerprint = k_source + "docs/results/diverge/h200_b1.json";
const std::string k_diverge_compare = k_source + "docs/results/diverge/h100_vs_h200_b1.json";

struct result {
  int code;
  std::string out, err;
};
result run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}
int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("ridgeline_report_test_" + name)).string();
}
bool have_chart_js() {
  return std::filesystem::exists(report::k_chart_js_path);
}

// The real CPU commands' outputs, made once per test binary: a kv run over five capacities of a
// generated chat workload with shared system prompts, and a plan of llama-3-8b on a measured, a
// datasheet-derated and a too-small GPU (its TPOT SLO, 60 ms, is not the report's default).
const std::string& kv_output() {
  static const std::string path = [] {
    const std::string p = temp_path("kv.json");
    const auto r = run({"kv", "--generator",
                        "requests=300,system=1024,system_prompts=3,rate=20,seed=5", "--model",
                        "llama-3-8b", "--gpu", "h100-sxm", "--capacity",
                        "unlimited,20%,5%,2%,1%", "-o", p, "--no-progress"});
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}
// A real CPU replay (the cpu executor on the tiny model): its measured section becomes the
// serving charts.
const std::string& replay_output() {
  static const std::string path = [] {
    const std::string p = temp_path("replay.json.gz");
    const auto r = run({"replay", "--cpu", "--generator",
                        "requests=40,rate=40,prompt=uniform:8:120,output=uniform:2:16,system=48,system_prompts=2,seed=4",
                        "-o", p, "--no-progress"});
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}
const std::string& plan_output() {
  static const std::string path = [] {
    const std::string p = temp_path("plan.json");
    const auto r = run({"plan", "--model", "llama-3-8b", "--gpu", "h100-sxm,l40s,t4",
                        "--workload", "rate=2,requests=150,prompt=fixed:512,output=fixed:64",
                        "--slo", "ttft_p99=2s,tpot_p99=60ms", "--qps", "20", "--price", "2.5",
                        "-o", p, "--no-progress"});
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}

// "/rows/3/step_seconds/median" -> "rows[3].step_seconds.median", as the readers name fields.
std::string field_name(const std::string& pointer) {
  std::string out, token;
  std::istringstream in(pointer.substr(1));
  while (std::getline(in, token, '/')) {
    if (!token.empty() && std::all_of(token.begin(), token.end(), ::isdigit)) {
      out += "[" + token + "]";
    } else {
      out += (out.empty() ? "" : ".") + token;
    }
  }
  return out;
}

// Index of the first row of `kind` in a GPU profile.
std::string first_row(const json& doc, const std::string& kind) {
  for (std::size_t i = 0; i < doc["rows"].size(); ++i) {
    if (doc["rows"][i]["kind"] == kind) return "/rows/" + std::to_string(i);
  }
  ADD_FAILURE() << "no " << kind << " row";
  return "/rows/0";
}
}  // namespace

TEST(Report, EscapeForScriptBreaksEveryClosingTag) {
  EXPECT_EQ(report::escape_for_script("a</script>b</SCRIPT"), "a<\\/script>b<\\/SCRIPT");
  EXPECT_EQ(report::escape_for_script("x < y / z"), "x < y / z");
}

TEST(Report, TemplateHasItsPlaceholders) {
  const auto t = report::html_template();
  for (const char* p : {"{{TITLE}}", "{{CHART_JS}}", "{{DATA}}"}) {
    EXPECT_NE(t.find(p), std::string_view::npos) << p;
  }
}

TEST(Report, UnknownSchemaAndNotJsonAreBadInput) {
  const std::string unknown = temp_path("unknown.json"), text = temp_path("text.json");
  std::ofstream(unknown) << R"({"schema": "ridgeline.nonsense/v9", "rows": []})";
  std::ofstream(text) << "not json at all";
  EXPECT_THROW(report::load_input(unknown), std::invalid_argument);
  auto r = run({"report", unknown, "-o", temp_path("u.html")});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("unknown schema 'ridgeline.nonsense/v9'"), std::string::npos) << r.err;
  r = run({"report", text, "-o", temp_path("t.html")});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  r = run({"report", temp_path("does_not_exist.json"), "-o", temp_path("m.html")});
  EXPECT_EQ(r.code, cli::io_failure) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  r = run({"report"});
  EXPECT_EQ(r.code, cli::bad_input);
}

TEST(Report, MissingChartLibraryNamesThePackage) {
  auto r = run({"report", k_sweep, "--chart-js", temp_path("no_such_chart.js"), "-o",
                temp_path("c.html")});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("libjs-chart.js"), std::string::npos) << r.err;
}

TEST(Report, DataFromRealOutputs) {
  std::vector<report::input_file> in;
  for (const auto& f : {k_profile, k_sweep, kv_output(), plan_output(), k_fingerprint,
                        k_diverge_compare}) {
    in.push_back(report::load_input(f));
  }
  const auto d = report::build_report_data(in, {});
  ASSERT_EQ(d["roofline"].size(), 1u);
  const auto& roof = d["roofline"][0];
  // Measured ceilings: HBM read plateau and the bf16 ridge point of the H100 profile.
  EXPECT_NEAR(roof["memory_roofs"][0]["bytes_per_second"].get<double>(), 3.129e12, 1e10);
  bool bf16 = false;
  for (const auto& c : roof["compute_roofs"]) {
    if (c["dtype"] == "bf16") {
      bf16 = true;
      EXPECT_NEAR(c["ridge_flops_per_byte"].get<double>(), 256.6, 0.5);
    }
  }
  EXPECT_TRUE(bf16);
  EXPECT_EQ(roof["compute_roofs"][0]["dtype"], "fp32");  // dtype order, not alphabetical
  // Kernels (52 linear layers, 13 blocks, 6 GEMMs) and the sweep's engine steps join it.
  std::map<std::string, int> series;
  for (const auto& p : roof["points"]) {
    EXPECT_GT(p["intensity_flops_per_byte"].get<double>(), 0);
    EXPECT_GT(p["flops_per_second"].get<double>(), 0);
    ++series[p["series"].get<std::string>()];
  }
  EXPECT_EQ(series["linear layers (llama-2-7b)"], 52);
  EXPECT_EQ(series["4 linear layers of a block (llama-2-7b)"], 13);
  EXPECT_EQ(series["peak GEMMs"], 6);
  EXPECT_EQ(series["engine decode steps"] + series["engine prefill steps"], 72 - 32);
  ASSERT_EQ(d["working_set"].size(), 1u);
  // Sweep: groups per (phase, context), batches ascending, skipped points with reasons.
  ASSERT_EQ(d["sweeps"].size(), 1u);
  EXPECT_EQ(d["sweeps"][0]["series"].size(), 8u);
  int skipped = 0;
  for (const auto& g : d["sweeps"][0]["series"]) {
    double last = 0;
    for (const auto& p : g["points"]) {
      EXPECT_GT(p["batch"].get<double>(), last);
      last = p["batch"].get<double>();
    }
    skipped += static_cast<int>(g["skipped"].size());
  }
  EXPECT_EQ(skipped, 32);
  // KV: rows by capacity with full CDFs (every 5% plus p99 and p99.9).
  ASSERT_EQ(d["kv"].size(), 1u);
  const auto& rows = d["kv"][0]["rows"];
  ASSERT_EQ(rows.size(), 5u);
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_LE(rows[i - 1]["capacity_bytes"].get<double>(), rows[i]["capacity_bytes"].get<double>());
  }
  EXPECT_EQ(rows[4]["capacity"], "unlimited");
  EXPECT_GT(rows[4]["token_hit_rate"].get<double>(), rows[0]["token_hit_rate"].get<double>());
  EXPECT_EQ(rows[0]["cdf"]["ttft_seconds"].size(), 23u);
  // Plan: its own TPOT SLO (config.slo.tpot_seconds) replaces the default, naming the file.
  EXPECT_DOUBLE_EQ(d["slo_tpot_seconds"].get<double>(), 0.06);
  EXPECT_EQ(d["slo_source"], plan_output());
  ASSERT_EQ(d["plans"].size(), 1u);
  EXPECT_EQ(d["plans"][0]["rows"].size(), 3u);
  EXPECT_EQ(d["plans"][0]["config"]["slo.tpot_seconds"], 0.06);
  // Divergence: the fingerprint's margins by step; the comparison's 14 divergences.
  ASSERT_EQ(d["divergence"].size(), 2u);
  ASSERT_EQ(d["divergence_plots"].size(), 2u);
  EXPECT_EQ(d["divergence_plots"][0]["series"][0]["points"].size(), 1024u);
  EXPECT_EQ(d["divergence_plots"][1]["series"][0]["points"].size(), 14u);
  EXPECT_EQ(d["environments"].size(), 6u);
  EXPECT_EQ(d["environments"][0]["summary"]["gpu"], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(d["environments"][2]["summary"]["gpu"], "-");  // kv runs on the host
}

// Without a plan, the TPOT SLO is the option's.
TEST(Report, ReplaySeriesBecomeServingCharts) {
  const auto doc = json::parse(read_text_file(replay_output()));
  const json d = report::build_report_data({{replay_output(), doc}}, {});
  ASSERT_EQ(d["serving"].size(), 1u);
  const auto& v = d["serving"][0];
  EXPECT_EQ(v["summary"]["finished"], 40);
  EXPECT_NE(v["title"].get<std::string>().find("cpu executor"), std::string::npos);
  const auto& series = v["series"];
  ASSERT_GT(series.size(), 5u);
  // The buckets account for every token the run computed, and time only moves forward.
  const auto& st = doc["rows"][0]["measured"]["steps"];
  double prefill = 0, decode = 0, last = -1;
  for (const auto& p : series) {
    prefill += p["prefill_tokens_per_second"].get<double>() * v["bucket_seconds"].get<double>();
    decode += p["decode_tokens_per_second"].get<double>() * v["bucket_seconds"].get<double>();
    EXPECT_GT(p["t"].get<double>(), last);
    last = p["t"].get<double>();
    EXPECT_GT(p["ops_per_byte"].get<double>(), 0.0);
  }
  double want_prefill = 0, want_decode = 0;
  for (const auto& x : st["prefill_tokens"]) want_prefill += x.get<double>();
  for (const auto& x : st["decode_tokens"]) want_decode += x.get<double>();
  EXPECT_NEAR(prefill, want_prefill, 1e-6 * want_prefill);
  EXPECT_NEAR(decode, want_decode, 1e-6 * want_decode);
  // The kv table of the same file is there too (one row: the engine's pool).
  ASSERT_EQ(d["kv"].size(), 1u);
  EXPECT_EQ(d["kv"][0]["rows"].size(), 1u);
}

TEST(Report, SloFromOptionWithoutAPlan) {
  report::report_options o;
  o.slo_tpot_seconds = 0.03;
  const auto d = report::build_report_data({report::load_input(kv_output())}, o);
  EXPECT_DOUBLE_EQ(d["slo_tpot_seconds"].get<double>(), 0.03);
  EXPECT_EQ(d["slo_source"], "--slo-tpot-ms");
}

// `ridgeline roofline`'s document: its own roofline (ceilings from the document) with the sweep's
// kernels, the engine steps at their measured intensity and the decode kernels as points. The
// oldest committed run (h200_roofline.json, before the instruction peaks) still reads.
TEST(Report, RooflineDocumentBecomesARoofline) {
  const auto d = report::build_report_data(
      {report::load_input(k_roofline), report::load_input(k_old_roofline)}, {});
  ASSERT_EQ(d["roofline"].size(), 2u);
  const auto& r = d["roofline"][0];
  EXPECT_EQ(r["gpu"], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(r["profile_source"], "measured");
  EXPECT_NEAR(r["memory_roofs"][0]["bytes_per_second"].get<double>(), 3.129e12, 1e10);
  std::map<std::string, int> series;
  for (const auto& p : r["points"]) {
    EXPECT_GT(p["intensity_flops_per_byte"].get<double>(), 0);
    EXPECT_GT(p["flops_per_second"].get<double>(), 0);
    ++series[p["series"].get<std::string>()];
  }
  EXPECT_EQ(series["intensity sweep: ffma_fp32"], 15);
  EXPECT_EQ(series["intensity sweep: mma_bf16"], 15);
  EXPECT_EQ(series["engine steps (measured intensity)"], 6);
  EXPECT_EQ(series["decode kernels, batch 1"], 11);
  EXPECT_EQ(series["decode kernels, batch 64"], 13);
  EXPECT_GT(d["roofline"][1]["points"].size(), 30u);
}

// Every field a chart or table of the report draws, removed in turn from a real output, is an
// error naming the file, the field and the schema with its version (never a default).
TEST(Report, EachChartedFieldRemovedIsAnError) {
  const json profile = json::parse(read_text_file(k_profile));
  const std::string ws = first_row(profile, "working_set"), lin = first_row(profile, "linear"),
                    blk = first_row(profile, "linear_block"), gemm = first_row(profile, "gemm");
  const std::string env = "/environment";
  const std::vector<std::string> env_fields = {
      env + "/time_utc", env + "/host/hostname", env + "/ridgeline/git_sha",
      env + "/ridgeline/git_dirty"};
  const std::vector<std::string> gpu_env = {env + "/gpu/name", env + "/gpu/cuda_runtime_version"};
  struct file_fields {
    std::string path, schema;
    std::vector<std::string> fields;
  };
  std::vector<file_fields> cases = {
      {k_profile, "ridgeline.gpu_profile/v1",
       {"/gpu/name", "/gpu/key", "/gpu/l2_bytes", "/source", "/bandwidth/read_bytes_per_second",
        "/bandwidth/datasheet_bytes_per_second", "/peaks/bf16/flops_per_second",
        "/peaks/bf16/datasheet_flops_per_second", ws + "/op", ws + "/buffer_bytes",
        ws + "/bytes_per_second", lin + "/model", lin + "/layer", lin + "/n", lin + "/flops",
        lin + "/bytes", lin + "/flops_per_second", blk + "/model", blk + "/tokens",
        blk + "/flops", blk + "/bytes", blk + "/flops_per_second", gemm + "/dtype", gemm + "/m",
        gemm + "/n", gemm + "/k", gemm + "/flops", gemm + "/flops_per_second"}},
      {k_sweep, "ridgeline.sweep/v1",
       {"/config/model", "/config/floor_bytes_per_second", "/config/peak_bf16_flops_per_second",
        "/rows/0/phase", "/rows/0/batch", "/rows/0/context", "/rows/0/max_sequences",
        "/rows/0/step_seconds/median", "/rows/0/step_seconds/p10", "/rows/0/step_seconds/p90",
        "/rows/0/tokens_per_second", "/rows/0/pct_of_floor", "/rows/0/intensity_flops_per_byte",
        "/rows/0/flops_per_second"}},
      {kv_output(), "ridgeline.kv/v1",
       {"/config/workload", "/config/model", "/config/gpu", "/config/block_tokens",
        "/config/requests", "/rows/0/capacity", "/rows/0/capacity_bytes",
        "/rows/0/capacity_blocks", "/rows/0/token_hit_rate", "/rows/0/block_hit_rate",
        "/rows/0/recomputed_tokens", "/rows/0/preemptions", "/rows/0/rejected",
        "/rows/0/ttft_seconds/count", "/rows/0/ttft_seconds/cdf", "/rows/0/tpot_seconds/cdf",
        "/rows/0/itl_seconds/cdf", "/rows/0/e2e_seconds/cdf"}},
      {replay_output(), "ridgeline.kv/v1",
       {"/rows/0/measured/device", "/rows/0/measured/executor", "/rows/0/measured/wall_seconds",
        "/rows/0/measured/cancelled", "/rows/0/measured/mean_running",
        "/rows/0/measured/simulated_token_hit_rate", "/rows/0/measured/step_gap_seconds",
        "/rows/0/measured/steps/start_seconds", "/rows/0/measured/steps/running",
        "/rows/0/measured/steps/waiting", "/rows/0/measured/steps/kv_used",
        "/rows/0/measured/steps/kv_cached", "/rows/0/measured/steps/prefill_tokens",
        "/rows/0/measured/steps/decode_tokens", "/rows/0/measured/steps/flops",
        "/rows/0/measured/steps/bytes", "/rows/0/measured/steps/gpu_seconds"}},
      {plan_output(), "ridgeline.plan/v1",
       {"/config/slo/tpot_seconds", "/config/model", "/config/workload", "/rows/0/gpu",
        "/rows/0/memory_bytes", "/rows/0/kv_budget_bytes", "/rows/0/max_batch_fit",
        "/rows/0/max_batch_slo", "/rows/0/slo_tokens_per_second", "/rows/0/max_rate_per_gpu",
        "/rows/0/goodput_fraction", "/rows/0/ttft_p99_seconds", "/rows/0/tpot_p99_seconds",
        "/rows/0/gpus_needed", "/rows/0/cost_per_million_output_tokens"}},
      {k_roofline, "ridgeline.roofline/v1",
       {"/ceilings/gpu", "/ceilings/profile_source", "/ceilings/dram_read_bytes_per_second",
        "/ceilings/datasheet_dram_bytes_per_second", "/ceilings/dtypes/0/dtype",
        "/ceilings/dtypes/0/peak_flops_per_second",
        "/ceilings/dtypes/0/datasheet_flops_per_second", "/ceilings/dtypes/0/ridge_flops_per_byte",
        "/intensity_sweep/points/0/kernel", "/intensity_sweep/points/0/flop_per_byte",
        "/intensity_sweep/points/0/flop_per_second", "/engine/0/phase", "/engine/0/batch",
        "/engine/0/intensity_flops_per_byte", "/engine/0/flops_per_second", "/engine/0/measured",
        "/decode_kernels/0/batch", "/decode_kernels/0/kernels/0/phase",
        "/decode_kernels/0/kernels/0/kernel"}},
      {k_fingerprint, "ridgeline.diverge/v1",
       {"/config/model", "/rows/0/step", "/rows/0/margin"}},
      {k_diverge_compare, "ridgeline.diverge_compare/v1",
       {"/divergences/0/step", "/divergences/0/margin_a", "/rows/0/verdict", "/rows/0/kl_mean",
        "/rows/0/divergence_step", "/config/a", "/summary/verdict"}},
  };
  for (auto& c : cases) {
    c.fields.insert(c.fields.end(), env_fields.begin(), env_fields.end());
    if (c.path == k_profile || c.path == k_sweep || c.path == k_roofline) {
      c.fields.insert(c.fields.end(), gpu_env.begin(), gpu_env.end());
    }
  }
  int checked = 0;
  for (const auto& c : cases) {
    const json doc = json::parse(read_text_file(c.path));
    for (const auto& field : c.fields) {
      SCOPED_TRACE(c.path + " without " + field);
      json broken = doc;
      const json::json_pointer ptr(field);
      ASSERT_TRUE(broken.contains(ptr));
      broken[ptr.parent_pointer()].erase(ptr.back());
      const std::string file = temp_path("without_" + std::to_string(checked++) + ".json");
      write_atomically(file, broken.dump());
      try {
        report::build_report_data({report::load_input(file)}, {});
        ADD_FAILURE() << "no error";
      } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        EXPECT_EQ(what, file + ": " + field_name(field) + ": missing (schema " + c.schema + ")");
      }
      // The CLI says it in one line and exits with bad input.
      if (checked % 16 == 1) {
        const auto r = run({"report", file, "-o", temp_path("broken.html")});
        EXPECT_EQ(r.code, cli::bad_input);
        EXPECT_EQ(lines(r.err), 1) << r.err;
      }
    }
  }
  EXPECT_GT(checked, 120);
}

TEST(Report, PageIsSelfContained) {
  // The page embeds Chart.js; scripts/setup.sh installs it, so its absence is a failure.
  ASSERT_TRUE(have_chart_js()) << report::k_chart_js_path << " missing: run scripts/setup.sh";
  const std::string out = temp_path("page.html");
  auto r = run({"report", k_profile, k_sweep, "--title", "a </script> title", "-o", out,
                "--json"});
  ASSERT_EQ(r.code, cli::ok) << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["sections"]["roofline"], 1);
  EXPECT_EQ(summary["sections"]["sweeps"], 1);
  std::ifstream f(out);
  const std::string html((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("Chart.js v3"), std::string::npos);
  EXPECT_EQ(html.find("{{DATA}}"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  // Exactly the template's four scripts close; nothing in the data or the library ends one.
  std::size_t closes = 0;
  for (auto at = html.find("</script"); at != std::string::npos; at = html.find("</script", at + 1))
    ++closes;
  EXPECT_EQ(closes, 4u);
  EXPECT_NE(html.find("<title>a &lt;/script&gt; title</title>"), std::string::npos);
}

TEST(Report, HelpHasExamples) {
  auto r = run({"report", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Examples"), std::string::npos);
}
