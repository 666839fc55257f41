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
  if (top.has("steps")) {
    const node st = top.object("steps");
    serve_record_steps& s = out.steps;
    s.start_seconds = st.numbers("start_seconds");
    const std::size_t m = s.start_seconds.size();
    auto same = [&](const char* key, auto v) {
      if (v.size() != m) {
        st.fail_member(key,
                       "has " + std::to_string(v.size()) + " entries, expected " + std::to_string(m));
      }
      return v;
    };
    s.end_seconds = same("end_seconds", st.numbers("end_seconds"));
    s.gpu_seconds = same("gpu_seconds", st.numbers("gpu_seconds"));
    s.gap_seconds = same("gap_seconds", st.numbers("gap_seconds"));
    s.sequences = same("sequences", st.integers("sequences"));
    s.prefill_tokens = same("prefill_tokens", st.integers("prefill_tokens"));
    s.decode_tokens = same("decode_tokens", st.integers("decode_tokens"));
    s.running = same("running", st.integers("running"));
    s.waiting = same("waiting", st.integers("waiting"));
    s.graph = same("graph", st.integers("graph"));
  }
  return out;
}

serve_record_document read_serve_record(const std::filesystem::path& path) {
  return parse_serve_record(read_json(path, k_serve_record_schema), path.string());
}

}  // namespace ridgeline::schema
