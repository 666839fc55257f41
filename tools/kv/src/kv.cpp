// `ridgeline kv`'s logic (see kv.hpp): configuration, the replay per capacity, the result
// document (ridgeline.kv/v1) and its CSV and table.
#include "ridgeline/kv/kv.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"

namespace ridgeline::kv {
namespace {

double ratio(std::int64_t a, std::int64_t b) {
  return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

}  // namespace

schema::serving_row serving_row_of(const capacity_point& cap, const kv_cache_config& kvc,
                                   simulation_result& r) {
  const auto& k = r.kv;
  std::vector<double> ttft, tpot, e2e;
  for (const auto& q : r.requests) {
    if (q.outcome != request_outcome::finished) continue;
    ttft.push_back(q.ttft_seconds());
    e2e.push_back(q.e2e_seconds());
    if (q.has_tpot()) tpot.push_back(q.tpot_seconds());
  }
  schema::serving_row j;
  for (const auto& q : r.requests) {
    if (q.outcome == request_outcome::rejected) ++j.rejected_by_reason[q.reject_kind];
  }
  j.capacity = cap.label;
  j.capacity_blocks = cap.blocks;
  j.capacity_tokens = cap.blocks * kvc.block_tokens;
  j.capacity_bytes = cap.blocks * kvc.bytes_per_block;
  j.requests = static_cast<std::int64_t>(r.requests.size());
  j.finished = r.finished;
  j.rejected = r.rejected;
  j.lookup_tokens = k.lookup_tokens;
  j.hit_tokens = k.hit_tokens_tier1 + k.hit_tokens_tier2;
  j.hit_tokens_tier1 = k.hit_tokens_tier1;
  j.hit_tokens_tier2 = k.hit_tokens_tier2;
  j.token_hit_rate = ratio(k.hit_tokens_tier1 + k.hit_tokens_tier2, k.lookup_tokens);
  j.lookup_blocks = k.lookup_blocks;
  j.hit_blocks = k.hit_blocks_tier1 + k.hit_blocks_tier2;
  j.block_hit_rate = ratio(k.hit_blocks_tier1 + k.hit_blocks_tier2, k.lookup_blocks);
  j.evictions_tier1 = k.evictions_tier1;
  j.evictions_tier2 = k.evictions_tier2;
  j.tier2_blocks_loaded = k.tier2_blocks_loaded;
  j.preemptions = r.scheduling.preemptions;
  j.recomputed_tokens = k.recomputed_tokens;
  j.preempted_tokens_recomputed = r.scheduling.preempted_tokens_recomputed;
  j.flops_saved = r.flops_saved;
  j.seconds_saved = r.seconds_saved;
  j.recompute_flops = r.recompute_flops;
  j.recompute_seconds = r.recompute_seconds;
  j.prefill_tokens_computed = r.prefill_tokens_computed;
  j.decode_tokens = r.decode_tokens;
  j.steps = r.steps;
  j.simulated_seconds = r.simulated_seconds;
  j.busy_seconds = r.busy_seconds;
  j.output_tokens_per_second =
      r.simulated_seconds > 0
          ? static_cast<double>(r.decode_tokens + r.finished) / r.simulated_seconds
          : 0.0;
  j.peak_used_blocks = r.peak_used_blocks;
  j.peak_running = r.peak_running;
  j.ttft_seconds = schema::distribution_of(std::move(ttft));
  j.tpot_seconds = schema::distribution_of(std::move(tpot));
  j.itl_seconds = schema::distribution_of(r.itl_seconds);
  j.e2e_seconds = schema::distribution_of(std::move(e2e));
  return j;
}

namespace {

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

}  // namespace

std::vector<capacity_point> resolve_capacities(const std::vector<capacity_spec>& specs,
                                               std::int64_t unlimited, const model_preset& m,
                                               dtype kv_dtype, std::int32_t block_tokens) {
  std::vector<capacity_point> out;
  for (const auto& spec : specs) {
    capacity_point p{spec.label, 0};
    switch (spec.type) {
      case capacity_spec::kind::unlimited:
        p.blocks = unlimited;
        break;
      case capacity_spec::kind::percent:
        if (!(spec.value > 0 && spec.value <= 100))
          throw std::invalid_argument("capacity '" + spec.label + "' must be in (0%, 100%]");
        p.blocks = std::max<std::int64_t>(
            1, std::llround(static_cast<double>(unlimited) * spec.value / 100));
        break;
      case capacity_spec::kind::blocks:
        if (!(spec.value >= 1 && spec.value < 1e11))
          throw std::invalid_argument("capacity '" + spec.label + "' blocks out of range");
        p.blocks = static_cast<std::int64_t>(spec.value);
        break;
      case capacity_spec::kind::bytes:
        p.blocks =
            blocks_for_budget(m, kv_dtype, block_tokens, static_cast<std::int64_t>(spec.value));
        break;
    }
    if (p.blocks > (1LL << 30))
      throw std::invalid_argument("capacity '" + spec.label + "' is absurd (over 2^30 blocks)");
    out.push_back(p);
  }
  if (out.empty()) throw std::invalid_argument("--capacity lists no capacity");
  return out;
}

kv_setup configure(const kv_options& a) {
  if (a.trace.empty() == a.generator.empty()) {
    throw std::invalid_argument("kv: give exactly one of --trace FILE or --generator SPEC");
  }
  return configure_model(a);
}

kv_setup configure_model(const kv_options& a) {
  kv_setup s;
  s.options = a;
  s.model = &model_preset_by_name(a.model);
  const model_preset& m = *s.model;
  s.kv_dtype = parse_dtype(a.kv_dtype);
  if (a.block_tokens < 1 || a.block_tokens > 65536) {
    throw std::invalid_argument("--block-size must be in [1, 65536], got " +
                                std::to_string(a.block_tokens));
  }
  if (!(a.pcie_gb_per_second > 0)) throw std::invalid_argument("--pcie-gbps must be positive");
  if (a.overhead_us < 0) throw std::invalid_argument("--overhead-us must not be negative");
  if (a.host_memory_bytes < 0) throw std::invalid_argument("--host-memory must not be negative");
  s.gpu = planner::resolve_gpu(a.gpu);
  roofline_options& ro = s.step_options;
  ro.kv_dtype = s.kv_dtype;
  ro.overhead_seconds = a.overhead_us * 1e-6;
  ro.pcie_bytes_per_second = a.pcie_gb_per_second * 1e9;
  ro.block_tokens = a.block_tokens;
  s.step_model.emplace(m, s.gpu.profile, ro);
  scheduler_config& sc = s.scheduler;
  sc.max_running = a.max_running;
  sc.max_batched_tokens = a.max_batched_tokens;
  sc.chunked_prefill = a.chunked_prefill;
  sc.max_model_len = a.max_model_len < 0 ? m.max_context : a.max_model_len;
  validate(sc);
  return s;
}

kv_inputs load_inputs(const kv_setup& s) {
  const kv_options& a = s.options;
  kv_inputs in;
  in.requests = a.trace.empty() ? generate_workload(parse_generator_spec(a.generator))
                                : load_trace(a.trace, a.mooncake_block);
  in.unlimited = unlimited_blocks(in.requests, a.block_tokens);
  in.capacities =
      resolve_capacities(a.capacities, in.unlimited, *s.model, s.kv_dtype, a.block_tokens);
  return in;
}

std::vector<schema::serving_row> run_capacities(const kv_setup& s, const kv_inputs& in,
                                                const kv_hooks& hooks) {
  const kv_options& a = s.options;
  const model_preset& m = *s.model;
  const roofline_options& ro = s.step_options;
  const roofline_step_time_model& model = *s.step_model;
  const workload& w = in.requests;
  const auto& caps = in.capacities;
  metrics::live_metrics* live = hooks.live;
  if (live) {
    live->set_ceilings(std::string(name(ro.compute_dtype)),
                       s.gpu.profile.peak_flops_per_second(ro.compute_dtype),
                       s.gpu.profile.dram_bytes_per_second());
  }
  std::vector<schema::serving_row> rows;
  for (std::size_t i = 0; i < caps.size(); ++i) {
    simulation_config c;
    c.kv = make_kv_cache_config(m, s.kv_dtype, a.block_tokens,
                                static_cast<std::int32_t>(caps[i].blocks));
    c.kv.pcie_bytes_per_second = ro.pcie_bytes_per_second;
    if (a.host_memory_bytes > 0) {
      c.kv.host_blocks = static_cast<std::int32_t>(
          std::min<std::int64_t>(a.host_memory_bytes / c.kv.bytes_per_block, 1LL << 30));
    }
    c.scheduler = s.scheduler;
    if (hooks.progress) c.progress = [&hooks, i](double f) { hooks.progress(i, f); };
    if (live) {
      if (hooks.begin_run) hooks.begin_run();
      c.on_step = [live, &hooks, &model](const simulation_step& st) {
        const step_shape& sh = st.plan.shape;
        live->observe_step({metrics::phase_of(sh.prefill_tokens, sh.decode_tokens), st.step_seconds,
                            sh.sequences, sh.prefill_tokens, sh.decode_tokens, sh.sampled_tokens,
                            model.flops(sh), model.bytes(sh)});
        for (double gap : st.new_itl_seconds) live->observe_itl(gap);
        live->set_queue(st.sched.num_running(), st.sched.num_waiting());
        const auto& pool = st.kv.pool();
        const auto& k = st.kv.counters();
        live->set_kv({pool.num_used(), pool.num_cached(), pool.num_free(), k.lookup_tokens,
                      k.hit_tokens_tier1 + k.hit_tokens_tier2, k.evictions_tier1,
                      st.sched.counters().preemptions});
        if (hooks.pace) hooks.pace(st.now_seconds);
      };
      c.on_request = [live](const request_record& q) {
        const bool done = q.outcome == request_outcome::finished;
        live->observe_request({done, done ? q.ttft_seconds() : 0, done ? q.e2e_seconds() : 0,
                               q.has_tpot() ? q.tpot_seconds() : -1.0});
      };
    }
    simulation_result r = simulate(w, c, model);
    rows.push_back(serving_row_of(caps[i], c.kv, r));
  }
  return rows;
}

nlohmann::json kv_document(const kv_setup& s, const kv_inputs& in,
                           std::vector<schema::serving_row> rows,
                           std::optional<std::string> executor, std::optional<int> device) {
  const kv_options& a = s.options;
  const model_preset& m = *s.model;
  const gpu_profile& gpu = s.gpu.profile;
  const roofline_options& ro = s.step_options;
  const scheduler_config& sc = s.scheduler;
  const workload& w = in.requests;
  const dtype kv_dtype = s.kv_dtype;
  const std::int64_t unlimited = in.unlimited;
  const std::int64_t host_bytes = a.host_memory_bytes;
  const roofline_step_time_model& model = *s.step_model;
  schema::serving_results result;
  result.env = schema::environment_from_block(metrics::environment_block(device));
  schema::serving_config& config = result.config;
  config.workload = a.trace.empty() ? "generator:" + a.generator : a.trace;
  config.requests = static_cast<std::int64_t>(w.requests.size());
  config.prompt_tokens = w.total_prompt_tokens();
  config.output_tokens = w.total_output_tokens();
  config.model = m.name;
  config.gpu = gpu.key.empty() ? gpu.name : gpu.key;
  config.gpu_source = gpu.source;
  config.step_time_model = model.description();
  config.block_tokens = a.block_tokens;
  config.kv_dtype = std::string(name(kv_dtype));
  config.bytes_per_block = m.kv_bytes_per_token(kv_dtype) * a.block_tokens;
  config.unlimited_blocks = unlimited;
  config.host_memory_bytes = host_bytes;
  config.pcie_bytes_per_second = ro.pcie_bytes_per_second;
  config.max_running = sc.max_running;
  config.max_batched_tokens = sc.max_batched_tokens;
  config.chunked_prefill = sc.chunked_prefill;
  config.max_model_len = sc.max_model_len;
  config.mooncake_block_tokens = a.mooncake_block;
  config.definitions = definitions().get<std::map<std::string, std::string>>();
  config.executor = std::move(executor);
  config.window = in.window;
  result.rows = std::move(rows);
  const nlohmann::json doc = schema::to_json(result);
  return doc;
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

namespace {

std::string share(std::int64_t n, std::int64_t of) {
  return format_percent(static_cast<double>(n) /
                        static_cast<double>(std::max<std::int64_t>(of, 1)));
}

}  // namespace

std::string format_count(std::int64_t n) {
  const std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::vector<std::string> rejection_lines(const nlohmann::json& doc, const std::string& command,
                                         const drop_flags& flags) {
  const auto& cfg = doc.at("config");
  const auto& rows = doc.at("rows");
  // Reasons in the order they first appear; a capacity without a reason rejected none for it.
  std::vector<std::string> reasons;
  for (const auto& r : rows) {
    for (const auto& [reason, count] : r.at("rejected_by_reason").items()) {
      if (count.get<std::int64_t>() > 0 &&
          std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) {
        reasons.push_back(reason);
      }
    }
  }
  std::vector<std::string> out;
  for (const auto& reason : reasons) {
    std::string why = reason, flag = "the workload's lengths";
    if (reason == "exceeds_context") {
      why = "prompt + output beyond " + cfg.at("model").get<std::string>() +
            "'s context limit of " + format_count(cfg.at("max_model_len").get<std::int64_t>()) +
            " tokens";
      flag = flags.context;
    } else if (reason == "exceeds_cache") {
      why = "prompt + output larger than the whole KV cache";
      flag = flags.cache;
    } else if (reason == "exceeds_batch_tokens") {
      why = "prompt above --max-batched-tokens without chunked prefill";
      flag = flags.batch_tokens;
    } else if (reason == "empty_prompt") {
      why = "empty prompt";
    } else if (reason == "no_output") {
      why = "no output tokens";
    }
    auto count_at = [&reason](const nlohmann::json& r) {
      const auto& by = r.at("rejected_by_reason");
      return by.contains(reason) ? by.at(reason).get<std::int64_t>() : std::int64_t{0};
    };
    bool same = true;
    for (const auto& r : rows) {
      same = same && count_at(r) == count_at(rows.front()) &&
             r.at("requests") == rows.front().at("requests");
    }
    std::ostringstream o;
    o << command << ": ";
    if (same) {
      const std::int64_t n = count_at(rows.front()), total = rows.front().at("requests");
      o << format_count(n) << " of " << format_count(total) << " requests (" << share(n, total)
        << ") rejected" << (rows.size() > 1 ? " at every capacity" : "") << ": " << why
        << "; hit rates and latencies leave them out";
    } else {
      o << "requests rejected: " << why << ":";
      const char* sep = " ";
      for (const auto& r : rows) {
        const std::int64_t n = count_at(r), total = r.at("requests");
        o << sep << format_count(n) << " of " << format_count(total) << " (" << share(n, total)
          << ") at " << r.at("capacity").get<std::string>();
        sep = ", ";
      }
      o << "; hit rates and latencies leave them out";
    }
    o << " (" << flag << ")";
    out.push_back(o.str());
  }
  return out;
}

std::string table_of(const nlohmann::json& doc, const std::string& command,
                     const drop_flags& flags) {
  std::ostringstream o;
  const auto& cfg = doc.at("config");
  o << "ridgeline " << command << ": " << cfg.at("workload").get<std::string>() << ", "
    << cfg.at("requests").get<std::int64_t>() << " requests, " << cfg.at("model").get<std::string>()
    << " on " << cfg.at("gpu").get<std::string>() << ", blocks of "
    << cfg.at("block_tokens").get<int>() << " tokens\n\n";
  o << "| capacity | blocks | KV GiB | token hit | block hit | evictions | preempt | recomputed "
       "tok | rejected | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | E2E p50 s |\n";
  o << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  auto ms = [](const nlohmann::json& d, const char* q) {
    return d.contains(q) ? format("%.1f", d.at(q).get<double>() * 1e3) : std::string("-");
  };
  for (const auto& r : doc.at("rows")) {
    const double kv_bytes = static_cast<double>(r.at("capacity_bytes").get<std::int64_t>());
    const auto& e2e = r.at("e2e_seconds");
    // "unlimited" is the whole workload held at once, not memory anyone has: no size for it.
    o << "| " << r.at("capacity").get<std::string>() << " | "
      << r.at("capacity_blocks").get<std::int64_t>() << " | "
      << (r.at("capacity").get<std::string>() == "unlimited"
              ? std::string("unlimited")
              : format("%.2f", kv_bytes / double(1ULL << 30)))
      << " | " << format_percent(r.at("token_hit_rate").get<double>()) << " | "
      << format_percent(r.at("block_hit_rate").get<double>()) << " | "
      << r.at("evictions_tier1").get<std::int64_t>() << " | "
      << r.at("preemptions").get<std::int64_t>() << " | "
      << r.at("recomputed_tokens").get<std::int64_t>() << " | "
      << r.at("rejected").get<std::int64_t>() << " | " << ms(r.at("ttft_seconds"), "p50") << " | "
      << ms(r.at("ttft_seconds"), "p99") << " | " << ms(r.at("tpot_seconds"), "p50") << " | "
      << format("%.2f", e2e.contains("p50") ? e2e.at("p50").get<double>() : 0.0) << " |\n";
  }
  // What was left out of every figure above, and the flag that changes it: one line per reason.
  const std::vector<std::string> dropped = rejection_lines(doc, command, flags);
  if (!dropped.empty()) o << "\n";
  for (const auto& line : dropped) o << line << "\n";
  o << "\ntoken hit = prompt tokens served from cache / prompt tokens looked up, over the admitted "
       "requests (docs/kv.md)\n";
  return o.str();
}

}  // namespace ridgeline::kv
