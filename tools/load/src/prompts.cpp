// Request bodies from workload requests (prompts.hpp).
#include "ridgeline/load/prompts.hpp"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

using nlohmann::json;

// Common English words: each one token (with its leading space) in the BPE vocabularies of
// Llama 2/3, Mistral and GPT-style tokenizers.
constexpr std::array<const char*, 64> k_words = {
    "the",   "of",   "and",  "to",   "in",   "is",    "was",   "for",   "on",   "are",  "with",
    "as",    "at",   "be",   "this", "from", "have",  "or",    "by",    "one",  "had",  "not",
    "but",   "what", "all",  "were", "when", "we",    "there", "can",   "an",   "your", "which",
    "their", "said", "if",   "do",   "will", "each",  "about", "how",   "up",   "out",  "them",
    "then",  "she",  "many", "some", "so",   "these", "would", "other", "into", "has",  "more",
    "her",   "two",  "like", "him",  "see",  "time",  "could", "no",    "make"};

}  // namespace

const char* name(api_endpoint e) {
  return e == api_endpoint::chat ? "chat" : "completions";
}

const char* path_of(api_endpoint e) {
  return e == api_endpoint::chat ? "/v1/chat/completions" : "/v1/completions";
}

api_endpoint parse_endpoint(const std::string& text) {
  if (text == "completions" || text == "/v1/completions") return api_endpoint::completions;
  if (text == "chat" || text == "/v1/chat/completions") return api_endpoint::chat;
  throw std::invalid_argument("--endpoint '" + printable(text, 60) + "' (completions or chat)");
}

prompt_builder::prompt_builder(prompt_options o) : m_options(std::move(o)) {}

void prompt_builder::add_answer(session_history& history, const std::string& answer) {
  history.messages.push_back({"assistant", answer});
  history.text += answer;
}

// Random ids of the segment decoded, then re-encoded and trimmed or extended until the text is
// `tokens` tokens long (a few rounds; what is left of a mismatch shows in expected_prompt_tokens).
std::string prompt_builder::exact_text(std::uint64_t seed, std::int64_t tokens) {
  const token_codec& c = *m_options.codec;
  if (tokens <= 0) return {};
  const std::int32_t vocab = std::max(c.vocab_size(), 1);
  std::vector<std::int32_t> ids;
  ids.reserve(static_cast<std::size_t>(tokens));
  for (std::int64_t i = 0; i < tokens; ++i) ids.push_back(segment_token(seed, i) % vocab);
  std::string text = c.decode(ids);
  std::int64_t extra = tokens;
  for (int round = 0; round < 8; ++round) {
    std::vector<std::int32_t> enc = c.encode(text, false);
    const auto n = static_cast<std::int64_t>(enc.size());
    if (n == tokens) break;
    if (n > tokens) {
      enc.resize(static_cast<std::size_t>(tokens));
      text = c.decode(enc);
    } else {
      std::vector<std::int32_t> more;
      for (std::int64_t i = 0; i < tokens - n; ++i)
        more.push_back(segment_token(seed, extra++) % vocab);
      text += c.decode(more);
    }
  }
  return text;
}

std::string prompt_builder::segment_text(std::uint64_t seed, std::int32_t tokens) {
  const auto key = std::make_pair(seed, tokens);
  if (const auto it = m_cache.find(key); it != m_cache.end()) return it->second;
  std::string text;
  if (m_options.codec != nullptr) {
    text = exact_text(seed, tokens);
  } else {
    text.reserve(static_cast<std::size_t>(tokens) * 5);
    for (std::int32_t i = 0; i < tokens; ++i) {
      if (i > 0) text += ' ';
      text += k_words[static_cast<std::size_t>(segment_token(seed, i)) % k_words.size()];
    }
  }
  // System prompts and shared prefixes repeat; one-off messages need not stay.
  if (m_cache.size() < 4096) m_cache.emplace(key, text);
  return text;
}

built_request prompt_builder::build(const workload_request& r, session_history& h) {
  const prompt_options& o = m_options;
  built_request b;
  b.path = path_of(o.endpoint);
  b.requested_prompt_tokens = r.prompt_tokens;
  b.output_tokens = r.output_tokens;
  if (!r.follow_up) h = session_history{};
  const bool multi_turn = r.next_turn >= 0;
  json body = {{"model", o.model}, {"max_tokens", r.output_tokens}, {"stream", o.stream}};
  if (o.stream) {
    body["stream_options"] = {{"include_usage", true}};
    if (o.continuous_usage) body["stream_options"]["continuous_usage_stats"] = true;
  }
  if (o.ignore_eos) body["ignore_eos"] = true;
  if (o.temperature >= 0) body["temperature"] = o.temperature;
  const auto& segs = r.prompt;
  if (segs.empty())
    throw std::invalid_argument("workload request " + std::to_string(r.id) + " has no prompt");
  const prompt_segment& last = segs.back();

  if (o.endpoint == api_endpoint::chat) {
    if (!r.follow_up) {
      // Leading segments (a shared system prompt) become the system message.
      std::string system;
      for (std::size_t i = 0; i + 1 < segs.size(); ++i)
        system += segment_text(segs[i].seed, segs[i].tokens);
      if (!system.empty()) h.messages.push_back({"system", system});
    }
    h.messages.push_back({"user", segment_text(last.seed, last.tokens)});
    json messages = json::array();
    for (const auto& m : h.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
    body["messages"] = std::move(messages);
    if (o.codec != nullptr) {
      if (auto n = o.codec->chat_prompt_tokens(h.messages)) {
        b.expected_prompt_tokens = *n;
      } else {
        std::int64_t n2 = 0;
        for (const auto& m : h.messages) n2 += o.codec->count(m.content);
        b.expected_prompt_tokens = n2;
      }
    }
    b.text_answers = multi_turn;
  } else if (o.codec != nullptr) {
    // Text: the conversation so far (real answers included), then the new segments. The last
    // segment takes up what the others' text and the BOS leave of the requested count.
    const std::int64_t specials = o.codec->special_tokens();
    std::string text = r.follow_up ? h.text : std::string();
    const std::size_t first_new = r.follow_up ? segs.size() - 1 : 0;
    for (std::size_t i = first_new; i + 1 < segs.size(); ++i)
      text += segment_text(segs[i].seed, segs[i].tokens);
    const std::int64_t before = text.empty() ? 0 : o.codec->count(text);
    std::int64_t target = r.prompt_tokens - specials - before;
    std::string tail;
    if (!r.follow_up) {
      for (int round = 0; round < 3 && target > 0; ++round) {
        tail = target == last.tokens ? segment_text(last.seed, last.tokens)
                                     : exact_text(last.seed, target);
        const std::int64_t total = o.codec->count(text + tail) + specials;
        if (total == r.prompt_tokens) break;
        target -= total - r.prompt_tokens;
      }
    } else {
      // A follow-up's length follows the real answers; the new message has its own length.
      tail = segment_text(last.seed, last.tokens);
    }
    text += tail;
    h.text = text;
    b.expected_prompt_tokens = o.codec->count(text) + specials;
    body["prompt"] = text;
    b.text_answers = multi_turn;
  } else {
    std::vector<token_id> ids;
    materialize_prompt(r, ids);
    if (o.vocab > 0) {
      for (auto& id : ids) id %= o.vocab;
    }
    b.expected_prompt_tokens = static_cast<std::int64_t>(ids.size());
    body["prompt"] = ids;
    b.text_answers = false;
  }
  b.body = body.dump();
  return b;
}

}  // namespace ridgeline::load
