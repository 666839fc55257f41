// An incremental parser of server-sent events (the text/event-stream framing OpenAI-compatible
// servers stream completions in): lines end in LF, CRLF or CR; "data:" lines accumulate (joined by
// LF), "event:" names the event, ":" lines are comments, a blank line dispatches. Each event
// carries the stamp of the read that brought its first data line's first byte, so a chunk's
// arrival is when its first byte reached the client, not when the parser finished it.
//   sse_parser p;
//   p.feed(body_bytes, read_stamp, sink);  // sink.on_event(const sse_event&) per event
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ridgeline::load {

struct sse_event {
  std::string_view event;  // "" unless an event: line named it
  std::string_view data;   // the data lines joined by '\n'
  double first_byte_seconds = 0;
};

class sse_sink {
 public:
  virtual ~sse_sink() = default;
  virtual void on_event(const sse_event& e) = 0;
};

class sse_parser {
 public:
  // An event larger than this fails the stream (error() says so).
  static constexpr std::size_t k_max_event_bytes = 64u << 20;

  void feed(std::string_view bytes, double stamp_seconds, sse_sink& sink);
  bool failed() const { return !m_error.empty(); }
  const std::string& error() const { return m_error; }
  // Bytes of an event begun but not dispatched (a stream that ends here is cut short).
  bool pending() const { return m_has_data || !m_line.empty(); }

 private:
  void on_line(std::string_view line, sse_sink& sink);
  std::string m_line;
  std::string m_data;
  std::string m_event;
  std::string m_error;
  bool m_has_data = false;
  bool m_after_cr = false;  // the last byte was CR: a following LF belongs to it
  double m_first_byte = 0;  // of the current event's first data line
  double m_line_stamp = 0;  // of the current line's first byte
};

}  // namespace ridgeline::load
