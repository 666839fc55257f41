// Reader and writer of ridgeline.plan/v1 (schemas/plan.hpp).
#include "ridgeline/core/schemas/plan.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

plan_config parse_config(const node& c) {
  plan_config o;
  o.model = c.string("model");
  o.weights = c.string("weights");
  o.kv_dtype = c.string("kv_dtype");
  o.workload = c.string("workload");
  o.requests = c.integer("requests");
  o.mean_prompt_tokens = c.number("mean_prompt_tokens");
  o.mean_output_tokens = c.number("mean_output_tokens");
  o.workload_rate_per_second = c.number("workload_rate_per_second");
  const node slo = c.object("slo");
  o.slo.ttft_seconds = slo.number("ttft_seconds");
  o.slo.tpot_seconds = slo.number("tpot_seconds");
  o.slo.terms = slo.optional_string("terms");
  if (o.slo.terms) {
    o.slo.ttft_percentile = slo.optional_number("ttft_percentile");
    o.slo.tpot_percentile = slo.optional_number("tpot_percentile");
  }
  o.qps = c.number("qps");
  o.headroom = c.number("headroom");
  // Plans with terms have a goodput target only with a goodput term; older plans always have one.
  if (o.slo.terms)
    o.goodput_target = c.optional_number("goodput_target");
  else
    o.goodput_target = c.number("goodput_target");
  o.max_running = c.integer("max_running");
  o.max_batched_tokens = c.integer("max_batched_tokens");
  o.block_tokens = c.integer("block_tokens");
  o.efficiencies = c.string("efficiencies");
  for (const auto& [k, v] : c.object("definitions").members()) o.definitions[k] = v.as_string();
  return o;
}

std::vector<plan_op_group> parse_groups(const node& a) {
  std::vector<plan_op_group> out;
  for (const auto& g : a.elements())
    out.push_back(
        {g.string("group"), g.string("bound"), g.number("seconds"), g.number("floor_seconds")});
  return out;
}

json groups_json(const std::vector<plan_op_group>& groups) {
  json a = json::array();
  for (const auto& g : groups)
    a.push_back({{"group", g.group},
                 {"bound", g.bound},
                 {"seconds", g.seconds},
                 {"floor_seconds", g.floor_seconds}});
  return a;
}

// An option stops at its first failing stage like a row; what a stage did not reach is absent.
plan_tp_option parse_option(const node& t) {
  plan_tp_option o;
  o.tensor_parallel = t.integer("tensor_parallel");
  o.weight_bytes = t.number("weight_bytes");
  o.kv_budget_bytes = t.number("kv_budget_bytes");
  o.kv_blocks = t.integer("kv_blocks");
  o.chosen = t.boolean("chosen");
  o.error = t.optional_string("error");
  o.all_reduce = t.optional_string("all_reduce");
  o.max_batch_fit = t.optional_integer("max_batch_fit");
  o.max_batch_slo = t.optional_integer("max_batch_slo");
  o.step_batch = t.optional_integer("step_batch");
  o.step_seconds = t.optional_number("step_seconds");
  if (o.step_seconds) o.step_breakdown = parse_groups(t.array("step_breakdown"));
  o.max_rate_per_replica = t.optional_number("max_rate_per_replica");
  if (o.max_rate_per_replica) {
    o.max_rate_per_gpu = t.number("max_rate_per_gpu");
    o.ttft_p99_seconds = t.number("ttft_p99_seconds");
    o.tpot_p99_seconds = t.number("tpot_p99_seconds");
  }
  o.gpus_needed = t.optional_integer("gpus_needed");
  o.cost_per_million_output_tokens = t.optional_number("cost_per_million_output_tokens");
  return o;
}

json option_json(const plan_tp_option& o) {
  json j = {{"tensor_parallel", o.tensor_parallel},
            {"weight_bytes", o.weight_bytes},
            {"kv_budget_bytes", o.kv_budget_bytes},
            {"kv_blocks", o.kv_blocks},
            {"chosen", o.chosen}};
  put_optional(j, "error", o.error);
  put_optional(j, "all_reduce", o.all_reduce);
  put_optional(j, "max_batch_fit", o.max_batch_fit);
  put_optional(j, "max_batch_slo", o.max_batch_slo);
  put_optional(j, "step_batch", o.step_batch);
  put_optional(j, "step_seconds", o.step_seconds);
  if (o.step_seconds) j["step_breakdown"] = groups_json(o.step_breakdown);
  put_optional(j, "max_rate_per_replica", o.max_rate_per_replica);
  put_optional(j, "max_rate_per_gpu", o.max_rate_per_gpu);
  put_optional(j, "ttft_p99_seconds", o.ttft_p99_seconds);
  put_optional(j, "tpot_p99_seconds", o.tpot_p99_seconds);
  put_optional(j, "gpus_needed", o.gpus_needed);
  put_optional(j, "cost_per_million_output_tokens", o.cost_per_million_output_tokens);
  return j;
}

plan_row parse_row(const node& r, const plan_config& config) {
  plan_row o;
  o.gpu = r.string("gpu");
  o.gpu_name = r.string("gpu_name");
  o.profile = r.string("profile");
  o.memory_bytes = r.integer("memory_bytes");
  o.context = r.number("context");
  o.weight_bytes = r.number("weight_bytes");
  o.workspace_bytes = r.number("workspace_bytes");
  o.kv_budget_bytes = r.number("kv_budget_bytes");
  o.kv_bytes_per_token = r.integer("kv_bytes_per_token");
  o.kv_blocks = r.integer("kv_blocks");
  o.derated = r.boolean("derated");
  o.error = r.optional_string("error");
  // Written by every plan since the SLO terms and tensor parallelism (config.slo.terms).
  const bool current = config.slo.terms.has_value();
  if (current) {
    o.tp_options.emplace();
    for (const auto& t : r.array("tp_options").elements()) o.tp_options->push_back(parse_option(t));
  }
  // Each later stage is there unless an earlier one failed; a stage that ran is complete.
  if (o.error && !r.has("ceilings")) return o;  // the memory stage failed
  o.ceilings = r.string("ceilings");
  o.ceilings_basis = r.string("ceilings_basis");
  o.bytes_per_second = r.number("bytes_per_second");
  o.flops_per_second = r.number("flops_per_second");
  o.compute_dtype = r.string("compute_dtype");
  o.step_time_model = r.string("step_time_model");
  if (current) {
    o.tensor_parallel = r.integer("tensor_parallel");
    o.all_reduce = r.optional_string("all_reduce");
  }
  // The largest batch that fits is there whenever a batch of one fits, so always when some
  // batch met the SLO.
  if (r.has("max_batch_fit") || r.has("fit_step_seconds") || r.has("fit_tokens_per_second") ||
      r.has("max_batch_slo")) {
    o.max_batch_fit = r.integer("max_batch_fit");
    o.fit_step_seconds = r.number("fit_step_seconds");
    o.fit_tokens_per_second = r.number("fit_tokens_per_second");
  }
  if (o.error && !r.has("max_batch_slo")) return o;  // no batch meets the SLO
  o.max_batch_slo = r.integer("max_batch_slo");
  o.slo_step_seconds = r.number("slo_step_seconds");
  o.slo_tokens_per_second = r.number("slo_tokens_per_second");
  o.simulations = r.integer("simulations");
  if (current) o.slo_step_breakdown = parse_groups(r.array("slo_step_breakdown"));
  if (o.error) return o;  // the rate search found no feasible rate
  o.max_rate_per_gpu = r.number("max_rate_per_gpu");
  o.goodput_fraction = r.number("goodput_fraction");
  o.goodput_requests_per_second = r.number("goodput_requests_per_second");
  o.ttft_p99_seconds = r.number("ttft_p99_seconds");
  o.tpot_p99_seconds = r.number("tpot_p99_seconds");
  o.output_tokens_per_second = r.number("output_tokens_per_second");
  if (config.qps > 0) o.gpus_needed = r.integer("gpus_needed");
  o.price_per_hour = r.optional_number("price_per_hour");
  if (o.price_per_hour) o.cost_per_million_output_tokens = r.number("cost_per_million_output_tokens");
  if (o.price_per_hour && o.gpus_needed) o.fleet_cost_per_hour = r.number("fleet_cost_per_hour");
  if (current) {
    if (config.slo.ttft_percentile) o.ttft_at_slo_seconds = r.number("ttft_at_slo_seconds");
    if (config.slo.tpot_percentile) o.tpot_at_slo_seconds = r.number("tpot_at_slo_seconds");
    o.rejected_requests = r.integer("rejected_requests");
    o.rate_capped = r.boolean("rate_capped");
  }
  return o;
}

}  // namespace

plan_document parse_plan(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_plan_schema};
  const node top = open_document(doc, ctx);
  plan_document out;
  out.env = parse_environment(top.object("environment"));
  out.config = parse_config(top.object("config"));
  for (const auto& r : top.array("rows").elements()) out.rows.push_back(parse_row(r, out.config));
  return out;
}

plan_document read_plan(const std::filesystem::path& path) {
  return parse_plan(read_json(path, k_plan_schema), path.string());
}

json to_json(const plan_config& c) {
  json slo = {{"ttft_seconds", c.slo.ttft_seconds}, {"tpot_seconds", c.slo.tpot_seconds}};
  put_optional(slo, "terms", c.slo.terms);
  put_optional(slo, "ttft_percentile", c.slo.ttft_percentile);
  put_optional(slo, "tpot_percentile", c.slo.tpot_percentile);
  json j = {{"model", c.model},
            {"weights", c.weights},
            {"kv_dtype", c.kv_dtype},
            {"workload", c.workload},
            {"requests", c.requests},
            {"mean_prompt_tokens", c.mean_prompt_tokens},
            {"mean_output_tokens", c.mean_output_tokens},
            {"workload_rate_per_second", c.workload_rate_per_second},
            {"slo", slo},
            {"qps", c.qps},
            {"headroom", c.headroom},
            {"max_running", c.max_running},
            {"max_batched_tokens", c.max_batched_tokens},
            {"block_tokens", c.block_tokens},
            {"efficiencies", c.efficiencies},
            {"definitions", c.definitions}};
  put_optional(j, "goodput_target", c.goodput_target);
  return j;
}

json to_json(const plan_row& r) {
  json j = {{"gpu", r.gpu},
            {"gpu_name", r.gpu_name},
            {"profile", r.profile},
            {"memory_bytes", r.memory_bytes},
            {"context", r.context},
            {"weight_bytes", r.weight_bytes},
            {"workspace_bytes", r.workspace_bytes},
            {"kv_budget_bytes", r.kv_budget_bytes},
            {"kv_bytes_per_token", r.kv_bytes_per_token},
            {"kv_blocks", r.kv_blocks},
            {"derated", r.derated}};
  put_optional(j, "error", r.error);
  put_optional(j, "ceilings", r.ceilings);
  put_optional(j, "ceilings_basis", r.ceilings_basis);
  put_optional(j, "bytes_per_second", r.bytes_per_second);
  put_optional(j, "flops_per_second", r.flops_per_second);
  put_optional(j, "compute_dtype", r.compute_dtype);
  put_optional(j, "step_time_model", r.step_time_model);
  put_optional(j, "tensor_parallel", r.tensor_parallel);
  put_optional(j, "all_reduce", r.all_reduce);
  put_optional(j, "max_batch_fit", r.max_batch_fit);
  put_optional(j, "fit_step_seconds", r.fit_step_seconds);
  put_optional(j, "fit_tokens_per_second", r.fit_tokens_per_second);
  put_optional(j, "max_batch_slo", r.max_batch_slo);
  put_optional(j, "slo_step_seconds", r.slo_step_seconds);
  put_optional(j, "slo_tokens_per_second", r.slo_tokens_per_second);
  put_optional(j, "simulations", r.simulations);
  if (r.slo_step_breakdown) j["slo_step_breakdown"] = groups_json(*r.slo_step_breakdown);
  put_optional(j, "max_rate_per_gpu", r.max_rate_per_gpu);
  put_optional(j, "goodput_fraction", r.goodput_fraction);
  put_optional(j, "goodput_requests_per_second", r.goodput_requests_per_second);
  put_optional(j, "ttft_p99_seconds", r.ttft_p99_seconds);
  put_optional(j, "tpot_p99_seconds", r.tpot_p99_seconds);
  put_optional(j, "output_tokens_per_second", r.output_tokens_per_second);
  put_optional(j, "gpus_needed", r.gpus_needed);
  put_optional(j, "price_per_hour", r.price_per_hour);
  put_optional(j, "cost_per_million_output_tokens", r.cost_per_million_output_tokens);
  put_optional(j, "fleet_cost_per_hour", r.fleet_cost_per_hour);
  put_optional(j, "ttft_at_slo_seconds", r.ttft_at_slo_seconds);
  put_optional(j, "tpot_at_slo_seconds", r.tpot_at_slo_seconds);
  put_optional(j, "rejected_requests", r.rejected_requests);
  put_optional(j, "rate_capped", r.rate_capped);
  if (r.tp_options) {
    json a = json::array();
    for (const auto& t : *r.tp_options) a.push_back(option_json(t));
    j["tp_options"] = a;
  }
  return j;
}

json to_json(const plan_document& doc) {
  json rows = json::array();
  for (const auto& r : doc.rows) rows.push_back(to_json(r));
  return {{"schema", k_plan_schema},
          {"environment", to_json(doc.env)},
          {"config", to_json(doc.config)},
          {"rows", rows}};
}

}  // namespace ridgeline::schema
