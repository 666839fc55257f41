// `ridgeline report`: schema dispatch and errors, the data blob built from the fixtures in
// tests/fixtures/report/, script-safe embedding, and the page as written. The browser half
// (does the page draw?) is tests/integration/report_browser_test.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/report/report.hpp"

using namespace ridgeline;

namespace {
const std::string k_fixtures = std::string(RIDGELINE_SOURCE_DIR) + "/tests/fixtures/report/";

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
  auto r = run({"report", k_fixtures + "sweep_synthetic_fixture.json", "--chart-js",
                temp_path("no_such_chart.js"), "-o", temp_path("c.html")});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("libjs-chart.js"), std::string::npos) << r.err;
}

TEST(Report, DataFromEveryFixture) {
  std::vector<report::input_file> in;
  for (const char* f : {"h100-sxm_profile_trimmed.json", "sweep_synthetic_fixture.json",
                        "kv_generated_fixture.json", "plan_synthetic_fixture.json",
                        "diverge_synthetic_fixture.json"}) {
    in.push_back(report::load_input(k_fixtures + f));
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
  // Kernels (linear layers at ~1 FLOP/B for one token) and the sweep's engine steps join it.
  int linear = 0, engine = 0;
  for (const auto& p : roof["points"]) {
    EXPECT_GT(p["intensity_flops_per_byte"].get<double>(), 0);
    EXPECT_GT(p["flops_per_second"].get<double>(), 0);
    if (p["series"].get<std::string>().rfind("linear layers", 0) == 0) ++linear;
    if (p["series"].get<std::string>().rfind("engine", 0) == 0) ++engine;
  }
  EXPECT_GT(linear, 10);
  EXPECT_GT(engine, 3);
  EXPECT_EQ(d["working_set"].size(), 1u);
  // Sweep: groups per (phase, context), batches ascending, skipped points with reasons.
  ASSERT_EQ(d["sweeps"].size(), 1u);
  int skipped = 0;
  for (const auto& g : d["sweeps"][0]["series"]) {
    double last = 0;
    for (const auto& p : g["points"]) {
      EXPECT_GT(p["batch"].get<double>(), last);
      last = p["batch"].get<double>();
    }
    skipped += static_cast<int>(g["skipped"].size());
  }
  EXPECT_GT(skipped, 0);
  // KV: rows by capacity with full CDFs; plan's SLO replaces the default.
  ASSERT_EQ(d["kv"].size(), 1u);
  const auto& rows = d["kv"][0]["rows"];
  ASSERT_GE(rows.size(), 3u);
  EXPECT_LE(rows[0]["capacity_bytes"].get<double>(), rows[1]["capacity_bytes"].get<double>());
  EXPECT_GT(rows[0]["cdf"]["ttft_seconds"].size(), 10u);
  EXPECT_DOUBLE_EQ(d["slo_tpot_seconds"].get<double>(), 0.04);
  EXPECT_EQ(d["plans"].size(), 1u);
  EXPECT_EQ(d["plans"][0]["rows"].size(), 4u);
  EXPECT_EQ(d["divergence_plots"].size(), 1u);
  EXPECT_EQ(d["environments"].size(), 5u);
}

// `ridgeline roofline`'s document: its own roofline (ceilings from the document) with the sweep's
// kernels, the engine steps at their measured intensity and the decode kernels as points.
TEST(Report, RooflineDocumentBecomesARoofline) {
  const auto d = report::build_report_data({report::load_input(k_fixtures + "roofline_fixture.json")},
                                           {});
  ASSERT_EQ(d["roofline"].size(), 1u);
  const auto& r = d["roofline"][0];
  EXPECT_EQ(r["gpu"], "NVIDIA H100 80GB HBM3");
  EXPECT_NEAR(r["memory_roofs"][0]["bytes_per_second"].get<double>(), 3.13e12, 1e10);
  std::map<std::string, int> series;
  for (const auto& p : r["points"]) {
    EXPECT_GT(p["intensity_flops_per_byte"].get<double>(), 0);
    EXPECT_GT(p["flops_per_second"].get<double>(), 0);
    ++series[p["series"].get<std::string>()];
  }
  EXPECT_EQ(series["intensity sweep: ffma_fp32"], 15);
  EXPECT_EQ(series["intensity sweep: mma_bf16"], 15);
  EXPECT_EQ(series["engine steps (measured intensity)"], 6);
  EXPECT_GT(series["decode kernels, batch 1"], 3);
  // A roofline document without ceilings is malformed input, named.
  auto bad = report::load_input(k_fixtures + "roofline_fixture.json");
  bad.doc.erase("ceilings");
  EXPECT_THROW(report::build_report_data({bad}, {}), std::invalid_argument);
}

TEST(Report, PageIsSelfContained) {
  if (!have_chart_js()) GTEST_SKIP() << "libjs-chart.js not installed (scripts/setup.sh)";
  const std::string out = temp_path("page.html");
  auto r = run({"report", k_fixtures + "h100-sxm_profile_trimmed.json",
                k_fixtures + "sweep_synthetic_fixture.json", "--title", "a </script> title", "-o",
                out, "--json"});
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
