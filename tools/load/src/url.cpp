// URL parsing and name resolution for the load client (url.hpp).
#include "ridgeline/load/url.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {

namespace {
// The host as a URL writes it: IPv6 literals in brackets.
std::string bracketed(const std::string& host) {
  if (host.find(':') == std::string::npos) return host;
  std::string h;
  h += '[';
  h += host;
  h += ']';
  return h;
}
}  // namespace

std::string url::host_header() const {
  std::string h = bracketed(host);
  if (port != (tls ? 443 : 80)) {
    h += ':';
    h += std::to_string(port);
  }
  return h;
}

std::string url::origin() const {
  std::string o = tls ? "https://" : "http://";
  o += bracketed(host);
  o += ':';
  o += std::to_string(port);
  return o;
}

std::string url::path_for(const std::string& endpoint) const {
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (ends_with(path, endpoint)) return path;
  if (ends_with(path, "/v1") && endpoint.rfind("/v1/", 0) == 0) return path + endpoint.substr(3);
  return path + endpoint;
}

url parse_url(const std::string& text) {
  auto bad = [&text](const std::string& why) {
    return std::invalid_argument("--url '" + printable(text, 200) + "': " + why +
                                 " (expected http://HOST[:PORT][/PATH] or https://...)");
  };
  url u;
  u.text = text;
  std::string rest;
  if (text.rfind("http://", 0) == 0) {
    rest = text.substr(7);
  } else if (text.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = text.substr(8);
  } else {
    throw bad("not an http:// or https:// URL");
  }
  const auto slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) {
    if (rest[slash] != '/') throw bad("query strings and fragments are not supported");
    u.path = rest.substr(slash);
    if (u.path.find_first_of("?# \t") != std::string::npos) {
      throw bad("query strings, fragments and spaces are not supported");
    }
    while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  }
  if (authority.find('@') != std::string::npos) throw bad("user:password@ is not supported");
  std::string port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) throw bad("unclosed [ in the host");
    u.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw bad("text after the IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) throw bad("no host");
  if (u.host.find_first_of(" \t/") != std::string::npos) throw bad("bad host");
  u.port = u.tls ? 443 : 80;
  if (!port_text.empty() || (authority.size() > 0 && authority.back() == ':')) {
    if (port_text.empty() || port_text.size() > 5 ||
        port_text.find_first_not_of("0123456789") != std::string::npos) {
      throw bad("bad port");
    }
    const long p = std::stol(port_text);
    if (p < 1 || p > 65535) throw bad("port out of range");
    u.port = static_cast<std::uint16_t>(p);
  }
  return u;
}

resolved_address resolve(const url& u) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(u.port);
  const int rc = getaddrinfo(u.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    throw std::invalid_argument("cannot resolve host '" + printable(u.host, 200) +
                                "' of --url: " + gai_strerror(rc));
  }
  resolved_address a;
  std::memcpy(&a.address, res->ai_addr, res->ai_addrlen);
  a.length = static_cast<socklen_t>(res->ai_addrlen);
  char buf[INET6_ADDRSTRLEN] = {};
  if (res->ai_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
    a.text = std::string(buf) + ":" + port;
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, buf, sizeof buf);
    a.text = '[';
    a.text += buf;
    a.text += "]:";
    a.text += port;
  }
  freeaddrinfo(res);
  return a;
}

int connect_blocking(const resolved_address& a, double timeout) {
  const int fd = ::socket(a.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a.address), a.length) != 0 &&
      errno != EINPROGRESS) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("connect to " + a.text + ": " + std::strerror(e));
  }
  pollfd p{fd, POLLOUT, 0};
  const int r = ::poll(&p, 1, static_cast<int>(timeout * 1000));
  int err = 0;
  socklen_t len = sizeof err;
  if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    ::close(fd);
    throw std::runtime_error(
        "connect to " + a.text + ": " +
        (r == 0 ? std::string("timed out") : std::string(std::strerror(err ? err : errno))));
  }
  // Blocking from here, with timeouts on every read and write.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{static_cast<time_t>(timeout), static_cast<suseconds_t>(std::fmod(timeout, 1.0) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

}  // namespace ridgeline::load
