// What an OpenAI-compatible server's answers mean to the load client: one streamed event's data
// (a completion or chat-completion chunk, the usage chunk, an error object, or "[DONE]"), a
// non-streamed response body, and an error body's message.
//   stream_chunk c = interpret_stream_data(R"({"choices":[{"text":"Hi"}]})");  // content "Hi"
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ridgeline::load {

struct usage_counts {
  std::optional<std::int64_t> prompt_tokens, completion_tokens, cached_tokens;
};

struct stream_chunk {
  enum class kind {
    content,     // a choice with text (completions: text; chat: delta.content or reasoning)
    empty,       // a choice without text (chat's first role-only delta, a finish_reason chunk)
    usage_only,  // no choices, a usage object (the last chunk with include_usage)
    done,        // "[DONE]"
    error,       // an error object (vLLM: {"error": {...}} or {"object": "error", ...})
    malformed,   // not JSON, or JSON that is no object
  };
  kind type = kind::malformed;
  std::string text;
  usage_counts usage;  // from a non-null "usage" member of any chunk
  std::string error;   // the error's message, or why it is malformed
};
stream_chunk interpret_stream_data(std::string_view data);

// A non-streamed completion or chat completion: its text, usage, or an error / why malformed.
struct completion_body {
  bool ok = false;
  bool server_error = false;  // an error object (else `error` says why the body is malformed)
  std::string text;
  usage_counts usage;
  std::string error;
};
completion_body interpret_completion_body(std::string_view body);

// The message of an error response body ({"error": {"message": ...}}, {"message": ...},
// {"detail": ...}), else the body itself, cut to one printable line.
std::string error_message_of(std::string_view body);

}  // namespace ridgeline::load
