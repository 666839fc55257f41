// An incremental HTTP/1.1 response parser, written for the load client: bytes go in as the
// socket delivers them (any split), the body comes out through a sink as it arrives, decoded from
// Content-Length, chunked transfer-encoding, or read-until-close framing.
//   http_response_parser p;
//   p.feed(bytes, sink);      // sink.on_body(std::string_view) per body piece
//   p.finish();               // the peer closed: ends a read-until-close body, else an error
//   p.state() == http_response_parser::phase::done; p.status(); p.keep_alive();
// Limits (a malformed or hostile response fails instead of growing memory): 8 KiB per header
// line, 100 headers, 1 KiB per chunk-size line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ridgeline::load {

class body_sink {
 public:
  virtual ~body_sink() = default;
  virtual void on_body(std::string_view bytes) = 0;
};

class http_response_parser {
 public:
  enum class phase { status_line, headers, body, done, failed };

  // Parses as much of `data` as belongs to this response and returns how many bytes it used
  // (less than data.size() only once done or failed). Body bytes go to `sink` in order.
  std::size_t feed(std::string_view data, body_sink& sink);
  // The connection ended: a read-until-close body is then complete; anything else unfinished
  // fails ("connection closed ...").
  void finish();

  phase state() const { return m_phase; }
  bool done() const { return m_phase == phase::done; }
  bool failed() const { return m_phase == phase::failed; }
  const std::string& error() const { return m_error; }
  int status() const { return m_status; }
  bool headers_complete() const { return m_phase == phase::body || m_phase == phase::done; }
  // HTTP/1.1 without "Connection: close", framed by length or chunks: the connection may carry
  // the next request once this response is done.
  bool keep_alive() const;
  bool chunked() const { return m_framing == framing::chunked; }
  const std::string& content_type() const { return m_content_type; }

 private:
  enum class framing { none, length, chunked, until_close };
  enum class chunk_phase { size, data, data_crlf, trailers };
  void fail(std::string why);
  bool take_line(std::string_view data, std::size_t& pos, std::size_t limit, std::string& line);
  void on_status_line(const std::string& line);
  void on_header(const std::string& line);
  void start_body();

  phase m_phase = phase::status_line;
  framing m_framing = framing::none;
  chunk_phase m_chunk = chunk_phase::size;
  std::string m_line;  // a line split across feeds
  std::string m_error;
  std::string m_content_type;
  int m_status = 0;
  int m_minor = 1;
  int m_headers = 0;
  bool m_close = false;
  bool m_has_length = false;
  bool m_chunked_header = false;
  std::uint64_t m_remaining = 0;  // of the body (length) or of the current chunk
};

}  // namespace ridgeline::load
