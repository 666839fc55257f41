// Reader of ridgeline.serve_record/v1 (schemas/serve_record.hpp).
#include "ridgeline/core/schemas/serve_record.hpp"

#include "ridgeline/core/schema.hpp"

namespace ridgeline::schema {

using nlohmann::json;

serve_record_document parse_serve_record(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_serve_record_schema};
  const node top = open_document(doc, ctx);
  serve_record_document out;
  out.env = parse_environment(top.object("environment"));
  const node c = top.object("config");
  out.model = c.string("model");
  out.executor = c.string("executor");
  out.clock = c.string("clock");
  const node r = top.object("requests");
  serve_record_requests& q = out.requests;
  q.client_id = r.strings("client_id");
  const std::size_t n = q.client_id.size();
  auto checked = [&](const char* key, auto v) {
    if (v.size() != n) {
      r.fail_member(key,
                    "has " + std::to_string(v.size()) + " entries, expected " + std::to_string(n));
    }
    return v;
  };
  q.outcome = checked("outcome", r.strings("outcome"));
  q.prompt_tokens = checked("prompt_tokens", r.integers("prompt_tokens"));
  q.output_tokens = checked("output_tokens", r.integers("output_tokens"));
  q.cached_tokens = checked("cached_tokens", r.integers("cached_tokens"));
  q.arrival_seconds = checked("arrival_seconds", r.numbers("arrival_seconds"));
  q.first_token_seconds = checked("first_token_seconds", r.numbers("first_token_seconds"));
  q.last_token_seconds = checked("last_token_seconds", r.numbers("last_token_seconds"));
  q.first_write_seconds = checked("first_write_seconds", r.numbers("first_write_seconds"));
  q.last_write_seconds = checked("last_write_seconds", r.numbers("last_write_seconds"));
  return out;
}

serve_record_document read_serve_record(const std::filesystem::path& path) {
  return parse_serve_record(read_json(path, k_serve_record_schema), path.string());
}

}  // namespace ridgeline::schema
