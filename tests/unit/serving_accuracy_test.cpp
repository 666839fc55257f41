// `ridgeline plan accuracy --serving` (tools/plan/serving_accuracy.hpp): the error and median
// arithmetic on a hand example, the committed H100 replays (docs/results/serving) rebuilt and
// simulated on the CPU, the exit code following the bounds, and bad inputs failing in one line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/serving_accuracy.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/plan/serving_accuracy.hpp"
#include "ridgeline/telemetry/environment.hpp"

using namespace ridgeline;
using namespace ridgeline::planner;
using nlohmann::json;

namespace {

const std::filesystem::path k_root = RIDGELINE_SOURCE_DIR;
const std::string k_azure = (k_root / "docs/results/serving/run1/azure.json.gz").string();
const std::string k_mooncake = (k_root / "docs/results/serving/run2/mooncake.json.gz").string();
const std::string k_chat = (k_root / "docs/results/serving/run2/chat.json.gz").string();
const std::string k_preempt = (k_root / "docs/results/serving/run2/preempt.json.gz").string();

struct result {
  int code;
  std::string out, err;
};
result run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}
int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// A copy of a committed replay with its config changed, written as plain JSON under the test's
// temporary folder.
std::string edited_copy(const std::string& from, const std::string& name,
                        const std::function<void(json&)>& edit) {
  json doc = json::parse(read_text_file(from));
  edit(doc);
  const auto dir = std::filesystem::temp_directory_path() / "ridgeline_serving_accuracy_test";
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  write_atomically(path, doc.dump());
  return path;
}

}  // namespace

TEST(ServingAccuracy, ErrorAndMedianOnAHandExample) {
  EXPECT_DOUBLE_EQ(relative_error(110, 100), 0.1);
  EXPECT_DOUBLE_EQ(relative_error(90, 100), 0.1);
  EXPECT_DOUBLE_EQ(relative_error(0.005, 0.004), 0.25);
  EXPECT_THROW(relative_error(1, 0), std::invalid_argument);
  EXPECT_THROW(relative_error(NAN, 1), std::invalid_argument);
  EXPECT_DOUBLE_EQ(median_error({0.3, 0.1, 0.2}), 0.2);
  EXPECT_DOUBLE_EQ(median_error({0.4, 0.1, 0.3, 0.2}), 0.25);  // mean of the middle two
  EXPECT_THROW(median_error({}), std::invalid_argument);

  // Two runs: TPOT mean errors 4% and 8% (median 6% > 5%: broken), TTFT p50 5% and 7% (6% <=
  // 10%: met), E2E p50 only in one run (3%: met), output tok/s without a bound.
  schema::serving_accuracy_document d;
  d.env = schema::environment_from_block(metrics::environment_block(std::nullopt));
  d.bounds = default_serving_bounds();
  d.bounds.erase("e2e_p90");
  d.bounds.erase("ttft_p90");
  schema::serving_accuracy_run a, b;
  a.metrics["tpot_mean"] = {10e-3, 10.4e-3, relative_error(10.4e-3, 10e-3)};
  b.metrics["tpot_mean"] = {10e-3, 9.2e-3, relative_error(9.2e-3, 10e-3)};
  a.metrics["ttft_p50"] = {0.1, 0.105, relative_error(0.105, 0.1)};
  b.metrics["ttft_p50"] = {0.1, 0.093, relative_error(0.093, 0.1)};
  a.metrics["e2e_p50"] = {2.0, 2.06, relative_error(2.06, 2.0)};
  a.metrics["output_tokens_per_second"] = {1000, 1500, 0.5};
  d.runs = {a, b};
  judge(d);
  auto summary = [&d](const std::string& m) {
    return *std::find_if(d.summary.begin(), d.summary.end(),
                         [&m](const auto& s) { return s.metric == m; });
  };
  EXPECT_NEAR(summary("tpot_mean").median_error, 0.06, 1e-12);
  EXPECT_EQ(summary("tpot_mean").runs, 2);
  EXPECT_FALSE(*summary("tpot_mean").met);
  EXPECT_NEAR(summary("ttft_p50").median_error, 0.06, 1e-12);
  EXPECT_TRUE(*summary("ttft_p50").met);
  EXPECT_NEAR(summary("e2e_p50").median_error, 0.03, 1e-12);
  EXPECT_EQ(summary("e2e_p50").runs, 1);
  EXPECT_FALSE(summary("output_tokens_per_second").bound.has_value());
  EXPECT_FALSE(d.passed);
  ASSERT_EQ(d.broken.size(), 1u);
  EXPECT_NE(d.broken[0].find("TPOT mean"), std::string::npos);

  // The bounds flag: percent or share, "none" drops one, anything else is one clear error.
  const auto bounds = parse_serving_bounds("tpot_mean=7%,ttft_p99=0.2,e2e_p90=none");
  EXPECT_DOUBLE_EQ(bounds.at("tpot_mean"), 0.07);
  EXPECT_DOUBLE_EQ(bounds.at("ttft_p99"), 0.2);
  EXPECT_EQ(bounds.count("e2e_p90"), 0u);
  EXPECT_DOUBLE_EQ(bounds.at("e2e_p50"), 0.05);
  EXPECT_THROW(parse_serving_bounds("tpot_p50=5%"), std::invalid_argument);
  EXPECT_THROW(parse_serving_bounds("tpot_mean=-1"), std::invalid_argument);
  EXPECT_THROW(parse_serving_bounds("tpot_mean"), std::invalid_argument);

  // The document round-trips through its one reader and writer.
  const json j = schema::to_json(d);
  EXPECT_EQ(schema::to_json(schema::parse_serving_accuracy(j, "hand")), j);
}

TEST(ServingAccuracy, CommittedH100ReplaysRebuildTheirWindows) {
  serving_accuracy_options o;
  for (const auto& path : {k_azure, k_mooncake, k_chat, k_preempt}) {
    SCOPED_TRACE(path);
    const json raw = schema::read_json(path, schema::k_serving_results_schema);
    const schema::serving_results doc = schema::parse_serving_results(raw, path);
    ASSERT_FALSE(doc.config.window.has_value());  // written before replays recorded it
    const rebuilt_run b = rebuild_run(raw, doc, 0, path, o);
    EXPECT_EQ(std::ssize(b.requests.requests), doc.config.requests);
    EXPECT_EQ(std::ssize(b.requests.requests), std::ssize(doc.rows[0].measured->requests.id));
    EXPECT_EQ(b.config.kv.num_blocks, doc.rows[0].capacity_blocks);
    EXPECT_NE(b.window.find("derived from the measured request ids"), std::string::npos);
  }
  o.runs = {k_azure, k_mooncake, k_chat, k_preempt};
  const schema::serving_accuracy_document d = serving_accuracy(o);
  ASSERT_EQ(d.runs.size(), 4u);
  for (const auto& r : d.runs) {
    SCOPED_TRACE(r.file);
    EXPECT_EQ(r.simulated_requests, r.requests);
    EXPECT_EQ(r.metrics.size(), serving_metric_names().size());
    for (const auto& [name, m] : r.metrics) {
      EXPECT_TRUE(std::isfinite(m.predicted) && m.predicted > 0) << name;
      EXPECT_TRUE(std::isfinite(m.error)) << name;
    }
  }
  // The simulation is deterministic: the same inputs give the same document.
  EXPECT_EQ(schema::to_json(serving_accuracy(o)).at("runs"), schema::to_json(d).at("runs"));
}

TEST(ServingAccuracy, ExitCodeFollowsTheBounds) {
  // Default bounds (issue 22's): the committed Azure run misses the 5% on mean TPOT (exit 1, the
  // broken bound named); bounds it meets give 0.
  auto r = run({"plan", "accuracy", "--no-progress", "--serving", k_azure});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("bound"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("bound broken: "), std::string::npos);
  r = run({"plan", "accuracy", "--no-progress", "--serving", k_azure, "--bounds",
           "tpot_mean=50%,e2e_p50=50%,e2e_p90=50%,ttft_p50=50%,ttft_p90=50%,ttft_p99=50%"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("every stated bound holds"), std::string::npos);
  r = run({"plan", "accuracy", "--no-progress", "--serving", k_azure, "--bounds",
           "tpot_mean=0.1%,e2e_p50=none,e2e_p90=none,ttft_p50=none,ttft_p90=none"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("TPOT mean"), std::string::npos) << r.err;
}

TEST(ServingAccuracy, WindowFieldIsUsedAndChecked) {
  // A replay that records config.window (as replay writes now) rebuilds the same window as the
  // derivation from request ids; a window that does not hold the measured requests is refused.
  const auto with_window = edited_copy(k_chat, "chat_window.json", [](json& d) {
    d["config"]["window"] = {{"start_seconds", 0}, {"duration_seconds", 45}, {"requests", 0},
                             {"rate_scale", 1}, {"seed", nullptr}};
  });
  serving_accuracy_options o;
  o.runs = {k_chat};
  const auto derived = serving_accuracy(o);
  o.runs = {with_window};
  const auto recorded = serving_accuracy(o);
  ASSERT_EQ(recorded.runs.size(), 1u);
  EXPECT_NE(recorded.runs[0].window.find("config.window"), std::string::npos);
  EXPECT_EQ(recorded.runs[0].metrics.at("e2e_p50").predicted,
            derived.runs[0].metrics.at("e2e_p50").predicted);
  const auto wrong = edited_copy(k_chat, "chat_wrong_window.json", [](json& d) {
    d["config"]["window"] = {{"start_seconds", 0}, {"duration_seconds", 20}, {"requests", 0},
                             {"rate_scale", 1}, {"seed", nullptr}};
  });
  const auto r = run({"plan", "accuracy", "--no-progress", "--serving", wrong});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("the run measured"), std::string::npos) << r.err;
}

TEST(ServingAccuracy, BadInputsFailInOneLine) {
  // Not a serving document: a sweep.
  auto r = run({"plan", "accuracy", "--no-progress", "--serving",
                (k_root / "docs/results/h100-sxm_sweep.json").string()});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("ridgeline.kv/v1"), std::string::npos) << r.err;
  // A kv simulation: no measured row.
  r = run({"plan", "accuracy", "--no-progress", "--serving",
           (k_root / "docs/results/h100-sxm_kv_chat.json").string()});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("measured"), std::string::npos) << r.err;
  // A file that is not there.
  r = run({"plan", "accuracy", "--no-progress", "--serving", "/nonexistent/run.json.gz"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  // A trace that is not there (exit 4, the field and the places tried named): the document names
  // it by a path of another machine ...
  const auto moved = edited_copy(k_azure, "azure_moved.json", [](json& d) {
    d["config"]["workload"] = "/nonexistent-root/data/traces/azure_llm_2023_conv.csv";
  });
  r = run({"plan", "accuracy", "--no-progress", "--serving", moved, "--trace-dir",
           "/nonexistent"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("config.workload"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/azure_llm_2023_conv.csv"), std::string::npos) << r.err;
  const std::string no_bounds =
      "tpot_mean=none,e2e_p50=none,e2e_p90=none,ttft_p50=none,ttft_p90=none";
  // ... found under --trace-dir by its file name, and a path relative to the repository under
  // --trace-dir REPO.
  r = run({"plan", "accuracy", "--no-progress", "--serving", moved, "--trace-dir",
           (k_root / "data/traces").string(), "--bounds", no_bounds});
  EXPECT_EQ(r.code, 0) << r.err;
  const auto relative = edited_copy(k_azure, "azure_relative.json", [](json& d) {
    d["config"]["workload"] = "data/traces/azure_llm_2023_conv.csv";
  });
  r = run({"plan", "accuracy", "--no-progress", "--serving", relative, "--trace-dir",
           k_root.string(), "--bounds", no_bounds});
  EXPECT_EQ(r.code, 0) << r.err;
  // No run at all, and a sweep flag mixed in.
  r = run({"plan", "accuracy", "--no-progress", "--serving", k_azure, "--sweep", "x.json"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  // A load over HTTP without config.window (written before it): the field named.
  const auto old_load = edited_copy(k_chat, "old_load.json", [](json& d) {
    d["config"]["executor"] = "http";
    d["rows"][0]["measured"]["http"] = {{"shape", "trace"}, {"rate_per_second", nullptr}};
  });
  r = run({"plan", "accuracy", "--no-progress", "--serving", old_load, "--model", "llama-3-8b",
           "--gpu", "h100-sxm", "--kv-blocks", "1000"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("config.window"), std::string::npos) << r.err;
}
