// `ridgeline plan`: per GPU model, the largest batch that fits and the largest that meets the TPOT
// SLO, the highest request rate with goodput >= 90% (simulated with the engine's scheduler and KV
// manager), GPUs needed for a target load and cost per million tokens; one side-by-side table.
//   ridgeline plan --model llama-3-8b --gpu h100-sxm,l40s,a10g --workload SPEC|TRACE (continued)
//       --slo ttft_p99=2s,tpot_p99=50ms --qps 20 --price 2.5
//   ridgeline plan fit --sweep docs/results/h100-sxm_sweep.json --gpu h100-sxm -o FIT.json
//   ridgeline plan accuracy --sweep MEASURED.json --gpu PROFILE [--fit FIT.json] | --run
//   ridgeline plan gpus
// Works without a GPU from the embedded profiles. docs/plan.md has the model and its fit.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/sweep/sweep.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/plan.hpp"
#include "ridgeline/plan/capacity.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

namespace ridgeline::cli {
namespace {

using nlohmann::json;
using namespace ridgeline::planner;

struct plan_args {
  std::string model;
  std::string gpus;
  std::string workload;
  std::string slo_text;
  double qps = 0;
  std::string price;
  std::string weights = "bf16";
  std::string kv_dtype = "bf16";
  std::string fit;
  std::int64_t requests = 1000;
  std::int32_t max_running = 256;
  std::int64_t max_batched_tokens = 8192;
  std::int32_t block_tokens = 16;
  double headroom = 0.2;
  double goodput_target = 0.9;
  std::string output, csv, markdown;
  bool json_out = false;
};

std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

std::string gpu_label(const std::string& key) {
  std::string up = key;
  for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const bool vowel_sound =
      !up.empty() && std::string("AEFHILMNORSX").find(up[0]) != std::string::npos;
  return std::string(vowel_sound ? "an " : "a ") + up;
}

// "2.5" for every GPU, or "h100-sxm=2.5,l40s=1.1".
std::map<std::string, double> parse_prices(const std::string& text) {
  std::map<std::string, double> out;
  for (const auto& item : split_list(text, ',')) {
    const auto eq = item.find('=');
    const std::string key = eq == std::string::npos ? "*" : item.substr(0, eq);
    const std::string v = eq == std::string::npos ? item : item.substr(eq + 1);
    double x = 0;
    try {
      std::size_t pos = 0;
      x = std::stod(v, &pos);
      if (pos != v.size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw std::invalid_argument("--price: '" + item + "' is not $/h (e.g. 2.5 or h100-sxm=2.5)");
    }
    if (!(x > 0)) throw std::invalid_argument("--price: '" + item + "' must be positive");
    out[key] = x;
  }
  return out;
}

workload load_plan_workload(const std::string& spec, std::int64_t requests) {
  namespace fs = std::filesystem;
  const std::string ext = fs::path(spec).extension().string();
  if (ext == ".jsonl" || ext == ".csv" || fs::exists(spec)) {
    workload w = load_trace(spec);
    bool sessions = false;
    for (const auto& r : w.requests) sessions = sessions || r.follow_up || r.next_turn >= 0;
    if (!sessions && requests > 0 && std::ssize(w.requests) > requests)
      w.requests.resize(static_cast<std::size_t>(requests));
    if (w.requests.empty()) throw std::invalid_argument("workload '" + spec + "' has no requests");
    return w;
  }
  if (spec.find('=') == std::string::npos) {
    throw std::invalid_argument("--workload '" + spec +
                                "' is neither a trace file (.jsonl Mooncake, .csv Azure) nor a "
                                "generator spec (key=value,..., e.g. rate=5,prompt=lognormal:"
                                "512:0.8,output=lognormal:128:0.8)");
  }
  generator_config g = parse_generator_spec(spec);
  if (spec.find("requests=") == std::string::npos && requests > 0) g.requests = requests;
  workload w = generate_workload(g);
  w.source = "generator:" + spec;
  return w;
}

std::string csv_cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return "\"" + v.get<std::string>() + "\"";
  return v.dump();
}

const std::vector<std::string> k_columns = {"gpu",
                                            "ceilings",
                                            "memory_bytes",
                                            "weight_bytes",
                                            "kv_budget_bytes",
                                            "context",
                                            "max_batch_fit",
                                            "fit_step_seconds",
                                            "fit_tokens_per_second",
                                            "max_batch_slo",
                                            "slo_step_seconds",
                                            "slo_tokens_per_second",
                                            "max_rate_per_gpu",
                                            "goodput_fraction",
                                            "ttft_p99_seconds",
                                            "tpot_p99_seconds",
                                            "output_tokens_per_second",
                                            "gpus_needed",
                                            "price_per_hour",
                                            "cost_per_million_output_tokens",
                                            "error"};

std::string plan_csv(const json& rows) {
  std::ostringstream o;
  o << std::setprecision(10);
  for (std::size_t i = 0; i < k_columns.size(); ++i) o << (i ? "," : "") << k_columns[i];
  o << "\n";
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < k_columns.size(); ++i)
      o << (i ? "," : "") << (r.contains(k_columns[i]) ? csv_cell(r[k_columns[i]]) : "");
    o << "\n";
  }
  return o.str();
}

std::string plan_markdown(const json& doc) {
  const auto& c = doc["config"];
  std::ostringstream o;
  o << "ridgeline plan: " << c["model"].get<std::string>() << " ("
    << c["weights"].get<std::string>() << " weights, " << c["kv_dtype"].get<std::string>()
    << " KV), workload " << c["workload"].get<std::string>() << " ("
    << c["requests"].get<std::int64_t>() << " requests, mean prompt "
    << fixed(c["mean_prompt_tokens"], 0) << ", mean output " << fixed(c["mean_output_tokens"], 0)
    << "), SLO p99 TTFT <= " << fixed(c["slo"]["ttft_seconds"].get<double>() * 1e3, 0)
    << " ms, TPOT <= " << fixed(c["slo"]["tpot_seconds"].get<double>() * 1e3, 1) << " ms";
  if (c["qps"].get<double>() > 0) o << ", target " << c["qps"].get<double>() << " req/s";
  o << "\n\n| GPU | ceilings | max batch (fits) | tok/s | max batch (TPOT SLO) | step ms | tok/s "
       "| max req/s per GPU (goodput >= "
    << fixed(100 * c["goodput_target"].get<double>(), 0)
    << "%) | p99 TTFT ms | p99 TPOT ms | GPUs for target | $/M output tok |\n";
  o << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : doc["rows"]) {
    o << "| " << r["gpu"].get<std::string>() << " | "
      << (r.value("derated", false) ? "datasheet-derated" : "measured") << " | ";
    if (r.contains("error") && !r.contains("max_batch_fit")) {
      o << r["error"].get<std::string>() << " ||||||||||\n";
      continue;
    }
    o << r["max_batch_fit"] << " | " << fixed(r["fit_tokens_per_second"], 0) << " | ";
    if (!r.contains("max_batch_slo")) {
      o << "none: " << r["error"].get<std::string>() << " |||||||\n";
      continue;
    }
    o << r["max_batch_slo"] << " | " << fixed(r["slo_step_seconds"].get<double>() * 1e3, 2) << " | "
      << fixed(r["slo_tokens_per_second"], 0) << " | ";
    if (!r.contains("max_rate_per_gpu")) {
      o << "none: " << r["error"].get<std::string>() << " |||||\n";
      continue;
    }
    o << fixed(r["max_rate_per_gpu"], 2) << " | "
      << fixed(r["ttft_p99_seconds"].get<double>() * 1e3, 0) << " | "
      << fixed(r["tpot_p99_seconds"].get<double>() * 1e3, 1) << " | "
      << (r.contains("gpus_needed") ? r["gpus_needed"].dump() : "-") << " | "
      << (r.contains("cost_per_million_output_tokens")
              ? "$" + fixed(r["cost_per_million_output_tokens"], 3)
              : "-")
      << " |\n";
  }
  o << "\nceilings: measured = this GPU's probe; datasheet-derated = datasheet figures x the "
       "measured/datasheet ratios of the measured GPUs (see each row's ceilings_basis).\n"
    << "step-time model efficiencies: " << c["efficiencies"].get<std::string>() << "\n"
    << "goodput = finished requests per second with TTFT <= SLO_ttft and TPOT <= SLO_tpot; "
       "GPUs for target = ceil(qps / (max req/s x (1 - headroom "
    << fixed(c["headroom"], 2)
    << "))); $/M output tok = $/h / (3600 x output tok/s at max req/s) "
       "x 1e6\n";
  return o.str();
}

void run_plan(const plan_args& a, context& ctx) {
  if (a.model.empty()) throw std::invalid_argument("plan: --model is required");
  if (a.gpus.empty()) throw std::invalid_argument("plan: --gpu is required (e.g. h100-sxm,l40s)");
  if (a.workload.empty()) throw std::invalid_argument("plan: --workload TRACE|SPEC is required");
  if (a.slo_text.empty())
    throw std::invalid_argument("plan: --slo ttft_p99=...,tpot_p99=... is required");
  if (a.qps < 0) throw std::invalid_argument("--qps must not be negative");
  if (!(a.headroom >= 0 && a.headroom < 1))
    throw std::invalid_argument("--headroom must be in [0, 1)");
  if (!(a.goodput_target > 0 && a.goodput_target <= 1))
    throw std::invalid_argument("--goodput must be in (0, 1]");
  const model_preset& m = model_preset_by_name(a.model);
  const slo s = parse_slo(a.slo_text);
  const auto prices = parse_prices(a.price);
  memory_options mo;
  mo.weights = parse_weight_format(a.weights);
  mo.kv_dtype = parse_dtype(a.kv_dtype);
  mo.block_tokens = a.block_tokens;
  mo.max_batched_tokens = a.max_batched_tokens;
  mo.max_running = a.max_running;
  std::vector<resolved_gpu> gpus;
  for (const auto& key : split_list(a.gpus, ',')) gpus.push_back(resolve_gpu(key));
  if (gpus.empty()) throw std::invalid_argument("plan: --gpu lists no GPU");
  std::optional<fitted_parameters> fit_file;
  if (!a.fit.empty()) fit_file = fitted_parameters_from_json(json::parse(read_text_file(a.fit)));
  for (const auto& p : {a.output, a.csv, a.markdown})
    if (!p.empty()) check_writable(p);

  const workload w = load_plan_workload(a.workload, a.requests);
  const double n = static_cast<double>(w.requests.size());
  const double mean_prompt = static_cast<double>(w.total_prompt_tokens()) / n;
  const double mean_output = static_cast<double>(w.total_output_tokens()) / n;
  if (arrival_rate(w) <= 0)
    throw std::invalid_argument("workload '" + w.source +
                                "': its arrivals span no time, so no rate can be searched");
  const double decode_context = mean_prompt + mean_output / 2;
  const auto kv_context = static_cast<std::int64_t>(std::ceil(mean_prompt + mean_output));

  json rows = json::array();
  std::string efficiencies;
  std::vector<std::string> failures;
  for (const auto& g : gpus) {
    const std::string key = g.profile.key;
    json row = {{"gpu", key},
                {"gpu_name", g.profile.name},
                {"profile", g.origin},
                {"memory_bytes", g.profile.memory_bytes},
                {"context", decode_context}};
    const memory_plan mem =
        plan_memory(m, static_cast<double>(g.profile.memory_bytes), mo, gpu_label(key));
    row["weight_bytes"] = mem.weight_bytes;
    row["workspace_bytes"] = mem.workspace_bytes;
    row["kv_budget_bytes"] = mem.kv_budget_bytes;
    row["kv_bytes_per_token"] = mem.kv_bytes_per_token;
    row["kv_blocks"] = mem.kv_blocks;
    if (!mem.fits) {
      row["error"] = mem.why_not;
      row["derated"] = !g.measured;
      failures.push_back(key + ": " + mem.why_not);
      rows.push_back(row);
      continue;
    }
    const ceilings ce =
        ceilings_of(g.profile, compute_dtype_for(mo.weights, g.profile), measured_profiles());
    const fitted_parameters fp = fit_file ? *fit_file : parameters_for(g.profile);
    efficiencies = fp.source;
    const fitted_step_time_model model(m, ce, fp, {mo.weights, mo.kv_dtype});
    row["derated"] = ce.derated;
    row["ceilings"] = ce.derated ? "datasheet-derated" : "measured";
    row["ceilings_basis"] = ce.basis;
    row["bytes_per_second"] = ce.bytes_per_second;
    row["flops_per_second"] = ce.flops_per_second;
    row["compute_dtype"] = std::string(name(ce.compute_dtype));
    row["step_time_model"] = model.description();
    const batch_limits bl =
        find_batch_limits(model, mem, decode_context, kv_context, s.tpot_seconds, a.max_running);
    if (bl.max_fit.batch > 0) {
      row["max_batch_fit"] = bl.max_fit.batch;
      row["fit_step_seconds"] = bl.max_fit.step_seconds;
      row["fit_tokens_per_second"] = bl.max_fit.tokens_per_second;
    }
    if (!bl.max_slo) {
      row["error"] = bl.why;
      failures.push_back(key + ": " + bl.why);
      rows.push_back(row);
      continue;
    }
    row["max_batch_slo"] = bl.max_slo->batch;
    row["slo_step_seconds"] = bl.max_slo->step_seconds;
    row["slo_tokens_per_second"] = bl.max_slo->tokens_per_second;

    simulation_config sc;
    sc.kv = make_kv_cache_config(
        m, mo.kv_dtype, mo.block_tokens,
        static_cast<std::int32_t>(std::min<std::int64_t>(mem.kv_blocks, std::int64_t{1} << 30)));
    sc.scheduler.max_running = static_cast<std::int32_t>(bl.max_slo->batch);
    sc.scheduler.max_batched_tokens = a.max_batched_tokens;
    sc.scheduler.max_model_len = m.max_context;
    sc.scheduler.record_itl = false;
    validate(sc.scheduler);
    if (ctx.progress) ctx.err << "plan: " << key << ": searching the request rate\n";
    const rate_result rr = max_goodput_rate(w, sc, model, s, a.goodput_target,
                                            bl.max_slo->tokens_per_second / mean_output);
    row["simulations"] = rr.simulations;
    if (!rr.feasible) {
      row["error"] = rr.why;
      failures.push_back(key + ": " + rr.why);
      rows.push_back(row);
      continue;
    }
    row["max_rate_per_gpu"] = rr.best.rate;
    row["goodput_fraction"] = rr.best.fraction;
    row["goodput_requests_per_second"] = rr.best.goodput;
    row["ttft_p99_seconds"] = rr.best.ttft_p99;
    row["tpot_p99_seconds"] = rr.best.tpot_p99;
    const double out_tok = rr.best.rate * mean_output;
    row["output_tokens_per_second"] = out_tok;
    if (a.qps > 0)
      row["gpus_needed"] =
          static_cast<std::int64_t>(std::ceil(a.qps / (rr.best.rate * (1 - a.headroom)) - 1e-9));
    auto price = prices.find(key);
    if (price == prices.end()) price = prices.find("*");
    if (price != prices.end()) {
      row["price_per_hour"] = price->second;
      row["cost_per_million_output_tokens"] = price->second / (3600 * out_tok) * 1e6;
      if (row.contains("gpus_needed"))
        row["fleet_cost_per_hour"] = price->second * row["gpus_needed"].get<double>();
    }
    rows.push_back(row);
  }
  if (failures.size() == gpus.size()) {
    std::string msg = "plan: no GPU can serve " + m.name + " under this SLO and memory:";
    for (const auto& f : failures) msg += "\n  " + f;
    throw std::invalid_argument(msg);
  }
  schema::plan_config config;
  config.model = m.name;
  config.weights = std::string(name(mo.weights));
  config.kv_dtype = std::string(name(mo.kv_dtype));
  config.workload = w.source;
  config.requests = static_cast<std::int64_t>(w.requests.size());
  config.mean_prompt_tokens = mean_prompt;
  config.mean_output_tokens = mean_output;
  config.workload_rate_per_second = arrival_rate(w);
  config.slo = {s.ttft_seconds, s.tpot_seconds};
  config.qps = a.qps;
  config.headroom = a.headroom;
  config.goodput_target = a.goodput_target;
  config.max_running = a.max_running;
  config.max_batched_tokens = a.max_batched_tokens;
  config.block_tokens = a.block_tokens;
  config.efficiencies = efficiencies;
  config.definitions = {
      {"max_batch_fit", "largest batch whose KV (mean prompt + output tokens each) fits"},
      {"max_batch_slo",
       "largest decode batch with step time <= TPOT SLO at context mean "
       "prompt + mean output / 2"},
      {"max_rate_per_gpu",
       "highest arrival rate (bisection) with goodput >= target x "
       "arrivals, simulated with the engine's scheduler and KV manager"},
      {"goodput", "finished requests per second with TTFT <= SLO_ttft and TPOT <= SLO_tpot"},
      {"derated",
       "true: datasheet-only GPU, ceilings = datasheet x measured/datasheet ratios "
       "of measured GPUs"}};
  // The rows go through the plan reader, so what is written is what readers accept, and the
  // document comes from the format's one writer.
  const json doc = schema::to_json(
      schema::parse_plan({{"schema", schema::k_plan_schema},
                          {"environment", metrics::environment_block(std::nullopt)},
                          {"config", schema::to_json(config)},
                          {"rows", rows}},
                         "ridgeline plan"));
  const std::string text = doc.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, plan_csv(rows));
  const std::string md = plan_markdown(doc);
  if (!a.markdown.empty()) write_atomically(a.markdown, md);
  ctx.out << (a.json_out ? text : md);
}

// ---------------------------------------------------------------------------- fit, accuracy

json read_json_file(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(path + ": not valid JSON (" + e.what() + ")");
  }
}

gpu_profile measured_gpu(const std::string& spec) {
  resolved_gpu g = resolve_gpu(spec);
  if (!g.measured)
    throw std::invalid_argument("GPU '" + spec +
                                "' has datasheet figures only; give a measured "
                                "profile (ridgeline probe -o PROFILE.json on that GPU)");
  return g.profile;
}

struct fit_args {
  std::vector<std::string> sweeps;
  std::string gpu;
  std::string output;
  bool json_out = false;
};

void run_fit(const fit_args& a, context& ctx) {
  if (a.sweeps.empty()) throw std::invalid_argument("plan fit: --sweep FILE is required");
  if (a.gpu.empty()) throw std::invalid_argument("plan fit: --gpu PROFILE is required");
  if (!a.output.empty()) check_writable(a.output);
  const gpu_profile g = measured_gpu(a.gpu);
  std::vector<fit_input> inputs;
  for (const auto& s : a.sweeps) {
    try {
      inputs.push_back({read_json_file(s), g});
      sweep_points(inputs.back().sweep);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(s + ": " + e.what());
    }
  }
  const fitted_parameters f = fit_sweeps(inputs);
  const std::string text = to_json(f).dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (a.json_out) {
    ctx.out << text;
    return;
  }
  ctx.out << "ridgeline plan fit: " << f.source << ", " << f.stats["points"] << " points\n"
          << "  fit error: MAPE " << fixed(100 * f.stats["mape"].get<double>(), 2) << "%, worst "
          << fixed(100 * f.stats["worst_abs_error"].get<double>(), 2) << "%\n"
          << "  overhead per step: " << fixed(f.overhead_seconds * 1e6, 1) << " us\n"
          << "  efficiency    linear(tokens)   attention memory / compute (context)\n";
  for (std::size_t k = 0; k < std::max(f.linear.log2_x.size(), f.attention_memory.log2_x.size());
       ++k) {
    ctx.out << "  ";
    if (k < f.linear.log2_x.size())
      ctx.out << std::setw(6) << std::pow(2, f.linear.log2_x[k]) << ": " << std::setw(6)
              << fixed(1 / f.linear.inverse[k], 3);
    else
      ctx.out << std::string(14, ' ');
    if (k < f.attention_memory.log2_x.size())
      ctx.out << "      " << std::setw(7) << std::pow(2, f.attention_memory.log2_x[k]) << ": "
              << fixed(1 / f.attention_memory.inverse[k], 3) << " / "
              << fixed(1 / f.attention_compute.inverse[k], 3);
    ctx.out << "\n";
  }
  if (!a.output.empty()) ctx.out << "fit written to " << a.output << "\n";
}

struct accuracy_args {
  std::string sweep;
  bool run = false;
  std::string model = "llama-2-7b";
  std::string gpu;
  std::string fit;
  std::string output, csv, sweep_output;
  bool json_out = false;
  double max_mape = 0, max_worst = 0;  // exit 1 when exceeded (0: no check)
};

void run_accuracy(const accuracy_args& a, context& ctx) {
  if (a.sweep.empty() == !a.run)
    throw std::invalid_argument("plan accuracy: give one of --sweep FILE or --run");
  if (a.gpu.empty()) throw std::invalid_argument("plan accuracy: --gpu PROFILE is required");
  for (const auto& p : {a.output, a.csv, a.sweep_output})
    if (!p.empty()) check_writable(p);
  const resolved_gpu g = resolve_gpu(a.gpu);
  json sweep;
  if (a.run) {
    bench::sweep_options o;
    o.model = a.model;
    if (g.measured) o.profile = g.profile;
    if (ctx.progress) o.progress = [&](const std::string& s) { ctx.err << "sweep: " << s << "\n"; };
    bench::validate_sweep_options(o);
    sweep = bench::run_sweep(o);
    if (!a.sweep_output.empty()) write_atomically(a.sweep_output, sweep.dump(2) + "\n");
  } else {
    sweep = read_json_file(a.sweep);
  }
  const model_preset& m = model_preset_by_name(sweep_model(sweep));
  const auto points = sweep_points(sweep);
  const fitted_parameters fp = a.fit.empty() ? parameters_for(g.profile)
                                             : fitted_parameters_from_json(read_json_file(a.fit));
  const ceilings ce = ceilings_of(g.profile, dtype::bf16, measured_profiles());
  const fitted_step_time_model model(m, ce, fp);
  const accuracy_report r = accuracy(points, model);

  json rows = json::array();
  for (const auto& row : r.rows)
    rows.push_back({{"phase", row.point.phase},
                    {"batch", row.point.batch},
                    {"context", row.point.context},
                    {"measured_seconds", row.point.seconds},
                    {"predicted_seconds", row.predicted_seconds},
                    {"error", row.error}});
  const auto& w = r.rows[r.worst_index];
  const json doc = {
      {"schema", "ridgeline.accuracy/v1"},
      {"environment", metrics::environment_block(std::nullopt)},
      {"config",
       {{"sweep", a.run ? "run on this GPU" : a.sweep},
        {"model", m.name},
        {"gpu", g.profile.key},
        {"ceilings", ce.basis},
        {"step_time_model", model.description()},
        {"definitions",
         {{"error", "(predicted - measured) / measured, median step time"},
          {"mape", "mean over points of |error|"}}}}},
      {"summary",
       {{"points", r.rows.size()},
        {"mape", r.mape},
        {"worst_abs_error", r.worst},
        {"worst_point",
         {{"phase", w.point.phase}, {"batch", w.point.batch}, {"context", w.point.context}}}}},
      {"rows", rows}};
  if (!a.output.empty()) write_atomically(a.output, doc.dump(2) + "\n");
  if (!a.csv.empty()) {
    std::ostringstream o;
    o << std::setprecision(10) << "phase,batch,context,measured_seconds,predicted_seconds,error\n";
    for (const auto& row : r.rows)
      o << row.point.phase << "," << row.point.batch << "," << row.point.context << ","
        << row.point.seconds << "," << row.predicted_seconds << "," << row.error << "\n";
    write_atomically(a.csv, o.str());
  }
  if (a.json_out) {
    ctx.out << doc.dump(2) << "\n";
  } else {
    ctx.out << "ridgeline plan accuracy: " << m.name << " on " << g.profile.key << " (" << ce.basis
            << ")\nmodel: " << model.description() << "\n\n"
            << "| phase | batch | context | measured ms | predicted ms | error |\n"
            << "|---|---:|---:|---:|---:|---:|\n";
    for (const auto& row : r.rows)
      ctx.out << "| " << row.point.phase << " | " << row.point.batch << " | " << row.point.context
              << " | " << fixed(row.point.seconds * 1e3, 3) << " | "
              << fixed(row.predicted_seconds * 1e3, 3) << " | " << fixed(100 * row.error, 1)
              << "% |\n";
    ctx.out << "\nMAPE " << fixed(100 * r.mape, 2) << "% over " << r.rows.size()
            << " points; worst " << fixed(100 * r.worst, 2) << "% (" << w.point.phase << ", batch "
            << w.point.batch << ", context " << w.point.context << ")\n";
  }
  if ((a.max_mape > 0 && r.mape > a.max_mape) || (a.max_worst > 0 && r.worst > a.max_worst)) {
    throw std::runtime_error("accuracy: MAPE " + fixed(100 * r.mape, 2) + "% / worst " +
                             fixed(100 * r.worst, 2) + "% exceed the limits given");
  }
}

void run_gpus(context& ctx) {
  ctx.out << "| GPU | source | memory GB | DRAM TB/s (datasheet) | bf16/fp16 TFLOP/s (datasheet) | "
             "fp8 TFLOP/s | planner ceilings | citation |\n|---|---|---:|---:|---:|---:|---|---|\n";
  std::vector<std::string> seen;
  auto line = [&](const gpu_profile& g, const std::string& citation) {
    const dtype t = compute_dtype_for(weight_format::bf16, g);
    const ceilings c = ceilings_of(g, t, measured_profiles());
    const auto fp8 = g.peaks.find(dtype::fp8_e4m3);
    const auto pk = g.peaks.find(t);
    ctx.out << "| " << g.key << " | " << (c.derated ? "datasheet" : "measured") << " | "
            << fixed(static_cast<double>(g.memory_bytes) / 1e9, 1) << " | "
            << fixed(g.datasheet_bytes_per_second / 1e12, 2) << " | "
            << (pk != g.peaks.end() ? fixed(pk->second.datasheet_flops_per_second / 1e12, 1) : "-")
            << " | "
            << (fp8 != g.peaks.end() ? fixed(fp8->second.datasheet_flops_per_second / 1e12, 1)
                                     : "-")
            << " | " << fixed(c.bytes_per_second / 1e12, 2) << " TB/s, "
            << fixed(c.flops_per_second / 1e12, 0) << " TFLOP/s " << name(t) << " (" << c.basis
            << ") | " << citation << " |\n";
  };
  for (const auto& g : measured_profiles()) {
    seen.push_back(g.key);
    const datasheet_entry* e = datasheet_by_key(g.key);
    line(g, std::string("ridgeline probe") + (e ? std::string("; ") + e->citation : ""));
  }
  for (const auto& e : datasheet_table()) {
    if (std::find(seen.begin(), seen.end(), e.key) != seen.end()) continue;
    line(datasheet_profile(e), e.citation);
  }
  ctx.out << "\nefficiencies of the step-time model: "
          << (embedded_fits().empty()
                  ? default_parameters(measured_profiles().empty() ? nullptr
                                                                   : &measured_profiles().front())
                        .source
                  : embedded_fits().front().parameters.source)
          << "\n";
}

}  // namespace

void register_plan(CLI::App& app, context& ctx) {
  auto a = std::make_shared<plan_args>();
  auto* cmd = app.add_subcommand(
      "plan", "Batch size per GPU model and GPUs needed for a load under a latency SLO");
  cmd->footer(
      "Examples:\n"
      "  ridgeline plan --model llama-3-8b --gpu h100-sxm,h200,l40s,a10g \\\n"
      "      --workload rate=4,requests=500,prompt=lognormal:1024:0.8,output=lognormal:256:0.8 \\\n"
      "      --slo ttft_p99=2s,tpot_p99=50ms --qps 40 --price h100-sxm=2.5,h200=3.5,l40s=1.2\n"
      "  ridgeline plan gpus            # the GPUs it knows and where their figures come from\n"
      "  ridgeline plan fit --sweep docs/results/h100-sxm_sweep.json --gpu h100-sxm -o FIT.json\n"
      "  ridgeline plan accuracy --sweep MEASURED.json --gpu PROFILE [--fit FIT.json]\n"
      "docs/plan.md: the model, its fit, and what datasheet-derated means");
  cmd->add_option("--model", a->model, "Model preset");
  cmd->add_option("--gpu", a->gpus, "GPU keys or profile paths, comma-separated");
  cmd->add_option("--workload", a->workload,
                  "Trace (.jsonl Mooncake, .csv Azure) or generator spec");
  cmd->add_option("--slo", a->slo_text, "ttft_p99=T,tpot_p99=T (seconds, or with ms/us)");
  cmd->add_option("--qps", a->qps, "Target load, requests/s: GPUs needed");
  cmd->add_option("--price", a->price, "$/GPU-hour: 2.5 or key=2.5,key2=1.1");
  cmd->add_option("--weights", a->weights, "Weight format: bf16, fp16, fp32, fp8, int8, int4")
      ->capture_default_str();
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache dtype")->capture_default_str();
  cmd->add_option("--fit", a->fit, "Efficiencies file (ridgeline.fit/v1) instead of the embedded");
  cmd->add_option("--requests", a->requests, "Requests of the workload to replay")
      ->capture_default_str();
  cmd->add_option("--max-running", a->max_running, "Largest batch considered")
      ->capture_default_str();
  cmd->add_option("--max-batched-tokens", a->max_batched_tokens, "Token budget per step")
      ->capture_default_str();
  cmd->add_option("--block-size", a->block_tokens, "Tokens per KV block")->capture_default_str();
  cmd->add_option("--headroom", a->headroom, "Share of each GPU's max rate left unused")
      ->capture_default_str();
  cmd->add_option("--goodput", a->goodput_target, "Share of arrivals that must meet the SLO")
      ->capture_default_str();
  cmd->add_option("-o,--output", a->output, "Write the plan JSON (ridgeline.plan/v1)");
  cmd->add_option("--csv", a->csv, "Write the rows as CSV");
  cmd->add_option("--markdown", a->markdown, "Write the table as Markdown");
  cmd->add_flag("--json", a->json_out, "Print the JSON instead of the table");

  auto f = std::make_shared<fit_args>();
  auto* fit = cmd->add_subcommand("fit", "Fit the step-time model's efficiencies to sweeps");
  fit->add_option("--sweep", f->sweeps, "ridgeline.sweep/v1 file (repeat for several models)");
  fit->add_option("--gpu", f->gpu, "Measured profile the sweeps ran on (key or path)");
  fit->add_option("-o,--output", f->output, "Write the fit (ridgeline.fit/v1)");
  fit->add_flag("--json", f->json_out, "Print the fit JSON");
  fit->callback([f, &ctx] { run_fit(*f, ctx); });

  auto c = std::make_shared<accuracy_args>();
  auto* acc = cmd->add_subcommand("accuracy", "Predicted against measured step times, per point");
  acc->add_option("--sweep", c->sweep, "Measured ridgeline.sweep/v1 file");
  acc->add_flag("--run", c->run, "Run the sweep on this GPU first (needs CUDA)");
  acc->add_option("--model", c->model, "Model preset of --run")->capture_default_str();
  acc->add_option("--sweep-output", c->sweep_output, "Keep the sweep of --run here");
  acc->add_option("--gpu", c->gpu, "Profile of the GPU (key or path) for the ceilings");
  acc->add_option("--fit", c->fit, "Efficiencies (ridgeline.fit/v1); default: the embedded");
  acc->add_option("--max-mape", c->max_mape, "Fail (exit 1) when MAPE exceeds this (0.05 = 5%)");
  acc->add_option("--max-worst", c->max_worst, "Fail (exit 1) when the worst |error| exceeds this");
  acc->add_option("-o,--output", c->output, "Write the report JSON (ridgeline.accuracy/v1)");
  acc->add_option("--csv", c->csv, "Write the points as CSV");
  acc->add_flag("--json", c->json_out, "Print the JSON instead of the table");
  acc->callback([c, &ctx] { run_accuracy(*c, ctx); });

  auto* list = cmd->add_subcommand("gpus", "GPUs the planner knows: measured and datasheet");
  list->callback([&ctx] { run_gpus(ctx); });

  cmd->callback([a, cmd, fit, acc, list, &ctx] {
    if (fit->parsed() || acc->parsed() || list->parsed()) return;
    run_plan(*a, ctx);
  });
}

}  // namespace ridgeline::cli
