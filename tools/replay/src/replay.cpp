// `ridgeline replay`'s logic (see replay.hpp): configuration and window, the executor, the real-time
// run through the serving loop, kv's simulation of the same window, and the document.
#include "ridgeline/replay/replay.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"

namespace ridgeline::replay {
namespace {

// The cpu executor's default pool: enough for a generated CPU workload, small enough to stay fast.
constexpr std::int32_t k_cpu_kv_blocks = 2048;

bool is_tiny(const model_preset& m) { return m.name.rfind("tiny", 0) == 0 && m.layers <= 4; }

}  // namespace

std::int32_t host_blocks_for(const model_preset& m, const replay_setup& s) {
  const auto& k = s.options.serving;
  if (k.host_memory_bytes <= 0) return 0;
  const std::int64_t per_block = m.kv_bytes_per_token(dtype::bf16) * k.block_tokens;
  const std::int64_t blocks = k.host_memory_bytes / per_block;
  if (blocks < 1 || blocks > (1 << 30)) {
    throw std::invalid_argument("--host-memory " + std::to_string(k.host_memory_bytes) +
                                " bytes holds " + std::to_string(blocks) + " blocks of " +
                                std::to_string(per_block) + " bytes");
  }
  return static_cast<std::int32_t>(blocks);
}

namespace {

replay_executor make_cpu_executor(const replay_setup& s) {
  const replay_options& a = s.options;
  replay_executor r;
  r.model = is_tiny(*s.kv.model) ? s.kv.model : &model_preset_by_name(a.cpu_model);
  r.kv_blocks = a.kv_blocks > 0 ? a.kv_blocks : k_cpu_kv_blocks;
  auto engine = std::make_unique<cpu_engine>(*r.model, random_weights(*r.model, a.seed),
                                             r.kv_blocks, s.options.serving.block_tokens,
                                             a.top_logprobs);
  engine->set_host_blocks(host_blocks_for(*r.model, s));
  r.exec = std::move(engine);
  r.executor_name = "cpu";
  r.device = "host CPU (naive reference kernels)";
  return r;
}

}  // namespace

replay_setup configure_engine(const replay_options& o) {
  if (!(o.rate_scale > 0)) throw std::invalid_argument("--rate-scale must be positive");
  if (!(o.start_seconds >= 0)) throw std::invalid_argument("--start must not be negative");
  if (!(o.duration_seconds >= 0)) throw std::invalid_argument("--duration must not be negative");
  if (o.requests < 0) throw std::invalid_argument("--requests must not be negative");
  if (o.kv_blocks < 0) throw std::invalid_argument("--kv-blocks must not be negative");
  if (o.memory_fraction < 0 || o.memory_fraction > 1) {
    throw std::invalid_argument("--memory-fraction must be in (0, 1]");
  }
  if (o.gemm_candidates < 1) throw std::invalid_argument("--gemm-candidates must be at least 1");
  if (o.top_logprobs < 0 || o.top_logprobs > k_sampling_max_top_logprobs) {
    throw std::invalid_argument("--max-logprobs must be in [0, " +
                                std::to_string(k_sampling_max_top_logprobs) + "]; got " +
                                std::to_string(o.top_logprobs));
  }
  replay_setup s;
  s.options = o;
  s.kv = kv::configure_model(o.serving);
  return s;
}

replay_setup configure(const replay_options& o) {
  if (o.serving.trace.empty() == o.serving.generator.empty()) {
    throw std::invalid_argument("replay: give exactly one of --trace FILE or --generator SPEC");
  }
  replay_setup s = configure_engine(o);
  const kv::kv_options& k = o.serving;
  const workload all = k.trace.empty() ? generate_workload(parse_generator_spec(k.generator))
                                       : load_trace(k.trace, k.mooncake_block);
  s.requests = window_of(all, o.start_seconds, o.duration_seconds, o.requests);
  s.source_requests = std::ssize(all.requests);
  if (s.requests.requests.empty()) {
    throw std::invalid_argument("the window (--start " + format("%g", o.start_seconds) +
                                ", --duration " + format("%g", o.duration_seconds) +
                                ") holds no request of " + all.source);
  }
  return s;
}

replay_executor make_executor(const replay_setup& s,
                              const std::function<void(const std::string&)>& note) {
  if (s.options.cpu) return make_cpu_executor(s);
  try {
    return make_cuda_executor(s);
  } catch (const no_device_error& e) {
    replay_executor ex = make_cpu_executor(s);
    if (note) {
      note(std::string("no GPU (") + e.what() + "); running the cpu executor on the " +
           ex.model->name + " model instead (tiny shapes: the whole serving loop, not a GPU "
           "measurement)");
    }
    return ex;
  }
}

kv::kv_setup setup_for(const replay_setup& s, const replay_executor& ex) {
  kv::kv_setup ks = s.kv;
  ks.model = ex.model;
  if (s.options.serving.max_model_len < 0 || ks.scheduler.max_model_len > ex.model->max_context) {
    ks.scheduler.max_model_len = ex.model->max_context;
  }
  ks.step_model.emplace(*ex.model, ks.gpu.profile, ks.step_options);
  return ks;
}

kv_cache_config kv_config_for(const replay_setup& s, const kv::kv_setup& ks,
                              const replay_executor& ex) {
  kv_cache_config kvc =
      make_kv_cache_config(*ex.model, ks.kv_dtype, s.options.serving.block_tokens, ex.kv_blocks);
  kvc.pcie_bytes_per_second = ks.step_options.pcie_bytes_per_second;
  kvc.host_blocks = ex.exec->host_blocks();
  kvc.record_transfers = kvc.host_blocks > 0;
  return kvc;
}

nlohmann::json run(const replay_setup& s, const replay_hooks& hooks) {
  const replay_options& a = s.options;
  auto note = [&hooks](const std::string& line) {
    if (hooks.note) hooks.note(line);
  };
  replay_executor ex = make_executor(s, [&note](const std::string& l) { note("replay: " + l); });
  const model_preset& m = *ex.model;
  if (a.weights && ex.weight_format != planner::name(*a.weights)) {
    note("replay: the " + ex.executor_name + " executor runs " + ex.weight_format +
         " weights; --weights " + std::string(planner::name(*a.weights)) +
         " applies to the cuda executor");
  }
  note("replay: " + m.name + " on " + ex.device + " (" + ex.executor_name + " executor, " +
       ex.weight_format + " weights), " +
       std::to_string(ex.kv_blocks) + " KV blocks of " +
       std::to_string(a.serving.block_tokens) + " tokens, " +
       std::to_string(s.requests.requests.size()) + " requests");

  // What the run's model needs: its context limit, its step-time model for the cache accounting.
  const kv::kv_setup ks = setup_for(s, ex);
  const kv_cache_config kvc = kv_config_for(s, ks, ex);

  kv_cache_manager kv(kvc);
  serving_loop loop(*ex.exec, kv, ks.scheduler, m, steady_seconds, a.overlap);
  ridgeline::replay_options ro;
  ro.rate_scale = a.rate_scale;
  ro.vocab = m.vocab < k_workload_vocab ? m.vocab : 0;
  ro.progress = hooks.progress;
  if (metrics::live_metrics* live = hooks.live) {
    live->set_ceilings("bf16", ks.gpu.profile.peak_flops_per_second(dtype::bf16),
                       ks.gpu.profile.dram_bytes_per_second());
    std::size_t itl_seen = 0;
    ro.on_step = [live, &itl_seen](const serving_loop& l, const step_record& r) {
      observe_step(*live, l, r);
      const auto& itl = l.sched().itl_seconds();
      for (; itl_seen < itl.size(); ++itl_seen) live->observe_itl(itl[itl_seen]);
    };
    ro.on_request = [live](const serving_record& q) { observe_request(*live, q); };
  }
  const replay_result rr = replay_workload(s.requests, loop, ro, steady_seconds);

  // The run's records through kv's row (one capacity: the engine's pool).
  simulation_result sr;
  sr.requests.reserve(rr.requests.size());
  for (const auto& q : rr.requests) sr.requests.push_back(q.record);
  sr.itl_seconds = rr.itl_seconds;
  sr.kv = rr.kv;
  sr.scheduling = rr.scheduling;
  sr.steps = std::ssize(rr.steps);
  sr.simulated_seconds = rr.end_seconds - rr.start_seconds;
  for (const auto& st : rr.steps) {
    sr.busy_seconds += st.gpu_seconds;
    sr.prefill_tokens_computed += st.prefill_tokens;
    sr.decode_tokens += st.decode_tokens;
  }
  sr.peak_running = rr.peak_running;
  sr.peak_used_blocks = rr.peak_used_blocks;
  sr.finished = rr.finished;
  sr.rejected = rr.rejected;
  account_cache_work(sr, *ks.step_model);
  const kv::capacity_point cap{"engine pool", ex.kv_blocks};
  schema::serving_row row = kv::serving_row_of(cap, kvc, sr);
  row.requests = std::ssize(rr.requests);  // cancelled ones included

  schema::serving_measured me;
  me.executor = ex.executor_name;
  me.device = ex.device;
  me.wall_seconds = sr.simulated_seconds;
  me.cancelled = rr.cancelled;
  std::vector<double> lag, gpu, host, gap;
  double running_time = 0, total_time = 0;
  auto& st = me.steps;
  for (const auto& r : rr.steps) {
    st.start_seconds.push_back(r.start_seconds - rr.start_seconds);
    st.gpu_seconds.push_back(r.gpu_seconds);
    st.host_seconds.push_back(r.host_seconds);
    st.gap_seconds.push_back(r.gap_seconds);
    st.copy_seconds.push_back(r.copy_seconds);
    st.blocks_to_host.push_back(r.blocks_to_host);
    st.blocks_to_gpu.push_back(r.blocks_to_gpu);
    st.flops.push_back(r.flops);
    st.bytes.push_back(r.bytes);
    st.sequences.push_back(r.sequences);
    st.prefill_tokens.push_back(r.prefill_tokens);
    st.decode_tokens.push_back(r.decode_tokens);
    st.running.push_back(r.running);
    st.waiting.push_back(r.waiting);
    st.kv_used.push_back(r.kv_used);
    st.kv_cached.push_back(r.kv_cached);
    st.kv_free.push_back(r.kv_free);
    st.hit_tokens.push_back(r.hit_tokens);
    st.preemptions.push_back(r.preemptions);
    st.graph.push_back(r.graph ? 1 : 0);
    gpu.push_back(r.gpu_seconds);
    host.push_back(r.host_seconds);
    if (r.gap_seconds >= 0) gap.push_back(r.gap_seconds);
    const double dt = r.end_seconds - r.start_seconds;
    running_time += dt * r.running;
    total_time += dt;
  }
  me.mean_running = total_time > 0 ? running_time / total_time : 0;
  auto& rq = me.requests;
  for (const auto& q : rr.requests) {
    const request_record& r = q.record;
    const bool done = r.outcome == request_outcome::finished;
    rq.id.push_back(static_cast<std::int64_t>(s.requests.requests[r.id].id));
    rq.outcome.emplace_back(name(r.outcome));
    rq.prompt_tokens.push_back(r.prompt_tokens);
    rq.output_tokens.push_back(r.output_tokens);
    rq.cached_tokens.push_back(r.cached_tokens);
    rq.preemptions.push_back(r.preemptions);
    rq.arrival_seconds.push_back(r.arrival_seconds - rr.start_seconds);
    rq.ttft_seconds.push_back(done ? r.ttft_seconds() : -1.0);
    rq.tpot_seconds.push_back(r.has_tpot() ? r.tpot_seconds() : -1.0);
    rq.e2e_seconds.push_back(done ? r.e2e_seconds() : -1.0);
    rq.submit_lag_seconds.push_back(q.submit_lag_seconds());
    lag.push_back(q.submit_lag_seconds());
  }
  me.submit_lag_seconds = schema::distribution_of(std::move(lag));
  me.step_gpu_seconds = schema::distribution_of(std::move(gpu));
  me.step_host_seconds = schema::distribution_of(std::move(host));
  me.step_gap_seconds = schema::distribution_of(std::move(gap));

  if (a.simulate) {
    simulation_config c;
    c.kv = kvc;
    c.scheduler = ks.scheduler;
    simulation_result sim = simulate(s.requests, c, *ks.step_model);
    schema::serving_row srow = kv::serving_row_of(cap, kvc, sim);
    me.simulated_token_hit_rate = srow.token_hit_rate;
    me.simulated_block_hit_rate = srow.block_hit_rate;
  }
  row.measured = std::move(me);

  kv::kv_inputs in;
  in.requests = s.requests;
  in.unlimited = unlimited_blocks(s.requests, a.serving.block_tokens);
  in.capacities = {cap};
  in.window = schema::serving_window{a.start_seconds, a.duration_seconds, a.requests,
                                     a.rate_scale, std::nullopt};
  std::vector<schema::serving_row> rows;
  rows.push_back(std::move(row));
  nlohmann::json doc =
      kv::kv_document(ks, in, std::move(rows), ex.executor_name,
                      ex.executor_name == "cuda" ? std::optional<int>(0) : std::nullopt);
  doc["config"]["weight_format"] = ex.weight_format;  // schemas/serving_results.hpp
  return doc;
}

void observe_step(metrics::live_metrics& live, const serving_loop& l, const step_record& r) {
  const double dt = r.end_seconds - r.start_seconds;
  live.observe_step({metrics::phase_of(r.prefill_tokens, r.decode_tokens), dt, r.sequences,
                     r.prefill_tokens, r.decode_tokens, r.samples, r.flops, r.bytes});
  live.set_queue(r.running, r.waiting);
  const auto& k = l.kv().counters();
  live.set_kv({r.kv_used, r.kv_cached, r.kv_free, k.lookup_tokens,
               k.hit_tokens_tier1 + k.hit_tokens_tier2, k.evictions_tier1,
               l.sched().counters().preemptions});
}

void observe_request(metrics::live_metrics& live, const serving_record& q) {
  const request_record& r = q.record;
  const bool done = r.outcome == request_outcome::finished;
  live.observe_request({done, done ? r.ttft_seconds() : 0, done ? r.e2e_seconds() : 0,
                        r.has_tpot() ? r.tpot_seconds() : -1.0});
}

namespace {

// The pool is the engine's memory plan, not kv's --capacity.
kv::drop_flags replay_flags() {
  kv::drop_flags f;
  f.context = "--max-model-len N, at most the model's context";
  f.cache = "a larger --kv-blocks or --memory-fraction";
  return f;
}

}  // namespace

std::optional<std::string> window_line(const replay_setup& s) {
  const std::int64_t kept = std::ssize(s.requests.requests), all = s.source_requests;
  if (all <= kept) return std::nullopt;
  const replay_options& o = s.options;
  std::string where = "arrive outside the window from --start " + format("%g", o.start_seconds) +
                      " s" +
                      (o.duration_seconds > 0
                           ? " for --duration " + format("%g", o.duration_seconds) + " s"
                           : std::string(" to the end"));
  if (o.requests > 0) where += ", or after its first --requests " + kv::format_count(o.requests);
  return "replay: " + kv::format_count(all - kept) + " of " + kv::format_count(all) +
         " requests of " + s.requests.source + " (" +
         format_percent(static_cast<double>(all - kept) / static_cast<double>(all)) +
         ") not replayed: they " + where +
         " (--start, --duration, --requests; 0 for the last two: the whole trace)";
}

std::vector<std::string> drop_lines(const replay_setup& s, const nlohmann::json& doc) {
  std::vector<std::string> out;
  if (auto w = window_line(s)) out.push_back(*w);
  for (auto& line : kv::rejection_lines(doc, "replay", replay_flags())) out.push_back(line);
  return out;
}

std::string table_of(const nlohmann::json& doc) {
  std::ostringstream o;
  o << kv::table_of(doc, "replay", replay_flags());
  // config.weight_format through the format's reader: bf16 in replays written before --weights.
  const schema::document_context ctx{"replay", schema::k_serving_results_schema};
  const std::string weights = schema::weight_format_or_bf16(schema::optional_weight_format(
      schema::node(doc.at("config"), ctx, "config"), "weight_format"));
  for (const auto& r : doc.at("rows")) {
    if (!r.contains("measured")) continue;
    const auto& m = r.at("measured");
    auto p50 = [&m](const char* k) {
      const auto& d = m.at(k);
      return d.contains("p50") ? format("%.1f", d.at("p50").get<double>() * 1e6) : std::string("-");
    };
    o << "\nmeasured on " << m.at("device").get<std::string>() << " ("
      << m.at("executor").get<std::string>() << " executor, " << weights << " weights): "
      << format("%.1f", m.at("wall_seconds").get<double>()) << " s, "
      << r.at("finished").get<std::int64_t>() << " finished, "
      << r.at("rejected").get<std::int64_t>() << " rejected, "
      << m.at("cancelled").get<std::int64_t>() << " cancelled, " << r.at("steps").get<std::int64_t>()
      << " steps, mean running batch " << format("%.1f", m.at("mean_running").get<double>())
      << ", peak " << r.at("peak_running").get<std::int64_t>() << "\n";
    o << "step medians: forward " << p50("step_gpu_seconds") << " us, host " << p50("step_host_seconds")
      << " us, GPU idle between forward passes " << p50("step_gap_seconds")
      << " us; submission lag p99 "
      << (m.at("submit_lag_seconds").contains("p99")
              ? format("%.2f", m.at("submit_lag_seconds").at("p99").get<double>() * 1e3)
              : std::string("-"))
      << " ms\n";
    const auto& st = m.at("steps");
    std::int64_t to_host = 0, to_gpu = 0;
    double copy = 0;
    if (st.contains("blocks_to_host")) {
      for (const auto& v : st.at("blocks_to_host")) to_host += v.get<std::int64_t>();
      for (const auto& v : st.at("blocks_to_gpu")) to_gpu += v.get<std::int64_t>();
      for (const auto& v : st.at("copy_seconds")) copy += v.get<double>();
    }
    if (to_host + to_gpu > 0) {
      o << "host tier: " << r.at("hit_tokens_tier2").get<std::int64_t>()
        << " prompt tokens served from host memory; " << to_host << " blocks saved and " << to_gpu
        << " loaded over PCIe in " << format("%.1f", copy * 1e3) << " ms of copies\n";
    }
    o << "prefix hit rate: measured " << format_percent(r.at("token_hit_rate").get<double>())
      << ", kv's simulation of the same window and pool "
      << format_percent(m.at("simulated_token_hit_rate").get<double>()) << "\n";
  }
  return o.str();
}

}  // namespace ridgeline::replay
