// ridgeline.serve_record/v1 (`ridgeline serve --record FILE`): the server's own timing of every
// request it answered, on the host's steady clock, keyed by the client's X-Request-Id; joined with
// a `ridgeline load` run on the same host it splits latency into the engine's share and the HTTP
// layer's (scripts/http_overhead.py). docs/results-formats.md lists every field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_serve_record_schema = "ridgeline.serve_record/v1";

// One column per field, one entry per request, in the order the requests left; -1 = not reached.
struct serve_record_requests {
  std::vector<std::string> client_id, outcome;
  std::vector<std::int64_t> prompt_tokens, output_tokens, cached_tokens;
  std::vector<double> arrival_seconds, first_token_seconds, last_token_seconds,
      first_write_seconds, last_write_seconds;
};

// The engine's steps, in order, on the same clock (columns of equal length; empty in files that
// predate them). graph: 1 when a CUDA graph replayed the forward pass.
struct serve_record_steps {
  std::vector<double> start_seconds, end_seconds, gpu_seconds, gap_seconds;
  std::vector<std::int64_t> sequences, prefill_tokens, decode_tokens, running, waiting, graph;
};

struct serve_record_document {
  environment env;
  std::string model, executor, clock;
  serve_record_requests requests;
  serve_record_steps steps;
};

serve_record_document parse_serve_record(const nlohmann::json& doc, std::string_view source);
serve_record_document read_serve_record(const std::filesystem::path& path);

}  // namespace ridgeline::schema
