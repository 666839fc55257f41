// Reading one response into a request record (response_reader.hpp).
#include "ridgeline/load/response_reader.hpp"

#include <algorithm>

#include "ridgeline/core/text.hpp"
#include "ridgeline/load/openai_stream.hpp"

namespace ridgeline::load {
namespace {
constexpr std::size_t k_error_body_bytes = 4096;
constexpr std::size_t k_max_body_bytes = 256u << 20;
}  // namespace

const char* name(chunk_token_source s) {
  switch (s) {
    case chunk_token_source::chunks:
      return "chunks";
    case chunk_token_source::tokenizer:
      return "tokenizer";
    case chunk_token_source::continuous_usage:
      return "continuous_usage";
  }
  return "chunks";
}

response_reader::response_reader(request_record& record, reader_options o)
    : m_record(record), m_options(o) {
  if (o.counter != nullptr) m_source = chunk_token_source::tokenizer;
}

bool response_reader::reusable() const {
  return m_http.done() && m_http.keep_alive() && !m_extra;
}

response_reader::result response_reader::fail(error_kind k, std::string detail, double stamp) {
  m_record.error = k;
  m_record.error_detail = std::move(detail);
  m_record.end = stamp;
  return result::failed;
}

void response_reader::add_chunk(double at, std::int32_t tokens, std::string_view text) {
  m_record.chunk_seconds.push_back(at);
  m_record.chunk_tokens.push_back(tokens);
  if (m_options.keep_text) m_record.output_text.append(text);
}

void response_reader::on_body(std::string_view bytes) {
  if (bytes.empty()) return;
  if (m_body_first < 0) {
    m_body_first = m_now;
    // A JSON body where a stream was asked for (a server that ignores stream: true) is read as
    // a non-streamed response; a stream where none was asked for as a stream.
    const std::string& ct = m_http.content_type();
    m_event_stream = ct.find("text/event-stream") != std::string::npos ||
                     (m_options.stream && ct.find("json") == std::string::npos);
  }
  if (m_http.status() != 200) {
    if (m_body.size() < k_error_body_bytes) {
      m_body.append(bytes.substr(0, k_error_body_bytes - m_body.size()));
    }
    return;
  }
  if (!m_event_stream) {
    if (m_body.size() + bytes.size() > k_max_body_bytes) {
      m_stream_failed = true;
      m_stream_error = error_kind::malformed_stream;
      m_stream_detail = "response body larger than " + std::to_string(k_max_body_bytes) + " bytes";
      return;
    }
    m_body.append(bytes);
    return;
  }
  if (m_stream_failed) return;
  m_sse.feed(bytes, m_now, *this);
  if (m_sse.failed() && !m_stream_failed) {
    m_stream_failed = true;
    m_stream_error = error_kind::malformed_stream;
    m_stream_detail = m_sse.error();
  }
}

void response_reader::on_event(const sse_event& e) {
  if (m_stream_failed || m_done_marker) return;
  if (e.event == "error") {
    m_stream_failed = true;
    m_stream_error = error_kind::stream_error;
    m_stream_detail = "error event: " + error_message_of(e.data);
    return;
  }
  const stream_chunk c = interpret_stream_data(e.data);
  const auto& u = c.usage;
  if (u.prompt_tokens) m_record.usage_prompt_tokens = *u.prompt_tokens;
  if (u.completion_tokens) m_record.usage_output_tokens = *u.completion_tokens;
  if (u.cached_tokens) m_record.usage_cached_tokens = *u.cached_tokens;
  switch (c.type) {
    case stream_chunk::kind::content:
    case stream_chunk::kind::empty: {
      std::int32_t tokens = 0;
      if (u.completion_tokens) {
        // Continuous usage: the chunk holds what the cumulative count grew by (0 for a chunk
        // that only finishes the text of tokens already counted).
        tokens = static_cast<std::int32_t>(std::max<std::int64_t>(*u.completion_tokens - m_usage_seen, 0));
        m_usage_seen = std::max<std::int64_t>(*u.completion_tokens, m_usage_seen);
        m_source = chunk_token_source::continuous_usage;
      } else if (c.type == stream_chunk::kind::content) {
        tokens = m_options.counter != nullptr
                     ? static_cast<std::int32_t>(m_options.counter->count(c.text))
                     : 1;
        // Text that encodes to nothing alone (a partial character) is still a token's worth.
        if (tokens == 0) tokens = 1;
      }
      if (tokens > 0) add_chunk(e.first_byte_seconds, tokens, c.text);
      break;
    }
    case stream_chunk::kind::usage_only:
      break;
    case stream_chunk::kind::done:
      m_done_marker = true;
      break;
    case stream_chunk::kind::error:
      m_stream_failed = true;
      m_stream_error = error_kind::stream_error;
      m_stream_detail = "error in stream: " + c.error;
      break;
    case stream_chunk::kind::malformed:
      m_stream_failed = true;
      m_stream_error = error_kind::malformed_stream;
      m_stream_detail = c.error;
      break;
  }
}

response_reader::result response_reader::finish(double stamp) {
  m_record.end = stamp;
  m_record.status = m_http.status();
  if (m_http.status() != 200) {
    return fail(error_kind::http_status,
                "HTTP " + std::to_string(m_http.status()) +
                    (m_body.empty() ? std::string() : ": " + error_message_of(m_body)),
                stamp);
  }
  if (m_stream_failed) return fail(m_stream_error, m_stream_detail, stamp);
  if (!m_event_stream || (!m_options.stream && m_body_first < 0)) {
    const completion_body b = interpret_completion_body(m_body);
    if (!b.ok) {
      return fail(b.server_error ? error_kind::stream_error : error_kind::malformed_stream, b.error,
                  stamp);
    }
    if (b.usage.prompt_tokens) m_record.usage_prompt_tokens = *b.usage.prompt_tokens;
    if (b.usage.completion_tokens) m_record.usage_output_tokens = *b.usage.completion_tokens;
    if (b.usage.cached_tokens) m_record.usage_cached_tokens = *b.usage.cached_tokens;
    std::int32_t tokens = 1;
    if (m_options.counter != nullptr) {
      tokens = static_cast<std::int32_t>(m_options.counter->count(b.text));
    } else if (b.usage.completion_tokens) {
      tokens = static_cast<std::int32_t>(*b.usage.completion_tokens);
    }
    if (tokens > 0 || !b.text.empty())
      add_chunk(m_body_first >= 0 ? m_body_first : stamp, std::max<std::int32_t>(tokens, 1),
                b.text);
    return result::complete;
  }
  if (m_sse.pending() && !m_done_marker) {
    return fail(error_kind::malformed_stream, "the stream ended inside an event", stamp);
  }
  return result::complete;
}

response_reader::result response_reader::feed(std::string_view bytes, double stamp) {
  if (bytes.empty()) return result::more;
  m_now = stamp;
  if (!m_any_byte) {
    m_any_byte = true;
    m_record.response_start = stamp;
  }
  const std::size_t used = m_http.feed(bytes, *this);
  if (used < bytes.size()) m_extra = true;
  if (m_http.failed()) {
    m_record.status = m_http.status();
    return fail(error_kind::malformed_stream, m_http.error(), stamp);
  }
  if (m_http.done()) return finish(stamp);
  return result::more;
}

response_reader::result response_reader::closed(double stamp) {
  m_now = stamp;
  if (m_http.done()) return finish(stamp);
  m_http.finish();
  if (m_http.done()) return finish(stamp);
  m_record.status = m_http.status();
  if (!m_any_byte) return fail(error_kind::connect, m_http.error(), stamp);
  // A stream cut after its [DONE]: every token arrived; the framing's end did not.
  if (m_done_marker && !m_stream_failed && m_http.status() == 200) {
    m_record.end = stamp;
    return result::complete;
  }
  return fail(error_kind::malformed_stream, m_http.error(), stamp);
}

}  // namespace ridgeline::load
