// load_client_bench: how closely `ridgeline load`'s client follows a known token schedule, and how
// many streamed chunks one client core sustains. A plain program printing JSON: it runs the real
// command line twice over loopback, `ridgeline load test-server` pinned to one CPU and
// `ridgeline load --workers 1` (one event loop) pinned to another, then compares the client's raw
// samples with the schedule and with the server's own log of when it wrote each chunk.
//   build-load/bench/ridgeline_load_client_bench                        # 1000 streams, 200 tokens
//   build-load/bench/ridgeline_load_client_bench --streams 1000 --tokens 200 --interval-ms 50
//       --first-token-ms 100 --arrival-rate 1000 --client-cpu 0 --server-cpu 1 > bench.json
// Reported (docs/load.md "Client accuracy"):
//   ttft_error      = measured TTFT - scheduled TTFT (the server's first-token delay)
//   itl_error       = measured gap - scheduled gap (the token interval), every gap
//   delivery        = client's read stamp - the server's write of the same chunk (loopback + the
//                     client's own delay; the server's timer lateness taken out)
//   ttft_client_error = measured TTFT - (server's first write - server's receipt of the request):
//                     what the client and loopback add to TTFT, the server's lateness taken out
//   itl_client_error  = measured gap - the server's gap between its writes of the same chunks
//   chunks_per_second over the window when every stream is open, and the client's CPU seconds per
//                     wall second over the run (1.0 = one core busy)
// The bench links core only (bench/ may not use tools/: docs/architecture.md); it needs the
// `ridgeline` binary, whose path is compiled in (RIDGELINE_BINARY) or given with --ridgeline.
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/bench/child_process.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/statistics.hpp"

namespace {

using nlohmann::json;

struct settings {
  std::string ridgeline = RIDGELINE_BINARY;
  int streams = 1000, tokens = 200, prompt = 16;
  double interval_ms = 50, first_token_ms = 100, arrival_rate = 1000;
  int client_cpu = 0, server_cpu = 1;
  std::string workdir;
};

using ridgeline::bench::child_process;
using ridgeline::bench::drain;
using ridgeline::bench::read_line;
using ridgeline::bench::spawn_child;

json summary(std::vector<double> v, double scale) {
  if (v.empty()) return {{"count", 0}};
  std::sort(v.begin(), v.end());
  using ridgeline::bench::quantile_sorted;
  return {{"count", v.size()},
          {"p50", quantile_sorted(v, 0.5) * scale},
          {"p90", quantile_sorted(v, 0.9) * scale},
          {"p99", quantile_sorted(v, 0.99) * scale},
          {"max", v.back() * scale},
          {"min", v.front() * scale}};
}

int run(const settings& s) {
  const std::filesystem::path dir = s.workdir.empty()
                                        ? std::filesystem::temp_directory_path() /
                                              ("ridgeline_load_bench_" + std::to_string(getpid()))
                                        : std::filesystem::path(s.workdir);
  std::filesystem::create_directories(dir);
  const std::string send_log = (dir / "server_sends.json").string();
  const std::string result = (dir / "client.json").string();
  const double interval = s.interval_ms / 1e3, first = s.first_token_ms / 1e3;

  child_process server =
      spawn_child({s.ridgeline, "load", "test-server", "--port", "0", "--first-token",
                   std::to_string(s.first_token_ms) + "ms", "--interval",
                   std::to_string(s.interval_ms) + "ms", "--send-log", send_log},
                  s.server_cpu, STDOUT_FILENO);
  const std::string banner = read_line(server.out_fd);
  const auto at = banner.find("http://");
  if (at == std::string::npos) {
    std::cerr << "load_client_bench: the test server did not start: " << banner << "\n";
    kill(server.pid, SIGTERM);
    return 1;
  }
  const std::string url = banner.substr(at, banner.find(' ', at) - at);

  const std::string generator = "requests=" + std::to_string(s.streams) +
                                ",rate=" + std::to_string(s.arrival_rate) +
                                ",prompt=fixed:" + std::to_string(s.prompt) +
                                ",output=fixed:" + std::to_string(s.tokens) + ",seed=1";
  const auto t0 = std::chrono::steady_clock::now();
  child_process client =
      spawn_child({s.ridgeline, "load", "--url", url, "--model", "test", "--generator", generator,
                   "--workers", "1", "--no-scrape", "--no-progress", "-o", result},
                  s.client_cpu, STDOUT_FILENO);
  const std::string client_out = drain(client.out_fd);
  int status = 0;
  rusage usage{};
  wait4(client.pid, &status, 0, &usage);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  kill(server.pid, SIGTERM);
  drain(server.out_fd);
  int server_status = 0;
  waitpid(server.pid, &server_status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::cerr << "load_client_bench: ridgeline load failed\n" << client_out;
    return 1;
  }
  const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                     static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;

  const json doc = json::parse(ridgeline::read_text_file(result));
  const json log = json::parse(ridgeline::read_text_file(send_log)).at("requests");
  const json& http = doc.at("rows").at(0).at("measured").at("http");
  const json& smp = http.at("samples");
  const double epoch = http.at("epoch_steady_seconds").get<double>();
  const auto ids = smp.at("id").get<std::vector<std::int64_t>>();
  const auto sent = smp.at("sent_seconds").get<std::vector<double>>();
  const auto scheduled = smp.at("scheduled_seconds").get<std::vector<double>>();
  const auto errors = smp.at("error").get<std::vector<std::string>>();
  const auto offsets = smp.at("chunk_offsets").get<std::vector<std::int64_t>>();
  const auto chunks = smp.at("chunk_seconds").get<std::vector<double>>();

  std::vector<double> ttft_err, itl_err, delivery, first_delivery, server_late, lateness, transit,
      ttft_client, itl_client;
  double all_open = 0, first_close = 1e300;
  std::int64_t finished = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (errors[i] != "none") continue;
    ++finished;
    const auto a = static_cast<std::size_t>(offsets[i]),
               b = static_cast<std::size_t>(offsets[i + 1]);
    if (b <= a) continue;
    lateness.push_back(sent[i] - scheduled[i]);
    ttft_err.push_back(chunks[a] - sent[i] - first);
    for (std::size_t k = a + 1; k < b; ++k) itl_err.push_back(chunks[k] - chunks[k - 1] - interval);
    all_open = std::max(all_open, chunks[a]);
    first_close = std::min(first_close, chunks[b - 1]);
    const auto it = log.find(std::to_string(ids[i]));
    if (it == log.end()) continue;
    const auto writes = it->at("chunk_writes").get<std::vector<double>>();
    const auto due = it->at("chunk_due").get<std::vector<double>>();
    const double received = it->at("received").get<double>();
    transit.push_back(received - (epoch + sent[i]));
    if (!writes.empty()) ttft_client.push_back((chunks[a] - sent[i]) - (writes[0] - received));
    for (std::size_t k = 0; k < writes.size() && a + k < b; ++k) {
      const double d = epoch + chunks[a + k] - writes[k];
      delivery.push_back(d);
      if (k == 0) first_delivery.push_back(d);
      if (k > 0)
        itl_client.push_back((chunks[a + k] - chunks[a + k - 1]) - (writes[k] - writes[k - 1]));
      server_late.push_back(writes[k] - due[k]);
    }
  }
  std::int64_t in_window = 0;
  for (double t : chunks) {
    if (t >= all_open && t <= first_close) ++in_window;
  }
  const double window = first_close - all_open;
  const json out = {
      {"benchmark", "load_client"},
      {"settings",
       {{"streams", s.streams},
        {"tokens_per_stream", s.tokens},
        {"interval_ms", s.interval_ms},
        {"first_token_ms", s.first_token_ms},
        {"arrival_rate_per_second", s.arrival_rate},
        {"client_cpu", s.client_cpu},
        {"server_cpu", s.server_cpu},
        {"scheduled_chunks_per_second", s.streams / interval}}},
      {"environment", doc.at("environment")},
      {"finished", finished},
      {"chunks", chunks.size()},
      {"units", "microseconds"},
      {"ttft_error_us", summary(ttft_err, 1e6)},
      {"itl_error_us", summary(itl_err, 1e6)},
      {"ttft_client_error_us", summary(ttft_client, 1e6)},
      {"itl_client_error_us", summary(itl_client, 1e6)},
      {"delivery_us", summary(delivery, 1e6)},
      {"first_chunk_delivery_us", summary(first_delivery, 1e6)},
      {"server_write_lateness_us", summary(server_late, 1e6)},
      {"request_transit_us", summary(transit, 1e6)},
      {"request_lateness_us", summary(lateness, 1e6)},
      {"all_open_window_seconds", window},
      {"chunks_per_second_all_open", window > 0 ? static_cast<double>(in_window) / window : 0.0},
      {"client_cpu_seconds", cpu},
      {"client_wall_seconds", wall},
      {"client_cores_busy", wall > 0 ? cpu / wall : 0.0},
      {"goal",
       "p99 |ttft_error| and |itl_error| <= 100 us with 1000 streams; >= 20000 chunks/s on one "
       "core"}};
  std::cout << out.dump(2) << "\n";
  // The raw files stay only where --workdir asked for them.
  if (s.workdir.empty()) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--ridgeline")
      s.ridgeline = next();
    else if (a == "--streams")
      s.streams = std::stoi(next());
    else if (a == "--tokens")
      s.tokens = std::stoi(next());
    else if (a == "--prompt")
      s.prompt = std::stoi(next());
    else if (a == "--interval-ms")
      s.interval_ms = std::stod(next());
    else if (a == "--first-token-ms")
      s.first_token_ms = std::stod(next());
    else if (a == "--arrival-rate")
      s.arrival_rate = std::stod(next());
    else if (a == "--client-cpu")
      s.client_cpu = std::stoi(next());
    else if (a == "--server-cpu")
      s.server_cpu = std::stoi(next());
    else if (a == "--workdir")
      s.workdir = next();
    else {
      std::cerr
          << "usage: ridgeline_load_client_bench [--streams N] [--tokens N] [--interval-ms X]\n"
             "  [--first-token-ms X] [--arrival-rate R] [--client-cpu C] [--server-cpu C]\n"
             "  [--ridgeline PATH] [--workdir DIR]  (CPU -1: not pinned)\n";
      return 2;
    }
  }
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::cerr << "load_client_bench: " << e.what() << "\n";
    return 1;
  }
}
