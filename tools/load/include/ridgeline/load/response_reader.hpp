// One response as the load client reads it: bytes from the socket, with the stamp taken in the read
// callback before any parsing, go through the HTTP parser, then (streaming) the SSE parser and the
// OpenAI chunk interpretation, into the request's record: the first response byte, every content
// chunk's arrival and token count, usage, status and error kind. No sockets here, so tests feed it
// canned responses split anywhere.
//   response_reader rd(record, {.stream = true});
//   rd.feed(bytes, stamp);  ...  rd.closed(stamp);   // -> more / complete / failed
//
// A chunk's token count, in this order: the growth of the cumulative usage.completion_tokens a
// chunk carries (vLLM's continuous_usage_stats), else the tokenizer's count of its text when one
// is given, else 1 per content chunk. chunk_token_source() names the one used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ridgeline/load/http_response.hpp"
#include "ridgeline/load/record.hpp"
#include "ridgeline/load/sse.hpp"
#include "ridgeline/load/token_codec.hpp"

namespace ridgeline::load {

enum class chunk_token_source { chunks, tokenizer, continuous_usage };
const char* name(chunk_token_source s);

struct reader_options {
  bool stream = true;
  bool keep_text = false;                // keep the answer's text in the record
  const token_codec* counter = nullptr;  // counts chunk tokens when usage does not
};

class response_reader final : private body_sink, private sse_sink {
 public:
  enum class result { more, complete, failed };
  response_reader(request_record& record, reader_options o);

  // Bytes read at `stamp_seconds`. `complete` once the response ended (the record's `end` set,
  // error none or http_status / stream_error); `failed` with the record's error set.
  result feed(std::string_view bytes, double stamp_seconds);
  // The peer closed the connection.
  result closed(double stamp_seconds);
  // The connection may carry another request: done, keep-alive, nothing read past the end.
  bool reusable() const;
  bool any_byte() const { return m_any_byte; }
  chunk_token_source token_source() const { return m_source; }

 private:
  void on_body(std::string_view bytes) override;
  void on_event(const sse_event& e) override;
  result finish(double stamp_seconds);
  result fail(error_kind k, std::string detail, double stamp_seconds);
  void add_chunk(double at, std::int32_t tokens, std::string_view text);

  request_record& m_record;
  reader_options m_options;
  http_response_parser m_http;
  sse_parser m_sse;
  std::string m_body;  // a non-streamed body, or an error body's first bytes
  double m_now = 0;
  double m_body_first = -1;
  std::int64_t m_usage_seen = 0;  // cumulative completion_tokens seen in content chunks
  bool m_any_byte = false;
  bool m_extra = false;  // bytes after the response's end
  bool m_done_marker = false;
  bool m_event_stream = true;  // the body is SSE (else a JSON body despite stream: true)
  bool m_stream_failed = false;
  error_kind m_stream_error = error_kind::none;
  std::string m_stream_detail;
  chunk_token_source m_source = chunk_token_source::chunks;
};

}  // namespace ridgeline::load
