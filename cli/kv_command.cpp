// `ridgeline kv`: replays a trace or a generated workload through the scheduler, the paged KV
// cache and the simulated executor once per cache capacity, and reports the prefix-cache hit rate
// (tokens and blocks) against capacity, what hits saved and misses recomputed, and latency
// distributions per capacity. JSON (schema ridgeline.kv/v1), CSV and a table. docs/kv.md.
// With --metrics-address the replay feeds live Prometheus metrics (docs/metrics.md).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.hpp"
#include "metrics_options.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/files.hpp"

namespace ridgeline::cli {
namespace {

struct kv_args {
  std::string trace;
  std::string generator;
  std::string model = "llama-3-8b";
  std::string gpu = "h100-sxm";
  std::string capacity = "unlimited,50%,20%,10%,5%,2%";
  std::int32_t block_tokens = 16;
  std::string kv_dtype = "bf16";
  std::string host_memory = "0";
  double pcie_gb_per_second = 25;
  std::int32_t max_running = 256;
  std::int64_t max_batched_tokens = 8192;
  bool no_chunked_prefill = false;
  std::int64_t max_model_len = -1;  // -1: the model's context
  std::int32_t mooncake_block = 512;
  double overhead_us = 0;
  std::string output = "ridgeline-kv.json";
  std::string csv;
  bool json = false;
  metrics_options live;
};

struct capacity_point {
  std::string label;
  std::int64_t blocks = 0;
};

// "unlimited", "25%" (of unlimited), "4096" (blocks) or "8GiB" (bytes of KV).
std::vector<capacity_point> parse_capacities(const std::string& list, std::int64_t unlimited,
                                             const model_preset& m, dtype kv_dtype,
                                             std::int32_t block_tokens) {
  std::vector<capacity_point> out;
  for (const auto& item : split_list(list, ',')) {
    capacity_point p{item, 0};
    if (item == "unlimited" || item == "inf") {
      p.blocks = unlimited;
    } else if (item.back() == '%') {
      double pct = 0;
      try {
        std::size_t pos = 0;
        pct = std::stod(item.substr(0, item.size() - 1), &pos);
        if (pos != item.size() - 1) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw std::invalid_argument("bad capacity '" + item + "' (e.g. 25%)");
      }
      if (!(pct > 0 && pct <= 100))
        throw std::invalid_argument("capacity '" + item + "' must be in (0%, 100%]");
      p.blocks =
          std::max<std::int64_t>(1, std::llround(static_cast<double>(unlimited) * pct / 100));
    } else if (item.find_first_not_of("0123456789") == std::string::npos) {
      p.blocks = std::stoll(item.substr(0, 12));
      if (p.blocks < 1 || item.size() > 11)
        throw std::invalid_argument("capacity '" + item + "' blocks out of range");
    } else {
      p.blocks = blocks_for_budget(m, kv_dtype, block_tokens,
                                   static_cast<std::int64_t>(parse_bytes(item)));
    }
    if (p.blocks > (1LL << 30))
      throw std::invalid_argument("capacity '" + item + "' is absurd (over 2^30 blocks)");
    out.push_back(p);
  }
  if (out.empty()) throw std::invalid_argument("--capacity lists no capacity");
  return out;
}

gpu_profile resolve_gpu(const std::string& spec) {
  if (const datasheet_entry* ds = datasheet_by_key(spec)) {
    gpu_profile g;
    g.name = ds->name;
    g.key = ds->key;
    g.source = "datasheet";
    g.memory_bytes = ds->memory_bytes;
    g.datasheet_bytes_per_second = ds->dram_bytes_per_second;
    for (const auto& [t, f] : ds->flops_per_second) g.peaks[t].datasheet_flops_per_second = f;
    return g;
  }
  if (spec.find('/') == std::string::npos && spec.find(".json") == std::string::npos) {
    std::string keys;
    for (const auto& e : datasheet_table()) keys += (keys.empty() ? "" : ", ") + std::string(e.key);
    throw std::invalid_argument("unknown GPU '" + spec +
                                "' (a profile JSON path or one of: " + keys + ")");
  }
  return load_gpu_profile(spec);
}

nlohmann::json dist_json(std::vector<double>& v) {
  nlohmann::json j = {{"count", v.size()}};
  if (v.empty()) return j;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  j["mean"] = sum / static_cast<double>(v.size());
  j["p50"] = bench::quantile_sorted(v, 0.5);
  j["p90"] = bench::quantile_sorted(v, 0.9);
  j["p99"] = bench::quantile_sorted(v, 0.99);
  j["max"] = v.back();
  // [quantile, seconds] pairs for a CDF plot (ridgeline report): every 5% plus the tail.
  nlohmann::json cdf = nlohmann::json::array();
  for (int i = 0; i <= 20; ++i) {
    const double q = i / 20.0;
    cdf.push_back({q, bench::quantile_sorted(v, q)});
    if (i == 19) {
      cdf.push_back({0.99, bench::quantile_sorted(v, 0.99)});
      cdf.push_back({0.999, bench::quantile_sorted(v, 0.999)});
    }
  }
  j["cdf"] = cdf;
  return j;
}

double ratio(std::int64_t a, std::int64_t b) {
  return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

nlohmann::json row_json(const capacity_point& cap, const kv_cache_config& kvc,
                        simulation_result& r) {
  const auto& k = r.kv;
  std::vector<double> ttft, tpot, e2e;
  for (const auto& q : r.requests) {
    if (q.outcome != request_outcome::finished) continue;
    ttft.push_back(q.ttft_seconds());
    e2e.push_back(q.e2e_seconds());
    if (q.has_tpot()) tpot.push_back(q.tpot_seconds());
  }
  std::map<std::string, std::int64_t> reasons;
  for (const auto& q : r.requests) {
    if (q.outcome == request_outcome::rejected) ++reasons[q.reject_kind];
  }
  nlohmann::json j = {
      {"capacity", cap.label},
      {"capacity_blocks", cap.blocks},
      {"capacity_tokens", cap.blocks * kvc.block_tokens},
      {"capacity_bytes", cap.blocks * kvc.bytes_per_block},
      {"requests", r.requests.size()},
      {"finished", r.finished},
      {"rejected", r.rejected},
      {"rejected_by_reason", reasons},
      {"lookup_tokens", k.lookup_tokens},
      {"hit_tokens", k.hit_tokens_tier1 + k.hit_tokens_tier2},
      {"hit_tokens_tier1", k.hit_tokens_tier1},
      {"hit_tokens_tier2", k.hit_tokens_tier2},
      {"token_hit_rate", ratio(k.hit_tokens_tier1 + k.hit_tokens_tier2, k.lookup_tokens)},
      {"lookup_blocks", k.lookup_blocks},
      {"hit_blocks", k.hit_blocks_tier1 + k.hit_blocks_tier2},
      {"block_hit_rate", ratio(k.hit_blocks_tier1 + k.hit_blocks_tier2, k.lookup_blocks)},
      {"evictions_tier1", k.evictions_tier1},
      {"evictions_tier2", k.evictions_tier2},
      {"tier2_blocks_loaded", k.tier2_blocks_loaded},
      {"preemptions", r.scheduling.preemptions},
      {"recomputed_tokens", k.recomputed_tokens},
      {"preempted_tokens_recomputed", r.scheduling.preempted_tokens_recomputed},
      {"flops_saved", r.flops_saved},
      {"seconds_saved", r.seconds_saved},
      {"recompute_flops", r.recompute_flops},
      {"recompute_seconds", r.recompute_seconds},
      {"prefill_tokens_computed", r.prefill_tokens_computed},
      {"decode_tokens", r.decode_tokens},
      {"steps", r.steps},
      {"simulated_seconds", r.simulated_seconds},
      {"busy_seconds", r.busy_seconds},
      {"output_tokens_per_second",
       r.simulated_seconds > 0
           ? static_cast<double>(r.decode_tokens + r.finished) / r.simulated_seconds
           : 0.0},
      {"peak_used_blocks", r.peak_used_blocks},
      {"peak_running", r.peak_running},
      {"ttft_seconds", dist_json(ttft)},
      {"tpot_seconds", dist_json(tpot)},
      {"itl_seconds", dist_json(r.itl_seconds)},
      {"e2e_seconds", dist_json(e2e)},
  };
  return j;
}

nlohmann::json definitions() {
  return {
      {"token_hit_rate",
       "prompt tokens served from cache (tier 1 + tier 2) / prompt tokens looked up, first "
       "admission of each request"},
      {"block_hit_rate", "full prompt blocks served from cache / full prompt blocks looked up"},
      {"ttft_seconds", "TTFT = first output token time - arrival"},
      {"tpot_seconds", "TPOT = (E2E - TTFT) / (output_tokens - 1), requests with > 1 output token"},
      {"itl_seconds", "ITL = gap between consecutive output tokens of one request, over all gaps"},
      {"e2e_seconds", "E2E = last token time - arrival"},
      {"recomputed_tokens",
       "missed prompt tokens in full blocks that had been computed before (evicted)"},
      {"preempted_tokens_recomputed",
       "tokens computed again after preemption, less cache hits at resume"},
      {"flops_saved", "sum over finished requests of prefill FLOPs of their cached prefix"},
      {"seconds_saved",
       "sum of max(prefill FLOPs / peak, KV bytes written / bandwidth) of cached prefixes"},
      {"recompute_flops",
       "prefill FLOPs spent on recomputed_tokens and preempted_tokens_recomputed"},
      {"output_tokens_per_second", "output tokens / simulated seconds"},
  };
}

std::string csv_of(const nlohmann::json& rows) {
  const std::vector<std::string> cols = {
      "capacity",          "capacity_blocks",   "capacity_bytes",
      "requests",          "finished",          "rejected",
      "lookup_tokens",     "hit_tokens",        "hit_tokens_tier2",
      "token_hit_rate",    "lookup_blocks",     "hit_blocks",
      "block_hit_rate",    "evictions_tier1",   "evictions_tier2",
      "preemptions",       "recomputed_tokens", "preempted_tokens_recomputed",
      "flops_saved",       "seconds_saved",     "recompute_flops",
      "recompute_seconds", "simulated_seconds", "output_tokens_per_second"};
  const std::vector<std::string> dists = {"ttft_seconds", "tpot_seconds", "itl_seconds",
                                          "e2e_seconds"};
  std::ostringstream o;
  o << std::setprecision(10);
  for (std::size_t i = 0; i < cols.size(); ++i) o << (i ? "," : "") << cols[i];
  for (const auto& d : dists) o << "," << d << "_p50," << d << "_p90," << d << "_p99";
  o << "\n";
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < cols.size(); ++i) {
      const auto& v = r.at(cols[i]);
      o << (i ? "," : "");
      if (v.is_string())
        o << v.get<std::string>();
      else
        o << v.dump();
    }
    for (const auto& d : dists) {
      for (const char* q : {"p50", "p90", "p99"}) {
        o << ",";
        if (r.at(d).contains(q)) o << r.at(d).at(q).get<double>();
      }
    }
    o << "\n";
  }
  return o.str();
}

std::string table_of(const nlohmann::json& doc) {
  std::ostringstream o;
  const auto& cfg = doc.at("config");
  o << "ridgeline kv: " << cfg.at("workload").get<std::string>() << ", "
    << cfg.at("requests").get<std::int64_t>() << " requests, " << cfg.at("model").get<std::string>()
    << " on " << cfg.at("gpu").get<std::string>() << ", blocks of "
    << cfg.at("block_tokens").get<int>() << " tokens\n\n";
  o << "| capacity | blocks | KV GiB | token hit | block hit | evictions | preempt | recomputed "
       "tok | rejected | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | E2E p50 s |\n";
  o << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  auto ms = [](const nlohmann::json& d, const char* q) {
    std::ostringstream s;
    if (d.contains(q))
      s << std::fixed << std::setprecision(1) << d.at(q).get<double>() * 1e3;
    else
      s << "-";
    return s.str();
  };
  for (const auto& r : doc.at("rows")) {
    o << std::fixed;
    o << "| " << r.at("capacity").get<std::string>() << " | "
      << r.at("capacity_blocks").get<std::int64_t>() << " | " << std::setprecision(2)
      << static_cast<double>(r.at("capacity_bytes").get<std::int64_t>()) / (1LL << 30) << " | "
      << std::setprecision(1) << 100 * r.at("token_hit_rate").get<double>() << "% | "
      << 100 * r.at("block_hit_rate").get<double>() << "% | "
      << r.at("evictions_tier1").get<std::int64_t>() << " | "
      << r.at("preemptions").get<std::int64_t>() << " | "
      << r.at("recomputed_tokens").get<std::int64_t>() << " | "
      << r.at("rejected").get<std::int64_t>() << " | " << ms(r.at("ttft_seconds"), "p50") << " | "
      << ms(r.at("ttft_seconds"), "p99") << " | " << ms(r.at("tpot_seconds"), "p50") << " | "
      << std::setprecision(2)
      << (r.at("e2e_seconds").contains("p50") ? r.at("e2e_seconds").at("p50").get<double>() : 0.0)
      << " |\n";
  }
  o << "\ntoken hit = prompt tokens served from cache / prompt tokens looked up (docs/kv.md)\n";
  return o.str();
}

void run_kv_command(const kv_args& a, context& ctx) {
  if (a.trace.empty() == a.generator.empty()) {
    throw std::invalid_argument("kv: give exactly one of --trace FILE or --generator SPEC");
  }
  const model_preset& m = model_preset_by_name(a.model);
  const dtype kv_dtype = parse_dtype(a.kv_dtype);
  if (a.block_tokens < 1 || a.block_tokens > 65536) {
    throw std::invalid_argument("--block-size must be in [1, 65536], got " +
                                std::to_string(a.block_tokens));
  }
  if (!(a.pcie_gb_per_second > 0)) throw std::invalid_argument("--pcie-gbps must be positive");
  if (a.overhead_us < 0) throw std::invalid_argument("--overhead-us must not be negative");
  const gpu_profile gpu = resolve_gpu(a.gpu);
  roofline_options ro;
  ro.kv_dtype = kv_dtype;
  ro.overhead_seconds = a.overhead_us * 1e-6;
  ro.pcie_bytes_per_second = a.pcie_gb_per_second * 1e9;
  ro.block_tokens = a.block_tokens;
  const roofline_step_time_model model(m, gpu, ro);
  scheduler_config sc;
  sc.max_running = a.max_running;
  sc.max_batched_tokens = a.max_batched_tokens;
  sc.chunked_prefill = !a.no_chunked_prefill;
  sc.max_model_len = a.max_model_len < 0 ? m.max_context : a.max_model_len;
  validate(sc);
  const std::int64_t host_bytes =
      a.host_memory == "0" ? 0 : static_cast<std::int64_t>(parse_bytes(a.host_memory));
  // Refuse unwritable outputs before the replays, not after.
  if (!a.output.empty()) check_writable(a.output);
  if (!a.csv.empty()) check_writable(a.csv);

  const workload w = a.trace.empty() ? generate_workload(parse_generator_spec(a.generator))
                                     : load_trace(a.trace, a.mooncake_block);
  const std::int64_t unlimited = unlimited_blocks(w, a.block_tokens);
  const auto caps = parse_capacities(a.capacity, unlimited, m, kv_dtype, a.block_tokens);

  metrics_session session(a.live, ctx);
  if (auto* live = session.live()) {
    live->set_ceilings(std::string(name(ro.compute_dtype)),
                       gpu.peak_flops_per_second(ro.compute_dtype), gpu.dram_bytes_per_second());
  }

  const bool bar = progress_bar_wanted(ctx);
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i = 0; i < caps.size(); ++i) {
    simulation_config c;
    c.kv = make_kv_cache_config(m, kv_dtype, a.block_tokens,
                                static_cast<std::int32_t>(caps[i].blocks));
    c.kv.pcie_bytes_per_second = ro.pcie_bytes_per_second;
    if (host_bytes > 0) {
      c.kv.host_blocks = static_cast<std::int32_t>(
          std::min<std::int64_t>(host_bytes / c.kv.bytes_per_block, 1LL << 30));
    }
    c.scheduler = sc;
    if (bar) {
      c.progress = [&, i](double f) {
        const int width = 30;
        const int filled = static_cast<int>(f * width);
        ctx.err << "\rkv: capacity " << caps[i].label << " (" << i + 1 << "/" << caps.size()
                << ") [" << std::string(static_cast<std::size_t>(filled), '#')
                << std::string(static_cast<std::size_t>(width - filled), '.') << "] "
                << static_cast<int>(f * 100) << "%   " << std::flush;
      };
    }
    if (auto* live = session.live()) {
      session.begin_run();
      c.on_step = [live, &session, &model](const simulation_step& st) {
        const step_shape& sh = st.plan.shape;
        live->observe_step({metrics::phase_of(sh.prefill_tokens, sh.decode_tokens),
                            st.step_seconds, sh.sequences, sh.prefill_tokens, sh.decode_tokens,
                            sh.sampled_tokens, model.flops(sh), model.bytes(sh)});
        for (double gap : st.new_itl_seconds) live->observe_itl(gap);
        live->set_queue(st.sched.num_running(), st.sched.num_waiting());
        const auto& pool = st.kv.pool();
        const auto& k = st.kv.counters();
        live->set_kv({pool.num_used(), pool.num_cached(), pool.num_free(), k.lookup_tokens,
                      k.hit_tokens_tier1 + k.hit_tokens_tier2, k.evictions_tier1,
                      st.sched.counters().preemptions});
        session.pace(st.now_seconds);
      };
      c.on_request = [live](const request_record& q) {
        const bool done = q.outcome == request_outcome::finished;
        live->observe_request({done, done ? q.ttft_seconds() : 0, done ? q.e2e_seconds() : 0,
                               q.has_tpot() ? q.tpot_seconds() : -1.0});
      };
    }
    simulation_result r = simulate(w, c, model);
    rows.push_back(row_json(caps[i], c.kv, r));
  }
  if (bar) ctx.err << "\n";

  nlohmann::json config = {
      {"workload", a.trace.empty() ? "generator:" + a.generator : a.trace},
      {"requests", w.requests.size()},
      {"prompt_tokens", w.total_prompt_tokens()},
      {"output_tokens", w.total_output_tokens()},
      {"model", m.name},
      {"gpu", gpu.key.empty() ? gpu.name : gpu.key},
      {"gpu_source", gpu.source},
      {"step_time_model", model.description()},
      {"block_tokens", a.block_tokens},
      {"kv_dtype", std::string(name(kv_dtype))},
      {"bytes_per_block", m.kv_bytes_per_token(kv_dtype) * a.block_tokens},
      {"unlimited_blocks", unlimited},
      {"host_memory_bytes", host_bytes},
      {"pcie_bytes_per_second", ro.pcie_bytes_per_second},
      {"max_running", sc.max_running},
      {"max_batched_tokens", sc.max_batched_tokens},
      {"chunked_prefill", sc.chunked_prefill},
      {"max_model_len", sc.max_model_len},
      {"mooncake_block_tokens", a.mooncake_block},
      {"definitions", definitions()},
  };
  const nlohmann::json doc = {{"schema", "ridgeline.kv/v1"},
                              {"environment", metrics::environment_block(std::nullopt)},
                              {"config", config},
                              {"rows", rows}};
  const std::string text = doc.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, csv_of(rows));
  if (a.json) {
    ctx.out << text;
  } else {
    ctx.out << table_of(doc);
    if (!a.output.empty()) ctx.out << "results written to " << a.output << "\n";
  }
  ctx.out << std::flush;
  session.finish();
}

}  // namespace

void register_kv(CLI::App& app, context& ctx) {
  auto args = std::make_shared<kv_args>();
  auto* cmd = app.add_subcommand(
      "kv", "Prefix-cache hit rate against KV capacity, recompute cost and latencies (simulated)");
  cmd->footer(
      "Examples:\n"
      "  ridgeline kv --trace data/traces/mooncake_synthetic_trace.jsonl --block-size 512 \\\n"
      "      --model llama-3-70b --max-model-len 0 --capacity unlimited,50%,20%,10%\n"
      "  ridgeline kv --generator sessions=500,turns=uniform:2:8,think=exp:60,system=1024 \\\n"
      "      --capacity 2GiB,8GiB,32GiB --csv kv.csv\n"
      "  ridgeline kv --generator sessions=200 --metrics-address 127.0.0.1:9464 --pace 20 \\\n"
      "      --hold 60                       live metrics for Prometheus (docs/metrics.md)\n"
      "Capacities: unlimited, N% (of unlimited), N (blocks) or a size (8GiB) of KV memory.\n"
      "Generator keys and every metric: docs/kv.md");
  auto* trace = cmd->add_option("--trace", args->trace, "Trace file: .jsonl Mooncake, .csv Azure");
  auto* gen =
      cmd->add_option("--generator", args->generator, "Generator spec key=value,... (docs/kv.md)");
  trace->excludes(gen);
  cmd->add_option("--model", args->model, "Model preset")->capture_default_str();
  cmd->add_option("--gpu", args->gpu, "GPU profile JSON path or datasheet key")
      ->capture_default_str();
  cmd->add_option("--capacity", args->capacity, "Comma-separated KV capacities")
      ->capture_default_str();
  cmd->add_option("--block-size", args->block_tokens, "Tokens per KV block")->capture_default_str();
  cmd->add_option("--kv-dtype", args->kv_dtype, "KV cache dtype (bf16, fp16, fp8)")
      ->capture_default_str();
  cmd->add_option("--host-memory", args->host_memory, "Second tier in host memory (e.g. 64GiB)")
      ->capture_default_str();
  cmd->add_option("--pcie-gbps", args->pcie_gb_per_second, "Host-to-GPU bandwidth, GB/s")
      ->capture_default_str();
  cmd->add_option("--max-running", args->max_running, "Max running sequences")
      ->capture_default_str();
  cmd->add_option("--max-batched-tokens", args->max_batched_tokens, "Max tokens per step")
      ->capture_default_str();
  cmd->add_flag("--no-chunked-prefill", args->no_chunked_prefill, "Whole prompts in one step");
  cmd->add_option("--max-model-len", args->max_model_len,
                  "Reject prompt + output above this (default: the model's context; 0: no limit)");
  cmd->add_option("--mooncake-block", args->mooncake_block, "Tokens per Mooncake hash id")
      ->capture_default_str();
  cmd->add_option("--overhead-us", args->overhead_us, "Fixed cost per step, microseconds")
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Result JSON path ('' to skip)")
      ->capture_default_str();
  cmd->add_option("--csv", args->csv, "Also write the rows as CSV");
  cmd->add_flag("--json", args->json, "Print the result JSON on stdout instead of the table");
  add_metrics_options(cmd, args->live, "ridgeline_kv", true);
  cmd->callback([args, &ctx] { run_kv_command(*args, ctx); });
}

}  // namespace ridgeline::cli
