// Condenses result files into the report's data blob and writes the page (see report.hpp). Every
// file is read through its format's typed reader (core/schemas), so a missing or mistyped field is
// an error naming the file, the field and the schema; each format has one function that picks
// what its charts need, in the units the axes show. Plans and divergence audits also become
// generic tables, built from the typed documents. Serving results (replay, load over HTTP) feed the
// latency comparison; a load --find-max search and the --rate runs confirming it, the find-max
// chart; a serving_accuracy document, the predicted-against-measured charts.
#include "ridgeline/report/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "ridgeline/core/build_info.hpp"
#include "ridgeline/core/dtype.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::report {
namespace {

using nlohmann::json;

std::string base_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// Input and output bytes per element of the probe's peak GEMMs (fp8 writes bf16, int8 int32).
std::pair<double, double> gemm_element_bytes(const std::string& t) {
  if (t == "fp32" || t == "tf32") return {4, 4};
  if (t == "fp16" || t == "bf16") return {2, 2};
  if (t == "fp8_e4m3") return {1, 2};
  if (t == "int8") return {1, 4};
  return {0, 0};
}

// Position of a dtype name in ridgeline's dtype order (fp32 ... int8), unknown names last.
std::size_t dtype_rank(const std::string& t) {
  for (std::size_t i = 0; i < k_all_dtypes.size(); ++i) {
    if (name(k_all_dtypes[i]) == t) return i;
  }
  return k_all_dtypes.size();
}

// One roofline per GPU profile: measured memory roofs (HBM read plateau, L2 from the working-set
// sweep), measured compute roofs per dtype with their ridge points, the datasheet beside, and the
// probe's kernels (linear layers, whole blocks, peak GEMMs) at their counted intensity.
json roofline_of(const std::string& path, const schema::profile_document& p) {
  json memory = json::array();
  if (p.read_bytes_per_second > 0) {
    memory.push_back({{"label", "HBM read (measured)"},
                      {"bytes_per_second", p.read_bytes_per_second},
                      {"measured", true}});
  }
  if (p.datasheet_bytes_per_second > 0) {
    memory.push_back({{"label", "HBM (datasheet)"},
                      {"bytes_per_second", p.datasheet_bytes_per_second},
                      {"measured", false}});
  }
  double l2 = 0;
  for (const auto& r : p.working_set) {
    if (p.l2_bytes > 0 && static_cast<double>(r.buffer_bytes) > static_cast<double>(p.l2_bytes) / 2)
      continue;
    l2 = std::max(l2, r.bytes_per_second);
  }
  if (l2 > 0) {
    memory.push_back({{"label", "L2 (measured, working set <= L2/2)"},
                      {"bytes_per_second", l2},
                      {"measured", true}});
  }
  std::vector<std::pair<std::string, schema::profile_peak>> peaks(p.peaks.begin(), p.peaks.end());
  std::stable_sort(peaks.begin(), peaks.end(), [](const auto& a, const auto& b) {
    return dtype_rank(a.first) < dtype_rank(b.first);
  });
  json compute = json::array();
  for (const auto& [t, peak] : peaks) {
    json c = {{"dtype", t},
              {"flops_per_second", peak.flops_per_second},
              {"datasheet_flops_per_second", peak.datasheet_flops_per_second}};
    if (peak.flops_per_second > 0 && p.read_bytes_per_second > 0) {
      c["ridge_flops_per_byte"] = peak.flops_per_second / p.read_bytes_per_second;
    }
    if (peak.datasheet_flops_per_second > 0 && p.datasheet_bytes_per_second > 0) {
      c["datasheet_ridge_flops_per_byte"] =
          peak.datasheet_flops_per_second / p.datasheet_bytes_per_second;
    }
    compute.push_back(c);
  }
  // Kernels in the order the probe wrote them: linear layers, blocks, GEMMs interleave by kind.
  json points = json::array();
  auto add_linear = [&](const std::string& series, const std::string& label, double flops,
                        double bytes, double rate) {
    if (!(flops > 0 && bytes > 0 && rate > 0)) return;
    points.push_back({{"series", series},
                      {"label", label},
                      {"intensity_flops_per_byte", flops / bytes},
                      {"flops_per_second", rate}});
  };
  std::size_t li = 0, bi = 0, gi = 0;
  for (const auto& raw : p.rows) {
    const std::string kind = raw.at("kind").get<std::string>();
    if (kind == "linear") {
      const auto& r = p.linear[li++];
      add_linear("linear layers (" + r.model + ")", r.layer + ", " + std::to_string(r.n) + " tokens",
                 r.flops, r.bytes, r.flops_per_second);
    } else if (kind == "linear_block") {
      const auto& r = p.linear_block[bi++];
      add_linear("4 linear layers of a block (" + r.model + ")",
                 "block, " + std::to_string(r.tokens) + " tokens", r.flops, r.bytes,
                 r.flops_per_second);
    } else if (kind == "gemm") {
      const auto& r = p.gemm[gi++];
      const auto [in, out] = gemm_element_bytes(r.dtype);
      const double m = static_cast<double>(r.m), n = static_cast<double>(r.n),
                   k = static_cast<double>(r.k);
      const double bytes = (m * k + k * n) * in + m * n * out;
      if (!(bytes > 0 && r.flops > 0)) continue;
      points.push_back({{"series", "peak GEMMs"},
                        {"label", r.dtype + " " + std::to_string(r.m) + "x" + std::to_string(r.n) +
                                      "x" + std::to_string(r.k)},
                        {"intensity_flops_per_byte", r.flops / bytes},
                        {"flops_per_second", r.flops_per_second}});
    }
  }
  return {{"title", (p.gpu_key.empty() ? p.gpu_name : p.gpu_key) + ": " + p.gpu_name},
          {"gpu", p.gpu_name},
          {"source", path},
          {"profile_source", p.source},
          {"memory_roofs", memory},
          {"compute_roofs", compute},
          {"points", points}};
}

// `ridgeline roofline`: a roofline from the document's own ceilings, with its measured points:
// intensity-sweep kernels, engine steps at their measured (else counted) intensity, and each
// kernel of the traced decode steps.
json roofline_doc_of(const std::string& path, const schema::roofline_document& d) {
  const auto& c = d.ceilings;
  json memory = json::array({{{"label", "HBM read (measured)"},
                              {"bytes_per_second", c.dram_read_bytes_per_second},
                              {"measured", true}}});
  if (c.datasheet_dram_bytes_per_second > 0) {
    memory.push_back({{"label", "HBM (datasheet)"},
                      {"bytes_per_second", c.datasheet_dram_bytes_per_second},
                      {"measured", false}});
  }
  json compute = json::array();
  for (const auto& t : c.dtypes) {
    json roof = {{"dtype", t.dtype},
                 {"flops_per_second", t.peak_flops_per_second},
                 {"datasheet_flops_per_second", t.datasheet_flops_per_second}};
    if (t.ridge_flops_per_byte) roof["ridge_flops_per_byte"] = *t.ridge_flops_per_byte;
    compute.push_back(roof);
  }
  json points = json::array();
  auto add = [&](const std::string& series, const std::string& label, double i, double rate) {
    if (i > 0 && rate > 0) {
      points.push_back({{"series", series},
                        {"label", label},
                        {"intensity_flops_per_byte", i},
                        {"flops_per_second", rate}});
    }
  };
  if (d.intensity_sweep) {
    for (const auto& p : *d.intensity_sweep) {
      add("intensity sweep: " + p.kernel,
          p.kernel + " at " + format("%g FLOP/B", p.flop_per_byte),
          p.flop_per_byte, p.flop_per_second);
    }
  }
  for (const auto& r : d.engine) {
    if (r.skipped) continue;
    add(std::string("engine steps (") + (r.counters_measured ? "measured" : "counted") +
            " intensity)",
        r.phase + " batch " + std::to_string(r.batch), r.intensity_flops_per_byte,
        r.flops_per_second);
  }
  for (const auto& b : d.decode_kernels) {
    for (const auto& k : b.kernels) {
      if (!k.intensity_flops_per_byte) continue;
      add("decode kernels, batch " + std::to_string(b.batch), k.phase + ": " + k.kernel,
          *k.intensity_flops_per_byte, k.flops_per_second.value_or(0));
    }
  }
  return {{"title", c.gpu + ": measured roofline (" + base_name(path) + ")"},
          {"gpu", c.gpu},
          {"source", path},
          {"profile_source", c.profile_source},
          {"memory_roofs", memory},
          {"compute_roofs", compute},
          {"points", points}};
}

json working_set_of(const std::string& path, const schema::profile_document& p) {
  std::map<std::string, json> by_op;
  for (const auto& r : p.working_set) {
    by_op[r.op].push_back({{"bytes", r.buffer_bytes}, {"bytes_per_second", r.bytes_per_second}});
  }
  json series = json::array();
  for (auto& [op, pts] : by_op) {
    std::sort(pts.begin(), pts.end(),
              [](const json& a, const json& b) { return a["bytes"] < b["bytes"]; });
    series.push_back({{"op", op}, {"points", pts}});
  }
  return {{"title", (p.gpu_key.empty() ? p.gpu_name : p.gpu_key) + ": bandwidth against working set"},
          {"source", path},
          {"l2_bytes", p.l2_bytes},
          {"series", series}};
}

// Sweep rows grouped by (phase, context), batches ascending; skipped points keep their reason and
// the memory limit (max_sequences) of each context.
json sweep_of(const std::string& path, const schema::sweep_document& s) {
  std::map<std::pair<std::string, std::int64_t>, json> groups;
  json engine_points = json::array();
  for (const auto& r : s.rows) {
    json& g = groups[{r.phase, r.context}];
    if (g.is_null()) {
      g = {{"phase", r.phase},
           {"context", r.context},
           {"points", json::array()},
           {"skipped", json::array()},
           {"max_sequences", nullptr}};
    }
    g["max_sequences"] = r.max_sequences;
    if (r.skipped) {
      g["skipped"].push_back({{"batch", r.batch}, {"reason", *r.skipped}});
      continue;
    }
    const auto& m = *r.measured;
    g["points"].push_back({{"batch", r.batch},
                           {"tokens_per_second", m.tokens_per_second},
                           {"step_seconds", m.step_seconds.median},
                           {"step_seconds_p10", m.step_seconds.p10},
                           {"step_seconds_p90", m.step_seconds.p90},
                           {"pct_of_floor", m.pct_of_floor},
                           {"floor_ceiling", m.floor_ceiling.value_or("")}});
    if (m.intensity_flops_per_byte > 0 && m.flops_per_second > 0) {
      engine_points.push_back({{"series", "engine " + r.phase + " steps"},
                               {"label", r.phase + " batch " + std::to_string(r.batch) +
                                             ", context " + std::to_string(r.context)},
                               {"intensity_flops_per_byte", m.intensity_flops_per_byte},
                               {"flops_per_second", m.flops_per_second}});
    }
  }
  json series = json::array();
  for (auto& [key, g] : groups) {
    std::sort(g["points"].begin(), g["points"].end(),
              [](const json& a, const json& b) { return a["batch"] < b["batch"]; });
    series.push_back(g);
  }
  const std::string gpu = s.env.gpu ? s.env.gpu->name : "unknown GPU";
  return {{"title", s.config.model + " on " + gpu},
          {"source", path},
          {"gpu", gpu},
          {"model", s.config.model},
          {"floor_bytes_per_second", s.config.floor_bytes_per_second},
          // The ceiling the % of floor divides by, by name (empty floor_ceiling: a sweep written
          // before the matching ceilings, one bandwidth for every byte, floor_source says which).
          {"floor_source", s.config.floor_source},
          {"floor_ceiling", s.config.floor_ceiling.value_or("")},
          {"floor_rederived", s.config.floor_rederived.value_or("")},
          {"peak_flops_per_second", s.config.peak_bf16_flops_per_second},
          {"series", series},
          {"engine_points", engine_points}};
}

// Quantile points of one latency distribution: every 5% plus p99 and p99.9 ("cdf").
json cdf_of(const schema::latency_distribution& d) {
  json pts = json::array();
  if (!d.quantiles) return pts;
  for (const auto& [q, seconds] : d.quantiles->cdf) pts.push_back({{"q", q}, {"seconds", seconds}});
  return pts;
}

json kv_of(const std::string& path, const schema::serving_results& k) {
  json rows = json::array();
  for (const auto& r : k.rows) {
    rows.push_back({{"capacity", r.capacity},
                    {"capacity_bytes", r.capacity_bytes},
                    {"capacity_blocks", r.capacity_blocks},
                    {"token_hit_rate", r.token_hit_rate},
                    {"block_hit_rate", r.block_hit_rate},
                    {"recomputed_tokens", r.recomputed_tokens},
                    {"preemptions", r.preemptions},
                    {"rejected", r.rejected},
                    {"cdf",
                     {{"ttft_seconds", cdf_of(r.ttft_seconds)},
                      {"tpot_seconds", cdf_of(r.tpot_seconds)},
                      {"itl_seconds", cdf_of(r.itl_seconds)},
                      {"e2e_seconds", cdf_of(r.e2e_seconds)}}}});
  }
  std::sort(rows.begin(), rows.end(),
            [](const json& a, const json& b) { return a["capacity_bytes"] < b["capacity_bytes"]; });
  const auto& c = k.config;
  return {{"title", base_name(c.workload) + ", " + c.model + " on " + c.gpu + ", blocks of " +
                        std::to_string(c.block_tokens) + " tokens"},
          {"source", path},
          {"requests", c.requests},
          {"rows", rows}};
}

// A replay's measured section as time series for the page: the run cut into at most
// k_serving_buckets equal time buckets; per bucket the mean running and waiting requests and KV
// blocks (used, cached), prompt and output tokens per second (tokens computed in the bucket's
// steps / bucket length), ops:byte (counted FLOPs / counted bytes of its steps) and achieved
// FLOP/s and bytes/s (counted work / summed forward time). A load over HTTP has no steps (the
// engine is the server's), so it gets none of these.
constexpr int k_serving_buckets = 600;

json serving_of(const std::string& path, const schema::serving_results& k) {
  for (const auto& r : k.rows) {
    if (!r.measured || r.measured->steps.start_seconds.empty()) continue;
    const auto& m = *r.measured;
    const auto& s = m.steps;
    const std::size_t n = s.start_seconds.size();
    const double end = n > 0 ? s.start_seconds.back() + s.gpu_seconds.back() : 0;
    const int buckets = n == 0 ? 0 : static_cast<int>(std::min<std::size_t>(n, k_serving_buckets));
    const double width = buckets > 0 && end > 0 ? end / buckets : 1;
    struct acc {
      double running = 0, waiting = 0, used = 0, cached = 0, prefill = 0, decode = 0, flops = 0,
             bytes = 0, gpu = 0;
      int steps = 0;
    };
    std::vector<acc> b(static_cast<std::size_t>(buckets));
    for (std::size_t i = 0; i < n; ++i) {
      const int at = std::min(buckets - 1, static_cast<int>(s.start_seconds[i] / width));
      auto& a = b[static_cast<std::size_t>(std::max(at, 0))];
      a.running += static_cast<double>(s.running[i]);
      a.waiting += static_cast<double>(s.waiting[i]);
      a.used += static_cast<double>(s.kv_used[i]);
      a.cached += static_cast<double>(s.kv_cached[i]);
      a.prefill += static_cast<double>(s.prefill_tokens[i]);
      a.decode += static_cast<double>(s.decode_tokens[i]);
      a.flops += s.flops[i];
      a.bytes += s.bytes[i];
      a.gpu += s.gpu_seconds[i];
      ++a.steps;
    }
    json series = json::array();
    for (int i = 0; i < buckets; ++i) {
      const auto& a = b[static_cast<std::size_t>(i)];
      if (a.steps == 0) continue;
      const double c = a.steps;
      series.push_back({{"t", (i + 0.5) * width},
                        {"running", a.running / c},
                        {"waiting", a.waiting / c},
                        {"kv_used", a.used / c},
                        {"kv_cached", a.cached / c},
                        {"prefill_tokens_per_second", a.prefill / width},
                        {"decode_tokens_per_second", a.decode / width},
                        {"ops_per_byte", a.bytes > 0 ? a.flops / a.bytes : 0.0},
                        {"flops_per_second", a.gpu > 0 ? a.flops / a.gpu : 0.0},
                        {"bytes_per_second", a.gpu > 0 ? a.bytes / a.gpu : 0.0}});
    }
    auto p = [](const schema::latency_distribution& d, double q) {
      if (!d.quantiles) return json(nullptr);
      return json(q == 0.5 ? d.quantiles->p50 : d.quantiles->p99);
    };
    const auto& c = k.config;
    return {{"title", base_name(c.workload) + ", " + c.model + " on " + m.device + " (" +
                          m.executor + " executor)"},
            {"source", path},
            {"bucket_seconds", width},
            {"capacity_blocks", r.capacity_blocks},
            {"summary",
             {{"requests", r.requests},
              {"finished", r.finished},
              {"rejected", r.rejected},
              {"cancelled", m.cancelled},
              {"wall_seconds", m.wall_seconds},
              {"mean_running", m.mean_running},
              {"token_hit_rate", r.token_hit_rate},
              {"simulated_token_hit_rate", m.simulated_token_hit_rate},
              {"ttft_p50", p(r.ttft_seconds, 0.5)},
              {"ttft_p99", p(r.ttft_seconds, 0.99)},
              {"tpot_p50", p(r.tpot_seconds, 0.5)},
              {"tpot_p99", p(r.tpot_seconds, 0.99)},
              {"step_gap_p50", p(m.step_gap_seconds, 0.5)}}},
            {"series", series}};
  }
  return nullptr;
}

// ---- serving latency: replay against load over HTTP --------------------------------------------

// Quantiles at which a run's CDF is drawn: every 0.5% and p99.9, so the line passes through the
// table's p50, p90 and p99 exactly (core's one quantile gives both).
const std::vector<double>& cdf_grid() {
  static const std::vector<double> qs = [] {
    std::vector<double> q;
    for (int i = 0; i <= 200; ++i) q.push_back(i / 200.0);
    q.push_back(0.999);
    std::sort(q.begin(), q.end());
    return q;
  }();
  return qs;
}

// One latency of a measured run: the CDF over the per-request column (finished requests with a
// defined value, which is what the row's distribution counts) and the row's own p50/p90/p99.
json latency_of(const std::vector<double>& column, const std::vector<std::string>& outcome,
                const schema::latency_distribution& row) {
  std::vector<double> v;
  for (std::size_t i = 0; i < column.size(); ++i) {
    if (outcome[i] == "finished" && column[i] >= 0) v.push_back(column[i]);
  }
  json cdf = json::array();
  if (!v.empty()) {
    const auto& qs = cdf_grid();
    const auto at = bench::quantiles(v, qs);
    for (std::size_t i = 0; i < qs.size(); ++i) cdf.push_back({{"q", qs[i]}, {"seconds", at[i]}});
  }
  auto p = [&](double schema::latency_quantiles::*field) {
    return row.quantiles ? json((*row.quantiles).*field) : json(nullptr);
  };
  return {{"count", static_cast<std::int64_t>(v.size())},
          {"p50", p(&schema::latency_quantiles::p50)},
          {"p90", p(&schema::latency_quantiles::p90)},
          {"p99", p(&schema::latency_quantiles::p99)},
          {"cdf", cdf}};
}

// Every measured row of a serving-results file (a replay's engine pool, each level of a load) as
// one run of the latency comparison.
void serving_latency_of(const std::string& path, const schema::serving_results& k, json& runs) {
  for (const auto& r : k.rows) {
    if (!r.measured) continue;
    const auto& m = *r.measured;
    const auto& rq = m.requests;
    runs.push_back(
        {{"label", base_name(path) + ": " + r.capacity},
         {"source", path},
         {"level", r.capacity},
         {"kind", m.executor == "http" ? "load" : "replay"},
         {"executor", m.executor},
         {"device", m.device},
         {"requests", r.requests},
         {"finished", r.finished},
         {"metrics",
          {{"ttft_seconds", latency_of(rq.ttft_seconds, rq.outcome, r.ttft_seconds)},
           {"tpot_seconds", latency_of(rq.tpot_seconds, rq.outcome, r.tpot_seconds)},
           {"e2e_seconds", latency_of(rq.e2e_seconds, rq.outcome, r.e2e_seconds)}}}});
  }
}

// ---- find-max: rate tried against the SLO's percentiles ----------------------------------------

json term_json(const schema::load_term_verdict& v) {
  const bool failed = v.failed_requests();
  return {{"text", v.term.text},
          {"metric", v.term.metric},
          {"quantile", v.term.quantile},
          {"limit", v.term.limit},
          {"measured", failed ? json(nullptr) : json(v.measured)},
          {"failed_requests", failed},
          {"met", v.met}};
}

// Why a level missed: its missed terms, and that it stopped early (saturated or otherwise).
std::string why_of(const std::vector<schema::load_term_verdict>& terms, bool met, bool saturated,
                   const std::string& stopped) {
  std::string why;
  auto add = [&](const std::string& s) { why += (why.empty() ? "" : "; ") + s; };
  if (saturated) {
    add(stopped.empty() ? std::string("saturated") : "stopped early, " + stopped);
  } else if (!stopped.empty()) {
    add("stopped early: " + stopped);
  }
  if (met) return why;
  for (const auto& t : terms) {
    if (t.met) continue;
    if (t.term.metric == "goodput") {
      add("goodput " + format_percent(t.measured) + " < " + format_percent(t.term.limit));
    } else if (t.failed_requests()) {
      add(t.term.text + ": failed requests reach the percentile");
    } else {
      add(t.term.text + ": " + format_seconds(t.measured) + " > " + format_seconds(t.term.limit));
    }
  }
  return why;
}

// One rate level of a load result as the find-max chart reads it (a search level or a
// confirmation run); callers add what is theirs (order, source, judged_by).
template <typename Level>
json rate_level_json(const Level& lv, const schema::serving_row& row, std::optional<bool> met,
                     std::string why, json terms) {
  return {{"label", lv.label},
          {"rate_per_second", *lv.rate_per_second},
          {"saturated", lv.saturated},
          {"stopped", lv.stopped},
          {"requests", row.requests},
          {"sent", lv.sent},
          {"finished", row.finished},
          {"requests_per_second", lv.requests_per_second},
          {"met", schema::nullable(met)},
          {"why", std::move(why)},
          {"terms", std::move(terms)}};
}

// A `ridgeline load --find-max` result: each level in the order tried with its rate, the SLO's
// terms as measured there, met or missed and why, and the search's answer.
json find_max_of(const std::string& path, const schema::serving_results& k,
                 const schema::load_results& l) {
  const auto& f = *l.find_max;
  json terms = json::array();
  if (l.slo) {
    for (const auto& t : l.slo->terms) {
      terms.push_back({{"text", t.text},
                       {"metric", t.metric},
                       {"quantile", t.quantile},
                       {"limit", t.limit}});
    }
  }
  json levels = json::array();
  for (std::size_t i = 0; i < l.levels.size(); ++i) {
    const auto& lv = l.levels[i];
    const auto& row = k.rows[i];
    if (!lv.rate_per_second) continue;
    json ts = json::array();
    std::optional<bool> met;
    std::string why;
    if (lv.slo) {
      for (const auto& t : lv.slo->terms) ts.push_back(term_json(t));
      met = lv.slo->met;
      why = why_of(lv.slo->terms, lv.slo->met, lv.saturated, lv.stopped);
    }
    json level = rate_level_json(lv, row, met, why, std::move(ts));
    level["order"] = static_cast<std::int64_t>(i + 1);
    levels.push_back(std::move(level));
  }
  return {{"title", "find-max: " + base_name(path) + " (" + l.model + " at " + l.url + ")"},
          {"source", path},
          {"slo", l.slo ? l.slo->text : ""},
          {"terms", terms},
          {"max_rate_per_second", schema::nullable(f.max_rate_per_second)},
          {"lowest_failing_rate", schema::nullable(f.lowest_failing_rate)},
          {"precision", f.precision},
          {"note", f.note},
          {"levels", levels},
          {"confirmations", json::array()}};
}

// A plain `--rate` load level beside a find-max: judged against the find-max's SLO, by its own
// verdict when it ran with the same spec, else by the report from its per-request columns.
json confirmation_of(const std::string& path, const schema::load_level& lv,
                     const schema::serving_row& row, const schema::load_slo_spec& spec) {
  std::vector<schema::load_term_verdict> verdicts;
  std::string judged_by;
  bool judged_all = true;
  std::optional<bool> met;
  if (lv.slo && lv.slo->spec == spec.text) {
    verdicts = lv.slo->terms;
    met = lv.slo->met;
    judged_by = "its own SLO verdict (the same spec)";
  } else {
    judged_by = "the report, from its per-request columns (it ran with " +
                (lv.slo ? "--slo " + lv.slo->spec : std::string("no --slo")) + ")";
    for (const auto& t : spec.terms) {
      // load's rule (core's judge); ITL needs every token's gap, which the columns do not hold.
      if (auto v = schema::judge_load_term(t, spec, row.measured->requests, nullptr)) {
        verdicts.push_back(*v);
      } else {
        judged_all = false;
      }
    }
  }
  if (!met) {
    bool all = true;
    for (const auto& v : verdicts) all = all && v.met;
    if (judged_all || !all) met = all;  // a missed term decides even when ITL was not judged
  }
  if (!judged_all) judged_by += "; ITL terms not judged (the columns have no token gaps)";
  json ts = json::array();
  for (const auto& v : verdicts) ts.push_back(term_json(v));
  json level = rate_level_json(lv, row, met,
                               why_of(verdicts, met.value_or(true), lv.saturated, lv.stopped),
                               std::move(ts));
  level["source"] = path;
  level["label"] = base_name(path) + ": " + lv.label;
  level["judged_by"] = judged_by;
  return level;
}

// ---- serving accuracy: predicted against measured ---------------------------------------------

struct metric_meta {
  std::string label, unit;
  double scale = 1;  // multiplies the file's value into the axis unit
};

// The metrics `plan accuracy --serving` validates, in its order, with the unit each is drawn in.
const std::vector<std::pair<std::string, metric_meta>>& accuracy_metrics() {
  static const std::vector<std::pair<std::string, metric_meta>> k = {
      {"ttft_p50", {"TTFT p50", "ms", 1e3}},     {"ttft_p90", {"TTFT p90", "ms", 1e3}},
      {"ttft_p99", {"TTFT p99", "ms", 1e3}},     {"tpot_mean", {"TPOT mean", "ms", 1e3}},
      {"tpot_p90", {"TPOT p90", "ms", 1e3}},     {"e2e_p50", {"E2E p50", "ms", 1e3}},
      {"e2e_p90", {"E2E p90", "ms", 1e3}},
      {"output_tokens_per_second", {"output throughput", "output tokens/s", 1}}};
  return k;
}

metric_meta meta_of(const std::string& metric) {
  for (const auto& [key, m] : accuracy_metrics()) {
    if (key == metric) return m;
  }
  // A metric this report does not know yet: drawn as written, named as such.
  const bool latency = metric.rfind("ttft", 0) == 0 || metric.rfind("tpot", 0) == 0 ||
                       metric.rfind("e2e", 0) == 0 || metric.rfind("itl", 0) == 0;
  return latency ? metric_meta{metric, "ms", 1e3} : metric_meta{metric, "as written", 1};
}

json serving_accuracy_of(const std::string& path, const schema::serving_accuracy_document& a) {
  json runs = json::array();
  std::vector<std::string> order;
  for (const auto& [key, m] : accuracy_metrics()) order.push_back(key);
  for (const auto& r : a.runs) {
    runs.push_back({{"label", base_name(r.file) + ": " + r.level},
                    {"file", r.file},
                    {"level", r.level},
                    {"gpu", r.gpu},
                    {"workload", r.workload},
                    {"window", r.window},
                    {"requests", r.requests},
                    {"simulated_requests", r.simulated_requests},
                    {"kv_blocks", r.kv_blocks}});
    for (const auto& [metric, e] : r.metrics) {
      if (std::find(order.begin(), order.end(), metric) == order.end()) order.push_back(metric);
    }
  }
  for (const auto& s : a.summary) {
    if (std::find(order.begin(), order.end(), s.metric) == order.end()) order.push_back(s.metric);
  }
  json metrics = json::array();
  for (const auto& metric : order) {
    json points = json::array();
    for (std::size_t i = 0; i < a.runs.size(); ++i) {
      const auto it = a.runs[i].metrics.find(metric);
      if (it == a.runs[i].metrics.end()) continue;
      points.push_back({{"run", static_cast<std::int64_t>(i)},
                        {"measured", it->second.measured},
                        {"predicted", it->second.predicted},
                        {"error", it->second.error}});
    }
    if (points.empty()) continue;  // a metric no run defines
    const auto meta = meta_of(metric);
    json m = {{"metric", metric},        {"label", meta.label}, {"unit", meta.unit},
              {"scale", meta.scale},     {"points", points},    {"bound", nullptr},
              {"median_error", nullptr}, {"met", nullptr},      {"runs", nullptr}};
    // The bound of the summary (the one judged); the config's bounds hold the same numbers.
    for (const auto& s : a.summary) {
      if (s.metric != metric) continue;
      m["bound"] = schema::nullable(s.bound);
      m["median_error"] = s.median_error;
      m["met"] = schema::nullable(s.met);
      m["runs"] = s.runs;
    }
    metrics.push_back(m);
  }
  json max_rate = nullptr;
  if (!a.max_rate.empty()) {
    json points = json::array();
    for (const auto& m : a.max_rate) {
      points.push_back({{"label", base_name(m.file)},
                        {"file", m.file},
                        {"slo", m.slo},
                        {"measured", m.measured_rate_per_second},
                        {"predicted", m.predicted_rate_per_second},
                        {"error", m.error},
                        {"capped", m.capped},
                        {"bound", schema::nullable(m.bound)},
                        {"met", schema::nullable(m.met)}});
    }
    max_rate = {{"bound", schema::nullable(a.max_rate_bound)}, {"points", points}};
  }
  return {{"title", "predicted against measured: " + base_name(path)},
          {"source", path},
          {"step_time_model", a.step_time_model},
          {"fit", a.fit},
          {"passed", a.passed},
          {"broken", a.broken},
          {"definitions", a.definitions},
          {"runs", runs},
          {"metrics", metrics},
          {"max_rate", max_rate}};
}

// Generic table of a typed document: rows flattened two levels ("a.b"), config as key/value pairs.
void flatten(const json& j, const std::string& prefix, json& out, int depth) {
  if (j.is_object() && depth < 2) {
    for (const auto& [k, v] : j.items())
      flatten(v, prefix.empty() ? k : prefix + "." + k, out, depth + 1);
    return;
  }
  if (j.is_array() || j.is_object()) {
    std::string text = j.dump();
    if (text.size() > 120) text = text.substr(0, 117) + "...";
    out[prefix] = text;
  } else {
    out[prefix] = j;
  }
}

json table_of(const std::string& path, const std::string& kind, const std::string& schema_id,
              const json& config_doc, const json& row_docs) {
  json columns = json::array();
  std::set<std::string> seen;
  json rows = json::array();
  for (const auto& r : row_docs) {
    json flat = json::object();
    flatten(r, "", flat, 0);
    for (const auto& [k, v] : flat.items()) {
      if (seen.insert(k).second) columns.push_back(k);
    }
    rows.push_back(flat);
  }
  json cells = json::array();
  for (const auto& r : rows) {
    json line = json::array();
    for (const auto& c : columns)
      line.push_back(r.contains(c.get<std::string>()) ? r[c.get<std::string>()] : json());
    cells.push_back(line);
  }
  json config = json::object();
  flatten(config_doc, "", config, 0);
  return {{"kind", kind},     {"title", kind + ": " + base_name(path)},
          {"source", path},   {"schema", schema_id},
          {"config", config}, {"columns", columns},
          {"rows", cells},    {"raw_rows", row_docs}};
}

json plan_table_of(const std::string& path, const schema::plan_document& p) {
  json rows = json::array();
  for (const auto& r : p.rows) rows.push_back(to_json(r));
  return table_of(path, "plan", schema::k_plan_schema, to_json(p.config), rows);
}

// A fingerprint: its rows as a table, and the top-1/top-2 margin of every row against its step.
std::pair<json, json> fingerprint_of(const std::string& path, const schema::fingerprint_document& f) {
  json rows = json::array(), pts = json::array();
  for (const auto& r : f.rows) {
    json row = {{"prompt", r.prompt},   {"step", r.step},
                {"token", r.token},     {"top_ids", r.top_ids},
                {"top_logprobs", r.top_logprobs}, {"margin", r.margin},
                {"logits_hash", r.logits_hash}};
    if (r.fed) row["fed"] = *r.fed;
    rows.push_back(row);
    pts.push_back({{"x", r.step}, {"y", r.margin}});
  }
  json plot = nullptr;
  if (!pts.empty()) {
    plot = {{"title", "divergence: " + base_name(path)},
            {"source", path},
            {"x", "step"},
            {"series", json::array({{{"label", "margin"}, {"points", pts}}})}};
  }
  return {table_of(path, "divergence", schema::k_diverge_schema, f.config.raw, rows), plot};
}

// `ridgeline diverge compare`: the per-prompt verdicts as a table, and each divergence as a point
// (step, A's top-1/top-2 margin where it happened).
std::pair<json, json> diverge_compare_of(const std::string& path,
                                         const schema::diverge_compare_document& d) {
  json rows = json::array();
  for (const auto& r : d.rows) {
    rows.push_back({{"prompt", r.prompt},
                    {"verdict", r.verdict},
                    {"divergence_step", schema::nullable(r.divergence_step)},
                    {"margin_at_divergence", schema::nullable(r.margin_at_divergence)},
                    {"margin_b_at_divergence", schema::nullable(r.margin_b_at_divergence)},
                    {"steps_compared", r.steps_compared},
                    {"token_mismatches", r.token_mismatches},
                    {"kl_mean", schema::nullable(r.kl_mean)},
                    {"kl_max", schema::nullable(r.kl_max)},
                    {"max_abs_delta_logprob", r.max_abs_delta_logprob},
                    {"same_top1_share", r.same_top1_share},
                    {"logits_equal_share", r.logits_equal_share}});
  }
  json pts = json::array();
  for (const auto& v : d.divergences) pts.push_back({{"x", v.step}, {"y", v.margin_a}});
  json plot = nullptr;
  if (!pts.empty()) {
    plot = {{"title", "divergence step against margin: " + base_name(path)},
            {"source", path},
            {"x", "step"},
            {"series",
             json::array({{{"label", "margin (log-prob) at divergence"}, {"points", pts}}})}};
  }
  return {table_of(path, "divergence", schema::k_diverge_compare_schema, d.config, rows), plot};
}

// Environment summary (the fields a reader checks first) plus the whole block.
json environment_of(const std::string& path, const std::string& schema_id,
                    const schema::environment& env) {
  const auto& g = env.gpu;
  json summary = {
      {"gpu", g ? g->name : "-"},
      {"driver", g && g->driver_version ? *g->driver_version : "-"},
      {"cuda", g ? g->cuda_runtime_version : "-"},
      {"sm_clock_mhz", g && g->sm_clock_mhz ? *g->sm_clock_mhz : 0},
      {"throttled", g && g->throttle_reasons && !g->throttle_reasons->empty()},
      {"host", env.hostname},
      {"git_sha", env.git_sha.substr(0, 12)},
      {"git_dirty", env.git_dirty},
      {"time_utc", env.time_utc}};
  return {{"source", path}, {"schema", schema_id}, {"summary", summary}, {"full", env.raw}};
}

}  // namespace

const std::vector<std::string>& known_schemas() {
  static const std::vector<std::string> k = {
      schema::k_gpu_profile_schema, schema::k_sweep_schema,   schema::k_serving_results_schema,
      schema::k_plan_schema,        schema::k_diverge_schema, schema::k_diverge_compare_schema,
      schema::k_roofline_schema,    schema::k_serving_accuracy_schema};
  return k;
}

input_file load_input(const std::string& path) {
  input_file f{path, {}};
  const std::string text = read_text_file(path);
  try {
    f.doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(path + ": not valid JSON (" + e.what() + ")");
  }
  const std::string id = schema::schema_of(f.doc);
  const auto& k = known_schemas();
  if (std::find(k.begin(), k.end(), id) == k.end()) {
    std::string list;
    for (const auto& s : k) list += (list.empty() ? "" : ", ") + s;
    throw std::invalid_argument(
        path + ": " +
        (id.empty() ? std::string("no \"schema\" field") : "unknown schema '" + id + "'") +
        " (report reads " + list + ")");
  }
  return f;
}

json build_report_data(const std::vector<input_file>& inputs, const report_options& o) {
  if (inputs.empty()) throw std::invalid_argument("report: no result files given");
  json roofline = json::array(), working_set = json::array(), sweeps = json::array(),
       kv = json::array(), serving = json::array(), serving_latency = json::array(),
       find_max = json::array(), serving_accuracy = json::array(), plans = json::array(),
       divergence = json::array(),
       divergence_plots = json::array(), environments = json::array(), sources = json::array();
  double slo = o.slo_tpot_seconds;
  std::string slo_source = "--slo-tpot-ms";
  // Find-max searches (their SLO, by index into find_max) and the plain --rate load runs that may
  // confirm them, joined after every file is read.
  std::vector<std::optional<schema::load_slo_spec>> find_max_slo;
  struct rate_run {
    std::string path;
    schema::serving_results k;
    schema::load_results l;
  };
  std::vector<rate_run> rate_runs;
  for (const auto& f : inputs) {
    const std::string id = schema::schema_of(f.doc);
    sources.push_back({{"path", f.path}, {"schema", id}});
    if (id == schema::k_gpu_profile_schema) {
      const auto p = schema::parse_gpu_profile(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, p.env));
      roofline.push_back(roofline_of(f.path, p));
      json ws = working_set_of(f.path, p);
      if (!ws["series"].empty()) working_set.push_back(ws);
    } else if (id == schema::k_roofline_schema) {
      const auto r = schema::parse_roofline(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, r.env));
      roofline.push_back(roofline_doc_of(f.path, r));
    } else if (id == schema::k_sweep_schema) {
      const auto s = schema::parse_sweep(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, s.env));
      sweeps.push_back(sweep_of(f.path, s));
    } else if (id == schema::k_serving_results_schema) {
      auto k = schema::parse_serving_results(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, k.env));
      std::optional<schema::load_results> l;
      if (schema::is_load_result(f.doc)) l = schema::parse_load_results(f.doc, f.path);
      // A load's rows are levels, not KV capacities: its latencies go to the comparison below.
      if (!l) kv.push_back(kv_of(f.path, k));
      json measured = serving_of(f.path, k);
      if (!measured.is_null()) serving.push_back(std::move(measured));
      serving_latency_of(f.path, k, serving_latency);
      if (l && l->find_max) {
        find_max.push_back(find_max_of(f.path, k, *l));
        find_max_slo.push_back(l->slo);
      } else if (l) {
        rate_runs.push_back({f.path, std::move(k), std::move(*l)});
      }
    } else if (id == schema::k_serving_accuracy_schema) {
      const auto a = schema::parse_serving_accuracy(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, a.env));
      serving_accuracy.push_back(serving_accuracy_of(f.path, a));
    } else if (id == schema::k_plan_schema) {
      const auto p = schema::parse_plan(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, p.env));
      plans.push_back(plan_table_of(f.path, p));
      // The plan's own TPOT SLO replaces --slo-tpot-ms (the last plan given wins).
      slo = p.config.slo.tpot_seconds;
      slo_source = f.path;
    } else if (id == schema::k_diverge_compare_schema) {
      const auto d = schema::parse_diverge_compare(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, d.env));
      auto [table, plot] = diverge_compare_of(f.path, d);
      divergence.push_back(table);
      if (!plot.is_null()) divergence_plots.push_back(plot);
    } else if (id == schema::k_diverge_schema) {
      const auto d = schema::parse_fingerprint(f.doc, f.path);
      environments.push_back(environment_of(f.path, id, d.env));
      auto [table, plot] = fingerprint_of(f.path, d);
      divergence.push_back(table);
      if (!plot.is_null()) divergence_plots.push_back(plot);
    } else {
      throw std::invalid_argument(f.path + ": the report does not read schema '" + id + "'");
    }
  }
  // Plain --rate levels confirm every find-max search given with them, judged against its SLO.
  for (std::size_t i = 0; i < find_max.size(); ++i) {
    if (!find_max_slo[i]) continue;
    for (const auto& run : rate_runs) {
      for (std::size_t j = 0; j < run.l.levels.size(); ++j) {
        const auto& lv = run.l.levels[j];
        if (lv.shape != "rate" || !lv.rate_per_second) continue;
        find_max[i]["confirmations"].push_back(
            confirmation_of(run.path, lv, run.k.rows[j], *find_max_slo[i]));
      }
    }
  }
  // Engine steps join the roofline of the GPU they ran on; without a profile of that GPU, the
  // first roofline; without any profile, a roofline from the sweep's own ceilings.
  for (const auto& s : sweeps) {
    if (s["engine_points"].empty()) continue;
    json* target = nullptr;
    for (auto& r : roofline) {
      if (r["gpu"] == s["gpu"]) target = &r;
    }
    if (target == nullptr && !roofline.empty()) target = &roofline[0];
    if (target == nullptr && s["floor_bytes_per_second"].get<double>() > 0) {
      json compute = json::array();
      if (s["peak_flops_per_second"].get<double>() > 0) {
        const double peak = s["peak_flops_per_second"], bw = s["floor_bytes_per_second"];
        compute.push_back({{"dtype", "bf16"},
                           {"flops_per_second", peak},
                           {"datasheet_flops_per_second", 0},
                           {"ridge_flops_per_byte", peak / bw}});
      }
      roofline.push_back(
          {{"title", s["gpu"].get<std::string>() + " (ceilings from the sweep's config)"},
           {"gpu", s["gpu"]},
           {"source", s["source"]},
           {"profile_source", "sweep config"},
           // The sweep's read ceiling, labelled as it names it; a datasheet stand-in is not
           // marked measured.
           {"memory_roofs",
            json::array({{{"label", s["floor_ceiling"] == "read"
                                        ? "HBM " + s["floor_source"].get<std::string>()
                                        : "floor bandwidth (" +
                                              s["floor_source"].get<std::string>() + ")"},
                          {"bytes_per_second", s["floor_bytes_per_second"]},
                          {"measured", s["floor_source"].get<std::string>().rfind("measured", 0) ==
                                           0}}})},
           {"compute_roofs", compute},
           {"points", json::array()}});
      target = &roofline.back();
    }
    if (target == nullptr) continue;
    for (const auto& p : s["engine_points"]) (*target)["points"].push_back(p);
  }
  const auto& b = current_build();
  return {{"schema", "ridgeline.report_data/v1"},
          {"title", o.title},
          {"generated_utc", metrics::utc_now_iso8601()},
          {"ridgeline", {{"version", b.version}, {"git_sha", b.git_sha}}},
          {"slo_tpot_seconds", slo},
          {"slo_source", slo_source},
          {"sources", sources},
          {"roofline", roofline},
          {"working_set", working_set},
          {"sweeps", sweeps},
          {"kv", kv},
          {"serving", serving},
          {"serving_latency", serving_latency},
          {"find_max", find_max},
          {"serving_accuracy", serving_accuracy},
          {"plans", plans},
          {"divergence", divergence},
          {"divergence_plots", divergence_plots},
          {"environments", environments}};
}

std::string load_chart_js(const std::string& path) {
  std::string p = path;
  if (p.empty()) {
    const char* env = std::getenv("RIDGELINE_CHART_JS");
    p = env != nullptr && *env != '\0' ? env : k_chart_js_path;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) {
    throw io_error("report: chart library not found at " + p + " (install Debian's " +
                   k_chart_js_package + ": apt-get install " + k_chart_js_package +
                   ", or run scripts/setup.sh)");
  }
  std::string js = read_text_file(p);
  if (js.find("Chart") == std::string::npos) {
    throw io_error("report: " + p + " does not look like Chart.js (from " + k_chart_js_package +
                   ")");
  }
  return js;
}

std::string escape_for_script(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  for (std::size_t i = 0; i < text.size(); ++i) {
    out += text[i];
    if (text[i] == '<' && i + 1 < text.size() && text[i + 1] == '/') out += '\\';
  }
  return out;
}

std::string render_html(const json& data, std::string_view chart_js) {
  const std::string_view tpl = html_template();
  // Placeholders in the order they appear; each is replaced once, so text inserted for one is
  // never searched for the next.
  const std::vector<std::pair<std::string, std::string>> parts = {
      {"{{TITLE}}",
       [&] {
         std::string t = data.value("title", "ridgeline report"), out;
         for (char c : t) {
           if (c == '<')
             out += "&lt;";
           else if (c == '>')
             out += "&gt;";
           else if (c == '&')
             out += "&amp;";
           else
             out += c;
         }
         return out;
       }()},
      {"{{CHART_JS}}", escape_for_script(chart_js)},
      {"{{DATA}}", escape_for_script(data.dump())},
  };
  std::string out;
  out.reserve(tpl.size() + chart_js.size() + 1024);
  std::size_t pos = 0;
  for (const auto& [key, value] : parts) {
    const std::size_t at = tpl.find(key, pos);
    if (at == std::string_view::npos) {
      throw std::logic_error("report template lacks the placeholder " + key);
    }
    out.append(tpl.substr(pos, at - pos));
    out += value;
    pos = at + key.size();
  }
  out.append(tpl.substr(pos));
  return out;
}

}  // namespace ridgeline::report
