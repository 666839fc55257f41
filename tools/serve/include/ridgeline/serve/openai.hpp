// The OpenAI API as `ridgeline serve` speaks it: request bodies of /v1/completions and
// /v1/chat/completions parsed and validated into one typed request (or an OpenAI-style error with
// its HTTP status), the JSON of responses and streamed chunks, and the text side of a stream
// (detokenized pieces, stop strings held back until they are ruled out). No sockets here: the
// server (server.hpp) moves bytes; everything a client can get wrong is decided in this file and
// unit-tested without a network. docs/serving.md lists the parameters and errors.
//   auto r = serve::parse_api_request(serve::endpoint::chat, body, limits);
//   if (auto* e = std::get_if<serve::api_error>(&r)) reply(e->status, serve::error_body(*e));
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/tokenizer.hpp"

namespace ridgeline::serve {

// An error as OpenAI's API returns it: {"error": {"message", "type", "param", "code"}}.
struct api_error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
};
std::string error_body(const api_error& e);

enum class endpoint { completions, chat };

// What the server allows (its options).
struct api_limits {
  std::int32_t max_stop_strings = 16;
  std::int32_t max_stop_length = 256;  // bytes of one stop string
  // Most alternatives a request may ask per token (serve --max-logprobs; the executor computes
  // that many for every token); 0: logprobs are off and a request that asks gets a 400.
  std::int32_t max_logprobs = 0;
};

struct api_request {
  endpoint kind = endpoint::completions;
  std::string model;
  // completions: a text prompt, or token ids (prompt given as an array of integers)
  std::string prompt;
  std::vector<token_id> prompt_ids;
  bool prompt_is_ids = false;
  std::vector<chat_message> messages;  // chat
  std::int32_t max_tokens = 0;         // 0: not given (completions: 16; chat: to the context)
  float temperature = 1.0f;            // 0: greedy
  float top_p = 1.0f;
  std::int32_t top_k = 0;  // 0 or -1: off
  float repetition_penalty = 1.0f;
  std::optional<std::uint64_t> seed;
  std::vector<std::string> stop;         // stop strings (not in the output)
  std::vector<token_id> stop_token_ids;  // extension: stop on these ids too
  bool ignore_eos = false;               // extension: the end-of-sequence tokens do not stop
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // stream_options.continuous_usage_stats (vLLM's extension): every chunk carries the usage so
  // far, so a client counts tokens exactly even when a token completes no text.
  bool continuous_usage = false;
  // Top alternatives per output token: completions' `logprobs` (an integer), chat's
  // `logprobs: true` with `top_logprobs` (default 0). -1: none asked; else 0..max_logprobs.
  std::int32_t logprobs = -1;
};

std::variant<api_request, api_error> parse_api_request(endpoint kind, std::string_view body,
                                                       const api_limits& limits);

namespace detail {
// parse_api_request's two halves (tests check that they agree with the full parse alone). The
// full parse: the body as a JSON document, every field checked.
std::variant<api_request, api_error> parse_api_request_dom(endpoint kind, std::string_view body,
                                                           const api_limits& limits);
// The fast read of a body's prompt of token ids: true when the body is an object whose only
// top-level "prompt" member is a non-empty array of plain non-negative integers below 2^31
// (digits only); then [begin, end) is that array's span in the body and ids its values. False
// for anything else, including bodies that are not JSON (the full parse says so).
bool find_prompt_ids(std::string_view body, std::size_t& begin, std::size_t& end,
                     std::vector<token_id>& ids);
}  // namespace detail

// Ids for the response objects: "cmpl-<n>" / "chatcmpl-<n>".
std::string response_id(endpoint kind, std::uint64_t n);

struct usage_counts {
  std::int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

// One streamed chunk: text (may be empty), finish_reason (empty: null). The first chat chunk
// carries the role. Each is one `data: ...` event of the stream.
nlohmann::json stream_chunk(endpoint kind, const std::string& id, const std::string& model,
                            std::int64_t created, const std::string& text, bool first,
                            const std::string& finish_reason);
// stream_chunk with the usage so far (continuous_usage_stats).
nlohmann::json stream_chunk(endpoint kind, const std::string& id, const std::string& model,
                            std::int64_t created, const std::string& text, bool first,
                            const std::string& finish_reason, const usage_counts& so_far);
// The last chunk with include_usage: no choices, the usage.
nlohmann::json usage_chunk(endpoint kind, const std::string& id, const std::string& model,
                           std::int64_t created, const usage_counts& u);
// The whole response of a non-streaming request.
nlohmann::json full_response(endpoint kind, const std::string& id, const std::string& model,
                             std::int64_t created, const std::string& text,
                             const std::string& finish_reason, const usage_counts& u);
nlohmann::json usage_json(const usage_counts& u);

// One output token's log-probabilities, as the engine gives them (ids; text is added here).
struct token_logprobs {
  token_id token = 0;
  float logprob = 0;                               // log_softmax(raw logits)[token]
  std::vector<std::pair<token_id, float>> top;     // the request's k alternatives, most likely first
  std::int64_t text_offset = 0;  // characters (code points) of output text before this token
};
// A token's text for logprobs: what the decoder makes of it alone (tokenizer::token_bytes) when
// that is valid UTF-8; otherwise each byte of an invalid sequence is written as "\xNN" (a byte
// of a multi-byte character). Its raw bytes are the `bytes` of the chat form.
std::string logprob_token_text(const tokenizer& tok, token_id id);
// The `logprobs` of a choice (or of a streamed chunk) for these tokens:
//  completions: {"tokens", "token_logprobs", "top_logprobs": [{text: logprob}], "text_offset"}
//               (an object per token: alternatives with the same text keep the most likely);
//  chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
//               "bytes"}]}], "refusal": null}.
nlohmann::json logprobs_json(endpoint kind, const tokenizer& tok,
                             std::span<const token_logprobs> tokens);
// Sets choices[0].logprobs of a response or chunk.
void set_logprobs(nlohmann::json& response, nlohmann::json logprobs);

// The text side of one request's output: tokens in, text pieces out. Detokenizes incrementally
// (whole UTF-8 characters only) and finds stop strings: text that could still begin a stop
// string is held back until it cannot; when a stop string appears, the text before it is the
// last piece and stopped() turns true. Concatenating every piece gives the decoded output up to
// (not including) the first stop string.
class text_stream {
 public:
  text_stream(const tokenizer& tok, std::vector<std::string> stops);
  // The text that may be sent now (possibly empty).
  std::string push(token_id t);
  // At the end of the output: what was held back (empty after a stop).
  std::string finish();
  bool stopped() const { return m_stopped; }
  // Characters (code points) the detokenizer has produced so far, held back or sent: the
  // text_offset of the next token.
  std::int64_t decoded_characters() const { return m_characters; }

 private:
  detokenizer m_detok;
  std::vector<std::string> m_stops;
  std::size_t m_longest = 0;
  std::string m_held;  // decoded, not yet sent
  bool m_stopped = false;
  std::int64_t m_characters = 0;
};

}  // namespace ridgeline::serve
