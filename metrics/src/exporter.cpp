// HTTP exposer (civetweb, the server prometheus-cpp's pull library uses) and Pushgateway client
// (prometheus-cpp's push library, libcurl underneath); see exporter.hpp.
#include "ridgeline/metrics/exporter.hpp"

#include <CivetServer.h>
#include <arpa/inet.h>
#include <prometheus/gateway.h>
#include <prometheus/registry.h>

#include <charconv>
#include <stdexcept>

namespace ridgeline::metrics {
namespace {

int parse_port(std::string_view text, std::string_view whole) {
  int port = -1;
  const auto* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, port);
  if (text.empty() || ec != std::errc() || p != end || port < 0 || port > 65535) {
    throw std::invalid_argument("metrics address '" + std::string(whole) +
                                "': port must be a number in [0, 65535]");
  }
  return port;
}

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool is_ipv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

bool is_label_value_ok(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string listen_address::to_string() const {
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

listen_address parse_listen_address(std::string_view text) {
  const std::string whole(text);
  listen_address a;
  a.host = "127.0.0.1";
  if (text.find(':') == std::string_view::npos) {  // "9464": a port alone means loopback
    a.port = parse_port(text, whole);
    return a;
  }
  std::string host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw std::invalid_argument("metrics address '" + whole + "': expected [ipv6]:port");
    }
    host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
    if (!is_ipv6(host)) {
      throw std::invalid_argument("metrics address '" + whole + "': not an IPv6 address");
    }
    a.ipv6 = true;
  } else {
    const auto colon = text.rfind(':');
    host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      throw std::invalid_argument("metrics address '" + whole + "': write IPv6 as [addr]:port");
    }
    if (host.empty() || host == "localhost") host = "127.0.0.1";
    if (!is_ipv4(host)) {
      throw std::invalid_argument("metrics address '" + whole +
                                  "': host must be an IP address or localhost (0.0.0.0 for all "
                                  "interfaces)");
    }
  }
  a.host = host;
  a.port = parse_port(port, whole);
  return a;
}

struct exporter::handler : CivetHandler {
  explicit handler(const metrics_registry& r) : registry(r) {}
  bool handleGet(CivetServer*, mg_connection* conn) override {
    const std::string body = registry.exposition();
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
              "Content-Length: %zu\r\nConnection: close\r\n\r\n",
              body.size());
    mg_write(conn, body.data(), body.size());
    return true;  // handled; other methods fall through to civetweb's 405
  }
  const metrics_registry& registry;
};

exporter::exporter(const metrics_registry& registry, const listen_address& address)
    : m_handler(std::make_unique<handler>(registry)), m_address(address) {
  // Bounded workers, a request timeout so slow or silent clients cannot hold a worker for long,
  // no keep-alive (Prometheus opens one connection per scrape anyway), no file serving.
  const std::vector<std::string> options = {"listening_ports",    address.to_string(),
                                            "num_threads",        "4",
                                            "request_timeout_ms", "3000",
                                            "enable_keep_alive",  "no"};
  try {
    m_server = std::make_unique<CivetServer>(options);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + address.to_string() + ": " + e.what());
  }
  m_server->addHandler("/metrics$", m_handler.get());
  const auto ports = m_server->getListeningPorts();
  m_port = ports.empty() ? address.port : ports.front();
}

exporter::~exporter() = default;

std::string exporter::url() const {
  listen_address a = m_address;
  a.port = m_port;
  return "http://" + a.to_string() + "/metrics";
}

gateway_url parse_gateway_url(std::string_view url) {
  const std::string whole(url);
  std::string_view rest = url;
  std::string scheme;
  for (const char* s : {"http://", "https://"}) {
    if (rest.rfind(s, 0) == 0) {
      scheme = s;
      rest.remove_prefix(scheme.size());
    }
  }
  if (scheme.empty()) {
    throw std::invalid_argument("pushgateway URL '" + whole + "': must start with http://");
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos) {
    throw std::invalid_argument("pushgateway URL '" + whole +
                                "': expected scheme://host[:port] with no path");
  }
  gateway_url g;
  std::string_view host = rest;
  std::string_view port = "9091";
  const auto close = rest.find(']');
  const auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (close == std::string_view::npos || colon > close)) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    parse_port(port, whole);
  }
  if (host.empty()) throw std::invalid_argument("pushgateway URL '" + whole + "': no host");
  g.scheme_host = scheme + std::string(host);
  g.port = std::string(port);
  return g;
}

void push_to_gateway(const metrics_registry& registry, std::string_view url, const std::string& job,
                     const std::string& instance) {
  if (!is_label_value_ok(job) || !is_label_value_ok(instance)) {
    throw std::invalid_argument(
        "pushgateway job and instance must be 1-128 of [A-Za-z0-9_.-], got '" + job + "' and '" +
        instance + "'");
  }
  const gateway_url g = parse_gateway_url(url);
  prometheus::Gateway gateway(g.scheme_host, g.port, job, {{"instance", instance}});
  gateway.RegisterCollectable(registry.handle());
  const int status = gateway.Push();
  if (status < 200 || status >= 300) {
    throw std::runtime_error(
        "push to " + std::string(url) + " (job " + job + ", instance " + instance + ") failed: " +
        (status < 0 ? std::string("no connection") : "HTTP " + std::to_string(status)));
  }
}

}  // namespace ridgeline::metrics
