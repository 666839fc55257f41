// The server `ridgeline load` talks to: an http:// or https:// URL split into what the client
// needs, and its address resolved once before a run (never per request).
//   url u = parse_url("http://127.0.0.1:8000");          // base URL: endpoints are appended
//   u.path_for("/v1/completions")                          // "/v1/completions"
//   url v = parse_url("https://api.example.com/v1");      // "/v1" is not repeated
//   resolved_address a = resolve(u);                      // getaddrinfo, std::invalid_argument
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace ridgeline::load {

struct url {
  bool tls = false;
  std::string host;  // without brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string path;  // "" or "/prefix" (no trailing slash)
  std::string text;  // as given
  // The Host header's value: host[:port] (the port only when it is not the scheme's default).
  std::string host_header() const;
  // `endpoint` ("/v1/completions") under the URL's path; a path that already ends in "/v1"
  // does not get a second one, and a path that already names the endpoint is kept.
  std::string path_for(const std::string& endpoint) const;
  // scheme://host:port (no path): where /metrics is found by default.
  std::string origin() const;
};

// Throws std::invalid_argument naming the text for anything but http(s)://host[:port][/path].
url parse_url(const std::string& text);

struct resolved_address {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string text;  // "127.0.0.1:8000"
};
// Resolves the URL's host (first address getaddrinfo gives); throws std::invalid_argument naming
// the host when it cannot be resolved.
resolved_address resolve(const url& u);

// A blocking TCP connection to `a` within `timeout` seconds, with that timeout on every later read
// and write of the socket; its file descriptor (the caller closes it). std::runtime_error saying
// why not ("connect to 127.0.0.1:8000: Connection refused").
int connect_blocking(const resolved_address& a, double timeout_seconds);

}  // namespace ridgeline::load
