// The typed result-format readers (core/schemas): every committed result file parses; writers give
// back the committed text; a missing or mistyped field is an error naming the file, the field's
// path and the schema with its version.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

using namespace ridgeline;
using nlohmann::json;

namespace {

const std::filesystem::path k_root = RIDGELINE_SOURCE_DIR;

std::vector<std::filesystem::path> committed_json() {
  std::vector<std::filesystem::path> out;
  for (const char* dir : {"docs/results", "perfmodel/profiles", "bench/baselines", "docs/report"}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(k_root / dir)) {
      const auto& p = e.path();
      const bool gz_json = p.extension() == ".gz" && p.stem().extension() == ".json";
      if (e.is_regular_file() && (p.extension() == ".json" || gz_json)) out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

json load(const std::filesystem::path& p) { return json::parse(read_text_file(p)); }

// The reader of each ridgeline schema, on a parsed document.
const std::map<std::string, std::function<void(const json&, const std::string&)>>& readers() {
  static const std::map<std::string, std::function<void(const json&, const std::string&)>> r = {
      {schema::k_gpu_profile_schema, [](const json& d, const std::string& s) { schema::parse_gpu_profile(d, s); }},
      {schema::k_sweep_schema, [](const json& d, const std::string& s) { schema::parse_sweep(d, s); }},
      {schema::k_serving_results_schema, [](const json& d, const std::string& s) { schema::parse_serving_results(d, s); }},
      {schema::k_plan_schema, [](const json& d, const std::string& s) { schema::parse_plan(d, s); }},
      {schema::k_roofline_schema, [](const json& d, const std::string& s) { schema::parse_roofline(d, s); }},
      {schema::k_diverge_schema, [](const json& d, const std::string& s) { schema::parse_fingerprint(d, s); }},
      {schema::k_diverge_compare_schema, [](const json& d, const std::string& s) { schema::parse_diverge_compare(d, s); }},
      {schema::k_history_trend_schema, [](const json& d, const std::string& s) { schema::parse_history_trend(d, s); }},
      {schema::k_accuracy_schema, [](const json& d, const std::string& s) { schema::parse_accuracy(d, s); }},
      {schema::k_peer_schema, [](const json& d, const std::string& s) { schema::parse_peer(d, s); }},
      {schema::k_serving_accuracy_schema, [](const json& d, const std::string& s) { schema::parse_serving_accuracy(d, s); }},
      {schema::k_serve_record_schema, [](const json& d, const std::string& s) { schema::parse_serve_record(d, s); }},
      {"ridgeline.fit/v2", [](const json& d, const std::string&) { planner::fitted_parameters_from_json(d); }},
  };
  return r;
}

// Committed JSON that is not a ridgeline result format, each with what it is instead.
bool is_foreign_format(const json& d) {
  if (!d.is_object()) return false;
  if (d.contains("benchmarks") && d.contains("context")) return true;  // Google Benchmark output
  if (d.contains("testsuites")) return true;                            // GoogleTest output
  // bench/load_client_bench.cpp's report
  if (d.contains("benchmark") && d.at("benchmark") == "load_client") return true;
  return false;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const schema::schema_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Schema, EveryCommittedResultFileParses) {
  const auto files = committed_json();
  ASSERT_GT(files.size(), 50u);
  std::map<std::string, int> parsed;
  for (const auto& p : files) {
    SCOPED_TRACE(p.string());
    const json d = load(p);
    const std::string id = schema::schema_of(d);
    if (id.empty()) {
      // The CI gate's baseline and thresholds: written and read by scripts/perf_gate.sh only.
      const bool gate_file = p.filename() == "cpu_instructions.json" ||
                             p.filename() == "cpu_instruction_thresholds.json";
      EXPECT_TRUE(is_foreign_format(d) || gate_file)
          << "a committed JSON file with no schema and no known foreign format";
      continue;
    }
    const auto it = readers().find(id);
    ASSERT_NE(it, readers().end()) << "no typed reader for " << id;
    EXPECT_NO_THROW(it->second(d, p.string()));
    ++parsed[id];
  }
  EXPECT_EQ(parsed[schema::k_sweep_schema], 49);
  EXPECT_EQ(parsed[schema::k_diverge_schema], 10);
  EXPECT_EQ(parsed[schema::k_diverge_compare_schema], 8);
  EXPECT_EQ(parsed[schema::k_roofline_schema], 4);
  EXPECT_EQ(parsed[schema::k_gpu_profile_schema], 3);
  EXPECT_EQ(parsed[schema::k_serving_results_schema], 22);
  EXPECT_EQ(parsed[schema::k_serve_record_schema], 3);
  EXPECT_EQ(parsed[schema::k_plan_schema], 1);
  EXPECT_EQ(parsed[schema::k_accuracy_schema], 3);
  EXPECT_EQ(parsed[schema::k_peer_schema], 1);
  EXPECT_EQ(parsed[schema::k_serving_accuracy_schema], 4);
  EXPECT_EQ(parsed["ridgeline.fit/v2"], 2);
}

// The writers give back exactly what the producers wrote (same keys, same number types), so a
// producer switched to them writes the same bytes.
TEST(Schema, WritersReproduceCommittedFiles) {
  const std::vector<std::pair<std::string, std::function<json(const json&, const std::string&)>>>
      cases = {
          {"docs/results/h100-sxm_kv_chat.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_serving_results(d, s)); }},
          {"docs/results/h100-sxm_kv_mooncake.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_serving_results(d, s)); }},
          {"docs/results/plan_llama-3-8b_azure-conv.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_plan(d, s)); }},
          {"docs/results/h100-sxm_sweep.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_sweep(d, s)); }},
          {"docs/results/h200_sweep.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_sweep(d, s)); }},
          {"docs/results/gemm64_streamk/h100-sxm_sweep_decode512_cublas.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_sweep(d, s)); }},
          {"docs/results/h100-sxm_accuracy.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_accuracy(d, s)); }},
          {"perfmodel/profiles/h100-sxm.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_gpu_profile(d, s)); }},
          {"perfmodel/profiles/h200.json",
           [](const json& d, const std::string& s) { return to_json(schema::parse_gpu_profile(d, s)); }},
      };
  for (const auto& [file, round_trip] : cases) {
    SCOPED_TRACE(file);
    const std::string text = read_text_file(k_root / file);
    EXPECT_EQ(schema::to_text(round_trip(json::parse(text), file)), text);
  }
}

// The roofline's ceilings block (the part its producer builds from typed fields), old and new.
TEST(Schema, RooflineCeilingsWriterReproducesCommittedBlocks) {
  int n = 0;
  for (const auto& p : committed_json()) {
    const json d = load(p);
    if (schema::schema_of(d) != schema::k_roofline_schema) continue;
    SCOPED_TRACE(p.string());
    EXPECT_EQ(to_json(schema::parse_roofline(d, p.string()).ceilings), d["ceilings"]);
    ++n;
  }
  EXPECT_EQ(n, 4);
}

TEST(Schema, HistoryTrendRoundTrips) {
  const json doc = {
      {"schema", "ridgeline.history_trend/v1"},
      {"history", "h.db"},
      {"threshold", 0.05},
      {"benchmarks",
       {{{"name", "BM_x"},
         {"x_time_utc", {"2026-01-01T00:00:00Z"}},
         {"y_median_seconds", {0.5}},
         {"points",
          {{{"run_id", 1},
            {"time_utc", "2026-01-01T00:00:00Z"},
            {"git_sha", "abc"},
            {"branch", "main"},
            {"median_seconds", 0.5},
            {"iqr_seconds", 0.01},
            {"count", 10}}}},
         {"change_points", json::array()}}}}};
  EXPECT_EQ(to_json(schema::parse_history_trend(doc, "t.json")), doc);
  json bad = doc;
  bad["benchmarks"][0]["points"][0].erase("median_seconds");
  const std::string e = error_of([&] { schema::parse_history_trend(bad, "t.json"); });
  EXPECT_EQ(e,
            "t.json: benchmarks[0].points[0].median_seconds: missing "
            "(schema ridgeline.history_trend/v1)");
}

TEST(Schema, ErrorsNameFileFieldAndSchema) {
  const std::string file = "docs/results/h100-sxm_sweep.json";
  const json good = load(k_root / file);
  json d = good;
  d["rows"][3]["step_seconds"].erase("median");
  EXPECT_EQ(error_of([&] { schema::parse_sweep(d, file); }),
            file + ": rows[3].step_seconds.median: missing (schema ridgeline.sweep/v1)");
  d = good;
  d["rows"][0]["batch"] = "one";
  EXPECT_EQ(error_of([&] { schema::parse_sweep(d, file); }),
            file + ": rows[0].batch: expected an integer, found a string (schema ridgeline.sweep/v1)");
  d = good;
  d["config"]["floor_bytes_per_second"] = nullptr;
  EXPECT_EQ(error_of([&] { schema::parse_sweep(d, file); }),
            file + ": config.floor_bytes_per_second: expected a finite number, found null "
                   "(schema ridgeline.sweep/v1)");
  d = good;
  d["environment"]["ridgeline"].erase("git_sha");
  EXPECT_EQ(error_of([&] { schema::parse_sweep(d, file); }),
            file + ": environment.ridgeline.git_sha: missing (schema ridgeline.sweep/v1)");
  // The wrong schema, and no schema at all.
  EXPECT_EQ(error_of([&] { schema::parse_plan(good, file); }),
            file + ": schema: expected \"ridgeline.plan/v1\", found \"ridgeline.sweep/v1\" "
                   "(schema ridgeline.plan/v1)");
  EXPECT_EQ(error_of([&] { schema::parse_plan(json::array(), file); }),
            file + ": expected a JSON object, found an array (schema ridgeline.plan/v1)");
  // A schema_error is bad input (std::invalid_argument), so the CLI exits 2.
  EXPECT_THROW(schema::parse_plan(json::object(), file), std::invalid_argument);
}

TEST(Schema, ReadFileNamesTheFile) {
  const auto p = std::filesystem::temp_directory_path() / "ridgeline_schema_test_not_json.json";
  std::ofstream(p) << "{ not json";
  const std::string e = error_of([&] { schema::read_plan(p); });
  EXPECT_NE(e.find(p.string() + ": not valid JSON"), std::string::npos) << e;
  EXPECT_NE(e.find("(schema ridgeline.plan/v1)"), std::string::npos) << e;
  EXPECT_THROW(schema::read_plan(p.string() + ".missing"), io_error);
}

// Optional fields are optional only where producers omit them: a plan row that failed at the SLO
// stage has no rate fields, but one that reached the rate stage must have all of them.
TEST(Schema, PlanRowStagesAreStrict) {
  const std::string file = "docs/results/plan_llama-3-8b_azure-conv.json";
  const json good = load(k_root / file);
  const auto plan = schema::parse_plan(good, file);
  ASSERT_EQ(plan.rows.size(), 5u);
  EXPECT_TRUE(plan.rows[0].max_rate_per_gpu.has_value());
  EXPECT_FALSE(plan.rows[4].max_rate_per_gpu.has_value());
  EXPECT_TRUE(plan.rows[4].error.has_value());
  EXPECT_GT(plan.config.slo.tpot_seconds, 0);
  json d = good;
  d["rows"][0].erase("tpot_p99_seconds");
  EXPECT_EQ(error_of([&] { schema::parse_plan(d, file); }),
            file + ": rows[0].tpot_p99_seconds: missing (schema ridgeline.plan/v1)");
}

// config.window (replay and load since plan accuracy --serving): written when set, read back;
// older files without it read as before (no window, no default).
TEST(Schema, ServingWindowRoundTripsAndIsOptional) {
  const std::string path = (k_root / "docs/results/serving/run1/azure.json.gz").string();
  json doc = load(path);
  schema::serving_results r = schema::parse_serving_results(doc, path);
  EXPECT_FALSE(r.config.window.has_value());
  r.config.window = schema::serving_window{10, 120, 500, 2.0, 7};
  const json j = schema::to_json(r);
  const schema::serving_results back = schema::parse_serving_results(j, "round trip");
  ASSERT_TRUE(back.config.window.has_value());
  EXPECT_EQ(back.config.window->duration_seconds, 120);
  EXPECT_EQ(back.config.window->requests, 500);
  EXPECT_EQ(back.config.window->seed, 7);
  EXPECT_EQ(schema::to_json(back), j);
  json bad = j;
  bad["config"]["window"].erase("rate_scale");
  const std::string e = error_of([&] { schema::parse_serving_results(bad, "bad.json"); });
  EXPECT_NE(e.find("config.window.rate_scale"), std::string::npos) << e;
}

// config.weight_format (sweep, replay, diverge since --weights): absent in the committed files,
// which read as bf16; written back only when present; any value but the engine's four fails
// naming the member.
TEST(Schema, WeightFormatIsOptionalAndReadsAsBf16) {
  const std::string sweep_path = (k_root / "docs/results/h100-sxm_sweep.json").string();
  json sweep = load(sweep_path);
  schema::sweep_document s = schema::parse_sweep(sweep, sweep_path);
  EXPECT_FALSE(s.config.weight_format.has_value());
  EXPECT_EQ(schema::weight_format_or_bf16(s.config.weight_format), "bf16");
  EXPECT_FALSE(schema::to_json(s.config).contains("weight_format"));
  s.config.weight_format = "int4";
  s.config.weight_layout = "int4 (group 128)";
  const json j = schema::to_json(s);
  const schema::sweep_document back = schema::parse_sweep(j, "round trip");
  EXPECT_EQ(back.config.weight_format, "int4");
  EXPECT_EQ(back.config.weight_layout, "int4 (group 128)");
  EXPECT_EQ(schema::to_json(back), j);
  json bad = j;
  bad["config"]["weight_format"] = "int3";
  std::string e = error_of([&] { schema::parse_sweep(bad, "bad.json"); });
  EXPECT_NE(e.find("config.weight_format"), std::string::npos) << e;

  const std::string kv_path = (k_root / "docs/results/h100-sxm_kv_chat.json").string();
  schema::serving_results r = schema::parse_serving_results(load(kv_path), kv_path);
  EXPECT_EQ(schema::weight_format_or_bf16(r.config.weight_format), "bf16");
  r.config.weight_format = "fp8";
  const json rj = schema::to_json(r);
  EXPECT_EQ(schema::parse_serving_results(rj, "round trip").config.weight_format, "fp8");
  json rbad = rj;
  rbad["config"]["weight_format"] = "fp16";
  e = error_of([&] { schema::parse_serving_results(rbad, "bad.json"); });
  EXPECT_NE(e.find("config.weight_format"), std::string::npos) << e;
}

TEST(Schema, ServeRecordColumnsMustHaveOneEntryPerRequest) {
  const std::string file = "docs/results/serving/http1/ab_serve_record.json.gz";
  json d = load(k_root / file);
  EXPECT_EQ(schema::parse_serve_record(d, file).requests.client_id.size(), 785u);
  d["requests"]["first_token_seconds"].erase(0);
  EXPECT_NE(error_of([&] { schema::parse_serve_record(d, file); })
                .find("requests.first_token_seconds: has 784 entries, expected 785"),
            std::string::npos);
  d.erase("config");
  EXPECT_NE(error_of([&] { schema::parse_serve_record(d, file); }).find("config"),
            std::string::npos);
}

TEST(Schema, ServeRecordStepsAreOptionalAndTheirColumnsOfOneLength) {
  const std::string file = "docs/results/serving/http1/ab_serve_record.json.gz";
  json d = load(k_root / file);  // written before the record kept steps
  ASSERT_FALSE(d.contains("steps"));
  EXPECT_TRUE(schema::parse_serve_record(d, file).steps.start_seconds.empty());
  json cols = json::object();
  for (const char* k : {"start_seconds", "end_seconds", "gpu_seconds", "gap_seconds"}) {
    cols[k] = {1.0, 2.0};
  }
  for (const char* k :
       {"sequences", "prefill_tokens", "decode_tokens", "running", "waiting", "graph"}) {
    cols[k] = {1, 0};
  }
  d["steps"] = cols;
  const auto s = schema::parse_serve_record(d, file).steps;
  ASSERT_EQ(s.graph.size(), 2u);
  EXPECT_EQ(s.sequences[0], 1);
  EXPECT_EQ(s.end_seconds[1], 2.0);
  d["steps"]["gpu_seconds"].erase(1);
  EXPECT_NE(error_of([&] { schema::parse_serve_record(d, file); })
                .find("steps.gpu_seconds: has 1 entries, expected 2"),
            std::string::npos);
}

// The SLO grammar of `load --slo` and `plan --slo`: plain limits are kept as written beside the
// terms (plan needs to tell ttft_p99=2s,ttft=2s from ttft_p99=2s), and goodput or a plain limit
// given twice is an error naming the second one (which of the two was meant cannot be known).
TEST(SchemaLoadSlo, PlainLimitsAreKeptAndGivenOnce) {
  const auto s = schema::parse_load_slo("ttft_p99=2s, tpot=50ms,ttft=1s,goodput=0.9", "--slo");
  ASSERT_EQ(s.terms.size(), 2u);
  ASSERT_EQ(s.limits.size(), 2u);
  EXPECT_EQ(s.limits[0].text, "tpot=50ms");
  EXPECT_EQ(s.limits[0].metric, "tpot");
  EXPECT_EQ(s.limits[0].quantile, 0);
  EXPECT_DOUBLE_EQ(s.limits[1].limit, 1.0);
  EXPECT_DOUBLE_EQ(*s.ttft_limit_seconds, 1.0);  // the plain limit wins over the term's
  EXPECT_TRUE(schema::parse_load_slo("ttft_p99=2s,ttft_p90=1s").limits.empty());
  const std::vector<std::pair<std::string, std::string>> twice = {
      {"ttft=1s,goodput=0.9,goodput=0.8", "--slo term 'goodput=0.8': goodput is given twice"},
      {"ttft=1s,tpot=1s,ttft=2s", "--slo term 'ttft=2s': the plain ttft limit is given twice"}};
  for (const auto& [spec, why] : twice) {
    EXPECT_THROW(
        {
          try {
            schema::parse_load_slo(spec, "--slo");
          } catch (const std::invalid_argument& e) {
            EXPECT_EQ(e.what(), why);
            throw;
          }
        },
        std::invalid_argument)
        << spec;
  }
  EXPECT_NO_THROW(schema::parse_load_slo("ttft=1s,ttft_p99=2s"));  // a term and a limit: load's
}

// Load's verdict rule, on columns worked by hand: 5 requests, one failed (an infinite latency),
// one finished with one token (no TPOT), ITL judged only where the gaps are given.
TEST(SchemaLoadSlo, JudgesColumnsByLoadsRule) {
  schema::serving_requests rq;
  rq.outcome = {"finished", "finished", "finished", "finished", "http_status"};
  rq.ttft_seconds = {0.1, 0.2, 0.3, 0.4, -1};
  rq.tpot_seconds = {0.01, 0.02, -1, 0.05, -1};
  rq.e2e_seconds = {1, 2, 3, 4, -1};
  const auto spec = schema::parse_load_slo(
      "ttft_p50=0.3s,tpot_p50=50ms,e2e_p99=10s,itl_p50=1s,goodput=0.5,"
      "ttft=0.35s,tpot=30ms");
  const std::vector<double> gaps = {0.01, 0.02, 0.03};
  const auto v = schema::judge_load_level(spec, rq, gaps, 2.0);
  ASSERT_EQ(v.terms.size(), 5u);
  EXPECT_DOUBLE_EQ(v.terms[0].measured, 0.3);  // p50 of 0.1, 0.2, 0.3, 0.4, failed
  EXPECT_TRUE(v.terms[0].met);
  // TPOT over the three finished requests that have one, and the failed one: 0.01 0.02 0.05 inf.
  EXPECT_DOUBLE_EQ(v.terms[1].measured, 0.035);
  EXPECT_TRUE(v.terms[1].met);
  EXPECT_TRUE(v.terms[2].failed_requests());  // p99 of five with one failure reaches it
  EXPECT_FALSE(v.terms[2].met);
  EXPECT_DOUBLE_EQ(v.terms[3].measured, 0.025);  // the gaps and the failed request
  EXPECT_EQ(v.terms[4].term.metric, "goodput");
  EXPECT_DOUBLE_EQ(v.terms[4].measured, 0.6);  // requests 0, 1, 2 (no TPOT) of 5
  EXPECT_TRUE(v.terms[4].met);
  EXPECT_FALSE(v.met);
  EXPECT_EQ(v.spec, spec.text);
  EXPECT_EQ(v.good_requests, 3);
  EXPECT_DOUBLE_EQ(*v.goodput_requests_per_second, 1.5);
  EXPECT_DOUBLE_EQ(*v.goodput_fraction, 0.6);
  // Without the gaps (the report reads only the columns) an ITL term is not judged; the others
  // are judged the same.
  EXPECT_FALSE(schema::judge_load_term(spec.terms[3], spec, rq, nullptr));
  const auto ttft = schema::judge_load_term(spec.terms[0], spec, rq, nullptr);
  ASSERT_TRUE(ttft);
  EXPECT_DOUBLE_EQ(ttft->measured, 0.3);
  // No requests: percentiles 0 (met), goodput 0; no TTFT or TPOT limit: no goodput figures.
  const auto empty = schema::judge_load_level(schema::parse_load_slo("e2e_p90=1s"),
                                              schema::serving_requests{}, {}, 1.0);
  EXPECT_TRUE(empty.met);
  EXPECT_FALSE(empty.goodput_fraction);
}
