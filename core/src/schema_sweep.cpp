// Reader and writer of ridgeline.sweep/v1 (schemas/sweep.hpp).
#include "ridgeline/core/schemas/sweep.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

// "read" | "copy" | "write" (perfmodel/bandwidth_floor.hpp's traffic kinds), when present.
std::optional<std::string> parse_ceiling_kind(const node& n, std::string_view key) {
  std::optional<std::string> k = n.optional_string(key);
  if (k && *k != "read" && *k != "copy" && *k != "write") {
    n.fail_member(key, "expected \"read\", \"copy\" or \"write\", found \"" + *k + "\"");
  }
  return k;
}

sweep_config parse_config(const node& c) {
  sweep_config o;
  o.model = c.string("model");
  o.batches = c.integers("batches");
  o.contexts = c.integers("contexts");
  o.phases = c.strings("phases");
  o.dtype = c.string("dtype");
  o.weights = c.string("weights");
  o.sampling = c.string("sampling");
  o.weight_format = optional_weight_format(c, "weight_format");
  o.weight_layout = c.optional_string("weight_layout");
  o.cuda_graphs = c.boolean("cuda_graphs");
  o.split_tokens = c.integer("split_tokens");
  o.pdl = c.optional_boolean("pdl");
  o.deterministic = c.optional_boolean("deterministic");
  o.gemm_candidates = c.optional_integer("gemm_candidates");
  o.gemm = c.optional_string("gemm");
  o.decode_gemm = c.optional_string("decode_gemm");
  o.kv_blocks = c.integer("kv_blocks");
  o.block_tokens = c.integer("block_tokens");
  o.max_prefill_tokens = c.integer("max_prefill_tokens");
  o.floor_bytes_per_second = c.number("floor_bytes_per_second");
  o.floor_source = c.string("floor_source");
  o.floor_ceiling = parse_ceiling_kind(c, "floor_ceiling");
  o.floor_rule = c.optional_string("floor_rule");
  o.floor_copy_bytes_per_second = c.optional_number("floor_copy_bytes_per_second");
  o.floor_write_bytes_per_second = c.optional_number("floor_write_bytes_per_second");
  o.peak_bf16_flops_per_second = c.number("peak_bf16_flops_per_second");
  o.peak_source = c.optional_string("peak_source");
  o.floor_rederived = c.optional_string("floor_rederived");
  o.timing = c.string("timing");
  if (c.has("peer")) o.peer = c.object("peer").value();
  return o;
}

sweep_row parse_row(const node& r) {
  sweep_row o;
  o.phase = r.string("phase");
  if (o.phase != "decode" && o.phase != "prefill") {
    r.fail_member("phase", "expected \"decode\" or \"prefill\", found \"" + o.phase + "\"");
  }
  o.batch = r.integer("batch");
  o.context = r.integer("context");
  if (o.batch < 1) r.fail_member("batch", "must be at least 1");
  if (o.context < 0) r.fail_member("context", "must not be negative");
  o.kv_bytes_per_token = r.number("kv_bytes_per_token");
  o.max_sequences = r.integer("max_sequences");
  o.skipped = r.optional_string("skipped");
  if (o.skipped) return o;
  sweep_measured m;
  m.step_seconds = parse_timing_summary(r.object("step_seconds"));
  if (!(m.step_seconds.median > 0)) {
    r.fail_member("step_seconds.median", "must be positive on a measured row");
  }
  m.measurement = parse_measurement(r.object("measurement"));
  m.tokens_per_second = r.number("tokens_per_second");
  m.bytes_per_step = r.number("bytes_per_step");
  m.weight_bytes = r.number("weight_bytes");
  m.kv_read_bytes = r.number("kv_read_bytes");
  m.kv_write_bytes = r.number("kv_write_bytes");
  m.flops_per_step = r.number("flops_per_step");
  m.bytes_per_second = r.number("bytes_per_second");
  m.flops_per_second = r.number("flops_per_second");
  m.intensity_flops_per_byte = r.number("intensity_flops_per_byte");
  m.floor_seconds = r.number("floor_seconds");
  m.pct_of_floor = r.number("pct_of_floor");
  m.pct_of_peak_flops = r.number("pct_of_peak_flops");
  m.floor_ceiling = parse_ceiling_kind(r, "floor_ceiling");
  m.peer_seconds = r.optional_number("peer_seconds");
  o.measured = std::move(m);
  return o;
}

}  // namespace

sweep_document parse_sweep(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_sweep_schema};
  const node top = open_document(doc, ctx);
  sweep_document out;
  out.env = parse_environment(top.object("environment"));
  out.config = parse_config(top.object("config"));
  for (const auto& r : top.array("rows").elements()) out.rows.push_back(parse_row(r));
  return out;
}

sweep_document read_sweep(const std::filesystem::path& path) {
  return parse_sweep(read_json(path, k_sweep_schema), path.string());
}

json to_json(const sweep_config& c) {
  json j = {{"model", c.model},
            {"batches", c.batches},
            {"contexts", c.contexts},
            {"phases", c.phases},
            {"dtype", c.dtype},
            {"weights", c.weights},
            {"sampling", c.sampling},
            {"cuda_graphs", c.cuda_graphs},
            {"split_tokens", c.split_tokens},
            {"kv_blocks", c.kv_blocks},
            {"block_tokens", c.block_tokens},
            {"max_prefill_tokens", c.max_prefill_tokens},
            {"floor_bytes_per_second", c.floor_bytes_per_second},
            {"floor_source", c.floor_source},
            {"peak_bf16_flops_per_second", c.peak_bf16_flops_per_second},
            {"timing", c.timing}};
  put_optional(j, "weight_format", c.weight_format);
  put_optional(j, "weight_layout", c.weight_layout);
  put_optional(j, "pdl", c.pdl);
  put_optional(j, "deterministic", c.deterministic);
  put_optional(j, "gemm_candidates", c.gemm_candidates);
  put_optional(j, "gemm", c.gemm);
  put_optional(j, "decode_gemm", c.decode_gemm);
  put_optional(j, "peer", c.peer);
  put_optional(j, "floor_ceiling", c.floor_ceiling);
  put_optional(j, "floor_rule", c.floor_rule);
  put_optional(j, "floor_copy_bytes_per_second", c.floor_copy_bytes_per_second);
  put_optional(j, "floor_write_bytes_per_second", c.floor_write_bytes_per_second);
  put_optional(j, "peak_source", c.peak_source);
  put_optional(j, "floor_rederived", c.floor_rederived);
  return j;
}

json to_json(const sweep_row& r) {
  json j = {{"phase", r.phase},
            {"batch", r.batch},
            {"context", r.context},
            {"kv_bytes_per_token", r.kv_bytes_per_token},
            {"max_sequences", r.max_sequences}};
  if (r.skipped) {
    j["skipped"] = *r.skipped;
    return j;
  }
  if (!r.measured) return j;
  const auto& m = *r.measured;
  j["step_seconds"] = to_json(m.step_seconds);
  j["measurement"] = to_json(m.measurement);
  j["tokens_per_second"] = m.tokens_per_second;
  j["bytes_per_step"] = m.bytes_per_step;
  j["weight_bytes"] = m.weight_bytes;
  j["kv_read_bytes"] = m.kv_read_bytes;
  j["kv_write_bytes"] = m.kv_write_bytes;
  j["flops_per_step"] = m.flops_per_step;
  j["bytes_per_second"] = m.bytes_per_second;
  j["flops_per_second"] = m.flops_per_second;
  j["intensity_flops_per_byte"] = m.intensity_flops_per_byte;
  j["floor_seconds"] = m.floor_seconds;
  j["pct_of_floor"] = m.pct_of_floor;
  j["pct_of_peak_flops"] = m.pct_of_peak_flops;
  put_optional(j, "floor_ceiling", m.floor_ceiling);
  put_optional(j, "peer_seconds", m.peer_seconds);
  return j;
}

json to_json(const sweep_document& doc) {
  json rows = json::array();
  for (const auto& r : doc.rows) rows.push_back(to_json(r));
  return {{"schema", k_sweep_schema},
          {"environment", to_json(doc.env)},
          {"config", to_json(doc.config)},
          {"rows", rows}};
}

}  // namespace ridgeline::schema
