// The incremental HTTP/1.1 response parser (http_response.hpp).
#include "ridgeline/load/http_response.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

constexpr std::size_t k_max_header_line = 8192;
constexpr int k_max_headers = 100;
constexpr std::size_t k_max_chunk_line = 1024;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool contains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool http_response_parser::keep_alive() const {
  return m_minor >= 1 && !m_close &&
         (m_framing == framing::length || m_framing == framing::chunked ||
          m_framing == framing::none);
}

void http_response_parser::fail(std::string why) {
  if (m_phase == phase::failed) return;
  m_phase = phase::failed;
  m_error = std::move(why);
}

// Appends bytes up to the next '\n' to `line`; true with the line complete (CR/LF stripped).
bool http_response_parser::take_line(std::string_view data, std::size_t& pos, std::size_t limit,
                                     std::string& line) {
  const auto nl = data.find('\n', pos);
  const std::size_t end = nl == std::string_view::npos ? data.size() : nl;
  line.append(data.data() + pos, end - pos);
  pos = nl == std::string_view::npos ? data.size() : nl + 1;
  if (line.size() > limit) {
    fail("a header or chunk-size line longer than " + std::to_string(limit) + " bytes");
    return false;
  }
  if (nl == std::string_view::npos) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

void http_response_parser::on_status_line(const std::string& line) {
  // HTTP/1.x SP 3DIGIT [SP reason]
  if (line.size() < 12 || line.compare(0, 7, "HTTP/1.") != 0 || line[8] != ' ' ||
      !std::isdigit(static_cast<unsigned char>(line[7]))) {
    fail("not an HTTP/1.x status line: '" + printable(line, 80) + "'");
    return;
  }
  m_minor = line[7] - '0';
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(line[static_cast<std::size_t>(i)]))) {
      fail("bad status code in '" + printable(line, 80) + "'");
      return;
    }
    status = status * 10 + (line[static_cast<std::size_t>(i)] - '0');
  }
  if (line.size() > 12 && line[12] != ' ') {
    fail("bad status code in '" + printable(line, 80) + "'");
    return;
  }
  m_status = status;
  if (m_minor == 0) m_close = true;  // HTTP/1.0: closes unless keep-alive (not asked for)
  m_phase = phase::headers;
}

void http_response_parser::on_header(const std::string& line) {
  if (++m_headers > k_max_headers) {
    fail("more than " + std::to_string(k_max_headers) + " headers");
    return;
  }
  const auto colon = line.find(':');
  if (colon == std::string::npos || colon == 0) {
    fail("malformed header line '" + printable(line, 80) + "'");
    return;
  }
  const std::string_view key(line.data(), colon);
  const std::string_view value = trim(std::string_view(line).substr(colon + 1));
  if (iequals(key, "content-length")) {
    if (value.empty() || value.size() > 18 ||
        value.find_first_not_of("0123456789") != std::string_view::npos) {
      fail("bad Content-Length '" + printable(value, 40) + "'");
      return;
    }
    m_has_length = true;
    m_remaining = std::stoull(std::string(value));
  } else if (iequals(key, "transfer-encoding")) {
    if (contains_token(value, "chunked")) m_chunked_header = true;
  } else if (iequals(key, "connection")) {
    if (contains_token(value, "close")) m_close = true;
  } else if (iequals(key, "content-type")) {
    m_content_type = std::string(value);
  }
}

void http_response_parser::start_body() {
  // 1xx, 204 and 304 carry no body; chunked wins over Content-Length (RFC 9112 6.3).
  if ((m_status >= 100 && m_status < 200) || m_status == 204 || m_status == 304) {
    if (m_status >= 100 && m_status < 200) {
      // An interim response (100 Continue): the real one follows.
      *this = http_response_parser();
      return;
    }
    m_framing = framing::none;
    m_phase = phase::done;
    return;
  }
  if (m_chunked_header) {
    m_framing = framing::chunked;
    m_chunk = chunk_phase::size;
  } else if (m_has_length) {
    m_framing = framing::length;
    if (m_remaining == 0) {
      m_phase = phase::done;
      return;
    }
  } else {
    m_framing = framing::until_close;
    m_close = true;
  }
  m_phase = phase::body;
}

std::size_t http_response_parser::feed(std::string_view data, body_sink& sink) {
  std::size_t pos = 0;
  while (pos < data.size() && m_phase != phase::done && m_phase != phase::failed) {
    switch (m_phase) {
      case phase::status_line:
        if (take_line(data, pos, k_max_header_line, m_line)) {
          // Tolerate blank lines before the status line (RFC 9112 2.2).
          if (!m_line.empty()) on_status_line(m_line);
          m_line.clear();
        }
        break;
      case phase::headers:
        if (take_line(data, pos, k_max_header_line, m_line)) {
          if (m_line.empty()) {
            start_body();
          } else {
            on_header(m_line);
          }
          m_line.clear();
        }
        break;
      case phase::body:
        if (m_framing == framing::until_close) {
          sink.on_body(data.substr(pos));
          pos = data.size();
        } else if (m_framing == framing::length) {
          const std::size_t n =
              static_cast<std::size_t>(std::min<std::uint64_t>(m_remaining, data.size() - pos));
          sink.on_body(data.substr(pos, n));
          pos += n;
          m_remaining -= n;
          if (m_remaining == 0) m_phase = phase::done;
        } else {
          switch (m_chunk) {
            case chunk_phase::size:
              if (take_line(data, pos, k_max_chunk_line, m_line)) {
                const std::string_view l = trim(
                    std::string_view(m_line).substr(0, std::min(m_line.size(), m_line.find(';'))));
                if (l.empty() || l.size() > 15 ||
                    l.find_first_not_of("0123456789abcdefABCDEF") != std::string_view::npos) {
                  fail("bad chunk size line '" + printable(m_line, 40) + "'");
                  break;
                }
                m_remaining = std::stoull(std::string(l), nullptr, 16);
                m_chunk = m_remaining == 0 ? chunk_phase::trailers : chunk_phase::data;
                m_line.clear();
              }
              break;
            case chunk_phase::data: {
              const std::size_t n =
                  static_cast<std::size_t>(std::min<std::uint64_t>(m_remaining, data.size() - pos));
              sink.on_body(data.substr(pos, n));
              pos += n;
              m_remaining -= n;
              if (m_remaining == 0) m_chunk = chunk_phase::data_crlf;
              break;
            }
            case chunk_phase::data_crlf:
              if (take_line(data, pos, 2, m_line)) {
                if (!m_line.empty()) {
                  fail("chunk data not followed by CRLF");
                  break;
                }
                m_chunk = chunk_phase::size;
              }
              break;
            case chunk_phase::trailers:
              if (take_line(data, pos, k_max_header_line, m_line)) {
                if (m_line.empty()) m_phase = phase::done;
                m_line.clear();
              }
              break;
          }
        }
        break;
      case phase::done:
      case phase::failed:
        break;
    }
  }
  return pos;
}

void http_response_parser::finish() {
  if (m_phase == phase::body && m_framing == framing::until_close) {
    m_phase = phase::done;
    return;
  }
  if (m_phase == phase::done || m_phase == phase::failed) return;
  if (m_phase == phase::status_line && m_line.empty()) {
    fail("connection closed before any response byte");
  } else {
    fail("connection closed before the end of the response");
  }
}

}  // namespace ridgeline::load
