// Interpretation of OpenAI-compatible stream events and response bodies (openai_stream.hpp).
#include "ridgeline/load/openai_stream.hpp"

#include <nlohmann/json.hpp>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

using nlohmann::json;

std::optional<std::int64_t> count_of(const json& o, const char* key) {
  const auto it = o.find(key);
  if (it == o.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}

void read_usage(const json& doc, usage_counts& u) {
  const auto it = doc.find("usage");
  if (it == doc.end() || !it->is_object()) return;
  u.prompt_tokens = count_of(*it, "prompt_tokens");
  u.completion_tokens = count_of(*it, "completion_tokens");
  const auto details = it->find("prompt_tokens_details");
  if (details != it->end() && details->is_object())
    u.cached_tokens = count_of(*details, "cached_tokens");
}

// The error message of an error object, or nullopt when `doc` is none.
std::optional<std::string> error_of(const json& doc) {
  const auto it = doc.find("error");
  if (it != doc.end() && !it->is_null()) {
    if (it->is_object()) {
      const auto m = it->find("message");
      if (m != it->end() && m->is_string()) return m->get<std::string>();
      return it->dump();
    }
    if (it->is_string()) return it->get<std::string>();
    return it->dump();
  }
  const auto obj = doc.find("object");
  if (obj != doc.end() && obj->is_string() && obj->get<std::string>() == "error") {
    const auto m = doc.find("message");
    return m != doc.end() && m->is_string() ? m->get<std::string>() : doc.dump();
  }
  return std::nullopt;
}

void append_string(const json& o, const char* key, std::string& out) {
  const auto it = o.find(key);
  if (it != o.end() && it->is_string()) out += it->get_ref<const std::string&>();
}

}  // namespace

stream_chunk interpret_stream_data(std::string_view data) {
  stream_chunk c;
  if (data == "[DONE]") {
    c.type = stream_chunk::kind::done;
    return c;
  }
  const json doc = json::parse(data.begin(), data.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    c.type = stream_chunk::kind::malformed;
    c.error = "event data is not a JSON object: '" + printable(data, 120) + "'";
    return c;
  }
  if (auto e = error_of(doc)) {
    c.type = stream_chunk::kind::error;
    c.error = printable(*e, 300);
    return c;
  }
  read_usage(doc, c.usage);
  const auto choices = doc.find("choices");
  if (choices == doc.end() || !choices->is_array() || choices->empty()) {
    c.type = c.usage.completion_tokens || c.usage.prompt_tokens ? stream_chunk::kind::usage_only
                                                                : stream_chunk::kind::empty;
    return c;
  }
  // Every choice's text counts (n > 1 is not sent by the load client, but a server may).
  for (const auto& ch : *choices) {
    if (!ch.is_object()) continue;
    append_string(ch, "text", c.text);
    const auto delta = ch.find("delta");
    if (delta != ch.end() && delta->is_object()) {
      append_string(*delta, "content", c.text);
      append_string(*delta, "reasoning_content", c.text);
      append_string(*delta, "reasoning", c.text);
    }
  }
  c.type = c.text.empty() ? stream_chunk::kind::empty : stream_chunk::kind::content;
  return c;
}

completion_body interpret_completion_body(std::string_view body) {
  completion_body b;
  const json doc = json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    b.error = "response body is not a JSON object: '" + printable(body, 120) + "'";
    return b;
  }
  if (auto e = error_of(doc)) {
    b.error = printable(*e, 300);
    b.server_error = true;
    return b;
  }
  read_usage(doc, b.usage);
  const auto choices = doc.find("choices");
  if (choices == doc.end() || !choices->is_array()) {
    b.error = "response has no choices array";
    return b;
  }
  for (const auto& ch : *choices) {
    if (!ch.is_object()) continue;
    append_string(ch, "text", b.text);
    const auto msg = ch.find("message");
    if (msg != ch.end() && msg->is_object()) {
      append_string(*msg, "content", b.text);
      append_string(*msg, "reasoning_content", b.text);
    }
  }
  b.ok = true;
  return b;
}

std::string error_message_of(std::string_view body) {
  const json doc = json::parse(body.begin(), body.end(), nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    if (auto e = error_of(doc)) return printable(*e, 200);
    for (const char* key : {"message", "detail"}) {
      const auto it = doc.find(key);
      if (it != doc.end())
        return printable(it->is_string() ? it->get<std::string>() : it->dump(), 200);
    }
  }
  return printable(body, 200);
}

}  // namespace ridgeline::load
