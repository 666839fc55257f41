// Reader and writer of ridgeline.kv/v1, the serving-results format (schemas/serving_results.hpp).
#include "ridgeline/core/schemas/serving_results.hpp"

#include <algorithm>

#include "ridgeline/core/statistics.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

latency_distribution parse_distribution(const node& n) {
  latency_distribution d;
  d.count = n.integer("count");
  if (d.count < 0) n.fail_member("count", "must not be negative");
  if (d.count == 0) return d;
  latency_quantiles q;
  q.mean = n.number("mean");
  q.p50 = n.number("p50");
  q.p90 = n.number("p90");
  q.p99 = n.number("p99");
  q.max = n.number("max");
  for (const auto& pair : n.array("cdf").elements()) {
    const auto e = pair.elements();
    if (e.size() != 2) pair.fail("expected a [quantile, seconds] pair");
    q.cdf.emplace_back(e[0].as_number(), e[1].as_number());
  }
  d.quantiles = std::move(q);
  return d;
}

serving_config parse_config(const node& c) {
  serving_config o;
  o.workload = c.string("workload");
  o.requests = c.integer("requests");
  o.prompt_tokens = c.integer("prompt_tokens");
  o.output_tokens = c.integer("output_tokens");
  o.model = c.string("model");
  o.gpu = c.string("gpu");
  o.gpu_source = c.string("gpu_source");
  o.step_time_model = c.string("step_time_model");
  o.block_tokens = c.integer("block_tokens");
  o.kv_dtype = c.string("kv_dtype");
  o.bytes_per_block = c.integer("bytes_per_block");
  o.unlimited_blocks = c.integer("unlimited_blocks");
  o.host_memory_bytes = c.integer("host_memory_bytes");
  o.pcie_bytes_per_second = c.number("pcie_bytes_per_second");
  o.max_running = c.integer("max_running");
  o.max_batched_tokens = c.integer("max_batched_tokens");
  o.chunked_prefill = c.boolean("chunked_prefill");
  o.max_model_len = c.integer("max_model_len");
  o.mooncake_block_tokens = c.integer("mooncake_block_tokens");
  for (const auto& [k, v] : c.object("definitions").members()) o.definitions[k] = v.as_string();
  o.executor = c.optional_string("executor");
  o.weight_format = optional_weight_format(c, "weight_format");
  if (const auto w = c.optional_object("window")) {
    serving_window win;
    win.start_seconds = w->number("start_seconds");
    win.duration_seconds = w->number("duration_seconds");
    win.requests = w->integer("requests");
    win.rate_scale = w->number("rate_scale");
    if (!(win.rate_scale > 0)) w->fail_member("rate_scale", "must be positive");
    win.seed = w->nullable_integer("seed");
    o.window = win;
  }
  return o;
}

// Columns of one table: every column has the table's length.
template <class T>
void check_length(const node& n, const char* key, const std::vector<T>& v, std::size_t rows) {
  if (v.size() != rows) {
    n.fail_member(key, "has " + std::to_string(v.size()) + " entries, expected " +
                           std::to_string(rows));
  }
}

serving_measured parse_measured(const node& m) {
  serving_measured o;
  o.executor = m.string("executor");
  o.device = m.string("device");
  o.wall_seconds = m.number("wall_seconds");
  o.cancelled = m.integer("cancelled");
  o.submit_lag_seconds = parse_distribution(m.object("submit_lag_seconds"));
  o.step_gpu_seconds = parse_distribution(m.object("step_gpu_seconds"));
  o.step_host_seconds = parse_distribution(m.object("step_host_seconds"));
  o.step_gap_seconds = parse_distribution(m.object("step_gap_seconds"));
  o.mean_running = m.number("mean_running");
  o.simulated_token_hit_rate = m.number("simulated_token_hit_rate");
  o.simulated_block_hit_rate = m.number("simulated_block_hit_rate");
  const node st = m.object("steps");
  auto& s = o.steps;
  s.start_seconds = st.numbers("start_seconds");
  const std::size_t n = s.start_seconds.size();
#define RIDGELINE_COLUMN(table, node_, field, reader, rows) \
  table.field = node_.reader(#field);                        \
  check_length(node_, #field, table.field, rows)
  RIDGELINE_COLUMN(s, st, gpu_seconds, numbers, n);
  RIDGELINE_COLUMN(s, st, host_seconds, numbers, n);
  RIDGELINE_COLUMN(s, st, gap_seconds, numbers, n);
  // Host-tier columns: absent in replays written before the engine had a host tier (then empty).
  if (st.has("copy_seconds") || st.has("blocks_to_host") || st.has("blocks_to_gpu")) {
    RIDGELINE_COLUMN(s, st, copy_seconds, numbers, n);
    RIDGELINE_COLUMN(s, st, blocks_to_host, integers, n);
    RIDGELINE_COLUMN(s, st, blocks_to_gpu, integers, n);
  }
  RIDGELINE_COLUMN(s, st, flops, numbers, n);
  RIDGELINE_COLUMN(s, st, bytes, numbers, n);
  RIDGELINE_COLUMN(s, st, sequences, integers, n);
  RIDGELINE_COLUMN(s, st, prefill_tokens, integers, n);
  RIDGELINE_COLUMN(s, st, decode_tokens, integers, n);
  RIDGELINE_COLUMN(s, st, running, integers, n);
  RIDGELINE_COLUMN(s, st, waiting, integers, n);
  RIDGELINE_COLUMN(s, st, kv_used, integers, n);
  RIDGELINE_COLUMN(s, st, kv_cached, integers, n);
  RIDGELINE_COLUMN(s, st, kv_free, integers, n);
  RIDGELINE_COLUMN(s, st, hit_tokens, integers, n);
  RIDGELINE_COLUMN(s, st, preemptions, integers, n);
  RIDGELINE_COLUMN(s, st, graph, integers, n);
  const node rq = m.object("requests");
  auto& r = o.requests;
  r.id = rq.integers("id");
  const std::size_t k = r.id.size();
  RIDGELINE_COLUMN(r, rq, prompt_tokens, integers, k);
  RIDGELINE_COLUMN(r, rq, output_tokens, integers, k);
  RIDGELINE_COLUMN(r, rq, cached_tokens, integers, k);
  RIDGELINE_COLUMN(r, rq, preemptions, integers, k);
  RIDGELINE_COLUMN(r, rq, outcome, strings, k);
  RIDGELINE_COLUMN(r, rq, arrival_seconds, numbers, k);
  RIDGELINE_COLUMN(r, rq, ttft_seconds, numbers, k);
  RIDGELINE_COLUMN(r, rq, tpot_seconds, numbers, k);
  RIDGELINE_COLUMN(r, rq, e2e_seconds, numbers, k);
  RIDGELINE_COLUMN(r, rq, submit_lag_seconds, numbers, k);
#undef RIDGELINE_COLUMN
  return o;
}

serving_row parse_row(const node& r) {
  serving_row o;
  o.capacity = r.string("capacity");
  o.capacity_blocks = r.integer("capacity_blocks");
  o.capacity_tokens = r.integer("capacity_tokens");
  o.capacity_bytes = r.integer("capacity_bytes");
  o.requests = r.integer("requests");
  o.finished = r.integer("finished");
  o.rejected = r.integer("rejected");
  for (const auto& [k, v] : r.object("rejected_by_reason").members()) {
    o.rejected_by_reason[k] = v.as_integer();
  }
  o.lookup_tokens = r.integer("lookup_tokens");
  o.hit_tokens = r.integer("hit_tokens");
  o.hit_tokens_tier1 = r.integer("hit_tokens_tier1");
  o.hit_tokens_tier2 = r.integer("hit_tokens_tier2");
  o.token_hit_rate = r.number("token_hit_rate");
  o.lookup_blocks = r.integer("lookup_blocks");
  o.hit_blocks = r.integer("hit_blocks");
  o.block_hit_rate = r.number("block_hit_rate");
  o.evictions_tier1 = r.integer("evictions_tier1");
  o.evictions_tier2 = r.integer("evictions_tier2");
  o.tier2_blocks_loaded = r.integer("tier2_blocks_loaded");
  o.preemptions = r.integer("preemptions");
  o.recomputed_tokens = r.integer("recomputed_tokens");
  o.preempted_tokens_recomputed = r.integer("preempted_tokens_recomputed");
  o.flops_saved = r.number("flops_saved");
  o.seconds_saved = r.number("seconds_saved");
  o.recompute_flops = r.number("recompute_flops");
  o.recompute_seconds = r.number("recompute_seconds");
  o.prefill_tokens_computed = r.integer("prefill_tokens_computed");
  o.decode_tokens = r.integer("decode_tokens");
  o.steps = r.integer("steps");
  o.simulated_seconds = r.number("simulated_seconds");
  o.busy_seconds = r.number("busy_seconds");
  o.output_tokens_per_second = r.number("output_tokens_per_second");
  o.peak_used_blocks = r.integer("peak_used_blocks");
  o.peak_running = r.integer("peak_running");
  o.ttft_seconds = parse_distribution(r.object("ttft_seconds"));
  o.tpot_seconds = parse_distribution(r.object("tpot_seconds"));
  o.itl_seconds = parse_distribution(r.object("itl_seconds"));
  o.e2e_seconds = parse_distribution(r.object("e2e_seconds"));
  if (const auto m = r.optional_object("measured")) o.measured = parse_measured(*m);
  return o;
}

}  // namespace

serving_results parse_serving_results(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_serving_results_schema};
  const node top = open_document(doc, ctx);
  serving_results out;
  out.env = parse_environment(top.object("environment"));
  out.config = parse_config(top.object("config"));
  for (const auto& r : top.array("rows").elements()) out.rows.push_back(parse_row(r));
  return out;
}

serving_results read_serving_results(const std::filesystem::path& path) {
  return parse_serving_results(read_json(path, k_serving_results_schema), path.string());
}

json to_json(const latency_distribution& d) {
  json j = {{"count", d.count}};
  if (!d.quantiles) return j;
  const auto& q = *d.quantiles;
  j["mean"] = q.mean;
  j["p50"] = q.p50;
  j["p90"] = q.p90;
  j["p99"] = q.p99;
  j["max"] = q.max;
  json cdf = json::array();
  for (const auto& [quantile, seconds] : q.cdf) cdf.push_back({quantile, seconds});
  j["cdf"] = cdf;
  return j;
}

json to_json(const serving_config& c) {
  json j = {{"workload", c.workload},
          {"requests", c.requests},
          {"prompt_tokens", c.prompt_tokens},
          {"output_tokens", c.output_tokens},
          {"model", c.model},
          {"gpu", c.gpu},
          {"gpu_source", c.gpu_source},
          {"step_time_model", c.step_time_model},
          {"block_tokens", c.block_tokens},
          {"kv_dtype", c.kv_dtype},
          {"bytes_per_block", c.bytes_per_block},
          {"unlimited_blocks", c.unlimited_blocks},
          {"host_memory_bytes", c.host_memory_bytes},
          {"pcie_bytes_per_second", c.pcie_bytes_per_second},
          {"max_running", c.max_running},
          {"max_batched_tokens", c.max_batched_tokens},
          {"chunked_prefill", c.chunked_prefill},
          {"max_model_len", c.max_model_len},
          {"mooncake_block_tokens", c.mooncake_block_tokens},
          {"definitions", c.definitions}};
  put_optional(j, "executor", c.executor);
  put_optional(j, "weight_format", c.weight_format);
  if (c.window) {
    j["window"] = {{"start_seconds", c.window->start_seconds},
                   {"duration_seconds", c.window->duration_seconds},
                   {"requests", c.window->requests},
                   {"rate_scale", c.window->rate_scale},
                   {"seed", nullable(c.window->seed)}};
  }
  return j;
}

json to_json(const serving_measured& m) {
  const auto& s = m.steps;
  const auto& r = m.requests;
  json steps = {{"start_seconds", s.start_seconds},
                {"gpu_seconds", s.gpu_seconds},
                {"host_seconds", s.host_seconds},
                {"gap_seconds", s.gap_seconds},
                {"flops", s.flops},
                {"bytes", s.bytes},
                {"sequences", s.sequences},
                {"prefill_tokens", s.prefill_tokens},
                {"decode_tokens", s.decode_tokens},
                {"running", s.running},
                {"waiting", s.waiting},
                {"kv_used", s.kv_used},
                {"kv_cached", s.kv_cached},
                {"kv_free", s.kv_free},
                {"hit_tokens", s.hit_tokens},
                {"preemptions", s.preemptions},
                {"graph", s.graph}};
  // The host-tier columns, unless read from a file that predates them (parse leaves them empty).
  if (!(s.copy_seconds.empty() && !s.start_seconds.empty())) {
    steps["copy_seconds"] = s.copy_seconds;
    steps["blocks_to_host"] = s.blocks_to_host;
    steps["blocks_to_gpu"] = s.blocks_to_gpu;
  }
  return {{"executor", m.executor},
          {"device", m.device},
          {"wall_seconds", m.wall_seconds},
          {"cancelled", m.cancelled},
          {"submit_lag_seconds", to_json(m.submit_lag_seconds)},
          {"step_gpu_seconds", to_json(m.step_gpu_seconds)},
          {"step_host_seconds", to_json(m.step_host_seconds)},
          {"step_gap_seconds", to_json(m.step_gap_seconds)},
          {"mean_running", m.mean_running},
          {"simulated_token_hit_rate", m.simulated_token_hit_rate},
          {"simulated_block_hit_rate", m.simulated_block_hit_rate},
          {"steps", steps},
          {"requests",
           {{"id", r.id},
            {"outcome", r.outcome},
            {"prompt_tokens", r.prompt_tokens},
            {"output_tokens", r.output_tokens},
            {"cached_tokens", r.cached_tokens},
            {"preemptions", r.preemptions},
            {"arrival_seconds", r.arrival_seconds},
            {"ttft_seconds", r.ttft_seconds},
            {"tpot_seconds", r.tpot_seconds},
            {"e2e_seconds", r.e2e_seconds},
            {"submit_lag_seconds", r.submit_lag_seconds}}}};
}

json to_json(const serving_row& r) {
  json j = {{"capacity", r.capacity},
          {"capacity_blocks", r.capacity_blocks},
          {"capacity_tokens", r.capacity_tokens},
          {"capacity_bytes", r.capacity_bytes},
          {"requests", r.requests},
          {"finished", r.finished},
          {"rejected", r.rejected},
          {"rejected_by_reason", r.rejected_by_reason},
          {"lookup_tokens", r.lookup_tokens},
          {"hit_tokens", r.hit_tokens},
          {"hit_tokens_tier1", r.hit_tokens_tier1},
          {"hit_tokens_tier2", r.hit_tokens_tier2},
          {"token_hit_rate", r.token_hit_rate},
          {"lookup_blocks", r.lookup_blocks},
          {"hit_blocks", r.hit_blocks},
          {"block_hit_rate", r.block_hit_rate},
          {"evictions_tier1", r.evictions_tier1},
          {"evictions_tier2", r.evictions_tier2},
          {"tier2_blocks_loaded", r.tier2_blocks_loaded},
          {"preemptions", r.preemptions},
          {"recomputed_tokens", r.recomputed_tokens},
          {"preempted_tokens_recomputed", r.preempted_tokens_recomputed},
          {"flops_saved", r.flops_saved},
          {"seconds_saved", r.seconds_saved},
          {"recompute_flops", r.recompute_flops},
          {"recompute_seconds", r.recompute_seconds},
          {"prefill_tokens_computed", r.prefill_tokens_computed},
          {"decode_tokens", r.decode_tokens},
          {"steps", r.steps},
          {"simulated_seconds", r.simulated_seconds},
          {"busy_seconds", r.busy_seconds},
          {"output_tokens_per_second", r.output_tokens_per_second},
          {"peak_used_blocks", r.peak_used_blocks},
          {"peak_running", r.peak_running},
          {"ttft_seconds", to_json(r.ttft_seconds)},
          {"tpot_seconds", to_json(r.tpot_seconds)},
          {"itl_seconds", to_json(r.itl_seconds)},
          {"e2e_seconds", to_json(r.e2e_seconds)}};
  if (r.measured) j["measured"] = to_json(*r.measured);
  return j;
}

json to_json(const serving_results& doc) {
  json rows = json::array();
  for (const auto& r : doc.rows) rows.push_back(to_json(r));
  return {{"schema", k_serving_results_schema},
          {"environment", to_json(doc.env)},
          {"config", to_json(doc.config)},
          {"rows", rows}};
}

latency_distribution distribution_of(std::vector<double> v) {
  latency_distribution d;
  d.count = static_cast<std::int64_t>(v.size());
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  latency_quantiles q;
  q.mean = sum / static_cast<double>(v.size());
  q.p50 = bench::quantile_sorted(v, 0.5);
  q.p90 = bench::quantile_sorted(v, 0.9);
  q.p99 = bench::quantile_sorted(v, 0.99);
  q.max = v.back();
  // [quantile, seconds] pairs for a CDF plot (ridgeline report): every 5% plus the tail.
  for (int i = 0; i <= 20; ++i) {
    const double at = i / 20.0;
    q.cdf.emplace_back(at, bench::quantile_sorted(v, at));
    if (i == 19) {
      q.cdf.emplace_back(0.99, bench::quantile_sorted(v, 0.99));
      q.cdf.emplace_back(0.999, bench::quantile_sorted(v, 0.999));
    }
  }
  d.quantiles = std::move(q);
  return d;
}

}  // namespace ridgeline::schema
