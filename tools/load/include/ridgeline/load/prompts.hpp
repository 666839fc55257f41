// Request bodies from a workload's requests (engine/workload.hpp) for the two OpenAI endpoints.
// Without a tokenizer, /v1/completions gets the workload's token ids (`prompt: [ids]`, accepted by
// vLLM, SGLang and `ridgeline serve`): exactly the requested count. With one (--tokenizer), prompts
// are text built to the requested count for that tokenizer (random ids decoded, re-encoded and
// trimmed until the count holds; a completions prompt leaves room for the BOS the server adds).
// Chat without a tokenizer uses common English words, about one token each: approximate, and the
// server's usage.prompt_tokens says by how much.
// Multi-turn sessions: the history holds the real answers (chat messages, or completions text);
// token-id prompts carry the workload's own output ids instead (no text to encode the answer).
//   prompt_builder b(options);
//   session_history h;
//   built_request first = b.build(w.requests[0], h);
//   prompt_builder::add_answer(h, answer_text);
//   built_request second = b.build(w.requests[1], h);
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ridgeline/engine/workload.hpp"
#include "ridgeline/load/token_codec.hpp"

namespace ridgeline::load {

enum class api_endpoint { completions, chat };
const char* name(api_endpoint e);                      // "completions", "chat"
const char* path_of(api_endpoint e);                   // "/v1/completions", "/v1/chat/completions"
api_endpoint parse_endpoint(const std::string& text);  // std::invalid_argument otherwise

struct prompt_options {
  api_endpoint endpoint = api_endpoint::completions;
  std::string model;
  bool stream = true;
  bool continuous_usage = false;  // stream_options.continuous_usage_stats (vLLM): tokens per chunk
  bool ignore_eos = true;         // outputs run to the workload's lengths (vLLM, SGLang, serve)
  std::int32_t vocab = 0;         // token-id prompts: ids modulo this (0: as generated, < 32000)
  const token_codec* codec = nullptr;
  double temperature = 0;         // sent as is; negative: not sent (the server's default)
};

struct session_history {
  std::vector<chat_turn> messages;  // chat
  std::string text;                 // completions with a tokenizer: the conversation so far
};

struct built_request {
  std::string path;
  std::string body;
  std::int64_t requested_prompt_tokens = 0;
  std::int64_t expected_prompt_tokens = -1;  // what the sent prompt encodes to; -1: unknown
  std::int64_t output_tokens = 0;
  bool text_answers = false;  // the next turn needs this one's answer text
};

class prompt_builder {
 public:
  explicit prompt_builder(prompt_options o);
  // A first turn (or independent request) resets `history`; a follow-up extends it.
  built_request build(const workload_request& r, session_history& history);
  static void add_answer(session_history& history, const std::string& answer);
  const prompt_options& options() const { return m_options; }
  // Text of exactly `tokens` tokens for the codec (cached per segment), or words without one.
  std::string segment_text(std::uint64_t seed, std::int32_t tokens);

 private:
  std::string exact_text(std::uint64_t seed, std::int64_t tokens);
  prompt_options m_options;
  std::map<std::pair<std::uint64_t, std::int32_t>, std::string> m_cache;
};

}  // namespace ridgeline::load
