// Serving and pushing a metrics_registry: an HTTP exposer (GET /metrics) bound to loopback unless
// all interfaces are asked for by name, and a Pushgateway client for batch runs (probe, sweep, CI)
// that groups by job and instance:
//   metrics::exporter e(registry, metrics::parse_listen_address("127.0.0.1:9464"));
//   metrics::push_to_gateway(registry, "http://127.0.0.1:9091", "ridgeline_kv", "ci-42");
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ridgeline/telemetry/registry.hpp"


namespace ridgeline::metrics {

inline constexpr int k_default_metrics_port = 9464;  // the exporter port Prometheus' wiki lists

struct listen_address {
  std::string host;  // IPv4 literal, or IPv6 literal without brackets
  int port = k_default_metrics_port;
  bool ipv6 = false;
  bool all_interfaces() const { return host == "0.0.0.0" || host == "::"; }
  std::string to_string() const;  // "127.0.0.1:9464", "[::1]:9464"
};

// "127.0.0.1:9464", "localhost:9464", "[::1]:9464", ":9464" or "9464" (both loopback),
// "0.0.0.0:9464" or "[::]:9464" (all interfaces: only when written out). Port 0 picks a free one.
// Throws std::invalid_argument for anything else (host names other than localhost included).
listen_address parse_listen_address(std::string_view text);

class exporter {
 public:
  // Starts serving GET /metrics (and nothing else: other paths 404, other methods 405, malformed
  // or oversized requests 400) on `address`; throws std::runtime_error when it cannot be bound.
  // One acceptor and four worker threads; requests time out after 3 s. Only the registry's own
  // metrics are served. The registry must outlive the exporter.
  exporter(const metrics_registry& registry, const listen_address& address);
  ~exporter();
  exporter(const exporter&) = delete;
  exporter& operator=(const exporter&) = delete;
  int port() const { return m_port; }  // the bound port (useful with port 0)
  std::string url() const;             // http://host:port/metrics

 private:
  struct server;
  std::unique_ptr<server> m_server;
  listen_address m_address;
  int m_port = 0;
};

struct gateway_url {
  std::string scheme_host;  // "http://127.0.0.1"
  std::string port;         // "9091"
};
// "http://host:port" (port defaults to 9091, the Pushgateway's); https too. Throws
// std::invalid_argument for other schemes, paths, queries or user info.
gateway_url parse_gateway_url(std::string_view url);

// Replaces the group {job, instance} on the Pushgateway with the registry's metrics (HTTP PUT).
// Throws std::runtime_error naming the URL and the HTTP status (or the transport failure).
void push_to_gateway(const metrics_registry& registry, std::string_view url, const std::string& job,
                     const std::string& instance);

}  // namespace ridgeline::metrics
