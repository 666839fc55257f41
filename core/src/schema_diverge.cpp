// Readers of ridgeline.diverge/v1 and ridgeline.diverge_compare/v1 (schemas/diverge.hpp).
#include "ridgeline/core/schemas/diverge.hpp"

namespace ridgeline::schema {

using nlohmann::json;

fingerprint_document parse_fingerprint(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_diverge_schema};
  const node top = open_document(doc, ctx);
  fingerprint_document out;
  out.env = parse_environment(top.object("environment"));
  const node c = top.object("config");
  auto& cfg = out.config;
  cfg.raw = c.value();
  cfg.model = c.string("model");
  cfg.weights = c.string("weights");
  cfg.executor = c.string("executor");
  cfg.weight_format = optional_weight_format(c, "weight_format");
  const node ps = c.object("prompt_set");
  cfg.prompt_set_id = ps.string("id");
  cfg.prompt_set_hash = ps.string("hash");
  cfg.prompts = ps.integer("prompts");
  cfg.steps = c.integer("steps");
  cfg.batch = c.integer("batch");
  cfg.teacher_forced = c.nullable_object("teacher_forced").has_value();
  cfg.random_weights_caveat = c.optional_string("random_weights_caveat");
  for (const auto& r : top.array("rows").elements()) {
    fingerprint_row row;
    row.prompt = r.integer("prompt");
    row.step = r.integer("step");
    row.token = r.integer("token");
    row.top_ids = r.integers("top_ids");
    row.top_logprobs = r.numbers("top_logprobs");
    if (row.top_ids.size() != row.top_logprobs.size()) {
      r.fail_member("top_logprobs", "expected as many entries as top_ids");
    }
    row.margin = r.number("margin");
    row.logits_hash = r.string("logits_hash");
    row.fed = r.optional_integer("fed");
    out.rows.push_back(std::move(row));
  }
  return out;
}

fingerprint_document read_fingerprint(const std::filesystem::path& path) {
  return parse_fingerprint(read_json(path, k_diverge_schema), path.string());
}

diverge_compare_document parse_diverge_compare(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_diverge_compare_schema};
  const node top = open_document(doc, ctx);
  diverge_compare_document out;
  out.env = parse_environment(top.object("environment"));
  const node c = top.object("config");
  for (const char* side : {"a", "b"}) {
    const node s = c.object(side);
    s.string("file");
    s.string("gpu");
    s.object("config");
  }
  out.config = c.value();
  const node s = top.object("summary");
  auto& sum = out.summary;
  sum.verdict = s.string("verdict");
  sum.prompts = s.integer("prompts");
  sum.prompts_diverged = s.integer("prompts_diverged");
  sum.earliest_divergence_step = s.nullable_integer("earliest_divergence_step");
  sum.steps = s.integer("steps");
  sum.steps_compared = s.integer("steps_compared");
  sum.token_mismatches = s.integer("token_mismatches");
  sum.same_top1_share = s.number("same_top1_share");
  sum.logits_equal_share = s.number("logits_equal_share");
  sum.kl_mean = s.number("kl_mean");
  sum.kl_p99 = s.number("kl_p99");
  sum.kl_max = s.number("kl_max");
  sum.kl_undefined_steps = s.integer("kl_undefined_steps");
  sum.max_abs_delta_logprob = s.number("max_abs_delta_logprob");
  for (const auto& r : top.array("rows").elements()) {
    diverge_prompt_row row;
    row.prompt = r.integer("prompt");
    row.verdict = r.string("verdict");
    row.divergence_step = r.nullable_integer("divergence_step");
    row.margin_at_divergence = r.nullable_number("margin_at_divergence");
    row.margin_b_at_divergence = r.nullable_number("margin_b_at_divergence");
    row.steps_compared = r.integer("steps_compared");
    row.token_mismatches = r.integer("token_mismatches");
    row.kl_mean = r.nullable_number("kl_mean");
    row.kl_max = r.nullable_number("kl_max");
    row.max_abs_delta_logprob = r.number("max_abs_delta_logprob");
    row.same_top1_share = r.number("same_top1_share");
    row.logits_equal_share = r.number("logits_equal_share");
    out.rows.push_back(std::move(row));
  }
  for (const auto& d : top.array("divergences").elements()) {
    out.divergences.push_back(
        {d.integer("prompt"), d.integer("step"), d.number("margin_a"), d.number("margin_b")});
  }
  for (const auto& b : top.array("margin_histogram").elements()) {
    out.margin_histogram.push_back(
        {b.number("lo"), b.nullable_number("hi"), b.integer("steps"), b.integer("divergences")});
  }
  const node steps = top.array("steps");
  for (const auto& st : steps.elements()) {
    st.integer("prompt");
    st.integer("step");
    st.boolean("same_token");
    st.nullable_number("kl_topk");
  }
  out.steps = steps.value();
  return out;
}

diverge_compare_document read_diverge_compare(const std::filesystem::path& path) {
  return parse_diverge_compare(read_json(path, k_diverge_compare_schema), path.string());
}

}  // namespace ridgeline::schema
