// Exporter robustness on loopback: while a workload thread updates the live metrics, fire 10,000
// malformed or oversized HTTP requests (raw sockets) and bursts of 200 concurrent scrapes at the
// exposer; require no crash, a flat resident set (growth within a stated margin) and that every
// good scrape answers 200 with an exposition that parses. Prints the figures. Bounded: every
// socket has a 10 s timeout, the whole run takes seconds.
//   build/tests/ridgeline_exporter_stress [malformed=10000] [concurrent=200]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ridgeline/telemetry/exporter.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"

namespace rm = ridgeline::metrics;

namespace {

constexpr double k_rss_margin_mib = 8.0;  // allowed growth from the warmed-up baseline

double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return 0;
}

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request`, half-closes, reads the reply until EOF or timeout. Empty on connect failure.
std::string exchange(int port, const std::string& request, bool* connected = nullptr) {
  const int fd = connect_loopback(port);
  if (connected) *connected = fd >= 0;
  if (fd < 0) return {};
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close on an oversized request: fine
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string reply;
  char buf[8192];
  ssize_t n = 0;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return reply;
}

std::string malformed_request(int i, std::mt19937_64& rng) {
  std::string junk(256 + rng() % 768, '\0');
  for (auto& c : junk) c = static_cast<char>(rng());
  switch (i % 12) {
    case 0:
      return junk;  // random bytes
    case 1:
      return "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(64 << 10, 'A') + "\r\n\r\n";
    case 2:
      return "GET /" + std::string(32 << 10, 'm') + " HTTP/1.1\r\n\r\n";  // long URI
    case 3:
      return "BREW /metrics HTCPCP/1.0\r\n\r\n";
    case 4:
      return "GET /metrics HTTP/7.3\r\n\r\n";
    case 5:
      return "GET /metr";  // truncated
    case 6:
      return "POST /metrics HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nabc";
    case 7:
      return "GET /../../../../etc/passwd HTTP/1.1\r\n\r\n";
    case 8:
      return std::string("GET /metrics HTTP/1.1\r\nHost: a\0b\r\n\r\n", 36);
    case 9:
      return "POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n" + junk;
    case 10: {
      std::string many = "GET /metrics HTTP/1.1\r\n";
      for (int h = 0; h < 2000; ++h) many += "X-" + std::to_string(h) + ": v\r\n";
      return many + "\r\n";
    }
    default:
      return "\r\n\r\n\r\n" + junk;
  }
}

bool is_name(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  }
  return true;
}

// Text format 0.0.4: HELP/TYPE comments, samples `name{k="v",...} value`, histogram buckets
// cumulative and ending in le="+Inf" equal to _count. Returns an empty string or what is wrong.
std::string check_exposition(const std::string& body, std::size_t* samples) {
  std::size_t pos = 0;
  std::map<std::string, double> inf_bucket;  // series (labels without le) -> +Inf count
  std::map<std::string, double> last_bucket;
  *samples = 0;
  while (pos < body.size()) {
    std::size_t end = body.find('\n', pos);
    if (end == std::string::npos) return "last line not terminated";
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (line.rfind("# HELP ", 0) != 0 && line.rfind("# TYPE ", 0) != 0) return "bad comment";
      continue;
    }
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    const std::string name = line.substr(0, i);
    if (!is_name(name) || name.rfind("ridgeline_", 0) != 0) return "bad name: " + line;
    std::string labels, le;
    if (i < line.size() && line[i] == '{') {
      const std::size_t close = line.find("} ", i);
      if (close == std::string::npos) return "unterminated labels: " + line;
      const std::string body_labels = line.substr(i + 1, close - i - 1);
      // k="v" pairs; values here never contain quotes or commas.
      std::size_t p = 0;
      while (p < body_labels.size()) {
        const std::size_t eq = body_labels.find("=\"", p);
        const std::size_t q = eq == std::string::npos ? eq : body_labels.find('"', eq + 2);
        if (q == std::string::npos) return "bad label: " + line;
        const std::string k = body_labels.substr(p, eq - p);
        const std::string v = body_labels.substr(eq + 2, q - eq - 2);
        if (!is_name(k)) return "bad label name: " + line;
        if (k == "le")
          le = v;
        else
          labels += k + "=" + v + ",";
        p = q + 1;
        if (p < body_labels.size() && body_labels[p] == ',') ++p;
      }
      i = close + 1;
    }
    const std::string value = line.substr(i + 1);
    char* stop = nullptr;
    const double v = std::strtod(value.c_str(), &stop);
    if (value.empty() || *stop != '\0') return "bad value: " + line;
    ++*samples;
    const std::string series = name + "|" + labels;
    if (!le.empty()) {
      auto [it, fresh] = last_bucket.emplace(series, v);
      if (!fresh && v < it->second) return "buckets not cumulative: " + line;
      it->second = v;
      if (le == "+Inf") inf_bucket[name.substr(0, name.size() - 7) + "|" + labels] = v;
    } else if (name.size() > 6 && name.compare(name.size() - 6, 6, "_count") == 0) {
      const auto it = inf_bucket.find(name.substr(0, name.size() - 6) + "|" + labels);
      if (it != inf_bucket.end() && it->second != v) return "+Inf bucket != _count: " + line;
    } else if (!std::isfinite(v)) {
      return "non-finite value: " + line;
    }
  }
  return {};
}

struct scrape_tally {
  std::atomic<int> ok{0}, failed{0};
  std::atomic<std::size_t> samples{0};
  std::string first_error;
  std::mutex mutex;
};

void scrape(int port, scrape_tally& t) {
  const std::string reply = exchange(port,
                                     "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Connection: close\r\n\r\n");
  std::string error;
  const auto split = reply.find("\r\n\r\n");
  if (reply.rfind("HTTP/1.1 200", 0) != 0 || split == std::string::npos) {
    error = "no 200 reply (" + std::to_string(reply.size()) + " bytes)";
  } else {
    std::size_t n = 0;
    error = check_exposition(reply.substr(split + 4), &n);
    if (error.empty() && n < 100) error = "only " + std::to_string(n) + " samples";
    t.samples += n;
  }
  if (error.empty()) {
    ++t.ok;
  } else {
    ++t.failed;
    std::lock_guard lock(t.mutex);
    if (t.first_error.empty()) t.first_error = error;
  }
}

void concurrent_scrapes(int port, int n, scrape_tally& t) {
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      scrape(port, t);
    });
  }
  go = true;
  for (auto& th : threads) th.join();
}

}  // namespace

int main(int argc, char** argv) {
  const int malformed = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int concurrent = argc > 2 ? std::atoi(argv[2]) : 200;
  const auto t0 = std::chrono::steady_clock::now();

  rm::live_metrics live;
  live.set_ceilings("bf16", 989e12, 3.35e12);
  rm::exporter exporter(live.registry(), rm::parse_listen_address("127.0.0.1:0"));
  const int port = exporter.port();

  // The workload: what a decode-heavy run feeds, as fast as one thread can with short pauses.
  std::atomic<bool> stop{false};
  std::atomic<long> updates{0};
  std::thread workload([&] {
    std::mt19937_64 rng(1);
    std::int64_t lookups = 0, hits = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      for (int k = 0; k < 1000; ++k) {
        const double dt = 2e-4 + static_cast<double>(rng() % 1000) * 1e-6;
        live.observe_step({rm::step_phase::decode, dt, 32, 0, 32, 32, 4e11, 1.4e10});
        live.observe_itl(dt);
        lookups += 512;
        hits += static_cast<std::int64_t>(rng() % 512);
        live.set_kv({400, 100, 24, lookups, hits, lookups / 4096, lookups / 65536});
        live.set_queue(32, static_cast<std::int64_t>(rng() % 8));
        if (k % 32 == 0) live.observe_request({true, 0.05, 1.2, dt});
      }
      updates += 1000;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  scrape_tally scrapes;
  std::atomic<int> sent{0}, refused{0};
  std::atomic<long> leaked_metrics{0};  // malformed requests answered with metrics (must be 0)
  auto barrage = [&](int first, int count) {
    std::vector<std::thread> threads;
    for (int w = 0; w < 4; ++w) {
      threads.emplace_back([&, w] {
        std::mt19937_64 rng(static_cast<std::uint64_t>(w) + 7);
        for (int i = first + w; i < first + count; i += 4) {
          bool connected = false;
          const std::string reply = exchange(port, malformed_request(i, rng), &connected);
          ++sent;
          if (!connected) ++refused;
          if (reply.find("ridgeline_batch_size") != std::string::npos) ++leaked_metrics;
        }
      });
    }
    for (auto& th : threads) th.join();
  };

  // Warm-up: a concurrent burst and a tenth of the barrage, so thread stacks, malloc arenas and
  // the server's buffers exist before the baseline is taken.
  concurrent_scrapes(port, concurrent, scrapes);
  barrage(0, malformed / 10);
  const double rss_base = rss_mib();
  double rss_peak = rss_base;
  std::vector<double> checkpoints;
  const int rest = malformed - malformed / 10;
  const int chunks = 9;
  for (int c = 0; c < chunks; ++c) {
    const int first = malformed / 10 + c * rest / chunks;
    const int count = (c + 1) * rest / chunks - c * rest / chunks;
    if (c == chunks / 2) {
      // The second burst of concurrent scrapes runs during the barrage.
      std::thread burst([&] { concurrent_scrapes(port, concurrent, scrapes); });
      barrage(first, count);
      burst.join();
    } else {
      barrage(first, count);
    }
    checkpoints.push_back(rss_mib());
    rss_peak = std::max(rss_peak, checkpoints.back());
  }
  concurrent_scrapes(port, concurrent, scrapes);
  stop = true;
  workload.join();
  const double rss_end = rss_mib();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("exporter stress on 127.0.0.1:%d, %.1f s\n", port, seconds);
  std::printf(
      "  malformed/oversized requests sent: %d (connections refused: %d, answered with "
      "metrics: %ld)\n",
      sent.load(), refused.load(), leaked_metrics.load());
  std::printf("  good scrapes: %d ok, %d failed (3 bursts of %d concurrent), %zu samples parsed\n",
              scrapes.ok.load(), scrapes.failed.load(), concurrent, scrapes.samples.load());
  std::printf("  workload updates during the run: %ld\n", updates.load());
  std::printf(
      "  RSS MiB: baseline %.1f (after warm-up), peak %.1f, end %.1f; growth %.2f "
      "(margin %.1f); checkpoints:",
      rss_base, rss_peak, rss_end, rss_end - rss_base, k_rss_margin_mib);
  for (double c : checkpoints) std::printf(" %.1f", c);
  std::printf("\n");

  bool pass = true;
  if (sent.load() != malformed) pass = false;
  if (refused.load() > 0 || leaked_metrics.load() > 0) pass = false;
  if (scrapes.failed.load() > 0 || scrapes.ok.load() != 3 * concurrent) {
    std::printf("  first scrape error: %s\n", scrapes.first_error.c_str());
    pass = false;
  }
  if (rss_peak - rss_base > k_rss_margin_mib || rss_end - rss_base > k_rss_margin_mib) {
    pass = false;
  }
  std::printf("%s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
