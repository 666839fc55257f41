// `ridgeline plan`'s pipeline and its fit, accuracy and gpus subcommands (see plan.hpp).
#include "ridgeline/plan/plan.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <set>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/accuracy.hpp"
#include "ridgeline/core/schemas/plan.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
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
  if (v.is_string()) {
    std::string quoted(1, '"');
    quoted += v.get<std::string>();
    quoted += '"';
    return quoted;
  }
  return v.dump();
}

const std::vector<std::string> k_columns = {"gpu",
                                            "ceilings",
                                            "tensor_parallel",
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
                                            "ttft_at_slo_seconds",
                                            "tpot_at_slo_seconds",
                                            "rejected_requests",
                                            "output_tokens_per_second",
                                            "gpus_needed",
                                            "price_per_hour",
                                            "cost_per_million_output_tokens",
                                            "error"};

// One op group of a step as the plan writes it.
json group_json(const char* group, const op_group_time& g) {
  return {{"group", group},
          {"bound", std::string(name(g.bound))},
          {"seconds", g.seconds},
          {"floor_seconds", g.floor_seconds}};
}
// The groups a step has (an LM head only when it samples, an all-reduce only under TP).
json breakdown_json(const step_breakdown& b) {
  json a = json::array();
  a.push_back(group_json("linear", b.linear));
  if (b.lm_head.seconds > 0) a.push_back(group_json("lm_head", b.lm_head));
  a.push_back(group_json("attention", b.attention));
  if (b.all_reduce.seconds > 0) a.push_back(group_json("all_reduce", b.all_reduce));
  a.push_back(group_json("fixed", b.fixed));
  return a;
}

// "linear 4.12 memory, attention 0.35 memory, all-reduce 1.60 latency, fixed 0.16" (ms).
std::string breakdown_text(const json& groups) {
  std::string out;
  for (const auto& g : groups) {
    std::string name = g["group"].get<std::string>();
    std::replace(name.begin(), name.end(), '_', name == "all_reduce" ? '-' : ' ');
    if (name == "lm head") name = "LM head";
    out +=
        (out.empty() ? "" : ", ") + name + " " + format("%.2f", g["seconds"].get<double>() * 1e3);
    if (g["bound"] != "fixed") out += " " + g["bound"].get<std::string>();
  }
  return out;
}

// One tensor-parallel degree of one GPU, evaluated stage by stage (as a row is).
struct tp_evaluation {
  std::int32_t tp = 1;
  memory_plan mem;
  json option;  // plan_tp_option
  json row;     // the row's fields from the ceilings stage on, were this degree chosen
  std::string error;
  int stage = 0;  // 0: does not fit, 1: fits, 2: a batch meets the TPOT SLO, 3: a rate meets it
  double rate_per_gpu = 0;
  std::int64_t gpus_needed = 0;
};

}  // namespace

std::vector<resolved_gpu> resolve_gpus(const std::vector<std::string>& keys) {
  std::vector<resolved_gpu> gpus;
  for (const auto& key : keys) gpus.push_back(resolve_gpu(key));
  if (gpus.empty()) throw std::invalid_argument("plan: --gpu lists no GPU");
  return gpus;
}

workload load_plan_workload(const std::string& spec, std::int64_t requests,
                            std::int64_t* source_requests) {
  namespace fs = std::filesystem;
  const std::string ext = fs::path(spec).extension().string();
  if (ext == ".jsonl" || ext == ".csv" || fs::exists(spec)) {
    workload w = load_trace(spec);
    bool sessions = false;
    for (const auto& r : w.requests) sessions = sessions || r.follow_up || r.next_turn >= 0;
    if (source_requests) *source_requests = std::ssize(w.requests);
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
  if (source_requests) *source_requests = std::ssize(w.requests);
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
  const auto& slo = c["slo"];
  auto pct = [](const json& p) { return format("p%g", p.get<double>()); };
  std::ostringstream o;
  o << "ridgeline plan: " << c["model"].get<std::string>() << " ("
    << c["weights"].get<std::string>() << " weights, " << c["kv_dtype"].get<std::string>()
    << " KV), workload " << c["workload"].get<std::string>() << " ("
    << c["requests"].get<std::int64_t>() << " requests, mean prompt "
    << format("%.0f", c["mean_prompt_tokens"].get<double>()) << ", mean output "
    << format("%.0f", c["mean_output_tokens"].get<double>()) << "), SLO "
    << slo.value("terms", "goodput (a plan written before SLO terms)");
  const bool ttft_term = slo.contains("ttft_percentile"),
             tpot_term = slo.contains("tpot_percentile");
  if (ttft_term || tpot_term) o << " (percentiles over every request)";
  if (c.contains("goodput_target"))
    o << " (goodput is a share of requests: the others may take any time)";
  const std::string ttft_col = (ttft_term ? pct(slo["ttft_percentile"]) : "p99") + " TTFT ms";
  const std::string tpot_col = (tpot_term ? pct(slo["tpot_percentile"]) : "p99") + " TPOT ms";
  if (c["qps"].get<double>() > 0) o << ", target " << c["qps"].get<double>() << " req/s";
  o << "\n\n| GPU | ceilings | TP | max batch (fits) | tok/s | max batch (TPOT SLO) | step ms | "
       "tok/s | max req/s per GPU (SLO met) | "
    << ttft_col << " | " << tpot_col << " | GPUs for target | $/M output tok |\n";
  o << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  bool options = false;  // plans since tensor parallelism list the degrees weighed
  for (const auto& r : doc["rows"]) {
    options = options || r.contains("tp_options");
    o << "| " << r["gpu"].get<std::string>() << " | "
      << (r.value("derated", false) ? "datasheet-derated" : "measured") << " | "
      << (r.contains("tensor_parallel") ? r["tensor_parallel"].dump() : "") << " | ";
    if (r.contains("error") && !r.contains("max_batch_fit")) {
      o << r["error"].get<std::string>() << " ||||||||||\n";
      continue;
    }
    o << r["max_batch_fit"] << " | " << format("%.0f", r["fit_tokens_per_second"].get<double>())
      << " | ";
    if (!r.contains("max_batch_slo")) {
      o << "none: " << r["error"].get<std::string>() << " |||||||\n";
      continue;
    }
    o << r["max_batch_slo"] << " | " << format("%.2f", r["slo_step_seconds"].get<double>() * 1e3)
      << " | " << format("%.0f", r["slo_tokens_per_second"].get<double>()) << " | ";
    if (!r.contains("max_rate_per_gpu")) {
      o << "none: " << r["error"].get<std::string>() << " |||||\n";
      continue;
    }
    o << format("%.2f", r["max_rate_per_gpu"].get<double>())
      << (r.value("rate_capped", false) ? " (capped)" : "") << " | "
      << format("%.0f",
                r[ttft_term ? "ttft_at_slo_seconds" : "ttft_p99_seconds"].get<double>() * 1e3)
      << " | "
      << format("%.1f",
                r[tpot_term ? "tpot_at_slo_seconds" : "tpot_p99_seconds"].get<double>() * 1e3)
      << " | " << (r.contains("gpus_needed") ? r["gpus_needed"].dump() : "-") << " | "
      << (r.contains("cost_per_million_output_tokens")
              ? "$" + format("%.3f", r["cost_per_million_output_tokens"].get<double>())
              : "-")
      << " |\n";
  }
  if (options) {
    o << "\nTensor-parallel degrees weighed (TP GPUs per replica; weights and KV cache per GPU; "
         "the decode step at the TPOT batch, batch 1 when none meets it, as its op groups in ms "
         "with the bound that sets each one's floor):\n\n"
         "| GPU | TP | weights/GPU | KV cache/GPU | max batch (fits) | max batch (TPOT SLO) | "
         "step ms (batch) | op groups ms (bound) | req/s per replica | req/s per GPU | GPUs for "
         "target | $/M output tok | |\n"
         "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n";
    for (const auto& r : doc["rows"]) {
      for (const auto& t : r.value("tp_options", json::array())) {
        o << "| " << r["gpu"].get<std::string>() << " | " << t["tensor_parallel"] << " | ";
        o << (t["weight_bytes"].get<double>() > 0 ? format_gb(t["weight_bytes"].get<double>())
                                                  : "-")
          << " | "
          << (t["kv_blocks"].get<std::int64_t>() > 0 ? format_gb(t["kv_budget_bytes"].get<double>())
                                                     : "-");
        o << " | " << (t.contains("max_batch_fit") ? t["max_batch_fit"].dump() : "-") << " | "
          << (t.contains("max_batch_slo") ? t["max_batch_slo"].dump() : "-") << " | ";
        if (t.contains("step_seconds"))
          o << format("%.2f", t["step_seconds"].get<double>() * 1e3) << " (" << t["step_batch"]
            << ") | " << breakdown_text(t["step_breakdown"]);
        else
          o << "- | -";
        o << " | ";
        if (t.contains("max_rate_per_replica"))
          o << format("%.2f", t["max_rate_per_replica"].get<double>()) << " | "
            << format("%.2f", t["max_rate_per_gpu"].get<double>());
        else
          o << (t.contains("error") ? t["error"].get<std::string>() : "-") << " | -";
        o << " | " << (t.contains("gpus_needed") ? t["gpus_needed"].dump() : "-") << " | "
          << (t.contains("cost_per_million_output_tokens")
                  ? "$" + format("%.3f", t["cost_per_million_output_tokens"].get<double>())
                  : "-")
          << " | " << (t["chosen"].get<bool>() ? "chosen" : "") << " |\n";
      }
    }
    o << "\n";
    for (const auto& r : doc["rows"]) {
      for (const auto& t : r.value("tp_options", json::array())) {
        if (!t.contains("all_reduce")) continue;
        o << "all-reduce on " << r["gpu"].get<std::string>() << ": "
          << t["all_reduce"].get<std::string>() << "\n";
        break;
      }
    }
  }
  o << "\nceilings: measured = this GPU's probe; datasheet-derated = datasheet figures x the "
       "measured/datasheet ratios of the measured GPUs (see each row's ceilings_basis).\n"
    << "step-time model efficiencies: " << c["efficiencies"].get<std::string>() << "\n"
    << "each op group's time >= its floor max(bytes / bandwidth, FLOPs / peak); bound: what sets "
       "that floor (memory, compute; an all-reduce's latency or interconnect bandwidth); "
       "batch, step and tok/s are per replica\n";
  o << "max req/s per GPU = the highest arrival rate at which the replay meets every term of the "
       "SLO / TP: a percentile term at its percentile over every request (a rejected one never "
       "served), a goodput term as the share of requests within both limits";
  o << "; (capped) = the replay still met the SLO at the steady-state bound (decode tok/s at the "
       "TPOT batch / mean output tokens): the workload is too short to load the GPU further\n"
    << "GPUs for target = TP x ceil(qps / (max req/s per replica x (1 - headroom "
    << format("%.2f", c["headroom"].get<double>())
    << "))); $/M output tok = $/h x TP / (3600 x output tok/s of a replica at its max req/s) x "
       "1e6\n";
  return o.str();
}

json plan_document(const model_preset& m, const std::vector<resolved_gpu>& gpus, const workload& w,
                   const plan_options& a, const std::function<void(const std::string&)>& progress) {
  const slo& s = a.s;
  const double n = static_cast<double>(w.requests.size());
  const double mean_prompt = static_cast<double>(w.total_prompt_tokens()) / n;
  const double mean_output = static_cast<double>(w.total_output_tokens()) / n;
  if (arrival_rate(w) <= 0)
    throw std::invalid_argument("workload '" + w.source +
                                "': its arrivals span no time, so no rate can be searched");
  if (a.tensor_parallel.empty())
    throw std::invalid_argument("plan: no tensor-parallel degree to weigh");
  const double decode_context = mean_prompt + mean_output / 2;
  const auto kv_context = static_cast<std::int64_t>(std::ceil(mean_prompt + mean_output));

  json rows = json::array();
  std::string efficiencies;
  std::vector<std::string> failures;
  for (const auto& g : gpus) {
    const std::string key = g.profile.key;
    std::optional<ceilings> ce;  // when some degree fits (fp8 on a GPU without it throws then)
    const fitted_parameters fp = a.fit ? *a.fit : parameters_for(g.profile);
    auto price = a.prices.find(key);
    if (price == a.prices.end()) price = a.prices.find("*");

    auto evaluate_degree = [&](std::int32_t tp) {
      tp_evaluation e;
      e.tp = tp;
      e.option = {{"tensor_parallel", tp},
                  {"weight_bytes", 0.0},
                  {"kv_budget_bytes", 0.0},
                  {"kv_blocks", 0},
                  {"chosen", false}};
      auto stop = [&](const std::string& why) {
        e.error = why;
        e.option["error"] = why;
        return e;
      };
      if (const std::string why = tensor_parallel_why_not(m, tp); !why.empty()) return stop(why);
      memory_options mo = a.memory;
      mo.tensor_parallel = tp;
      e.mem = plan_memory(m, static_cast<double>(g.profile.memory_bytes), mo, gpu_label(key));
      e.option["weight_bytes"] = e.mem.weight_bytes;
      e.option["kv_budget_bytes"] = e.mem.kv_budget_bytes;
      e.option["kv_blocks"] = e.mem.kv_blocks;
      if (!e.mem.fits) return stop(e.mem.why_not);
      model_options opts;
      opts.weights = mo.weights;
      opts.kv_dtype = mo.kv_dtype;
      opts.block_tokens = mo.block_tokens;
      opts.tensor_parallel = tp;
      try {
        opts.all_reduce = all_reduce_cost_of(g.profile, tp);
      } catch (const std::invalid_argument& x) {
        return stop(x.what());
      }
      if (!ce)
        ce = ceilings_of(g.profile, compute_dtype_for(mo.weights, g.profile), measured_profiles());
      e.stage = 1;
      efficiencies = fp.source;
      const fitted_step_time_model model(m, *ce, fp, opts);
      e.row = {{"tensor_parallel", tp}, {"step_time_model", model.description()}};
      if (tp > 1) {
        e.option["all_reduce"] = opts.all_reduce.basis;
        e.row["all_reduce"] = opts.all_reduce.basis;
      }
      const batch_limits bl = find_batch_limits(model, e.mem, decode_context, kv_context,
                                                s.tpot_seconds, a.max_running);
      if (bl.max_fit.batch > 0) {
        e.option["max_batch_fit"] = bl.max_fit.batch;
        e.row["max_batch_fit"] = bl.max_fit.batch;
        e.row["fit_step_seconds"] = bl.max_fit.step_seconds;
        e.row["fit_tokens_per_second"] = bl.max_fit.tokens_per_second;
        const std::int64_t batch = bl.max_slo ? bl.max_slo->batch : 1;
        const step_breakdown br = model.breakdown(
            decode_shape(batch, static_cast<std::int64_t>(std::llround(decode_context))));
        e.option["step_batch"] = batch;
        e.option["step_seconds"] = br.seconds();
        e.option["step_breakdown"] = breakdown_json(br);
        if (bl.max_slo) e.row["slo_step_breakdown"] = breakdown_json(br);
      }
      if (!bl.max_slo) return stop(bl.why);
      e.stage = 2;
      e.option["max_batch_slo"] = bl.max_slo->batch;
      e.row["max_batch_slo"] = bl.max_slo->batch;
      e.row["slo_step_seconds"] = bl.max_slo->step_seconds;
      e.row["slo_tokens_per_second"] = bl.max_slo->tokens_per_second;

      simulation_config sc;
      sc.kv = make_kv_cache_config(tensor_parallel_shard(m, tp), mo.kv_dtype, mo.block_tokens,
                                   static_cast<std::int32_t>(std::min<std::int64_t>(
                                       e.mem.kv_blocks, std::int64_t{1} << 30)));
      sc.scheduler.max_running = static_cast<std::int32_t>(bl.max_slo->batch);
      sc.scheduler.max_batched_tokens = a.max_batched_tokens;
      sc.scheduler.max_model_len = m.max_context;
      sc.scheduler.record_itl = false;
      validate(sc.scheduler);
      if (progress)
        progress(key + (tp > 1 ? " TP " + std::to_string(tp) : "") +
                 ": searching the request rate");
      // No steady state serves more output tokens per second than the TPOT batch decodes.
      const double cap = bl.max_slo->tokens_per_second / mean_output;
      const rate_result rr = max_rate(w, sc, model, s, cap, cap);
      e.row["simulations"] = rr.simulations;
      if (!rr.feasible) return stop(rr.why);
      e.stage = 3;
      const goodput_eval& best = rr.best;
      e.rate_per_gpu = best.rate / tp;
      e.row["max_rate_per_gpu"] = e.rate_per_gpu;
      e.row["goodput_fraction"] = best.fraction;
      e.row["goodput_requests_per_second"] = best.goodput / tp;
      e.row["ttft_p99_seconds"] = best.ttft_p99;
      e.row["tpot_p99_seconds"] = best.tpot_p99;
      if (s.ttft_percentile > 0) e.row["ttft_at_slo_seconds"] = best.ttft_at_slo;
      if (s.tpot_percentile > 0) e.row["tpot_at_slo_seconds"] = best.tpot_at_slo;
      e.row["rejected_requests"] = best.rejected;
      e.row["rate_capped"] = rr.capped;
      const double out_tok = best.rate * mean_output / tp;  // per GPU
      e.row["output_tokens_per_second"] = out_tok;
      e.option["max_rate_per_replica"] = best.rate;
      e.option["max_rate_per_gpu"] = e.rate_per_gpu;
      e.option["ttft_p99_seconds"] = best.ttft_p99;
      e.option["tpot_p99_seconds"] = best.tpot_p99;
      if (a.qps > 0) {
        e.gpus_needed = tp * static_cast<std::int64_t>(
                                 std::ceil(a.qps / (best.rate * (1 - a.headroom)) - 1e-9));
        e.row["gpus_needed"] = e.gpus_needed;
        e.option["gpus_needed"] = e.gpus_needed;
      }
      if (price != a.prices.end()) {
        const double cost = price->second / (3600 * out_tok) * 1e6;
        e.row["price_per_hour"] = price->second;
        e.row["cost_per_million_output_tokens"] = cost;
        e.option["cost_per_million_output_tokens"] = cost;
        if (a.qps > 0) e.row["fleet_cost_per_hour"] = price->second * double(e.gpus_needed);
      }
      return e;
    };

    std::vector<tp_evaluation> options;
    for (const std::int32_t tp : a.tensor_parallel) options.push_back(evaluate_degree(tp));
    // The chosen degree: meets the SLO with the fewest GPUs for the target, then the most
    // requests per GPU, then the fewest GPUs per replica; else the one that got furthest.
    auto better = [&](const tp_evaluation& x, const tp_evaluation& y) {
      if (x.stage != y.stage && (x.stage == 3 || y.stage == 3)) return x.stage == 3;
      if (x.stage == 3) {
        if (a.qps > 0 && x.gpus_needed != y.gpus_needed) return x.gpus_needed < y.gpus_needed;
        if (x.rate_per_gpu != y.rate_per_gpu) return x.rate_per_gpu > y.rate_per_gpu;
        return x.tp < y.tp;
      }
      if (x.stage != y.stage) return x.stage > y.stage;
      return x.tp < y.tp;
    };
    std::size_t chosen = 0;
    for (std::size_t i = 1; i < options.size(); ++i)
      if (better(options[i], options[chosen])) chosen = i;
    tp_evaluation& c = options[chosen];
    c.option["chosen"] = true;

    json row = {{"gpu", key},
                {"gpu_name", g.profile.name},
                {"profile", g.origin},
                {"memory_bytes", g.profile.memory_bytes},
                {"context", decode_context},
                {"weight_bytes", c.mem.weight_bytes},
                {"workspace_bytes", c.mem.workspace_bytes},
                {"kv_budget_bytes", c.mem.kv_budget_bytes},
                {"kv_bytes_per_token", c.mem.kv_bytes_per_token},
                {"kv_blocks", c.mem.kv_blocks},
                {"derated", ce ? ce->derated : !g.measured}};
    row["tp_options"] = json::array();
    for (const auto& e : options) row["tp_options"].push_back(e.option);
    if (c.stage >= 1) {
      row["ceilings"] = ce->derated ? "datasheet-derated" : "measured";
      row["ceilings_basis"] = ce->basis;
      row["bytes_per_second"] = ce->bytes_per_second;
      row["flops_per_second"] = ce->flops_per_second;
      row["compute_dtype"] = std::string(name(ce->compute_dtype));
      row.update(c.row);
    }
    if (!c.error.empty()) {
      std::string why = c.error;
      // No degree fits: name the largest one's reason too (the one with the most memory).
      const tp_evaluation& last = options.back();
      if (c.stage == 0 && &last != &c)
        why += "; at TP " + std::to_string(last.tp) + ": " + last.error;
      row["error"] = why;
      failures.push_back(key + ": " + why);
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
  config.weights = std::string(name(a.memory.weights));
  config.kv_dtype = std::string(name(a.memory.kv_dtype));
  config.workload = w.source;
  config.requests = static_cast<std::int64_t>(w.requests.size());
  config.mean_prompt_tokens = mean_prompt;
  config.mean_output_tokens = mean_output;
  config.workload_rate_per_second = arrival_rate(w);
  config.slo = {s.ttft_seconds, s.tpot_seconds, s.text(), std::nullopt, std::nullopt};
  if (s.ttft_percentile > 0) config.slo.ttft_percentile = s.ttft_percentile;
  if (s.tpot_percentile > 0) config.slo.tpot_percentile = s.tpot_percentile;
  if (s.goodput_target > 0) config.goodput_target = s.goodput_target;
  config.qps = a.qps;
  config.headroom = a.headroom;
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
       "highest arrival rate (bisection) at which every SLO term holds, simulated with the "
       "engine's scheduler and KV manager; per GPU = per replica / TP"},
      {"slo_terms",
       "a percentile term holds when that percentile over every request (a rejected one never "
       "served) is within its limit; a goodput term when at least goodput_target of the "
       "requests have TTFT and TPOT within their limits"},
      {"goodput", "finished requests per second with TTFT <= SLO_ttft and TPOT <= SLO_tpot"},
      {"tensor_parallel",
       "GPUs per replica, the model split by heads; the degree chosen meets the SLO with the "
       "fewest GPUs for qps, then the most requests per GPU, then the fewest GPUs per replica"},
      {"step_breakdown",
       "op groups of the decode step: seconds >= floor_seconds = max(bytes / bandwidth, FLOPs / "
       "peak) (an all-reduce: latency + bytes / bus bandwidth); bound = what sets the floor"},
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

fitted_parameters fit_sweep_files(const std::vector<std::string>& paths, const gpu_profile& g,
                                  const std::string& kernels_path) {
  if (paths.empty()) throw std::invalid_argument("fit: no sweep given");
  return fit_files(paths, {}, g, kernels_path);
}

serving_fit_input read_serving_fit_input(const std::string& path, const gpu_profile& g) {
  const schema::serving_results doc = schema::read_serving_results(path);
  const schema::serving_row* row = nullptr;
  for (const auto& r : doc.rows) {
    if (r.measured && !r.measured->steps.gpu_seconds.empty()) {
      if (row)
        throw std::invalid_argument(path +
                                    ": more than one row has measured steps: give one "
                                    "run per file");
      row = &r;
    }
  }
  if (!row)
    throw std::invalid_argument(path +
                                ": no row has measured.steps (a `ridgeline replay` result "
                                "records every step; a `kv` simulation or a `load` over HTTP "
                                "does not)");
  const std::string key = g.key.empty() ? g.name : g.key;
  if (doc.config.gpu != key)
    throw std::invalid_argument(path + ": config.gpu is '" + doc.config.gpu +
                                "', the fit's --gpu '" + key +
                                "': fit runs on the profile of the GPU they ran on");
  serving_fit_input in;
  in.model = doc.config.model;
  in.gpu = g;
  in.label = path;
  in.steps =
      serving_step_points(row->measured->steps, model_preset_by_name(doc.config.model), path);
  return in;
}

fitted_parameters fit_files(const std::vector<std::string>& sweeps,
                            const std::vector<std::string>& serving, const gpu_profile& g,
                            const std::string& kernels_path) {
  if (sweeps.empty() && serving.empty())
    throw std::invalid_argument("plan fit: give --sweep FILE or --serving RUN (or both)");
  std::vector<fit_input> inputs;
  for (const auto& s : sweeps) {
    try {
      inputs.push_back({read_json_file(s), g, s});
      sweep_points(inputs.back().sweep);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(s + ": " + e.what());
    }
  }
  std::vector<serving_fit_input> runs;
  for (const auto& r : serving) runs.push_back(read_serving_fit_input(r, g));
  fit_options o;
  if (!kernels_path.empty())
    o.fixed = fixed_costs_from_kernels(read_json_file(kernels_path), kernels_path);
  fitted_parameters f = fit_calibration(inputs, runs, o);
  if (!kernels_path.empty()) f.stats["kernels"] = kernels_path;
  for (const auto& [by, key] :
       {std::pair{held_out::batch, "held_out_batch"}, {held_out::context, "held_out_context"}}) {
    if (!runs.empty())
      break;  // sweep cross-validation: of sweep fits (a serving fit leaves runs out)
    std::set<std::int64_t> values;
    for (const auto& in : inputs) {
      for (const auto& p : sweep_points(in.sweep))
        values.insert(by == held_out::batch ? p.batch : p.context);
    }
    if (values.size() < 2) continue;
    const accuracy_report r = held_out_accuracy(inputs, by, o);
    f.stats[key] = {{"mape", r.mape}, {"worst_abs_error", r.worst}, {"points", r.rows.size()}};
  }
  if (!runs.empty()) {
    // The same steps under the embedded fit of the GPU (sweeps only, no loop gap): the before.
    const fitted_parameters embedded = parameters_for(g);
    json before = json::array();
    for (const auto& in : runs) {
      before.push_back(to_json(serving_step_accuracy_of(in, embedded)));
    }
    f.stats["embedded_fit_serving_runs"] = {{"fit", embedded.source}, {"runs", before}};
  }
  if (runs.size() >= 2) {
    json per_run = json::array();
    double abs_sum = 0;
    std::int64_t steps = 0;
    for (const auto& a : held_out_runs(inputs, runs, o)) {
      per_run.push_back(to_json(a));
      abs_sum += a.mape * static_cast<double>(a.steps);
      steps += a.steps;
    }
    f.stats["held_out_runs"] = {
        {"runs", per_run},
        {"mape", abs_sum / static_cast<double>(std::max<std::int64_t>(steps, 1))},
        {"steps", steps}};
  }
  return f;
}

fitted_parameters refit_without(const fitted_parameters& f, const std::string& leave_out,
                                const gpu_profile& g) {
  auto list = [&](const char* key) {
    std::vector<std::string> out;
    if (!f.stats.contains(key)) return out;
    if (!f.stats[key].is_array())
      throw std::invalid_argument(std::string("fit: stats.") + key + " must be an array of paths");
    for (const auto& v : f.stats[key]) {
      if (!v.is_string())
        throw std::invalid_argument(std::string("fit: stats.") + key + " holds a non-string");
      out.push_back(v.get<std::string>());
    }
    return out;
  };
  const std::vector<std::string> sweeps = list("sweeps");
  std::vector<std::string> serving;
  bool found = false;
  for (const auto& r : list("serving")) {
    if (std::filesystem::path(r).lexically_normal() ==
        std::filesystem::path(leave_out).lexically_normal())
      found = true;
    else
      serving.push_back(r);
  }
  if (!found)
    throw std::invalid_argument("fit: '" + leave_out + "' is not among the fit's serving runs");
  std::string kernels;
  if (f.stats.contains("kernels")) {
    if (!f.stats["kernels"].is_string())
      throw std::invalid_argument("fit: stats.kernels must be a path");
    kernels = f.stats["kernels"].get<std::string>();
  }
  fit_options o;
  if (!kernels.empty()) o.fixed = fixed_costs_from_kernels(read_json_file(kernels), kernels);
  std::vector<fit_input> inputs;
  for (const auto& s : sweeps) inputs.push_back({read_json_file(s), g, s});
  std::vector<serving_fit_input> runs;
  for (const auto& r : serving) runs.push_back(read_serving_fit_input(r, g));
  return fit_calibration(inputs, runs, o);
}

std::string fit_text(const fitted_parameters& f) {
  std::ostringstream o;
  auto pct = [](const json& v) { return format("%.2f", 100 * v.get<double>()) + "%"; };
  o << "ridgeline plan fit: " << f.source << ", " << f.stats["points"] << " sweep points";
  if (f.stats.contains("serving_steps")) o << ", " << f.stats["serving_steps"] << " serving steps";
  o << "\n";
  if (f.stats.contains("mape"))
    o << "  in-sample error (sweeps): MAPE " << pct(f.stats["mape"]) << ", worst "
      << pct(f.stats["worst_abs_error"]) << "\n";
  auto run_line = [&](const json& r) {
    o << "    " << r["label"].get<std::string>() << ": " << r["steps"] << " steps, MAPE "
      << pct(r["mape"]) << ", median error " << pct(r["median_error"]) << ", predicted / measured "
      << format("%.4f", r["total_ratio"].get<double>()) << "; period (loop gap + step) MAPE "
      << pct(r["period_mape"]) << ", ratio "
      << format("%.4f", r["period_total_ratio"].get<double>()) << "\n";
  };
  if (f.stats.contains("embedded_fit_serving_runs")) {
    o << "  before: the embedded fit of the GPU ("
      << f.stats["embedded_fit_serving_runs"]["fit"].get<std::string>()
      << ", no loop gap) on the same steps:\n";
    for (const auto& r : f.stats["embedded_fit_serving_runs"]["runs"]) run_line(r);
  }
  if (f.stats.contains("serving_runs")) {
    o << "  in sample, serving steps (forward time):\n";
    for (const auto& r : f.stats["serving_runs"]) run_line(r);
  }
  if (f.stats.contains("held_out_runs")) {
    o << "  held out (leave one run out), serving steps: MAPE "
      << pct(f.stats["held_out_runs"]["mape"]) << " over " << f.stats["held_out_runs"]["steps"]
      << " steps\n";
    for (const auto& r : f.stats["held_out_runs"]["runs"]) run_line(r);
  }
  if (f.loop.measured()) o << "  loop gap: " << f.loop.source << "\n";
  for (const auto& [key, what] :
       {std::pair{"held_out_batch", "one batch size"}, {"held_out_context", "one context"}}) {
    if (!f.stats.contains(key)) continue;
    o << "  held out (leave " << what << " out): MAPE " << pct(f.stats[key]["mape"]) << ", worst "
      << pct(f.stats[key]["worst_abs_error"]) << "\n";
  }
  o << "  fixed cost: " << format("%.2f", f.fixed.per_step_seconds * 1e6) << " us per step + "
    << format("%.2f", f.fixed.per_layer_seconds * 1e6) << " us per layer (" << f.fixed.source
    << ")\n"
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
  accuracy_result r{
      sweep_label, m.name, g.profile.key, ce, model.description(), accuracy(points, model), {}};
  for (const auto& row : r.report.rows)
    r.op_groups.push_back(breakdown_text(breakdown_json(model.breakdown(shape_of(row.point)))));
  return r;
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
    << "| phase | batch | context | measured ms | predicted ms | error | op groups ms (bound) |\n"
    << "|---|---:|---:|---:|---:|---:|---|\n";
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    o << "| " << row.point.phase << " | " << row.point.batch << " | " << row.point.context << " | "
      << format("%.3f", row.point.seconds * 1e3) << " | "
      << format("%.3f", row.predicted_seconds * 1e3) << " | " << format("%.1f", 100 * row.error)
      << "% | " << (i < a.op_groups.size() ? a.op_groups[i] : "") << " |\n";
  }
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
         "fp8 TFLOP/s | planner ceilings | all-reduce (TP 8) | citation |\n"
         "|---|---|---:|---:|---:|---:|---|---|---|\n";
  std::vector<std::string> seen;
  auto line = [&](const gpu_profile& g, const std::string& citation) {
    const dtype t = compute_dtype_for(weight_format::bf16, g);
    const ceilings c = ceilings_of(g, t, measured_profiles());
    const auto fp8 = g.peaks.find(dtype::fp8_e4m3);
    const auto pk = g.peaks.find(t);
    out << "| " << g.key << " | " << (c.derated ? "datasheet" : "measured") << " | "
        << format("%.1f", static_cast<double>(g.memory_bytes) / 1e9) << " | "
        << format("%.2f", g.datasheet_bytes_per_second / 1e12) << " | "
        << (pk != g.peaks.end() ? format("%.1f", pk->second.datasheet_flops_per_second / 1e12)
                                : "-")
        << " | "
        << (fp8 != g.peaks.end() ? format("%.1f", fp8->second.datasheet_flops_per_second / 1e12)
                                 : "-")
        << " | " << format("%.2f", c.bytes_per_second / 1e12) << " TB/s, "
        << format("%.0f", c.flops_per_second / 1e12) << " TFLOP/s " << name(t) << " (" << c.basis
        << ") | " << all_reduce_cost_of(g, 8).basis << " | " << citation << " |\n";
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
      << "\nall-reduce: latency + 2 (n - 1) / n x bytes / bus bandwidth; from the profile's "
         "measured all-reduce rows where it has them, else the datasheet interconnect (per "
         "direction) with an assumed latency\n";
  return out.str();
}

}  // namespace ridgeline::planner
