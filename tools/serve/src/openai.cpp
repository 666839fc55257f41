// The OpenAI API's requests, responses and stream text for `ridgeline serve` (see openai.hpp).
#include "ridgeline/serve/openai.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ridgeline::serve {
namespace {

using json = nlohmann::json;

api_error bad(std::string message, std::string param = {}) {
  api_error e;
  e.message = std::move(message);
  e.param = std::move(param);
  return e;
}

// A number field in [lo, hi]; absent or null: keeps `out`.
std::optional<api_error> number_in(const json& body, const char* key, double lo, double hi,
                                   float& out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return bad(std::string("'") + key + "' must be a number", key);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return bad(std::string("'") + key + "' must be in [" + json(lo).dump() + ", " +
                   json(hi).dump() + "], got " + it->dump(),
               key);
  }
  out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<api_error> integer_in(const json& body, const char* key, std::int64_t lo,
                                    std::int64_t hi, std::int32_t& out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) return bad(std::string("'") + key + "' must be an integer", key);
  const std::int64_t v = it->get<std::int64_t>();
  if (v < lo || v > hi) {
    return bad(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "], got " + std::to_string(v),
               key);
  }
  out = static_cast<std::int32_t>(v);
  return std::nullopt;
}

std::optional<api_error> boolean(const json& body, const char* key, bool& out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return bad(std::string("'") + key + "' must be a boolean", key);
  out = it->get<bool>();
  return std::nullopt;
}

std::optional<api_error> token_ids(const json& v, const char* key, std::vector<token_id>& out) {
  for (const auto& t : v) {
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 ||
        t.get<std::int64_t>() > std::numeric_limits<token_id>::max()) {
      return bad(std::string("'") + key + "' must hold non-negative integer token ids", key);
    }
    out.push_back(t.get<token_id>());
  }
  return std::nullopt;
}

// A chat message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::optional<api_error> content_of(const json& m, std::string& out) {
  const auto it = m.find("content");
  if (it == m.end() || it->is_null()) return std::nullopt;  // an assistant turn may have none
  if (it->is_string()) {
    out = it->get<std::string>();
    return std::nullopt;
  }
  if (!it->is_array()) return bad("a message's 'content' must be a string or an array", "messages");
  for (const auto& part : *it) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part.at("text").is_string()) {
      return bad("only text content parts ({\"type\": \"text\", \"text\": ...}) are supported",
                 "messages");
    }
    out += part.at("text").get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

std::string error_body(const api_error& e) {
  json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}};
  return json{{"error", std::move(err)}}.dump();
}

namespace {

bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void skip_space(std::string_view s, std::size_t& i) {
  while (i < s.size() && json_space(s[i])) ++i;
}

// Past the string that starts at s[i] (a '"'); escapes set when it has any. False: unterminated.
bool skip_string(std::string_view s, std::size_t& i, bool& escapes) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      escapes = true;
      ++i;
    } else if (s[i] == '"') {
      ++i;
      return true;
    }
  }
  return false;
}

// Past the value that starts at s[i]: a string, an object or array (brackets counted, strings
// skipped), or a number or literal (to the next delimiter). Only finds the value's end; whether
// it is valid JSON the full parse decides.
bool skip_value(std::string_view s, std::size_t& i) {
  bool escapes = false;
  if (i >= s.size()) return false;
  if (s[i] == '"') return skip_string(s, i, escapes);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        if (!skip_string(s, i, escapes)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') --depth;
      ++i;
      if (depth == 0) return true;
    }
    return false;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && !json_space(s[i])) ++i;
  return true;
}

}  // namespace

namespace detail {

bool find_prompt_ids(std::string_view s, std::size_t& begin, std::size_t& end,
                     std::vector<token_id>& ids) {
  std::size_t i = 0;
  skip_space(s, i);
  if (i >= s.size() || s[i] != '{') return false;
  ++i;
  bool found = false;
  for (;;) {
    skip_space(s, i);
    if (i >= s.size()) return false;
    if (s[i] == '}') return found;
    if (s[i] != '"') return false;
    const std::size_t key = i;
    bool escapes = false;
    if (!skip_string(s, i, escapes)) return false;
    // A key with escapes might read "prompt": only the full parse knows.
    if (escapes) return false;
    const bool is_prompt = s.substr(key, i - key) == "\"prompt\"";
    skip_space(s, i);
    if (i >= s.size() || s[i] != ':') return false;
    ++i;
    skip_space(s, i);
    if (is_prompt) {
      // Twice: JSON objects keep the last, as the full parse does; leave it to that.
      if (found || i >= s.size() || s[i] != '[') return false;
      found = true;
      begin = i++;
      ids.clear();
      for (;;) {
        skip_space(s, i);
        // Digits only: a sign, fraction, exponent, leading zero, nested array, string or an
        // empty array each takes the full parse, whose error or reading is the answer.
        if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
        if (s[i] == '0' && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') return false;
        std::int64_t v = 0;
        for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
          v = v * 10 + (s[i] - '0');
          if (v > std::numeric_limits<token_id>::max()) return false;
        }
        ids.push_back(static_cast<token_id>(v));
        skip_space(s, i);
        if (i >= s.size()) return false;
        if (s[i] == ']') break;
        if (s[i] != ',') return false;
        ++i;
      }
      end = ++i;
    } else if (!skip_value(s, i)) {
      return false;
    }
    skip_space(s, i);
    if (i >= s.size()) return false;
    if (s[i] == ',') {
      ++i;
    } else if (s[i] != '}') {
      return false;
    }
  }
}

std::variant<api_request, api_error> parse_api_request_dom(endpoint kind, std::string_view text,
                                                           const api_limits& limits) {
  json body = json::parse(text, nullptr, false);
  if (body.is_discarded()) return bad("the request body is not valid JSON");
  if (!body.is_object()) return bad("the request body must be a JSON object");
  api_request r;
  r.kind = kind;
  if (const auto it = body.find("model"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return bad("'model' must be a string", "model");
    r.model = it->get<std::string>();
  }
  if (kind == endpoint::completions) {
    const auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) return bad("'prompt' is required", "prompt");
    if (it->is_string()) {
      r.prompt = it->get<std::string>();
    } else if (it->is_array() && !it->empty() && it->front().is_number()) {
      if (auto e = token_ids(*it, "prompt", r.prompt_ids)) return *e;
      r.prompt_is_ids = true;
    } else if (it->is_array() && it->size() == 1 && it->front().is_string()) {
      r.prompt = it->front().get<std::string>();
    } else if (it->is_array() && it->size() == 1 && it->front().is_array()) {
      if (auto e = token_ids(it->front(), "prompt", r.prompt_ids)) return *e;
      r.prompt_is_ids = true;
    } else {
      return bad("'prompt' must be a string, an array of token ids, or a batch of one of either "
                 "(batches of several prompts are not supported)",
                 "prompt");
    }
    if (r.prompt_is_ids && r.prompt_ids.empty()) return bad("'prompt' is empty", "prompt");
  } else {
    const auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) {
      return bad("'messages' must be a non-empty array", "messages");
    }
    for (const auto& m : *it) {
      if (!m.is_object() || !m.contains("role") || !m.at("role").is_string()) {
        return bad("each message needs a string 'role'", "messages");
      }
      chat_message cm;
      cm.role = m.at("role").get<std::string>();
      if (cm.role != "system" && cm.role != "user" && cm.role != "assistant") {
        return bad("message role '" + cm.role + "' is not one of system, user, assistant",
                   "messages");
      }
      if (auto e = content_of(m, cm.content)) return *e;
      r.messages.push_back(std::move(cm));
    }
  }

  constexpr std::int64_t big = std::numeric_limits<std::int32_t>::max();
  // max_completion_tokens is the newer name of chat's max_tokens.
  if (auto e = integer_in(body, "max_tokens", 1, big, r.max_tokens)) return *e;
  if (auto e = integer_in(body, "max_completion_tokens", 1, big, r.max_tokens)) return *e;
  if (auto e = number_in(body, "temperature", 0, 2, r.temperature)) return *e;
  if (auto e = number_in(body, "top_p", 0, 1, r.top_p)) return *e;
  if (body.contains("top_p") && r.top_p <= 0) return bad("'top_p' must be above 0", "top_p");
  if (auto e = integer_in(body, "top_k", -1, big, r.top_k)) return *e;
  if (r.top_k < 0) r.top_k = 0;
  if (auto e = number_in(body, "repetition_penalty", 0, 100, r.repetition_penalty)) return *e;
  if (body.contains("repetition_penalty") && r.repetition_penalty <= 0) {
    return bad("'repetition_penalty' must be above 0", "repetition_penalty");
  }
  if (const auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) return bad("'seed' must be an integer", "seed");
    r.seed = static_cast<std::uint64_t>(it->get<std::int64_t>());
  }
  std::int32_t n = 1;
  if (auto e = integer_in(body, "n", 1, big, n)) return *e;
  if (n != 1) return bad("only n = 1 is supported", "n");
  if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      r.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const auto& s : *it) {
        if (!s.is_string()) return bad("'stop' must be a string or an array of strings", "stop");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      return bad("'stop' must be a string or an array of strings", "stop");
    }
    if (std::ssize(r.stop) > limits.max_stop_strings) {
      return bad("at most " + std::to_string(limits.max_stop_strings) + " stop strings", "stop");
    }
    for (const auto& s : r.stop) {
      if (s.empty()) return bad("a stop string is empty", "stop");
      if (std::ssize(s) > limits.max_stop_length) {
        return bad("a stop string is longer than " + std::to_string(limits.max_stop_length) +
                       " bytes",
                   "stop");
      }
    }
  }
  if (const auto it = body.find("stop_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return bad("'stop_token_ids' must be an array", "stop_token_ids");
    if (auto e = token_ids(*it, "stop_token_ids", r.stop_token_ids)) return *e;
  }
  if (auto e = boolean(body, "ignore_eos", r.ignore_eos)) return *e;
  if (auto e = boolean(body, "stream", r.stream)) return *e;
  if (const auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return bad("'stream_options' must be an object", "stream_options");
    if (!r.stream) return bad("'stream_options' is only allowed with stream: true", "stream_options");
    if (auto e = boolean(*it, "include_usage", r.include_usage)) return *e;
    if (auto e = boolean(*it, "continuous_usage_stats", r.continuous_usage)) return *e;
  }
  // completions: logprobs k; chat: logprobs true, top_logprobs k. Both within --max-logprobs.
  const char* lp_param = kind == endpoint::completions ? "logprobs" : "top_logprobs";
  if (kind == endpoint::completions) {
    std::int32_t lp = -1;
    if (auto e = integer_in(body, "logprobs", 0, big, lp)) return *e;
    r.logprobs = lp;
  } else {
    bool want = false;
    if (auto e = boolean(body, "logprobs", want)) return *e;
    std::int32_t top = 0;
    if (auto e = integer_in(body, "top_logprobs", 0, big, top)) return *e;
    if (body.contains("top_logprobs") && !body.at("top_logprobs").is_null() && !want) {
      return bad("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    }
    r.logprobs = want ? top : -1;
    if (want && limits.max_logprobs <= 0) lp_param = "logprobs";
  }
  if (r.logprobs >= 0 && limits.max_logprobs <= 0) {
    return bad("logprobs are off on this server (start it with --max-logprobs N to serve up to N "
               "alternatives per token)",
               lp_param);
  }
  if (r.logprobs > limits.max_logprobs) {
    return bad(std::string("'") + lp_param + "' asks for " + std::to_string(r.logprobs) +
                   " alternatives per token; this server serves at most " +
                   std::to_string(limits.max_logprobs) + " (--max-logprobs)",
               lp_param);
  }
  if (const auto it = body.find("echo"); it != body.end() && it->is_boolean() && it->get<bool>()) {
    return bad("'echo' is not supported", "echo");
  }
  if (const auto it = body.find("best_of"); it != body.end() && it->is_number_integer() &&
                                            it->get<std::int64_t>() != 1) {
    return bad("only best_of = 1 is supported", "best_of");
  }
  return r;
}

}  // namespace detail

std::variant<api_request, api_error> parse_api_request(endpoint kind, std::string_view text,
                                                       const api_limits& limits) {
  // A prompt of token ids is most of a body's bytes (a 1,000-token prompt: about 6 KB, 70 us of
  // the full parse's 90 us). It is read here at a few ns a byte and the rest of the body, with
  // the array as [0], goes through the full parse: every check and every error is the full
  // parse's, and for any other body it is the whole answer.
  std::size_t begin = 0, end = 0;
  std::vector<token_id> ids;
  if (kind != endpoint::completions || !detail::find_prompt_ids(text, begin, end, ids)) {
    return detail::parse_api_request_dom(kind, text, limits);
  }
  std::string rest;
  rest.reserve(text.size() - (end - begin) + 3);
  rest.append(text.substr(0, begin)).append("[0]").append(text.substr(end));
  auto parsed = detail::parse_api_request_dom(kind, rest, limits);
  if (auto* r = std::get_if<api_request>(&parsed)) r->prompt_ids = std::move(ids);
  return parsed;
}

std::string response_id(endpoint kind, std::uint64_t n) {
  return (kind == endpoint::chat ? "chatcmpl-" : "cmpl-") + std::to_string(n);
}

nlohmann::json usage_json(const usage_counts& u) {
  json j = {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached_tokens}};
  return j;
}

nlohmann::json stream_chunk(endpoint kind, const std::string& id, const std::string& model,
                            std::int64_t created, const std::string& text, bool first,
                            const std::string& finish_reason) {
  const json finish = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json choice;
  if (kind == endpoint::chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr},
              {"finish_reason", finish}};
  } else {
    choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}};
  }
  return {{"id", id},
          {"object", kind == endpoint::chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({std::move(choice)})}};
}

nlohmann::json stream_chunk(endpoint kind, const std::string& id, const std::string& model,
                            std::int64_t created, const std::string& text, bool first,
                            const std::string& finish_reason, const usage_counts& so_far) {
  json c = stream_chunk(kind, id, model, created, text, first, finish_reason);
  c["usage"] = usage_json(so_far);
  return c;
}

nlohmann::json usage_chunk(endpoint kind, const std::string& id, const std::string& model,
                           std::int64_t created, const usage_counts& u) {
  return {{"id", id},
          {"object", kind == endpoint::chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", usage_json(u)}};
}

nlohmann::json full_response(endpoint kind, const std::string& id, const std::string& model,
                             std::int64_t created, const std::string& text,
                             const std::string& finish_reason, const usage_counts& u) {
  json choice;
  if (kind == endpoint::chat) {
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"logprobs", nullptr},
              {"finish_reason", finish_reason}};
  } else {
    choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  }
  return {{"id", id},
          {"object", kind == endpoint::chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({std::move(choice)})},
          {"usage", usage_json(u)}};
}

namespace {

// Length of the valid UTF-8 sequence at s[i] (1 to 4), or 0 when the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid, as decoders say).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || b(1) < lo || b(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

std::int64_t code_points(std::string_view s) {
  std::int64_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

json bytes_json(std::string_view bytes) {
  json out = json::array();
  for (const char c : bytes) out.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string logprob_token_text(const tokenizer& tok, token_id id) {
  const std::string bytes = tok.token_bytes(id);
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = utf8_sequence(bytes, i);
    if (n > 0) {
      out.append(bytes, i, n);
      i += n;
    } else {
      const auto c = static_cast<unsigned char>(bytes[i++]);
      out += {'\\', 'x', k_hex[c >> 4], k_hex[c & 15]};
    }
  }
  return out;
}

nlohmann::json logprobs_json(endpoint kind, const tokenizer& tok,
                             std::span<const token_logprobs> tokens) {
  // A finite number for JSON: -inf (a token of probability 0 in fp32) becomes the lowest float.
  const auto finite = [](float x) {
    return std::isfinite(x) ? x : (x > 0 ? std::numeric_limits<float>::max()
                                         : std::numeric_limits<float>::lowest());
  };
  if (kind == endpoint::completions) {
    json texts = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
    for (const auto& t : tokens) {
      texts.push_back(logprob_token_text(tok, t.token));
      lps.push_back(finite(t.logprob));
      json top = json::object();
      for (const auto& [id, lp] : t.top) {
        const std::string text = logprob_token_text(tok, id);
        if (!top.contains(text)) top[text] = finite(lp);  // most likely first: keep that one
      }
      tops.push_back(std::move(top));
      offsets.push_back(t.text_offset);
    }
    return {{"tokens", std::move(texts)},
            {"token_logprobs", std::move(lps)},
            {"top_logprobs", std::move(tops)},
            {"text_offset", std::move(offsets)}};
  }
  json content = json::array();
  for (const auto& t : tokens) {
    json top = json::array();
    for (const auto& [id, lp] : t.top) {
      top.push_back({{"token", logprob_token_text(tok, id)},
                     {"logprob", finite(lp)},
                     {"bytes", bytes_json(tok.token_bytes(id))}});
    }
    content.push_back({{"token", logprob_token_text(tok, t.token)},
                       {"logprob", finite(t.logprob)},
                       {"bytes", bytes_json(tok.token_bytes(t.token))},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

void set_logprobs(nlohmann::json& response, nlohmann::json logprobs) {
  response.at("choices").at(0)["logprobs"] = std::move(logprobs);
}

text_stream::text_stream(const tokenizer& tok, std::vector<std::string> stops)
    : m_detok(tok), m_stops(std::move(stops)) {
  for (const auto& s : m_stops) m_longest = std::max(m_longest, s.size());
}

std::string text_stream::push(token_id t) {
  if (m_stopped) return {};
  const std::string piece = m_detok.push(t);
  m_characters += code_points(piece);
  m_held += piece;
  if (m_stops.empty()) return std::exchange(m_held, {});
  std::size_t first = std::string::npos;
  for (const auto& s : m_stops) first = std::min(first, m_held.find(s));
  if (first != std::string::npos) {
    m_stopped = true;
    std::string out = m_held.substr(0, first);
    m_held.clear();
    return out;
  }
  // The longest tail that could still begin a stop string stays; the rest goes. The cut moves
  // back to a character boundary: a piece is always whole UTF-8.
  std::size_t keep = std::min(m_held.size(), m_longest - 1);
  for (; keep > 0; --keep) {
    const std::string_view tail = std::string_view(m_held).substr(m_held.size() - keep);
    if (std::any_of(m_stops.begin(), m_stops.end(),
                    [&](const std::string& s) { return s.starts_with(tail); })) {
      break;
    }
  }
  std::size_t cut = m_held.size() - keep;
  while (cut > 0 && (static_cast<unsigned char>(m_held[cut]) & 0xC0) == 0x80) --cut;
  std::string out = m_held.substr(0, cut);
  m_held.erase(0, cut);
  return out;
}

std::string text_stream::finish() {
  if (m_stopped) return {};
  m_held += m_detok.finish();
  std::size_t first = std::string::npos;
  for (const auto& s : m_stops) first = std::min(first, m_held.find(s));
  if (first != std::string::npos) {
    m_stopped = true;
    m_held.resize(first);
  }
  return std::exchange(m_held, {});
}

}  // namespace ridgeline::serve
