// `ridgeline plan`'s pipeline and its fit, accuracy and gpus subcommands (see plan.hpp).
#include "ridgeline/plan/plan.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/accuracy.hpp"
#include "ridgeline/core/schemas/plan.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::planner {

using nlohmann::json;

namespace {

std::string gpu_label(const std::string& key) {
  std::string up = key;
  for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const bool vowel_sound =
      !up.empty() && std::string("AEFHILMNORSX").find(up[0]) != std::string::npos;
  return std::string(vowel_sound ? "an " : "a ") + up;
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

}  // namespace

std::vector<resolved_gpu> resolve_gpus(const std::vector<std::string>& keys) {
  std::vector<resolved_gpu> gpus;
  for (const auto& key : keys) gpus.push_back(resolve_gpu(key));
  if (gpus.empty()) throw std::invalid_argument("plan: --gpu lists no GPU");
  return gpus;
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
    << format("%.0f", c["mean_prompt_tokens"].get<double>()) << ", mean output " << format("%.0f", c["mean_output_tokens"].get<double>())
    << "), SLO p99 TTFT <= " << format("%.0f", c["slo"]["ttft_seconds"].get<double>() * 1e3)
    << " ms, TPOT <= " << format("%.1f", c["slo"]["tpot_seconds"].get<double>() * 1e3) << " ms";
  if (c["qps"].get<double>() > 0) o << ", target " << c["qps"].get<double>() << " req/s";
  o << "\n\n| GPU | ceilings | max batch (fits) | tok/s | max batch (TPOT SLO) | step ms | tok/s "
       "| max req/s per GPU (goodput >= "
    << format("%.0f", 100 * c["goodput_target"].get<double>())
    << "%) | p99 TTFT ms | p99 TPOT ms | GPUs for target | $/M output tok |\n";
  o << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : doc["rows"]) {
    o << "| " << r["gpu"].get<std::string>() << " | "
      << (r.value("derated", false) ? "datasheet-derated" : "measured") << " | ";
    if (r.contains("error") && !r.contains("max_batch_fit")) {
      o << r["error"].get<std::string>() << " ||||||||||\n";
      continue;
    }
    o << r["max_batch_fit"] << " | " << format("%.0f", r["fit_tokens_per_second"].get<double>()) << " | ";
    if (!r.contains("max_batch_slo")) {
      o << "none: " << r["error"].get<std::string>() << " |||||||\n";
      continue;
    }
    o << r["max_batch_slo"] << " | " << format("%.2f", r["slo_step_seconds"].get<double>() * 1e3) << " | "
      << format("%.0f", r["slo_tokens_per_second"].get<double>()) << " | ";
    if (!r.contains("max_rate_per_gpu")) {
      o << "none: " << r["error"].get<std::string>() << " |||||\n";
      continue;
    }
    o << format("%.2f", r["max_rate_per_gpu"].get<double>()) << " | "
      << format("%.0f", r["ttft_p99_seconds"].get<double>() * 1e3) << " | "
      << format("%.1f", r["tpot_p99_seconds"].get<double>() * 1e3) << " | "
      << (r.contains("gpus_needed") ? r["gpus_needed"].dump() : "-") << " | "
      << (r.contains("cost_per_million_output_tokens")
              ? "$" + format("%.3f", r["cost_per_million_output_tokens"].get<double>())
              : "-")
      << " |\n";
  }
  o << "\nceilings: measured = this GPU's probe; datasheet-derated = datasheet figures x the "
       "measured/datasheet ratios of the measured GPUs (see each row's ceilings_basis).\n"
    << "step-time model efficiencies: " << c["efficiencies"].get<std::string>() << "\n"
    << "goodput = finished requests per second with TTFT <= SLO_ttft and TPOT <= SLO_tpot; "
       "GPUs for target = ceil(qps / (max req/s x (1 - headroom "
    << format("%.2f", c["headroom"].get<double>())
    << "))); $/M output tok = $/h / (3600 x output tok/s at max req/s) "
       "x 1e6\n";
  return o.str();
}

json plan_document(const model_preset& m, const std::vector<resolved_gpu>& gpus, const workload& w,
                   const plan_options& a, const std::function<void(const std::string&)>& progress) {
  const memory_options& mo = a.memory;
  const slo& s = a.s;
  const auto& prices = a.prices;
  const std::optional<fitted_parameters>& fit_file = a.fit;
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
    if (progress) progress(key + ": searching the request rate");
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
  return doc;
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

fitted_parameters fit_sweep_files(const std::vector<std::string>& paths, const gpu_profile& g) {
  std::vector<fit_input> inputs;
  for (const auto& s : paths) {
    try {
      inputs.push_back({read_json_file(s), g});
      sweep_points(inputs.back().sweep);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(s + ": " + e.what());
    }
  }
  return fit_sweeps(inputs);
}

std::string fit_text(const fitted_parameters& f) {
  std::ostringstream o;
  o << "ridgeline plan fit: " << f.source << ", " << f.stats["points"] << " points\n"
    << "  fit error: MAPE " << format("%.2f", 100 * f.stats["mape"].get<double>()) << "%, worst "
    << format("%.2f", 100 * f.stats["worst_abs_error"].get<double>()) << "%\n"
    << "  overhead per step: " << format("%.1f", f.overhead_seconds * 1e6) << " us\n"
    << "  efficiency    linear(tokens)   attention memory / compute (context)\n";
  for (std::size_t k = 0; k < std::max(f.linear.log2_x.size(), f.attention_memory.log2_x.size());
       ++k) {
    o << "  ";
    if (k < f.linear.log2_x.size())
      o << std::setw(6) << std::pow(2, f.linear.log2_x[k]) << ": " << std::setw(6)
        << format("%.3f", 1 / f.linear.inverse[k]);
    else
      o << std::string(14, ' ');
    if (k < f.attention_memory.log2_x.size())
      o << "      " << std::setw(7) << std::pow(2, f.attention_memory.log2_x[k]) << ": "
        << format("%.3f", 1 / f.attention_memory.inverse[k]) << " / "
        << format("%.3f", 1 / f.attention_compute.inverse[k]);
    o << "\n";
  }
  return o.str();
}

accuracy_result plan_accuracy(const json& sweep, const std::string& sweep_label,
                              const resolved_gpu& g, const std::optional<fitted_parameters>& fit) {
  const model_preset& m = model_preset_by_name(sweep_model(sweep));
  const auto points = sweep_points(sweep);
  const fitted_parameters fp = fit ? *fit : parameters_for(g.profile);
  const ceilings ce = ceilings_of(g.profile, dtype::bf16, measured_profiles());
  const fitted_step_time_model model(m, ce, fp);
  return {sweep_label, m.name, g.profile.key, ce, model.description(), accuracy(points, model)};
}

json accuracy_document(const accuracy_result& a) {
  // Built as the format's typed document and written by its writer (core/schemas/accuracy.hpp).
  const accuracy_report& r = a.report;
  schema::accuracy_document d;
  d.env = schema::environment_from_block(metrics::environment_block(std::nullopt));
  d.sweep = a.sweep;
  d.model = a.model;
  d.gpu = a.gpu;
  d.ceilings = a.limits.basis;
  d.step_time_model = a.step_time_model;
  d.definitions = {{"error", "(predicted - measured) / measured, median step time"},
                   {"mape", "mean over points of |error|"}};
  d.points = static_cast<std::int64_t>(r.rows.size());
  d.mape = r.mape;
  d.worst_abs_error = r.worst;
  const auto& w = r.rows[r.worst_index];
  d.worst_point = {w.point.phase, w.point.batch, w.point.context};
  for (const auto& row : r.rows) {
    d.rows.push_back({{row.point.phase, row.point.batch, row.point.context},
                      row.point.seconds,
                      row.predicted_seconds,
                      row.error});
  }
  return schema::to_json(d);
}

std::string accuracy_csv(const accuracy_result& a) {
  std::ostringstream o;
  o << std::setprecision(10) << "phase,batch,context,measured_seconds,predicted_seconds,error\n";
  for (const auto& row : a.report.rows)
    o << row.point.phase << "," << row.point.batch << "," << row.point.context << ","
      << row.point.seconds << "," << row.predicted_seconds << "," << row.error << "\n";
  return o.str();
}

std::string accuracy_table(const accuracy_result& a) {
  const accuracy_report& r = a.report;
  const auto& w = r.rows[r.worst_index];
  std::ostringstream o;
  o << "ridgeline plan accuracy: " << a.model << " on " << a.gpu << " (" << a.limits.basis
    << ")\nmodel: " << a.step_time_model << "\n\n"
    << "| phase | batch | context | measured ms | predicted ms | error |\n"
    << "|---|---:|---:|---:|---:|---:|\n";
  for (const auto& row : r.rows)
    o << "| " << row.point.phase << " | " << row.point.batch << " | " << row.point.context << " | "
      << format("%.3f", row.point.seconds * 1e3) << " | " << format("%.3f", row.predicted_seconds * 1e3)
      << " | " << format("%.1f", 100 * row.error) << "% |\n";
  o << "\nMAPE " << format("%.2f", 100 * r.mape) << "% over " << r.rows.size() << " points; worst "
    << format("%.2f", 100 * r.worst) << "% (" << w.point.phase << ", batch " << w.point.batch
    << ", context " << w.point.context << ")\n";
  return o.str();
}

void check_accuracy_limits(const accuracy_report& r, double max_mape, double max_worst) {
  if ((max_mape > 0 && r.mape > max_mape) || (max_worst > 0 && r.worst > max_worst)) {
    throw std::runtime_error("accuracy: MAPE " + format("%.2f", 100 * r.mape) + "% / worst " +
                             format("%.2f", 100 * r.worst) + "% exceed the limits given");
  }
}

std::string gpus_table() {
  std::ostringstream out;
  out << "| GPU | source | memory GB | DRAM TB/s (datasheet) | bf16/fp16 TFLOP/s (datasheet) | "
         "fp8 TFLOP/s | planner ceilings | citation |\n|---|---|---:|---:|---:|---:|---|---|\n";
  std::vector<std::string> seen;
  auto line = [&](const gpu_profile& g, const std::string& citation) {
    const dtype t = compute_dtype_for(weight_format::bf16, g);
    const ceilings c = ceilings_of(g, t, measured_profiles());
    const auto fp8 = g.peaks.find(dtype::fp8_e4m3);
    const auto pk = g.peaks.find(t);
    out << "| " << g.key << " | " << (c.derated ? "datasheet" : "measured") << " | "
        << format("%.1f", static_cast<double>(g.memory_bytes) / 1e9) << " | "
        << format("%.2f", g.datasheet_bytes_per_second / 1e12) << " | "
        << (pk != g.peaks.end() ? format("%.1f", pk->second.datasheet_flops_per_second / 1e12) : "-")
        << " | "
        << (fp8 != g.peaks.end() ? format("%.1f", fp8->second.datasheet_flops_per_second / 1e12) : "-")
        << " | " << format("%.2f", c.bytes_per_second / 1e12) << " TB/s, "
        << format("%.0f", c.flops_per_second / 1e12) << " TFLOP/s " << name(t) << " (" << c.basis
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
  out << "\nefficiencies of the step-time model: "
      << (embedded_fits().empty()
              ? default_parameters(measured_profiles().empty() ? nullptr
                                                               : &measured_profiles().front())
                    .source
              : embedded_fits().front().parameters.source)
      << "\n";
  return out.str();
}

}  // namespace ridgeline::planner
