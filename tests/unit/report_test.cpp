// `ridgeline report`: schema dispatch and errors, the data blob built from real outputs (the
// `ridgeline kv` and `ridgeline plan` commands run here on small inputs, the committed GPU
// results in docs/results and perfmodel/profiles, and a CPU `ridgeline load --find-max` search
// with its confirmation runs in tests/data/report), every charted field checked by removing it,
// script-safe embedding, and the page as written. The browser half (does the page draw?) is
// tests/integration/report_browser_test.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas.hpp"
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
// Serving on the H100: a replay and a load over HTTP of the same trace window, an older replay,
// and the simulator's predictions against nine replays.
const std::string k_ab_replay = k_source + "docs/results/serving/http1/ab_replay.json.gz";
const std::string k_ab_load = k_source + "docs/results/serving/http1/ab_load.json.gz";
const std::string k_azure_replay = k_source + "docs/results/serving/run1/azure.json.gz";
const std::string k_serving_accuracy = k_source + "docs/results/serving/plan_accuracy_h100.json";
// `ridgeline load --find-max` against `ridgeline serve --cpu` (tests/data/report/README.md) and
// plain --rate runs beside it, one with the same --slo and one without.
const std::string k_find_max = k_source + "tests/data/report/findmax_cpu.json.gz";
const std::string k_confirm = k_source + "tests/data/report/confirm_cpu.json.gz";
const std::string k_confirm_no_slo = k_source + "tests/data/report/confirm_cpu_noslo.json.gz";

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

// The latency comparison: every measured run of the committed replays and the load over HTTP of
// the same window, one series per run and metric, each CDF drawn from the run's per-request
// records and passing through the percentiles the run wrote. A load's levels are not KV
// capacities and it has no engine steps, so it adds no kv or time-series section.
TEST(Report, ReplayAndLoadLatenciesOverlaidFromCommittedRuns) {
  const std::vector<std::string> files = {k_ab_replay, k_ab_load, k_azure_replay};
  std::vector<report::input_file> in;
  for (const auto& f : files) in.push_back(report::load_input(f));
  const auto d = report::build_report_data(in, {});
  const auto& runs = d["serving_latency"];
  ASSERT_EQ(runs.size(), 3u);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"ab_replay.json.gz: engine pool", "replay"},
      {"ab_load.json.gz: trace", "load"},
      {"azure.json.gz: engine pool", "replay"}};
  for (std::size_t i = 0; i < files.size(); ++i) {
    SCOPED_TRACE(files[i]);
    const auto& run = runs[i];
    EXPECT_EQ(run["label"], want[i].first);
    EXPECT_EQ(run["kind"], want[i].second);
    EXPECT_EQ(run["source"], files[i]);
    const json row = json::parse(read_text_file(files[i]))["rows"][0];
    for (const char* metric : {"ttft_seconds", "tpot_seconds", "e2e_seconds"}) {
      SCOPED_TRACE(metric);
      ASSERT_TRUE(run["metrics"].contains(metric)) << "series missing";
      const auto& m = run["metrics"][metric];
      const auto& cdf = m["cdf"];
      ASSERT_EQ(cdf.size(), 202u) << "every 0.5% and p99.9";
      EXPECT_EQ(m["count"], row[metric]["count"]);
      // The CDF is a quantile function: both coordinates rise, from q = 0 to q = 1.
      EXPECT_EQ(cdf.front()["q"].get<double>(), 0.0);
      EXPECT_EQ(cdf.back()["q"].get<double>(), 1.0);
      EXPECT_DOUBLE_EQ(cdf.back()["seconds"].get<double>(), row[metric]["max"].get<double>());
      for (std::size_t k = 1; k < cdf.size(); ++k) {
        EXPECT_GT(cdf[k]["q"].get<double>(), cdf[k - 1]["q"].get<double>());
        EXPECT_GE(cdf[k]["seconds"].get<double>(), cdf[k - 1]["seconds"].get<double>());
      }
      // The table's percentiles are the run's own, and the line passes through them.
      const std::pair<const char*, double> percentiles[] = {{"p50", 0.5}, {"p90", 0.9},
                                                            {"p99", 0.99}};
      for (const auto& [key, q] : percentiles) {
        EXPECT_DOUBLE_EQ(m[key].get<double>(), row[metric][key].get<double>()) << key;
        bool found = false;
        for (const auto& p : cdf) {
          if (p["q"].get<double>() != q) continue;
          found = true;
          EXPECT_NEAR(p["seconds"].get<double>(), m[key].get<double>(),
                      1e-12 * m[key].get<double>())
              << key;
        }
        EXPECT_TRUE(found) << key << " not on the CDF";
      }
    }
  }
  // The committed numbers themselves (docs/serving.md, "Over HTTP on the H100").
  EXPECT_NEAR(runs[0]["metrics"]["ttft_seconds"]["p50"].get<double>(), 0.03735, 1e-5);
  EXPECT_NEAR(runs[1]["metrics"]["ttft_seconds"]["p50"].get<double>(), 0.04316, 1e-5);
  EXPECT_EQ(runs[1]["metrics"]["ttft_seconds"]["count"], 785);
  EXPECT_EQ(runs[2]["metrics"]["e2e_seconds"]["count"], 1138);
  // The replays keep their kv tables and time series; the load adds neither.
  ASSERT_EQ(d["kv"].size(), 2u);
  EXPECT_EQ(d["kv"][0]["source"], k_ab_replay);
  EXPECT_EQ(d["kv"][1]["source"], k_azure_replay);
  ASSERT_EQ(d["serving"].size(), 2u);
  EXPECT_TRUE(d["find_max"].empty());
  EXPECT_TRUE(d["serving_accuracy"].empty());
}

// Every level of the search in the order tried, its SLO terms as load measured them (a saturated
// level, stopped early, whose percentiles failed requests reach), the answer, and the plain
// --rate runs beside it as confirmations.
TEST(Report, FindMaxLevelsAnswerAndConfirmations) {
  const auto d = report::build_report_data({report::load_input(k_find_max),
                                            report::load_input(k_confirm),
                                            report::load_input(k_confirm_no_slo)},
                                           {});
  ASSERT_EQ(d["find_max"].size(), 1u);
  const auto& f = d["find_max"][0];
  EXPECT_EQ(f["source"], k_find_max);
  EXPECT_EQ(f["slo"], "ttft_p99=500ms,tpot_p99=100ms,goodput=0.9");
  ASSERT_EQ(f["terms"].size(), 3u);
  EXPECT_EQ(f["terms"][0]["metric"], "ttft");
  EXPECT_DOUBLE_EQ(f["terms"][0]["quantile"].get<double>(), 0.99);
  EXPECT_DOUBLE_EQ(f["terms"][0]["limit"].get<double>(), 0.5);
  EXPECT_EQ(f["terms"][1]["metric"], "tpot");
  EXPECT_DOUBLE_EQ(f["terms"][1]["limit"].get<double>(), 0.1);
  EXPECT_EQ(f["terms"][2]["metric"], "goodput");
  EXPECT_DOUBLE_EQ(f["terms"][2]["limit"].get<double>(), 0.9);
  EXPECT_DOUBLE_EQ(f["max_rate_per_second"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(f["lowest_failing_rate"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(f["precision"].get<double>(), 0.3);
  // The levels as tried (doubling down from 40, then bisecting), each with every term.
  const json doc = json::parse(read_text_file(k_find_max));
  const auto& levels = f["levels"];
  ASSERT_EQ(levels.size(), 5u);
  const std::vector<double> rates = {40, 20, 10, 15, 12.5};
  const std::vector<bool> met = {false, false, true, false, false};
  for (std::size_t i = 0; i < levels.size(); ++i) {
    SCOPED_TRACE("level " + std::to_string(i + 1));
    const auto& l = levels[i];
    const auto& http = doc["rows"][i]["measured"]["http"];
    EXPECT_EQ(l["order"], i + 1);
    EXPECT_DOUBLE_EQ(l["rate_per_second"].get<double>(), rates[i]);
    EXPECT_EQ(l["met"].get<bool>(), met[i]);
    EXPECT_EQ(l["why"].get<std::string>().empty(), met[i]) << l["why"];
    ASSERT_EQ(l["terms"].size(), 3u) << "a term's series is missing";
    for (std::size_t t = 0; t < 3; ++t) {
      const auto& term = l["terms"][t];
      const auto& written = http["slo"]["terms"][t];
      EXPECT_EQ(term["text"], written["term"]);
      EXPECT_EQ(term["met"], written["met"]);
      if (term["failed_requests"].get<bool>()) {
        EXPECT_TRUE(term["measured"].is_null());
        EXPECT_GE(written["measured"].get<double>(), 1e299);
      } else {
        EXPECT_DOUBLE_EQ(term["measured"].get<double>(), written["measured"].get<double>());
      }
    }
  }
  EXPECT_NEAR(levels[2]["terms"][0]["measured"].get<double>(), 0.3638, 1e-4);  // ttft p99 at 10/s
  // Level 5 was stopped early as saturated: 67 of its 120 requests sent, 54 finished, and failed
  // requests reach both percentiles.
  const auto& sat = levels[4];
  EXPECT_TRUE(sat["saturated"].get<bool>());
  EXPECT_EQ(sat["sent"], 67);
  EXPECT_EQ(sat["finished"], 54);
  EXPECT_TRUE(sat["terms"][0]["failed_requests"].get<bool>());
  EXPECT_TRUE(sat["terms"][1]["failed_requests"].get<bool>());
  EXPECT_NE(sat["why"].get<std::string>().find("saturated"), std::string::npos) << sat["why"];
  EXPECT_NE(levels[3]["why"].get<std::string>().find("tpot_p99=100ms"), std::string::npos);
  int saturated = 0;
  for (const auto& l : levels) saturated += l["saturated"].get<bool>() ? 1 : 0;
  EXPECT_EQ(saturated, 1);
  // Confirmations: the same --slo's own verdicts, and a run without --slo judged by the report.
  const auto& c = f["confirmations"];
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0]["label"], "confirm_cpu.json.gz: rate 10/s");
  EXPECT_TRUE(c[0]["met"].get<bool>());
  EXPECT_EQ(c[1]["label"], "confirm_cpu.json.gz: rate 12/s");
  EXPECT_FALSE(c[1]["met"].get<bool>());
  EXPECT_FALSE(c[1]["terms"][1]["met"].get<bool>());  // tpot p99 110.5 ms > 100 ms
  EXPECT_NE(c[0]["judged_by"].get<std::string>().find("its own"), std::string::npos);
  EXPECT_EQ(c[2]["label"], "confirm_cpu_noslo.json.gz: rate 11/s");
  EXPECT_NE(c[2]["judged_by"].get<std::string>().find("no --slo"), std::string::npos);
  ASSERT_EQ(c[2]["terms"].size(), 3u);
  EXPECT_TRUE(c[2]["met"].get<bool>());
  // The replays and loads are in the latency comparison: 5 levels + 2 + 1.
  EXPECT_EQ(d["serving_latency"].size(), 8u);
  EXPECT_TRUE(d["kv"].empty());
}

// The report's own verdict (a confirmation run without the search's --slo) follows load's rule:
// runs with their SLO stripped are judged to exactly the numbers load wrote for them, the
// search's own levels included (the saturated one: unsent and failed requests count as
// infinite latencies, goodput is over every request of the level).
TEST(Report, ConfirmationJudgedFromRequestsMatchesLoadsOwnVerdict) {
  int judged = 0;
  for (const auto& path : {k_confirm, k_find_max}) {
    SCOPED_TRACE(path);
    const json doc = json::parse(read_text_file(path));
    json stripped = doc;
    stripped["load"]["slo"] = nullptr;
    stripped["load"]["find_max"] = nullptr;
    for (auto& r : stripped["rows"]) r["measured"]["http"]["slo"] = nullptr;
    const std::string file = temp_path("stripped_" + std::to_string(judged) + ".json");
    write_atomically(file, stripped.dump());
    const auto d = report::build_report_data(
        {report::load_input(k_find_max), report::load_input(file)}, {});
    const auto& c = d["find_max"][0]["confirmations"];
    ASSERT_EQ(c.size(), doc["rows"].size());
    for (std::size_t i = 0; i < c.size(); ++i) {
      SCOPED_TRACE(c[i]["label"].get<std::string>());
      EXPECT_NE(c[i]["judged_by"].get<std::string>().find("per-request columns"),
                std::string::npos);
      const auto& written = doc["rows"][i]["measured"]["http"]["slo"];
      EXPECT_EQ(c[i]["met"], written["met"]);
      ASSERT_EQ(c[i]["terms"].size(), written["terms"].size());
      for (std::size_t t = 0; t < written["terms"].size(); ++t) {
        const auto& term = c[i]["terms"][t];
        EXPECT_EQ(term["met"], written["terms"][t]["met"]) << t;
        if (term["failed_requests"].get<bool>()) {
          EXPECT_GE(written["terms"][t]["measured"].get<double>(), 1e299) << t;
        } else {
          EXPECT_DOUBLE_EQ(term["measured"].get<double>(),
                           written["terms"][t]["measured"].get<double>())
              << t;
        }
      }
      ++judged;
    }
  }
  EXPECT_EQ(judged, 2 + 5);
}

// The typed reader of load's parts: SLO specs as load takes them, and a replay is no load result.
TEST(Report, LoadSloSpecParses) {
  const auto s = schema::parse_load_slo("goodput=0.9, ttft_p99.9=2s,tpot=50ms,e2e_p999=10s");
  ASSERT_EQ(s.terms.size(), 3u);  // goodput last, as load's verdicts list it
  EXPECT_EQ(s.terms[0].metric, "ttft");
  EXPECT_DOUBLE_EQ(s.terms[0].quantile, 0.999);
  EXPECT_EQ(s.terms[1].metric, "e2e");
  EXPECT_DOUBLE_EQ(s.terms[1].quantile, 0.999);
  EXPECT_DOUBLE_EQ(s.terms[1].limit, 10.0);
  EXPECT_EQ(s.terms[2].metric, "goodput");
  EXPECT_DOUBLE_EQ(*s.tpot_limit_seconds, 0.05);
  EXPECT_DOUBLE_EQ(*s.ttft_limit_seconds, 2.0);
  EXPECT_THROW(schema::parse_load_slo("ttft_p99=fast"), std::invalid_argument);
  EXPECT_THROW(schema::parse_load_slo("itl=5ms"), std::invalid_argument);
  EXPECT_THROW(schema::parse_load_slo("goodput=2"), std::invalid_argument);
  EXPECT_THROW(schema::parse_load_slo(""), std::invalid_argument);
  EXPECT_FALSE(schema::is_load_result(json::parse(read_text_file(k_ab_replay))));
  EXPECT_TRUE(schema::is_load_result(json::parse(read_text_file(k_ab_load))));
}

// Predicted against measured for every metric the committed serving-accuracy file validates, one
// point per run with the file's numbers, the bound where the metric has one; and the max-rate
// check's chart when the file has one.
TEST(Report, ServingAccuracyPredictedAgainstMeasured) {
  const json doc = json::parse(read_text_file(k_serving_accuracy));
  const auto d = report::build_report_data({{k_serving_accuracy, doc}}, {});
  ASSERT_EQ(d["serving_accuracy"].size(), 1u);
  const auto& a = d["serving_accuracy"][0];
  EXPECT_FALSE(a["passed"].get<bool>());
  EXPECT_EQ(a["broken"].size(), 5u);
  const auto& runs = a["runs"];
  ASSERT_EQ(runs.size(), 9u);
  EXPECT_EQ(runs[0]["label"], "azure.json.gz: engine pool");
  const std::vector<std::string> metrics = {"ttft_p50", "ttft_p90", "ttft_p99", "tpot_mean",
                                            "tpot_p90", "e2e_p50",  "e2e_p90",
                                            "output_tokens_per_second"};
  ASSERT_EQ(a["metrics"].size(), metrics.size()) << "a metric's chart is missing";
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    const auto& m = a["metrics"][i];
    SCOPED_TRACE(metrics[i]);
    EXPECT_EQ(m["metric"], metrics[i]);
    EXPECT_DOUBLE_EQ(m["scale"].get<double>(), metrics[i] == "output_tokens_per_second" ? 1 : 1e3);
    ASSERT_EQ(m["points"].size(), 9u) << "a run's point is missing";
    for (const auto& p : m["points"]) {
      const auto& want = doc["runs"][p["run"].get<std::size_t>()]["metrics"][metrics[i]];
      for (const char* k : {"measured", "predicted", "error"}) {
        EXPECT_DOUBLE_EQ(p[k].get<double>(), want[k].get<double>()) << k;
      }
    }
    const auto& s = doc["summary"][i];
    ASSERT_EQ(s["metric"], metrics[i]);
    EXPECT_EQ(m["bound"], s["bound"]);
    EXPECT_EQ(m["met"], s["met"]);
    EXPECT_DOUBLE_EQ(m["median_error"].get<double>(), s["median_error"].get<double>());
  }
  EXPECT_DOUBLE_EQ(a["metrics"][0]["bound"].get<double>(), 0.1);
  EXPECT_TRUE(a["metrics"][2]["bound"].is_null());  // TTFT p99: reported only
  EXPECT_TRUE(a["max_rate"].is_null());             // this file checked no find-max result
  // A max-rate check (a synthetic entry: no committed file has one yet) gets its own chart.
  json with_rate = doc;
  with_rate["max_rate"] = json::array({{{"file", "findmax.json.gz"},
                                        {"slo", "ttft_p99=2s,tpot_p99=50ms"},
                                        {"measured_rate_per_second", 10.0},
                                        {"predicted_rate_per_second", 11.0},
                                        {"error", 0.1},
                                        {"capped", false},
                                        {"bound", 0.1},
                                        {"met", true}}});
  const auto e = report::build_report_data({{"with_rate.json", with_rate}}, {});
  const auto& mr = e["serving_accuracy"][0]["max_rate"];
  ASSERT_FALSE(mr.is_null());
  EXPECT_DOUBLE_EQ(mr["bound"].get<double>(), 0.1);
  ASSERT_EQ(mr["points"].size(), 1u);
  EXPECT_DOUBLE_EQ(mr["points"][0]["measured"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(mr["points"][0]["predicted"].get<double>(), 11.0);
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
      {k_find_max, "ridgeline.kv/v1",
       {"/config/executor", "/load/slo", "/load/find_max/max_rate_per_second",
        "/load/find_max/lowest_failing_rate", "/load/find_max/precision", "/load/find_max/note",
        "/rows/0/capacity", "/rows/0/ttft_seconds/p50", "/rows/0/measured/requests/outcome",
        "/rows/0/measured/requests/ttft_seconds", "/rows/0/measured/requests/tpot_seconds",
        "/rows/0/measured/requests/e2e_seconds", "/rows/0/measured/http/label",
        "/rows/0/measured/http/shape", "/rows/0/measured/http/rate_per_second",
        "/rows/0/measured/http/saturated", "/rows/0/measured/http/stopped",
        "/rows/0/measured/http/sent", "/rows/0/measured/http/requests_per_second",
        "/rows/0/measured/http/slo", "/rows/0/measured/http/slo/met",
        "/rows/0/measured/http/slo/terms/0/term", "/rows/0/measured/http/slo/terms/0/measured",
        "/rows/0/measured/http/slo/terms/0/met"}},
      {k_serving_accuracy, "ridgeline.serving_accuracy/v1",
       {"/config/step_time_model", "/config/fit", "/config/max_rate_bound", "/runs/0/file",
        "/runs/0/level", "/runs/0/gpu", "/runs/0/metrics/ttft_p50/measured",
        "/runs/0/metrics/ttft_p50/predicted", "/runs/0/metrics/ttft_p50/error",
        "/summary/0/metric", "/summary/0/median_error", "/summary/0/bound", "/summary/0/met",
        "/max_rate", "/verdict/passed", "/verdict/broken"}},
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
