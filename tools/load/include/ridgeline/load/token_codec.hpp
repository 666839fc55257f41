// The tokenizer the load client may be given (--tokenizer tokenizer.json): counts the tokens of
// streamed text when the server does not say how many a chunk holds, builds text prompts of an
// exact token count, and says how many tokens a chat prompt becomes after the model's template.
// An interface, so tests plug in a toy tokenizer and the CLI the engine's (engine/tokenizer.hpp).
//   std::unique_ptr<token_codec> t = load_tokenizer("tokenizer.json", "llama-3-8b");
//   t->count("Hello world");   // tokens of plain text, no special tokens
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::load {

struct chat_turn {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class token_codec {
 public:
  virtual ~token_codec() = default;
  // Ids of `text`; with add_special_tokens as the server adds them to a completions prompt (BOS).
  virtual std::vector<std::int32_t> encode(std::string_view text,
                                           bool add_special_tokens) const = 0;
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;
  // Ids a prompt may use (random prompts draw from [0, vocab_size)).
  virtual std::int32_t vocab_size() const = 0;
  // Tokens of a chat prompt once the model's template is applied, if this codec knows it.
  virtual std::optional<std::int64_t> chat_prompt_tokens(std::span<const chat_turn> turns) const;
  // Where it came from (the file, or the toy's name).
  virtual std::string source() const = 0;
  std::int64_t count(std::string_view text) const;
  // Special tokens the server adds to a completions prompt of `text` (BOS: 1, else 0).
  std::int64_t special_tokens() const;
};

// The engine's tokenizer of a Hugging Face tokenizer.json; `model` picks the chat template where
// the vocabulary alone does not (Mistral v0.1/v0.2 vs Llama 2). "byte_level:VOCAB" gives the
// byte-level tokenizer `ridgeline serve` uses with random weights. std::invalid_argument for a
// file the engine's reader does not support, io_error when unreadable.
std::unique_ptr<token_codec> load_tokenizer(const std::filesystem::path& tokenizer_json,
                                            const std::string& model);

}  // namespace ridgeline::load
