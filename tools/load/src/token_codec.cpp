// token_codec's shared helpers and the adapter over the engine's tokenizer (token_codec.hpp).
#include "ridgeline/load/token_codec.hpp"

#include <stdexcept>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/engine/tokenizer.hpp"

namespace ridgeline::load {

std::optional<std::int64_t> token_codec::chat_prompt_tokens(std::span<const chat_turn>) const {
  return std::nullopt;
}

std::int64_t token_codec::count(std::string_view text) const {
  return static_cast<std::int64_t>(encode(text, false).size());
}

std::int64_t token_codec::special_tokens() const {
  return static_cast<std::int64_t>(encode("", true).size());
}

namespace {

class engine_codec final : public token_codec {
 public:
  engine_codec(tokenizer t, chat_format f) : m_tokenizer(std::move(t)), m_format(f) {}
  std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    const auto ids = m_tokenizer.encode(text, add_special_tokens);
    return {ids.begin(), ids.end()};
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    const std::vector<token_id> v(ids.begin(), ids.end());
    return m_tokenizer.decode(v, true);
  }
  std::int32_t vocab_size() const override { return m_tokenizer.vocab_size(); }
  std::optional<std::int64_t> chat_prompt_tokens(std::span<const chat_turn> turns) const override {
    std::vector<chat_message> messages;
    messages.reserve(turns.size());
    for (const auto& t : turns) messages.push_back({t.role, t.content});
    return static_cast<std::int64_t>(encode_chat(m_tokenizer, m_format, messages, true).size());
  }
  std::string source() const override {
    return m_tokenizer.source() + " (chat template " + chat_format_name(m_format) + ")";
  }

 private:
  tokenizer m_tokenizer;
  chat_format m_format;
};

}  // namespace

std::unique_ptr<token_codec> load_tokenizer(const std::filesystem::path& tokenizer_json,
                                            const std::string& model) {
  const std::string text = tokenizer_json.string();
  if (text.rfind("byte_level:", 0) == 0) {
    // The byte-level tokenizer `ridgeline serve` uses for random weights, of that vocabulary.
    const std::string n = text.substr(11);
    if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos) {
      throw std::invalid_argument("--tokenizer " + text + ": expected byte_level:VOCAB");
    }
    tokenizer t = tokenizer::byte_level(std::stoi(n));
    const chat_format f = chat_format_for(t, model);
    return std::make_unique<engine_codec>(std::move(t), f);
  }
  if (!std::filesystem::exists(tokenizer_json)) {
    throw io_error("--tokenizer " + tokenizer_json.string() + ": no such file");
  }
  tokenizer t = tokenizer::from_file(tokenizer_json);
  const chat_format f = chat_format_for(t, model);
  return std::make_unique<engine_codec>(std::move(t), f);
}

}  // namespace ridgeline::load
