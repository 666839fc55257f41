// `ridgeline plan accuracy --serving` (see serving_accuracy.hpp): measured serving runs rebuilt
// and simulated, their metrics compared, the medians judged against the bounds.
#include "ridgeline/plan/serving_accuracy.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/perfmodel/ceilings.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"
#include "ridgeline/plan/capacity.hpp"
#include "ridgeline/plan/plan.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::planner {

using nlohmann::json;
namespace fs = std::filesystem;

const std::vector<std::string>& serving_metric_names() {
  static const std::vector<std::string> names = {
      "ttft_p50", "ttft_p90", "ttft_p99", "tpot_mean",
      "tpot_p90", "e2e_p50",  "e2e_p90",  "output_tokens_per_second"};
  return names;
}

std::map<std::string, double> default_serving_bounds() {
  return {{"tpot_mean", 0.05}, {"e2e_p50", 0.05}, {"e2e_p90", 0.05},
          {"ttft_p50", 0.10},  {"ttft_p90", 0.10}};
}

std::map<std::string, double> parse_serving_bounds(const std::string& text) {
  std::map<std::string, double> out = default_serving_bounds();
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const auto& names = serving_metric_names();
    if (eq == std::string::npos || std::find(names.begin(), names.end(), key) == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw std::invalid_argument("--bounds: '" + item + "' is not METRIC=BOUND (5%, 0.05 or "
                                  "none) with METRIC one of " + known);
    }
    std::string v = item.substr(eq + 1);
    if (v == "none") {
      out.erase(key);
      continue;
    }
    const bool percent = !v.empty() && v.back() == '%';
    if (percent) v.pop_back();
    double x = -1;
    try {
      std::size_t used = 0;
      x = std::stod(v, &used);
      if (used != v.size()) x = -1;
    } catch (const std::exception&) {
      x = -1;
    }
    if (percent) x /= 100;
    if (!(x >= 0) || !std::isfinite(x))
      throw std::invalid_argument("--bounds: '" + item + "': the bound must be a non-negative "
                                  "share (5% or 0.05) or none");
    out[key] = x;
  }
  return out;
}

double relative_error(double predicted, double measured) {
  if (!std::isfinite(predicted) || !std::isfinite(measured) || !(measured > 0))
    throw std::invalid_argument("relative error of " + format("%g", predicted) + " against " +
                                format("%g", measured) + ": needs finite values and measured > 0");
  return std::abs(predicted - measured) / measured;
}

double median_error(std::vector<double> errors) {
  if (errors.empty()) throw std::invalid_argument("median of no errors");
  return bench::quantile(errors, 0.5);
}

namespace {

// The metric values of a row's (or a simulation's) distributions; absent when undefined.
std::map<std::string, double> metric_values(const schema::serving_row& r) {
  std::map<std::string, double> v;
  if (const auto& q = r.ttft_seconds.quantiles) {
    v["ttft_p50"] = q->p50;
    v["ttft_p90"] = q->p90;
    v["ttft_p99"] = q->p99;
  }
  if (const auto& q = r.tpot_seconds.quantiles) {
    v["tpot_mean"] = q->mean;
    v["tpot_p90"] = q->p90;
  }
  if (const auto& q = r.e2e_seconds.quantiles) {
    v["e2e_p50"] = q->p50;
    v["e2e_p90"] = q->p90;
  }
  v["output_tokens_per_second"] = r.output_tokens_per_second;
  return v;
}

// The simulation's metrics, defined as replay and kv define them (docs/serving.md): latencies
// over finished requests, output tokens/s = (decode tokens + first tokens) / last event time.
std::map<std::string, double> simulated_values(const simulation_result& r) {
  std::vector<double> ttft, tpot, e2e;
  for (const auto& q : r.requests) {
    if (q.outcome != request_outcome::finished) continue;
    ttft.push_back(q.ttft_seconds());
    e2e.push_back(q.e2e_seconds());
    if (q.has_tpot()) tpot.push_back(q.tpot_seconds());
  }
  schema::serving_row row;
  row.ttft_seconds = schema::distribution_of(std::move(ttft));
  row.tpot_seconds = schema::distribution_of(std::move(tpot));
  row.e2e_seconds = schema::distribution_of(std::move(e2e));
  row.output_tokens_per_second =
      r.simulated_seconds > 0
          ? static_cast<double>(r.decode_tokens + r.finished) / r.simulated_seconds
          : 0.0;
  return metric_values(row);
}

// A trace path as the document names it, else under --trace-dir (the path as written when it is
// relative, then its file name). io_error naming every place tried.
fs::path find_trace(const std::string& written, const std::string& trace_dir,
                    const std::string& source) {
  const fs::path p(written);
  std::vector<fs::path> tried = {p};
  if (!trace_dir.empty()) {
    if (p.is_relative()) tried.push_back(fs::path(trace_dir) / p);
    tried.push_back(fs::path(trace_dir) / p.filename());
  }
  for (const auto& t : tried) {
    std::error_code ec;
    if (fs::is_regular_file(t, ec)) return t;
  }
  std::string where;
  for (const auto& t : tried) where += (where.empty() ? "" : ", ") + t.string();
  throw io_error(source + ": config.workload: trace not found (tried " + where + ")" +
                 (trace_dir.empty() ? "; pass --trace-dir DIR to look for it there" : ""));
}

workload whole_workload(const schema::serving_config& c, const std::string& source,
                        const std::string& trace_dir) {
  const std::string gen = "generator:";
  if (c.workload.rfind(gen, 0) == 0)
    return generate_workload(parse_generator_spec(c.workload.substr(gen.size())));
  if (c.workload.empty())
    throw std::invalid_argument(source + ": config.workload is empty: no trace or generator");
  return load_trace(find_trace(c.workload, trace_dir, source),
                    static_cast<std::int32_t>(c.mooncake_block_tokens));
}

// The window of a replay written before config.window existed, from its measured request ids
// and scheduled arrivals: a first turn's arrival on the run's clock is (trace arrival - start) /
// rate scale; two first turns give start and scale, every other one must agree.
workload window_from_ids(const workload& all, const schema::serving_requests& rq,
                         const std::string& source, std::string& how) {
  std::unordered_map<std::uint64_t, std::size_t> index;
  for (std::size_t i = 0; i < all.requests.size(); ++i) index.emplace(all.requests[i].id, i);
  const std::string missing =
      source + ": config.window is missing (written before replays recorded it) and ";
  std::vector<std::pair<std::size_t, double>> firsts;  // (index in `all`, measured arrival)
  for (std::size_t k = 0; k < rq.id.size(); ++k) {
    const auto it = index.find(static_cast<std::uint64_t>(rq.id[k]));
    if (it == index.end())
      throw std::invalid_argument(missing + "measured request id " + std::to_string(rq.id[k]) +
                                  " is not in " + all.source);
    if (!all.requests[it->second].follow_up) firsts.emplace_back(it->second, rq.arrival_seconds[k]);
  }
  std::stable_sort(firsts.begin(), firsts.end(), [&all](const auto& a, const auto& b) {
    return all.requests[a.first].arrival_seconds < all.requests[b.first].arrival_seconds;
  });
  if (firsts.size() < 2 || !(all.requests[firsts.back().first].arrival_seconds >
                             all.requests[firsts.front().first].arrival_seconds))
    throw std::invalid_argument(missing + "its arrivals span no time: the rate scale cannot be "
                                "recovered");
  const double a0 = all.requests[firsts.front().first].arrival_seconds;
  const double a1 = all.requests[firsts.back().first].arrival_seconds;
  const double m0 = firsts.front().second, m1 = firsts.back().second;
  if (!(m1 > m0))
    throw std::invalid_argument(missing + "its measured arrivals do not follow the trace's order");
  const double scale = (a1 - a0) / (m1 - m0);
  const double start = a0 - m0 * scale;
  for (const auto& [i, m] : firsts) {
    const double expect = (all.requests[i].arrival_seconds - start) / scale;
    if (std::abs(expect - m) > 1e-6 + 1e-6 * std::abs(m))
      throw std::invalid_argument(
          missing + "request " + std::to_string(all.requests[i].id) + " arrived at " +
          format("%.9g", m) + " s, not at the trace's arrival under one start and rate scale (" +
          format("%.9g", expect) + " s)");
  }
  // A window holds every first turn between its first and last arrival.
  std::int64_t between = 0;
  for (const auto& r : all.requests)
    if (!r.follow_up && r.arrival_seconds >= a0 && r.arrival_seconds <= a1) ++between;
  if (between != std::ssize(firsts))
    throw std::invalid_argument(missing + "its " + std::to_string(firsts.size()) +
                                " first turns are not a contiguous window of " + all.source +
                                " (" + std::to_string(between) + " arrive in that span)");
  std::vector<std::int64_t> new_index(all.requests.size(), -1);
  std::vector<std::size_t> kept;
  for (const auto& f : firsts) {
    for (auto i = static_cast<std::int64_t>(f.first); i >= 0;
         i = all.requests[static_cast<std::size_t>(i)].next_turn) {
      new_index[static_cast<std::size_t>(i)] = std::ssize(kept);
      kept.push_back(static_cast<std::size_t>(i));
    }
  }
  workload w;
  w.source = all.source;
  for (std::size_t i : kept) {
    workload_request r = all.requests[i];
    if (!r.follow_up) r.arrival_seconds = (r.arrival_seconds - start) / scale;
    r.think_seconds /= scale;
    if (r.next_turn >= 0) r.next_turn = new_index[static_cast<std::size_t>(r.next_turn)];
    w.requests.push_back(std::move(r));
  }
  how = "derived from the measured request ids and arrivals (start " + format("%.3f", start) +
        " s, rate scale " + format("%.6g", scale) + "; config.window absent)";
  return w;
}

// The level of a load row: its shape and Poisson rate (rows[i].measured.http).
struct load_level {
  std::string shape;
  std::optional<double> rate;
};
load_level level_of(const json& raw, std::size_t row, const std::string& source) {
  const schema::document_context ctx{source, schema::k_serving_results_schema};
  const schema::node top = schema::open_document(raw, ctx);
  const auto rows = top.array("rows").elements();
  const schema::node h = rows.at(row).object("measured").object("http");
  return {h.string("shape"), h.nullable_number("rate_per_second")};
}

}  // namespace

rebuilt_run rebuild_run(const json& raw, const schema::serving_results& doc, std::size_t row,
                        const std::string& source, const serving_accuracy_options& o) {
  const schema::serving_config& c = doc.config;
  const schema::serving_row& r = doc.rows.at(row);
  if (!r.measured)
    throw std::invalid_argument(source + ": rows[" + std::to_string(row) +
                                "].measured is missing: not a measured run");
  const bool http = c.executor && *c.executor == "http";
  rebuilt_run out;
  // Model, GPU, pool: the document's, or for a load over HTTP (which cannot see them) the flags.
  const std::string model = http && !o.model.empty() ? o.model : c.model;
  try {
    out.model = &model_preset_by_name(model);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument(source + ": config.model '" + model + "' is not a model preset" +
                                (http ? " (a load names the server's model): pass --model" : ""));
  }
  const std::string gpu = o.gpu.empty() ? c.gpu : o.gpu;
  if (gpu.empty())
    throw std::invalid_argument(source + ": config.gpu is empty (a load over HTTP cannot see the "
                                "server's GPU): pass --gpu");
  out.gpu = resolve_gpu(gpu);
  std::int64_t blocks = r.capacity_blocks;
  if (http) {
    if (o.kv_blocks <= 0)
      throw std::invalid_argument(source + ": rows[" + std::to_string(row) +
                                  "].capacity_blocks is unknown for a load over HTTP: pass "
                                  "--kv-blocks (the server's KV pool in blocks)");
    blocks = o.kv_blocks;
  }
  if (blocks < 1 || blocks > (1LL << 30))
    throw std::invalid_argument(source + ": rows[" + std::to_string(row) + "].capacity_blocks " +
                                std::to_string(blocks) + " is not a KV pool size");

  // The window.
  const workload all = whole_workload(c, source, o.trace_dir);
  const auto& rq = r.measured->requests;
  if (c.window) {
    const auto& win = *c.window;
    out.requests = window_of(all, win.start_seconds, win.duration_seconds, win.requests);
    out.window = "config.window (start " + format("%g", win.start_seconds) + " s, duration " +
                 format("%g", win.duration_seconds) + " s, requests " +
                 std::to_string(win.requests) + ", rate scale " + format("%g", win.rate_scale) +
                 ")";
    const load_level level = http ? level_of(raw, row, source) : load_level{"trace", {}};
    if (level.shape == "trace") {
      for (auto& q : out.requests.requests) {
        if (!q.follow_up) q.arrival_seconds /= win.rate_scale;
        if (!http) q.think_seconds /= win.rate_scale;  // replay scales think times, load not
      }
    } else if (level.shape == "rate") {
      if (!win.seed)
        throw std::invalid_argument(source + ": config.window.seed is null: a --rate level's "
                                    "Poisson arrivals cannot be rebuilt");
      if (!level.rate || !(*level.rate > 0))
        throw std::invalid_argument(source + ": rows[" + std::to_string(row) +
                                    "].measured.http.rate_per_second is missing");
      // load's schedule: unit-rate exponential gaps from the seed, divided by the rate, in the
      // window's first-turn order (tools/load/src/load.cpp, run_level).
      std::mt19937_64 rng(static_cast<std::uint64_t>(*win.seed));
      std::exponential_distribution<double> gap(1.0);
      double t = 0;
      for (auto& q : out.requests.requests) {
        if (q.follow_up) continue;
        q.arrival_seconds = t / *level.rate;
        t += gap(rng);
      }
      out.window += ", Poisson " + format("%g", *level.rate) + "/s seed " +
                    std::to_string(*win.seed);
    } else {
      throw std::invalid_argument(source + ": rows[" + std::to_string(row) + "] is a '" +
                                  level.shape + "' level: closed-loop load is not simulated "
                                  "(the simulator replays open-loop arrivals)");
    }
  } else if (http) {
    throw std::invalid_argument(source + ": config.window is missing (a load written before it "
                                "was recorded): its window and Poisson seed cannot be rebuilt");
  } else {
    out.requests = window_from_ids(all, rq, source, out.window);
  }
  out.requests.source = all.source;

  // The same requests as measured, by id.
  std::multiset<std::uint64_t> want, got;
  for (auto id : rq.id) want.insert(static_cast<std::uint64_t>(id));
  for (const auto& q : out.requests.requests) got.insert(q.id);
  if (want != got)
    throw std::invalid_argument(source + ": the window rebuilt from " + out.window + " holds " +
                                std::to_string(got.size()) + " requests, not the " +
                                std::to_string(want.size()) + " the run measured (ids differ)");

  // Pool and scheduler of the run.
  const dtype kv_dtype = http ? dtype::bf16 : parse_dtype(c.kv_dtype);
  out.kv_dtype = kv_dtype;
  const auto block_tokens = static_cast<std::int32_t>(http ? 16 : c.block_tokens);
  simulation_config& sc = out.config;
  sc.kv = make_kv_cache_config(*out.model, kv_dtype, block_tokens,
                               static_cast<std::int32_t>(blocks));
  if (!http) {
    sc.kv.pcie_bytes_per_second = c.pcie_bytes_per_second;
    if (c.host_memory_bytes > 0)
      sc.kv.host_blocks = static_cast<std::int32_t>(
          std::min<std::int64_t>(c.host_memory_bytes / sc.kv.bytes_per_block, 1LL << 30));
    sc.scheduler.max_running = static_cast<std::int32_t>(c.max_running);
    sc.scheduler.max_batched_tokens = c.max_batched_tokens;
    sc.scheduler.chunked_prefill = c.chunked_prefill;
    sc.scheduler.max_model_len = c.max_model_len;
  } else {
    // The server's limits are not in a load's document: `ridgeline serve`'s defaults, said so.
    sc.scheduler.max_model_len = out.model->max_context;
    out.window += "; scheduler and block size assumed: serve's defaults (" +
                  std::to_string(sc.scheduler.max_running) + " running, " +
                  std::to_string(sc.scheduler.max_batched_tokens) + " tokens per step, blocks of " +
                  std::to_string(block_tokens) + ")";
  }
  // The loop's overlap: a replay that planned steps ahead shows it in its step record (a step
  // planned, start_seconds, before the previous one ended); a server is taken to run serve's
  // default, overlap on (a load cannot see it).
  if (http) {
    sc.overlap = true;
    out.window += "; overlap assumed on (serve's default)";
  } else {
    const auto& st = r.measured->steps;
    for (std::size_t k = 1;
         k < st.start_seconds.size() && k < st.gpu_seconds.size() && k < st.host_seconds.size();
         ++k) {
      const double previous_end =
          st.start_seconds[k - 1] + st.gpu_seconds[k - 1] + st.host_seconds[k - 1];
      if (st.start_seconds[k] < previous_end - 1e-6) {
        sc.overlap = true;
        break;
      }
    }
    out.window += sc.overlap ? "; overlap on (steps planned ahead in the step record)"
                             : "; overlap off (no step planned ahead in the step record)";
  }
  validate(sc.scheduler);
  return out;
}

namespace {

fitted_step_time_model step_model_for(const rebuilt_run& b, const serving_accuracy_options& o,
                                      const fitted_parameters* override_fit = nullptr) {
  const fitted_parameters fp =
      override_fit ? *override_fit : (o.fit ? *o.fit : parameters_for(b.gpu.profile));
  model_options mo;
  mo.kv_dtype = b.kv_dtype;
  mo.block_tokens = b.config.kv.block_tokens;
  mo.pcie_bytes_per_second = b.config.kv.pcie_bytes_per_second;
  return fitted_step_time_model(*b.model, ceilings_of(b.gpu.profile, dtype::bf16, measured_profiles()),
                                fp, mo);
}

std::string metric_label(const std::string& m) {
  static const std::map<std::string, std::string> labels = {
      {"ttft_p50", "TTFT p50"},  {"ttft_p90", "TTFT p90"}, {"ttft_p99", "TTFT p99"},
      {"tpot_mean", "TPOT mean"}, {"tpot_p90", "TPOT p90"}, {"e2e_p50", "E2E p50"},
      {"e2e_p90", "E2E p90"},    {"output_tokens_per_second", "output tok/s"}};
  const auto it = labels.find(m);
  return it == labels.end() ? m : it->second;
}

std::string metric_value_text(const std::string& m, double v) {
  if (m == "output_tokens_per_second") return format("%.1f", v);
  if (m.rfind("e2e", 0) == 0) return format("%.3f s", v);
  return format("%.2f ms", v * 1e3);
}

schema::max_rate_accuracy check_max_rate(const std::string& path,
                                         const serving_accuracy_options& o) {
  const json raw = schema::read_json(path, schema::k_serving_results_schema);
  const schema::serving_results doc = schema::parse_serving_results(raw, path);
  if (!doc.config.executor || *doc.config.executor != "http")
    throw std::invalid_argument(path + ": config.executor is not \"http\": not a `ridgeline load` "
                                "result");
  const schema::document_context ctx{path, schema::k_serving_results_schema};
  const schema::node top = schema::open_document(raw, ctx);
  const schema::node ld = top.object("load");
  const auto fm = ld.nullable_object("find_max");
  if (!fm) throw std::invalid_argument(path + ": load.find_max is null: not a --find-max run");
  const auto measured = fm->nullable_number("max_rate_per_second");
  if (!measured)
    throw std::invalid_argument(path + ": load.find_max.max_rate_per_second is null: no rate met "
                                "the SLO, so there is no max rate to compare");
  const auto slo_text = ld.nullable_string("slo");
  if (!slo_text) throw std::invalid_argument(path + ": load.slo is null");
  slo s;
  try {
    s = parse_slo(*slo_text);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": load.slo '" + *slo_text + "': " + e.what());
  }
  if (doc.rows.empty()) throw std::invalid_argument(path + ": rows is empty");
  // The same requests (lengths, prefixes) at unit-rate Poisson arrivals from the load's seed:
  // plan's search rescales them, which is the load's schedule at each rate up to the factor
  // `native` (the realised rate of the unit schedule).
  std::size_t row = 0;
  for (; row < doc.rows.size(); ++row)
    if (level_of(raw, row, path).shape == "rate") break;
  if (row == doc.rows.size())
    throw std::invalid_argument(path + ": no --rate level in rows: not a --find-max run");
  rebuilt_run b = rebuild_run(raw, doc, row, path, o);
  const double level_rate = *level_of(raw, row, path).rate;
  for (auto& q : b.requests.requests)
    if (!q.follow_up) q.arrival_seconds *= level_rate;  // back to unit rate
  const double native = arrival_rate(b.requests);
  const fitted_step_time_model model = step_model_for(b, o);
  // plan's cap: no steady state serves more than decode tokens/s of the largest batch that fits
  // (at mean prompt + output) over mean output tokens; a workload too short to queue stops there.
  const double n = static_cast<double>(std::max<std::size_t>(b.requests.requests.size(), 1));
  const double mean_prompt = static_cast<double>(b.requests.total_prompt_tokens()) / n;
  const double mean_output = static_cast<double>(b.requests.total_output_tokens()) / n;
  const auto per_sequence = static_cast<std::int64_t>(
      std::ceil((mean_prompt + mean_output) / b.config.kv.block_tokens));
  const std::int64_t batch = std::max<std::int64_t>(
      1, std::min<std::int64_t>(b.config.scheduler.max_running,
                                b.config.kv.num_blocks / std::max<std::int64_t>(per_sequence, 1)));
  const auto context = static_cast<std::int64_t>(std::llround(mean_prompt + mean_output / 2));
  const double cap = static_cast<double>(batch) /
                     model.step_seconds(decode_shape(batch, context)) / mean_output;
  const rate_result rr =
      max_rate(b.requests, b.config, model, s, std::min(*measured, cap) * native, cap * native);
  schema::max_rate_accuracy m;
  m.file = path;
  m.slo = s.text();
  m.measured_rate_per_second = *measured;
  m.predicted_rate_per_second = rr.feasible ? rr.best.rate / native : 0.0;
  m.error = relative_error(m.predicted_rate_per_second, m.measured_rate_per_second);
  m.capped = rr.capped;
  m.bound = o.max_rate_bound;
  return m;
}

}  // namespace

void judge(schema::serving_accuracy_document& d) {
  d.summary.clear();
  d.broken.clear();
  // Metric bounds judge runs; a call with only --find-max documents has none to judge.
  for (const auto& name : d.runs.empty() ? std::vector<std::string>{} : serving_metric_names()) {
    std::vector<double> errors;
    for (const auto& r : d.runs) {
      const auto it = r.metrics.find(name);
      if (it != r.metrics.end()) errors.push_back(it->second.error);
    }
    schema::serving_accuracy_summary s;
    s.metric = name;
    s.runs = std::ssize(errors);
    const auto b = d.bounds.find(name);
    if (b != d.bounds.end()) s.bound = b->second;
    if (errors.empty()) {
      if (s.bound) {
        s.met = false;
        d.broken.push_back(metric_label(name) + ": no run defines it, bound " +
                           format_percent(*s.bound) + " unchecked");
      }
      d.summary.push_back(s);
      continue;
    }
    s.median_error = median_error(errors);
    if (s.bound) {
      s.met = s.median_error <= *s.bound;
      if (!*s.met)
        d.broken.push_back(metric_label(name) + ": median error " +
                           format_percent(s.median_error) + " over " +
                           std::to_string(errors.size()) + " runs > bound " +
                           format_percent(*s.bound));
    }
    d.summary.push_back(s);
  }
  for (auto& m : d.max_rate) {
    if (!m.bound) continue;
    m.met = m.error <= *m.bound;
    if (!*m.met)
      d.broken.push_back("max rate of " + m.file + ": error " + format_percent(m.error) +
                         " > bound " + format_percent(*m.bound));
  }
  d.passed = d.broken.empty();
}

schema::serving_accuracy_document serving_accuracy(const serving_accuracy_options& o) {
  if (o.runs.empty() && o.find_max.empty())
    throw std::invalid_argument("plan accuracy --serving: no run given");
  schema::serving_accuracy_document d;
  d.env = schema::environment_from_block(metrics::environment_block(std::nullopt));
  d.fit = o.fit ? o.fit_label + " (" + o.fit->source + ")" : "embedded fit of each run's GPU";
  // The runs the fit was fitted on, for --leave-one-out.
  std::vector<std::string> fitted_runs;
  if (o.leave_one_out) {
    if (!o.fit)
      throw std::invalid_argument(
          "plan accuracy --leave-one-out: needs --fit FIT.json of serving "
          "runs (ridgeline plan fit --serving)");
    if (o.fit->stats.contains("serving") && o.fit->stats["serving"].is_array())
      for (const auto& v : o.fit->stats["serving"])
        if (v.is_string()) fitted_runs.push_back(v.get<std::string>());
    if (fitted_runs.empty())
      throw std::invalid_argument("plan accuracy --leave-one-out: " + o.fit_label +
                                  " was fitted on no serving run (stats.serving)");
    d.fit = "leave one run out of " + o.fit_label + " (" + o.fit->source +
            "): each run it was fitted on is predicted by the fit of the same inputs without that "
            "run; any other run by " +
            o.fit_label + " itself";
  }
  auto fitted_on = [&](const std::string& path) {
    for (const auto& r : fitted_runs)
      if (fs::path(r).lexically_normal() == fs::path(path).lexically_normal()) return true;
    return false;
  };
  d.bounds = o.bounds;
  d.max_rate_bound = o.max_rate_bound;
  d.definitions = {
      {"error", "|predicted - measured| / measured, per run and metric"},
      {"median_error", "median over the runs of error (core's quantile 0.5)"},
      {"predicted", "the simulator (the engine's scheduler and KV cache manager, the fitted "
                    "step-time model) over the same window, arrivals, KV pool and scheduler "
                    "limits as the measured run"},
      {"ttft", "TTFT = first output token time - arrival, finished requests"},
      {"tpot", "TPOT = (E2E - TTFT) / (output_tokens - 1), finished requests with > 1 token"},
      {"e2e", "E2E = last token time - arrival, finished requests"},
      {"output_tokens_per_second",
       "output tokens / run time (replay and simulation: decode tokens + first tokens over the "
       "time from the window's start to the last event; load: as load defines it)"},
      {"max_rate", "highest Poisson rate meeting the load's SLO: measured by load --find-max, "
                   "predicted by plan's rate search (bisection to 1%) on the same requests"}};
  for (const auto& path : o.runs) {
    const json raw = schema::read_json(path, schema::k_serving_results_schema);
    const schema::serving_results doc = schema::parse_serving_results(raw, path);
    bool any = false;
    for (std::size_t i = 0; i < doc.rows.size(); ++i) {
      const schema::serving_row& r = doc.rows[i];
      if (!r.measured) continue;
      if (doc.config.executor && *doc.config.executor == "http" &&
          level_of(raw, i, path).shape == "concurrency") {
        if (o.progress) o.progress(path + ": " + r.capacity + ": closed-loop level, not simulated");
        continue;
      }
      any = true;
      const rebuilt_run b = rebuild_run(raw, doc, i, path, o);
      std::optional<fitted_parameters> held_out;
      if (o.leave_one_out && fitted_on(path)) {
        if (o.progress) o.progress(path + ": refitting without it");
        held_out = refit_without(*o.fit, path, b.gpu.profile);
      }
      const fitted_step_time_model model = step_model_for(b, o, held_out ? &*held_out : nullptr);
      if (o.progress)
        o.progress(path + ": " + std::to_string(b.requests.requests.size()) + " requests, " +
                   b.model->name + " on " + b.gpu.profile.key + ", pool " +
                   std::to_string(b.config.kv.num_blocks) + " blocks");
      const simulation_result sim = simulate(b.requests, b.config, model);
      const auto measured = metric_values(r);
      const auto predicted = simulated_values(sim);
      schema::serving_accuracy_run run;
      run.file = path;
      run.level = r.capacity;
      run.gpu = b.gpu.profile.key.empty() ? b.gpu.profile.name : b.gpu.profile.key;
      run.workload = doc.config.workload;
      run.window = b.window;
      run.requests = std::ssize(r.measured->requests.id);
      run.simulated_requests = std::ssize(sim.requests);
      run.kv_blocks = b.config.kv.num_blocks;
      for (const auto& name : serving_metric_names()) {
        const auto m = measured.find(name);
        const auto p = predicted.find(name);
        if (m == measured.end() || p == predicted.end() || !(m->second > 0)) continue;
        if (!std::isfinite(p->second))
          throw std::runtime_error(path + ": predicted " + name + " is not finite");
        run.metrics[name] = {m->second, p->second, relative_error(p->second, m->second)};
      }
      if (d.step_time_model.empty()) d.step_time_model = model.description();
      d.runs.push_back(std::move(run));
    }
    if (!any)
      throw std::invalid_argument(path + ": no row has a `measured` section to compare (a "
                                  "`ridgeline kv` simulation, not a replay or load run)");
  }
  for (const auto& path : o.find_max) {
    if (o.progress) o.progress(path + ": searching the max rate");
    d.max_rate.push_back(check_max_rate(path, o));
  }
  judge(d);
  return d;
}

std::string serving_accuracy_table(const schema::serving_accuracy_document& d) {
  std::ostringstream out;
  out << "ridgeline plan accuracy --serving: " << d.runs.size() << " measured runs, "
      << d.step_time_model << "\n\n";
  for (const auto& r : d.runs) {
    out << "### " << r.file << " (" << r.level << ", " << r.requests << " requests measured, "
        << r.simulated_requests << " simulated, " << r.kv_blocks << " KV blocks, " << r.gpu
        << ")\nwindow: " << r.window << "\n\n| metric | measured | predicted | error |\n"
        << "|---|---:|---:|---:|\n";
    for (const auto& name : serving_metric_names()) {
      const auto it = r.metrics.find(name);
      if (it == r.metrics.end()) {
        out << "| " << metric_label(name) << " | - | - | - |\n";
        continue;
      }
      const auto& m = it->second;
      out << "| " << metric_label(name) << " | " << metric_value_text(name, m.measured) << " | "
          << metric_value_text(name, m.predicted) << " | " << format_percent(m.error) << " |\n";
    }
    out << "\n";
  }
  if (!d.runs.empty()) {
    out << "| metric | runs | median error | bound | |\n|---|---:|---:|---:|---|\n";
    for (const auto& s : d.summary) {
      out << "| " << metric_label(s.metric) << " | " << s.runs << " | "
          << (s.runs > 0 ? format_percent(s.median_error) : std::string("-")) << " | "
          << (s.bound ? format_percent(*s.bound) : std::string("-")) << " | "
          << (s.met ? (*s.met ? "met" : "BROKEN") : "") << " |\n";
    }
    out << "\n";
  }
  if (!d.max_rate.empty()) {
    out << "| find-max run | SLO | measured req/s | predicted req/s | error | bound | |\n"
        << "|---|---|---:|---:|---:|---:|---|\n";
    for (const auto& m : d.max_rate) {
      out << "| " << m.file << " | " << m.slo << " | " << format("%.3g", m.measured_rate_per_second)
          << " | " << format("%.3g", m.predicted_rate_per_second) << (m.capped ? " (capped)" : "")
          << " | " << format_percent(m.error) << " | "
          << (m.bound ? format_percent(*m.bound) : std::string("-")) << " | "
          << (m.met ? (*m.met ? "met" : "BROKEN") : "") << " |\n";
    }
    out << "\n";
  }
  out << "error = |predicted - measured| / measured; median over the runs per metric\n";
  if (d.passed) {
    out << "every stated bound holds\n";
  } else {
    for (const auto& b : d.broken) out << "bound broken: " << b << "\n";
  }
  return out.str();
}

}  // namespace ridgeline::planner
