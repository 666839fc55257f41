// The /metrics scraper (scraper.hpp): blocking GETs on its own thread, with socket timeouts.
#include "ridgeline/load/scraper.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "ridgeline/core/text.hpp"
#include "ridgeline/load/http_response.hpp"
#include "ridgeline/load/prometheus_text.hpp"

namespace ridgeline::load {
namespace {

struct fd_closer {
  int fd = -1;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

struct collect : body_sink {
  std::string body;
  void on_body(std::string_view b) override {
    if (body.size() + b.size() > (64u << 20)) throw std::runtime_error("metrics body over 64 MiB");
    body.append(b);
  }
};

}  // namespace

std::string http_get(const url& u, const std::string& path, double timeout_seconds,
                     bool verify_tls) {
  const resolved_address a = resolve(u);
  fd_closer fd{connect_blocking(a, timeout_seconds)};
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + u.host_header() +
                          "\r\nUser-Agent: ridgeline-load\r\nAccept: text/plain\r\n"
                          "Connection: close\r\n\r\n";
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(nullptr, SSL_CTX_free);
  std::unique_ptr<SSL, void (*)(SSL*)> ssl(nullptr, SSL_free);
  if (u.tls) {
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_verify(ctx.get(), verify_tls ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (verify_tls) SSL_CTX_set_default_verify_paths(ctx.get());
    ssl.reset(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), fd.fd);
    SSL_set_tlsext_host_name(ssl.get(), u.host.c_str());
    if (verify_tls) SSL_set1_host(ssl.get(), u.host.c_str());
    if (SSL_connect(ssl.get()) != 1) {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      throw std::runtime_error("TLS handshake with " + a.text + ": " + buf);
    }
  }
  auto write_all = [&](std::string_view s) {
    while (!s.empty()) {
      const long n = u.tls ? SSL_write(ssl.get(), s.data(), static_cast<int>(s.size()))
                           : ::send(fd.fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("sending to " + a.text + " failed");
      s.remove_prefix(static_cast<std::size_t>(n));
    }
  };
  write_all(req);
  http_response_parser p;
  collect sink;
  char buf[16384];
  while (!p.done() && !p.failed()) {
    const long n = u.tls ? SSL_read(ssl.get(), buf, sizeof buf) : ::recv(fd.fd, buf, sizeof buf, 0);
    if (n < 0 && !u.tls && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      throw std::runtime_error("no response from " + a.text + " within " +
                               format_seconds(timeout_seconds));
    }
    if (n <= 0) {
      p.finish();
      break;
    }
    p.feed(std::string_view(buf, static_cast<std::size_t>(n)), sink);
  }
  if (p.failed()) throw std::runtime_error("GET " + path + ": " + p.error());
  if (p.status() != 200) {
    throw std::runtime_error("GET " + path + ": HTTP " + std::to_string(p.status()));
  }
  return sink.body;
}

metrics_scraper::metrics_scraper(url metrics_url, double interval_seconds,
                                 std::chrono::steady_clock::time_point epoch, bool verify_tls)
    : m_url(std::move(metrics_url)),
      m_interval(interval_seconds),
      m_epoch(epoch),
      m_verify(verify_tls) {
  m_series.url = m_url.text;
  m_series.interval_seconds = interval_seconds;
}

metrics_scraper::~metrics_scraper() {
  stop();
}

void metrics_scraper::start() {
  if (m_thread.joinable()) return;
  m_thread = std::thread([this] { loop(); });
}

void metrics_scraper::stop() {
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_wake.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

server_series metrics_scraper::series() const {
  std::lock_guard lock(m_mutex);
  return m_series;
}

void metrics_scraper::scrape_once() {
  const double t =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - m_epoch).count();
  try {
    const std::string path = m_url.path.empty() ? "/metrics" : m_url.path;
    const std::string body =
        http_get(m_url, path, std::max(0.5, std::min(m_interval, 5.0)), m_verify);
    const auto picked = pick_server_series(parse_prometheus_text(body));
    std::lock_guard lock(m_mutex);
    const std::size_t n = m_series.t.size();
    m_series.t.push_back(t);
    for (const auto& [name, v] : picked) {
      auto& col = m_series.values[name];
      col.resize(n);  // absent in earlier scrapes
      col.push_back(v);
    }
    for (auto& [name, col] : m_series.values) col.resize(n + 1);
  } catch (const std::exception& e) {
    std::lock_guard lock(m_mutex);
    ++m_series.failures;
    m_series.last_error = e.what();
  }
}

void metrics_scraper::loop() {
  auto next = std::chrono::steady_clock::now();
  while (true) {
    {
      std::unique_lock lock(m_mutex);
      if (m_wake.wait_until(lock, next, [this] { return m_stop; })) return;
    }
    scrape_once();
    next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(m_interval));
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // a slow scrape: do not catch up in a burst
  }
}

}  // namespace ridgeline::load
