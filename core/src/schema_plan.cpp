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
  o.qps = c.number("qps");
  o.headroom = c.number("headroom");
  o.goodput_target = c.number("goodput_target");
  o.max_running = c.integer("max_running");
  o.max_batched_tokens = c.integer("max_batched_tokens");
  o.block_tokens = c.integer("block_tokens");
  o.efficiencies = c.string("efficiencies");
  for (const auto& [k, v] : c.object("definitions").members()) o.definitions[k] = v.as_string();
  return o;
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
  // Each later stage is there unless an earlier one failed; a stage that ran is complete.
  if (o.error && !r.has("ceilings")) return o;  // the memory stage failed
  o.ceilings = r.string("ceilings");
  o.ceilings_basis = r.string("ceilings_basis");
  o.bytes_per_second = r.number("bytes_per_second");
  o.flops_per_second = r.number("flops_per_second");
  o.compute_dtype = r.string("compute_dtype");
  o.step_time_model = r.string("step_time_model");
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
  return {{"model", c.model},
          {"weights", c.weights},
          {"kv_dtype", c.kv_dtype},
          {"workload", c.workload},
          {"requests", c.requests},
          {"mean_prompt_tokens", c.mean_prompt_tokens},
          {"mean_output_tokens", c.mean_output_tokens},
          {"workload_rate_per_second", c.workload_rate_per_second},
          {"slo", {{"ttft_seconds", c.slo.ttft_seconds}, {"tpot_seconds", c.slo.tpot_seconds}}},
          {"qps", c.qps},
          {"headroom", c.headroom},
          {"goodput_target", c.goodput_target},
          {"max_running", c.max_running},
          {"max_batched_tokens", c.max_batched_tokens},
          {"block_tokens", c.block_tokens},
          {"efficiencies", c.efficiencies},
          {"definitions", c.definitions}};
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
  put_optional(j, "max_batch_fit", r.max_batch_fit);
  put_optional(j, "fit_step_seconds", r.fit_step_seconds);
  put_optional(j, "fit_tokens_per_second", r.fit_tokens_per_second);
  put_optional(j, "max_batch_slo", r.max_batch_slo);
  put_optional(j, "slo_step_seconds", r.slo_step_seconds);
  put_optional(j, "slo_tokens_per_second", r.slo_tokens_per_second);
  put_optional(j, "simulations", r.simulations);
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
