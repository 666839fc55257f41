// HTTP exposer (a small POSIX-socket server, see below) and Pushgateway client (prometheus-cpp's
// push library, libcurl underneath); see exporter.hpp.
#include "ridgeline/telemetry/exporter.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <prometheus/gateway.h>
#include <prometheus/registry.h>

#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>
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

// A small HTTP/1.x server over POSIX sockets rather than civetweb: civetweb (1.15, Debian) starts
// its threads with a fixed 100 KB stack, and in a process that also loads cuBLASLt (94 KB of
// static TLS, which glibc places in every thread's stack) pthread_create then fails with EINVAL,
// so the exporter could not start in a CUDA build. One acceptor thread hands connections to four
// workers (default stacks); each request is read with a 3 s timeout and a 16 KiB limit, answered
// and closed. GET /metrics (a query string is ignored) -> 200; other paths -> 404; other methods
// -> 405; oversized or malformed -> 400.
struct exporter::server {
  const metrics_registry& registry;
  int listen_fd = -1;
  int wake[2] = {-1, -1};  // self-pipe that stops the acceptor
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<int> queue;
  bool stopping = false;
  std::thread acceptor;
  std::vector<std::thread> workers;

  explicit server(const metrics_registry& r) : registry(r) {}

  static void respond(int fd, const char* status, const std::string& body, bool text) {
    std::string head = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " +
                       (text ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain") +
                       "\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n";
    const std::string all = head + body;
    std::size_t sent = 0;
    while (sent < all.size()) {
      const ssize_t n = ::send(fd, all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
  }

  void serve(int fd) {
    timeval tv{3, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string req;
    char buf[4096];
    constexpr std::size_t k_limit = 16 * 1024;
    while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;  // closed, timed out or failed: nothing to answer
      req.append(buf, static_cast<std::size_t>(n));
      if (req.size() > k_limit) return respond(fd, "400 Bad Request", "request too large\n", false);
    }
    // The head (up to the blank line) must be printable text: no NUL or other control bytes.
    const auto head_end = req.find("\n\n") != std::string::npos && req.find("\r\n\r\n") == std::string::npos
                              ? req.find("\n\n")
                              : req.find("\r\n\r\n");
    for (std::size_t i = 0; i < head_end; ++i) {
      const auto c = static_cast<unsigned char>(req[i]);
      if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f) {
        return respond(fd, "400 Bad Request", "control byte in request head\n", false);
      }
    }
    const auto line_end = req.find_first_of("\r\n");
    const std::string line = req.substr(0, line_end);
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos) {
      return respond(fd, "400 Bad Request", "malformed request line\n", false);
    }
    const std::string version = line.substr(sp2 + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
      return respond(fd, "400 Bad Request", "HTTP/1.0 or HTTP/1.1 only\n", false);
    }
    const std::string method = line.substr(0, sp1);
    std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (const auto q = path.find('?'); q != std::string::npos) path.resize(q);
    if (path != "/metrics") return respond(fd, "404 Not Found", "see /metrics\n", false);
    if (method != "GET") return respond(fd, "405 Method Not Allowed", "GET only\n", false);
    respond(fd, "200 OK", registry.exposition(), true);
  }

  void work() {
    for (;;) {
      int fd = -1;
      {
        std::unique_lock<std::mutex> lock(mutex);
        ready.wait(lock, [this] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping and drained
        fd = queue.front();
        queue.pop_front();
      }
      serve(fd);
      ::close(fd);
    }
  }

  void accept_loop() {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents) return;
      if (!(fds[0].revents & POLLIN)) continue;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mutex);
      if (queue.size() >= 1024) {  // overloaded: shed the connection rather than grow without bound
        ::close(fd);
        continue;
      }
      queue.push_back(fd);
      ready.notify_one();
    }
  }
};

exporter::exporter(const metrics_registry& registry, const listen_address& address)
    : m_server(std::make_unique<server>(registry)), m_address(address) {
  auto fail = [&address](const std::string& why) {
    throw std::runtime_error("cannot serve metrics on " + address.to_string() + ": " + why);
  };
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (address.ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<std::uint16_t>(address.port));
    inet_pton(AF_INET6, address.host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(address.port));
    inet_pton(AF_INET, address.host.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  server& sv = *m_server;
  sv.listen_fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sv.listen_fd < 0) fail(std::strerror(errno));
  const int one = 1;
  ::setsockopt(sv.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(sv.listen_fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(sv.listen_fd, 256) != 0) {
    const std::string why = std::strerror(errno);
    ::close(sv.listen_fd);
    fail(why);
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  ::getsockname(sv.listen_fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  m_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(sv.wake, O_CLOEXEC) != 0) {
    ::close(sv.listen_fd);
    fail(std::strerror(errno));
  }
  for (int i = 0; i < 4; ++i) sv.workers.emplace_back([&sv] { sv.work(); });
  sv.acceptor = std::thread([&sv] { sv.accept_loop(); });
}

exporter::~exporter() {
  server& sv = *m_server;
  const char c = 0;
  [[maybe_unused]] const ssize_t n = ::write(sv.wake[1], &c, 1);
  sv.acceptor.join();
  {
    std::lock_guard<std::mutex> lock(sv.mutex);
    sv.stopping = true;
  }
  sv.ready.notify_all();
  for (auto& w : sv.workers) w.join();
  for (int fd : sv.queue) ::close(fd);
  ::close(sv.listen_fd);
  ::close(sv.wake[0]);
  ::close(sv.wake[1]);
}


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
