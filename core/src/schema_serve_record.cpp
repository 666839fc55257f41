// Reader of ridgeline.serve_record/v1 (schemas/serve_record.hpp).
#include "ridgeline/core/schemas/serve_record.hpp"

#include "ridgeline/core/schema.hpp"

namespace ridgeline::schema {

using nlohmann::json;

namespace {

// Reads columns of one object that must all have `n` entries.
struct columns {
  const node& obj;
  std::size_t n;
  template <typename V>
  V sized(const char* key, V v) const {
    if (v.size() != n) {
      obj.fail_member(key,
                      "has " + std::to_string(v.size()) + " entries, expected " + std::to_string(n));
    }
    return v;
  }
  std::vector<double> numbers(const char* key) const { return sized(key, obj.numbers(key)); }
  std::vector<std::int64_t> integers(const char* key) const { return sized(key, obj.integers(key)); }
  std::vector<std::string> strings(const char* key) const { return sized(key, obj.strings(key)); }
};

}  // namespace

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
  const columns rc{r, q.client_id.size()};
  q.outcome = rc.strings("outcome");
  q.prompt_tokens = rc.integers("prompt_tokens");
  q.output_tokens = rc.integers("output_tokens");
  q.cached_tokens = rc.integers("cached_tokens");
  q.arrival_seconds = rc.numbers("arrival_seconds");
  q.first_token_seconds = rc.numbers("first_token_seconds");
  q.last_token_seconds = rc.numbers("last_token_seconds");
  q.first_write_seconds = rc.numbers("first_write_seconds");
  q.last_write_seconds = rc.numbers("last_write_seconds");
  if (top.has("steps")) {
    const node st = top.object("steps");
    serve_record_steps& s = out.steps;
    s.start_seconds = st.numbers("start_seconds");
    const columns sc{st, s.start_seconds.size()};
    s.end_seconds = sc.numbers("end_seconds");
    s.gpu_seconds = sc.numbers("gpu_seconds");
    s.gap_seconds = sc.numbers("gap_seconds");
    s.sequences = sc.integers("sequences");
    s.prefill_tokens = sc.integers("prefill_tokens");
    s.decode_tokens = sc.integers("decode_tokens");
    s.running = sc.integers("running");
    s.waiting = sc.integers("waiting");
    s.graph = sc.integers("graph");
  }
  return out;
}

serve_record_document read_serve_record(const std::filesystem::path& path) {
  return parse_serve_record(read_json(path, k_serve_record_schema), path.string());
}

}  // namespace ridgeline::schema
