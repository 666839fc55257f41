// The server-sent events parser (sse.hpp).
#include "ridgeline/load/sse.hpp"

#include <cstring>

namespace ridgeline::load {

void sse_parser::on_line(std::string_view line, sse_sink& sink) {
  if (line.empty()) {
    if (m_has_data) {
      sse_event e;
      e.event = m_event;
      e.data = m_data;
      e.first_byte_seconds = m_first_byte;
      sink.on_event(e);
    }
    m_data.clear();
    m_event.clear();
    m_has_data = false;
    return;
  }
  if (line.front() == ':') return;  // comment (keep-alive pings)
  const auto colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value =
      colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (m_has_data) {
      m_data.push_back('\n');
    } else {
      m_first_byte = m_line_stamp;  // the event's first data byte
    }
    m_data.append(value);
    m_has_data = true;
  } else if (field == "event") {
    m_event.assign(value);
  }
  // id:, retry: and unknown fields are ignored, as the EventSource rules say.
}

void sse_parser::feed(std::string_view bytes, double stamp_seconds, sse_sink& sink) {
  if (failed()) return;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    if (m_after_cr) {
      m_after_cr = false;
      if (bytes[pos] == '\n') {
        ++pos;
        continue;
      }
    }
    if (m_line.empty()) m_line_stamp = stamp_seconds;
    // The next line end (CR or LF) in what is left.
    const char* start = bytes.data() + pos;
    const std::size_t left = bytes.size() - pos;
    const void* lf = std::memchr(start, '\n', left);
    const void* cr = std::memchr(start, '\r', left);
    const char* end = nullptr;
    if (lf && cr) {
      end = static_cast<const char*>(lf) < static_cast<const char*>(cr)
                ? static_cast<const char*>(lf)
                : static_cast<const char*>(cr);
    } else {
      end = static_cast<const char*>(lf ? lf : cr);
    }
    if (end == nullptr) {
      m_line.append(start, left);
      if (m_line.size() + m_data.size() > k_max_event_bytes) {
        m_error = "an event longer than " + std::to_string(k_max_event_bytes) + " bytes";
        return;
      }
      return;
    }
    const std::size_t n = static_cast<std::size_t>(end - start);
    if (*end == '\r') m_after_cr = true;
    pos += n + 1;
    if (m_line.empty()) {
      on_line(std::string_view(start, n), sink);
    } else {
      m_line.append(start, n);
      const std::string line = std::move(m_line);
      m_line.clear();
      on_line(line, sink);
    }
    if (m_data.size() > k_max_event_bytes) {
      m_error = "an event longer than " + std::to_string(k_max_event_bytes) + " bytes";
      return;
    }
  }
}

}  // namespace ridgeline::load
